//! Ownership: which service an alert is about, which team owns it, and which incident it joins.
//! Pure: [`classify`] reads the alert's labels and the configured map, nothing else.

use std::collections::BTreeMap;

use super::alert::AlertUpdate;
use super::dedup::Classified;
use super::matcher::{Matcher, all_match};

/// How alerts are grouped into incidents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IncidentKey {
    /// One incident per failing service (team, service, and its namespace and cluster): the
    /// service's alerts are its signals. An alert of no service keeps its own identity: its
    /// alert name and the labels that say what it is about ([`IDENTITY_LABELS`]).
    #[default]
    PerService,
    /// The values of these labels (or `team`, `service`), in order: `[team, service,
    /// alertname]` makes one incident per alert name of a service.
    Labels(Vec<String>),
}

/// What an alert of no service is about: a node, a workload, a volume, ... Two teams'
/// problems never share an incident, as these differ.
pub const IDENTITY_LABELS: &[&str] = &[
    "namespace",
    "workload_kind",
    "workload",
    "node",
    "deployment",
    "statefulset",
    "daemonset",
    "job_name",
    "cronjob",
    "owner_kind",
    "owner_name",
    "horizontalpodautoscaler",
    "poddisruptionbudget",
    "persistentvolumeclaim",
];

impl IncidentKey {
    /// The key of an alert with these labels, team and service.
    pub fn of(&self, labels: &super::alert::Labels, team: &str, service: &str) -> String {
        let value = |name: &str| labels.get(name).filter(|v| !v.is_empty());
        match self {
            IncidentKey::Labels(parts) => parts
                .iter()
                .map(|part| match part.as_str() {
                    "team" => team.to_string(),
                    "service" => service.to_string(),
                    other => labels.get(other).cloned().unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join("/"),
            IncidentKey::PerService if !service.is_empty() => {
                let mut key = format!("{team}/{service}");
                for name in ["namespace", "cluster"] {
                    if let Some(v) = value(name) {
                        key.push_str(&format!("/{name}={v}"));
                    }
                }
                key
            }
            IncidentKey::PerService => {
                let alertname = value("alertname").map_or("", String::as_str);
                let mut key = format!("{team}//{alertname}");
                for name in IDENTITY_LABELS.iter().copied().chain(["cluster"]) {
                    if let Some(v) = value(name) {
                        key.push_str(&format!("/{name}={v}"));
                    }
                }
                key
            }
        }
    }
}

/// How alerts map to incidents and teams.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// How alerts are grouped into incidents.
    pub key: IncidentKey,
    /// Where the service comes from: the first of these labels an alert has. `a/b` joins the
    /// values of `a` and `b` (e.g. `namespace/deployment`).
    pub service_labels: Vec<String>,
    /// Labels that identify a member (instance) rather than the incident.
    pub instance_labels: std::sync::Arc<[String]>,
    /// `namespace/service` or `service` -> team.
    pub services: BTreeMap<String, String>,
    /// Namespace -> the team that owns what runs there (its workloads no service lists).
    pub namespaces: BTreeMap<String, String>,
    /// For alerts whose service has no owner: the first rule that matches.
    pub rules: Vec<OwnershipRule>,
    pub default_team: Option<String>,
    /// Teams the router can notify; a `team` label naming another team is not trusted. Empty:
    /// every team label is.
    pub known_teams: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct OwnershipRule {
    pub matchers: Vec<Matcher>,
    pub team: String,
}

/// The team of alerts nobody owns (when there is no default team).
pub const UNOWNED: &str = "unowned";

/// Decides an alert's service, owner, incident key and member identity.
pub fn classify(update: AlertUpdate, ownership: &Ownership) -> Classified {
    let labels = &update.labels;
    let service = ownership
        .service_labels
        .iter()
        .find_map(|spec| {
            let parts: Vec<&str> = spec.split('/').collect();
            let values: Option<Vec<&str>> = parts
                .iter()
                .map(|p| labels.get(*p).map(String::as_str).filter(|v| !v.is_empty()))
                .collect();
            values.map(|v| v.join("/"))
        })
        .unwrap_or_default();
    let namespace = labels.get("namespace").map(String::as_str).unwrap_or("");
    let namespace_owner = ownership.namespaces.get(namespace);
    let team = ownership
        .services
        .get(&format!("{namespace}/{service}"))
        .or_else(|| ownership.services.get(&service))
        .cloned()
        .or_else(|| {
            // A `team` label is trusted for a known team, and inside a namespace only for the
            // team that owns it: nobody can claim (or page) another team's namespace.
            labels
                .get("team")
                .filter(|t| {
                    !t.is_empty()
                        && (ownership.known_teams.is_empty() || ownership.known_teams.contains(*t))
                        && namespace_owner.is_none_or(|owner| owner == *t)
                })
                .cloned()
        })
        .or_else(|| namespace_owner.cloned())
        .or_else(|| {
            ownership
                .rules
                .iter()
                .find(|r| all_match(&r.matchers, labels))
                .map(|r| r.team.clone())
        })
        .or_else(|| ownership.default_team.clone())
        .unwrap_or_else(|| UNOWNED.to_string());
    let alertname = labels.get("alertname").cloned().unwrap_or_default();
    let key = ownership.key.of(labels, &team, &service);
    Classified {
        key,
        team,
        service,
        alertname,
        instance_labels: ownership.instance_labels.clone(),
        update,
    }
}

/// Ownership and alerts the router's pure tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::router::alert::{Labels, label_fingerprint};

    pub(crate) fn ownership() -> Ownership {
        Ownership {
            key: IncidentKey::Labels(vec!["team".into(), "service".into(), "alertname".into()]),
            service_labels: vec![
                "service".into(),
                "namespace/deployment".into(),
                "job".into(),
            ],
            instance_labels: vec!["instance".to_string(), "pod".to_string()].into(),
            services: BTreeMap::from([("shop/checkout".to_string(), "payments".to_string())]),
            namespaces: BTreeMap::new(),
            rules: vec![OwnershipRule {
                matchers: vec![Matcher::parse(r#"namespace="search""#).expect("ok")],
                team: "search".into(),
            }],
            default_team: Some("platform".into()),
            known_teams: Default::default(),
        }
    }

    pub(crate) fn update(pairs: &[(&str, &str)]) -> AlertUpdate {
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AlertUpdate {
            fingerprint: label_fingerprint(&labels),
            labels,
            annotations: Labels::new(),
            firing: true,
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
            alertmanager_url: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ownership, update};
    use super::*;

    #[test]
    fn ownership_follows_service_then_label_then_rules_then_default() {
        let o = ownership();
        let c = classify(
            update(&[
                ("alertname", "A"),
                ("service", "checkout"),
                ("namespace", "shop"),
                ("team", "other"),
                ("pod", "p1"),
            ]),
            &o,
        );
        assert_eq!(
            (
                c.team.as_str(),
                c.key.as_str(),
                c.member_identity().as_str()
            ),
            ("payments", "payments/checkout/A", "pod=p1")
        );
        assert!(!c.incident_labels().contains_key("pod"));
        let c = classify(
            update(&[
                ("alertname", "A"),
                ("namespace", "web"),
                ("deployment", "front"),
                ("team", "web"),
            ]),
            &o,
        );
        assert_eq!((c.team.as_str(), c.service.as_str()), ("web", "web/front"));
        let c = classify(
            update(&[
                ("alertname", "A"),
                ("namespace", "search"),
                ("job", "indexer"),
            ]),
            &o,
        );
        assert_eq!((c.team.as_str(), c.service.as_str()), ("search", "indexer"));
        let c = classify(
            update(&[("alertname", "KubeNodeNotReady"), ("node", "n1")]),
            &o,
        );
        assert_eq!(
            (c.team.as_str(), c.key.as_str()),
            ("platform", "platform//KubeNodeNotReady")
        );
        // A team label naming a team the router does not know falls through to the default.
        let known = Ownership {
            known_teams: ["payments".to_string(), "platform".to_string()].into(),
            ..o.clone()
        };
        let c = classify(
            update(&[("alertname", "A"), ("team", "payments-team")]),
            &known,
        );
        assert_eq!(c.team, "platform");
    }

    #[test]
    fn a_namespace_belongs_to_its_team_which_no_label_can_claim() {
        let o = Ownership {
            namespaces: BTreeMap::from([("payments".to_string(), "payments".to_string())]),
            known_teams: [
                "payments".to_string(),
                "search".to_string(),
                "platform".to_string(),
            ]
            .into(),
            ..ownership()
        };
        let team = |pairs: &[(&str, &str)]| classify(update(pairs), &o).team;
        let workload = [
            ("alertname", "KubeDeploymentReplicasUnavailable"),
            ("namespace", "payments"),
            ("deployment", "ledger"),
        ];
        assert_eq!(team(&workload), "payments", "a workload no service lists");
        assert_eq!(
            team(&[&workload[..], &[("team", "search")]].concat()),
            "payments",
            "a team label cannot claim another team's namespace"
        );
        assert_eq!(
            team(&[&workload[..], &[("team", "payments")]].concat()),
            "payments"
        );
        assert_eq!(
            team(&[
                ("alertname", "KubeDeploymentReplicasUnavailable"),
                ("namespace", "free"),
                ("team", "search")
            ]),
            "search",
            "in a namespace nobody owns, a known team's label is trusted"
        );
        assert_eq!(
            team(&[
                ("alertname", "KubeDeploymentReplicasUnavailable"),
                ("namespace", "free")
            ]),
            "platform"
        );
    }

    #[test]
    fn per_service_keys_group_a_service_and_keep_other_alerts_apart() {
        let o = Ownership {
            key: IncidentKey::PerService,
            ..ownership()
        };
        let key = |pairs: &[(&str, &str)]| classify(update(pairs), &o).key;
        let service = [
            ("service", "checkout"),
            ("namespace", "shop"),
            ("cluster", "prod"),
        ];
        let errors = key(&[
            &service[..],
            &[("alertname", "ServiceHighErrorRate"), ("pod", "p1")],
        ]
        .concat());
        let down = key(&[&service[..], &[("alertname", "ServiceTargetsDown")]].concat());
        assert_eq!(errors, "payments/checkout/namespace=shop/cluster=prod");
        assert_eq!(errors, down, "one incident per failing service");
        // Alerts of no service: by alert name and what they are about.
        assert_eq!(
            key(&[
                ("alertname", "KubeNodeNotReady"),
                ("node", "n1"),
                ("cluster", "prod")
            ]),
            "platform//KubeNodeNotReady/node=n1/cluster=prod"
        );
        assert_ne!(
            key(&[
                ("alertname", "KubeDeploymentReplicasUnavailable"),
                ("namespace", "a"),
                ("deployment", "web")
            ]),
            key(&[
                ("alertname", "KubeDeploymentReplicasUnavailable"),
                ("namespace", "b"),
                ("deployment", "web")
            ]),
            "two namespaces' workloads never merge"
        );
    }
}
