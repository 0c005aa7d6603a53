//! `stackgen rules lint|test`, the default rules under promtool, and the dashboards' PromQL.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::http_stub::{HttpStub, Reply};
use super::support::{
    assert_expected, files_under, render_to_temp, root, run_ok, stackgen, stderr, stdout, tool,
};

/// Each `tests/fixtures/lint/NAME.yaml` is linted with the arguments in `NAME.args`; exit code,
/// stdout and stderr must equal `NAME.expected` (rewritten with `STACKGEN_BLESS=1`, not under CI).
#[test]
fn lint_fixtures_give_the_exact_expected_output() {
    let dir = root().join("tests/fixtures/lint");
    let mut cases = 0;
    for file in files_under(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".yaml"))
    {
        cases += 1;
        let stem = file.trim_end_matches(".yaml");
        let args_text = fs::read_to_string(dir.join(format!("{stem}.args"))).unwrap_or_default();
        let path = format!("tests/fixtures/lint/{file}");
        let mut args = vec!["rules", "lint", path.as_str()];
        args.extend(args_text.split_whitespace());
        let output = stackgen(&args);
        let got = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            output.status.code().unwrap_or(-1),
            stdout(&output),
            stderr(&output)
        );
        assert_expected(&dir.join(format!("{stem}.expected")), &got, &path);
    }
    assert!(cases >= 10, "lint fixtures missing");
}

/// The default rule files lint clean together, as they ship: with kube-state-metrics
/// (kubernetes.yaml and workloads.yaml) or without it (volumes.yaml in their place).
#[test]
fn default_rules_lint_clean_for_a_team() {
    let without_kube_state_metrics = ["kubernetes.yaml", "workloads.yaml"];
    for left_out in [&["volumes.yaml"][..], &without_kube_state_metrics[..]] {
        let mut args = vec![
            "rules".to_string(),
            "lint".into(),
            "--team".into(),
            "platform".into(),
            "--deny-warnings".into(),
        ];
        for file in files_under(&root().join("stack/prometheus/rules")) {
            if !left_out.contains(&file.as_str()) {
                args.push(format!("stack/prometheus/rules/{file}"));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = stackgen(&args);
        assert!(
            output.status.success(),
            "default rules (without {left_out:?}) have findings:\n{}",
            stderr(&output)
        );
    }
}

#[test]
fn every_default_alert_has_a_passing_promtool_unit_test() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let tests_dir = root().join("stack/prometheus/tests");
    let test_files: Vec<String> = files_under(&tests_dir)
        .into_iter()
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert!(
        !test_files.is_empty(),
        "no promtool tests under stack/prometheus/tests"
    );
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules"])
            .args(&test_files)
            .current_dir(&tests_dir),
    );
    let mut tested = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in &test_files {
        let text = fs::read_to_string(tests_dir.join(file)).expect("test file");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("test file parses");
        for group in docs[0]["tests"].as_vec().into_iter().flatten() {
            for case in group["alert_rule_test"].as_vec().into_iter().flatten() {
                // Only cases that expect the alert to fire show that it can.
                let Some(name) = case["alertname"].as_str() else {
                    continue;
                };
                if case["exp_alerts"]
                    .as_vec()
                    .is_some_and(|alerts| !alerts.is_empty())
                {
                    tested.insert(name.to_string());
                } else {
                    quiet.insert(name.to_string());
                }
            }
        }
    }
    for alert in stackgen::rules::defaults::alerts() {
        assert!(
            tested.contains(&alert.name),
            "default alert {} has no promtool test",
            alert.name
        );
    }
}

/// The ownership rules rendered from a spec, under promtool: services' selectors, team
/// namespaces and the team pod label decide each workload's owner, and a page carries it. The
/// test's kube-state-metrics series carry only pod labels the rendered allowlist exports.
#[test]
fn rendered_ownership_rules_give_every_workload_its_owner() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let (_tmp, out) = render_to_temp("tests/fixtures/ownership/stack.yaml");
    let deployment =
        fs::read_to_string(out.join("kube-state-metrics/deployment.yaml")).expect("rendered");
    let allowlist = deployment
        .lines()
        .find_map(|line| line.split("--metric-labels-allowlist=pods=[").nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("kube-state-metrics gets a pod label allowlist");
    let exported: BTreeSet<String> = allowlist
        .split(',')
        .map(stackgen::labels::kube_state_metrics_label)
        .collect();
    let test_file = root().join("tests/fixtures/ownership/ownership_test.yaml");
    let test_text = fs::read_to_string(&test_file).expect("ownership test");
    let used: BTreeSet<String> = test_text
        .lines()
        .filter(|line| line.contains("kube_pod_labels{"))
        .flat_map(|line| {
            line.split([',', '{', ' '])
                .filter_map(|part| part.split_once('=').map(|(name, _)| name.to_string()))
                .filter(|name| name.starts_with("label_"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!used.is_empty(), "the test reads no pod labels");
    assert!(
        used.is_subset(&exported),
        "the test reads pod labels kube-state-metrics would not export: {used:?} vs {exported:?}"
    );
    let rules = out.join("prometheus/rules");
    fs::copy(&test_file, rules.join("ownership_test.yaml")).expect("copy test");
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules", "ownership_test.yaml"])
            .current_dir(&rules),
    );
}

/// Alerts tuned for one service, under promtool with the rules rendered from the spec: a
/// streaming service's latency alert is off, a slow-by-design one alerts past its own threshold
/// with its own severity, and the others keep the defaults.
#[test]
fn an_alert_tuned_for_one_service_changes_only_that_service() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let (_tmp, out) = render_to_temp("tests/fixtures/service-tuning/stack.yaml");
    let rules = out.join("prometheus/rules");
    fs::copy(
        root().join("tests/fixtures/service-tuning/service_tuning_test.yaml"),
        rules.join("service_tuning_test.yaml"),
    )
    .expect("copy test");
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules", "service_tuning_test.yaml"])
            .current_dir(&rules),
    );
}

/// Renders `spec`, checks that the objective tests render writes hold `pages` page tests and
/// `quiet` tests that fire nothing, runs them and then the fixture `scenarios` beside the rendered
/// rules, all under promtool. Returns the generated tests.
fn objectives_under_promtool(spec: &str, scenarios: &str, pages: usize, quiet: usize) -> String {
    let promtool = tool("promtool", "apt-get install prometheus");
    let (_tmp, out) = render_to_temp(spec);
    let tests = out.join("prometheus/tests");
    let generated = fs::read_to_string(tests.join("slos_test.yaml")).expect("rendered SLO tests");
    assert_eq!(
        generated.matches("times the budget pages").count(),
        pages,
        "page tests:\n{generated}"
    );
    assert_eq!(
        generated
            .matches("exactly the budget fires nothing")
            .count(),
        quiet,
        "one test per objective:\n{generated}"
    );
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules", "slos_test.yaml"])
            .current_dir(&tests),
    );
    let rules = out.join("prometheus/rules");
    let name = scenarios.rsplit('/').next().unwrap_or(scenarios);
    fs::copy(root().join(scenarios), rules.join(name)).expect("copy test");
    run_ok(
        Command::new(&promtool)
            .args(["test", "rules", name])
            .current_dir(&rules),
    );
    generated
}

/// Service level objectives under promtool: the tests render writes beside the rules (for each
/// objective, a 15x burn pages and a 1x burn fires nothing in 6 hours) pass, and so do the
/// fixture's scenarios (a quiet service below the minimum rate does not page, an objective
/// replaces the static alert, the budget left).
#[test]
fn service_objectives_page_on_fast_burns_only_and_replace_the_static_alerts() {
    objectives_under_promtool(
        "tests/fixtures/slos/stack.yaml",
        "tests/fixtures/slos/slos_scenarios_test.yaml",
        3,
        3,
    );
}

/// Metrics conventions under promtool: every objective of a service in each convention (the
/// Prometheus default, OpenTelemetry, ingress-nginx, Spring, gRPC, explicit selectors) passes the
/// tests render writes for it (orders' 90% latency objective cannot burn 15 times as fast, so 11
/// page tests for 12 objectives), and the fixture's scenarios show each convention's own rules:
/// the static alerts of an OpenTelemetry service, the actuator's scrapes and gRPC health checks
/// left out, a quiet gRPC service not paging, the ingress controller paging its team, explicit
/// selectors.
#[test]
fn every_metrics_convention_feeds_the_alerts_and_objectives() {
    let generated = objectives_under_promtool(
        "tests/fixtures/conventions/stack.yaml",
        "tests/fixtures/conventions/conventions_test.yaml",
        11,
        12,
    );
    assert!(!generated.contains("Not tested"), "{generated}");
    for series in [
        "http_server_request_duration_seconds_count",
        "nginx_ingress_controller_request_duration_seconds_bucket",
        "http_server_requests_seconds_bucket",
        "grpc_server_handled_total",
        "orders_rejected_total",
    ] {
        assert!(generated.contains(series), "{series} missing:\n{generated}");
    }
}

#[test]
fn rules_test_runs_team_tests_against_the_rendered_rules() {
    tool("promtool", "apt-get install prometheus");
    let passing = stackgen(&[
        "rules",
        "test",
        "--spec",
        "examples/stack.yaml",
        "examples/rules/payments_test.yaml",
    ]);
    assert!(
        passing.status.success(),
        "{}{}",
        stdout(&passing),
        stderr(&passing)
    );
    assert!(
        stdout(&passing).contains("ok    examples/rules/payments_test.yaml"),
        "{}",
        stdout(&passing)
    );
    assert!(stdout(&passing).contains("1 passed, 0 failed"));
    // The local promtool is told apart from the Prometheus the stack deploys when their minor
    // releases differ (Debian's is 2.42; the stack deploys 3.x).
    let promtool = tool("promtool", "apt-get install prometheus");
    let reported = run_ok(Command::new(&promtool).arg("--version"));
    let local = String::from_utf8_lossy(&reported.stdout).into_owned()
        + &String::from_utf8_lossy(&reported.stderr);
    let deployed = stackgen::spec::defaults::PROMETHEUS_IMAGE
        .rsplit_once(":v")
        .map(|(_, version)| version.to_string())
        .expect("a tagged image");
    let deployed_minor: String = deployed.split('.').take(2).collect::<Vec<_>>().join(".");
    let same_minor = local.contains(&format!("version {deployed_minor}."));
    assert_eq!(
        stderr(&passing).contains(&format!(
            "is not the Prometheus the stack deploys ({deployed})"
        )),
        !same_minor,
        "promtool says {local}; stderr: {}",
        stderr(&passing)
    );

    // Without the team label injected, the same test's expected labels do not match.
    let unlabelled = stackgen(&["rules", "test", "examples/rules/payments_test.yaml"]);
    assert_eq!(unlabelled.status.code(), Some(1), "{}", stdout(&unlabelled));
    let report = stdout(&unlabelled);
    assert!(
        report.contains("FAIL  examples/rules/payments_test.yaml"),
        "{report}"
    );
    assert!(
        report.contains("team=\"payments\""),
        "the report shows the expected labels:\n{report}"
    );
    assert!(report.contains("0 passed, 1 failed"));
}

#[test]
fn rules_test_names_the_missing_package_without_promtool() {
    let output = Command::new(env!("CARGO_BIN_EXE_stackgen"))
        .args([
            "rules",
            "test",
            "--team",
            "payments",
            "examples/rules/payments_test.yaml",
        ])
        .current_dir(root())
        .env("PATH", "/nonexistent")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("apt-get install prometheus"),
        "{}",
        stderr(&output)
    );
}

/// Every panel expression of every dashboard parses (with Grafana's variables substituted) and
/// reads only metrics that the stack's exporters, components or the router expose.
#[test]
fn dashboards_use_valid_promql_and_metrics_that_exist() {
    let mut known: BTreeSet<String> = stackgen::rules::exposition::SYNTHETIC
        .iter()
        .map(|s| s.to_string())
        .collect();
    let fixtures = root().join("tests/fixtures/exposition");
    for file in files_under(&fixtures) {
        let text = fs::read_to_string(fixtures.join(&file)).expect("exposition");
        known.extend(
            stackgen::rules::exposition::metric_names(&text)
                .unwrap_or_else(|e| panic!("{file}: {e}")),
        );
    }
    // The series the rules record, as rendered from the example spec (which has objectives).
    let (_tmp, out) = render_to_temp("examples/stack.yaml");
    let rules = out.join("prometheus/rules");
    for file in files_under(&rules) {
        let text = fs::read_to_string(rules.join(&file)).expect("rule file");
        known.extend(
            text.lines()
                .filter_map(|line| {
                    line.trim()
                        .trim_start_matches("- ")
                        .strip_prefix("record: ")
                })
                .map(|name| name.trim().to_string()),
        );
    }
    assert!(
        known.contains("stackgen:slo_burn_rate:rate1h"),
        "the example has objectives"
    );
    let dashboards = root().join("stack/grafana/dashboards");
    let mut checked = 0;
    for file in files_under(&dashboards) {
        let text = fs::read_to_string(dashboards.join(&file)).expect("dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let mut expressions = Vec::new();
        collect_exprs(&json["panels"], &mut expressions);
        assert!(!expressions.is_empty(), "{file} has no queries");
        for expr in expressions {
            let concrete = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$cluster", "prod")
                .replace("$team", "payments")
                .replace("$service", "checkout")
                .replace("$namespace", "shop");
            let ast = stackgen::rules::promql::parse(&concrete)
                .unwrap_or_else(|e| panic!("{file}: `{expr}` does not parse: {}", e.message));
            for metric in stackgen::rules::promql::metric_names(&ast) {
                assert!(
                    known.contains(&metric),
                    "{file}: `{expr}` reads `{metric}`, which no exposition fixture has"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} dashboard expressions");
}

fn collect_exprs(panels: &serde_json::Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(expr.to_string());
            }
        }
        collect_exprs(&panel["panels"], out);
    }
}

#[test]
fn every_runbook_url_points_at_a_section_of_docs_runbooks() {
    let runbooks = fs::read_to_string(root().join("docs/runbooks.md")).expect("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|heading| heading.trim().to_lowercase())
        .collect();
    let mut files: Vec<String> = files_under(&root().join("stack/prometheus/rules"))
        .into_iter()
        .map(|f| format!("stack/prometheus/rules/{f}"))
        .collect();
    files.push("examples/rules/payments.yaml".into());
    let mut checked = 0;
    for file in files {
        let text = fs::read_to_string(root().join(&file)).expect("rule file");
        for line in text.lines() {
            if let Some(url) = line.trim().strip_prefix("runbook_url:") {
                let anchor = url
                    .trim()
                    .rsplit_once('#')
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default();
                assert!(
                    anchors.contains(&anchor),
                    "{file}: runbook_url {url} has no `## ` section in docs/runbooks.md"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 28, "only {checked} runbook links");
}

/// `--metrics` also takes an `http://` URL (a /metrics endpoint); served here by a loopback stub
/// that keeps the request line it was asked.
#[test]
fn lint_reads_metrics_from_a_url() {
    let body = fs::read_to_string(root().join("tests/fixtures/lint/web.prom")).expect("fixture");
    let request_line = Arc::new(Mutex::new(String::new()));
    let seen = request_line.clone();
    let server = HttpStub::start(move |request| {
        if let Ok(mut line) = seen.lock() {
            *line = request.request_line();
        }
        Reply::new(200, body.clone()).header("Content-Type", "text/plain; version=0.0.4")
    });
    let port = server.port;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let output = stackgen(&[
        "rules",
        "lint",
        "--team",
        "web",
        "--metrics",
        &url,
        "tests/fixtures/lint/metrics.yaml",
    ]);
    let request = request_line
        .lock()
        .map(|line| line.clone())
        .unwrap_or_default();
    assert!(request.starts_with("GET /metrics "), "{request}");
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("did you mean `http_requests_total`?"),
        "{said}"
    );
    assert!(said.contains("0 error(s), 2 warning(s)"), "{said}");
}

/// Every rule file in `tests/fixtures/promtool-parity/` is refused by the real `promtool check
/// rules`, and `stackgen rules lint` refuses it too, at the place and with the words its first
/// line expects (`# expect: LINE:COL words`): what Prometheus would not load, stackgen stops
/// before it ships.
#[test]
fn lint_refuses_what_promtool_refuses() {
    let promtool = tool("promtool", "apt-get install prometheus");
    let dir = root().join("tests/fixtures/promtool-parity");
    let files: Vec<String> = files_under(&dir);
    assert!(files.len() >= 8, "parity cases missing: {files:?}");
    for file in files {
        let path = dir.join(&file);
        let text = fs::read_to_string(&path).expect("case");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{file}: no `# expect:` line"));
        let (place, words) = expect.split_once(' ').expect("LINE:COL words");
        let checked = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&path)
            .output()
            .expect("promtool runs");
        assert!(
            !checked.status.success(),
            "{file}: promtool accepts it, so it is no parity case"
        );
        let relative = format!("tests/fixtures/promtool-parity/{file}");
        let linted = stackgen(&["rules", "lint", "--team", "web", &relative]);
        let report = format!("{}{}", stdout(&linted), stderr(&linted));
        assert_eq!(
            linted.status.code(),
            Some(1),
            "{file}: not refused\n{report}"
        );
        let at = format!("--> {relative}:{place}");
        let found = report.split("\n\n").any(|finding| {
            finding.starts_with("error:") && finding.contains(words) && finding.contains(&at)
        });
        assert!(found, "{file}: no error `{words}` at {place}\n{report}");
    }
}

#[test]
fn every_default_alert_is_in_the_coverage_table() {
    let coverage = fs::read_to_string(root().join("docs/alerts.md")).expect("docs/alerts.md");
    let table_rows: Vec<&str> = coverage.lines().filter(|l| l.starts_with("| ")).collect();
    let missing: Vec<&str> = stackgen::rules::defaults::alerts()
        .iter()
        .map(|alert| alert.name.as_str())
        .filter(|name| {
            !table_rows.iter().any(|row| {
                row.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| word == *name)
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/alerts.md has no row naming {missing:?}"
    );
}
