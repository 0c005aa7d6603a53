//! The rule files Prometheus loads: the default rules shipped with stackgen (kept or dropped by
//! platform profile and enabled exporters) and the teams' own rule files, each rule of which gets
//! the owning team's `team` label.

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::yaml;
use crate::spec::{Spec, Team};

/// A default rule file and what it needs from the cluster.
pub struct DefaultRuleFile {
    pub name: &'static str,
    pub text: &'static str,
    pub needs: Needs,
}

/// What a default rule file's alerts query, so a profile without it drops the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    KubeStateMetrics,
    NodeExporter,
    ControlPlane,
}

pub const DEFAULT_RULE_FILES: &[DefaultRuleFile] = &[
    DefaultRuleFile {
        name: "stack.yaml",
        text: include_str!("../../stack/prometheus/rules/stack.yaml"),
        needs: Needs::Nothing,
    },
    DefaultRuleFile {
        name: "services.yaml",
        text: include_str!("../../stack/prometheus/rules/services.yaml"),
        needs: Needs::Nothing,
    },
    DefaultRuleFile {
        name: "kubernetes.yaml",
        text: include_str!("../../stack/prometheus/rules/kubernetes.yaml"),
        needs: Needs::KubeStateMetrics,
    },
    DefaultRuleFile {
        name: "node.yaml",
        text: include_str!("../../stack/prometheus/rules/node.yaml"),
        needs: Needs::NodeExporter,
    },
    DefaultRuleFile {
        name: "control-plane.yaml",
        text: include_str!("../../stack/prometheus/rules/control-plane.yaml"),
        needs: Needs::ControlPlane,
    },
];

/// The rule files for `spec`, as (file name, contents), sorted by name.
pub fn rule_files(spec: &Spec) -> Result<Vec<(String, String)>, String> {
    let mut files: Vec<(String, String)> = DEFAULT_RULE_FILES
        .iter()
        .filter(|f| match f.needs {
            Needs::Nothing => true,
            Needs::KubeStateMetrics => spec.exporters.kube_state_metrics,
            Needs::NodeExporter => spec.exporters.node_exporter,
            Needs::ControlPlane => spec.cluster.platform.exposes_control_plane(),
        })
        .map(|f| (f.name.to_string(), f.text.to_string()))
        .collect();
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

/// Adds `team: <team>` to the labels of every rule; a rule that names another team is refused.
pub fn label_team_rules(text: &str, team: &str) -> Result<String, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let doc = docs
        .first()
        .ok_or("the file is empty; a rule file has `groups:`")?;
    let mut value = to_json(doc);
    let groups = value
        .get_mut("groups")
        .and_then(Value::as_array_mut)
        .ok_or("a rule file is a mapping with a `groups:` list")?;
    for group in groups {
        let group_name = group
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let rules = group
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| format!("group `{group_name}` has no `rules:` list"))?;
        for rule in rules {
            let rule_name = rule
                .get("alert")
                .or_else(|| rule.get("record"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let rule = rule
                .as_object_mut()
                .ok_or_else(|| format!("group `{group_name}`: each rule is a mapping"))?;
            let labels = rule
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            let labels = labels
                .as_object_mut()
                .ok_or_else(|| format!("rule `{rule_name}`: `labels` must be a mapping"))?;
            match labels.get("team").and_then(Value::as_str) {
                Some(existing) if existing != team => {
                    return Err(format!(
                        "rule `{rule_name}` sets team `{existing}`, but the file belongs to team `{team}`"
                    ));
                }
                _ => {
                    labels.insert("team".into(), Value::String(team.to_string()));
                }
            }
        }
    }
    Ok(format!(
        "# Team {team}'s rules; every rule carries team=\"{team}\".\n{}",
        yaml::document(&value)
    ))
}

fn to_json(node: &Yaml) -> Value {
    match node {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_label_is_added_to_every_rule() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n      - record: r:x\n        expr: sum(up)\n        labels: {team: payments}\n";
        let out = label_team_rules(text, "payments").expect("labelled");
        let docs = YamlLoader::load_from_str(&out).expect("yaml");
        for rule in docs[0]["groups"][0]["rules"].as_vec().expect("rules") {
            assert_eq!(rule["labels"]["team"].as_str(), Some("payments"));
        }
        assert_eq!(docs[0]["groups"][0]["rules"][0]["for"].as_str(), Some("5m"));
    }

    #[test]
    fn another_teams_label_is_refused() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        labels: {team: search}\n";
        let err = label_team_rules(text, "payments").expect_err("refused");
        assert!(err.contains("sets team `search`"), "{err}");
    }
}
