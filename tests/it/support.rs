//! Helpers shared by the integration tests: running the binary, finding the real tools (a missing
//! tool fails the test with the package that provides it), free loopback ports, polling with a
//! deadline, querying a real Prometheus, and the golden cases.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the built `stackgen` binary with `args` from the repository root.
pub fn stackgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stackgen"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("stackgen runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A port that was free a moment ago (the caller binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The series of an instant query to the Prometheus at `base`, or none while it cannot answer.
pub fn query(base: &str, expr: &str) -> Vec<serde_json::Value> {
    ureq::get(format!("{base}/api/v1/query"))
        .query("query", expr)
        .call()
        .ok()
        .and_then(|mut response| response.body_mut().read_to_string().ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|body| body["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// Polls `produce` until it gives a value or the deadline passes, and returns the value.
pub fn wait_until<T>(what: &str, deadline: Duration, mut produce: impl FnMut() -> Option<T>) -> T {
    let mut value = None;
    wait_for(what, deadline, || {
        value = produce();
        value.is_some()
    });
    match value {
        Some(value) => value,
        None => unreachable!("wait_for returns only once the value is there"),
    }
}

/// Polls `check` until it holds or the deadline passes.
pub fn wait_for(what: &str, deadline: Duration, check: impl FnMut() -> bool) {
    wait_explained(what, deadline, check, String::new);
}

/// [`wait_for`], with what `diagnostics` says (logs, state) added to the failure.
pub fn wait_explained(
    what: &str,
    deadline: Duration,
    check: impl FnMut() -> bool,
    diagnostics: impl Fn() -> String,
) {
    assert!(
        poll_until(deadline, check),
        "timed out after {deadline:?} waiting for {what}\n{}",
        diagnostics()
    );
}

/// Polls `check` until it holds (true) or the deadline passes (false), for a caller that has a
/// way out when it does not (e.g. killing a server that did not stop in time).
pub fn poll_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !check() {
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The specs with golden output: (case name, spec path relative to the root).
pub const GOLDEN_CASES: &[(&str, &str)] = &[
    ("minimal", "examples/minimal.yaml"),
    ("stack", "examples/stack.yaml"),
    ("kubeadm", "tests/fixtures/specs/kubeadm.yaml"),
    ("router-ha", "tests/fixtures/specs/router-ha.yaml"),
    ("teams", "tests/fixtures/teams/stack.yaml"),
    ("fit", "tests/fixtures/specs/fit.yaml"),
];

/// Renders `spec` into a fresh temporary directory and returns it (with the directory guard).
pub fn render_to_temp(spec: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    render_into(Path::new(spec), &out);
    (tmp, out)
}

/// Renders `spec` into `out`; panics with stackgen's errors when it fails.
pub fn render_into(spec: &Path, out: &Path) {
    let spec = spec.to_str().expect("utf-8 path");
    let result = stackgen(&["render", spec, "--out", out.to_str().expect("utf-8 path")]);
    assert!(
        result.status.success(),
        "render {spec} failed:\n{}",
        stderr(&result)
    );
}

/// Path of a real tool; panics with the package to install when it is missing (never skips).
pub fn tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed; install it with: {install}"))
}

/// Runs a tool and asserts it succeeded, showing its output otherwise.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Every file under `dir`, as sorted relative paths.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

/// Whether `STACKGEN_BLESS` asks to rewrite expectations; refused (panics) under CI.
pub fn blessing() -> bool {
    let bless = std::env::var_os("STACKGEN_BLESS").is_some();
    assert!(
        !(bless && std::env::var_os("CI").is_some()),
        "STACKGEN_BLESS is refused under CI: expectations are only rewritten on purpose, locally"
    );
    bless
}

/// Compares `got` with the expectation file (or rewrites it when blessing).
pub fn assert_expected(expected_path: &Path, got: &str, what: &str) {
    if blessing() {
        std::fs::write(expected_path, got).expect("write expectation");
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (STACKGEN_BLESS=1 writes it)",
            expected_path.display()
        )
    });
    assert_eq!(
        got,
        expected,
        "{what}: output differs from {}",
        expected_path.display()
    );
}

/// Where two texts first differ, for assertion messages.
pub fn first_difference(want: &str, got: &str) -> String {
    let line = want
        .lines()
        .zip(got.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| want.lines().count().min(got.lines().count()));
    format!(
        "first difference at line {}:\n  expected: {:?}\n  got:      {:?}",
        line + 1,
        want.lines().nth(line).unwrap_or("<end of file>"),
        got.lines().nth(line).unwrap_or("<end of file>")
    )
}

/// Every way the files under `got` differ from those under `want` (a missing directory holds no
/// files), naming each side by its label: one line per file that only one side has or that
/// differs, with its first differing line. Empty when the two trees are byte for byte the same.
pub fn dir_differences(want: (&str, &Path), got: (&str, &Path)) -> Vec<String> {
    let ((want_label, want), (got_label, got)) = (want, got);
    let listed = |dir: &Path| {
        if dir.is_dir() {
            files_under(dir)
        } else {
            Vec::new()
        }
    };
    let (want_files, got_files) = (listed(want), listed(got));
    let mut differences = Vec::new();
    for file in &want_files {
        if !got_files.contains(file) {
            differences.push(format!("{file}: only in {want_label}"));
        }
    }
    for file in &got_files {
        if !want_files.contains(file) {
            differences.push(format!("{file}: only in {got_label}"));
            continue;
        }
        let want_bytes = std::fs::read(want.join(file)).expect("readable file");
        let got_bytes = std::fs::read(got.join(file)).expect("readable file");
        if want_bytes != got_bytes {
            differences.push(format!(
                "{file}: differs ({want_label} is expected), {}",
                first_difference(
                    &String::from_utf8_lossy(&want_bytes),
                    &String::from_utf8_lossy(&got_bytes)
                )
            ));
        }
    }
    differences
}
