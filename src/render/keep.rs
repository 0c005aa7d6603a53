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
//! cAdvisor also reports every cgroup above the containers (the pod's, the node's slices) with
//! an empty `container` label; when no expression can select those, they are dropped too.

use std::collections::BTreeSet;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::Value;

/// What the stack's expressions read of the scraped series.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Regex alternatives of the metric names read: exact names escaped, and the patterns of
    /// `{__name__=~"..."}` selectors as written.
    pub names: BTreeSet<String>,
    /// Whether some expression may select a cAdvisor series (`container_*`) whose `container`
    /// label is empty.
    pub containerless_cgroups: bool,
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

    fn add(&mut self, expr: &Expr) {
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
                // Recorded series (`level:metric:operations`) are the rules' own, never scraped.
                if !name.contains(':') {
                    self.names.insert(regex::escape(&name));
                }
            }
        });
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
        let mut expressions = Vec::new();
        dashboard_expressions(&json, &mut expressions);
        for expr in expressions {
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

/// The PromQL of a dashboard: its panels' `expr` and its variables' `label_values(...)` and
/// `query_result(...)` queries, with Grafana's variables written as values.
fn dashboard_expressions(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(grafana_to_promql(expr)),
                    ("query", Value::String(query)) => out.extend(variable_query(query)),
                    _ => dashboard_expressions(value, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| dashboard_expressions(item, out)),
        _ => {}
    }
}

/// The PromQL inside a variable's query: `label_values(EXPR, label)`, `query_result(EXPR)`.
fn variable_query(query: &str) -> Option<String> {
    let query = query.trim();
    if let Some(inner) = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        // `label_values(label)` reads no metric; `label_values(EXPR, label)` reads EXPR.
        let (expr, _) = inner.rsplit_once(',')?;
        return Some(grafana_to_promql(expr));
    }
    query
        .strip_prefix("query_result(")
        .and_then(|rest| rest.strip_suffix(')'))
        .map(grafana_to_promql)
}

/// Grafana's `$__rate_interval` and friends as a duration, any other `$variable` as a value.
fn grafana_to_promql(expr: &str) -> String {
    static BUILTIN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static VARIABLE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let builtin = BUILTIN.get_or_init(|| {
        regex::Regex::new(r"\$\{?__(rate_interval|interval|range)\}?").expect("regex")
    });
    let variable = VARIABLE.get_or_init(|| {
        regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?").expect("regex")
    });
    let expr = builtin.replace_all(expr, "5m");
    variable.replace_all(&expr, "x").into_owned()
}

/// Calls `visit` on every selector of `expr`.
fn visit_selectors(expr: &Expr, visit: &mut impl FnMut(&VectorSelector)) {
    match expr {
        Expr::VectorSelector(vs) => visit(vs),
        Expr::MatrixSelector(ms) => visit(&ms.vs),
        Expr::Paren(p) => visit_selectors(&p.expr, visit),
        Expr::Unary(u) => visit_selectors(&u.expr, visit),
        Expr::Subquery(s) => visit_selectors(&s.expr, visit),
        Expr::Aggregate(a) => {
            visit_selectors(&a.expr, visit);
            if let Some(param) = &a.param {
                visit_selectors(param, visit);
            }
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| visit_selectors(a, visit)),
        Expr::Binary(b) => {
            visit_selectors(&b.lhs, visit);
            visit_selectors(&b.rhs, visit);
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
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
                "up"
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
