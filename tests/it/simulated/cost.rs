//! What the rendered rules cost the real Prometheus on a large simulated cluster: a benchmark,
//! ignored by the suite and run by `bench/rule-cost.sh`.
//!
//! The healthy cluster of the scenarios grows to `STACKGEN_BENCH_NODES` nodes (default 100) and
//! about `STACKGEN_BENCH_PODS` pods (default 5,000), spread over the services of the spec at
//! `STACKGEN_BENCH_SPEC`; its exporters serve a steady state (every counter counting at its
//! simulated rate) to the real Prometheus, which scrapes them through the rendered relabelling
//! and evaluates the rendered rules (or, with `STACKGEN_BENCH_OUT`, the stack another build
//! rendered from the same spec). After `STACKGEN_BENCH_WARMUP` seconds (default 330: every
//! 5-minute window full) it reads `STACKGEN_BENCH_READINGS` evaluations (default 8) of every rule
//! group (one of a group evaluated less often) from Prometheus' own metrics, and writes the
//! figures as JSON to `STACKGEN_BENCH_RESULT`: head series, samples per scrape cycle by job (as
//! scraped and as kept after `metric_relabel_configs`), Prometheus' resident memory, and the
//! evaluation time of every rule group. Prometheus scrapes and evaluates every
//! `STACKGEN_BENCH_INTERVAL` seconds (default 15). With `STACKGEN_BENCH_UNREAD=1` (the default) the
//! exporters also serve the families real ones serve that the stack reads nothing of (`unread`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::{Cluster, GIB, Kind, STEP_SECONDS, Serves, Workload};
use super::evaluation::{Universe, get_json, record, serve_steady, start_prometheus};
use crate::kube_state::pod_label_allowlist;
use crate::support::{stackgen, stderr, wait_explained};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|text| {
            text.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number: {text}"))
        })
        .unwrap_or(default)
}

/// The healthy cluster with `nodes` nodes and, besides the stack and its DaemonSets, the pods of
/// `spec`'s services, `pods` in all.
fn large_cluster(
    spec: &stackgen::spec::Spec,
    allowlist: Vec<String>,
    nodes: usize,
    pods: usize,
) -> Cluster {
    let mut cluster = Cluster::healthy(allowlist);
    let names: Vec<String> = (1..=nodes).map(|n| format!("node-{n}")).collect();
    for name in names.iter().skip(cluster.nodes.len()) {
        cluster.nodes.push(super::cluster::Node::new(name));
    }
    for node in &mut cluster.nodes {
        node.cpu_cores = 32.0;
        node.memory_bytes = 128.0 * GIB;
    }
    for workload in &mut cluster.workloads {
        if workload.kind != Kind::DaemonSet {
            continue;
        }
        let covered: Vec<String> = workload.pods.iter().map(|p| p.node.clone()).collect();
        for name in names.iter().filter(|n| !covered.contains(n)) {
            let pod = workload.new_pod(name);
            workload.pods.push(pod);
        }
        workload.replicas = workload.pods.len() as u32;
    }
    let existing: usize = cluster.workloads.iter().map(|w| w.pods.len()).sum();
    let services = spec.services.len().max(1);
    let per_service = pods.saturating_sub(existing).div_ceil(services) as u32;
    let node_names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (index, service) in spec.services.iter().enumerate() {
        let labels: Vec<(&str, &str)> = service
            .selector
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (port_name, port_number) = match &service.port {
            stackgen::spec::Port::Name(name) => (name.clone(), 8080),
            stackgen::spec::Port::Number(number) => ("http".to_string(), *number),
        };
        // Each service starts on its own node, so the pods spread evenly.
        let mut spread = node_names.clone();
        spread.rotate_left(index % node_names.len());
        cluster.workloads.push(
            Workload::new(&service.namespace, &service.name, Kind::Deployment, &labels)
                .port(&port_name, port_number, Serves::Http)
                .run(per_service, &spread, None),
        );
    }
    cluster
}

/// Every `name{labels} value` line of Prometheus' own `/metrics` with this name, by its
/// `rule_group` label.
fn per_rule_group(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix("{rule_group=\""))
        .filter_map(|rest| {
            let (group, value) = rest.split_once("\"} ")?;
            Some((group.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[test]
#[ignore = "a benchmark of several minutes: bench/rule-cost.sh runs it"]
fn rule_evaluation_cost_on_a_large_cluster() {
    let spec_path = PathBuf::from(
        std::env::var("STACKGEN_BENCH_SPEC").expect("STACKGEN_BENCH_SPEC: the benchmark's spec"),
    );
    let nodes = setting("STACKGEN_BENCH_NODES", 100) as usize;
    let pods = setting("STACKGEN_BENCH_PODS", 5_000) as usize;
    let warmup = Duration::from_secs(setting("STACKGEN_BENCH_WARMUP", 330));
    let readings = setting("STACKGEN_BENCH_READINGS", 8) as usize;
    // Prometheus scrapes and evaluates at this interval.
    let interval_seconds = setting("STACKGEN_BENCH_INTERVAL", 15);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = match std::env::var_os("STACKGEN_BENCH_OUT") {
        Some(out) => PathBuf::from(out),
        None => {
            let out = dir.path().join("out");
            let rendered = stackgen(&[
                "render",
                spec_path.to_str().expect("utf-8 path"),
                "--out",
                out.to_str().expect("utf-8 path"),
            ]);
            assert!(rendered.status.success(), "{}", stderr(&rendered));
            out
        }
    };
    let spec = stackgen::spec::load(&spec_path).expect("the benchmark's spec loads");
    // A stack that predates the allowlist: kube-state-metrics exports no pod label.
    let allowlist = pod_label_allowlist(&out).unwrap_or_default();
    let mut cluster = large_cluster(&spec, allowlist, nodes, pods);
    cluster.unread = setting("STACKGEN_BENCH_UNREAD", 1) == 1;
    let pod_count: usize = cluster.workloads.iter().map(|w| w.pods.len()).sum();

    let mut universe = Universe::default();
    let (timeline, _) = record(
        &mut universe,
        cluster,
        None,
        STEP_SECONDS / 60.0,
        &|_, _| {},
    );
    let universe = Arc::new(universe);
    let exporters = serve_steady(universe.clone(), &timeline);
    let prometheus = start_prometheus(
        &out,
        dir.path(),
        &universe,
        exporters.port,
        &format!("{interval_seconds}s"),
        Some(&out.join("prometheus/rules")),
    );
    let metrics = || {
        ureq::get(&prometheus.url("/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    };
    let began = Instant::now();
    wait_explained(
        "the warm-up, every rule group evaluated",
        warmup + Duration::from_secs(120),
        || {
            let groups = per_rule_group(&metrics(), "prometheus_rule_group_last_duration_seconds");
            began.elapsed() >= warmup && !groups.is_empty()
        },
        || prometheus.log(),
    );

    // One reading per evaluation: wait for every group's last evaluation to move on.
    let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut last_evaluation = BTreeMap::new();
    let mut samples = BTreeMap::new();
    // Groups evaluated less often than the others (every 5 minutes) give one reading.
    let intervals = per_rule_group(&metrics(), "prometheus_rule_group_interval_seconds");
    let needed = |group: &str| {
        let slower = intervals
            .get(group)
            .is_some_and(|seconds| *seconds > interval_seconds as f64);
        if slower { 1 } else { readings }
    };
    while intervals
        .keys()
        .any(|group| durations.get(group).map_or(0, Vec::len) < needed(group))
    {
        let text = metrics();
        let evaluated = per_rule_group(
            &text,
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
        );
        let duration = per_rule_group(&text, "prometheus_rule_group_last_duration_seconds");
        for (group, at) in &evaluated {
            if last_evaluation.get(group) != Some(at) {
                last_evaluation.insert(group.clone(), *at);
                if let Some(seconds) = duration.get(group) {
                    durations.entry(group.clone()).or_default().push(*seconds);
                }
            }
        }
        samples = per_rule_group(&text, "prometheus_rule_group_last_evaluation_samples");
        std::thread::sleep(Duration::from_secs(1));
    }
    // The result vector of an instant query (none when it fails).
    let results = |promql: &str| -> Vec<Value> {
        let answer: Value = ureq::get(&prometheus.url("/api/v1/query"))
            .query("query", promql)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let value_of = |result: &Value| -> Option<f64> { result["value"][1].as_str()?.parse().ok() };
    let query = |promql: &str| -> f64 { results(promql).first().and_then(value_of).unwrap_or(0.0) };
    let recorded_series = query(r#"count({__name__=~".+:.+"})"#);
    let by_job = |promql: &str| -> BTreeMap<String, f64> {
        results(promql)
            .iter()
            .filter_map(|r| Some((r["metric"]["job"].as_str()?.to_string(), value_of(r)?)))
            .collect()
    };
    let scraped = by_job("sum by (job) (scrape_samples_scraped)");
    let kept = by_job("sum by (job) (scrape_samples_post_metric_relabeling)");
    let samples_by_job: BTreeMap<&String, Value> = scraped
        .iter()
        .map(|(job, n)| {
            (
                job,
                json!({"scraped": n, "kept": kept.get(job).copied().unwrap_or(*n)}),
            )
        })
        .collect();
    let resident_bytes: f64 = metrics()
        .lines()
        .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let head_series: f64 = metrics()
        .lines()
        .find_map(|line| line.strip_prefix("prometheus_tsdb_head_series "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let groups: Vec<Value> = durations
        .iter_mut()
        .map(|(group, seconds)| {
            let name = group.rsplit(';').next().unwrap_or(group);
            let file = Path::new(group.split(';').next().unwrap_or_default())
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            json!({
                "file": file,
                "group": name,
                "median_seconds": median(seconds),
                "samples": samples.get(group).copied().unwrap_or(0.0),
            })
        })
        .collect();
    let total: f64 = groups
        .iter()
        .filter_map(|g| g["median_seconds"].as_f64())
        .sum();
    // The slowest rules of the last evaluation, as Prometheus' rules API reports them.
    let mut rules: Vec<(f64, String, String)> =
        get_json(&prometheus, "/api/v1/rules")["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| {
                let name = group["name"].as_str().unwrap_or_default().to_string();
                group["rules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |rule| {
                        (
                            rule["evaluationTime"].as_f64().unwrap_or(0.0),
                            name.clone(),
                            rule["name"].as_str().unwrap_or_default().to_string(),
                        )
                    })
            })
            .collect();
    rules.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest_rules: Vec<Value> = rules
        .iter()
        .take(12)
        .map(|(seconds, group, rule)| json!({"group": group, "rule": rule, "seconds": seconds}))
        .collect();
    let result = json!({
        "nodes": nodes,
        "pods": pod_count,
        "targets": universe_targets(&prometheus),
        "head_series": head_series,
        "samples_by_job": samples_by_job,
        "resident_mib": resident_bytes / 1_048_576.0,
        "recorded_series": recorded_series,
        "rule_groups": groups.len(),
        "evaluation_seconds_total": total,
        "groups": groups,
        "slowest_rules": slowest_rules,
    });
    println!("{result:#}");
    if let Some(path) = std::env::var_os("STACKGEN_BENCH_RESULT") {
        std::fs::write(path, format!("{result:#}\n")).expect("write the result");
    }
    drop(exporters);
}

/// How many targets Prometheus scrapes.
fn universe_targets(prometheus: &crate::e2e::Server) -> usize {
    get_json(prometheus, "/api/v1/targets?state=active")["data"]["activeTargets"]
        .as_array()
        .map_or(0, Vec::len)
}
