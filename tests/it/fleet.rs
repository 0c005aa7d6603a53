//! A fleet from one spec (`examples/fleet.yaml`): one stack per cluster, each passing the real
//! validators, identical except where a cluster overrides, every series labelled with its
//! cluster, and every cluster's Alertmanagers sending to the one router.

use std::fs;
use std::path::Path;

use super::support::{root, stackgen, stderr, stdout};
use super::validators::{check_amtool, check_kustomize_and_kubernetes_validate, check_promtool};

const SPEC: &str = "examples/fleet.yaml";
const CLUSTERS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];

fn read(dir: &Path, path: &str) -> String {
    fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_fleet_renders_one_validated_stack_per_cluster_all_routed_to_one_router() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("fleet");
    let rendered = stackgen(&["render", SPEC, "--out", &out.display().to_string()]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let mut listed: Vec<String> = fs::read_dir(&out)
        .expect("output")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        ["ap-south-1", "eu-west-1", "fleet.txt", "us-east-1"]
    );

    for cluster in CLUSTERS {
        let dir = out.join(cluster);
        check_kustomize_and_kubernetes_validate(cluster, &dir);
        check_promtool(cluster, &dir);
        check_amtool(cluster, &dir, SPEC);
        let config = read(&dir, "prometheus/prometheus.yml");
        assert!(
            config.contains(&format!("    cluster: {cluster}\n")),
            "{cluster}: the cluster external label"
        );
        assert!(
            config.contains(&format!("        replacement: {cluster}\n")),
            "{cluster}: every scraped series gets the cluster label"
        );
        let alertmanager = read(&dir, "alertmanager/alertmanager.yml");
        let hub = cluster == "eu-west-1";
        assert_eq!(
            dir.join("router").exists(),
            hub,
            "{cluster}: the router runs in eu-west-1 only"
        );
        let router_url = if hub {
            "http://stackgen-router.monitoring.svc:8080/api/v1/alertmanager"
        } else {
            "https://alerts.example.com/api/v1/alertmanager"
        };
        assert!(
            alertmanager.contains(router_url),
            "{cluster}: Alertmanager sends to {router_url}"
        );
        let stack_rules = read(&dir, "prometheus/rules/stack.yaml");
        assert_eq!(
            stack_rules.contains("alert: StackgenRouterDown"),
            hub,
            "{cluster}: the router's own alerts are the hub's"
        );
    }
    let hub = out.join("eu-west-1");
    let ingress = read(&hub, "router/ingress.yaml");
    for path in ["/api/v1/alertmanager", "/api/v1/heartbeat", "/incidents"] {
        assert!(
            ingress.contains(&format!("path: {path}\n")),
            "the router's ingress serves {path}"
        );
    }
    // The other clusters reach the router from outside its cluster, whatever `router.url` goes
    // through: its NetworkPolicy takes port 8080 from any source.
    let text = read(&hub, "router/networkpolicy.yaml");
    let policy = yaml_rust2::YamlLoader::load_from_str(&text).expect("YAML");
    let open_to_all = policy[0]["spec"]["ingress"]
        .as_vec()
        .into_iter()
        .flatten()
        .any(|rule| rule["from"].is_badvalue() && rule["ports"][0]["port"].as_i64() == Some(8080));
    assert!(open_to_all, "{text}");
    // Identical except where overridden.
    let statefulset = |cluster: &str| read(&out.join(cluster), "prometheus/statefulset.yaml");
    assert!(statefulset("us-east-1").contains("replicas: 3\n"));
    assert!(statefulset("eu-west-1").contains("replicas: 2\n"));
    assert!(
        statefulset("ap-south-1")
            .contains("image: asia-docker.pkg.dev/acme/mirror/prometheus/prometheus:v3.13.2\n")
    );
    assert!(statefulset("eu-west-1").contains("image: quay.io/prometheus/prometheus:v3.13.2\n"));
    let strip = |text: String, cluster: &str| text.replace(cluster, "CLUSTER");
    for path in [
        "alertmanager/statefulset.yaml",
        "prometheus/rules/workloads.yaml",
    ] {
        assert_eq!(
            strip(read(&out.join("eu-west-1"), path), "eu-west-1"),
            strip(read(&out.join("us-east-1"), path), "us-east-1"),
            "{path} is the same in both EKS clusters"
        );
    }

    // A re-render says what it removes; a cluster's own stack alone, by name.
    let single = stackgen(&[
        "render",
        SPEC,
        "--out",
        &out.display().to_string(),
        "--cluster",
        "us-east-1",
    ]);
    assert!(single.status.success(), "{}", stderr(&single));
    assert!(
        stderr(&single).contains("  eu-west-1/router/deployment.yaml\n"),
        "the files of the earlier render that are gone are listed: {}",
        stderr(&single)
    );
    assert!(out.join("kustomization.yaml").exists());
    let stream = stackgen(&["render", SPEC, "--out", "-"]);
    assert_eq!(
        stream.status.code(),
        Some(2),
        "a fleet on stdout needs --cluster"
    );
    assert!(
        stderr(&stream).contains("--cluster NAME"),
        "{}",
        stderr(&stream)
    );

    let validated = stackgen(&["validate", SPEC]);
    assert!(validated.status.success(), "{}", stderr(&validated));
    assert!(stdout(&validated).contains("ok (3 clusters)"));
}

/// The Secrets `cluster` reads, from the JSON render summary, by name.
fn secrets_of<'a>(summary: &'a serde_json::Value, cluster: &str) -> Vec<&'a str> {
    summary["secrets_by_cluster"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["cluster"] == cluster))
        .and_then(|c| c["secrets"].as_array())
        .unwrap_or_else(|| panic!("no secrets of {cluster}: {summary}"))
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect()
}

#[test]
fn each_cluster_is_told_the_secrets_and_images_it_needs_and_only_those() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("fleet").display().to_string();
    let rendered = stackgen(&["render", SPEC, "--out", &out, "--format", "json"]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let summary: serde_json::Value = serde_json::from_slice(&rendered.stdout).expect("JSON");
    let hub = secrets_of(&summary, "eu-west-1");
    assert!(
        hub.contains(&"router-db: url (the router's PostgreSQL URL)"),
        "{hub:?}"
    );
    assert!(
        hub.contains(&"chat: payments, platform (the router, Alertmanager)"),
        "{hub:?}"
    );
    for cluster in ["us-east-1", "ap-south-1"] {
        let other = secrets_of(&summary, cluster);
        // Its Alertmanager signs its webhooks and delivers the platform team's direct path;
        // the router's own Secrets (its database, the other teams' destinations) stay in the hub.
        assert!(
            other.contains(&"stackgen-router-auth: token (Alertmanager -> router)"),
            "{other:?}"
        );
        assert!(
            other.contains(&"chat: platform (Alertmanager)"),
            "{other:?}"
        );
        assert!(
            !other.iter().any(|line| line.contains("router-db")),
            "{cluster}: {other:?}"
        );
    }
    let text = stackgen(&["render", SPEC, "--out", &out]);
    let told = stderr(&text);
    assert!(
        told.contains("(create them first, in us-east-1, ap-south-1):"),
        "{told}"
    );

    let images = stackgen(&["images", SPEC, "--format", "json"]);
    assert!(images.status.success(), "{}", stderr(&images));
    let listed: serde_json::Value = serde_json::from_slice(&images.stdout).expect("JSON");
    let clusters_of = |prefix: &str| -> Vec<String> {
        listed["images"]
            .as_array()
            .and_then(|all| {
                all.iter().find(|i| {
                    i["image"]
                        .as_str()
                        .is_some_and(|image| image.starts_with(prefix))
                })
            })
            .and_then(|image| image["clusters"].as_array())
            .unwrap_or_else(|| panic!("no image {prefix}: {listed}"))
            .iter()
            .filter_map(|c| c.as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        clusters_of("asia-docker.pkg.dev/acme/mirror/prometheus/prometheus:"),
        ["ap-south-1"]
    );
    assert_eq!(
        clusters_of("quay.io/prometheus/prometheus:"),
        ["eu-west-1", "us-east-1"]
    );
}

#[test]
fn a_fleet_problem_points_at_its_cluster_once_and_a_shared_problem_is_reported_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = tmp.path().join("fleet.yaml");
    let text = fs::read_to_string(root().join(SPEC))
        .expect("example")
        .replace(
            "{replicas: 3, volume_size: 200Gi, retention: 30d}",
            "{replicas: many, volume_size: 200Gi, retention: 30d}",
        )
        .replace("- name: ap-south-1", "- name: us-east-1")
        .replace(
            "series: [recorded, services]",
            "series: [recorded, everything]",
        );
    fs::write(&spec, text).expect("spec");
    let checked = stackgen(&["validate", &spec.display().to_string()]);
    assert_eq!(checked.status.code(), Some(1));
    let errors = stderr(&checked);
    assert_eq!(
        errors
            .matches("must be a whole number from 1 to 10, got `many`")
            .count(),
        1,
        "{errors}"
    );
    assert_eq!(
        errors.matches("a second cluster named `us-east-1`").count(),
        1,
        "{errors}"
    );
    assert_eq!(
        errors
            .matches("unknown kind of series `everything`")
            .count(),
        1,
        "{errors}"
    );
    assert!(errors.contains(":11:"), "the override's own line: {errors}");
}
