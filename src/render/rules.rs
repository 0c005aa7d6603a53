//! The rule files Prometheus loads: the default rules shipped with stackgen (kept or dropped by
//! platform profile and enabled exporters; workloads.yaml with the ownership rules generated from
//! the spec's services and teams), and the teams' own rule files, each rule of which gets the owning team's
//! `team` label.

use std::collections::BTreeMap;

use serde_json::Value;
use yaml_rust2::YamlLoader;

use crate::rules::defaults::{DEFAULT_RULE_FILES, Needs};
use crate::rules::promql;
use crate::rules::team::label_team_rules;
use crate::spec::{AlertOverride, Spec, Team};
use crate::yaml::{self, from_yaml};

/// The default rule file that the spec's ownership rules join.
const WORKLOADS_FILE: &str = "workloads.yaml";

/// The rule files for `spec`, as (file name, contents), sorted by name.
pub fn rule_files(spec: &Spec) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for file in DEFAULT_RULE_FILES.iter().filter(|f| match f.needs {
        Needs::Nothing => true,
        Needs::KubeStateMetrics => spec.exporters.kube_state_metrics,
        Needs::NoKubeStateMetrics => !spec.exporters.kube_state_metrics,
        Needs::NodeExporter => spec.exporters.node_exporter,
        Needs::ControlPlane => spec.cluster.scrapes_control_plane(),
    }) {
        if let Some(text) =
            apply_overrides(file.text, &spec.alerts).map_err(|e| format!("{}: {e}", file.name))?
        {
            let text = if file.name == WORKLOADS_FILE {
                super::ownership::workloads_rule_file(&text, spec)?
            } else {
                text
            };
            files.push((file.name.to_string(), text));
        }
    }
    for team in &spec.teams {
        for rule_file in &team.rule_files {
            let Some(text) = &rule_file.contents else {
                return Err(format!(
                    "rule file {} of team {} was not read",
                    rule_file.path, team.name
                ));
            };
            let name = team_file_name(team, &rule_file.path);
            if files.iter().any(|(existing, _)| *existing == name) {
                return Err(format!(
                    "team {} names two rule files called {}; rename one",
                    team.name, rule_file.path
                ));
            }
            let labelled = label_team_rules(text, &team.name)
                .map_err(|e| format!("{}: {e}", rule_file.path))?;
            files.push((name, labelled));
        }
    }
    files.sort();
    Ok(files)
}

/// A default rule file with the spec's changes: disabled alerts removed (and groups left empty,
/// and a file left empty, dropped), `for`, severity and threshold replaced. Unchanged files stay
/// byte for byte as shipped. `None` when nothing is left.
fn apply_overrides(
    text: &str,
    overrides: &BTreeMap<String, AlertOverride>,
) -> Result<Option<String>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let doc = docs.first().ok_or("empty rule file")?;
    let mut value = from_yaml(doc);
    let mut changed = Vec::new();
    let Some(groups) = value.get_mut("groups").and_then(Value::as_array_mut) else {
        return Err("no groups".into());
    };
    for group in groups.iter_mut() {
        let Some(rules) = group.get_mut("rules").and_then(Value::as_array_mut) else {
            continue;
        };
        rules.retain(|rule| {
            let name = rule
                .get("alert")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match overrides.get(name) {
                Some(o) if !o.enabled => {
                    changed.push(format!("{name} disabled"));
                    false
                }
                _ => true,
            }
        });
        for rule in rules.iter_mut() {
            let name = rule
                .get("alert")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(o) = overrides.get(&name) else {
                continue;
            };
            let Some(fields) = rule.as_object_mut() else {
                continue;
            };
            let mut what = Vec::new();
            if let Some(duration) = &o.for_duration {
                fields.insert("for".into(), Value::String(duration.clone()));
                what.push(format!("for {duration}"));
            }
            if let Some(severity) = &o.severity {
                if let Some(labels) = fields.get_mut("labels").and_then(Value::as_object_mut) {
                    labels.insert("severity".into(), Value::String(severity.clone()));
                }
                what.push(format!("severity {severity}"));
            }
            if let Some(threshold) = &o.threshold {
                let expr = fields
                    .get("expr")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let span = promql::threshold_span(&expr)
                    .ok_or_else(|| format!("alert {name} has no threshold"))?;
                let mut new_expr = expr.clone();
                new_expr.replace_range(span, threshold);
                fields.insert("expr".into(), Value::String(new_expr));
                what.push(format!("threshold {threshold}"));
            }
            if !what.is_empty() {
                changed.push(format!("{name}: {}", what.join(", ")));
            }
        }
    }
    if changed.is_empty() {
        return Ok(Some(text.to_string()));
    }
    groups.retain(|g| {
        g.get("rules")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
    });
    if groups.is_empty() {
        return Ok(None);
    }
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(Some(format!(
        "{header}# Changed in stack.yaml: {}.\n{}",
        changed.join("; "),
        yaml::document(&value)
    )))
}

/// `team-<team>-<file stem>.yaml`, restricted to the characters a ConfigMap key allows.
fn team_file_name(team: &Team, path: &str) -> String {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let stem = base
        .strip_suffix(".yaml")
        .or_else(|| base.strip_suffix(".yml"))
        .unwrap_or(base);
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("team-{}-{stem}.yaml", team.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_change_only_the_named_alerts() {
        let spec_text = "cluster: {name: a}\nalerts:\n  ServiceHighErrorRate: {threshold: 0.1, for: 20m, severity: warning}\n  ServiceHighLatency: {enabled: false}\n";
        let spec = crate::spec::parse("s.yaml", spec_text).expect("valid");
        let files = rule_files(&spec).expect("renders");
        let services = &files
            .iter()
            .find(|(n, _)| n == "services.yaml")
            .expect("present")
            .1;
        let docs = YamlLoader::load_from_str(services).expect("yaml");
        let rules = docs[0]["groups"][0]["rules"].as_vec().expect("rules");
        assert!(
            rules
                .iter()
                .all(|r| r["alert"].as_str() != Some("ServiceHighLatency"))
        );
        let error_rate = rules
            .iter()
            .find(|r| r["alert"].as_str() == Some("ServiceHighErrorRate"))
            .expect("kept");
        assert!(
            error_rate["expr"]
                .as_str()
                .expect("expr")
                .trim_end()
                .ends_with("> 0.1")
        );
        assert_eq!(error_rate["for"].as_str(), Some("20m"));
        assert_eq!(error_rate["labels"]["severity"].as_str(), Some("warning"));
        let untouched = &files
            .iter()
            .find(|(n, _)| n == "stack.yaml")
            .expect("present")
            .1;
        assert_eq!(
            untouched,
            include_str!("../../stack/prometheus/rules/stack.yaml")
        );
    }
}
