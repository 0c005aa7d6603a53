//! The scrape configuration keeps what the stack reads: for every golden case, every metric name
//! any rendered rule or dashboard query selects passes the `keep` of every exporter's job, and
//! names nothing reads are dropped there. The names are taken from the rendered files here, with
//! the library's PromQL reader, independently of the renderer's own list.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

use super::support::{GOLDEN_CASES, files_under, root};

/// The exporters' jobs: they keep only what is read. The services' and the stack's own jobs
/// keep everything.
const EXPORTER_JOBS: &[&str] = &[
    "apiserver",
    "kubelet",
    "cadvisor",
    "node-exporter",
    "kube-state-metrics",
    "kube-scheduler",
    "kube-controller-manager",
    "etcd",
];

/// The `keep` regex of each exporter job of a rendered prometheus.yml, anchored as Prometheus
/// anchors it.
fn keeps(config: &Yaml) -> Vec<(String, regex::Regex)> {
    config["scrape_configs"]
        .as_vec()
        .expect("scrape_configs")
        .iter()
        .filter_map(|job| {
            let name = job["job_name"].as_str()?;
            EXPORTER_JOBS.contains(&name).then_some((name, job))
        })
        .map(|(name, job)| {
            let keep = job["metric_relabel_configs"]
                .as_vec()
                .unwrap_or_else(|| panic!("{name} has no metric_relabel_configs"))
                .iter()
                .find(|rule| {
                    rule["action"].as_str() == Some("keep")
                        && rule["source_labels"][0].as_str() == Some("__name__")
                })
                .and_then(|rule| rule["regex"].as_str())
                .unwrap_or_else(|| panic!("{name} keeps every metric name"));
            let regex = regex::Regex::new(&format!("^(?:{keep})$")).expect("a regex");
            (name.to_string(), regex)
        })
        .collect()
}

/// Every metric name the rendered rules and dashboards select.
fn names_read(out: &Path) -> BTreeSet<String> {
    let mut expressions = Vec::new();
    let rules = out.join("prometheus/rules");
    for file in files_under(&rules) {
        let text = fs::read_to_string(rules.join(&file)).expect("rule file");
        let docs = YamlLoader::load_from_str(&text).expect("rules parse");
        for group in docs[0]["groups"].as_vec().expect("groups") {
            for rule in group["rules"].as_vec().expect("rules") {
                expressions.push(rule["expr"].as_str().expect("expr").to_string());
            }
        }
    }
    let dashboards = out.join("grafana/dashboards");
    for file in files_under(&dashboards) {
        let text = fs::read_to_string(dashboards.join(&file)).expect("dashboard");
        for (index, _) in text.match_indices("\"expr\": \"") {
            let rest = &text[index + 9..];
            let end = rest
                .find("\",\n")
                .or_else(|| rest.find("\"\n"))
                .expect("end of expr");
            let expr: String =
                serde_json::from_str(&format!("\"{}\"", &rest[..end])).expect("a JSON string");
            expressions.push(expr);
        }
        for (index, _) in text.match_indices("label_values(") {
            let rest = &text[index + 13..];
            let inner = &rest[..rest.find("\"").expect("end of query")];
            if let Some((expr, _)) = inner.trim_end_matches(')').rsplit_once(',') {
                let expr: String =
                    serde_json::from_str(&format!("\"{expr}\"")).expect("a JSON string");
                expressions.push(expr);
            }
        }
    }
    let mut names = BTreeSet::new();
    let variable = regex::Regex::new(r"\$\{?\w+\}?").expect("regex");
    for expr in expressions {
        let concrete = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h");
        let concrete = variable.replace_all(&concrete, "x").into_owned();
        let ast = stackgen::rules::promql::parse(&concrete)
            .unwrap_or_else(|e| panic!("`{expr}` does not parse: {}", e.message));
        names.extend(
            stackgen::rules::promql::metric_names(&ast)
                .into_iter()
                .filter(|name| !name.contains(':')),
        );
    }
    names
}

#[test]
fn every_metric_a_rule_or_dashboard_reads_is_kept_by_every_exporters_job() {
    for (case, _) in GOLDEN_CASES {
        let out = root().join("tests/golden").join(case);
        let config = &YamlLoader::load_from_str(
            &fs::read_to_string(out.join("prometheus/prometheus.yml")).expect("config"),
        )
        .expect("config parses")[0];
        let keeps = keeps(config);
        assert!(
            keeps.iter().any(|(job, _)| job == "cadvisor")
                && keeps.iter().any(|(job, _)| job == "apiserver"),
            "{case}: the exporters' jobs keep only what is read"
        );
        let read = names_read(&out);
        assert!(read.len() > 50, "{case}: only {} names read", read.len());
        for name in &read {
            for (job, keep) in &keeps {
                assert!(
                    keep.is_match(name),
                    "{case}: job {job} drops `{name}`, which the stack reads"
                );
            }
        }
        // What nothing reads is dropped: cAdvisor's file system and network families, the API
        // server's watch and etcd-object families, node-exporter's hardware monitors.
        for unread in [
            "container_fs_reads_total",
            "container_network_receive_bytes_total",
            "container_spec_memory_limit_bytes",
            "apiserver_watch_events_total",
            "apiserver_storage_objects",
            "node_hwmon_temp_celsius",
            "kube_pod_tolerations",
        ] {
            assert!(!read.contains(unread), "{case} reads {unread}");
            for (job, keep) in &keeps {
                assert!(!keep.is_match(unread), "{case}: job {job} keeps `{unread}`");
            }
        }
    }
}
