//! Ownership and routes. Pure: which incident an alert belongs to and who owns it
//! ([`classify`]), and which destinations a transition of an incident goes to ([`plan`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::alert::{AlertUpdate, Labels, Millis};
use super::dedup::{Classified, Incident, Intent, IntentKind};
use super::matcher::{Matcher, all_match};

/// How alerts map to incidents and teams.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Labels (or `team`, `service`) whose values make an incident key, in order.
    pub key: Vec<String>,
    /// Where the service comes from: the first of these labels an alert has. `a/b` joins the
    /// values of `a` and `b` (e.g. `namespace/deployment`).
    pub service_labels: Vec<String>,
    /// Labels that identify a member (instance) rather than the incident.
    pub instance_labels: std::sync::Arc<[String]>,
    /// `namespace/service` or `service` -> team.
    pub services: BTreeMap<String, String>,
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
    let team = ownership
        .services
        .get(&format!("{namespace}/{service}"))
        .or_else(|| ownership.services.get(&service))
        .cloned()
        .or_else(|| {
            labels
                .get("team")
                .filter(|t| {
                    !t.is_empty()
                        && (ownership.known_teams.is_empty() || ownership.known_teams.contains(*t))
                })
                .cloned()
        })
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
    let key = ownership
        .key
        .iter()
        .map(|part| match part.as_str() {
            "team" => team.clone(),
            "service" => service.clone(),
            other => labels.get(other).cloned().unwrap_or_default(),
        })
        .collect::<Vec<_>>()
        .join("/");
    Classified {
        key,
        team,
        service,
        alertname,
        instance_labels: ownership.instance_labels.clone(),
        update,
    }
}

/// A destination, named `team/destination`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DestinationRef {
    pub team: String,
    pub name: String,
}

impl DestinationRef {
    pub fn id(&self) -> String {
        format!("{}/{}", self.team, self.name)
    }
}

/// A route: incidents matching all matchers go to these destinations.
#[derive(Debug, Clone)]
pub struct Route {
    pub matchers: Vec<Matcher>,
    pub destinations: Vec<DestinationRef>,
    pub continue_matching: bool,
}

/// The destinations for an incident: the matching routes in order (stopping at the first without
/// `continue`), or, when none matches, every destination of the owning team.
pub fn destinations_for(
    incident: &Incident,
    routes: &[Route],
    team_destinations: &BTreeMap<String, Vec<String>>,
) -> Vec<DestinationRef> {
    let mut chosen: Vec<DestinationRef> = Vec::new();
    let mut matched = false;
    for route in routes {
        if all_match(&route.matchers, &incident.labels) {
            matched = true;
            for d in &route.destinations {
                if !chosen.contains(d) {
                    chosen.push(d.clone());
                }
            }
            if !route.continue_matching {
                break;
            }
        }
    }
    if !matched {
        let team = team_destinations
            .get(&incident.team)
            .or_else(|| team_destinations.get(UNOWNED));
        for name in team.into_iter().flatten() {
            chosen.push(DestinationRef {
                team: incident.team.clone(),
                name: name.clone(),
            });
        }
    }
    chosen
}

/// A notification as planned: what every destination encodes from. Stored in the outbox, so a
/// retry after a restart sends exactly what was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Notification {
    /// Stable across retries and restarts: destinations use it as their idempotency key.
    pub idempotency_key: String,
    pub kind: IntentKind,
    pub incident_key: String,
    /// Same for every notification of one incident episode (PagerDuty dedup_key, thread keys).
    pub episode_key: String,
    pub team: String,
    pub service: String,
    pub alertname: String,
    pub severity: String,
    pub status: String,
    pub opened_at: Millis,
    pub at: Millis,
    pub firing_members: usize,
    pub total_members: usize,
    /// The first few firing members, e.g. `pod=checkout-1`.
    pub members: Vec<String>,
    pub labels: Labels,
    pub annotations: Labels,
    /// The members' annotations differ: `annotations` are one member's (say, one pod's summary),
    /// shown as an example, not as the service's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub annotations_vary: bool,
    pub generator_url: String,
    #[serde(default)]
    pub alertmanager_url: String,
    /// Set only on a digest: one line per notification it stands for (sent together because the
    /// destination's rate limit was reached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digest: Vec<String>,
}

/// How many members a notification lists by name.
pub const LISTED_MEMBERS: usize = 10;

/// Plans one notification per destination for an intent.
pub fn plan(
    intent: &Intent,
    incident: &Incident,
    routes: &[Route],
    team_destinations: &BTreeMap<String, Vec<String>>,
) -> Vec<(DestinationRef, Notification)> {
    let episode_key = short_hash(&[&incident.key, &incident.episode.to_string()]);
    let members: Vec<String> = incident
        .members
        .values()
        .filter(|m| m.firing)
        .take(LISTED_MEMBERS)
        .map(|m| m.identity.clone())
        .collect();
    destinations_for(incident, routes, team_destinations)
        .into_iter()
        .map(|destination| {
            let notification = Notification {
                idempotency_key: short_hash(&[
                    &incident.key,
                    &intent.sequence.to_string(),
                    intent.kind.as_str(),
                    &destination.id(),
                ]),
                kind: intent.kind,
                incident_key: incident.key.clone(),
                episode_key: episode_key.clone(),
                team: incident.team.clone(),
                service: incident.service.clone(),
                alertname: incident.alertname.clone(),
                severity: incident.severity.as_str().to_string(),
                status: if intent.kind == IntentKind::Resolved {
                    "resolved"
                } else {
                    "firing"
                }
                .to_string(),
                opened_at: incident.opened_at,
                at: intent.at,
                firing_members: incident.firing_members(),
                total_members: incident.members.len(),
                members: members.clone(),
                labels: incident.labels.clone(),
                annotations: incident.annotations.clone(),
                annotations_vary: incident.annotations_vary,
                generator_url: incident.generator_url.clone(),
                alertmanager_url: incident.alertmanager_url.clone(),
                digest: Vec::new(),
            };
            (destination, notification)
        })
        .collect()
}

fn short_hash(parts: &[&str]) -> String {
    crate::hash::short_hex(parts.iter().copied(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::alert::label_fingerprint;

    fn ownership() -> Ownership {
        Ownership {
            key: vec!["team".into(), "service".into(), "alertname".into()],
            service_labels: vec![
                "service".into(),
                "namespace/deployment".into(),
                "job".into(),
            ],
            instance_labels: vec!["instance".to_string(), "pod".to_string()].into(),
            services: BTreeMap::from([("shop/checkout".to_string(), "payments".to_string())]),
            rules: vec![OwnershipRule {
                matchers: vec![Matcher::parse(r#"namespace="search""#).expect("ok")],
                team: "search".into(),
            }],
            default_team: Some("platform".into()),
            known_teams: Default::default(),
        }
    }

    fn update(pairs: &[(&str, &str)]) -> AlertUpdate {
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
    fn routes_pick_destinations_and_fall_back_to_the_owner() {
        let o = ownership();
        let classified = classify(
            update(&[
                ("alertname", "A"),
                ("service", "checkout"),
                ("namespace", "shop"),
                ("severity", "critical"),
            ]),
            &o,
        );
        let mut state = crate::router::dedup::State::default();
        let settings = crate::router::dedup::DedupSettings {
            resolve_hold: 0,
            stale_after: 1,
            reminder: 1,
            heartbeat: None,
        };
        let out = crate::router::dedup::step(&mut state, &[classified], 0, &settings);
        let incident = &state.incidents["payments/checkout/A"];
        let teams = BTreeMap::from([(
            "payments".to_string(),
            vec!["chat".to_string(), "pager".to_string()],
        )]);
        let pager = DestinationRef {
            team: "payments".into(),
            name: "pager".into(),
        };
        let chat = DestinationRef {
            team: "payments".into(),
            name: "chat".into(),
        };
        let routes = vec![
            Route {
                matchers: vec![Matcher::parse(r#"severity="critical""#).expect("ok")],
                destinations: vec![pager.clone()],
                continue_matching: true,
            },
            Route {
                matchers: vec![Matcher::parse(r#"team="payments""#).expect("ok")],
                destinations: vec![chat.clone(), pager.clone()],
                continue_matching: false,
            },
            Route {
                matchers: vec![],
                destinations: vec![],
                continue_matching: false,
            },
        ];
        assert_eq!(
            destinations_for(incident, &routes, &teams),
            vec![pager.clone(), chat.clone()]
        );
        assert_eq!(destinations_for(incident, &[], &teams), vec![chat, pager]);
        let planned = plan(&out.intents[0], incident, &[], &teams);
        assert_eq!(planned.len(), 2);
        assert_ne!(planned[0].1.idempotency_key, planned[1].1.idempotency_key);
        assert_eq!(planned[0].1.episode_key, planned[1].1.episode_key);
        assert_eq!(
            planned,
            plan(&out.intents[0], incident, &[], &teams),
            "planning is deterministic"
        );
    }
}
