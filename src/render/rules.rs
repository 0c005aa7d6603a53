//! The rule files Prometheus loads: the default rules shipped with stackgen (kept or dropped by
//! platform profile and enabled exporters; workloads.yaml with the ownership rules generated from
//! the spec's services and teams), and the teams' own rule files, each rule of which gets the owning team's
//! `team` label.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use yaml_rust2::YamlLoader;

use crate::rules::defaults::{DEFAULT_RULE_FILES, Needs};
use crate::rules::promql;
use crate::rules::team::label_team_rules;
use crate::spec::{AlertOverride, SloKind, Spec, Team};
use crate::yaml::{self, from_yaml};

/// The default rule file that the spec's ownership rules join.
const WORKLOADS_FILE: &str = "workloads.yaml";
/// The default rule file that the request series of services with other metric names join.
const SERVICES_FILE: &str = "services.yaml";

/// The default alerts about the router itself (stack.yaml).
const ROUTER_ALERTS: [&str; 6] = [
    "StackgenRouterDeliveriesFailing",
    "StackgenRouterNotificationsDead",
    "StackgenRouterQueueBackingUp",
    "StackgenRouterUnroutable",
    "StackgenRouterDown",
    "StackgenRouterMissing",
];

/// The rule files for `spec`, as (file name, contents), sorted by name.
pub fn rule_files(spec: &Spec) -> Result<Vec<(String, String)>, String> {
    let mut tunings: BTreeMap<&str, Vec<Tuning>> = BTreeMap::new();
    for service in &spec.services {
        // An objective's burn-rate alerts replace the static alert on the same signal.
        let replaced = service.slos.iter().map(|slo| match slo.kind {
            SloKind::Availability => "ServiceHighErrorRate",
            SloKind::Latency => "ServiceHighLatency",
        });
        let changes = service
            .alerts
            .iter()
            .map(|(alert, change)| (alert.as_str(), change));
        let replaced = replaced
            .filter(|alert| !service.alerts.contains_key(*alert))
            .map(|alert| (alert, &REPLACED_BY_OBJECTIVE));
        for (alert, change) in changes.chain(replaced) {
            tunings.entry(alert).or_default().push(Tuning {
                namespace: &service.namespace,
                service: &service.name,
                change,
            });
        }
    }
    // A cluster whose router runs in another cluster of the fleet has no router to watch: the
    // router's own alerts belong to the cluster it runs in.
    let mut alerts = spec.alerts.clone();
    if spec.router.remote.is_some() {
        for name in ROUTER_ALERTS {
            alerts.insert(
                name.to_string(),
                AlertOverride {
                    enabled: false,
                    ..AlertOverride::default()
                },
            );
        }
    }
    let mut files = Vec::new();
    for file in DEFAULT_RULE_FILES.iter().filter(|f| match f.needs {
        Needs::Nothing => true,
        Needs::KubeStateMetrics => spec.exporters.kube_state_metrics,
        Needs::NoKubeStateMetrics => !spec.exporters.kube_state_metrics,
        Needs::NodeExporter => spec.exporters.node_exporter,
        Needs::ControlPlane => spec.cluster.scrapes_control_plane(),
        Needs::Probes => !spec.probes.is_empty(),
    }) {
        if let Some(text) = apply_overrides(file.text, &alerts, &tunings)
            .map_err(|e| format!("{}: {e}", file.name))?
        {
            let text = match file.name {
                WORKLOADS_FILE => super::ownership::workloads_rule_file(&text, spec)?,
                SERVICES_FILE => super::service_metrics::services_rule_file(&text, spec)?,
                _ => text,
            };
            files.push((file.name.to_string(), text));
        }
    }
    if let Some(text) = super::slos::slo_rule_file(spec) {
        files.push((super::slos::FILE.to_string(), text));
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

/// A static alert a service's objective replaces: off for that service.
static REPLACED_BY_OBJECTIVE: AlertOverride = AlertOverride {
    enabled: false,
    for_duration: None,
    severity: None,
    threshold: None,
};

/// One service's change to a default alert (`services[].alerts`).
struct Tuning<'a> {
    namespace: &'a str,
    service: &'a str,
    change: &'a AlertOverride,
}

/// The series that marks an alert as tuned for a service: the alert's rule leaves the service
/// to its own copy of the rule.
const TUNED: &str = "stackgen:service_alert_tuned:info";

/// A default rule file with the spec's changes: disabled alerts removed (and groups left empty,
/// and a file left empty, dropped), `for`, severity and threshold replaced; an alert tuned for
/// some services leaves them out and gets one copy per service with that service's changes
/// (the services marked by a series recorded first in the group). Unchanged files stay byte
/// for byte as shipped. `None` when nothing is left.
fn apply_overrides(
    text: &str,
    overrides: &BTreeMap<String, AlertOverride>,
    tunings: &BTreeMap<&str, Vec<Tuning>>,
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
        let mut marks = Vec::new();
        let mut kept = Vec::new();
        for mut rule in rules.drain(..) {
            let name = rule
                .get("alert")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(change) = overrides.get(&name) {
                if !change.enabled {
                    changed.push(format!("{name} disabled"));
                    continue;
                }
                let what = apply_change(&mut rule, &name, change)?;
                if !what.is_empty() {
                    changed.push(format!("{name}: {}", what.join(", ")));
                }
            }
            let Some(tuned) = tunings.get(name.as_str()) else {
                kept.push(rule);
                continue;
            };
            let mut base = rule.clone();
            restrict(
                &mut base,
                &format!(
                    "unless on (namespace, service)\n  {TUNED}{{alertname={}}}",
                    promql::quote(&name)
                ),
            );
            kept.push(base);
            for tuning in tuned {
                let (namespace, service) = (tuning.namespace, tuning.service);
                marks.push(json!({
                    "record": TUNED,
                    "expr": "vector(1)",
                    "labels": {"alertname": name, "namespace": namespace, "service": service},
                }));
                if !tuning.change.enabled {
                    changed.push(format!("{name} disabled for {namespace}/{service}"));
                    continue;
                }
                let mut copy = rule.clone();
                let what = apply_change(&mut copy, &name, tuning.change)?;
                // The labels its results carry anyway: two services' copies of one change are
                // two rules to promtool, not a duplicate.
                if let Some(labels) = copy.get_mut("labels").and_then(Value::as_object_mut) {
                    labels.insert("namespace".into(), json!(namespace));
                    labels.insert("service".into(), json!(service));
                }
                restrict(
                    &mut copy,
                    &format!(
                        "and on (namespace, service)\n  {TUNED}{{alertname={}, namespace={}, service={}}}",
                        promql::quote(&name),
                        promql::quote(namespace),
                        promql::quote(service)
                    ),
                );
                changed.push(format!(
                    "{name} for {namespace}/{service}: {}",
                    if what.is_empty() {
                        "unchanged".to_string()
                    } else {
                        what.join(", ")
                    }
                ));
                kept.push(copy);
            }
        }
        *rules = marks.into_iter().chain(kept).collect();
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

/// Applies `change`'s `for`, severity and threshold to the alerting rule `rule`; says what changed.
fn apply_change(
    rule: &mut Value,
    name: &str,
    change: &AlertOverride,
) -> Result<Vec<String>, String> {
    let mut what = Vec::new();
    let Some(fields) = rule.as_object_mut() else {
        return Ok(what);
    };
    if let Some(duration) = &change.for_duration {
        fields.insert("for".into(), Value::String(duration.clone()));
        what.push(format!("for {duration}"));
    }
    if let Some(severity) = &change.severity {
        if let Some(labels) = fields.get_mut("labels").and_then(Value::as_object_mut) {
            labels.insert("severity".into(), Value::String(severity.clone()));
        }
        what.push(format!("severity {severity}"));
    }
    if let Some(threshold) = &change.threshold {
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
    Ok(what)
}

/// Wraps the rule's expression in parentheses followed by `operation` (a set operator with its
/// right-hand side).
fn restrict(rule: &mut Value, operation: &str) {
    let expr = rule
        .get("expr")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_end()
        .to_string();
    let indented: String = expr.lines().map(|line| format!("  {line}\n")).collect();
    rule["expr"] = Value::String(format!("(\n{indented})\n{operation}\n"));
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

    /// The rule files rendered from `spec_text`, and services.yaml among them.
    fn rendered(spec_text: &str) -> (Vec<(String, String)>, String) {
        let spec = crate::spec::parse("s.yaml", spec_text).expect("valid");
        let files = rule_files(&spec).expect("renders");
        let services = files
            .iter()
            .find(|(n, _)| n == "services.yaml")
            .expect("present")
            .1
            .clone();
        (files, services)
    }

    #[test]
    fn overrides_change_only_the_named_alerts() {
        let spec_text = "cluster: {name: a}\nalerts:\n  ServiceHighErrorRate: {threshold: 0.1, for: 20m, severity: warning}\n  ServiceHighLatency: {enabled: false}\n";
        let (files, services) = rendered(spec_text);
        let docs = YamlLoader::load_from_str(&services).expect("yaml");
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

    #[test]
    fn an_alert_tuned_for_a_service_leaves_it_to_its_own_copy() {
        let spec_text = "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nalerts:\n  ServiceHighLatency: {for: 15m}\nservices:\n  - name: events\n    team: t\n    namespace: shop\n    port: 8080\n    alerts: {ServiceHighLatency: {enabled: false}}\n  - name: reports\n    team: t\n    namespace: shop\n    port: 8080\n    alerts: {ServiceHighLatency: {threshold: 30, severity: info}}\n";
        let (files, services) = rendered(spec_text);
        let docs = YamlLoader::load_from_str(&services).expect("yaml");
        let rules = docs[0]["groups"][0]["rules"].as_vec().expect("rules");
        let marks: Vec<(&str, &str)> = rules
            .iter()
            .filter(|r| r["record"].as_str() == Some(TUNED))
            .map(|r| {
                (
                    r["labels"]["service"].as_str().unwrap_or_default(),
                    r["labels"]["alertname"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            marks,
            [
                ("events", "ServiceHighLatency"),
                ("reports", "ServiceHighLatency")
            ]
        );
        let position = |record: bool| {
            rules
                .iter()
                .position(|r| r["record"].as_str().is_some() == record)
        };
        // The marks come first, so the group's alerts see them in the same evaluation.
        assert!(position(true) < rules.iter().position(|r| r["alert"].as_str().is_some()));
        assert!(position(false).is_some());
        let latency: Vec<&yaml_rust2::Yaml> = rules
            .iter()
            .filter(|r| r["alert"].as_str() == Some("ServiceHighLatency"))
            .collect();
        assert_eq!(
            latency.len(),
            2,
            "the rule and the copy for reports; events has none"
        );
        let base = latency[0]["expr"].as_str().expect("expr");
        assert!(
            base.trim_end().ends_with(
                "unless on (namespace, service)\n  stackgen:service_alert_tuned:info{alertname=\"ServiceHighLatency\"}"
            ),
            "{base}"
        );
        assert!(
            base.contains(") > 1\n"),
            "the default threshold stays: {base}"
        );
        assert_eq!(latency[0]["for"].as_str(), Some("15m"));
        let copy = latency[1]["expr"].as_str().expect("expr");
        assert!(copy.contains(") > 30\n"), "{copy}");
        // Labelled with its service, so two services' copies are not one duplicate rule.
        assert_eq!(latency[1]["labels"]["service"].as_str(), Some("reports"));
        assert_eq!(latency[1]["labels"]["namespace"].as_str(), Some("shop"));
        assert!(
            copy.trim_end().ends_with("stackgen:service_alert_tuned:info{alertname=\"ServiceHighLatency\", namespace=\"shop\", service=\"reports\"}"),
            "{copy}"
        );
        assert_eq!(
            latency[1]["for"].as_str(),
            Some("15m"),
            "the global change holds too"
        );
        assert_eq!(latency[1]["labels"]["severity"].as_str(), Some("info"));
        assert!(services.contains("ServiceHighLatency disabled for shop/events"));
        for (name, text) in &files {
            promql_parses(name, text);
        }
    }

    #[test]
    fn every_series_the_stack_records_is_known_to_the_linter() {
        let spec_text = include_str!("../../tests/fixtures/conventions/stack.yaml").replace(
            "  - name: catalog\n",
            "  - name: catalog\n    alerts: {ServiceHighLatency: {threshold: 3}}\n",
        );
        let (files, _) = rendered(&spec_text);
        let mut records = 0;
        for (name, text) in &files {
            let docs = YamlLoader::load_from_str(text).expect("yaml");
            for group in docs[0]["groups"].as_vec().into_iter().flatten() {
                for rule in group["rules"].as_vec().into_iter().flatten() {
                    if let Some(record) = rule["record"].as_str() {
                        records += 1;
                        assert!(
                            crate::rules::defaults::recorded_by_the_stack(record),
                            "{name}: {record}"
                        );
                    }
                }
            }
        }
        assert!(records > 100, "{records}");
        assert!(files.iter().any(|(_, text)| text.contains(TUNED)));
    }

    /// Every expression of a rendered rule file parses as PromQL.
    fn promql_parses(name: &str, text: &str) {
        let docs = YamlLoader::load_from_str(text).expect("yaml");
        for group in docs[0]["groups"].as_vec().into_iter().flatten() {
            for rule in group["rules"].as_vec().into_iter().flatten() {
                let expr = rule["expr"].as_str().expect("expr");
                assert!(promql_parser::parser::parse(expr).is_ok(), "{name}: {expr}");
            }
        }
    }
}
