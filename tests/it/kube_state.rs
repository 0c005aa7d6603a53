//! A stand-in for kube-state-metrics on loopback: serves the series kube-state-metrics writes for
//! a few Deployments, their ReplicaSets and pods, and nodes, as the test sets them. Pod labels
//! are exported exactly as the rendered `--metric-labels-allowlist` lets kube-state-metrics
//! export them (`label_<sanitised key>`), so the rendered ownership rules see what they would in
//! a cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http_stub::{HttpStub, Reply};

/// A Deployment as the exporter reports it.
#[derive(Debug, Clone)]
pub(super) struct Deployment {
    pub(super) namespace: &'static str,
    pub(super) name: &'static str,
    /// Labels on every pod of the Deployment.
    pub(super) pod_labels: BTreeMap<&'static str, &'static str>,
    pub(super) replicas: u32,
    pub(super) available: u32,
    /// Restarts of each pod's one container so far.
    pub(super) restarts: u32,
}

/// What the cluster looks like right now.
#[derive(Debug, Clone, Default)]
pub(super) struct ClusterState {
    pub(super) deployments: Vec<Deployment>,
    /// Nodes and whether each is Ready.
    pub(super) nodes: BTreeMap<&'static str, bool>,
}

/// The exporter: serves `/metrics` from the current state until dropped.
pub(super) struct KubeStateMetrics {
    state: Arc<Mutex<ClusterState>>,
    pub(super) port: u16,
    _server: HttpStub,
}

impl KubeStateMetrics {
    /// Starts serving `state`, exporting the pod labels that the rendered kube-state-metrics
    /// Deployment under `out` allows.
    pub(super) fn start(out: &Path, state: ClusterState) -> KubeStateMetrics {
        let allowlist = rendered_pod_label_allowlist(out);
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let server = HttpStub::start(move |_| {
            let body = shared
                .lock()
                .map(|state| exposition(&state, &allowlist))
                .unwrap_or_default();
            Reply::new(200, body).header("Content-Type", "text/plain; version=0.0.4")
        });
        KubeStateMetrics {
            state,
            port: server.port,
            _server: server,
        }
    }

    /// Changes the state the exporter serves.
    pub(super) fn update(&self, change: impl FnOnce(&mut ClusterState)) {
        let mut state = self.state.lock().expect("cluster state");
        change(&mut state);
    }

    /// The target group Kubernetes endpoints discovery would give the rendered
    /// `kube-state-metrics` job.
    pub(super) fn target_groups(&self) -> Value {
        json!([{
            "targets": [format!("127.0.0.1:{}", self.port)],
            "labels": {
                "__meta_kubernetes_namespace": "monitoring",
                "__meta_kubernetes_service_name": "kube-state-metrics",
                "__meta_kubernetes_endpoint_port_name": "http-metrics",
                "__meta_kubernetes_pod_name": "kube-state-metrics-6d5f8c7b9-x2x4q",
                "__meta_kubernetes_pod_node_name": "node-0",
            }
        }])
    }
}

/// The pod label keys of `--metric-labels-allowlist=pods=[...]` in the rendered Deployment.
pub(super) fn rendered_pod_label_allowlist(out: &Path) -> Vec<String> {
    pod_label_allowlist(out).expect("a pod label allowlist")
}

/// The pod label keys the rendered kube-state-metrics exports, if it names any.
pub(super) fn pod_label_allowlist(out: &Path) -> Option<Vec<String>> {
    let deployment = std::fs::read_to_string(out.join("kube-state-metrics/deployment.yaml"))
        .expect("rendered kube-state-metrics");
    let listed = deployment
        .lines()
        .find_map(|line| line.split("--metric-labels-allowlist=pods=[").nth(1))
        .and_then(|rest| rest.split(']').next())?;
    Some(listed.split(',').map(str::to_string).collect())
}

/// The series kube-state-metrics would serve for `state`.
fn exposition(state: &ClusterState, allowlist: &[String]) -> String {
    let mut text = String::new();
    let mut line = |metric: &str, labels: &[(&str, String)], value: f64| {
        let labels: Vec<String> = labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        let _ = writeln!(text, "{metric}{{{}}} {value}", labels.join(","));
    };
    for (node, ready) in &state.nodes {
        for (status, value) in [("true", *ready), ("false", !*ready)] {
            line(
                "kube_node_status_condition",
                &[
                    ("node", node.to_string()),
                    ("condition", "Ready".into()),
                    ("status", status.into()),
                ],
                f64::from(u8::from(value)),
            );
        }
    }
    for deployment in &state.deployments {
        let ns = ("namespace", deployment.namespace.to_string());
        let name = ("deployment", deployment.name.to_string());
        let replicaset = format!("{}-5d8f7c9b4", deployment.name);
        line(
            "kube_deployment_created",
            &[ns.clone(), name.clone()],
            1.7e9,
        );
        line(
            "kube_deployment_spec_replicas",
            &[ns.clone(), name.clone()],
            f64::from(deployment.replicas),
        );
        line(
            "kube_deployment_status_replicas_available",
            &[ns.clone(), name.clone()],
            f64::from(deployment.available),
        );
        line(
            "kube_replicaset_created",
            &[ns.clone(), ("replicaset", replicaset.clone())],
            1.7e9,
        );
        line(
            "kube_replicaset_owner",
            &[
                ns.clone(),
                ("replicaset", replicaset.clone()),
                ("owner_kind", "Deployment".into()),
                ("owner_name", deployment.name.into()),
                ("owner_is_controller", "true".into()),
            ],
            1.0,
        );
        for index in 0..deployment.replicas {
            let pod = ("pod", format!("{replicaset}-{index:02}"));
            let uid = ("uid", format!("{}-{index}", deployment.name));
            line(
                "kube_pod_info",
                &[
                    ns.clone(),
                    pod.clone(),
                    uid.clone(),
                    ("node", "node-0".into()),
                ],
                1.0,
            );
            line(
                "kube_pod_owner",
                &[
                    ns.clone(),
                    pod.clone(),
                    uid.clone(),
                    ("owner_kind", "ReplicaSet".into()),
                    ("owner_name", replicaset.clone()),
                    ("owner_is_controller", "true".into()),
                ],
                1.0,
            );
            let exported: Vec<(String, String)> = deployment
                .pod_labels
                .iter()
                .filter(|(key, _)| allowlist.iter().any(|allowed| allowed == *key))
                .map(|(key, value)| {
                    (
                        stackgen::labels::kube_state_metrics_label(key),
                        value.to_string(),
                    )
                })
                .collect();
            let mut labels = vec![ns.clone(), pod.clone(), uid.clone()];
            labels.extend(
                exported
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.clone())),
            );
            line("kube_pod_labels", &labels, 1.0);
            line(
                "kube_pod_container_status_restarts_total",
                &[ns.clone(), pod, uid, ("container", deployment.name.into())],
                f64::from(deployment.restarts),
            );
        }
    }
    text
}
