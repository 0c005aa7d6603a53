//! The simulated cluster: nodes, workloads and their pods, volumes, quotas, the API server and
//! the stack's own components, as state a scenario changes minute by minute, and what each
//! scrape target of a real cluster would serve for that state.
//!
//! The exporters write the metric names and label sets of the real ones: kube-state-metrics v2
//! (pod labels only as the rendered `--metric-labels-allowlist` lets it export them), the
//! kubelet's `/metrics` (volume stats, certificate TTL, PLEG) and `/metrics/cadvisor`,
//! node-exporter, the API server, Prometheus, Alertmanager, the router, and the services' HTTP
//! metrics in the Prometheus client's default naming. Counters accumulate as time passes
//! ([`Cluster::advance`]), so rates and increases behave as they would.

use std::collections::BTreeMap;

/// Seconds between two scrapes (the simulated spec's `scrape_interval`).
pub(super) const STEP_SECONDS: f64 = 30.0;

/// One series of one scrape: metric name, labels and value.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) name: &'static str,
    pub(super) labels: Vec<(&'static str, String)>,
    pub(super) value: f64,
}

/// Kubernetes workload kinds the simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
}

/// What a workload's pods serve on their metrics port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serves {
    /// `http_requests_total` and `http_request_duration_seconds`.
    Http,
    /// `grpc_server_handled_total` and `grpc_server_handling_seconds`, health checks included.
    Grpc,
    Prometheus,
    Alertmanager,
    Router,
    Grafana,
    NodeExporter,
    KubeStateMetrics,
    Nothing,
}

/// A cumulative histogram with the given upper bounds (plus `+Inf`).
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<f64>,
    count: f64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0.0; bounds.len()],
            count: 0.0,
            sum: 0.0,
        }
    }

    /// Records `times` observations of `value`.
    fn observe(&mut self, value: f64, times: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if value <= *bound {
                *bucket += times;
            }
        }
        self.count += times;
        self.sum += value * times;
    }

    /// The `_bucket`, `_sum` and `_count` series of the histogram `name`.
    fn samples(
        &self,
        names: [&'static str; 3],
        labels: &[(&'static str, String)],
        out: &mut Vec<Sample>,
    ) {
        let [bucket, sum, count] = names;
        for (bound, value) in self
            .bounds
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
            .zip(self.buckets.iter().copied().chain([self.count]))
        {
            let mut labels = labels.to_vec();
            labels.push(("le", bound));
            out.push(Sample {
                name: bucket,
                labels,
                value,
            });
        }
        out.push(sample(sum, labels, self.sum));
        out.push(sample(count, labels, self.count));
    }
}

fn sample(name: &'static str, labels: &[(&'static str, String)], value: f64) -> Sample {
    Sample {
        name,
        labels: labels.to_vec(),
        value,
    }
}

const REQUEST_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const PLEG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const API_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.4, 0.6, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// HTTP traffic a pod serves: rate, share of 5xx answers, and the latency of every request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Traffic {
    pub(super) requests_per_second: f64,
    pub(super) error_ratio: f64,
    pub(super) latency_seconds: f64,
}

/// A filesystem (node root disk, or a persistent volume) as its users fill it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Filesystem {
    pub(super) size_bytes: f64,
    pub(super) available_bytes: f64,
    /// Bytes written per second (negative frees space).
    pub(super) fill_bytes_per_second: f64,
    pub(super) inodes: f64,
    pub(super) inodes_free: f64,
    pub(super) readonly: bool,
}

impl Filesystem {
    pub(super) fn with_room(size_bytes: f64, used_ratio: f64) -> Filesystem {
        Filesystem {
            size_bytes,
            available_bytes: size_bytes * (1.0 - used_ratio),
            fill_bytes_per_second: 0.0,
            inodes: 1_000_000.0,
            inodes_free: 900_000.0,
            readonly: false,
        }
    }
}

/// A node and what its kubelet, cAdvisor and node-exporter report.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) ready: bool,
    pub(super) unschedulable: bool,
    /// A condition among MemoryPressure, DiskPressure and PIDPressure that is true.
    pub(super) pressure: Option<&'static str>,
    /// Whether the kubelet's endpoints (`/metrics`, `/metrics/cadvisor`) answer.
    pub(super) kubelet_up: bool,
    pub(super) cpu_cores: f64,
    pub(super) memory_bytes: f64,
    pub(super) pod_capacity: u32,
    pub(super) root: Filesystem,
    pub(super) network_errors_per_second: f64,
    network_errors: f64,
    /// Errors on a pod's veth interface, which the network alert leaves aside.
    pub(super) veth_errors_per_second: f64,
    veth_errors: f64,
    pub(super) conntrack_entries: f64,
    pub(super) conntrack_limit: f64,
    pub(super) clock_synchronised: bool,
    pub(super) clock_offset_seconds: f64,
    pub(super) file_descriptors: f64,
    pub(super) file_descriptors_max: f64,
    /// When the kubelet's client certificate expires, in seconds of simulated time.
    pub(super) client_certificate_expires: f64,
    pub(super) pleg_relist_seconds: f64,
    pleg: Histogram,
}

impl Node {
    pub(super) fn new(name: &str) -> Node {
        Node {
            name: name.to_string(),
            ready: true,
            unschedulable: false,
            pressure: None,
            kubelet_up: true,
            cpu_cores: 4.0,
            memory_bytes: 16.0 * GIB,
            pod_capacity: 110,
            root: Filesystem::with_room(100.0 * GIB, 0.4),
            network_errors_per_second: 0.0,
            network_errors: 0.0,
            veth_errors_per_second: 0.2,
            veth_errors: 0.0,
            conntrack_entries: 12_000.0,
            conntrack_limit: 131_072.0,
            clock_synchronised: true,
            clock_offset_seconds: 0.0004,
            file_descriptors: 4_000.0,
            file_descriptors_max: 1_000_000.0,
            client_certificate_expires: 300.0 * DAY,
            pleg_relist_seconds: 0.02,
            pleg: Histogram::new(PLEG_BUCKETS),
        }
    }
}

pub(super) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
pub(super) const DAY: f64 = 86_400.0;

/// A persistent volume claim and the volume bound to it.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub(super) name: String,
    /// Bound, Pending or Lost.
    pub(super) phase: &'static str,
    pub(super) volume: Filesystem,
}

/// One container's state, as kube-state-metrics and cAdvisor report it.
#[derive(Debug, Clone)]
pub(super) struct Pod {
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) node: String,
    /// The template revision the pod runs (the ReplicaSet's hash for a Deployment).
    pub(super) revision: u32,
    /// Pending, Running, Succeeded, Failed or Unknown.
    pub(super) phase: &'static str,
    pub(super) ready: bool,
    pub(super) restarts: u32,
    /// Why the container waits (CrashLoopBackOff, ImagePullBackOff, ...), if it does.
    pub(super) waiting: Option<&'static str>,
    pub(super) last_terminated: Option<&'static str>,
    /// Whether the metrics port answers scrapes.
    pub(super) answers: bool,
    /// The Job that created the pod (CronJob pods).
    pub(super) job: Option<String>,
    /// The claim the pod mounts, by index into its workload's claims.
    pub(super) claim: Option<usize>,
    /// Share of CPU periods throttled.
    pub(super) throttled_ratio: f64,
    /// An extra ownerReference that is not the controller (kept by some operators).
    pub(super) extra_owner: Option<(&'static str, String)>,
    cpu_periods: f64,
    cpu_throttled: f64,
    requests_ok: f64,
    requests_failed: f64,
    latency: Histogram,
}

/// A Job of a CronJob.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) name: String,
    pub(super) created: f64,
    /// Whether the Job has failed for good (its back-off limit reached).
    pub(super) failed: bool,
    pub(super) succeeded: bool,
}

/// A HorizontalPodAutoscaler on a workload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Autoscaler {
    pub(super) min: u32,
    pub(super) max: u32,
}

/// A Deployment, StatefulSet, DaemonSet or CronJob and its pods.
#[derive(Debug, Clone)]
pub(super) struct Workload {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) kind: Kind,
    /// The pod template's labels.
    pub(super) labels: BTreeMap<String, String>,
    pub(super) replicas: u32,
    /// The current template revision; pods of older revisions are on their way out.
    pub(super) revision: u32,
    pub(super) generation: u32,
    pub(super) observed_generation: u32,
    /// The Deployment's Progressing condition.
    pub(super) progressing: bool,
    /// The main container's ports: (name, number).
    pub(super) ports: Vec<(String, u16)>,
    /// The Kubernetes Services (name, port name) whose endpoints the pods are.
    pub(super) endpoints: Vec<(String, String)>,
    pub(super) serves: Serves,
    pub(super) traffic: Traffic,
    pub(super) pods: Vec<Pod>,
    pub(super) claims: Vec<Claim>,
    pub(super) autoscaler: Option<Autoscaler>,
    /// A PodDisruptionBudget's minAvailable.
    pub(super) min_available: Option<u32>,
    pub(super) cpu_request: f64,
    pub(super) memory_request: f64,
    pub(super) jobs: Vec<Job>,
    created_pods: u32,
}

impl Workload {
    pub(super) fn new(namespace: &str, name: &str, kind: Kind, labels: &[(&str, &str)]) -> Self {
        Workload {
            namespace: namespace.to_string(),
            name: name.to_string(),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replicas: 0,
            revision: 1,
            generation: 1,
            observed_generation: 1,
            progressing: true,
            ports: Vec::new(),
            endpoints: Vec::new(),
            serves: Serves::Nothing,
            traffic: Traffic {
                requests_per_second: 20.0,
                error_ratio: 0.001,
                latency_seconds: 0.04,
            },
            pods: Vec::new(),
            claims: Vec::new(),
            autoscaler: None,
            min_available: None,
            cpu_request: 0.1,
            memory_request: 0.25 * GIB,
            jobs: Vec::new(),
            created_pods: 0,
        }
    }

    pub(super) fn port(mut self, name: &str, number: u16, serves: Serves) -> Self {
        self.ports.push((name.to_string(), number));
        self.serves = serves;
        self
    }

    pub(super) fn endpoint(mut self, service: &str, port: &str) -> Self {
        self.endpoints.push((service.to_string(), port.to_string()));
        self
    }

    /// The name the pod template's revision `revision` gives the ReplicaSet.
    pub(super) fn replicaset(&self, revision: u32) -> String {
        format!("{}-{}", self.name, template_hash(&self.name, revision))
    }

    /// A new Running, Ready pod of the current revision on `node`.
    pub(super) fn new_pod(&mut self, node: &str) -> Pod {
        self.created_pods += 1;
        let name = match self.kind {
            Kind::Deployment => format!(
                "{}-{}",
                self.replicaset(self.revision),
                pod_suffix(&self.name, self.created_pods)
            ),
            Kind::StatefulSet => format!("{}-{}", self.name, self.pods.len()),
            Kind::DaemonSet | Kind::CronJob => {
                format!(
                    "{}-{}",
                    self.name,
                    pod_suffix(&self.name, self.created_pods)
                )
            }
        };
        Pod {
            uid: format!("{:08x}-sim", fnv(&name)),
            name,
            node: node.to_string(),
            revision: self.revision,
            phase: "Running",
            ready: true,
            restarts: 0,
            waiting: None,
            last_terminated: None,
            answers: true,
            job: None,
            claim: None,
            throttled_ratio: 0.01,
            extra_owner: None,
            cpu_periods: 0.0,
            cpu_throttled: 0.0,
            requests_ok: 0.0,
            requests_failed: 0.0,
            latency: Histogram::new(REQUEST_BUCKETS),
        }
    }

    /// Adds `count` Running pods, spread over `nodes` (a StatefulSet's pods each get a claim).
    pub(super) fn run(mut self, count: u32, nodes: &[&str], volume: Option<Filesystem>) -> Self {
        for index in 0..count as usize {
            let mut pod = self.new_pod(nodes[index % nodes.len()]);
            if let Some(volume) = volume {
                self.claims.push(Claim {
                    name: format!("data-{}", pod.name),
                    phase: "Bound",
                    volume,
                });
                pod.claim = Some(self.claims.len() - 1);
            }
            self.pods.push(pod);
        }
        self.replicas = count;
        self
    }

    /// Pods that count as available: Running and Ready.
    pub(super) fn available(&self) -> u32 {
        self.pods
            .iter()
            .filter(|pod| pod.phase == "Running" && pod.ready)
            .count() as u32
    }

    fn updated(&self) -> u32 {
        self.pods
            .iter()
            .filter(|pod| pod.revision == self.revision && pod.phase != "Succeeded")
            .count() as u32
    }
}

/// The API server's state.
#[derive(Debug, Clone)]
pub(super) struct ApiServer {
    pub(super) answers: bool,
    pub(super) error_ratio: f64,
    pub(super) latency_seconds: f64,
    /// An aggregated API (metrics-server's) that is unavailable.
    pub(super) aggregated_api_down: bool,
    requests_ok: f64,
    requests_failed: f64,
    reads: Histogram,
    watches: Histogram,
}

/// The stack's own health, as Prometheus, Alertmanager and the router report it.
#[derive(Debug, Clone)]
pub(super) struct Stack {
    pub(super) prometheus_config_reloaded: bool,
    pub(super) notification_error_ratio: f64,
    pub(super) rule_failures_per_second: f64,
    pub(super) alertmanagers_discovered: u32,
    pub(super) compactions_failing: bool,
    pub(super) evaluations_missed_per_second: f64,
    pub(super) size_retention_cuts_per_second: f64,
    /// The oldest sample Prometheus still has, in seconds of simulated time.
    pub(super) lowest_timestamp: f64,
    pub(super) alertmanager_failure_ratio: f64,
    pub(super) alertmanager_config_reloaded: bool,
    /// Alertmanager pods that see their peers (the others see one member).
    pub(super) alertmanager_members_seen: u32,
    /// Retries per second of the router's deliveries to the payments team's webhook.
    pub(super) router_retries_per_second: f64,
    /// Whether deliveries to the payments team's webhook still succeed.
    pub(super) router_delivering: bool,
    pub(super) router_dead_per_second: f64,
    pub(super) router_pending: f64,
    pub(super) router_unroutable_per_second: f64,
    counters: BTreeMap<&'static str, f64>,
}

/// A ResourceQuota of a namespace.
#[derive(Debug, Clone)]
pub(super) struct Quota {
    pub(super) namespace: String,
    pub(super) name: String,
    /// (resource, used, hard).
    pub(super) resources: Vec<(&'static str, f64, f64)>,
}

/// A component of the stack in `monitoring`: pods labelled `app.kubernetes.io/name: NAME`, behind
/// a Service of that name on its one port.
fn stack_component(
    name: &str,
    kind: Kind,
    (port, number): (&str, u16),
    serves: Serves,
) -> Workload {
    Workload::new(
        "monitoring",
        name,
        kind,
        &[("app.kubernetes.io/name", name)],
    )
    .port(port, number, serves)
    .endpoint(name, port)
}

/// The whole simulated cluster at one moment.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    pub(super) nodes: Vec<Node>,
    pub(super) workloads: Vec<Workload>,
    pub(super) quotas: Vec<Quota>,
    pub(super) api: ApiServer,
    pub(super) stack: Stack,
    /// Seconds since the simulation started.
    pub(super) now: f64,
    /// The pod labels kube-state-metrics may export.
    pub(super) label_allowlist: Vec<String>,
    /// Whether the exporters also serve the families the stack reads nothing of, as real ones
    /// do (the benchmark of what Prometheus keeps; see `unread`).
    pub(super) unread: bool,
}

/// Who serves a scrape target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Pod { workload: usize, pod: usize },
    Node(usize),
    ApiServer,
}

/// A scrape target as Kubernetes service discovery would present it.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `pod`, `endpoints` or `node`.
    pub(super) role: &'static str,
    pub(super) namespace: Option<String>,
    /// The pod's own labels, for the discovery selectors.
    pub(super) pod_labels: BTreeMap<String, String>,
    /// The `__meta_kubernetes_*` labels.
    pub(super) meta: BTreeMap<String, String>,
    pub(super) source: Source,
    pub(super) answers: bool,
}

impl Target {
    /// What identifies the target across time: its role and discovery labels.
    pub(super) fn identity(&self) -> String {
        let mut text = self.role.to_string();
        for (key, value) in &self.meta {
            text.push_str(&format!("|{key}={value}"));
        }
        text
    }
}

impl Cluster {
    /// The healthy cluster every scenario starts from: four nodes; the stack in `monitoring`;
    /// payments' checkout (a Deployment behind an HPA and a PodDisruptionBudget), ledger-db (a
    /// StatefulSet with a volume) and nightly-report (a CronJob) in `shop`; search's search-api (a gRPC server),
    /// indexer and events (long polling, its latency alert off) in `search`; and workloads no
    /// service or team names: a DaemonSet in `logging`, CoreDNS in `kube-system`.
    pub(super) fn healthy(label_allowlist: Vec<String>) -> Cluster {
        let all = ["node-1", "node-2", "node-3", "node-4"];
        let nodes: Vec<Node> = all.into_iter().map(Node::new).collect();
        let daemon = |workload: Workload| -> Workload {
            let mut workload = workload;
            for node in &all {
                let pod = workload.new_pod(node);
                workload.pods.push(pod);
            }
            workload.replicas = all.len() as u32;
            workload
        };
        let stack_volume = Some(Filesystem::with_room(50.0 * GIB, 0.3));
        let mut workloads = vec![
            stack_component(
                "prometheus",
                Kind::StatefulSet,
                ("web", 9090),
                Serves::Prometheus,
            )
            .run(2, &["node-1", "node-2"], stack_volume),
            stack_component(
                "alertmanager",
                Kind::StatefulSet,
                ("web", 9093),
                Serves::Alertmanager,
            )
            .endpoint("alertmanager-headless", "web")
            .run(
                2,
                &["node-3", "node-4"],
                Some(Filesystem::with_room(GIB, 0.1)),
            ),
            stack_component("grafana", Kind::Deployment, ("http", 3000), Serves::Grafana).run(
                1,
                &["node-3"],
                None,
            ),
            stack_component(
                "stackgen-router",
                Kind::Deployment,
                ("http", 8080),
                Serves::Router,
            )
            .run(1, &["node-4"], None),
            stack_component(
                "kube-state-metrics",
                Kind::Deployment,
                ("http-metrics", 8080),
                Serves::KubeStateMetrics,
            )
            .run(1, &["node-2"], None),
            daemon(stack_component(
                "node-exporter",
                Kind::DaemonSet,
                ("metrics", 9100),
                Serves::NodeExporter,
            )),
            Workload::new("shop", "checkout", Kind::Deployment, &[("app", "checkout")])
                .port("http-metrics", 8080, Serves::Http)
                .run(3, &["node-1", "node-2", "node-3"], None),
            Workload::new(
                "shop",
                "ledger-db",
                Kind::StatefulSet,
                &[("app", "ledger-db")],
            )
            .port("metrics", 9187, Serves::Http)
            .run(1, &["node-2"], Some(Filesystem::with_room(20.0 * GIB, 0.5))),
            Workload::new(
                "shop",
                "nightly-report",
                Kind::CronJob,
                &[("app", "nightly-report")],
            ),
            Workload::new(
                "search",
                "search-api",
                Kind::Deployment,
                &[("app.kubernetes.io/name", "search-api")],
            )
            .port("http", 8080, Serves::Grpc)
            .run(2, &["node-3", "node-4"], None),
            Workload::new("search", "indexer", Kind::Deployment, &[("app", "indexer")])
                .port("metrics", 9100, Serves::Http)
                .run(1, &["node-1"], None),
            Workload::new("search", "events", Kind::Deployment, &[("app", "events")])
                .port("http", 8080, Serves::Http)
                .run(2, &["node-2", "node-3"], None),
            daemon(Workload::new(
                "logging",
                "log-agent",
                Kind::DaemonSet,
                &[("app", "log-agent")],
            )),
            Workload::new(
                "kube-system",
                "coredns",
                Kind::Deployment,
                &[("k8s-app", "kube-dns")],
            )
            .run(2, &["node-1", "node-4"], None),
        ];
        // Long polling: every request waits up to 30 seconds for news.
        if let Some(events) = workloads.iter_mut().find(|w| w.name == "events") {
            events.traffic.latency_seconds = 25.0;
        }
        if let Some(checkout) = workloads.iter_mut().find(|w| w.name == "checkout") {
            checkout.autoscaler = Some(Autoscaler { min: 3, max: 6 });
            checkout.min_available = Some(2);
        }
        // An operator's pod that also names a non-controller owner: the ownership rules must
        // follow only the controller.
        if let Some(coredns) = workloads.iter_mut().find(|w| w.name == "coredns") {
            coredns.pods[0].extra_owner = Some(("ConfigMap", "coredns-lock".to_string()));
        }
        Cluster {
            nodes,
            workloads,
            quotas: vec![Quota {
                namespace: "shop".into(),
                name: "compute".into(),
                resources: vec![
                    ("requests.cpu", 1.2, 8.0),
                    ("requests.memory", 2.0 * GIB, 16.0 * GIB),
                    ("pods", 6.0, 20.0),
                ],
            }],
            api: ApiServer {
                answers: true,
                error_ratio: 0.0005,
                latency_seconds: 0.03,
                aggregated_api_down: false,
                requests_ok: 0.0,
                requests_failed: 0.0,
                reads: Histogram::new(API_BUCKETS),
                watches: Histogram::new(API_BUCKETS),
            },
            stack: Stack {
                prometheus_config_reloaded: true,
                notification_error_ratio: 0.0,
                rule_failures_per_second: 0.0,
                alertmanagers_discovered: 2,
                compactions_failing: false,
                evaluations_missed_per_second: 0.0,
                size_retention_cuts_per_second: 0.0,
                lowest_timestamp: 0.0,
                alertmanager_failure_ratio: 0.0,
                alertmanager_config_reloaded: true,
                alertmanager_members_seen: 2,
                router_retries_per_second: 0.0,
                router_delivering: true,
                router_dead_per_second: 0.0,
                router_pending: 0.0,
                router_unroutable_per_second: 0.0,
                counters: BTreeMap::new(),
            },
            now: 0.0,
            label_allowlist,
            unread: false,
        }
    }

    /// The workload `namespace/name`.
    pub(super) fn workload(&mut self, name: &str) -> &mut Workload {
        self.workloads
            .iter_mut()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("no workload {name} in the simulated cluster"))
    }

    pub(super) fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the simulated cluster"))
    }

    /// Lets `seconds` pass: counters grow by what the current state does per second.
    pub(super) fn advance(&mut self, seconds: f64) {
        self.now += seconds;
        for node in &mut self.nodes {
            node.network_errors += node.network_errors_per_second * seconds;
            node.veth_errors += node.veth_errors_per_second * seconds;
            node.pleg.observe(node.pleg_relist_seconds, seconds);
            let fs = &mut node.root;
            fs.available_bytes =
                (fs.available_bytes - fs.fill_bytes_per_second * seconds).clamp(0.0, fs.size_bytes);
        }
        for workload in &mut self.workloads {
            let traffic = workload.traffic;
            for claim in &mut workload.claims {
                let fs = &mut claim.volume;
                fs.available_bytes = (fs.available_bytes - fs.fill_bytes_per_second * seconds)
                    .clamp(0.0, fs.size_bytes);
            }
            for pod in &mut workload.pods {
                if pod.phase != "Running" {
                    continue;
                }
                pod.cpu_periods += 10.0 * seconds;
                pod.cpu_throttled += 10.0 * seconds * pod.throttled_ratio;
                let serves_requests = matches!(workload.serves, Serves::Http | Serves::Grpc);
                if serves_requests && pod.ready && pod.answers {
                    let requests = traffic.requests_per_second * seconds;
                    pod.requests_failed += requests * traffic.error_ratio;
                    pod.requests_ok += requests * (1.0 - traffic.error_ratio);
                    pod.latency.observe(traffic.latency_seconds, requests);
                }
            }
        }
        let api = &mut self.api;
        if api.answers {
            let requests = 50.0 * seconds;
            api.requests_failed += requests * api.error_ratio;
            api.requests_ok += requests * (1.0 - api.error_ratio);
            api.reads.observe(api.latency_seconds, requests);
            // Watches are held open for minutes: their latency is not a request's.
            api.watches.observe(45.0, seconds / 10.0);
        }
        let stack = &mut self.stack;
        let delivered = if stack.router_delivering { 0.05 } else { 0.0 };
        for (counter, per_second) in [
            ("notifications_sent", 1.0),
            ("notification_errors", stack.notification_error_ratio),
            ("rule_failures", stack.rule_failures_per_second),
            (
                "compactions_failed",
                f64::from(u8::from(stack.compactions_failing)) / 7200.0,
            ),
            ("iterations_missed", stack.evaluations_missed_per_second),
            ("size_retentions", stack.size_retention_cuts_per_second),
            ("am_notifications", 0.05),
            ("am_failures", 0.05 * stack.alertmanager_failure_ratio),
            ("router_delivered", delivered),
            ("router_delivered_other", 0.05),
            ("router_retries", stack.router_retries_per_second),
            ("router_dead", stack.router_dead_per_second),
            ("router_unroutable", stack.router_unroutable_per_second),
        ] {
            *stack.counters.entry(counter).or_default() += per_second * seconds;
        }
    }

    /// Every scrape target discovery would present now.
    pub(super) fn targets(&self) -> Vec<Target> {
        let mut targets = vec![Target {
            role: "endpoints",
            namespace: Some("default".into()),
            pod_labels: BTreeMap::new(),
            meta: meta(&[
                ("namespace", "default"),
                ("service_name", "kubernetes"),
                ("endpoint_port_name", "https"),
                ("endpoint_ready", "true"),
            ]),
            source: Source::ApiServer,
            answers: self.api.answers,
        }];
        for (index, node) in self.nodes.iter().enumerate() {
            targets.push(Target {
                role: "node",
                namespace: None,
                pod_labels: BTreeMap::new(),
                meta: meta(&[
                    ("node_name", &node.name),
                    ("node_label_kubernetes_io_hostname", &node.name),
                ]),
                source: Source::Node(index),
                answers: node.kubelet_up,
            });
        }
        for (w, workload) in self.workloads.iter().enumerate() {
            for (p, pod) in workload.pods.iter().enumerate() {
                let ready = pod.phase == "Running" && pod.ready;
                let mut pod_meta = vec![
                    ("namespace".to_string(), workload.namespace.clone()),
                    ("pod_name".to_string(), pod.name.clone()),
                    ("pod_node_name".to_string(), pod.node.clone()),
                    ("pod_phase".to_string(), pod.phase.to_string()),
                    ("pod_ready".to_string(), ready.to_string()),
                    ("pod_uid".to_string(), pod.uid.clone()),
                    ("pod_ip".to_string(), "127.0.0.1".to_string()),
                    (
                        "pod_controller_kind".to_string(),
                        controller_kind(workload.kind).to_string(),
                    ),
                    ("pod_container_name".to_string(), workload.name.clone()),
                ];
                for (key, value) in &workload.labels {
                    pod_meta.push((format!("pod_label_{}", sanitize(key)), value.clone()));
                    pod_meta.push((format!("pod_labelpresent_{}", sanitize(key)), "true".into()));
                }
                let source = Source::Pod {
                    workload: w,
                    pod: p,
                };
                let answers = pod.phase == "Running" && pod.answers && pod.waiting.is_none();
                for (port_name, port) in &workload.ports {
                    let mut labels = pod_meta.clone();
                    labels.push(("pod_container_port_name".into(), port_name.clone()));
                    labels.push(("pod_container_port_number".into(), port.to_string()));
                    labels.push(("pod_container_port_protocol".into(), "TCP".into()));
                    targets.push(Target {
                        role: "pod",
                        namespace: Some(workload.namespace.clone()),
                        pod_labels: workload.labels.clone(),
                        meta: labels
                            .iter()
                            .map(|(k, v)| (format!("__meta_kubernetes_{k}"), v.clone()))
                            .collect(),
                        source,
                        answers,
                    });
                    for (service, endpoint_port) in &workload.endpoints {
                        if endpoint_port != port_name || pod.phase == "Succeeded" {
                            continue;
                        }
                        let mut labels = labels.clone();
                        labels.push(("service_name".into(), service.clone()));
                        labels.push(("endpoint_port_name".into(), endpoint_port.clone()));
                        labels.push(("endpoint_ready".into(), ready.to_string()));
                        targets.push(Target {
                            role: "endpoints",
                            namespace: Some(workload.namespace.clone()),
                            pod_labels: workload.labels.clone(),
                            meta: labels
                                .iter()
                                .map(|(k, v)| (format!("__meta_kubernetes_{k}"), v.clone()))
                                .collect(),
                            source,
                            answers,
                        });
                    }
                }
            }
        }
        targets
    }

    /// What `source` serves on `path` now.
    pub(super) fn scrape(&self, source: Source, path: &str) -> Vec<Sample> {
        let mut out = Vec::new();
        match source {
            Source::ApiServer => self.api_server(&mut out),
            Source::Node(index) if path.ends_with("/cadvisor") => self.cadvisor(index, &mut out),
            Source::Node(index) => self.kubelet(index, &mut out),
            Source::Pod { workload, pod } => {
                let owner = &self.workloads[workload];
                let this = &owner.pods[pod];
                match owner.serves {
                    Serves::Http => http_metrics(this, &mut out),
                    Serves::Grpc => grpc_metrics(this, &mut out),
                    Serves::Prometheus => self.prometheus(&mut out),
                    Serves::Alertmanager => self.alertmanager(pod, &mut out),
                    Serves::Router => self.router(&mut out),
                    Serves::NodeExporter => {
                        if let Some(node) = self.nodes.iter().position(|n| n.name == this.node) {
                            self.node_exporter(node, &mut out);
                        }
                    }
                    Serves::KubeStateMetrics => self.kube_state_metrics(&mut out),
                    Serves::Grafana => out.push(sample(
                        "grafana_build_info",
                        &[("version", "11.3.0".into())],
                        1.0,
                    )),
                    Serves::Nothing => {}
                }
            }
        }
        out
    }

    fn api_server(&self, out: &mut Vec<Sample>) {
        if self.unread {
            super::unread::api_server(out);
        }
        let api = &self.api;
        for (code, value) in [("200", api.requests_ok), ("500", api.requests_failed)] {
            out.push(sample(
                "apiserver_request_total",
                &[
                    ("code", code.into()),
                    ("component", "apiserver".into()),
                    ("group", String::new()),
                    ("resource", "pods".into()),
                    ("scope", "namespace".into()),
                    ("subresource", String::new()),
                    ("verb", "GET".into()),
                    ("version", "v1".into()),
                ],
                value,
            ));
        }
        let names = [
            "apiserver_request_duration_seconds_bucket",
            "apiserver_request_duration_seconds_sum",
            "apiserver_request_duration_seconds_count",
        ];
        for (verb, histogram) in [("GET", &api.reads), ("WATCH", &api.watches)] {
            histogram.samples(
                names,
                &[
                    ("component", "apiserver".into()),
                    ("dry_run", String::new()),
                    ("group", String::new()),
                    ("resource", "pods".into()),
                    ("scope", "namespace".into()),
                    ("subresource", String::new()),
                    ("verb", verb.into()),
                    ("version", "v1".into()),
                ],
                out,
            );
        }
        out.push(sample(
            "aggregator_unavailable_apiservice",
            &[("name", "v1beta1.metrics.k8s.io".into())],
            f64::from(u8::from(api.aggregated_api_down)),
        ));
    }

    fn kubelet(&self, index: usize, out: &mut Vec<Sample>) {
        let node = &self.nodes[index];
        out.push(sample(
            "kubelet_certificate_manager_client_ttl_seconds",
            &[],
            node.client_certificate_expires - self.now,
        ));
        node.pleg.samples(
            [
                "kubelet_pleg_relist_duration_seconds_bucket",
                "kubelet_pleg_relist_duration_seconds_sum",
                "kubelet_pleg_relist_duration_seconds_count",
            ],
            &[],
            out,
        );
        let mut running = 0.0;
        for workload in &self.workloads {
            for pod in workload.pods.iter().filter(|pod| pod.node == node.name) {
                if pod.phase == "Running" {
                    running += 1.0;
                }
                let Some(claim) = pod.claim.map(|c| &workload.claims[c]) else {
                    continue;
                };
                if pod.phase != "Running" || claim.phase != "Bound" {
                    continue;
                }
                let labels = [
                    ("namespace", workload.namespace.clone()),
                    ("persistentvolumeclaim", claim.name.clone()),
                ];
                let fs = claim.volume;
                for (name, value) in [
                    ("kubelet_volume_stats_capacity_bytes", fs.size_bytes),
                    ("kubelet_volume_stats_available_bytes", fs.available_bytes),
                    (
                        "kubelet_volume_stats_used_bytes",
                        fs.size_bytes - fs.available_bytes,
                    ),
                    ("kubelet_volume_stats_inodes", fs.inodes),
                    ("kubelet_volume_stats_inodes_free", fs.inodes_free),
                    (
                        "kubelet_volume_stats_inodes_used",
                        fs.inodes - fs.inodes_free,
                    ),
                ] {
                    out.push(sample(name, &labels, value));
                }
            }
        }
        out.push(sample("kubelet_running_pods", &[], running));
    }

    fn cadvisor(&self, index: usize, out: &mut Vec<Sample>) {
        let node = &self.nodes[index];
        if self.unread {
            super::unread::system_slices(out);
        }
        for workload in &self.workloads {
            for pod in workload
                .pods
                .iter()
                .filter(|pod| pod.node == node.name && pod.phase == "Running")
            {
                let cgroup = format!("/kubepods/burstable/pod{}", pod.uid);
                for (container, id) in [
                    (
                        workload.name.clone(),
                        format!("{cgroup}/{}", fnv(&pod.name)),
                    ),
                    // The pod's own cgroup: no container name.
                    (String::new(), cgroup.clone()),
                ] {
                    let labels = [
                        ("container", container.clone()),
                        ("id", id),
                        ("image", format!("registry.example.com/{}:1", workload.name)),
                        ("name", format!("k8s_{}_{}", workload.name, pod.name)),
                        ("namespace", workload.namespace.clone()),
                        ("pod", pod.name.clone()),
                    ];
                    if self.unread {
                        super::unread::cgroup(&labels.to_vec(), container.is_empty(), out);
                    }
                    out.push(sample(
                        "container_cpu_cfs_periods_total",
                        &labels,
                        pod.cpu_periods,
                    ));
                    out.push(sample(
                        "container_cpu_cfs_throttled_periods_total",
                        &labels,
                        pod.cpu_throttled,
                    ));
                    out.push(sample(
                        "container_cpu_usage_seconds_total",
                        &labels,
                        pod.cpu_periods / 100.0,
                    ));
                    out.push(sample(
                        "container_memory_working_set_bytes",
                        &labels,
                        workload.memory_request * 0.7,
                    ));
                }
            }
        }
    }

    fn node_exporter(&self, index: usize, out: &mut Vec<Sample>) {
        let node = &self.nodes[index];
        if self.unread {
            super::unread::node_exporter(node.cpu_cores as usize, out);
        }
        let run = Filesystem {
            // A tmpfs in use to the last byte is normal and left aside by the rules.
            available_bytes: 0.0,
            ..Filesystem::with_room(GIB, 1.0)
        };
        for (device, fstype, mountpoint, fs) in [
            ("/dev/sda1", "ext4", "/", node.root),
            ("tmpfs", "tmpfs", "/run", run),
        ] {
            let labels = [
                ("device", device.to_string()),
                ("fstype", fstype.to_string()),
                ("mountpoint", mountpoint.to_string()),
            ];
            for (name, value) in [
                ("node_filesystem_size_bytes", fs.size_bytes),
                ("node_filesystem_avail_bytes", fs.available_bytes),
                ("node_filesystem_free_bytes", fs.available_bytes),
                ("node_filesystem_files", fs.inodes),
                ("node_filesystem_files_free", fs.inodes_free),
                ("node_filesystem_readonly", f64::from(u8::from(fs.readonly))),
            ] {
                out.push(sample(name, &labels, value));
            }
        }
        for (device, errors) in [
            ("eth0", node.network_errors),
            ("veth3a1b2c", node.veth_errors),
        ] {
            for name in [
                "node_network_receive_errs_total",
                "node_network_transmit_errs_total",
            ] {
                out.push(sample(name, &[("device", device.into())], errors / 2.0));
            }
        }
        for (name, value) in [
            ("node_nf_conntrack_entries", node.conntrack_entries),
            ("node_nf_conntrack_entries_limit", node.conntrack_limit),
            (
                "node_timex_sync_status",
                f64::from(u8::from(node.clock_synchronised)),
            ),
            (
                "node_timex_maxerror_seconds",
                if node.clock_synchronised { 0.2 } else { 16.0 },
            ),
            ("node_timex_offset_seconds", node.clock_offset_seconds),
            ("node_filefd_allocated", node.file_descriptors),
            ("node_filefd_maximum", node.file_descriptors_max),
            ("node_load1", 0.8),
            ("node_memory_MemAvailable_bytes", node.memory_bytes * 0.5),
            ("node_memory_MemTotal_bytes", node.memory_bytes),
        ] {
            out.push(sample(name, &[], value));
        }
    }

    fn counter(&self, name: &str) -> f64 {
        self.stack.counters.get(name).copied().unwrap_or_default()
    }

    fn prometheus(&self, out: &mut Vec<Sample>) {
        let stack = &self.stack;
        let gauges = [
            (
                "prometheus_config_last_reload_successful",
                f64::from(u8::from(stack.prometheus_config_reloaded)),
            ),
            (
                "prometheus_notifications_alertmanagers_discovered",
                f64::from(stack.alertmanagers_discovered),
            ),
            (
                "prometheus_tsdb_lowest_timestamp_seconds",
                stack.lowest_timestamp,
            ),
            ("prometheus_tsdb_retention_limit_seconds", 15.0 * DAY),
            (
                "prometheus_tsdb_size_retentions_total",
                self.counter("size_retentions"),
            ),
            (
                "prometheus_tsdb_compactions_failed_total",
                self.counter("compactions_failed"),
            ),
        ];
        for (name, value) in gauges {
            out.push(sample(name, &[], value));
        }
        let group = [(
            "rule_group",
            "/etc/prometheus/rules/services.yaml;stackgen.services".into(),
        )];
        out.push(sample(
            "prometheus_rule_evaluation_failures_total",
            &group,
            self.counter("rule_failures"),
        ));
        out.push(sample(
            "prometheus_rule_group_iterations_missed_total",
            &group,
            self.counter("iterations_missed"),
        ));
        let manager = [("alertmanager", "http://10.0.3.4:9093/api/v2/alerts".into())];
        out.push(sample(
            "prometheus_notifications_sent_total",
            &manager,
            self.counter("notifications_sent"),
        ));
        out.push(sample(
            "prometheus_notifications_errors_total",
            &manager,
            self.counter("notification_errors"),
        ));
    }

    fn alertmanager(&self, pod: usize, out: &mut Vec<Sample>) {
        let stack = &self.stack;
        let integration = [("integration", "webhook".to_string())];
        out.push(sample(
            "alertmanager_notifications_total",
            &integration,
            self.counter("am_notifications"),
        ));
        out.push(sample(
            "alertmanager_notifications_failed_total",
            &[
                ("integration", "webhook".to_string()),
                ("reason", "other".to_string()),
            ],
            self.counter("am_failures"),
        ));
        let members = if (pod as u32) < stack.alertmanager_members_seen {
            2.0
        } else {
            1.0
        };
        out.push(sample("alertmanager_cluster_members", &[], members));
        out.push(sample(
            "alertmanager_config_last_reload_successful",
            &[],
            f64::from(u8::from(stack.alertmanager_config_reloaded)),
        ));
    }

    fn router(&self, out: &mut Vec<Sample>) {
        let payments = [
            ("team", "payments".to_string()),
            ("destination", "webhook".to_string()),
        ];
        let search = [
            ("team", "search".to_string()),
            ("destination", "webhook".to_string()),
        ];
        for (labels, outcome, counter) in [
            (&payments, "delivered", "router_delivered"),
            (&payments, "retry", "router_retries"),
            (&search, "delivered", "router_delivered_other"),
        ] {
            let mut labels = labels.to_vec();
            labels.push(("outcome", outcome.to_string()));
            out.push(sample(
                "stackgen_delivery_attempts_total",
                &labels,
                self.counter(counter),
            ));
        }
        out.push(sample(
            "stackgen_notifications_dead_total",
            &payments,
            self.counter("router_dead"),
        ));
        out.push(sample(
            "stackgen_outbox_pending_notifications",
            &[],
            self.stack.router_pending,
        ));
        out.push(sample(
            "stackgen_incidents_unroutable_total",
            &[],
            self.counter("router_unroutable"),
        ));
    }

    fn kube_state_metrics(&self, out: &mut Vec<Sample>) {
        for node in &self.nodes {
            let n = ("node", node.name.clone());
            out.push(sample(
                "kube_node_info",
                &[
                    n.clone(),
                    ("kernel_version", "6.1.0-28-amd64".into()),
                    ("kubelet_version", "v1.31.4".into()),
                    ("internal_ip", "10.0.0.1".into()),
                ],
                1.0,
            ));
            out.push(sample(
                "kube_node_spec_unschedulable",
                std::slice::from_ref(&n),
                f64::from(u8::from(node.unschedulable)),
            ));
            for condition in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
                let state = if condition == "Ready" {
                    node.ready
                } else {
                    node.pressure == Some(condition)
                };
                for (status, value) in [("true", state), ("false", !state), ("unknown", false)] {
                    out.push(sample(
                        "kube_node_status_condition",
                        &[
                            n.clone(),
                            ("condition", condition.into()),
                            ("status", status.into()),
                        ],
                        f64::from(u8::from(value)),
                    ));
                }
            }
            for (metric, factor) in [
                ("kube_node_status_capacity", 1.0),
                ("kube_node_status_allocatable", 0.95),
            ] {
                for (resource, unit, value) in [
                    ("cpu", "core", node.cpu_cores),
                    ("memory", "byte", node.memory_bytes),
                    ("pods", "integer", f64::from(node.pod_capacity)),
                ] {
                    out.push(sample(
                        metric,
                        &[
                            n.clone(),
                            ("resource", resource.into()),
                            ("unit", unit.into()),
                        ],
                        if resource == "pods" {
                            value
                        } else {
                            value * factor
                        },
                    ));
                }
            }
        }
        for quota in &self.quotas {
            for (resource, used, hard) in &quota.resources {
                for (kind, value) in [("hard", hard), ("used", used)] {
                    out.push(sample(
                        "kube_resourcequota",
                        &[
                            ("namespace", quota.namespace.clone()),
                            ("resourcequota", quota.name.clone()),
                            ("resource", resource.to_string()),
                            ("type", kind.into()),
                        ],
                        *value,
                    ));
                }
            }
        }
        for workload in &self.workloads {
            self.workload_series(workload, out);
        }
    }

    fn workload_series(&self, workload: &Workload, out: &mut Vec<Sample>) {
        let ns = ("namespace", workload.namespace.clone());
        let created = 1.7e9;
        let available = f64::from(workload.available());
        let updated = f64::from(workload.updated());
        let desired = f64::from(workload.replicas);
        let generation = f64::from(workload.generation);
        let observed = f64::from(workload.observed_generation);
        match workload.kind {
            Kind::Deployment => {
                let d = [ns.clone(), ("deployment", workload.name.clone())];
                for (name, value) in [
                    ("kube_deployment_created", created),
                    ("kube_deployment_spec_replicas", desired),
                    (
                        "kube_deployment_status_replicas",
                        workload.pods.len() as f64,
                    ),
                    ("kube_deployment_status_replicas_available", available),
                    ("kube_deployment_status_replicas_updated", updated),
                    ("kube_deployment_metadata_generation", generation),
                    ("kube_deployment_status_observed_generation", observed),
                ] {
                    out.push(sample(name, &d, value));
                }
                for (condition, state) in [
                    ("Available", available >= desired),
                    ("Progressing", workload.progressing),
                ] {
                    for (status, value) in [("true", state), ("false", !state), ("unknown", false)]
                    {
                        let mut labels = d.to_vec();
                        labels.push(("condition", condition.into()));
                        labels.push(("status", status.into()));
                        out.push(sample(
                            "kube_deployment_status_condition",
                            &labels,
                            f64::from(u8::from(value)),
                        ));
                    }
                }
                // The ReplicaSets kept by the revision history: the current one and up to
                // two before it.
                for revision in workload.revision.saturating_sub(2).max(1)..=workload.revision {
                    let rs = [ns.clone(), ("replicaset", workload.replicaset(revision))];
                    out.push(sample("kube_replicaset_created", &rs, created));
                    let mut owner = rs.to_vec();
                    owner.extend([
                        ("owner_kind", "Deployment".to_string()),
                        ("owner_name", workload.name.clone()),
                        ("owner_is_controller", "true".to_string()),
                    ]);
                    out.push(sample("kube_replicaset_owner", &owner, 1.0));
                    let replicas = workload
                        .pods
                        .iter()
                        .filter(|pod| pod.revision == revision)
                        .count() as f64;
                    out.push(sample("kube_replicaset_spec_replicas", &rs, replicas));
                }
            }
            Kind::StatefulSet => {
                let s = [ns.clone(), ("statefulset", workload.name.clone())];
                for (name, value) in [
                    ("kube_statefulset_created", created),
                    ("kube_statefulset_replicas", desired),
                    ("kube_statefulset_status_replicas_ready", available),
                    ("kube_statefulset_status_replicas_updated", updated),
                    ("kube_statefulset_metadata_generation", generation),
                    ("kube_statefulset_status_observed_generation", observed),
                ] {
                    out.push(sample(name, &s, value));
                }
            }
            Kind::DaemonSet => {
                let d = [ns.clone(), ("daemonset", workload.name.clone())];
                for (name, value) in [
                    ("kube_daemonset_created", created),
                    ("kube_daemonset_status_desired_number_scheduled", desired),
                    ("kube_daemonset_status_number_available", available),
                    ("kube_daemonset_status_updated_number_scheduled", updated),
                    ("kube_daemonset_metadata_generation", generation),
                    ("kube_daemonset_status_observed_generation", observed),
                ] {
                    out.push(sample(name, &d, value));
                }
            }
            Kind::CronJob => {
                out.push(sample(
                    "kube_cronjob_created",
                    &[ns.clone(), ("cronjob", workload.name.clone())],
                    created,
                ));
                for job in &workload.jobs {
                    let j = [ns.clone(), ("job_name", job.name.clone())];
                    out.push(sample("kube_job_created", &j, job.created));
                    let mut owner = j.to_vec();
                    owner.extend([
                        ("owner_kind", "CronJob".to_string()),
                        ("owner_name", workload.name.clone()),
                        ("owner_is_controller", "true".to_string()),
                    ]);
                    out.push(sample("kube_job_owner", &owner, 1.0));
                    for (condition, value) in [("true", job.failed), ("false", !job.failed)] {
                        let mut labels = j.to_vec();
                        labels.push(("condition", condition.into()));
                        out.push(sample(
                            "kube_job_failed",
                            &labels,
                            f64::from(u8::from(value)),
                        ));
                    }
                    out.push(sample(
                        "kube_job_status_succeeded",
                        &j,
                        f64::from(u8::from(job.succeeded)),
                    ));
                }
            }
        }
        if let Some(autoscaler) = workload.autoscaler {
            let h = [
                ns.clone(),
                ("horizontalpodautoscaler", workload.name.clone()),
            ];
            let mut info = h.to_vec();
            info.extend([
                ("scaletargetref_api_version", "apps/v1".to_string()),
                ("scaletargetref_kind", format!("{:?}", workload.kind)),
                ("scaletargetref_name", workload.name.clone()),
            ]);
            out.push(sample("kube_horizontalpodautoscaler_info", &info, 1.0));
            for (name, value) in [
                (
                    "kube_horizontalpodautoscaler_spec_min_replicas",
                    f64::from(autoscaler.min),
                ),
                (
                    "kube_horizontalpodautoscaler_spec_max_replicas",
                    f64::from(autoscaler.max),
                ),
                (
                    "kube_horizontalpodautoscaler_status_current_replicas",
                    desired,
                ),
                (
                    "kube_horizontalpodautoscaler_status_desired_replicas",
                    desired,
                ),
            ] {
                out.push(sample(name, &h, value));
            }
        }
        if let Some(min_available) = workload.min_available {
            let p = [ns.clone(), ("poddisruptionbudget", workload.name.clone())];
            let healthy = available;
            for (name, value) in [
                ("kube_poddisruptionbudget_status_current_healthy", healthy),
                (
                    "kube_poddisruptionbudget_status_desired_healthy",
                    f64::from(min_available),
                ),
                ("kube_poddisruptionbudget_status_expected_pods", desired),
                (
                    "kube_poddisruptionbudget_status_pod_disruptions_allowed",
                    (healthy - f64::from(min_available)).max(0.0),
                ),
            ] {
                out.push(sample(name, &p, value));
            }
        }
        for claim in &workload.claims {
            let c = [ns.clone(), ("persistentvolumeclaim", claim.name.clone())];
            let mut info = c.to_vec();
            info.extend([
                ("storageclass", "standard".to_string()),
                ("volumename", format!("pvc-{:08x}", fnv(&claim.name))),
            ]);
            out.push(sample("kube_persistentvolumeclaim_info", &info, 1.0));
            for phase in ["Bound", "Lost", "Pending"] {
                let mut labels = c.to_vec();
                labels.push(("phase", phase.into()));
                out.push(sample(
                    "kube_persistentvolumeclaim_status_phase",
                    &labels,
                    f64::from(u8::from(claim.phase == phase)),
                ));
            }
        }
        for pod in &workload.pods {
            self.pod_series(workload, pod, out);
        }
    }

    fn pod_series(&self, workload: &Workload, pod: &Pod, out: &mut Vec<Sample>) {
        let p = [
            ("namespace", workload.namespace.clone()),
            ("pod", pod.name.clone()),
            ("uid", pod.uid.clone()),
        ];
        if self.unread {
            super::unread::kube_state_pod(&p.to_vec(), &workload.name, &pod.node, out);
        }
        let (owner_kind, owner_name) = match workload.kind {
            Kind::Deployment => ("ReplicaSet", workload.replicaset(pod.revision)),
            Kind::CronJob => ("Job", pod.job.clone().unwrap_or_default()),
            Kind::StatefulSet => ("StatefulSet", workload.name.clone()),
            Kind::DaemonSet => ("DaemonSet", workload.name.clone()),
        };
        let mut info = p.to_vec();
        info.extend([
            ("host_ip", "10.0.0.1".to_string()),
            ("pod_ip", "10.1.0.1".to_string()),
            ("node", pod.node.clone()),
            ("created_by_kind", owner_kind.to_string()),
            ("created_by_name", owner_name.clone()),
            ("priority_class", String::new()),
            ("host_network", "false".to_string()),
        ]);
        out.push(sample("kube_pod_info", &info, 1.0));
        let mut owners = vec![(owner_kind.to_string(), owner_name, "true")];
        if let Some((kind, name)) = &pod.extra_owner {
            owners.push((kind.to_string(), name.clone(), "false"));
        }
        for (kind, name, controller) in owners {
            let mut labels = p.to_vec();
            labels.extend([
                ("owner_kind", kind),
                ("owner_name", name),
                ("owner_is_controller", controller.to_string()),
            ]);
            out.push(sample("kube_pod_owner", &labels, 1.0));
        }
        let mut labels = p.to_vec();
        for (key, value) in &workload.labels {
            if self.label_allowlist.iter().any(|allowed| allowed == key) {
                labels.push((
                    leak(stackgen::labels::kube_state_metrics_label(key)),
                    value.clone(),
                ));
            }
        }
        out.push(sample("kube_pod_labels", &labels, 1.0));
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let mut labels = p.to_vec();
            labels.push(("phase", phase.into()));
            out.push(sample(
                "kube_pod_status_phase",
                &labels,
                f64::from(u8::from(pod.phase == phase)),
            ));
        }
        for (condition, value) in [
            ("true", pod.ready),
            ("false", !pod.ready),
            ("unknown", false),
        ] {
            let mut labels = p.to_vec();
            labels.push(("condition", condition.into()));
            out.push(sample(
                "kube_pod_status_ready",
                &labels,
                f64::from(u8::from(value)),
            ));
        }
        let mut c = p.to_vec();
        c.push(("container", workload.name.clone()));
        out.push(sample(
            "kube_pod_container_status_restarts_total",
            &c,
            f64::from(pod.restarts),
        ));
        if let Some(reason) = pod.waiting {
            let mut labels = c.clone();
            labels.push(("reason", reason.into()));
            out.push(sample(
                "kube_pod_container_status_waiting_reason",
                &labels,
                1.0,
            ));
        }
        if let Some(reason) = pod.last_terminated {
            let mut labels = c.clone();
            labels.push(("reason", reason.into()));
            out.push(sample(
                "kube_pod_container_status_last_terminated_reason",
                &labels,
                1.0,
            ));
        }
        if !matches!(pod.phase, "Succeeded" | "Failed") {
            for (resource, unit, value) in [
                ("cpu", "core", workload.cpu_request),
                ("memory", "byte", workload.memory_request),
            ] {
                let mut labels = c.clone();
                labels.extend([
                    ("node", pod.node.clone()),
                    ("resource", resource.to_string()),
                    ("unit", unit.to_string()),
                ]);
                out.push(sample(
                    "kube_pod_container_resource_requests",
                    &labels,
                    value,
                ));
            }
        }
        if let Some(claim) = pod.claim.map(|c| &workload.claims[c]) {
            let mut labels = p.to_vec();
            labels.extend([
                ("volume", "data".to_string()),
                ("persistentvolumeclaim", claim.name.clone()),
            ]);
            out.push(sample(
                "kube_pod_spec_volumes_persistentvolumeclaims_info",
                &labels,
                1.0,
            ));
        }
    }
}

fn http_metrics(pod: &Pod, out: &mut Vec<Sample>) {
    for (code, value) in [("200", pod.requests_ok), ("500", pod.requests_failed)] {
        out.push(sample(
            "http_requests_total",
            &[("code", code.into()), ("method", "GET".into())],
            value,
        ));
    }
    pod.latency.samples(
        [
            "http_request_duration_seconds_bucket",
            "http_request_duration_seconds_sum",
            "http_request_duration_seconds_count",
        ],
        &[],
        out,
    );
}

/// A gRPC server as go-grpc-prometheus exports it: every call by code, half as many health checks
/// as calls answered (the kubelet's probes, always `OK`), and the handling-time histogram.
fn grpc_metrics(pod: &Pod, out: &mut Vec<Sample>) {
    let call = |service: &str, method: &str, code: &str| {
        vec![
            ("grpc_code", code.to_string()),
            ("grpc_method", method.to_string()),
            ("grpc_service", service.to_string()),
            ("grpc_type", "unary".to_string()),
        ]
    };
    for (labels, value) in [
        (call("search.v1.Search", "Query", "OK"), pod.requests_ok),
        (
            call("search.v1.Search", "Query", "Unavailable"),
            pod.requests_failed,
        ),
        (
            call("grpc.health.v1.Health", "Check", "OK"),
            pod.requests_ok / 2.0,
        ),
    ] {
        out.push(sample("grpc_server_handled_total", &labels, value));
    }
    pod.latency.samples(
        [
            "grpc_server_handling_seconds_bucket",
            "grpc_server_handling_seconds_sum",
            "grpc_server_handling_seconds_count",
        ],
        &[
            ("grpc_method", "Query".to_string()),
            ("grpc_service", "search.v1.Search".to_string()),
            ("grpc_type", "unary".to_string()),
        ],
        out,
    );
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("__meta_kubernetes_{k}"), v.to_string()))
        .collect()
}

fn controller_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Deployment => "ReplicaSet",
        Kind::StatefulSet => "StatefulSet",
        Kind::DaemonSet => "DaemonSet",
        Kind::CronJob => "Job",
    }
}

/// A label key as Kubernetes service discovery writes it into a meta label name.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Label names are `&'static str` in samples; the few computed ones (kube-state-metrics' pod
/// label names) are interned here for the life of the test binary.
pub(super) fn leak(name: String) -> &'static str {
    use std::sync::Mutex;
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|known| **known == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.push(leaked);
    leaked
}

fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// A pod-template-hash as the Deployment controller would give the revision.
fn template_hash(name: &str, revision: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash = fnv(&format!("{name}/{revision}"));
    (0..9)
        .map(|_| {
            let c = ALPHABET[(hash % ALPHABET.len() as u32) as usize] as char;
            hash /= ALPHABET.len() as u32;
            hash = hash.wrapping_mul(2_654_435_761).wrapping_add(7);
            c
        })
        .collect()
}

fn pod_suffix(name: &str, serial: u32) -> String {
    template_hash(name, 1000 + serial)[..5].to_string()
}
