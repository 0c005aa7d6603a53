//! Grafana dashboards as PromQL: the queries a dashboard runs (its panels' `expr` and its
//! variables' `label_values(...)` and `query_result(...)`) with Grafana's variables written as
//! values, and the check of a team's dashboard file (JSON, a `uid` and `title`, every query
//! parsing) with the file, line and column of each problem.
//!
//! [`provisioned`] gives the text Grafana loads: a dashboard exported "for sharing externally"
//! names its datasource by an input (`${DS_PROMETHEUS}`), which file provisioning does not fill
//! in, so the stack's datasources take their place.

use std::sync::OnceLock;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, Location};

/// Stands for a Grafana variable in a dashboard query: a matcher on it constrains nothing.
pub const VARIABLE: &str = "__grafana_variable__";

/// The longest `uid` Grafana takes.
const MAX_UID: usize = 40;

/// Every query of a dashboard, as PromQL (with Grafana's variables as values), each with the
/// text written in the dashboard.
pub fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect(dashboard, &mut out);
    out
}

fn collect(node: &Value, out: &mut Vec<(String, String)>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) if !expr.trim().is_empty() => {
                        out.push((expr.clone(), grafana_to_promql(expr)));
                    }
                    ("query", Value::String(query)) => {
                        if let Some(promql) = variable_query(query) {
                            out.push((query.clone(), promql));
                        }
                    }
                    _ => collect(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
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

/// Grafana's `$__rate_interval` and friends, and any variable where a duration goes (`[$w]`,
/// `offset $o`), as a duration; any other `$variable` as a value.
fn grafana_to_promql(expr: &str) -> String {
    static BUILTIN: OnceLock<regex::Regex> = OnceLock::new();
    static DURATION: OnceLock<regex::Regex> = OnceLock::new();
    static VARIABLES: OnceLock<regex::Regex> = OnceLock::new();
    let regex = |cell: &'static OnceLock<regex::Regex>, pattern: &str| {
        cell.get_or_init(|| regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{e}")))
    };
    let builtin = regex(
        &BUILTIN,
        r"\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?",
    );
    let duration = regex(
        &DURATION,
        r"(\[\s*|offset\s+|:)\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?",
    );
    let variable = regex(&VARIABLES, r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?");
    let expr = builtin.replace_all(expr, "5m");
    let expr = duration.replace_all(&expr, "${1}5m");
    variable.replace_all(&expr, VARIABLE).into_owned()
}

/// What the stack needs of a dashboard file.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDashboard {
    pub uid: String,
    pub title: String,
    /// The text Grafana loads (see [`provisioned`]).
    pub provisioned: String,
}

/// Checks the dashboard `text` of `file`: JSON, an object with a `uid` Grafana takes and a
/// `title`, every query parsing as PromQL. Every problem is reported, each where it is written.
pub fn check(file: &str, text: &str) -> Result<CheckedDashboard, Vec<Diagnostic>> {
    let problem = |location: Location, field: &str, message: String, hint: &str| Diagnostic {
        file: file.to_string(),
        location,
        field: field.to_string(),
        message,
        hint: Some(hint.to_string()),
        redact: false,
        width: None,
    };
    let start = Location { line: 1, col: 1 };
    let dashboard: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            let location = Location {
                line: error.line().max(1),
                col: error.column().max(1),
            };
            let message = error.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(reason, _)| reason);
            return Err(vec![problem(
                location,
                "",
                format!("the dashboard is not JSON: {message}"),
                "a dashboard file is Grafana's JSON model (Dashboard settings, JSON Model, or Export, Save to file)",
            )]);
        }
    };
    if !dashboard.is_object() {
        return Err(vec![problem(
            start,
            "",
            "a dashboard is a JSON object".into(),
            "export the dashboard from Grafana (Export, Save to file)",
        )]);
    }
    let mut problems = Vec::new();
    let place_of = |key: &str| location_of(text, &format!("\"{key}\"")).unwrap_or(start);
    let uid = dashboard["uid"].as_str().unwrap_or_default().to_string();
    if uid.is_empty() {
        problems.push(problem(
            start,
            "uid",
            "the dashboard has no `uid`".into(),
            "add `\"uid\": \"payments-overview\"`: links to a dashboard provisioned without one break whenever Grafana restarts",
        ));
    } else if uid.len() > MAX_UID
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(problem(
            place_of("uid"),
            "uid",
            format!("Grafana refuses the uid `{uid}`"),
            "a uid is at most 40 letters, digits, '-' and '_'",
        ));
    }
    let title = dashboard["title"].as_str().unwrap_or_default().to_string();
    if title.trim().is_empty() {
        problems.push(problem(
            start,
            "title",
            "the dashboard has no `title`".into(),
            "add `\"title\": \"...\"`, its name in Grafana",
        ));
    }
    for (written, promql) in queries(&dashboard) {
        if let Err(error) = super::promql::parse(&promql) {
            let encoded = serde_json::to_string(&written).unwrap_or_default();
            let location = location_of(text, &encoded).unwrap_or(start);
            problems.push(problem(
                location,
                "expr",
                format!(
                    "the query `{}` is not PromQL: {}",
                    crate::diagnostic::capped(&written, 120),
                    error.message
                ),
                "fix the query in Grafana's editor, then export the dashboard again",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CheckedDashboard {
        uid,
        title,
        provisioned: provisioned(dashboard),
    })
}

/// The dashboard as Grafana provisions it: the inputs of an export for sharing filled with the
/// stack's datasources, the export's own `id` dropped (Grafana assigns its own).
pub fn provisioned(mut dashboard: Value) -> String {
    let inputs: Vec<(String, &'static str)> = dashboard["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|input| input["type"] == "datasource")
        .filter_map(|input| {
            let uid = match input["pluginId"].as_str()? {
                "prometheus" => "prometheus",
                "alertmanager" => "alertmanager",
                _ => return None,
            };
            Some((format!("${{{}}}", input["name"].as_str()?), uid))
        })
        .collect();
    if let Some(map) = dashboard.as_object_mut() {
        map.remove("__inputs");
        map.insert("id".into(), Value::Null);
    }
    if !inputs.is_empty() {
        fill_inputs(&mut dashboard, &inputs);
    }
    let mut text = serde_json::to_string_pretty(&dashboard).unwrap_or_default();
    text.push('\n');
    text
}

fn fill_inputs(node: &mut Value, inputs: &[(String, &str)]) {
    match node {
        Value::String(text) => {
            for (input, uid) in inputs {
                if text.contains(input.as_str()) {
                    *text = text.replace(input.as_str(), uid);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| fill_inputs(item, inputs)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|value| fill_inputs(value, inputs)),
        _ => {}
    }
}

/// Line and column (1-based, in characters) of the first `needle` in `text`.
fn location_of(text: &str, needle: &str) -> Option<Location> {
    let offset = text.find(needle)?;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some(Location {
        line,
        col: text[line_start..offset].chars().count() + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_become_values_and_durations() {
        assert_eq!(
            grafana_to_promql(
                r#"sum(rate(x{a="$a", b=~"${b:regex}"}[$__rate_interval])) offset $shift"#
            ),
            format!(r#"sum(rate(x{{a="{VARIABLE}", b=~"{VARIABLE}"}}[5m])) offset 5m"#)
        );
        assert_eq!(
            grafana_to_promql("max_over_time(x[$window:$step])"),
            "max_over_time(x[5m:5m])"
        );
    }

    #[test]
    fn every_problem_is_reported_where_it_is_written() {
        let text = "{\n  \"title\": \"Payments\",\n  \"uid\": \"has spaces\",\n  \"panels\": [\n    {\"targets\": [{\"expr\": \"sum(rate(x[5m])\"}]}\n  ]\n}\n";
        let problems = check("payments.json", text).expect_err("invalid");
        let found: Vec<(usize, usize, &str)> = problems
            .iter()
            .map(|p| (p.location.line, p.location.col, p.field.as_str()))
            .collect();
        assert_eq!(found, [(3, 3, "uid"), (5, 27, "expr")], "{problems:?}");
        let broken = check("x.json", "{\"uid\": \"a\",\n  \"title\": }").expect_err("no JSON");
        assert_eq!((broken[0].location.line, broken[0].location.col), (2, 12));
    }

    #[test]
    fn an_export_for_sharing_gets_the_stacks_datasources() {
        let text = r#"{"__inputs": [{"name": "DS_PROM", "type": "datasource", "pluginId": "prometheus"}],
            "id": 17, "uid": "pay", "title": "Payments",
            "panels": [{"datasource": {"type": "prometheus", "uid": "${DS_PROM}"}, "targets": [{"expr": "up"}]}]}"#;
        let checked = check("pay.json", text).expect("valid");
        let provisioned: Value = serde_json::from_str(&checked.provisioned).expect("JSON");
        assert_eq!(provisioned["panels"][0]["datasource"]["uid"], "prometheus");
        assert_eq!(provisioned["id"], Value::Null);
        assert!(provisioned.get("__inputs").is_none());
    }
}
