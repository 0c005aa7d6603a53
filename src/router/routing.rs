//! Routes. Pure: which destinations a transition of an incident goes to ([`destinations_for`]),
//! and the notification each of them gets ([`plan`]).

use std::collections::BTreeMap;

use super::dedup::{Incident, Intent};
use super::matcher::{Matcher, all_match};
use super::notification::{AlertStatus, LISTED_MEMBERS, Notification};
use super::ownership::UNOWNED;

/// A destination: the team it belongs to and its name there, written `team/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestinationId {
    pub team: String,
    pub name: String,
}

impl DestinationId {
    pub fn new(team: &str, name: &str) -> DestinationId {
        DestinationId {
            team: team.to_string(),
            name: name.to_string(),
        }
    }

    /// `team/name`; neither part may be empty or hold a `/`.
    pub fn parse(text: &str) -> Option<DestinationId> {
        let (team, name) = text.split_once('/')?;
        (!team.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| DestinationId::new(team, name))
    }
}

impl std::fmt::Display for DestinationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.team, self.name)
    }
}

impl serde::Serialize for DestinationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A route: incidents matching all matchers go to these destinations.
#[derive(Debug, Clone)]
pub struct Route {
    pub matchers: Vec<Matcher>,
    pub destinations: Vec<DestinationId>,
    pub continue_matching: bool,
}

/// The destinations for an incident: the matching routes in order (stopping at the first without
/// `continue`), or, when none matches, every destination of the owning team.
pub fn destinations_for(
    incident: &Incident,
    routes: &[Route],
    team_destinations: &BTreeMap<String, Vec<String>>,
) -> Vec<DestinationId> {
    let mut chosen: Vec<DestinationId> = Vec::new();
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
            chosen.push(DestinationId {
                team: incident.team.clone(),
                name: name.clone(),
            });
        }
    }
    chosen
}

/// Plans one notification per destination for an intent.
pub fn plan(
    intent: &Intent,
    incident: &Incident,
    routes: &[Route],
    team_destinations: &BTreeMap<String, Vec<String>>,
) -> Vec<(DestinationId, Notification)> {
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
                    &destination.to_string(),
                ]),
                kind: intent.kind,
                incident_key: incident.key.clone(),
                episode_key: episode_key.clone(),
                team: incident.team.clone(),
                service: incident.service.clone(),
                alertname: incident.alertname.clone(),
                severity: incident.severity,
                status: AlertStatus::of(intent.kind),
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
    use crate::router::ownership::classify;
    use crate::router::ownership::fixtures::{ownership, update};

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
        let pager = DestinationId {
            team: "payments".into(),
            name: "pager".into(),
        };
        let chat = DestinationId {
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
