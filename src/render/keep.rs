//! What Prometheus keeps of the exporters it scrapes: only the series the stack reads.
//!
//! The API server, the kubelets, cAdvisor, node-exporter, kube-state-metrics and the control
//! plane expose many more series than any rule or dashboard here reads, and Prometheus' memory
//! grows with every series it keeps. The renderer knows every expression the stack evaluates (the
//! rendered rule files: the defaults, the ownership map, the objectives and the teams' rules) and
//! every one its dashboards run, so the scrape jobs of those exporters keep exactly the metric
//! names those read (`metric_relabel_configs`), plus the families `prometheus.keep_metrics` names
//! for ad-hoc queries. The services' own jobs keep everything: teams query their own series.
//!
//! Where every expression that reads a metric selects it by the value of one label
//! (`node_cpu_seconds_total{mode="idle"}`, a histogram's `le="1"`), the series of other values
//! are dropped too. cAdvisor also reports every cgroup above the containers (the pod's, the
//! node's slices) with an empty `container` label; when no expression can select those, they are
//! dropped.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::Value;

use crate::rules::promql::visit_selectors;

/// What the stack's expressions read of the scraped series.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Regex alternatives of the metric names read: exact names escaped, and the patterns of
    /// `{__name__=~"..."}` selectors as written.
    pub names: BTreeSet<String>,
    /// Whether some expression may select a cAdvisor series (`container_*`) whose `container`
    /// label is empty.
    pub containerless_cgroups: bool,
    /// By metric name: the labels every selector of it constrains, each with the patterns
    /// (escaped values, or regexes) some selector accepts.
    values_read: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// Series Prometheus writes itself, around a scrape or from its rules.
const SYNTHETIC: &[&str] = &[
    "ALERTS",
    "ALERTS_FOR_STATE",
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

use crate::rules::dashboard::VARIABLE;

/// A metric whose series are kept only for some values of some labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuesRead {
    pub metric: String,
    /// `__name__` and the labels, as relabelling's `source_labels`.
    pub source_labels: Vec<String>,
    /// Matches the joined source labels of the series read.
    pub regex: String,
}

impl Reads {
    /// The `keep` regex of the exporters' jobs: every name read, and `extra` patterns.
    pub fn keep_regex(&self, extra: &[String]) -> String {
        let alternatives: Vec<&str> = self
            .names
            .iter()
            .map(String::as_str)
            .chain(extra.iter().map(String::as_str))
            .collect();
        alternatives.join("|")
    }

    /// The metrics whose unread values are dropped: none reached by a `__name__` regex (whose
    /// selectors say nothing of them) or kept whole by an `extra` pattern (`keep_metrics`, for
    /// ad-hoc queries of any value).
    pub fn values_read(&self, extra: &[String]) -> Vec<ValuesRead> {
        let name_patterns: Vec<regex::Regex> = self
            .names
            .iter()
            .filter(|n| n.starts_with("(?:"))
            .chain(extra)
            .filter_map(|pattern| anchored(pattern))
            .collect();
        self.values_read
            .iter()
            .filter(|(metric, labels)| {
                !labels.is_empty() && !name_patterns.iter().any(|re| re.is_match(metric))
            })
            .map(|(metric, labels)| {
                let mut regex = regex::escape(metric);
                for patterns in labels.values() {
                    let alternatives: Vec<&str> = patterns.iter().map(String::as_str).collect();
                    regex.push_str(&format!(";(?:{})", alternatives.join("|")));
                }
                ValuesRead {
                    metric: metric.clone(),
                    source_labels: std::iter::once("__name__".to_string())
                        .chain(labels.keys().cloned())
                        .collect(),
                    regex,
                }
            })
            .collect()
    }

    /// Notes which values of which labels `selector` (of metric `name`) accepts.
    fn constrain(&mut self, name: &str, selector: &VectorSelector) {
        let mut accepted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for matcher in &selector.matchers.matchers {
            if matcher.name == "__name__" || matcher.value.contains(VARIABLE) {
                continue;
            }
            let pattern = match matcher.op {
                MatchOp::Equal => regex::escape(&matcher.value),
                MatchOp::Re(_) => format!("(?:{})", matcher.value),
                MatchOp::NotEqual | MatchOp::NotRe(_) => continue,
            };
            accepted
                .entry(matcher.name.clone())
                .or_default()
                .insert(pattern);
        }
        match self.values_read.get_mut(name) {
            None => {
                self.values_read.insert(name.to_string(), accepted);
            }
            // A label stays constrained only while every selector constrains it.
            Some(known) => {
                known.retain(|label, _| accepted.contains_key(label));
                for (label, patterns) in known.iter_mut() {
                    patterns.extend(accepted.remove(label).unwrap_or_default());
                }
            }
        }
    }

    fn add(&mut self, expr: &Expr) {
        let mut constrained = Vec::new();
        visit_selectors(expr, &mut |selector| {
            let mut exact = selector.name.clone();
            for matcher in &selector.matchers.matchers {
                if matcher.name != "__name__" {
                    continue;
                }
                match matcher.op {
                    MatchOp::Equal => exact = Some(matcher.value.clone()),
                    MatchOp::Re(_) => {
                        self.names.insert(format!("(?:{})", matcher.value));
                        self.containerless_cgroups |= may_select_cadvisor(matcher);
                    }
                    // A negative name matcher reads names we cannot list: keep the families
                    // it may read through `prometheus.keep_metrics`.
                    MatchOp::NotEqual | MatchOp::NotRe(_) => {}
                }
            }
            if let Some(name) = exact {
                if name.starts_with("container_") && may_match_empty(selector, "container") {
                    self.containerless_cgroups = true;
                }
                // Recorded series (`level:metric:operations`) are the rules' own and the
                // synthetic ones Prometheus' own: neither passes through the scrape's relabelling.
                if !name.contains(':') && !SYNTHETIC.contains(&name.as_str()) {
                    self.names.insert(regex::escape(&name));
                    constrained.push((name, selector.clone()));
                }
            }
        });
        for (name, selector) in constrained {
            self.constrain(&name, &selector);
        }
    }
}

/// What the rule files (as rendered: `(name, text)`) and the dashboards (Grafana JSON) read.
pub fn reads(rule_files: &[(String, String)], dashboards: &[&str]) -> Result<Reads, String> {
    let mut reads = Reads::default();
    for (file, text) in rule_files {
        for expr in rule_expressions(text).map_err(|e| format!("{file}: {e}"))? {
            let parsed = promql_parser::parser::parse(&expr)
                .map_err(|e| format!("{file}: `{expr}` does not parse: {e}"))?;
            reads.add(&parsed);
        }
    }
    for dashboard in dashboards {
        let json: Value = serde_json::from_str(dashboard).map_err(|e| e.to_string())?;
        for (_, expr) in crate::rules::dashboard::queries(&json) {
            let parsed = promql_parser::parser::parse(&expr)
                .map_err(|e| format!("dashboard query `{expr}` does not parse: {e}"))?;
            reads.add(&parsed);
        }
    }
    Ok(reads)
}

/// Every `expr` of a rule file.
fn rule_expressions(text: &str) -> Result<Vec<String>, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut expressions = Vec::new();
    for doc in &docs {
        for group in doc["groups"].as_vec().into_iter().flatten() {
            for rule in group["rules"].as_vec().into_iter().flatten() {
                if let Some(expr) = rule["expr"].as_str() {
                    expressions.push(expr.to_string());
                }
            }
        }
    }
    Ok(expressions)
}

/// Whether `selector` may select a series whose `label` is empty (absent).
fn may_match_empty(selector: &VectorSelector, label: &str) -> bool {
    selector
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name == label)
        .all(matches_empty)
}

fn matches_empty(matcher: &Matcher) -> bool {
    match &matcher.op {
        MatchOp::Equal => matcher.value.is_empty(),
        MatchOp::NotEqual => !matcher.value.is_empty(),
        MatchOp::Re(_) => anchored(&matcher.value).is_none_or(|re| re.is_match("")),
        MatchOp::NotRe(_) => anchored(&matcher.value).is_none_or(|re| !re.is_match("")),
    }
}

/// Whether a `__name__=~` pattern may name a cAdvisor metric (then its empty-container series
/// are kept, as nothing says which it reads).
fn may_select_cadvisor(matcher: &Matcher) -> bool {
    matcher.value.starts_with("container_") || matcher.value.starts_with('.')
}

fn anchored(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(exprs: &[&str]) -> Vec<(String, String)> {
        let rules: Vec<String> = exprs
            .iter()
            .map(|e| format!("      - record: x:y:z\n        expr: '{e}'\n"))
            .collect();
        vec![(
            "r.yaml".to_string(),
            format!("groups:\n  - name: g\n    rules:\n{}", rules.join("")),
        )]
    }

    #[test]
    fn every_selector_of_rules_and_dashboards_is_read_and_recorded_series_are_not_scraped() {
        let dashboard = r#"{"panels": [{"targets": [{"expr": "sum(rate(node_cpu_seconds_total{cluster=\"$cluster\"}[$__rate_interval]))"}]}],
            "templating": {"list": [{"query": {"query": "label_values(kube_node_info{cluster=\"$cluster\"}, node)"}},
                                     {"query": "label_values(cluster)"}]}}"#;
        let read = reads(
            &rules(&[
                "sum by (namespace) (rate(container_cpu_usage_seconds_total{container!=\"\"}[5m]))",
                "stackgen:service_requests:rate5m > 0 and on () up",
                "count({__name__=~\"etcd_.+\"})",
            ]),
            &[dashboard],
        )
        .expect("reads");
        assert_eq!(
            read.names.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "(?:etcd_.+)",
                "container_cpu_usage_seconds_total",
                "kube_node_info",
                "node_cpu_seconds_total",
            ]
        );
        assert!(
            !read.containerless_cgroups,
            "every container_* selector says container!=\"\""
        );
        let regex = regex::Regex::new(&format!(
            "^(?:{})$",
            read.keep_regex(&["node_hwmon_.*".into()])
        ))
        .expect("a regex");
        assert!(
            regex.is_match("etcd_server_has_leader") && regex.is_match("node_hwmon_temp_celsius")
        );
        assert!(!regex.is_match("container_fs_reads_total"));
    }

    #[test]
    fn values_every_selector_constrains_are_all_that_is_kept_of_a_metric() {
        let read = reads(
            &rules(&[
                "rate(node_cpu_seconds_total{mode=\"idle\", cpu!=\"0\"}[5m])",
                "kube_node_status_condition{condition=\"Ready\", status=\"true\"} == 0",
                "kube_node_status_condition{condition=~\"MemoryPressure|DiskPressure\"} == 1",
                "rate(http_requests_total[5m]) > 0 and http_requests_total{code=\"500\"}",
            ]),
            &[],
        )
        .expect("reads");
        let kept = read.values_read(&[]);
        assert_eq!(
            kept,
            [
                ValuesRead {
                    metric: "kube_node_status_condition".into(),
                    source_labels: vec!["__name__".into(), "condition".into()],
                    regex: "kube_node_status_condition;(?:(?:MemoryPressure|DiskPressure)|Ready)"
                        .into(),
                },
                ValuesRead {
                    metric: "node_cpu_seconds_total".into(),
                    source_labels: vec!["__name__".into(), "mode".into()],
                    regex: "node_cpu_seconds_total;(?:idle)".into(),
                },
            ],
            "status is constrained by one selector only, http_requests_total by one of two"
        );
        let wide = reads(
            &rules(&[
                "count({__name__=~\"node_.+\"})",
                "node_cpu_seconds_total{mode=\"idle\"}",
            ]),
            &[],
        )
        .expect("reads");
        assert_eq!(
            wide.values_read(&[]),
            [],
            "a name regex may read any of its values"
        );
        assert_eq!(
            read.values_read(&["node_cpu_.*".into()])
                .iter()
                .map(|r| r.metric.as_str())
                .collect::<Vec<_>>(),
            ["kube_node_status_condition"],
            "a family kept for ad-hoc queries is kept whole"
        );
    }

    #[test]
    fn a_selector_that_may_read_a_cgroup_above_the_containers_keeps_them() {
        for expr in [
            "container_memory_working_set_bytes{id=\"/\"}",
            "container_memory_working_set_bytes{container=~\"app|\"}",
            "container_memory_working_set_bytes{container!~\".+\"}",
        ] {
            assert!(
                reads(&rules(&[expr]), &[])
                    .expect("reads")
                    .containerless_cgroups,
                "{expr}"
            );
        }
        for expr in [
            "container_memory_working_set_bytes{container=\"app\"}",
            "container_memory_working_set_bytes{container=~\".+\"}",
        ] {
            assert!(
                !reads(&rules(&[expr]), &[])
                    .expect("reads")
                    .containerless_cgroups,
                "{expr}"
            );
        }
    }
}
