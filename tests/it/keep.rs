//! The scrape configuration keeps what the stack reads: for every golden case, every metric name
//! any rendered rule or dashboard query selects passes the `keep` of every exporter's job, every
//! series a selector can select survives the job's whole `metric_relabel_configs` (run here by a
//! small relabelling interpreter), and what nothing reads is dropped there. The expressions are
//! taken from the rendered files here, with the library's PromQL reader, independently of the
//! renderer's own list.

use std::collections::{BTreeMap, BTreeSet};
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

const SYNTHETIC: &[&str] = &["ALERTS", "ALERTS_FOR_STATE", "up"];

/// The `keep` regex of each exporter job of a rendered prometheus.yml, anchored as Prometheus
/// anchors it.
fn keeps(config: &Yaml) -> Vec<(String, regex::Regex)> {
    exporter_relabelling(config)
        .into_iter()
        .map(|(name, rules)| {
            let (_, keep) = rules
                .into_iter()
                .find(|(rule, _)| {
                    rule["action"].as_str() == Some("keep")
                        && rule["source_labels"][0].as_str() == Some("__name__")
                })
                .unwrap_or_else(|| panic!("{name} keeps every metric name"));
            (name, keep)
        })
        .collect()
}

/// Every expression of the rendered rules and dashboards, Grafana's variables made concrete.
fn expressions_read(out: &Path) -> Vec<(String, promql_parser::parser::Expr)> {
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
    let variable = regex::Regex::new(r"\$\{?\w+\}?").expect("regex");
    expressions
        .into_iter()
        .map(|expr| {
            let concrete = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h");
            let concrete = variable.replace_all(&concrete, VARIABLE).into_owned();
            let ast = stackgen::rules::promql::parse(&concrete)
                .unwrap_or_else(|e| panic!("`{expr}` does not parse: {}", e.message));
            (expr, ast)
        })
        .collect()
}

/// What a Grafana variable stands for: a value the dashboard's user picks, any value.
const VARIABLE: &str = "variable";

/// Recorded series, and those Prometheus writes itself, are never scraped.
fn is_scraped(name: &str) -> bool {
    !name.contains(':') && !SYNTHETIC.contains(&name)
}

/// Every metric name the rendered rules and dashboards select.
fn names_read(out: &Path) -> BTreeSet<String> {
    expressions_read(out)
        .iter()
        .flat_map(|(_, ast)| stackgen::rules::promql::metric_names(ast))
        .filter(|name| is_scraped(name))
        .collect()
}

/// The `metric_relabel_configs` of each exporter job of a rendered prometheus.yml, each rule with
/// its regex anchored as Prometheus anchors it.
fn exporter_relabelling(config: &Yaml) -> Vec<(String, Vec<(Yaml, regex::Regex)>)> {
    config["scrape_configs"]
        .as_vec()
        .expect("scrape_configs")
        .iter()
        .filter_map(|job| {
            let name = job["job_name"].as_str()?;
            EXPORTER_JOBS.contains(&name).then(|| {
                let rules = job["metric_relabel_configs"]
                    .as_vec()
                    .unwrap_or_else(|| panic!("{name} has no metric_relabel_configs"));
                let compiled = rules
                    .iter()
                    .map(|rule| {
                        let regex = rule["regex"].as_str().unwrap_or("(.*)");
                        let anchored = regex::Regex::new(&format!("^(?:{regex})$"))
                            .expect("a relabelling regex");
                        (rule.clone(), anchored)
                    })
                    .collect();
                (name.to_string(), compiled)
            })
        })
        .collect()
}

/// Runs Prometheus' relabelling `rules` on a series: its labels after them, or `None` when a
/// rule dropped it. Knows the actions the stack renders and refuses any other.
fn relabel(
    rules: &[(Yaml, regex::Regex)],
    series: &BTreeMap<String, String>,
) -> Option<BTreeMap<String, String>> {
    let mut labels = series.clone();
    for (rule, anchored) in rules {
        let separator = rule["separator"].as_str().unwrap_or(";");
        let joined = || -> String {
            rule["source_labels"]
                .as_vec()
                .map(|sources| {
                    sources
                        .iter()
                        .map(|l| {
                            labels
                                .get(l.as_str().expect("a label"))
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(separator)
                })
                .unwrap_or_default()
        };
        match rule["action"].as_str().unwrap_or("replace") {
            "keep" if !anchored.is_match(&joined()) => return None,
            "drop" if anchored.is_match(&joined()) => return None,
            "keep" | "drop" => {}
            "replace" => {
                let value = joined();
                if let Some(captures) = anchored.captures(&value) {
                    let target = rule["target_label"].as_str().expect("target_label");
                    let mut replaced = String::new();
                    captures.expand(rule["replacement"].as_str().unwrap_or("$1"), &mut replaced);
                    if replaced.is_empty() {
                        labels.remove(target);
                    } else {
                        labels.insert(target.to_string(), replaced);
                    }
                }
            }
            "labeldrop" => labels.retain(|name, _| !anchored.is_match(name)),
            "labelkeep" => labels.retain(|name, _| anchored.is_match(name)),
            other => panic!("the relabelling interpreter knows no action `{other}`"),
        }
    }
    Some(labels)
}

/// Values a label may take under `matcher`, as a series it selects would carry them (`None`:
/// the label absent). A regex gives each of its literal alternatives that it matches.
fn values_selected(matcher: &promql_parser::label::Matcher) -> Vec<Option<String>> {
    use promql_parser::label::MatchOp;
    let matches = |pattern: &str, value: &str| {
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .expect("a matcher regex")
            .is_match(value)
    };
    let some = |v: &str| Some(v.to_string());
    let candidates: Vec<Option<String>> = match &matcher.op {
        MatchOp::Equal => vec![Some(matcher.value.clone()).filter(|v| !v.is_empty())],
        MatchOp::NotEqual if matcher.value != "sample" => vec![some("sample")],
        MatchOp::NotEqual => vec![some("other")],
        MatchOp::Re(_) => {
            let mut literal: Vec<Option<String>> = matcher
                .value
                .split(['|', '(', ')'])
                .map(|piece| piece.trim_start_matches("?:"))
                .filter(|piece| !piece.is_empty() && matches(&matcher.value, piece))
                .map(some)
                .collect();
            literal.dedup();
            if literal.is_empty() {
                ["sample", ""]
                    .into_iter()
                    .filter(|v| matches(&matcher.value, v))
                    .take(1)
                    .map(|v| Some(v.to_string()).filter(|v| !v.is_empty()))
                    .collect()
            } else {
                literal
            }
        }
        MatchOp::NotRe(_) => ["sample", ""]
            .into_iter()
            .filter(|v| !matches(&matcher.value, v))
            .take(1)
            .map(|v| Some(v.to_string()).filter(|v| !v.is_empty()))
            .collect(),
    };
    assert!(
        !candidates.is_empty(),
        "no value found that `{matcher}` selects: teach values_selected its form"
    );
    candidates
}

/// Series a selector of a scraped metric selects: one with every label at its first value, and
/// one more for each other value a label may take.
fn series_selected(
    selector: &promql_parser::parser::VectorSelector,
) -> Vec<BTreeMap<String, String>> {
    let Some(name) = selector.name.clone().or_else(|| {
        selector
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == promql_parser::label::MatchOp::Equal)
            .map(|m| m.value.clone())
    }) else {
        return Vec::new();
    };
    if !is_scraped(&name) {
        return Vec::new();
    }
    let choices: Vec<(&str, Vec<Option<String>>)> = selector
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name != "__name__")
        .map(|m| (m.name.as_str(), values_selected(m)))
        .collect();
    let series = |picked: &[(usize, usize)]| {
        let mut labels = BTreeMap::from([("__name__".to_string(), name.clone())]);
        for (label_index, (label, values)) in choices.iter().enumerate() {
            let value_index = picked
                .iter()
                .find(|(l, _)| *l == label_index)
                .map_or(0, |(_, v)| *v);
            if let Some(value) = &values[value_index] {
                labels.insert(label.to_string(), value.clone());
            }
        }
        labels
    };
    let mut all = vec![series(&[])];
    for (label_index, (_, values)) in choices.iter().enumerate() {
        for value_index in 1..values.len() {
            all.push(series(&[(label_index, value_index)]));
        }
    }
    all
}

#[test]
fn every_series_a_rule_or_dashboard_selects_survives_every_exporters_relabelling() {
    for (case, _) in GOLDEN_CASES {
        let out = root().join("tests/golden").join(case);
        let config = &YamlLoader::load_from_str(
            &fs::read_to_string(out.join("prometheus/prometheus.yml")).expect("config"),
        )
        .expect("config parses")[0];
        let jobs = exporter_relabelling(config);
        assert!(jobs.len() >= 5, "{case}: {} exporter jobs", jobs.len());
        let mut checked = 0;
        for (expr, ast) in expressions_read(&out) {
            let mut selected = Vec::new();
            stackgen::rules::promql::visit_selectors(&ast, &mut |selector| {
                selected.extend(series_selected(selector));
            });
            for series in selected {
                for (job, rules) in &jobs {
                    let kept = relabel(rules, &series).unwrap_or_else(|| {
                        panic!("{case}: job {job} drops {series:?}, which `{expr}` selects")
                    });
                    assert_eq!(
                        kept, series,
                        "{case}: job {job} changes what `{expr}` reads"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "{case}: only {checked} series checked");
        // Values nothing reads are dropped: node-exporter's CPU modes but idle, the API server's
        // latency buckets but 1 s.
        let series = |labels: &[(&str, &str)]| -> BTreeMap<String, String> {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for (job, rules) in &jobs {
            for unread in [
                series(&[("__name__", "node_cpu_seconds_total"), ("mode", "user")]),
                series(&[
                    ("__name__", "apiserver_request_duration_seconds_bucket"),
                    ("le", "0.5"),
                ]),
                series(&[
                    ("__name__", "kube_node_status_condition"),
                    ("condition", "Ready"),
                    ("status", "unknown"),
                ]),
            ] {
                assert_eq!(
                    relabel(rules, &unread),
                    None,
                    "{case}: job {job} keeps {unread:?}"
                );
            }
        }
    }
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
