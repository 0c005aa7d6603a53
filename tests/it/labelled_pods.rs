//! Label-driven scraping through the real Prometheus relabelling, as stackgen renders it: pods in
//! the teams' namespaces that ask to be scraped (`stackgen.io/scrape: "true"`) are scraped on the
//! port their label or annotation names, at the annotated path, as their service (the
//! `app.kubernetes.io/name` label) and their namespace's team: a pod claiming another team, or
//! exposing series labelled with one, stays its namespace's. Pods of a declared service, pods
//! naming themselves after one, pods in a namespace of no team, pods not asking and pods not
//! running are not scraped by it. Discovery is file_sd target groups with the
//! `__meta_kubernetes_*` labels a cluster would supply.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::e2e::{DEADLINE, start_prometheus};
use super::http_stub::{HttpStub, Reply};
use super::support::query;
use super::support::{render_to_temp, wait_explained};

const JOB: &str = "labelled-pods";

/// A pod as discovery describes it, and the server standing in for its metrics port.
struct Pod {
    namespace: &'static str,
    name: &'static str,
    phase: &'static str,
    /// Pod labels (Kubernetes keys) and annotations, as `key=value`.
    labels: Vec<(&'static str, String)>,
    annotations: Vec<(&'static str, String)>,
    server: HttpStub,
}

impl Pod {
    /// A pod whose metrics answer on `path` only: `labelled_up 1`, and `extra` lines.
    fn start(
        namespace: &'static str,
        name: &'static str,
        path: &'static str,
        extra: &'static str,
    ) -> Pod {
        let server = HttpStub::start(move |request| {
            if request.uri.path() != path {
                return Reply::new(404, "not here\n");
            }
            Reply::new(200, format!("labelled_up 1\n{extra}"))
                .header("Content-Type", "text/plain; version=0.0.4")
        });
        Pod {
            namespace,
            name,
            phase: "Running",
            labels: Vec::new(),
            annotations: Vec::new(),
            server,
        }
    }

    fn label(mut self, key: &'static str, value: &str) -> Pod {
        self.labels.push((key, value.to_string()));
        self
    }

    fn annotation(mut self, key: &'static str, value: &str) -> Pod {
        self.annotations.push((key, value.to_string()));
        self
    }

    /// Asks to be scraped on its server's port, through the label.
    fn asking(self) -> Pod {
        let port = self.server.port.to_string();
        self.label("stackgen.io/scrape", "true")
            .label("stackgen.io/port", &port)
    }

    /// One target group per container port, as pod discovery gives them: the metrics port
    /// unknown to discovery (9), and a sidecar's.
    fn target_groups(&self) -> Vec<Value> {
        let sanitize = |key: &str| -> String {
            key.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        [("app", 9), ("sidecar", 15090)]
            .iter()
            .map(|(container, port)| {
                let mut labels = Map::new();
                for (key, value) in [
                    ("__meta_kubernetes_namespace", self.namespace.to_string()),
                    ("__meta_kubernetes_pod_name", self.name.to_string()),
                    ("__meta_kubernetes_pod_node_name", "node-1".to_string()),
                    ("__meta_kubernetes_pod_phase", self.phase.to_string()),
                    (
                        "__meta_kubernetes_pod_container_name",
                        container.to_string(),
                    ),
                    (
                        "__meta_kubernetes_pod_container_port_number",
                        port.to_string(),
                    ),
                    ("__meta_kubernetes_pod_container_init", "false".to_string()),
                ] {
                    labels.insert(key.to_string(), Value::String(value));
                }
                for (key, value) in &self.labels {
                    labels.insert(
                        format!("__meta_kubernetes_pod_label_{}", sanitize(key)),
                        json!(value),
                    );
                }
                for (key, value) in &self.annotations {
                    labels.insert(
                        format!("__meta_kubernetes_pod_annotation_{}", sanitize(key)),
                        json!(value),
                    );
                }
                json!({"targets": [format!("127.0.0.1:{port}")], "labels": labels})
            })
            .collect()
    }
}

/// `(pod, service, team)` of scraped targets.
type Scraped = BTreeSet<(String, String, String)>;

/// `(pod, service, team)` of the job's active targets, and how many it dropped.
fn targets(base: &str) -> Option<(Scraped, usize)> {
    let text = ureq::get(format!("{base}/api/v1/targets"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let body: Value = serde_json::from_str(&text).ok()?;
    let active = body["data"]["activeTargets"]
        .as_array()?
        .iter()
        .filter(|t| t["labels"]["job"] == JOB && t["health"] == "up")
        .map(|t| {
            let label = |name: &str| t["labels"][name].as_str().unwrap_or_default().to_string();
            (label("pod"), label("service"), label("team"))
        })
        .collect();
    let dropped = body["data"]["droppedTargets"]
        .as_array()?
        .iter()
        .filter(|t| t["discoveredLabels"]["job"] == JOB)
        .count();
    Some((active, dropped))
}

#[test]
fn pods_asking_to_be_scraped_are_their_namespaces_teams_whatever_they_claim() {
    let (tmp, out) = render_to_temp("tests/fixtures/specs/labelled-pods.yaml");
    let name = "app.kubernetes.io/name";
    let mut pending = Pod::start("shop", "cart-pending", "/metrics", "")
        .label(name, "cart")
        .asking();
    pending.phase = "Pending";
    let pods = vec![
        Pod::start("shop", "cart-0", "/internal/metrics", "")
            .label(name, "cart")
            .asking()
            .annotation("prometheus.io/path", "/internal/metrics"),
        // The port from the common annotation instead of the label.
        {
            let finder = Pod::start("search", "finder-0", "/metrics", "").label(name, "finder");
            let port = finder.server.port.to_string();
            finder
                .label("stackgen.io/scrape", "true")
                .annotation("prometheus.io/port", &port)
        },
        // Claims search, in payments' namespace, and labels its own series with search.
        Pod::start(
            "shop",
            "rogue-0",
            "/metrics",
            "rogue_jobs{team=\"search\"} 3\n",
        )
        .label(name, "rogue")
        .label("stackgen.io/team", "search")
        .asking(),
        // Not scraped here: a declared service's pod, a pod naming itself after it, a namespace
        // of no team, a pod not asking, a pod not running, a pod with no service name.
        Pod::start("shop", "checkout-0", "/metrics", "")
            .label("app", "checkout")
            .label(name, "checkout-web")
            .asking(),
        Pod::start("shop", "imposter-0", "/metrics", "")
            .label(name, "checkout")
            .asking(),
        Pod::start("misc", "outsider-0", "/metrics", "")
            .label(name, "outsider")
            .asking(),
        Pod::start("shop", "quiet-0", "/metrics", "").label(name, "quiet"),
        pending,
        Pod::start("shop", "nameless-0", "/metrics", "").asking(),
    ];
    let groups: Vec<Value> = pods.iter().flat_map(Pod::target_groups).collect();
    let prometheus = start_prometheus(&out, tmp.path(), &[], &[(JOB, Value::Array(groups))], &[]);
    let base = prometheus.url("");

    let expected: Scraped = [
        ("cart-0", "cart", "payments"),
        ("finder-0", "finder", "search"),
        ("rogue-0", "rogue", "payments"),
    ]
    .iter()
    .map(|(pod, service, team)| (pod.to_string(), service.to_string(), team.to_string()))
    .collect();
    // Every pod has two container ports: the three scraped ones are one target each (both
    // ports rewrite to the same address), the six others are dropped on both.
    wait_explained(
        "the three pods asking in a team's namespace to be scraped, and no other",
        DEADLINE,
        || targets(&base) == Some((expected.clone(), 12)),
        || format!("{:#?}\n{}", targets(&base), prometheus.log()),
    );
    let rogue = wait_until_series(&base, "rogue_jobs");
    assert_eq!(rogue["team"], "payments", "{rogue}");
    assert_eq!(
        rogue["exported_team"], "search",
        "its own label gives way: {rogue}"
    );
    assert_eq!(rogue["service"], "rogue");
    assert_eq!(rogue["namespace"], "shop");
}

/// The labels of the one series of `metric`, once scraped.
fn wait_until_series(base: &str, metric: &str) -> Value {
    super::support::wait_until(&format!("{metric} to be scraped"), DEADLINE, || {
        let result = query(base, metric);
        (result.len() == 1).then(|| result[0]["metric"].clone())
    })
}
