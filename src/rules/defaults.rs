//! The default rule files shipped with stackgen, what each needs from the cluster, and the
//! catalogue of default alerts the spec may disable or tune by name.

use std::sync::OnceLock;

use yaml_rust2::YamlLoader;

use super::promql;

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
    /// Replaced by a file of [`Needs::KubeStateMetrics`] when kube-state-metrics runs.
    NoKubeStateMetrics,
    NodeExporter,
    ControlPlane,
    /// The spec has `probes:`.
    Probes,
}

macro_rules! rule_file {
    ($name:literal, $needs:expr) => {
        DefaultRuleFile {
            name: $name,
            text: include_str!(concat!("../../stack/prometheus/rules/", $name)),
            needs: $needs,
        }
    };
}

pub const DEFAULT_RULE_FILES: &[DefaultRuleFile] = &[
    rule_file!("stack.yaml", Needs::Nothing),
    rule_file!("services.yaml", Needs::Nothing),
    rule_file!("cluster.yaml", Needs::Nothing),
    rule_file!("volumes.yaml", Needs::NoKubeStateMetrics),
    rule_file!("workloads.yaml", Needs::KubeStateMetrics),
    rule_file!("kubernetes.yaml", Needs::KubeStateMetrics),
    rule_file!("node.yaml", Needs::NodeExporter),
    rule_file!("control-plane.yaml", Needs::ControlPlane),
    rule_file!("probes.yaml", Needs::Probes),
];

/// Series the renderer records from the spec, besides the default files' own: the ownership map,
/// tuned alerts, metrics conventions, and every `stackgen:slo_…` series of the objectives.
const GENERATED_SERIES: [&str; 4] = [
    "stackgen:pod_service:info",
    "stackgen:pod_team:info",
    "stackgen:service_alert_tuned:info",
    "stackgen:service_metrics:info",
];
const GENERATED_PREFIX: &str = "stackgen:slo_";

/// Whether a rendered stack may record `name`: a default rule file records it, or the renderer
/// does from the spec. Team rules can read these, though no exposition has them.
pub fn recorded_by_the_stack(name: &str) -> bool {
    static RECORDED: OnceLock<Vec<String>> = OnceLock::new();
    let recorded = RECORDED.get_or_init(|| {
        DEFAULT_RULE_FILES
            .iter()
            .filter_map(|file| YamlLoader::load_from_str(file.text).ok())
            .flat_map(|docs| {
                docs.first()
                    .and_then(|d| d["groups"].as_vec())
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g["rules"].as_vec())
                    .flatten()
                    .filter_map(|rule| rule["record"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    recorded.iter().any(|r| r == name)
        || GENERATED_SERIES.contains(&name)
        || name.starts_with(GENERATED_PREFIX)
}

/// A default alert as the spec may refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultAlert {
    pub name: String,
    pub file: &'static str,
    /// The expression ends in `<comparison> NUMBER`, so `threshold` can be overridden.
    pub has_threshold: bool,
    /// Its alerts carry the `service` label (the expression aggregates or joins by it), so it
    /// can be tuned for one service (`services[].alerts`).
    pub per_service: bool,
}

/// Every default alert, in file order.
pub fn alerts() -> &'static [DefaultAlert] {
    static ALERTS: OnceLock<Vec<DefaultAlert>> = OnceLock::new();
    ALERTS.get_or_init(|| {
        let mut alerts = Vec::new();
        // A file that stands in for another when kube-state-metrics is off repeats its alerts.
        for file in DEFAULT_RULE_FILES
            .iter()
            .filter(|f| f.needs != Needs::NoKubeStateMetrics)
        {
            let Ok(docs) = YamlLoader::load_from_str(file.text) else {
                continue;
            };
            let Some(groups) = docs.first().and_then(|d| d["groups"].as_vec()) else {
                continue;
            };
            for rule in groups.iter().filter_map(|g| g["rules"].as_vec()).flatten() {
                if let Some(name) = rule["alert"].as_str() {
                    let expr = rule["expr"].as_str().unwrap_or_default();
                    alerts.push(DefaultAlert {
                        name: name.to_string(),
                        file: file.name,
                        has_threshold: promql::threshold_span(expr).is_some(),
                        per_service: keeps_service_label(expr),
                    });
                }
            }
        }
        alerts
    })
}

/// Whether an expression's `by (...)`, `group_left (...)` or `group_right (...)` names `service`, or
/// it reads the series recorded per service (`stackgen:service_…`, all `by (…, service, …)`).
fn keeps_service_label(expr: &str) -> bool {
    if expr.contains("stackgen:service_") {
        return true;
    }
    static GROUPING: OnceLock<regex::Regex> = OnceLock::new();
    let grouping = GROUPING.get_or_init(|| {
        regex::Regex::new(r"\b(?:by|group_left|group_right)\s*\(([^)]*)\)").expect("a valid regex")
    });
    grouping
        .captures_iter(expr)
        .any(|c| c[1].split(',').any(|label| label.trim() == "service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_knows_every_default_alert_once() {
        let alerts = alerts();
        assert!(alerts.len() >= 25, "{}", alerts.len());
        let mut names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate default alert names");
        let error_rate = alerts
            .iter()
            .find(|a| a.name == "ServiceHighErrorRate")
            .expect("present");
        assert!(error_rate.has_threshold);
        let watchdog = alerts
            .iter()
            .find(|a| a.name == "Watchdog")
            .expect("present");
        assert!(!watchdog.has_threshold);
        assert!(!watchdog.per_service);
        let per_service = |name: &str| alerts.iter().any(|a| a.name == name && a.per_service);
        for name in [
            "ServiceHighLatency",
            "ServiceTargetsDown",
            "KubeWorkloadRestarting",
        ] {
            assert!(per_service(name), "{name}");
        }
        for name in [
            "KubeNodeNotReady",
            "StackgenRouterDown",
            "NodeFilesystemAlmostFull",
        ] {
            assert!(!per_service(name), "{name}");
        }
    }
}
