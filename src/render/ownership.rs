//! The spec's part of the workload model: which pods each service's selector matches, and which
//! pods a team claims with the team pod label. The generic part, from pods to workloads and
//! volumes and on to their owners, is the default rule file `workloads.yaml`; the spec's rules
//! go first in its group ([`workloads_rule_file`]).
//!
//! kube-state-metrics exports no pod labels unless told; [`pod_label_allowlist`] names exactly
//! the ones these rules read. Pure: the spec in, text out.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::labels::kube_state_metrics_label;
use crate::rules::promql;
use crate::spec::Spec;
use crate::yaml;

/// kube-state-metrics' `--metric-labels-allowlist` value: every selector key and the team label,
/// on `kube_pod_labels`.
pub fn pod_label_allowlist(spec: &Spec) -> String {
    let keys: BTreeSet<&str> = spec
        .services
        .iter()
        .flat_map(|service| service.selector.keys().map(String::as_str))
        .chain([spec.ownership.team_label.as_str()])
        .collect();
    format!("pods=[{}]", keys.into_iter().collect::<Vec<_>>().join(","))
}

/// The default `workloads.yaml` with the spec's rules first in its group, so every evaluation
/// reads the pods' services and teams of the same moment (a group runs its rules in order).
pub fn workloads_rule_file(static_text: &str, spec: &Spec) -> Result<String, String> {
    const GROUP_START: &str = "    rules:\n";
    let at = static_text
        .find(GROUP_START)
        .ok_or("workloads.yaml has no rules list")?
        + GROUP_START.len();
    let rules = spec_rules(spec);
    if rules.is_empty() {
        return Ok(static_text.to_string());
    }
    let generated = yaml::block(&Value::Array(rules), 6);
    let comment = format!(
        "      # From the spec: the pods each service selects (stackgen:pod_service:info) and the\n\
         \x20     # pods a team claims with the pod label `{}` (stackgen:pod_team:info), honoured in\n\
         \x20     # the team's namespaces and in those of no team. A pod_service value ranks its\n\
         \x20     # service: should two selectors match one pod, the service declared first owns it.",
        spec.ownership.team_label
    );
    Ok(format!(
        "{}{comment}{generated}\n{}",
        &static_text[..at],
        &static_text[at..]
    ))
}

/// The spec's recording rules: one per service (its selector) and one per team (its label).
fn spec_rules(spec: &Spec) -> Vec<Value> {
    let count = spec.services.len();
    let mut rules: Vec<Value> = spec
        .services
        .iter()
        .enumerate()
        .map(|(index, service)| {
            let mut matchers = vec![format!("namespace={}", promql::quote(&service.namespace))];
            matchers.extend(service.selector.iter().map(|(key, value)| {
                format!("{}={}", kube_state_metrics_label(key), promql::quote(value))
            }));
            json!({
                "record": "stackgen:pod_service:info",
                "expr": format!("{} * group by (cluster, namespace, pod) (kube_pod_labels{{{}}})", count - index, matchers.join(", ")),
                "labels": {"service": service.name, "team": service.team, "namespace": service.namespace},
            })
        })
        .collect();
    let team_label = kube_state_metrics_label(&spec.ownership.team_label);
    for team in &spec.teams {
        let mut matchers = vec![format!("{team_label}={}", promql::quote(&team.name))];
        // A team's label counts in its own namespaces and in those of no team, never in another
        // team's.
        let others: Vec<&str> = spec
            .teams
            .iter()
            .filter(|other| other.name != team.name)
            .flat_map(|other| other.namespaces.iter().map(String::as_str))
            .collect();
        if !others.is_empty() {
            matchers.push(format!(
                "namespace!~{}",
                promql::quote(&promql::alternatives(&others))
            ));
        }
        rules.push(json!({
            "record": "stackgen:pod_team:info",
            "expr": format!("group by (cluster, namespace, pod) (kube_pod_labels{{{}}})", matchers.join(", ")),
            "labels": {"team": team.name},
        }));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        crate::spec::parse("s.yaml", text).expect("valid spec")
    }

    const TWO_TEAMS: &str = "cluster: {name: a}\nrouter: {platform_team: ops}\nteams:\n  - name: shop\n    webhook: {url: {secret: s, key: k}}\n    namespaces: [shop]\n  - name: ops\n    webhook: {url: {secret: s, key: k}}\n    namespaces: [ops, infra]\nservices:\n  - {name: cart, team: shop, namespace: shop, selector: {app.kubernetes.io/name: cart, tier: web}, port: 8080}\n";

    #[test]
    fn kube_state_metrics_exports_every_selector_key_and_the_team_label() {
        assert_eq!(
            pod_label_allowlist(&spec(TWO_TEAMS)),
            "pods=[app.kubernetes.io/name,stackgen.io/team,tier]"
        );
    }

    const WORKLOADS: &str = include_str!("../../stack/prometheus/rules/workloads.yaml");

    /// The rendered workloads.yaml's (record, expr) pairs of the spec, as Prometheus reads them.
    fn records(text: &str) -> Vec<(String, String)> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("YAML");
        docs[0]["groups"][0]["rules"]
            .as_vec()
            .expect("rules")
            .iter()
            .map(|rule| {
                let field = |name: &str| rule[name].as_str().expect("a string").to_string();
                (field("record"), field("expr"))
            })
            .filter(|(record, _)| {
                record.starts_with("stackgen:pod_service")
                    || record.starts_with("stackgen:pod_team")
            })
            .collect()
    }

    #[test]
    fn a_service_selects_its_pods_and_a_team_label_counts_outside_other_teams_namespaces() {
        let text = workloads_rule_file(WORKLOADS, &spec(TWO_TEAMS)).expect("rules");
        let first = records(&text).first().cloned();
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("YAML");
        assert_eq!(
            docs[0]["groups"][0]["rules"][0]["record"].as_str(),
            first.as_ref().map(|(record, _)| record.as_str()),
            "the spec's rules come first in the group"
        );
        let pairs = |record: &str, expr: &str| (record.to_string(), expr.to_string());
        assert_eq!(
            records(&text),
            [
                pairs(
                    "stackgen:pod_service:info",
                    r#"1 * group by (cluster, namespace, pod) (kube_pod_labels{namespace="shop", label_app_kubernetes_io_name="cart", label_tier="web"})"#
                ),
                pairs(
                    "stackgen:pod_team:info",
                    r#"group by (cluster, namespace, pod) (kube_pod_labels{label_stackgen_io_team="shop", namespace!~"ops|infra"})"#
                ),
                pairs(
                    "stackgen:pod_team:info",
                    r#"group by (cluster, namespace, pod) (kube_pod_labels{label_stackgen_io_team="ops", namespace!~"shop"})"#
                ),
            ]
        );
    }

    #[test]
    fn a_spec_of_no_teams_and_no_services_keeps_workloads_yaml_as_shipped() {
        assert_eq!(
            workloads_rule_file(WORKLOADS, &spec("cluster: {name: a}\n")),
            Ok(WORKLOADS.to_string())
        );
    }
}
