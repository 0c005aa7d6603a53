//! Behaviour of the `stackgen` binary: diagnostics byte for byte, determinism across processes,
//! clean re-renders, no secret values in the output, the stream form, init, images and the demo.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use yaml_rust2::YamlLoader;

use super::support::{
    assert_expected, files_under, render_to_temp, root, run_ok, stackgen, stderr, stdout, tool,
};

/// Each `tests/fixtures/invalid/NAME.yaml` fails validation with exactly `NAME.stderr`.
/// `STACKGEN_BLESS=1` rewrites the expectations (refused under CI).
#[test]
fn invalid_specs_give_the_exact_expected_errors() {
    let dir = root().join("tests/fixtures/invalid");
    let mut cases = 0;
    // The specs are the top-level files; directories hold the files they include.
    for file in files_under(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".yaml") && !f.contains('/'))
    {
        cases += 1;
        let spec = format!("tests/fixtures/invalid/{file}");
        let output = stackgen(&["validate", &spec]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{spec} must be invalid (exit 1)"
        );
        assert!(
            stdout(&output).is_empty(),
            "{spec}: diagnostics go to stderr only"
        );
        assert_expected(
            &dir.join(file.replace(".yaml", ".stderr")),
            &stderr(&output),
            &spec,
        );
    }
    assert!(cases >= 5, "the invalid fixtures are missing");
}

#[test]
fn render_refuses_an_invalid_spec_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let output = stackgen(&[
        "render",
        "tests/fixtures/invalid/unknown-keys.yaml",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("did you mean `retention`?"));
    assert!(!out.exists());
}

#[test]
fn missing_spec_file_is_an_io_error() {
    let output = stackgen(&["validate", "does/not/exist.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot read does/not/exist.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn two_processes_render_the_same_bytes() {
    let (_a, first) = render_to_temp("examples/stack.yaml");
    let (_b, second) = render_to_temp("examples/stack.yaml");
    let files = files_under(&first);
    assert_eq!(files, files_under(&second));
    for file in &files {
        assert_eq!(
            fs::read(first.join(file)).expect("a"),
            fs::read(second.join(file)).expect("b"),
            "{file} differs"
        );
    }
    let stream_a = stackgen(&["render", "examples/stack.yaml", "--out", "-"]);
    let stream_b = stackgen(&["render", "examples/stack.yaml", "--out", "-"]);
    assert!(stream_a.status.success());
    assert_eq!(stream_a.stdout, stream_b.stdout);
}

#[test]
fn rerender_replaces_the_directory_without_stale_files() {
    let (_tmp, out) = render_to_temp("examples/stack.yaml");
    fs::write(out.join("prometheus/stale.yaml"), "kind: Stale\n").expect("stale file");
    let out_str = out.to_str().expect("utf-8");
    let result = stackgen(&["render", "examples/minimal.yaml", "--out", out_str]);
    assert!(result.status.success(), "{}", stderr(&result));
    let (_fresh_tmp, fresh) = render_to_temp("examples/minimal.yaml");
    assert_eq!(
        files_under(&out),
        files_under(&fresh),
        "stale files survived the re-render"
    );
}

#[test]
fn render_refuses_to_replace_a_directory_it_did_not_write() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let notes = tmp.path().join("notes.txt");
    fs::write(&notes, "keep me").expect("user file");
    let output = stackgen(&[
        "render",
        "examples/minimal.yaml",
        "--out",
        tmp.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("was not written by stackgen"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(&notes).expect("still there"), "keep me");
}

#[test]
fn no_secret_is_rendered_only_referenced() {
    let (_tmp, out) = render_to_temp("tests/fixtures/specs/secrets.yaml");
    let mut referenced = BTreeSet::new();
    for file in files_under(&out) {
        let text = fs::read_to_string(out.join(&file)).expect("file");
        // Dashboards and Alertmanager's Go templates are not YAML (and read no Secret).
        if file.ends_with(".json") || file.ends_with(".tmpl") {
            continue;
        }
        for doc in YamlLoader::load_from_str(&text).expect("yaml") {
            assert_ne!(
                doc["kind"].as_str(),
                Some("Secret"),
                "{file} renders a Secret"
            );
        }
        for name in [
            "zz-grafana-admin-ref",
            "zz-router-auth-ref",
            "zz-smtp-ref",
            "zz-slack-ref",
            "zz-pd-ref",
            "zz-og-ref",
        ] {
            if text.contains(name) {
                referenced.insert(name);
            }
        }
    }
    // Every reference reaches the manifests (as a secretKeyRef or a mounted file), so nothing is lost.
    assert_eq!(referenced.len(), 6, "references found: {referenced:?}");

    let literal = stackgen(&["validate", "tests/fixtures/invalid/literal-secret.yaml"]);
    assert_eq!(literal.status.code(), Some(1));
    assert!(
        !stderr(&literal).contains("SENTINEL"),
        "the literal secret was echoed:\n{}",
        stderr(&literal)
    );
}

#[test]
fn stream_output_holds_the_same_objects_as_kustomize() {
    let kubectl = tool(
        "kubectl",
        "the kubectl package (preinstalled on the build image)",
    );
    let (_tmp, out) = render_to_temp("examples/stack.yaml");
    let built = run_ok(Command::new(kubectl).arg("kustomize").arg(&out));
    let stream = stackgen(&["render", "examples/stack.yaml", "--out", "-"]);
    assert!(stream.status.success(), "{}", stderr(&stream));
    let objects = |text: &str| -> BTreeSet<(String, String, String)> {
        YamlLoader::load_from_str(text)
            .expect("yaml")
            .iter()
            .map(|d| {
                let field = |v: &yaml_rust2::Yaml| v.as_str().unwrap_or_default().to_string();
                (
                    field(&d["kind"]),
                    field(&d["metadata"]["namespace"]),
                    field(&d["metadata"]["name"]),
                )
            })
            .collect()
    };
    let from_kustomize = objects(&stdout(&built));
    assert_eq!(objects(&stdout(&stream)), from_kustomize);
    assert!(
        from_kustomize.len() > 40,
        "only {} objects",
        from_kustomize.len()
    );
}

#[test]
fn platform_profiles_drop_what_the_platform_does_not_expose() {
    let (_do_tmp, managed) = render_to_temp("examples/stack.yaml");
    let (_ka_tmp, kubeadm) = render_to_temp("tests/fixtures/specs/kubeadm.yaml");
    let config = |dir: &std::path::Path| {
        fs::read_to_string(dir.join("prometheus/prometheus.yml")).expect("config")
    };
    for job in ["kube-scheduler", "kube-controller-manager", "etcd"] {
        assert!(
            !config(&managed).contains(&format!("job_name: {job}\n")),
            "digitalocean scrapes {job}"
        );
        assert!(
            config(&kubeadm).contains(&format!("job_name: {job}\n")),
            "kubeadm does not scrape {job}"
        );
    }
    assert!(!managed.join("prometheus/rules/control-plane.yaml").exists());
    assert!(kubeadm.join("prometheus/rules/control-plane.yaml").exists());
    // kube-state-metrics is off in the kubeadm spec: neither the exporter nor its rules are rendered.
    assert!(!kubeadm.join("kube-state-metrics").exists());
    assert!(!kubeadm.join("prometheus/rules/kubernetes.yaml").exists());
    let statefulset = fs::read_to_string(managed.join("prometheus/statefulset.yaml")).expect("sts");
    assert!(statefulset.contains("storageClassName: do-block-storage"));
}

#[test]
fn init_writes_a_valid_commented_starter() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("stack.yaml");
    let path_str = path.to_str().expect("utf-8");
    let output = stackgen(&["init", "--platform", "kind", "--out", path_str]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = fs::read_to_string(&path).expect("written");
    assert!(text.contains("platform: kind"));
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 20,
        "not commented"
    );
    let validated = stackgen(&["validate", path_str]);
    assert!(validated.status.success(), "{}", stderr(&validated));
    let again = stackgen(&["init", "--out", path_str]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "init overwrote an existing file"
    );
}

#[test]
fn images_lists_every_pinned_image_once() {
    let output = stackgen(&["images", "examples/stack.yaml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let images: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
    assert_eq!(images.len(), 6, "{images:?}");
    let mut sorted = images.clone();
    sorted.sort();
    assert_eq!(images, sorted);
    let (_tmp, out) = render_to_temp("examples/stack.yaml");
    let mut in_manifests = BTreeSet::new();
    for file in files_under(&out) {
        let text = fs::read_to_string(out.join(&file)).expect("file");
        for line in text.lines() {
            if let Some(image) = line.trim().strip_prefix("image: ") {
                let docs = YamlLoader::load_from_str(image).expect("image is a YAML scalar");
                in_manifests.insert(docs[0].as_str().expect("image is a string").to_string());
            }
        }
    }
    assert_eq!(images.into_iter().collect::<BTreeSet<_>>(), in_manifests);
}

/// `stackgen demo` renders the example stack exactly as `render` does, replays the storm through
/// a router on loopback, prints every notification and the summary, and leaves nothing running.
#[test]
fn demo_renders_the_example_and_turns_the_storm_into_four_notifications() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("demo");
    let dir_arg = dir.to_str().expect("utf-8 path");
    for run in 0..2 {
        let output = Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(["demo", "--dir", dir_arg, "--speed", "20"])
            .current_dir(tmp.path())
            .output()
            .expect("stackgen runs");
        let text = stdout(&output);
        assert!(
            output.status.success(),
            "run {run}:\n{text}\n{}",
            stderr(&output)
        );
        let notifications: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("==> "))
            .map(|line| line.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            notifications,
            [
                "[critical] opened CheckoutPodErrors for checkout (team payments)",
                "[warning] opened SearchApiPodSlow for search-api (team search)",
                "[warning] opened IngressPodReloadFailing for ingress-nginx (team platform)",
                "[critical] resolved CheckoutPodErrors for checkout (team payments)",
            ],
            "{text}"
        );
        assert!(
            text.contains("\n364 alerts -> 3 incidents -> 4 notifications\n"),
            "{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(" alerts received, "))
                .count(),
            16,
            "one line per webhook:\n{text}"
        );
        // The router it started is gone.
        let address = text
            .split("The router listens on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the router's address is printed");
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "the router still answers on {address}"
        );
    }
    // What it rendered is the example's golden output, byte for byte.
    let out = dir.join("out");
    let golden = root().join("tests/golden/stack");
    assert_eq!(files_under(&out), files_under(&golden));
    for file in files_under(&golden) {
        assert_eq!(
            fs::read(out.join(&file)).expect("rendered file"),
            fs::read(golden.join(&file)).expect("golden file"),
            "{file}"
        );
    }
}

/// Two stacks in one cluster (in different namespaces, scraping the same services) never write
/// the same object outside their own namespace: cluster-scoped objects and the Roles in scraped
/// namespaces carry the stack's namespace in their name.
#[test]
fn two_stacks_in_one_cluster_share_no_object() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = fs::read_to_string(root().join("examples/stack.yaml")).expect("example spec");
    let second = tmp.path().join("second.yaml");
    fs::write(
        &second,
        spec.replace("namespace: monitoring\n", "namespace: monitoring-b\n"),
    )
    .expect("write spec");
    fs::create_dir_all(tmp.path().join("rules")).expect("rules dir");
    fs::copy(
        root().join("examples/rules/payments.yaml"),
        tmp.path().join("rules/payments.yaml"),
    )
    .expect("copy rules");
    let outside_own_namespace = |spec: &str, own: &str| -> BTreeSet<(String, String, String)> {
        let output = run_ok(
            Command::new(env!("CARGO_BIN_EXE_stackgen")).args(["render", spec, "--out", "-"]),
        );
        YamlLoader::load_from_str(&stdout(&output))
            .expect("the stream parses")
            .iter()
            .map(|doc| {
                (
                    doc["kind"].as_str().unwrap_or_default().to_string(),
                    doc["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    doc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .filter(|(kind, namespace, name)| {
                namespace != own && !(kind == "Namespace" && name == own)
            })
            .collect()
    };
    let first = outside_own_namespace(
        root().join("examples/stack.yaml").to_str().expect("utf-8"),
        "monitoring",
    );
    let second = outside_own_namespace(second.to_str().expect("utf-8"), "monitoring-b");
    assert!(
        first.iter().any(|(kind, _, _)| kind == "Role"),
        "the example scrapes other namespaces: {first:?}"
    );
    let shared: Vec<_> = first.intersection(&second).collect();
    assert!(shared.is_empty(), "written by both stacks: {shared:?}");
}

/// Every Secret key a rendered stack reads (environment `secretKeyRef`s, mounted and projected
/// Secrets) is in the list `render` prints to create first: none is found only at rollout.
#[test]
fn render_lists_every_secret_the_manifests_read() {
    for (case, spec) in super::support::GOLDEN_CASES {
        let tmp = tempfile::tempdir().expect("temp dir");
        let out = tmp.path().join("out");
        let result = stackgen(&["render", spec, "--out", out.to_str().expect("utf-8 path")]);
        assert!(result.status.success(), "{case}: {}", stderr(&result));
        let listed: BTreeSet<(String, String)> = stderr(&result)
            .lines()
            .filter_map(|line| line.strip_prefix("  ")?.split_once(": "))
            .flat_map(|(secret, keys)| {
                let keys = keys.split(" (").next().unwrap_or_default();
                keys.split(", ")
                    .map(|key| (secret.to_string(), key.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut read = BTreeSet::new();
        for file in files_under(&out).iter().filter(|f| !f.ends_with(".tmpl")) {
            let text = fs::read_to_string(out.join(file)).expect("rendered file");
            for doc in YamlLoader::load_from_str(&text).expect("YAML") {
                secret_keys_read(&doc, &mut read);
            }
        }
        assert!(!read.is_empty(), "{case}: the walk found no Secret at all");
        let missing: Vec<_> = read
            .iter()
            .filter(|(secret, key)| match key.as_str() {
                "*" => !listed.iter().any(|(listed, _)| listed == secret),
                _ => !listed.contains(&(secret.clone(), key.clone())),
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{case}: render does not list {missing:?}\n{}",
            stderr(&result)
        );
    }
}

/// The (Secret, key) pairs a manifest reads.
fn secret_keys_read(node: &yaml_rust2::Yaml, found: &mut BTreeSet<(String, String)>) {
    use yaml_rust2::Yaml;
    let text = |node: &Yaml, key: &str| node[key].as_str().map(str::to_string);
    let items = |node: &Yaml| -> Vec<String> {
        node["items"]
            .as_vec()
            .map(|items| items.iter().filter_map(|i| text(i, "key")).collect())
            .unwrap_or_default()
    };
    match node {
        Yaml::Hash(map) => {
            if let Some(reference) = map.get(&Yaml::String("secretKeyRef".into()))
                && let (Some(name), Some(key)) = (text(reference, "name"), text(reference, "key"))
            {
                found.insert((name, key));
            }
            if let Some(secret) = map.get(&Yaml::String("secret".into())) {
                let name = text(secret, "secretName")
                    .or_else(|| text(secret, "name"))
                    .unwrap_or_default();
                let keys = items(secret);
                if keys.is_empty() {
                    // The whole Secret is mounted: any of its keys must be listed.
                    found.insert((name.clone(), "*".into()));
                }
                for key in keys {
                    found.insert((name.clone(), key));
                }
            }
            for value in map.values() {
                secret_keys_read(value, found);
            }
        }
        Yaml::Array(list) => list.iter().for_each(|item| secret_keys_read(item, found)),
        _ => {}
    }
}

/// A team's routes in the spec become router.yaml routes limited to the team's own alerts;
/// `router routes test` on the rendered config says which destinations an alert reaches.
#[test]
fn team_routes_decide_the_destinations_in_the_rendered_router() {
    let (_tmp, out) = render_to_temp("tests/fixtures/specs/team-routes.yaml");
    let config = out.join("router/router.yaml");
    let trace = |labels: &[&str]| {
        let mut args = vec!["router", "routes", "test", config.to_str().expect("utf-8")];
        args.extend(labels);
        let output = stackgen(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(
        trace(&[
            "alertname=ServiceHighLatency",
            "namespace=shop",
            "service=checkout",
            "severity=warning"
        ]),
        "team: payments (service checkout)\nincident: payments/checkout/namespace=shop\nseverity: warning\ndecided by: routes[0]\ndestinations:\n  payments/slack\n"
    );
    assert_eq!(
        trace(&[
            "alertname=KubeDeploymentReplicasUnavailable",
            "namespace=shop",
            "deployment=cart",
            "severity=warning"
        ]),
        "team: payments (no service)\nincident: payments//KubeDeploymentReplicasUnavailable/namespace=shop/deployment=cart\nseverity: warning\ndecided by: routes[1]\ndestinations:\n  payments/pagerduty\n  payments/slack\n"
    );
    assert_eq!(
        trace(&[
            "alertname=KubeDeploymentReplicasUnavailable",
            "namespace=search",
            "deployment=indexer",
            "team=payments",
            "severity=warning"
        ]),
        "team: search (no service)\nincident: search//KubeDeploymentReplicasUnavailable/namespace=search/deployment=indexer\nseverity: warning\ndecided by: no route matches; the team's destinations\ndestinations:\n  search/slack\n",
        "a workload no service lists belongs to its namespace's team, whatever its labels claim"
    );
    assert_eq!(
        trace(&[
            "alertname=ServiceTargetsDown",
            "namespace=shop",
            "service=checkout",
            "severity=info"
        ]),
        "team: payments (service checkout)\nincident: payments/checkout/namespace=shop\nseverity: info\ndecided by: no route matches; the team's destinations\ndestinations:\n  payments/slack\n  not payments/pagerduty: it does not take info alerts\n"
    );
}

/// `render` says when the platform team has no destination Alertmanager reaches without the
/// router (the router's own alerts then depend on it), and stays quiet when it has one.
#[test]
fn render_notes_a_platform_team_the_routers_own_alerts_cannot_reach_around_it() {
    let note = "note: team infra has no destination Alertmanager delivers to itself";
    for (spec, expected) in [
        ("tests/fixtures/specs/kubeadm.yaml", true),
        ("tests/fixtures/specs/direct-path.yaml", false),
    ] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let out = tmp.path().join("out");
        let result = stackgen(&["render", spec, "--out", out.to_str().expect("utf-8 path")]);
        assert!(result.status.success(), "{spec}: {}", stderr(&result));
        assert_eq!(
            stderr(&result).contains("note: team"),
            expected,
            "{spec}: {}",
            stderr(&result)
        );
        if expected {
            assert!(stderr(&result).contains(note), "{}", stderr(&result));
        }
    }
}

/// `validate --metrics SERVICE=FILE|URL` checks each service's convention against a scrape of it:
/// the convention a scrape of other names looks like, a threshold between buckets, a status label
/// under another name, a histogram that is off (read over HTTP), byte for byte; a scrape that fits
/// passes with a warning; a scrape that is not one, or names no service, is refused.
#[test]
fn validate_checks_each_services_metrics_against_a_scrape_of_it() {
    use super::http_stub::{HttpStub, Reply};
    let spec = "tests/fixtures/conventions/stack.yaml";
    let scrapes = "tests/fixtures/conventions/scrapes";
    // search: gRPC calls, but no handling-time histogram.
    let search = HttpStub::start(|_| {
        Reply::new(
            200,
            "# TYPE grpc_server_handled_total counter\ngrpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Query\",grpc_service=\"search.v1.Search\",grpc_type=\"unary\"} 42\n",
        )
        .header("Content-Type", "text/plain; version=0.0.4")
    });
    let search_url = format!("search=http://127.0.0.1:{}/metrics", search.port);
    let mut args = vec!["validate".to_string(), spec.to_string()];
    for service in ["web", "shop/api", "accounts"] {
        let file = service.rsplit('/').next().unwrap_or(service);
        args.push("--metrics".into());
        args.push(format!("{service}={scrapes}/{file}.prom"));
    }
    args.extend(["--metrics".to_string(), search_url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = stackgen(&args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert_expected(
        &root().join("tests/fixtures/conventions/validate-metrics.stderr"),
        &stderr(&output),
        "validate --metrics",
    );

    let fits = stackgen(&[
        "validate",
        spec,
        "--metrics",
        &format!("orders={scrapes}/orders.prom"),
    ]);
    assert_eq!(fits.status.code(), Some(0), "{}", stderr(&fits));
    assert_eq!(stdout(&fits), format!("{spec}: ok\n"));
    assert!(
        stderr(&fits).starts_with("warning: the scrape has no `orders_rejected_total`"),
        "{}",
        stderr(&fits)
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let page = tmp.path().join("page.html");
    fs::write(&page, "<html><body>not metrics</body></html>\n").expect("write");
    for (argument, error) in [
        (
            format!("nosuch={scrapes}/web.prom"),
            "no service nosuch; its services are shop/web",
        ),
        ("web".to_string(), "write SERVICE=FILE or SERVICE=URL"),
        (
            format!("web={}", page.display()),
            "line 1: `<html><body>not` is not a metric name",
        ),
    ] {
        let refused = stackgen(&["validate", spec, "--metrics", &argument]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{argument}: {}",
            stderr(&refused)
        );
        assert!(
            stderr(&refused).contains(error),
            "{argument}: {}",
            stderr(&refused)
        );
    }
}

/// `rules lint --spec SPEC --metrics SERVICE=FILE|URL` checks the service's metrics convention
/// against its scrape beside the rules (the convention the scrape looks like, pointing at the
/// spec), and the scrape's metric names count as known; a service's scrape without `--spec` is
/// refused.
#[test]
fn rules_lint_checks_a_services_convention_against_its_scrape() {
    let spec = "tests/fixtures/conventions/stack.yaml";
    let scrape = "web=tests/fixtures/conventions/scrapes/web.prom";
    let rules = "examples/rules/payments.yaml";
    let output = stackgen(&[
        "rules",
        "lint",
        "--team",
        "shop",
        "--spec",
        spec,
        "--metrics",
        scrape,
        rules,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = stderr(&output);
    assert!(
        report.contains("error: the scrape has no `http_requests_total`")
            && report.contains(&format!("--> {spec}:13:11"))
            && report.contains("write `metrics: opentelemetry`"),
        "{report}"
    );
    assert!(
        report.ends_with("1 file(s): 1 error(s), 2 warning(s)\n"),
        "{report}"
    );

    let without_spec = stackgen(&[
        "rules",
        "lint",
        "--team",
        "shop",
        "--metrics",
        scrape,
        rules,
    ]);
    assert_eq!(without_spec.status.code(), Some(2));
    assert!(
        stderr(&without_spec).contains("a service's scrape needs --spec"),
        "{}",
        stderr(&without_spec)
    );
}

/// Completions and man pages come from the CLI definition: bash completes a command from the
/// generated script, and every command has its page.
#[test]
fn completions_complete_commands_and_every_command_has_a_man_page() {
    let script = stackgen(&["completions", "bash"]);
    assert!(script.status.success());
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("stackgen.bash");
    std::fs::write(&file, &script.stdout).expect("script");
    let completed = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(stackgen ren); COMP_CWORD=1; _stackgen stackgen ren stackgen; echo \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .expect("bash runs");
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "render");
    let man = stackgen(&[
        "man",
        "--out",
        &tmp.path().join("man").display().to_string(),
    ]);
    assert!(man.status.success(), "{}", stderr(&man));
    for page in [
        "stackgen.1",
        "stackgen-render.1",
        "stackgen-router-check-config.1",
        "stackgen-incidents-ack.1",
    ] {
        let text = std::fs::read_to_string(tmp.path().join("man").join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is a man page");
    }
}

/// `--format json` gives one document a script reads: the problems with their places, the
/// clusters of a valid spec, and the same exit codes.
#[test]
fn validate_and_check_config_speak_json() {
    let invalid = stackgen(&[
        "validate",
        "tests/fixtures/invalid/reserved-namespace.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(invalid.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&invalid.stdout).expect("JSON");
    assert_eq!(document["valid"], false);
    assert_eq!(document["problems"][0]["line"], 3);
    assert_eq!(document["problems"][0]["field"], "namespace");
    let valid = stackgen(&["validate", "examples/fleet.yaml", "--format", "json"]);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    let document: serde_json::Value = serde_json::from_slice(&valid.stdout).expect("JSON");
    assert_eq!(
        document["clusters"],
        serde_json::json!(["eu-west-1", "us-east-1", "ap-south-1"])
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("router.yaml");
    std::fs::write(&config, "listen: nowhere\n").expect("config");
    let checked = stackgen(&[
        "router",
        "check-config",
        &config.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(checked.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("JSON");
    assert_eq!(document["valid"], false);
    assert!(document["problems"][0]["message"].is_string());
    let rendered = stackgen(&[
        "render",
        "examples/minimal.yaml",
        "--out",
        &tmp.path().join("out").display().to_string(),
        "--format",
        "json",
    ]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let summary: serde_json::Value = serde_json::from_slice(&rendered.stdout).expect("JSON");
    assert_eq!(summary["removed"], serde_json::json!([]));
    assert!(summary["files"].as_u64().is_some_and(|n| n > 10));
    let images = stackgen(&[
        "images",
        "tests/fixtures/specs/fit.yaml",
        "--format",
        "json",
    ]);
    let listed: serde_json::Value = serde_json::from_slice(&images.stdout).expect("JSON");
    let prometheus = listed["images"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|i| i["upstream"] == "quay.io/prometheus/prometheus:v3.13.2")
        })
        .expect("prometheus listed");
    assert!(prometheus["image"].as_str().is_some_and(|i| i.starts_with(
        "registry.internal.example:5000/mirror/prometheus/prometheus:v3.13.2@sha256:"
    )));
    assert!(
        prometheus["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
}

/// Every router command takes its configuration as the first argument, as the other commands
/// take their files; the earlier `--config FILE` still works, and naming it both ways is refused.
#[test]
fn router_commands_take_the_configuration_first_and_still_understand_config() {
    for args in [
        &["router", "check-config", "examples/router.yaml"][..],
        &["router", "check-config", "--config", "examples/router.yaml"][..],
        &[
            "router",
            "routes",
            "test",
            "examples/router.yaml",
            "alertname=HighErrorRate",
            "service=checkout",
        ][..],
        &[
            "router",
            "routes",
            "test",
            "--config",
            "examples/router.yaml",
            "alertname=HighErrorRate",
            "service=checkout",
        ][..],
    ] {
        let output = stackgen(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let twice = stackgen(&[
        "router",
        "check-config",
        "examples/router.yaml",
        "--config",
        "examples/router.yaml",
    ]);
    assert_eq!(twice.status.code(), Some(2), "{}", stderr(&twice));
    assert!(stderr(&twice).contains("given twice"), "{}", stderr(&twice));
    let none = stackgen(&["router", "serve"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(stderr(&none).contains("<CONFIG>"), "{}", stderr(&none));
    let no_labels = stackgen(&["router", "routes", "test", "examples/router.yaml"]);
    assert_ne!(no_labels.status.code(), Some(0));
    assert!(
        stderr(&no_labels).contains("labels"),
        "{}",
        stderr(&no_labels)
    );
}
