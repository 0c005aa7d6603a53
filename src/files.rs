//! Reading the files stackgen is pointed at: regular files only (never a FIFO, a device or a
//! directory, which could hang a command or feed it without end), bounded in size, and, for the
//! files a spec names, inside the spec's directory tree.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest rule file read (a rule file of 100,000 rules is far below it).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The largest stack spec or router configuration read: tens of thousands of services (a spec
/// of 2,000 services takes about 200 KiB), while what is rendered from it stays within a few
/// hundred MiB of memory.
pub const MAX_SPEC_BYTES: u64 = 4 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is larger than {} MiB", .0 / 1024 / 1024)]
    TooLarge(u64),
    #[error("`{0}` is absolute: files a spec names are relative to its directory")]
    Absolute(String),
    #[error("`{0}` leads out of the spec's directory")]
    Outside(String),
}

impl From<ReadError> for std::io::Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Io(error) => error,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// Reads `path` as UTF-8 text: a regular file (after following symlinks) of at most
/// [`MAX_FILE_BYTES`].
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    read_text_within(path, MAX_FILE_BYTES)
}

/// Reads a stack spec or router configuration: as [`read_text`], of at most [`MAX_SPEC_BYTES`].
pub fn read_spec(path: &Path) -> Result<String, ReadError> {
    read_text_within(path, MAX_SPEC_BYTES)
}

/// Reads `path` as UTF-8 text: a regular file (after following symlinks) of at most `max`
/// bytes.
fn read_text_within(path: &Path, max: u64) -> Result<String, ReadError> {
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(ReadError::NotAFile);
    }
    if metadata.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(ReadError::TooLarge(max));
    }
    Ok(text)
}

/// Reads the file `relative` names inside `base` (a spec's directory): refused when it is
/// absolute or leads out of `base`, through `..` or a symlink.
pub fn read_confined(base: &Path, relative: &str) -> Result<(PathBuf, String), ReadError> {
    if Path::new(relative).is_absolute() {
        return Err(ReadError::Absolute(relative.to_string()));
    }
    let joined = base.join(relative);
    let root = base.canonicalize()?;
    let target = joined.canonicalize()?;
    if !target.starts_with(&root) {
        return Err(ReadError::Outside(relative.to_string()));
    }
    let text = read_text(&target)?;
    Ok((joined, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_inside_the_spec_directory_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let spec_dir = dir.path().join("spec");
        std::fs::create_dir_all(spec_dir.join("rules")).expect("dirs");
        std::fs::write(spec_dir.join("rules/a.yaml"), "groups: []\n").expect("write");
        std::fs::write(dir.path().join("outside.yaml"), "groups: []\n").expect("write");
        assert!(read_confined(&spec_dir, "rules/a.yaml").is_ok());
        assert!(read_confined(&spec_dir, "rules/../rules/a.yaml").is_ok());
        assert!(matches!(
            read_confined(&spec_dir, "../outside.yaml"),
            Err(ReadError::Outside(_))
        ));
        assert!(matches!(
            read_confined(&spec_dir, "/etc/passwd"),
            Err(ReadError::Absolute(_))
        ));
        std::os::unix::fs::symlink(dir.path().join("outside.yaml"), spec_dir.join("link.yaml"))
            .expect("symlink");
        assert!(matches!(
            read_confined(&spec_dir, "link.yaml"),
            Err(ReadError::Outside(_))
        ));
        assert!(matches!(
            read_confined(&spec_dir, "rules"),
            Err(ReadError::NotAFile)
        ));
        assert!(matches!(
            read_text(Path::new("/dev/zero")),
            Err(ReadError::NotAFile)
        ));
        let fifo = spec_dir.join("fifo.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        assert!(matches!(
            read_confined(&spec_dir, "fifo.yaml"),
            Err(ReadError::NotAFile)
        ));
        let big = spec_dir.join("big.yaml");
        let file = std::fs::File::create(&big).expect("create");
        file.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        assert!(matches!(read_text(&big), Err(ReadError::TooLarge(_))));
        let spec = spec_dir.join("stack.yaml");
        let file = std::fs::File::create(&spec).expect("create");
        file.set_len(MAX_SPEC_BYTES + 1).expect("sparse file");
        assert!(matches!(read_spec(&spec), Err(ReadError::TooLarge(_))));
        assert!(
            read_text(&spec).is_ok(),
            "a rule file may be larger than a spec"
        );
    }
}
