//! `stackgen rules test`: runs `promtool test rules` on a team's test files against the rules as
//! stackgen renders them (every rule labelled with the owning team), so tests see the labels the
//! alerts will really carry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlEmitter};

use super::team::label_team_rules;

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error(
        "promtool not found on PATH: install the Debian package `prometheus` (apt-get install prometheus)"
    )]
    PromtoolMissing,
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("preparing the rendered rules: {0}")]
    Io(#[from] std::io::Error),
}

/// The outcome of one test file.
#[derive(Debug)]
pub struct FileResult {
    pub file: PathBuf,
    pub passed: bool,
    /// promtool's report (stdout and stderr).
    pub report: String,
}

/// Finds promtool on PATH.
pub fn find_promtool() -> Result<PathBuf, TestError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .ok_or(TestError::PromtoolMissing)
}

/// The version `promtool --version` reports (`2.42.0` of `promtool, version 2.42.0+ds (...)`).
pub fn promtool_version(promtool: &Path) -> Option<String> {
    let output = Command::new(promtool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    parse_version_report(&text)
}

fn parse_version_report(text: &str) -> Option<String> {
    let rest = text.split_once("version ")?.1;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (version.split('.').count() >= 2).then_some(version)
}

/// A warning when promtool (`local`, like `2.42.0`) is another minor release than the
/// Prometheus `deployed_image` runs: its test results may not hold there (Prometheus 3 changed
/// range selections and regex matching of `.`, among others).
pub fn version_mismatch(local: &str, deployed_image: &str) -> Option<String> {
    let deployed = deployed_image
        .rsplit_once(':')
        .map(|(_, tag)| tag.trim_start_matches('v'))?;
    let minor =
        |version: &str| -> Vec<String> { version.split('.').take(2).map(str::to_string).collect() };
    (minor(local) != minor(deployed)).then(|| {
        format!(
            "promtool {local} is not the Prometheus the stack deploys ({deployed}): a result may differ there; install promtool {deployed} to test what runs"
        )
    })
}

/// Runs each test file with its rule files labelled for `team` (none: the files as they are).
pub fn run(
    test_files: &[PathBuf],
    team: Option<&str>,
    promtool: &Path,
) -> Result<Vec<FileResult>, TestError> {
    let work = tempfile::tempdir()?;
    let mut results = Vec::new();
    for (index, test_file) in test_files.iter().enumerate() {
        let prepared = prepare(test_file, team, &work.path().join(index.to_string()))?;
        let output = Command::new(promtool)
            .args(["test", "rules"])
            .arg(&prepared)
            .output()?;
        let mut report = String::from_utf8_lossy(&output.stdout).into_owned();
        report.push_str(&String::from_utf8_lossy(&output.stderr));
        let prepared_name = prepared.display().to_string();
        results.push(FileResult {
            file: test_file.clone(),
            passed: output.status.success(),
            report: report.replace(&prepared_name, &test_file.display().to_string()),
        });
    }
    Ok(results)
}

/// Copies a test file into `dir` with its `rule_files` replaced by labelled copies.
fn prepare(test_file: &Path, team: Option<&str>, dir: &Path) -> Result<PathBuf, TestError> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| TestError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let invalid = |message: String| TestError::Invalid {
        path: test_file.to_path_buf(),
        message,
    };
    let text = read(test_file)?;
    let mut docs =
        crate::yaml::load_untrusted(&text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
    let doc = docs
        .first_mut()
        .ok_or_else(|| invalid("empty test file".into()))?;
    let base = test_file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let Yaml::Hash(map) = doc else {
        return Err(invalid(
            "a promtool test file is a mapping with `rule_files` and `tests`".into(),
        ));
    };
    let key = Yaml::String("rule_files".into());
    let Some(Yaml::Array(rule_files)) = map.get(&key).cloned() else {
        return Err(invalid("no `rule_files` list".into()));
    };
    let mut rewritten = Vec::new();
    for (i, entry) in rule_files.iter().enumerate() {
        let relative = entry
            .as_str()
            .ok_or_else(|| invalid("rule_files entries are paths".into()))?;
        let source_path = base.join(relative);
        let rules = read(&source_path)?;
        let labelled = match team {
            Some(team) => label_team_rules(&rules, team).map_err(|e| TestError::Invalid {
                path: source_path.clone(),
                message: e,
            })?,
            None => rules,
        };
        let target = dir.join(format!("rules-{i}.yaml"));
        fs::write(&target, labelled)?;
        rewritten.push(Yaml::String(target.display().to_string()));
    }
    map.insert(key, Yaml::Array(rewritten));
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(doc)
        .map_err(|e| invalid(e.to_string()))?;
    let prepared = dir.join(test_file.file_name().unwrap_or_default());
    fs::write(&prepared, out)?;
    Ok(prepared)
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn another_minor_release_than_the_deployed_one_is_warned_about() {
        let debian =
            "promtool, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)\n";
        assert_eq!(parse_version_report(debian).as_deref(), Some("2.42.0"));
        let image = "quay.io/prometheus/prometheus:v3.13.2";
        let warning = version_mismatch("2.42.0", image).expect("warned");
        assert!(
            warning.contains("2.42.0") && warning.contains("3.13.2"),
            "{warning}"
        );
        assert_eq!(
            version_mismatch("3.13.0", image),
            None,
            "a patch release differs only"
        );
        assert!(version_mismatch("3.12.1", image).is_some());
    }
}
