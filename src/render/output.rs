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
        "{0} exists and was not written by stackgen (no stackgen kustomization.yaml or fleet.txt); render into an empty or new directory"
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
/// Returns the files of an earlier render that are gone now, relative to `dir`.
pub fn write_dir(stack: &RenderedStack, dir: &Path) -> Result<Vec<String>, OutputError> {
    let files: Vec<(String, &str)> = stack
        .files()
        .iter()
        .map(|(path, text)| (path.clone(), text.as_str()))
        .collect();
    write_files(&files, dir)
}

/// The file at the top of a fleet's output: which cluster each directory is for, and the mark
/// that the directory is stackgen's to replace.
pub const FLEET_FILE: &str = "fleet.txt";
const FLEET_HEADER: &str = "# Rendered by stackgen: one stack per cluster of the fleet.";

/// Writes a fleet's stacks into `dir`, one directory per cluster (`dir/<cluster>/`, each with
/// its kustomization), and [`FLEET_FILE`] saying how to apply them. Replaces `dir` whole, as
/// [`write_dir`] does, and returns the files of an earlier render that are gone now.
pub fn write_fleet(
    stacks: &[(String, RenderedStack)],
    dir: &Path,
) -> Result<Vec<String>, OutputError> {
    let mut index = format!("{FLEET_HEADER}\n# Apply each to its own cluster:\n");
    for (cluster, _) in stacks {
        index.push_str(&format!(
            "#   kubectl --context {cluster} apply -k {cluster}\n"
        ));
    }
    for (cluster, _) in stacks {
        index.push_str(&format!("{cluster}\n"));
    }
    let mut files: Vec<(String, &str)> = vec![(FLEET_FILE.to_string(), index.as_str())];
    for (cluster, stack) in stacks {
        files.extend(
            stack
                .files()
                .iter()
                .map(|(path, text)| (format!("{cluster}/{path}"), text.as_str())),
        );
    }
    write_files(&files, dir)
}

fn write_files(files: &[(String, &str)], dir: &Path) -> Result<Vec<String>, OutputError> {
    let mut before = Vec::new();
    if dir.exists() {
        if !dir.is_dir() {
            return Err(OutputError::NotADirectory(dir.to_path_buf()));
        }
        if !is_replaceable(dir).map_err(io_error(dir))? {
            return Err(OutputError::NotOurs(dir.to_path_buf()));
        }
        list_files(dir, dir, &mut before).map_err(io_error(dir))?;
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
    for (path, contents) in files {
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
    let written: std::collections::BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    before.retain(|path| !written.contains(path.as_str()));
    before.sort();
    Ok(before)
}

/// Every file under `dir`, as paths relative to `root` with `/` between parts.
fn list_files(root: &Path, dir: &Path, into: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_files(root, &path, into)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            into.push(parts.join("/"));
        }
    }
    Ok(())
}

/// Empty, or holding a kustomization.yaml or fleet index that stackgen wrote.
fn is_replaceable(dir: &Path) -> io::Result<bool> {
    if fs::read_dir(dir)?.next().is_none() {
        return Ok(true);
    }
    match fs::read_to_string(dir.join(FLEET_FILE)) {
        Ok(text) if text.starts_with(FLEET_HEADER) => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::read_to_string(dir.join("kustomization.yaml")) {
        Ok(text) => Ok(text.starts_with(KUSTOMIZATION_HEADER)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
