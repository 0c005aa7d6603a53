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

/// The directory `path` is in: `.` for a bare file name (whose parent is the empty path, which
/// cannot be canonicalized).
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
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

/// The most team files a spec includes, and the most bytes they hold together: a platform of
/// thousands of teams is far below either, and memory stays bounded whatever a directory holds.
pub const MAX_TEAM_FILES: usize = 2_000;
pub const MAX_TEAM_FILE_BYTES: u64 = 4 * MAX_SPEC_BYTES;

/// Checks a `team_files` entry: a relative directory (`teams`) or a glob whose wildcards
/// (`*`, `?`) are in its last part only (`teams/*.yaml`).
pub fn check_team_file_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("name a directory (`teams`) or a glob (`teams/*.yaml`)".into());
    }
    if Path::new(pattern).is_absolute() {
        return Err("team files are named relative to the spec's directory".into());
    }
    let (parent, _) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if parent.contains(['*', '?', '[', '{']) {
        return Err("only the file name may hold wildcards (`*` and `?`): `teams/*.yaml`".into());
    }
    Ok(())
}

/// The files a `team_files` entry names, relative to `base` (the spec's directory) and sorted:
/// every `.yaml` and `.yml` file of a directory, or the regular files a glob's last part
/// matches. A glob that matches nothing is an error (most likely a typo), an empty directory
/// is not.
pub fn team_files_matching(base: &Path, pattern: &str) -> Result<Vec<String>, String> {
    check_team_file_pattern(pattern)?;
    let (dir, name_pattern) = if pattern.contains(['*', '?']) {
        match pattern.rsplit_once('/') {
            Some((dir, name)) => (dir, Some(name)),
            None => ("", Some(pattern)),
        }
    } else {
        (pattern.trim_end_matches('/'), None)
    };
    let root = base
        .canonicalize()
        .map_err(|e| format!("cannot read the spec's directory: {e}"))?;
    let joined = base.join(dir);
    let target = joined
        .canonicalize()
        .map_err(|e| format!("cannot read directory `{}`: {e}", display_dir(dir)))?;
    if !target.starts_with(&root) {
        return Err(format!("`{pattern}` leads out of the spec's directory"));
    }
    let entries = std::fs::read_dir(&target)
        .map_err(|e| format!("cannot read directory `{}`: {e}", display_dir(dir)))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| format!("cannot read directory `{}`: {e}", display_dir(dir)))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let wanted = match name_pattern {
            Some(glob) => wildcard_match(glob, &name),
            None => name.ends_with(".yaml") || name.ends_with(".yml"),
        };
        // Hidden files (editor swap files, `..data` of a mounted ConfigMap) are not team files.
        if wanted && !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
        if names.len() > MAX_TEAM_FILES {
            return Err(format!(
                "`{pattern}` names more than {MAX_TEAM_FILES} files"
            ));
        }
    }
    if names.is_empty() && name_pattern.is_some() {
        return Err(format!("`{pattern}` matches no file"));
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            if dir.is_empty() {
                name
            } else {
                format!("{}/{name}", dir.trim_end_matches('/'))
            }
        })
        .collect())
}

fn display_dir(dir: &str) -> &str {
    if dir.is_empty() { "." } else { dir }
}

/// Whether `name` matches `glob`, where `*` stands for any run of characters and `?` for one.
fn wildcard_match(glob: &str, name: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match with backtracking to the last `*`: linear in practice,
    // at worst glob length times name length.
    let (mut g, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some('*') => {
                last_star = Some((g, n));
                g += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                g += 1;
                n += 1;
            }
            _ => match last_star {
                Some((star, matched)) => {
                    g = star + 1;
                    n = matched + 1;
                    last_star = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_file_globs_match_by_file_name() {
        assert!(wildcard_match("*.yaml", "payments.yaml"));
        assert!(wildcard_match("team-?.yml", "team-a.yml"));
        assert!(wildcard_match("*a*b*", "xaxxbx"));
        assert!(!wildcard_match("*.yaml", "payments.yml"));
        assert!(!wildcard_match("team-?.yml", "team-ab.yml"));
        assert!(check_team_file_pattern("teams/*.yaml").is_ok());
        assert!(check_team_file_pattern("*/payments.yaml").is_err());
        assert!(check_team_file_pattern("/etc/teams").is_err());
    }

    #[test]
    fn team_files_are_the_yaml_files_of_a_directory_or_a_glob_s_matches_sorted() {
        let dir = tempfile::tempdir().expect("dir");
        let teams = dir.path().join("teams");
        std::fs::create_dir_all(teams.join("rules")).expect("dirs");
        for name in [
            "search.yaml",
            "payments.yml",
            ".payments.yaml.swp",
            "README.md",
        ] {
            std::fs::write(teams.join(name), "team: x\n").expect("write");
        }
        assert_eq!(
            team_files_matching(dir.path(), "teams").expect("a directory"),
            ["teams/payments.yml", "teams/search.yaml"]
        );
        assert_eq!(
            team_files_matching(dir.path(), "teams/*.yaml").expect("a glob"),
            ["teams/search.yaml"]
        );
        assert!(team_files_matching(dir.path(), "teams/*.json").is_err());
        assert!(team_files_matching(dir.path(), "missing").is_err());
        assert!(team_files_matching(&teams, "..").is_err());
    }

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
