//! Team rule files: each rule gets the owning team's `team` label, and a rule naming another team
//! is refused. Used where team files ship (`render`) and where they are tested (`rules test`).

use serde_json::Value;

use crate::yaml::{self, from_yaml};

/// Adds `team: <team>` to the labels of every rule; a rule that names another team is refused.
pub fn label_team_rules(text: &str, team: &str) -> Result<String, String> {
    let docs = yaml::load_untrusted(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let doc = docs
        .first()
        .ok_or("the file is empty; a rule file has `groups:`")?;
    let mut value = from_yaml(doc);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_label_is_added_to_every_rule() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n      - record: r:x\n        expr: sum(up)\n        labels: {team: payments}\n";
        let out = label_team_rules(text, "payments").expect("labelled");
        let docs = yaml_rust2::YamlLoader::load_from_str(&out).expect("yaml");
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
