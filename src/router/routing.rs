//! Routes. Pure: which destinations a transition of an incident goes to ([`destinations_for`]),
//! and the notification each of them gets ([`plan`]).

use std::collections::{BTreeMap, BTreeSet};

use super::alert::{Labels, Millis};
use super::dedup::{Incident, Intent, IntentKind, Severity};
use super::matcher::{Matcher, all_match};
use super::notification::{AlertStatus, LISTED_MEMBERS, Notification, Signal};
use crate::time_interval::TimeInterval;

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

/// Who gets an incident's notifications: the routes, each team's destinations, and which
/// severities the destinations that do not take every one take.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    pub routes: Vec<Route>,
    /// Destination names per team, in order.
    pub team_destinations: BTreeMap<String, Vec<String>>,
    /// Destinations that take only these severities (a pager: critical); the others take all.
    pub severities: BTreeMap<DestinationId, Vec<Severity>>,
    /// Each team's quiet hours: while one covers the time, the team's non-critical
    /// notifications are held (`quiet`).
    pub quiet_hours: BTreeMap<String, Vec<TimeInterval>>,
    /// Destinations with no way to unacknowledge (PagerDuty's Events API has none): they are
    /// not told of an unacknowledgement.
    pub cannot_unacknowledge: BTreeSet<DestinationId>,
    /// Each team's escalation policy, in order: a team with one is told through its steps only.
    pub escalation: BTreeMap<String, Vec<EscalationStep>>,
}

/// One step of an escalation policy: who is told once the incident went unacknowledged for
/// `after` (0: when it opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationStep {
    pub after: Millis,
    pub destinations: Vec<DestinationId>,
}

impl RoutingTable {
    /// Whether `team` is in its quiet hours at `at`.
    pub fn quiet(&self, team: &str, at: Millis) -> bool {
        self.quiet_hours
            .get(team)
            .is_some_and(|intervals| intervals.iter().any(|i| i.covers(at)))
    }

    /// Whether `destination` takes alerts of `severity`. An alert without a severity is taken
    /// as `info`.
    pub fn takes(&self, destination: &DestinationId, severity: Severity) -> bool {
        let severity = match severity {
            Severity::None => Severity::Info,
            other => other,
        };
        self.severities
            .get(destination)
            .is_none_or(|taken| taken.contains(&severity))
    }
}

/// How an incident is routed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The routes that matched, by index, in order; empty: none did, so the owning team's
    /// destinations.
    pub matched_routes: Vec<usize>,
    /// Where the notifications go.
    pub destinations: Vec<DestinationId>,
    /// Chosen by a route or the team, but left out: they do not take this severity.
    pub not_for_this_severity: Vec<DestinationId>,
}

/// Routes an incident of `team` with these labels and severity: the matching routes in order
/// (stopping at the first without `continue`) or, when none matches, every destination of the
/// team; then only the destinations that take the severity.
pub fn decide(labels: &Labels, team: &str, severity: Severity, table: &RoutingTable) -> Decision {
    let mut chosen: Vec<DestinationId> = Vec::new();
    let mut matched_routes = Vec::new();
    for (index, route) in table.routes.iter().enumerate() {
        if all_match(&route.matchers, labels) {
            matched_routes.push(index);
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
    if matched_routes.is_empty() {
        let names = table.team_destinations.get(team).into_iter().flatten();
        chosen.extend(names.map(|name| DestinationId::new(team, name)));
    }
    let (destinations, not_for_this_severity) =
        chosen.into_iter().partition(|d| table.takes(d, severity));
    Decision {
        matched_routes,
        destinations,
        not_for_this_severity,
    }
}

/// The destinations an incident's notifications go to ([`decide`]), by the highest severity
/// told in its episode: a pager that was paged hears the updates and the resolve, even when
/// only warnings fire by then.
pub fn destinations_for(incident: &Incident, table: &RoutingTable) -> Vec<DestinationId> {
    let severity = incident.severity.max(incident.notified_severity);
    let Some(steps) = table.escalation.get(&incident.team) else {
        return decide(&incident.labels, &incident.team, severity, table).destinations;
    };
    // Every step reached so far, in order: the policy decides, not the routes.
    let reached = super::dedup::steps_reached(incident, steps.iter().map(|s| s.after));
    let mut chosen: Vec<DestinationId> = Vec::new();
    for destination in steps.iter().take(reached).flat_map(|s| &s.destinations) {
        if !chosen.contains(destination) && table.takes(destination, severity) {
            chosen.push(destination.clone());
        }
    }
    chosen
}

/// The destinations an escalation step tells, of those that take the incident's severity and
/// were not told by an earlier step.
fn step_destinations(incident: &Incident, step: usize, table: &RoutingTable) -> Vec<DestinationId> {
    let severity = incident.severity.max(incident.notified_severity);
    let Some(steps) = table.escalation.get(&incident.team) else {
        return Vec::new();
    };
    let earlier: Vec<&DestinationId> = steps
        .iter()
        .take(step)
        .flat_map(|s| &s.destinations)
        .collect();
    steps
        .get(step)
        .into_iter()
        .flat_map(|s| &s.destinations)
        .filter(|d| !earlier.contains(d) && table.takes(d, severity))
        .cloned()
        .collect()
}

/// Plans one notification per destination for an intent.
pub fn plan(
    intent: &Intent,
    incident: &Incident,
    table: &RoutingTable,
) -> Vec<(DestinationId, Notification)> {
    let episode_key = short_hash(&[&incident.key, &incident.episode.to_string()]);
    let members = Members::of(incident);
    let destinations = match (intent.kind, intent.step) {
        (IntentKind::NotAcknowledged, Some(step)) => step_destinations(incident, step, table),
        _ => destinations_for(incident, table),
    };
    destinations
        .into_iter()
        .filter(|destination| {
            intent.kind != IntentKind::Unacknowledged
                || !table.cannot_unacknowledge.contains(destination)
        })
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
                firing_members: members.firing,
                total_members: members.total,
                members: members.listed.clone(),
                labels: incident.labels.clone(),
                annotations: incident.annotations.clone(),
                annotations_vary: incident.annotations_vary,
                generator_url: incident.generator_url.clone(),
                alertmanager_url: incident.alertmanager_url.clone(),
                signals: members.signals.clone(),
                by: intent.by.clone(),
                digest: Vec::new(),
            };
            (destination, notification)
        })
        .collect()
}

/// What a notification says of an incident's members: how many distinct ones fire of how many
/// (a pod that two signals name counts once), the first firing ones by name, and the signals
/// when there are several.
struct Members {
    firing: usize,
    total: usize,
    listed: Vec<String>,
    signals: Vec<Signal>,
}

impl Members {
    fn of(incident: &Incident) -> Members {
        let mut firing: BTreeSet<&str> = BTreeSet::new();
        let mut total: BTreeSet<&str> = BTreeSet::new();
        let mut listed = Vec::new();
        let mut signals: BTreeMap<&str, Signal> = BTreeMap::new();
        for member in incident.members.values() {
            total.insert(&member.identity);
            let name = incident.signal_of(member);
            let signal = signals.entry(name).or_insert_with(|| Signal {
                alertname: name.to_string(),
                severity: Severity::None,
                firing_members: 0,
                total_members: 0,
            });
            signal.total_members += 1;
            if member.firing {
                signal.firing_members += 1;
                signal.severity = signal.severity.max(member.severity);
                if firing.insert(&member.identity) && listed.len() < LISTED_MEMBERS {
                    listed.push(member.identity.clone());
                }
            }
        }
        let signals: Vec<Signal> = signals.into_values().collect();
        Members {
            firing: firing.len(),
            total: total.len(),
            listed,
            signals: if signals.len() > 1 {
                signals
            } else {
                Vec::new()
            },
        }
    }
}

fn short_hash(parts: &[&str]) -> String {
    crate::hash::short_hex(parts.iter().copied(), 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::dedup::Classified;
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
            escalation: BTreeMap::new(),
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
        let routed = RoutingTable {
            routes,
            team_destinations: teams.clone(),
            severities: BTreeMap::new(),
            quiet_hours: BTreeMap::new(),
            cannot_unacknowledge: BTreeSet::new(),
            escalation: BTreeMap::new(),
        };
        assert_eq!(
            destinations_for(incident, &routed),
            vec![pager.clone(), chat.clone()]
        );
        let by_team = RoutingTable {
            team_destinations: teams.clone(),
            ..RoutingTable::default()
        };
        assert_eq!(
            destinations_for(incident, &by_team),
            vec![chat.clone(), pager.clone()]
        );
        let planned = plan(&out.intents[0], incident, &by_team);
        assert_eq!(planned.len(), 2);
        assert_ne!(planned[0].1.idempotency_key, planned[1].1.idempotency_key);
        assert_eq!(planned[0].1.episode_key, planned[1].1.episode_key);
        assert_eq!(
            planned,
            plan(&out.intents[0], incident, &by_team),
            "planning is deterministic"
        );
    }

    #[test]
    fn a_destination_gets_only_the_severities_it_takes() {
        let pager = DestinationId::new("payments", "pager");
        let chat = DestinationId::new("payments", "chat");
        let table = RoutingTable {
            routes: Vec::new(),
            team_destinations: BTreeMap::from([(
                "payments".to_string(),
                vec!["chat".to_string(), "pager".to_string()],
            )]),
            severities: BTreeMap::from([(pager.clone(), vec![Severity::Critical])]),
            quiet_hours: BTreeMap::new(),
            cannot_unacknowledge: BTreeSet::new(),
            escalation: BTreeMap::new(),
        };
        let labels = Labels::new();
        let warning = decide(&labels, "payments", Severity::Warning, &table);
        assert_eq!(warning.destinations, vec![chat.clone()]);
        assert_eq!(warning.not_for_this_severity, vec![pager.clone()]);
        assert!(warning.matched_routes.is_empty());
        let critical = decide(&labels, "payments", Severity::Critical, &table);
        assert_eq!(critical.destinations, vec![chat.clone(), pager.clone()]);
        let unlabelled = decide(&labels, "payments", Severity::None, &table);
        assert_eq!(
            unlabelled.destinations,
            vec![chat],
            "no severity is taken as info"
        );
    }

    #[test]
    fn a_paged_pager_hears_the_resolve_though_only_warnings_fired_last() {
        let o = ownership();
        let alert = |pod: &str, severity: &str, firing: bool| {
            let mut update = update(&[
                ("alertname", "A"),
                ("service", "checkout"),
                ("namespace", "shop"),
                ("severity", severity),
                ("pod", pod),
            ]);
            update.firing = firing;
            update.ends_at = (!firing).then_some(2);
            classify(update, &o)
        };
        let settings = crate::router::dedup::DedupSettings {
            resolve_hold: 0,
            stale_after: 1_000_000,
            reminder: 1_000_000,
            heartbeat: None,
            escalation: BTreeMap::new(),
        };
        let pager = DestinationId::new("payments", "pager");
        let table = RoutingTable {
            routes: Vec::new(),
            team_destinations: BTreeMap::from([(
                "payments".to_string(),
                vec!["pager".to_string()],
            )]),
            severities: BTreeMap::from([(pager.clone(), vec![Severity::Critical])]),
            quiet_hours: BTreeMap::new(),
            cannot_unacknowledge: BTreeSet::new(),
            escalation: BTreeMap::new(),
        };
        let mut state = crate::router::dedup::State::default();
        let step = |state: &mut crate::router::dedup::State, alerts: &[Classified], now| {
            crate::router::dedup::step(state, alerts, now, &settings)
        };
        step(
            &mut state,
            &[alert("p1", "critical", true), alert("p2", "warning", true)],
            0,
        );
        // The critical pod recovers first; the warning one last.
        step(&mut state, &[alert("p1", "critical", false)], 1);
        step(&mut state, &[alert("p2", "warning", false)], 2);
        let out = crate::router::dedup::tick(&mut state, 3, &settings);
        let resolved = &out.intents[0];
        assert_eq!(resolved.kind, IntentKind::Resolved);
        let incident = &state.incidents[&resolved.incident_key];
        assert_eq!(destinations_for(incident, &table), vec![pager]);
    }

    #[test]
    fn an_acknowledgement_reaches_every_destination_told_and_its_undoing_none_that_cannot_undo() {
        let o = ownership();
        let firing = classify(
            update(&[
                ("alertname", "A"),
                ("service", "checkout"),
                ("namespace", "shop"),
                ("severity", "critical"),
            ]),
            &o,
        );
        let settings = crate::router::dedup::DedupSettings {
            resolve_hold: 0,
            stale_after: 1_000_000,
            reminder: 1_000_000,
            heartbeat: None,
            escalation: BTreeMap::new(),
        };
        let mut state = crate::router::dedup::State::default();
        crate::router::dedup::step(&mut state, std::slice::from_ref(&firing), 0, &settings);
        let pager = DestinationId::new("payments", "pager");
        let chat = DestinationId::new("payments", "chat");
        let table = RoutingTable {
            routes: Vec::new(),
            team_destinations: BTreeMap::from([(
                "payments".to_string(),
                vec!["chat".to_string(), "pager".to_string()],
            )]),
            severities: BTreeMap::from([(pager.clone(), vec![Severity::Critical])]),
            quiet_hours: BTreeMap::new(),
            cannot_unacknowledge: BTreeSet::from([pager.clone()]),
            escalation: BTreeMap::new(),
        };
        let acked =
            crate::router::dedup::acknowledge(&mut state, &firing.key, "dana", 5).expect("open");
        let incident = &state.incidents[&firing.key];
        let planned = plan(&acked.intents[0], incident, &table);
        let told: Vec<(&DestinationId, Option<&str>)> =
            planned.iter().map(|(d, n)| (d, n.by.as_deref())).collect();
        assert_eq!(told, [(&chat, Some("dana")), (&pager, Some("dana"))]);
        assert!(
            planned
                .iter()
                .all(|(_, n)| n.kind == IntentKind::Acknowledged)
        );
        let undone =
            crate::router::dedup::unacknowledge(&mut state, &firing.key, "dana", 6).expect("open");
        let incident = &state.incidents[&firing.key];
        let planned = plan(&undone.intents[0], incident, &table);
        assert_eq!(
            planned.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            [&chat],
            "PagerDuty's Events API cannot unacknowledge: it is told nothing"
        );
    }

    #[test]
    fn an_escalation_policy_tells_each_step_once_and_every_reached_step_what_follows() {
        let o = ownership();
        let storm = |severity: &str, firing: bool| {
            let mut u = update(&[
                ("alertname", "A"),
                ("service", "checkout"),
                ("namespace", "shop"),
                ("severity", severity),
            ]);
            u.firing = firing;
            u.ends_at = (!firing).then_some(40 * 60_000);
            classify(u, &o)
        };
        const MIN: Millis = 60_000;
        let settings = crate::router::dedup::DedupSettings {
            resolve_hold: 0,
            stale_after: 1_000 * MIN,
            reminder: 1_000 * MIN,
            heartbeat: None,
            escalation: BTreeMap::from([("payments".to_string(), vec![0, 10 * MIN, 30 * MIN])]),
        };
        let chat = DestinationId::new("payments", "chat");
        let pager = DestinationId::new("payments", "pager");
        let platform = DestinationId::new("platform", "pager");
        let step = |after: Millis, destinations: &[&DestinationId]| EscalationStep {
            after,
            destinations: destinations.iter().map(|d| (*d).clone()).collect(),
        };
        let table = RoutingTable {
            // A route the policy overrides: a team with a policy is told through its steps.
            routes: vec![Route {
                matchers: vec![],
                destinations: vec![pager.clone()],
                continue_matching: false,
            }],
            team_destinations: BTreeMap::from([(
                "payments".to_string(),
                vec!["chat".to_string(), "pager".to_string()],
            )]),
            severities: BTreeMap::from([
                (pager.clone(), vec![Severity::Critical]),
                (platform.clone(), vec![Severity::Critical]),
            ]),
            quiet_hours: BTreeMap::new(),
            cannot_unacknowledge: BTreeSet::new(),
            escalation: BTreeMap::from([(
                "payments".to_string(),
                vec![
                    step(0, &[&chat]),
                    step(10 * MIN, &[&pager, &chat]),
                    step(30 * MIN, &[&platform]),
                ],
            )]),
        };
        let told = |state: &crate::router::dedup::State, out: &crate::router::dedup::Outcome| {
            out.intents
                .iter()
                .map(|intent| {
                    let incident = &state.incidents[&intent.incident_key];
                    let to: Vec<String> = plan(intent, incident, &table)
                        .into_iter()
                        .map(|(d, _)| d.to_string())
                        .collect();
                    (intent.kind, to)
                })
                .collect::<Vec<_>>()
        };
        let mut state = crate::router::dedup::State::default();
        let key = storm("critical", true).key;
        let out = crate::router::dedup::step(&mut state, &[storm("critical", true)], 0, &settings);
        assert_eq!(
            told(&state, &out),
            [(IntentKind::Opened, vec!["payments/chat".to_string()])]
        );
        let out = crate::router::dedup::tick(&mut state, 10 * MIN, &settings);
        assert_eq!(
            told(&state, &out),
            [(
                IntentKind::NotAcknowledged,
                vec!["payments/pager".to_string()]
            )],
            "the chat, told already, is not told again"
        );
        let out = crate::router::dedup::tick(&mut state, 30 * MIN, &settings);
        assert_eq!(
            told(&state, &out),
            [(
                IntentKind::NotAcknowledged,
                vec!["platform/pager".to_string()]
            )]
        );
        let out = crate::router::dedup::step(
            &mut state,
            &[storm("critical", false)],
            40 * MIN,
            &settings,
        );
        let mut out_resolved = crate::router::dedup::tick(&mut state, 41 * MIN, &settings);
        out_resolved.intents.extend(out.intents);
        assert_eq!(
            told(&state, &out_resolved),
            [(
                IntentKind::Resolved,
                vec![
                    "payments/chat".to_string(),
                    "payments/pager".to_string(),
                    "platform/pager".to_string()
                ]
            )],
            "every step reached hears the resolve"
        );
        assert!(state.incidents.contains_key(&key));
        // A warning escalates to the pagers' step, which takes critical only: nobody new is told.
        let mut state = crate::router::dedup::State::default();
        crate::router::dedup::step(&mut state, &[storm("warning", true)], 0, &settings);
        let out = crate::router::dedup::tick(&mut state, 10 * MIN, &settings);
        assert_eq!(told(&state, &out), [(IntentKind::NotAcknowledged, vec![])]);
    }
}
