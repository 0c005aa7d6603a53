//! The only code that writes a rendered stack anywhere: a directory (replaced whole, so no stale
//! file survives a re-render) or one multi-document stream.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::RenderedStack;

/// The first line of every kustomization stackgen writes; marks a directory as ours to replace.
pub const KUSTOMIZATION_HEADER: &str = "# Rendered by stackgen.";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{0} exists and was not written by stackgen (no stackgen kustomization.yaml); render into an empty or new directory"
    )]
    NotOurs(PathBuf),
    #[error("{0} is a file, not a directory")]
    NotADirectory(PathBuf),
    #[error("writing {path}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the stack into `dir`. The files go to a fresh sibling directory first, which then takes
/// the place of `dir`, so an interrupted render never leaves a half-written stack behind.
pub fn write_dir(stack: &RenderedStack, dir: &Path) -> Result<(), OutputError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(OutputError::NotADirectory(dir.to_path_buf()));
        }
        if !is_replaceable(dir).map_err(io_error(dir))? {
            return Err(OutputError::NotOurs(dir.to_path_buf()));
        }
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stack".into());
    let staging = parent.join(format!(".{name}.stackgen-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
    }
    for (path, contents) in stack.files() {
        let target = staging.join(path);
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).map_err(io_error(p))?;
        }
        fs::write(&target, contents).map_err(io_error(&target))?;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_error(dir))?;
    }
    fs::rename(&staging, dir).map_err(io_error(dir))?;
    Ok(())
}

/// Empty, or holding a kustomization.yaml that stackgen wrote.
fn is_replaceable(dir: &Path) -> io::Result<bool> {
    if fs::read_dir(dir)?.next().is_none() {
        return Ok(true);
    }
    match fs::read_to_string(dir.join("kustomization.yaml")) {
        Ok(text) => Ok(text.starts_with(KUSTOMIZATION_HEADER)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
