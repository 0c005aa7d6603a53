//! A team's own CI over its team file: `validate SPEC --team FILE` checks a changed team file
//! against the platform spec in place of the one it includes, `rules lint` and `rules test`
//! take the team (and its services) from the file. The platform spec and its team files are
//! `tests/fixtures/teams/`; `changes/` holds a team file as a bad change would make it.

use std::fs;
use std::path::Path;

use super::support::{assert_expected, root, stackgen, stderr, stdout};

const SPEC: &str = "tests/fixtures/teams/stack.yaml";
const PAYMENTS: &str = "tests/fixtures/teams/teams/payments.yaml";
const CHANGED: &str = "tests/fixtures/teams/changes/payments.yaml";

/// The good file passes; the changed one is refused with its own problems and those of the
/// rules it names, byte for byte, although the platform spec includes the good one.
#[test]
fn a_team_checks_its_changed_file_against_the_platform_spec() {
    let good = stackgen(&["validate", SPEC, "--team", PAYMENTS]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    assert_eq!(stdout(&good), format!("{PAYMENTS}: ok (against {SPEC})\n"));
    let changed = stackgen(&["validate", SPEC, "--team", CHANGED]);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    assert_expected(
        &root().join("tests/fixtures/teams/changes/payments.stderr"),
        &stderr(&changed),
        CHANGED,
    );
    // Without `--team` the spec is checked with the file it includes.
    let whole = stackgen(&["validate", SPEC]);
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
}

/// Another team's broken file is that team's to mend: it is counted, not reported, in this
/// team's check, while the whole spec's check fails on it.
#[test]
fn another_teams_problems_do_not_fail_a_teams_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&root().join("tests/fixtures/teams"), dir.path());
    let search = dir.path().join("teams/search.yaml");
    let broken = fs::read_to_string(&search)
        .expect("search's file")
        .replace("namespace: batch", "namespace: shop");
    fs::write(&search, broken).expect("write");
    let spec = dir.path().join("stack.yaml");
    let spec = spec.to_str().expect("UTF-8 path");
    let payments = dir.path().join("teams/payments.yaml");
    let payments = payments.to_str().expect("UTF-8 path");

    let whole = stackgen(&["validate", spec]);
    assert_eq!(whole.status.code(), Some(1));
    assert!(
        stderr(&whole).contains("service `indexer` is in namespace `shop`, which the platform spec gives team `payments`"),
        "{}",
        stderr(&whole)
    );
    let team = stackgen(&["validate", spec, "--team", payments]);
    assert_eq!(team.status.code(), Some(0), "{}", stderr(&team));
    assert!(
        stderr(&team).starts_with("note: other teams' files have 1 problem(s)"),
        "{}",
        stderr(&team)
    );
    assert!(!stderr(&team).contains("error:"), "{}", stderr(&team));
}

/// A service's scrape is checked against the service as its team file declares it, and the
/// problem points into that file.
#[test]
fn a_scrape_check_points_into_the_team_file() {
    let output = stackgen(&[
        "validate",
        SPEC,
        "--team",
        PAYMENTS,
        "--metrics",
        "checkout=tests/fixtures/conventions/scrapes/web.prom",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = stderr(&output);
    assert!(
        report.contains(&format!("--> {PAYMENTS}:18:11"))
            && report.contains("= field: services[0].metrics")
            && report.contains("write `metrics: opentelemetry`"),
        "{report}"
    );
}

/// `rules lint --team-file` lints the rule files the team file names, as that team's (a rule
/// claiming another team is an error); `rules test --team-file` labels the rules with its team,
/// which the test expects on the alert.
#[test]
fn rules_lint_and_test_take_the_team_from_its_file() {
    let good = stackgen(&["rules", "lint", "--team-file", PAYMENTS]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    assert!(
        stderr(&good).ends_with("1 file(s): 0 error(s), 0 warning(s)\n"),
        "{}",
        stderr(&good)
    );
    let changed = stackgen(&["rules", "lint", "--team-file", CHANGED]);
    assert_eq!(changed.status.code(), Some(1), "{}", stderr(&changed));
    assert!(
        stderr(&changed).contains(
            "error: alert `SearchSlowForCheckout` sets team `search`, but the file belongs to team `payments`\n --> tests/fixtures/teams/changes/rules/payments.yaml:9:17"
        ),
        "{}",
        stderr(&changed)
    );

    let test_file = "tests/fixtures/teams/teams/rules/payments_test.yaml";
    // `rules test` runs the promtool on PATH.
    super::support::tool("promtool", "apt-get install prometheus");
    let labelled = stackgen(&["rules", "test", "--team-file", PAYMENTS, test_file]);
    assert_eq!(labelled.status.code(), Some(0), "{}", stdout(&labelled));
    assert!(stdout(&labelled).ends_with("1 passed, 0 failed\n"));
    let unlabelled = stackgen(&["rules", "test", test_file]);
    assert_eq!(
        unlabelled.status.code(),
        Some(1),
        "without the team label the expected alert does not match"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A team file may name its team as a `teams[]` entry does (`name:`), and a rule file its
/// directory does not have is found beside the spec, where a single spec would name it; the
/// spec may be given as a bare file name, from its own directory.
#[test]
fn a_team_file_written_like_a_teams_entry_is_taken() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("teams")).expect("teams dir");
    fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
    fs::write(
        dir.path().join("stack.yaml"),
        "cluster: {name: prod}\nrouter: {platform_team: payments}\nteam_files: teams\nteams:\n  - {name: payments, namespaces: [shop]}\n",
    )
    .expect("spec");
    fs::write(
        dir.path().join("teams/payments.yaml"),
        "name: payments\nslack: {url: {secret: hooks, key: url}}\nrule_files: [rules/payments.yaml]\n",
    )
    .expect("team file");
    fs::copy(
        root().join("examples/rules/payments.yaml"),
        dir.path().join("rules/payments.yaml"),
    )
    .expect("rules");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stackgen"))
        .args(["render", "stack.yaml", "--out", "out"])
        .current_dir(dir.path())
        .output()
        .expect("stackgen runs");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rules = fs::read_to_string(
        dir.path()
            .join("out/prometheus/rules/team-payments-payments.yaml"),
    )
    .expect("the team's rules are rendered");
    assert!(rules.contains("team: payments"), "{rules}");
}
