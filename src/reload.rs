//! The config reloader: a sidecar beside Prometheus and Alertmanager that tells them to reload
//! (`POST /-/reload`) when their mounted ConfigMaps change, so a rule or route change never
//! restarts them.
//!
//! Kubernetes updates a ConfigMap volume in place (an atomic swap of its `..data` symlink), a
//! minute or so after the object changed. The reloader takes a fingerprint of the watched
//! directories every interval and posts a reload when it differs from the last one the target
//! took. [`ReloadState`] decides, from the fingerprint, the last outcome and the time it is
//! given, whether to post now: pure, so its timing is tested without a clock. [`fingerprint`]
//! and [`run`] are the I/O around it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// The longest wait between two attempts at a reload the target keeps refusing.
pub const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// How deep the watched directories are walked (a ConfigMap mounted inside another one's
/// directory is one level down; a symlink loop ends here).
const MAX_DEPTH: usize = 4;

/// The most bytes read for one fingerprint: ConfigMaps hold at most 1 MiB each.
const MAX_FINGERPRINT_BYTES: u64 = 256 * 1024 * 1024;

/// What came of posting a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered 2xx: it runs the configuration of this fingerprint.
    Reloaded,
    /// The target answered with an error (its configuration is invalid, say) or could not be
    /// reached (it is starting): tried again later, backing off.
    Failed(String),
}

/// What the reloader knows: the fingerprint the target last took, and when to try again after
/// failures.
#[derive(Debug, Default)]
pub struct ReloadState {
    applied: Option<String>,
    /// The fingerprint of the last failed attempt: only it waits out the backoff.
    refused: Option<String>,
    failures: u32,
    next_attempt_ms: u64,
}

impl ReloadState {
    /// Whether to post a reload now, for the watched files' `current` fingerprint. The first
    /// fingerprint is posted too: the files may have changed while the target started. A
    /// fingerprint that failed waits out its backoff; a newer one (the fix) is posted at once.
    pub fn should_reload(&self, current: &str, now_ms: u64) -> bool {
        self.applied.as_deref() != Some(current)
            && (self.refused.as_deref() != Some(current) || now_ms >= self.next_attempt_ms)
    }

    /// Records the outcome of a reload posted at `now_ms` for `current`; a failure waits
    /// `interval_ms`, doubling with each failure in a row up to [`MAX_BACKOFF_MS`].
    pub fn record(&mut self, current: &str, outcome: &Outcome, now_ms: u64, interval_ms: u64) {
        match outcome {
            Outcome::Reloaded => {
                self.applied = Some(current.to_string());
                self.refused = None;
                self.failures = 0;
                self.next_attempt_ms = 0;
            }
            Outcome::Failed(_) => {
                if self.refused.as_deref() != Some(current) {
                    self.refused = Some(current.to_string());
                    self.failures = 0;
                }
                let wait = interval_ms
                    .saturating_mul(1u64 << self.failures.min(20))
                    .min(MAX_BACKOFF_MS);
                self.failures = self.failures.saturating_add(1);
                self.next_attempt_ms = now_ms.saturating_add(wait);
            }
        }
    }
}

/// A fingerprint of every file under `dirs`: names (relative to their directory) and contents,
/// following symlinks, leaving out hidden entries (the `..data` of a ConfigMap volume, whose
/// files the visible names link to).
pub fn fingerprint(dirs: &[PathBuf]) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut budget = MAX_FINGERPRINT_BYTES;
    for dir in dirs {
        hasher.update(dir.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        add_dir(&mut hasher, dir, Path::new(""), 0, &mut budget)?;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn add_dir(
    hasher: &mut Sha256,
    dir: &Path,
    relative: &Path,
    depth: usize,
    budget: &mut u64,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir.join(relative))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| !name.as_encoded_bytes().starts_with(b"."))
        .collect();
    names.sort();
    for name in names {
        let path = relative.join(&name);
        let full = dir.join(&path);
        // Following symlinks: a ConfigMap's visible names link into `..data`.
        let Ok(metadata) = std::fs::metadata(&full) else {
            continue;
        };
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        if metadata.is_dir() {
            if depth < MAX_DEPTH {
                add_dir(hasher, dir, &path, depth + 1, budget)?;
            }
        } else if metadata.is_file() {
            let mut file = std::fs::File::open(&full)?.take(*budget);
            let mut buffer = [0u8; 8192];
            let mut copied = 0u64;
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                copied += read as u64;
            }
            *budget = budget.saturating_sub(copied);
            hasher.update(copied.to_le_bytes());
        }
    }
    Ok(())
}

/// Watches `dirs` every `interval` and posts `url` when they change, until the process ends.
pub fn run(dirs: &[PathBuf], url: &str, interval: Duration) -> ! {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    let started = std::time::Instant::now();
    let mut state = ReloadState::default();
    info!(url, dirs = ?dirs, "watching for configuration changes");
    loop {
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match fingerprint(dirs) {
            Ok(current) if state.should_reload(&current, now_ms) => {
                let outcome = post(&agent, url);
                match &outcome {
                    Outcome::Reloaded => info!(url, fingerprint = &current[..12], "reloaded"),
                    Outcome::Failed(reason) => warn!(url, reason, "reload failed; trying again"),
                }
                state.record(&current, &outcome, now_ms, interval_ms);
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "cannot read the watched files"),
        }
        std::thread::sleep(interval);
    }
}

/// Posts a reload and reads what came of it.
fn post(agent: &ureq::Agent, url: &str) -> Outcome {
    match agent.post(url).send_empty() {
        Ok(response) if response.status().is_success() => Outcome::Reloaded,
        Ok(response) => {
            let status = response.status();
            let mut body = String::new();
            let _ = response
                .into_body()
                .into_reader()
                .take(4096)
                .read_to_string(&mut body);
            Outcome::Failed(format!("{status}: {}", body.trim()))
        }
        Err(error) => Outcome::Failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_posted_once_the_target_takes_it() {
        let mut state = ReloadState::default();
        assert!(
            state.should_reload("a", 0),
            "the first fingerprint is posted"
        );
        state.record("a", &Outcome::Reloaded, 0, 1_000);
        assert!(!state.should_reload("a", 5_000), "nothing changed");
        assert!(state.should_reload("b", 5_000), "a change");
        state.record("b", &Outcome::Reloaded, 5_000, 1_000);
        assert!(!state.should_reload("b", 6_000));
    }

    #[test]
    fn a_refused_reload_backs_off_doubling_up_to_five_minutes_and_a_success_resets_it() {
        let mut state = ReloadState::default();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert!(state.should_reload("bad", now));
            state.record("bad", &Outcome::Failed("500".into()), now, 1_000);
            let next = state.next_attempt_ms;
            assert!(!state.should_reload("bad", next - 1), "not before the wait");
            waits.push(next - now);
            now = next;
        }
        assert_eq!(&waits[..4], [1_000, 2_000, 4_000, 8_000]);
        assert_eq!(waits.last(), Some(&MAX_BACKOFF_MS));
        // A new fingerprint (the fix) is posted at once, and its own failures start from the
        // interval again; a success forgets them.
        assert!(state.should_reload("fixed", now - 1));
        state.record("fixed", &Outcome::Failed("refused".into()), now, 1_000);
        assert_eq!(state.next_attempt_ms, now + 1_000);
        state.record("fixed", &Outcome::Reloaded, now + 1_000, 1_000);
        assert!(!state.should_reload("fixed", now + 2_000));
        assert!(state.should_reload("next", now + 2_000));
    }

    #[test]
    fn the_fingerprint_follows_a_config_map_swap_and_ignores_hidden_entries() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        let swap = |version: &str, rules: &str| {
            let data = root.join(format!("..{version}"));
            std::fs::create_dir_all(&data).expect("mkdir");
            std::fs::write(data.join("rules.yaml"), rules).expect("write");
            let link = root.join("..data_tmp");
            std::os::unix::fs::symlink(format!("..{version}"), &link).expect("link");
            std::fs::rename(&link, root.join("..data")).expect("swap");
        };
        swap("v1", "groups: []\n");
        std::os::unix::fs::symlink("..data/rules.yaml", root.join("rules.yaml")).expect("link");
        let dirs = [root.to_path_buf()];
        let first = fingerprint(&dirs).expect("fingerprint");
        std::fs::write(root.join(".editor-swap"), "x").expect("write");
        assert_eq!(fingerprint(&dirs).expect("fingerprint"), first);
        swap("v2", "groups: [{name: a, rules: []}]\n");
        assert_ne!(fingerprint(&dirs).expect("fingerprint"), first);
    }
}
