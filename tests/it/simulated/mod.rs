//! The default rules on a simulated cluster: hours of virtual time of a healthy cluster doing
//! what healthy clusters do (a rolling update, a CronJob retried once, a cordoned node rebooted,
//! a service scaled to zero and back), where only the Watchdog may fire, and one scenario per
//! failure class the rules cover, where the class's alert must fire in time, for the team that
//! owns what failed, and nothing unrelated fires.
//!
//! The series are what the real exporters would serve ([`cluster`]), relabelled by the real
//! Prometheus with the rendered scrape configuration, and judged by the rendered rules under
//! `promtool test rules` ([`evaluation`]). The relabelling is captured once for every scenario.

mod cluster;
mod cost;
mod evaluation;
mod unread;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use cluster::{Cluster, DAY, Filesystem, GIB, Kind, STEP_SECONDS, Workload};
use evaluation::{Expected, Firing, Relabelling, Timeline, Universe};

use super::kube_state::rendered_pod_label_allowlist;
use super::support::render_to_temp;

const SPEC: &str = "tests/fixtures/specs/simulated.yaml";
/// When a failure scenario's fault starts: after half an hour of health, when every rule's
/// windows but the multi-hour ones are full.
const AT: f64 = 30.0;
const STEP_MINUTES: f64 = STEP_SECONDS / 60.0;

type Script = Box<dyn Fn(&mut Cluster, f64) + Send + Sync>;

/// A scenario: how long it runs, what happens when, and what must fire when.
struct Scenario {
    name: &'static str,
    /// Whether the scenario starts from the shared healthy half hour before [`AT`].
    fault: bool,
    minutes: f64,
    script: Script,
    checks: Vec<(f64, Firing)>,
}

fn watchdog() -> Expected {
    cluster_wide("Watchdog")
}

/// An alert about a service: it carries the service's namespace, name and team.
fn owned(
    alert: &'static str,
    team: &'static str,
    namespace: &'static str,
    service: &'static str,
) -> Expected {
    Expected {
        alert,
        labels: vec![
            ("namespace", namespace),
            ("service", service),
            ("team", team),
        ],
        count: 1,
        reaches: team,
    }
}

/// An alert about something in `namespace` that no service names: the router gives it to the
/// namespace's owner, or the platform team.
fn in_namespace(alert: &'static str, namespace: &'static str, reaches: &'static str) -> Expected {
    Expected {
        alert,
        labels: vec![("namespace", namespace)],
        count: 1,
        reaches,
    }
}

/// An alert about a node, the control plane or the stack: the platform team's.
fn cluster_wide(alert: &'static str) -> Expected {
    Expected {
        alert,
        labels: Vec::new(),
        count: 1,
        reaches: "platform",
    }
}

impl Expected {
    /// `count` alerts of this kind (one per node, per job, per replica, ...).
    fn times(mut self, count: u32) -> Expected {
        self.count = count;
        self
    }
}

/// A failure from [`AT`] on: before it only the Watchdog fires; `within` minutes after it the
/// Watchdog and exactly `firing`.
fn fault(
    name: &'static str,
    within: f64,
    firing: Firing,
    script: impl Fn(&mut Cluster, f64) + Send + Sync + 'static,
) -> Scenario {
    let mut expected = vec![watchdog()];
    expected.extend(firing);
    Scenario {
        name,
        fault: true,
        minutes: AT + within + 1.0,
        script: Box::new(move |cluster: &mut Cluster, minute: f64| {
            if minute >= AT {
                script(cluster, minute - AT);
            }
        }),
        checks: vec![(AT - 0.5, vec![watchdog()]), (AT + within, expected)],
    }
}

/// Replaces the pods of `workload` by pods of a new revision from `started` on, one every
/// `minutes_per_pod`, surging one pod above the replica count (maxSurge 1, maxUnavailable 0).
fn rolling_update(workload: &mut Workload, started: f64, minute: f64, minutes_per_pod: f64) {
    if minute < started {
        return;
    }
    let target_revision = 2;
    if workload.revision < target_revision {
        workload.revision = target_revision;
        workload.generation += 1;
        workload.observed_generation += 1;
    }
    let replicas = workload.replicas as usize;
    let replaced = (((minute - started) / minutes_per_pod).floor() as usize).min(replicas);
    let wanted_new = (replaced + 1).min(replicas);
    while workload
        .pods
        .iter()
        .filter(|p| p.revision == target_revision)
        .count()
        < wanted_new
    {
        let node = workload
            .pods
            .iter()
            .find(|p| p.revision != target_revision)
            .map_or("node-1".to_string(), |p| p.node.clone());
        let pod = workload.new_pod(&node);
        workload.pods.push(pod);
    }
    while workload
        .pods
        .iter()
        .filter(|p| p.revision != target_revision)
        .count()
        > replicas - replaced
    {
        if let Some(old) = workload
            .pods
            .iter()
            .position(|p| p.revision != target_revision)
        {
            workload.pods.remove(old);
        }
    }
}

/// A run of the CronJob `nightly-report` started at `started`: its first pod fails after two
/// minutes when `retried`, a second pod succeeds three minutes later.
fn report_run(cluster: &mut Cluster, run: &str, started: f64, minute: f64, retried: bool) {
    let workload = cluster.workload("nightly-report");
    if minute < started {
        return;
    }
    if !workload.jobs.iter().any(|job| job.name == run) {
        workload.jobs.push(cluster::Job {
            name: run.to_string(),
            created: 1.7e9 + started * 60.0,
            failed: false,
            succeeded: false,
        });
        let mut pod = workload.new_pod("node-2");
        pod.job = Some(run.to_string());
        workload.pods.push(pod);
    }
    let elapsed = minute - started;
    let pods: Vec<usize> = (0..workload.pods.len())
        .filter(|i| workload.pods[*i].job.as_deref() == Some(run))
        .collect();
    if retried && elapsed >= 2.0 {
        let first = &mut workload.pods[pods[0]];
        first.phase = "Failed";
        first.ready = false;
        if pods.len() == 1 {
            let mut pod = workload.new_pod("node-3");
            pod.job = Some(run.to_string());
            workload.pods.push(pod);
        }
    }
    if elapsed >= if retried { 5.0 } else { 3.0 } {
        if let Some(last) = workload
            .pods
            .iter_mut()
            .filter(|p| p.job.as_deref() == Some(run))
            .last()
        {
            last.phase = "Succeeded";
            last.ready = false;
        }
        if let Some(job) = workload.jobs.iter_mut().find(|job| job.name == run) {
            job.succeeded = true;
        }
    }
}

/// Six hours of a healthy cluster at work.
fn healthy_day() -> Scenario {
    Scenario {
        name: "healthy",
        fault: false,
        minutes: 360.0,
        script: Box::new(|cluster, minute| {
            report_run(cluster, "nightly-report-29010000", 20.0, minute, false);
            report_run(cluster, "nightly-report-29010120", 140.0, minute, true);
            rolling_update(cluster.workload("checkout"), 60.0, minute, 2.0);
            rolling_update(cluster.workload("ledger-db"), 100.0, minute, 3.0);
            // node-3 cordoned, drained (all but its DaemonSets' pods move), upgraded and
            // rebooted (Not Ready for 25 minutes), uncordoned.
            let maintenance = (150.0..=200.0).contains(&minute);
            let rebooting = (160.0..185.0).contains(&minute);
            let node = cluster.node("node-3");
            node.unschedulable = maintenance;
            node.ready = !rebooting;
            node.kubelet_up = !rebooting;
            for workload in &mut cluster.workloads {
                let drained = workload.kind != Kind::DaemonSet;
                for pod in &mut workload.pods {
                    if pod.node == "node-3" && maintenance && drained {
                        pod.node = "node-1".into();
                    }
                    if pod.node == "node-3" {
                        pod.answers = !rebooting;
                        pod.ready = !rebooting && pod.phase == "Running";
                    }
                }
            }
            // The indexer scaled to zero between batches.
            let indexer = cluster.workload("indexer");
            if (240.0..300.0).contains(&minute) {
                indexer.replicas = 0;
                indexer.pods.clear();
            } else if minute >= 300.0 && indexer.pods.is_empty() {
                indexer.replicas = 1;
                let pod = indexer.new_pod("node-2");
                indexer.pods.push(pod);
            }
        }),
        checks: (1..=36)
            .map(|tenth| (f64::from(tenth) * 10.0, vec![watchdog()]))
            .collect(),
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        healthy_day(),
        fault(
            "crash_looping_database",
            22.0,
            vec![
                // Down and missing: the critical one inhibits the warning in Alertmanager, and
                // the router folds all four into the service's one incident.
                owned(
                    "ServiceTargetsPartiallyDown",
                    "payments",
                    "shop",
                    "ledger-db",
                ),
                owned("KubeWorkloadCrashLooping", "payments", "shop", "ledger-db"),
                owned("KubeWorkloadUnavailable", "payments", "shop", "ledger-db"),
                owned(
                    "KubeStatefulSetReplicasUnavailable",
                    "payments",
                    "shop",
                    "ledger-db",
                ),
                owned("ServiceTargetsDown", "payments", "shop", "ledger-db"),
            ],
            |cluster, elapsed| {
                let pod = &mut cluster.workload("ledger-db").pods[0];
                pod.waiting = Some("CrashLoopBackOff");
                pod.last_terminated = Some("Error");
                pod.ready = false;
                pod.answers = false;
                pod.restarts = 1 + (elapsed / 5.0) as u32;
            },
        ),
        fault(
            "image_pull_back_off",
            27.0,
            vec![
                owned(
                    "KubeWorkloadContainersWaiting",
                    "search",
                    "search",
                    "search-api",
                ),
                owned("KubeWorkloadRolloutStuck", "search", "search", "search-api"),
            ],
            |cluster, elapsed| {
                let workload = cluster.workload("search-api");
                if workload.revision == 1 {
                    workload.revision = 2;
                    workload.generation = 2;
                    workload.observed_generation = 2;
                    let mut pod = workload.new_pod("node-1");
                    pod.phase = "Pending";
                    pod.ready = false;
                    workload.pods.push(pod);
                }
                let new = workload.pods.iter_mut().find(|p| p.revision == 2);
                if let Some(pod) = new {
                    pod.waiting = Some(if elapsed < 1.0 {
                        "ErrImagePull"
                    } else {
                        "ImagePullBackOff"
                    });
                }
                // The Deployment's progress deadline (10 minutes) passes.
                workload.progressing = elapsed < 10.0;
            },
        ),
        fault(
            "oom_killed",
            5.0,
            vec![owned(
                "KubeWorkloadOOMKilled",
                "payments",
                "shop",
                "checkout",
            )],
            |cluster, _| {
                let pod = &mut cluster.workload("checkout").pods[1];
                pod.restarts = 1;
                pod.last_terminated = Some("OOMKilled");
            },
        ),
        fault(
            "restarting",
            32.0,
            vec![owned(
                "KubeWorkloadRestarting",
                "payments",
                "shop",
                "checkout",
            )],
            |cluster, elapsed| {
                // A liveness probe kills one pod every three minutes; it comes back at once.
                cluster.workload("checkout").pods[0].restarts = 1 + (elapsed / 3.0) as u32;
            },
        ),
        fault(
            "deployment_replicas_missing",
            17.0,
            vec![
                owned(
                    "KubeDeploymentReplicasUnavailable",
                    "payments",
                    "shop",
                    "checkout",
                ),
                owned(
                    "ServiceTargetsPartiallyDown",
                    "payments",
                    "shop",
                    "checkout",
                ),
            ],
            |cluster, _| {
                // One pod unschedulable after its node went away.
                let pod = &mut cluster.workload("checkout").pods[2];
                pod.phase = "Pending";
                pod.ready = false;
            },
        ),
        fault(
            "daemonset_pod_missing",
            17.0,
            vec![in_namespace(
                "KubeDaemonSetReplicasUnavailable",
                "logging",
                "platform",
            )],
            |cluster, _| {
                let pod = &mut cluster.workload("log-agent").pods[1];
                pod.ready = false;
            },
        ),
        fault(
            "hpa_at_maximum",
            17.0,
            vec![owned("KubeHpaMaxedOut", "payments", "shop", "checkout")],
            |cluster, _| {
                let workload = cluster.workload("checkout");
                while workload.pods.len() < 6 {
                    let pod = workload.new_pod("node-4");
                    workload.pods.push(pod);
                }
                workload.replicas = 6;
            },
        ),
        fault(
            "pod_disruption_budget_short",
            17.0,
            vec![
                in_namespace("KubePdbNotEnoughHealthyPods", "shop", "payments"),
                owned(
                    "KubeDeploymentReplicasUnavailable",
                    "payments",
                    "shop",
                    "checkout",
                ),
            ],
            |cluster, _| {
                for pod in &mut cluster.workload("checkout").pods[1..] {
                    pod.ready = false;
                }
            },
        ),
        fault(
            "job_failed",
            8.0,
            vec![in_namespace("KubeJobFailed", "shop", "payments")],
            |cluster, elapsed| {
                report_run(cluster, "nightly-report-29010060", 0.0, elapsed, false);
                let workload = cluster.workload("nightly-report");
                for pod in &mut workload.pods {
                    pod.phase = "Failed";
                }
                if elapsed >= 4.0 {
                    for job in &mut workload.jobs {
                        job.succeeded = false;
                        job.failed = true;
                    }
                }
            },
        ),
        fault(
            "cpu_throttled",
            22.0,
            vec![owned(
                "KubeWorkloadCPUThrottled",
                "search",
                "search",
                "search-api",
            )],
            |cluster, _| {
                for pod in &mut cluster.workload("search-api").pods {
                    pod.throttled_ratio = 0.6;
                }
            },
        ),
        fault(
            "requests_overcommitted",
            12.0,
            vec![cluster_wide("KubeResourceOvercommit")],
            |cluster, _| {
                cluster.workload("checkout").cpu_request = 3.5;
            },
        ),
        fault(
            "quota_almost_full",
            17.0,
            vec![in_namespace("KubeQuotaAlmostFull", "shop", "payments")],
            |cluster, _| {
                cluster.quotas[0].resources[0].1 = 7.6;
            },
        ),
        fault(
            "volume_filling",
            12.0,
            vec![owned(
                "KubePersistentVolumeFillingUp",
                "payments",
                "shop",
                "ledger-db",
            )],
            |cluster, _| {
                let volume = &mut cluster.workload("ledger-db").claims[0].volume;
                volume.available_bytes = volume.size_bytes * 0.06;
            },
        ),
        fault(
            "volume_inodes_running_out",
            12.0,
            vec![owned(
                "KubePersistentVolumeInodesFillingUp",
                "payments",
                "shop",
                "ledger-db",
            )],
            |cluster, _| {
                let volume = &mut cluster.workload("ledger-db").claims[0].volume;
                volume.inodes_free = volume.inodes * 0.02;
            },
        ),
        fault(
            "volume_claim_pending",
            17.0,
            vec![
                owned(
                    "KubePersistentVolumeClaimPending",
                    "payments",
                    "shop",
                    "ledger-db",
                ),
                owned(
                    "KubeStatefulSetReplicasUnavailable",
                    "payments",
                    "shop",
                    "ledger-db",
                ),
                owned(
                    "ServiceTargetsPartiallyDown",
                    "payments",
                    "shop",
                    "ledger-db",
                ),
                // One of the two replicas it should have is missing: half the service.
                owned("ServiceTargetsDown", "payments", "shop", "ledger-db"),
            ],
            |cluster, _| {
                let workload = cluster.workload("ledger-db");
                if workload.replicas == 1 {
                    workload.replicas = 2;
                    let mut pod = workload.new_pod("node-4");
                    pod.phase = "Pending";
                    pod.ready = false;
                    workload.claims.push(cluster::Claim {
                        name: format!("data-{}", pod.name),
                        phase: "Pending",
                        volume: Filesystem::with_room(20.0 * GIB, 0.0),
                    });
                    pod.claim = Some(workload.claims.len() - 1);
                    workload.pods.push(pod);
                }
            },
        ),
        fault(
            "node_not_ready",
            17.0,
            vec![
                cluster_wide("KubeNodeNotReady"),
                // alertmanager-1 stays bound to the lost node until someone deletes it there;
                // the DaemonSets' pods on it are the node's failure, not theirs.
                in_namespace(
                    "KubeStatefulSetReplicasUnavailable",
                    "monitoring",
                    "platform",
                ),
            ],
            |cluster, elapsed| {
                let node = cluster.node("node-4");
                node.ready = false;
                node.kubelet_up = false;
                for workload in &mut cluster.workloads {
                    let kind = workload.kind;
                    for pod in &mut workload.pods {
                        if pod.node == "node-4" {
                            pod.ready = false;
                            pod.answers = false;
                            // Evicted after five minutes and scheduled elsewhere.
                            if elapsed >= 5.0 && kind == Kind::Deployment {
                                pod.node = "node-1".into();
                                pod.ready = true;
                                pod.answers = true;
                            }
                        }
                    }
                }
            },
        ),
        fault(
            "node_readiness_flapping",
            32.0,
            vec![cluster_wide("KubeNodeReadinessFlapping")],
            |cluster, elapsed| {
                cluster.node("node-2").ready = (elapsed / 2.0) as u32 % 2 == 1;
            },
        ),
        fault(
            "node_under_pressure",
            12.0,
            vec![cluster_wide("KubeNodePressure")],
            |cluster, _| {
                cluster.node("node-2").pressure = Some("DiskPressure");
            },
        ),
        fault(
            "kubelet_endpoint_down",
            17.0,
            vec![cluster_wide("KubeletTargetDown").times(2)],
            |cluster, _| {
                cluster.node("node-2").kubelet_up = false;
            },
        ),
        fault(
            "kubelet_too_many_pods",
            17.0,
            vec![cluster_wide("KubeletTooManyPods")],
            |cluster, _| {
                cluster.node("node-2").pod_capacity = 5;
            },
        ),
        fault(
            "kubelet_certificate_expiring",
            62.0,
            vec![cluster_wide("KubeletClientCertificateExpiring")],
            |cluster, _| {
                let now = cluster.now;
                let node = cluster.node("node-3");
                if node.client_certificate_expires > now + 30.0 * DAY {
                    node.client_certificate_expires = now + 5.0 * DAY;
                }
            },
        ),
        fault(
            "kubelet_pleg_slow",
            12.0,
            vec![cluster_wide("KubeletPlegDurationHigh")],
            |cluster, _| {
                cluster.node("node-2").pleg_relist_seconds = 12.0;
            },
        ),
        fault(
            "api_server_down",
            7.0,
            vec![cluster_wide("KubeAPIServerDown")],
            |cluster, _| cluster.api.answers = false,
        ),
        fault(
            "api_server_errors",
            17.0,
            vec![cluster_wide("KubeAPIServerErrors")],
            |cluster, _| cluster.api.error_ratio = 0.1,
        ),
        fault(
            "api_server_slow",
            22.0,
            vec![cluster_wide("KubeAPIServerLatencyHigh")],
            |cluster, _| cluster.api.latency_seconds = 3.0,
        ),
        fault(
            "aggregated_api_down",
            12.0,
            vec![cluster_wide("KubeAggregatedAPIDown")],
            |cluster, _| cluster.api.aggregated_api_down = true,
        ),
        fault(
            "node_filesystem_filling",
            62.0,
            vec![cluster_wide("NodeFilesystemFillingUp")],
            |cluster, elapsed| {
                let root = &mut cluster.node("node-2").root;
                if elapsed == 0.0 {
                    root.available_bytes = root.size_bytes * 0.19;
                }
                // Full in about ten hours.
                root.fill_bytes_per_second = root.size_bytes * 0.19 / 36_000.0;
            },
        ),
        fault(
            "node_filesystem_almost_full",
            32.0,
            vec![cluster_wide("NodeFilesystemAlmostFull")],
            |cluster, _| {
                let root = &mut cluster.node("node-2").root;
                root.available_bytes = root.size_bytes * 0.04;
            },
        ),
        fault(
            "node_inodes_running_out",
            32.0,
            vec![cluster_wide("NodeFilesystemFilesFillingUp")],
            |cluster, _| {
                let root = &mut cluster.node("node-2").root;
                root.inodes_free = root.inodes * 0.03;
            },
        ),
        fault(
            "node_network_errors",
            22.0,
            vec![cluster_wide("NodeNetworkErrors")],
            |cluster, _| cluster.node("node-1").network_errors_per_second = 20.0,
        ),
        fault(
            "node_conntrack_full",
            12.0,
            vec![cluster_wide("NodeConntrackAlmostFull")],
            |cluster, _| cluster.node("node-1").conntrack_entries = 120_000.0,
        ),
        fault(
            "node_clock_not_synchronised",
            17.0,
            vec![cluster_wide("NodeClockNotSynchronising")],
            |cluster, _| {
                let node = cluster.node("node-1");
                node.clock_synchronised = false;
                node.clock_offset_seconds = 0.2;
            },
        ),
        fault(
            "node_file_descriptors",
            17.0,
            vec![cluster_wide("NodeFileDescriptorsAlmostExhausted")],
            |cluster, _| cluster.node("node-1").file_descriptors = 950_000.0,
        ),
        fault(
            "kube_state_metrics_down",
            7.0,
            vec![cluster_wide("KubeStateMetricsDown")],
            |cluster, _| cluster.workload("kube-state-metrics").pods[0].answers = false,
        ),
        fault(
            "node_exporter_unreachable",
            7.0,
            vec![cluster_wide("NodeExporterDown")],
            |cluster, _| {
                for pod in &mut cluster.workload("node-exporter").pods {
                    pod.answers = false;
                }
            },
        ),
        fault(
            "kubelets_unreachable",
            12.0,
            vec![cluster_wide("KubeletDown").times(2)],
            |cluster, _| {
                for node in &mut cluster.nodes {
                    node.kubelet_up = false;
                }
            },
        ),
        fault(
            "service_targets_down",
            7.0,
            vec![owned("ServiceTargetsDown", "payments", "shop", "checkout")],
            |cluster, _| {
                for pod in &mut cluster.workload("checkout").pods[1..] {
                    pod.answers = false;
                }
            },
        ),
        fault(
            "service_targets_partially_down",
            17.0,
            vec![owned(
                "ServiceTargetsPartiallyDown",
                "payments",
                "shop",
                "checkout",
            )],
            |cluster, _| cluster.workload("checkout").pods[2].answers = false,
        ),
        fault(
            "service_vanished_without_kube_state_metrics",
            12.0,
            vec![
                owned("ServiceTargetsVanished", "search", "search", "search-api"),
                cluster_wide("KubeStateMetricsDown"),
            ],
            |cluster, _| {
                cluster.workload("kube-state-metrics").pods[0].answers = false;
                let workload = cluster.workload("search-api");
                workload.pods.clear();
            },
        ),
        fault(
            "service_errors",
            12.0,
            vec![owned(
                "ServiceHighErrorRate",
                "payments",
                "shop",
                "checkout",
            )],
            |cluster, _| cluster.workload("checkout").traffic.error_ratio = 0.2,
        ),
        fault(
            "service_slow",
            17.0,
            vec![owned(
                "ServiceHighLatency",
                "search",
                "search",
                "search-api",
            )],
            |cluster, _| cluster.workload("search-api").traffic.latency_seconds = 3.0,
        ),
        fault(
            "prometheus_config_reload_failed",
            12.0,
            vec![in_namespace("PrometheusConfigReloadFailed", "monitoring", "platform").times(2)],
            |cluster, _| cluster.stack.prometheus_config_reloaded = false,
        ),
        fault(
            "prometheus_rule_failures",
            17.0,
            vec![
                in_namespace("PrometheusRuleEvaluationFailures", "monitoring", "platform").times(2),
            ],
            |cluster, _| cluster.stack.rule_failures_per_second = 0.1,
        ),
        fault(
            "prometheus_notifications_failing",
            22.0,
            vec![in_namespace("PrometheusNotificationsFailing", "monitoring", "platform").times(2)],
            |cluster, _| cluster.stack.notification_error_ratio = 0.5,
        ),
        fault(
            "prometheus_without_alertmanagers",
            12.0,
            vec![
                in_namespace(
                    "PrometheusNotConnectedToAlertmanagers",
                    "monitoring",
                    "platform",
                )
                .times(2),
            ],
            |cluster, _| cluster.stack.alertmanagers_discovered = 0,
        ),
        fault(
            "prometheus_compactions_failing",
            17.0,
            vec![
                in_namespace("PrometheusTSDBCompactionsFailing", "monitoring", "platform").times(2),
            ],
            |cluster, _| cluster.stack.compactions_failing = true,
        ),
        fault(
            "prometheus_evaluations_missed",
            17.0,
            vec![
                in_namespace(
                    "PrometheusRuleGroupsMissingEvaluations",
                    "monitoring",
                    "platform",
                )
                .times(2),
            ],
            |cluster, _| cluster.stack.evaluations_missed_per_second = 0.05,
        ),
        fault(
            "prometheus_retention_cut_short",
            62.0,
            vec![in_namespace("PrometheusRetentionCutShort", "monitoring", "platform").times(2)],
            |cluster, elapsed| {
                let stack = &mut cluster.stack;
                // The volume is full: size-based retention deletes blocks after 2 days of data.
                stack.size_retention_cuts_per_second = 1.0 / 7200.0;
                stack.lowest_timestamp = cluster.now - 2.0 * DAY - elapsed;
            },
        ),
        fault(
            "alertmanager_notifications_failing",
            12.0,
            vec![in_namespace(
                "AlertmanagerNotificationsFailing",
                "monitoring",
                "platform",
            )],
            |cluster, _| cluster.stack.alertmanager_failure_ratio = 0.5,
        ),
        fault(
            "alertmanager_peers_missing",
            17.0,
            vec![in_namespace(
                "AlertmanagerClusterPeersMissing",
                "monitoring",
                "platform",
            )],
            |cluster, _| cluster.stack.alertmanager_members_seen = 1,
        ),
        fault(
            "alertmanager_config_reload_failed",
            12.0,
            vec![in_namespace("AlertmanagerConfigReloadFailed", "monitoring", "platform").times(2)],
            |cluster, _| cluster.stack.alertmanager_config_reloaded = false,
        ),
        fault(
            "router_deliveries_failing",
            27.0,
            vec![Expected {
                labels: vec![("namespace", "monitoring"), ("team", "payments")],
                reaches: "payments",
                ..in_namespace("StackgenRouterDeliveriesFailing", "monitoring", "platform")
            }],
            |cluster, _| {
                cluster.stack.router_delivering = false;
                cluster.stack.router_retries_per_second = 0.1;
            },
        ),
        fault(
            "router_notifications_dead",
            3.0,
            vec![Expected {
                labels: vec![("namespace", "monitoring"), ("team", "payments")],
                reaches: "payments",
                ..in_namespace("StackgenRouterNotificationsDead", "monitoring", "platform")
            }],
            |cluster, _| cluster.stack.router_dead_per_second = 0.01,
        ),
        fault(
            "router_queue_backing_up",
            17.0,
            vec![in_namespace(
                "StackgenRouterQueueBackingUp",
                "monitoring",
                "platform",
            )],
            |cluster, _| cluster.stack.router_pending = 500.0,
        ),
        fault(
            "router_unroutable",
            3.0,
            vec![in_namespace(
                "StackgenRouterUnroutable",
                "monitoring",
                "platform",
            )],
            |cluster, _| cluster.stack.router_unroutable_per_second = 0.01,
        ),
        fault(
            "job_pod_unschedulable",
            17.0,
            vec![in_namespace("KubeWorkloadPodsNotReady", "shop", "payments")],
            |cluster, _| {
                report_run(cluster, "nightly-report-29010090", 0.0, 0.0, false);
                // No node has room for it.
                if let Some(pod) = cluster.workload("nightly-report").pods.last_mut() {
                    pod.phase = "Pending";
                    pod.ready = false;
                }
            },
        ),
        fault(
            "router_deleted",
            12.0,
            vec![cluster_wide("StackgenRouterMissing")],
            |cluster, _| cluster.workloads.retain(|w| w.name != "stackgen-router"),
        ),
        fault(
            "router_unreachable",
            7.0,
            vec![in_namespace("StackgenRouterDown", "monitoring", "platform")],
            |cluster, _| cluster.workload("stackgen-router").pods[0].answers = false,
        ),
    ]
}

/// Everything the scenarios share: the rendered stack, each scenario's timeline and the
/// relabelling the real Prometheus applied to all of them.
struct Simulation {
    _dir: tempfile::TempDir,
    out: PathBuf,
    timelines: BTreeMap<&'static str, Timeline>,
    checks: BTreeMap<&'static str, Vec<(f64, Firing)>>,
    relabelling: Relabelling,
}

fn simulation() -> &'static Simulation {
    static SIMULATION: OnceLock<Simulation> = OnceLock::new();
    SIMULATION.get_or_init(|| {
        let (dir, out) = render_to_temp(SPEC);
        let allowlist = rendered_pod_label_allowlist(&out);
        let mut universe = Universe::default();
        let mut timelines = BTreeMap::new();
        let mut checks = BTreeMap::new();
        // Every failure scenario shares the healthy half hour before its fault.
        let (baseline, at_fault) = evaluation::record(
            &mut universe,
            Cluster::healthy(allowlist.clone()),
            None,
            AT - STEP_MINUTES,
            &|_, _| {},
        );
        for scenario in scenarios() {
            let (timeline, _) = if scenario.fault {
                evaluation::record(
                    &mut universe,
                    at_fault.clone(),
                    Some(&baseline),
                    scenario.minutes,
                    &*scenario.script,
                )
            } else {
                evaluation::record(
                    &mut universe,
                    Cluster::healthy(allowlist.clone()),
                    None,
                    scenario.minutes,
                    &*scenario.script,
                )
            };
            timelines.insert(scenario.name, timeline);
            checks.insert(scenario.name, scenario.checks);
        }
        let capture = dir.path().join("capture");
        std::fs::create_dir_all(&capture).expect("capture dir");
        let relabelling = Relabelling::capture(&out, &capture, universe);
        Simulation {
            _dir: dir,
            out,
            timelines,
            checks,
            relabelling,
        }
    })
}

/// Runs scenario `name` through promtool, and checks that the router gives each alert the
/// scenario expects to the team it names.
fn check(name: &str) {
    let simulation = simulation();
    let dir = tempfile::tempdir().expect("temp dir");
    let timeline = simulation
        .timelines
        .get(name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let checks = &simulation.checks[name];
    let ownership = rendered_ownership(&simulation.out);
    for expected in checks.iter().flat_map(|(_, firing)| firing) {
        let mut labels: stackgen::router::alert::Labels = expected
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("alertname".into(), expected.alert.into());
        labels.insert("cluster".into(), "sim".into());
        let update = stackgen::router::alert::AlertUpdate {
            fingerprint: 1,
            labels,
            annotations: Default::default(),
            firing: true,
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
            alertmanager_url: String::new(),
        };
        let classified = stackgen::router::ownership::classify(update, &ownership);
        assert_eq!(
            classified.team, expected.reaches,
            "scenario {name}: the router gives {expected:?} to {}",
            classified.team
        );
    }
    evaluation::promtool_test(
        name,
        &simulation.out,
        dir.path(),
        timeline,
        &simulation.relabelling,
        checks,
    );
}

/// The ownership map of the rendered router configuration.
fn rendered_ownership(out: &std::path::Path) -> stackgen::router::ownership::Ownership {
    let path = out.join("router/router.yaml");
    let source = std::fs::read_to_string(&path).expect("rendered router.yaml");
    match stackgen::router::config::parse(&path.display().to_string(), &source, out) {
        Ok(config) => config.ownership,
        Err(errors) => panic!("the rendered router.yaml does not load: {errors:?}"),
    }
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        /// Every scenario has its test.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenario_tests!(
    healthy,
    crash_looping_database,
    image_pull_back_off,
    oom_killed,
    restarting,
    deployment_replicas_missing,
    daemonset_pod_missing,
    hpa_at_maximum,
    pod_disruption_budget_short,
    job_failed,
    cpu_throttled,
    requests_overcommitted,
    quota_almost_full,
    volume_filling,
    volume_inodes_running_out,
    volume_claim_pending,
    node_not_ready,
    node_readiness_flapping,
    node_under_pressure,
    kubelet_endpoint_down,
    kubelet_too_many_pods,
    kubelet_certificate_expiring,
    kubelet_pleg_slow,
    api_server_down,
    api_server_errors,
    api_server_slow,
    aggregated_api_down,
    node_filesystem_filling,
    node_filesystem_almost_full,
    node_inodes_running_out,
    node_network_errors,
    node_conntrack_full,
    node_clock_not_synchronised,
    node_file_descriptors,
    kube_state_metrics_down,
    node_exporter_unreachable,
    kubelets_unreachable,
    service_targets_down,
    service_targets_partially_down,
    service_vanished_without_kube_state_metrics,
    service_errors,
    service_slow,
    prometheus_config_reload_failed,
    prometheus_rule_failures,
    prometheus_notifications_failing,
    prometheus_without_alertmanagers,
    prometheus_compactions_failing,
    prometheus_evaluations_missed,
    prometheus_retention_cut_short,
    alertmanager_notifications_failing,
    alertmanager_peers_missing,
    alertmanager_config_reload_failed,
    router_deliveries_failing,
    router_notifications_dead,
    router_queue_backing_up,
    router_unroutable,
    router_unreachable,
    job_pod_unschedulable,
    router_deleted,
);

#[test]
fn every_scenario_has_a_test_and_every_test_a_scenario() {
    let names: Vec<&str> = scenarios().iter().map(|s| s.name).collect();
    let mut tested = TESTED.to_vec();
    tested.sort_unstable();
    let mut listed = names.clone();
    listed.sort_unstable();
    assert_eq!(listed, tested);
}

/// The rendered rules: (alert or record name, expression), file by file.
fn rendered_rules(out: &std::path::Path) -> Vec<(String, bool, String)> {
    let mut rules = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("prometheus/rules"))
        .expect("rendered rules")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("rule file");
        let documents = yaml_rust2::YamlLoader::load_from_str(&text).expect("rule file parses");
        for group in documents[0]["groups"].as_vec().into_iter().flatten() {
            for rule in group["rules"].as_vec().into_iter().flatten() {
                let (name, alert) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                    (Some(alert), _) => (alert, true),
                    (None, Some(record)) => (record, false),
                    _ => continue,
                };
                let expr = rule["expr"].as_str().unwrap_or_default();
                rules.push((name.to_string(), alert, expr.to_string()));
            }
        }
    }
    rules
}

/// Silence on the healthy cluster means something only if the rules have their data: every
/// metric a rendered rule reads is one the simulated exporters serve and the rendered
/// relabelling keeps.
#[test]
fn the_simulated_exporters_serve_every_metric_the_rendered_rules_read() {
    let simulation = simulation();
    let stored = simulation.relabelling.stored_names();
    let rules = rendered_rules(&simulation.out);
    let recorded: std::collections::BTreeSet<&str> = rules
        .iter()
        .filter(|(_, alert, _)| !alert)
        .map(|(name, _, _)| name.as_str())
        .collect();
    let mut missing = Vec::new();
    for (name, _, expr) in &rules {
        let parsed =
            stackgen::rules::promql::parse(expr).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for metric in stackgen::rules::promql::metric_names(&parsed) {
            if !recorded.contains(metric.as_str()) && !stored.contains(&metric) {
                missing.push(format!("{metric} (read by {name})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the simulation serves none of: {missing:#?}"
    );
}

/// Every default alert is proven to fire by some scenario (the Watchdog by all of them).
#[test]
fn every_rendered_alert_fires_in_some_scenario() {
    let simulation = simulation();
    let expected: std::collections::BTreeSet<&str> = simulation
        .checks
        .values()
        .flatten()
        .flat_map(|(_, firing)| firing.iter().map(|e| e.alert))
        .collect();
    let unproven: Vec<String> = rendered_rules(&simulation.out)
        .into_iter()
        .filter(|(name, alert, _)| *alert && !expected.contains(name.as_str()))
        .map(|(name, _, _)| name)
        .collect();
    assert!(
        unproven.is_empty(),
        "no scenario makes these alerts fire: {unproven:#?}"
    );
}
