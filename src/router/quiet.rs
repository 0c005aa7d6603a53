//! Holding notifications: while a team's quiet hours cover the time its non-critical
//! notifications are held, not sent, and while a silence in force matches an incident all of
//! its notifications are. When neither holds any more, each held incident that is still open
//! sends one notification of where it stands: `opened` if the team has heard nothing of it,
//! `updated` otherwise. The resolve of an incident the team never heard of is dropped (there is
//! nothing to close); the resolve of one it heard of is sent at once. Quiet hours never hold a
//! critical notification; like any first notification of an episode the team has not heard of,
//! it goes out as `opened`. An acknowledgement is a person's action, not an alarm: told at once
//! to a team that heard of the incident, dropped for one that did not; what was held of an
//! acknowledged incident is not told.
//!
//! Pure: the state, the transitions and the time are arguments.

use std::collections::BTreeSet;

use super::alert::Millis;
use super::dedup::{Intent, IntentKind, Outcome, Severity, State, Status};
use super::routing::RoutingTable;
use super::silence;

/// The intents to deliver now, of `intents`; records on the incidents what is held, and returns
/// the keys of the incidents that changed.
pub fn hold(
    state: &mut State,
    intents: &[Intent],
    table: &RoutingTable,
    now: Millis,
) -> (Vec<Intent>, BTreeSet<String>) {
    let mut deliver = Vec::with_capacity(intents.len());
    let mut changed = BTreeSet::new();
    let State {
        incidents,
        silences,
        ..
    } = state;
    for intent in intents {
        let Some(incident) = incidents.get_mut(&intent.incident_key) else {
            deliver.push(intent.clone());
            continue;
        };
        let before = (incident.held, incident.unheard);
        if matches!(intent.kind, IntentKind::Opened | IntentKind::Reopened) {
            incident.unheard = true;
        }
        let critical = incident.severity.max(incident.notified_severity) >= Severity::Critical;
        let silenced = silence::silenced(silences, &incident.labels, now);
        let send = match intent.kind {
            IntentKind::Resolved => !incident.unheard,
            // A person's action, told to a team that heard of the incident, whatever the hour.
            IntentKind::Acknowledged | IntentKind::Unacknowledged if !incident.unheard => {
                deliver.push(intent.clone());
                continue;
            }
            IntentKind::Acknowledged | IntentKind::Unacknowledged => continue,
            _ => !silenced && (critical || !table.quiet(&incident.team, now)),
        };
        if send {
            let mut sent = intent.clone();
            // The first the team hears of this episode opens it, whatever held it back.
            if incident.unheard && intent.kind != IntentKind::Resolved {
                sent.kind = IntentKind::Opened;
            }
            incident.held = false;
            incident.unheard = false;
            deliver.push(sent);
        } else {
            // A resolve dropped ends the episode: nothing is held any more.
            incident.held = intent.kind != IntentKind::Resolved;
        }
        if (incident.held, incident.unheard) != before {
            changed.insert(incident.key.clone());
        }
    }
    (deliver, changed)
}

/// For every open incident held while its team's quiet hours have ended, the one notification
/// that tells the team where it stands; none for an incident that `timed` (the same tick's
/// transitions) already tells.
pub fn release(state: &mut State, timed: &[Intent], table: &RoutingTable, now: Millis) -> Outcome {
    let mut out = Outcome::default();
    let State {
        incidents,
        silences,
        ..
    } = state;
    for incident in incidents.values_mut() {
        if incident.held && incident.acknowledged.is_some() {
            // Somebody is on it: what was held needs telling no more.
            incident.held = false;
            out.changed_incidents.insert(incident.key.clone());
            continue;
        }
        let critical = incident.severity.max(incident.notified_severity) >= Severity::Critical;
        let muted = silence::silenced(silences, &incident.labels, now)
            || (!critical && table.quiet(&incident.team, now));
        if !incident.held
            || incident.status != Status::Open
            || muted
            || timed
                .iter()
                .any(|intent| intent.incident_key == incident.key)
        {
            continue;
        }
        incident.sequence += 1;
        incident.last_notified_at = now;
        out.intents.push(Intent {
            kind: if incident.unheard {
                IntentKind::Opened
            } else {
                IntentKind::Updated
            },
            incident_key: incident.key.clone(),
            sequence: incident.sequence,
            at: now,
            by: None,
            step: None,
        });
        out.changed_incidents.insert(incident.key.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::dedup::{self, DedupSettings};
    use crate::router::ownership::fixtures::{ownership, update};
    use crate::router::ownership::{IncidentKey, Ownership, classify};
    use crate::time_interval::TimeInterval;

    const HOUR: Millis = 3_600_000;
    /// 2026-12-01T00:00:00Z, a Tuesday.
    const MIDNIGHT: Millis = 1_796_083_200_000;

    /// Team payments is quiet from 00:00 to 07:00 UTC.
    fn quiet_nights() -> RoutingTable {
        let mut nights = TimeInterval::new("UTC").expect("zone");
        nights.times = vec![(0, 7 * 60)];
        RoutingTable {
            quiet_hours: [("payments".to_string(), vec![nights])].into(),
            ..RoutingTable::default()
        }
    }

    /// Runs one alert of checkout (team payments) through dedup and the quiet-hours hold; the
    /// kinds it delivers.
    fn alert(
        state: &mut State,
        name: &str,
        severity: &str,
        firing: bool,
        at: Millis,
    ) -> Vec<IntentKind> {
        let settings = DedupSettings {
            resolve_hold: 0,
            stale_after: 24 * HOUR,
            reminder: 24 * HOUR,
            heartbeat: None,
            escalation: std::collections::BTreeMap::new(),
        };
        let mut alert = update(&[
            ("alertname", name),
            ("service", "checkout"),
            ("team", "payments"),
            ("severity", severity),
            ("pod", "checkout-1"),
        ]);
        alert.firing = firing;
        alert.starts_at = at;
        let per_service = Ownership {
            key: IncidentKey::PerService,
            ..ownership()
        };
        let mut outcome = dedup::step(state, &[classify(alert, &per_service)], at, &settings);
        let timed = dedup::tick(state, at, &settings);
        outcome.intents.extend(timed.intents);
        kinds(hold(state, &outcome.intents, &quiet_nights(), at).0)
    }

    fn kinds(intents: Vec<Intent>) -> Vec<IntentKind> {
        intents.into_iter().map(|i| i.kind).collect()
    }

    #[test]
    fn an_acknowledgement_at_night_is_told_to_a_team_that_heard_and_ends_what_was_held() {
        let acknowledge = |state: &mut State, at: Millis| {
            let key = state.incidents.keys().next().cloned().expect("an incident");
            let out = dedup::acknowledge(state, &key, "dana", at).expect("open");
            kinds(hold(state, &out.intents, &quiet_nights(), at).0)
        };
        // Heard of in the evening, acknowledged at night: told at once.
        let mut heard = State::default();
        assert_eq!(
            alert(&mut heard, "Slow", "warning", true, MIDNIGHT - HOUR),
            [IntentKind::Opened]
        );
        assert_eq!(
            acknowledge(&mut heard, MIDNIGHT + HOUR),
            [IntentKind::Acknowledged]
        );
        // Held at night and acknowledged from the page: the team heard nothing, so it is told
        // nothing, and the morning brings nothing either.
        let mut unheard = State::default();
        assert_eq!(
            alert(&mut unheard, "Slow", "warning", true, MIDNIGHT + HOUR),
            []
        );
        assert_eq!(acknowledge(&mut unheard, MIDNIGHT + 2 * HOUR), []);
        let morning = release(&mut unheard, &[], &quiet_nights(), MIDNIGHT + 7 * HOUR);
        assert!(morning.intents.is_empty(), "{:?}", morning.intents);
        assert!(unheard.incidents.values().all(|i| !i.held));
    }

    #[test]
    fn a_silence_holds_even_a_critical_incident_and_its_end_tells_the_team_once() {
        let mut state = State::default();
        crate::router::silence::create(
            &mut state.silences,
            "s1".into(),
            crate::router::silence::NewSilence {
                matchers: vec![r#"team="payments""#.into(), r#"service="checkout""#.into()],
                starts_at: MIDNIGHT + 9 * HOUR,
                ends_at: MIDNIGHT + 11 * HOUR,
                comment: "database upgrade".into(),
            },
            "dana",
            MIDNIGHT,
        );
        // A maintenance window: before it starts, the page goes out.
        let mut before = state.clone();
        assert_eq!(
            alert(&mut before, "Down", "critical", true, MIDNIGHT + 8 * HOUR),
            [IntentKind::Opened]
        );
        // In it, a critical alert is tracked and held; it opens once the silence ends.
        assert_eq!(
            alert(&mut state, "Down", "critical", true, MIDNIGHT + 9 * HOUR),
            []
        );
        assert!(state.incidents.values().all(|i| i.held && i.is_open()));
        let table = RoutingTable::default();
        // What the engine's tick does: release, then deliver what is released.
        let tick = |state: &mut State, at: Millis| {
            let released = release(state, &[], &table, at);
            kinds(hold(state, &released.intents, &table, at).0)
        };
        assert_eq!(tick(&mut state, MIDNIGHT + 10 * HOUR), []);
        assert_eq!(tick(&mut state, MIDNIGHT + 11 * HOUR), [IntentKind::Opened]);
        assert_eq!(tick(&mut state, MIDNIGHT + 11 * HOUR + 1), [], "told once");
        // Ended early: what resolved in the silence, never heard of, is not told at all.
        let mut resolved = State {
            silences: before.silences.clone(),
            ..State::default()
        };
        alert(&mut resolved, "Down", "critical", true, MIDNIGHT + 9 * HOUR);
        assert_eq!(
            alert(
                &mut resolved,
                "Down",
                "critical",
                false,
                MIDNIGHT + 10 * HOUR
            ),
            []
        );
        crate::router::silence::expire(&mut resolved.silences, "s1", "dana", MIDNIGHT + 10 * HOUR)
            .expect("known");
        assert_eq!(tick(&mut resolved, MIDNIGHT + 10 * HOUR + 1), []);
    }

    #[test]
    fn a_warning_at_night_waits_for_the_morning_and_then_opens_once() {
        let mut state = State::default();
        assert_eq!(
            alert(&mut state, "Slow", "warning", true, MIDNIGHT + HOUR),
            []
        );
        assert_eq!(
            alert(&mut state, "Errors", "warning", true, MIDNIGHT + 2 * HOUR),
            []
        );
        let table = quiet_nights();
        assert!(kinds(release(&mut state, &[], &table, MIDNIGHT + 6 * HOUR).intents).is_empty());
        let morning = release(&mut state, &[], &table, MIDNIGHT + 7 * HOUR);
        assert_eq!(kinds(morning.intents.clone()), [IntentKind::Opened]);
        assert_eq!(
            kinds(hold(&mut state, &morning.intents, &table, MIDNIGHT + 7 * HOUR).0),
            [IntentKind::Opened]
        );
        // Told: nothing more to release, and its resolve is sent.
        assert!(
            release(&mut state, &[], &table, MIDNIGHT + 8 * HOUR)
                .intents
                .is_empty()
        );
        alert(&mut state, "Errors", "warning", false, MIDNIGHT + 9 * HOUR);
        assert_eq!(
            alert(&mut state, "Slow", "warning", false, MIDNIGHT + 9 * HOUR),
            [IntentKind::Resolved]
        );
    }

    #[test]
    fn a_warning_over_before_morning_sends_nothing_at_all() {
        let mut state = State::default();
        assert_eq!(
            alert(&mut state, "Slow", "warning", true, MIDNIGHT + HOUR),
            []
        );
        assert_eq!(
            alert(&mut state, "Slow", "warning", false, MIDNIGHT + 2 * HOUR),
            []
        );
        assert!(
            release(&mut state, &[], &quiet_nights(), MIDNIGHT + 7 * HOUR)
                .intents
                .is_empty()
        );
    }

    #[test]
    fn a_critical_is_never_held_and_a_known_incident_still_resolves_at_night() {
        let mut state = State::default();
        assert_eq!(
            alert(&mut state, "Down", "critical", true, MIDNIGHT + HOUR),
            [IntentKind::Opened]
        );
        let mut day = State::default();
        assert_eq!(
            alert(&mut day, "Slow", "warning", true, MIDNIGHT - HOUR),
            [IntentKind::Opened]
        );
        assert_eq!(
            alert(&mut day, "Slow", "warning", false, MIDNIGHT + HOUR),
            [IntentKind::Resolved]
        );
    }

    #[test]
    fn a_held_warning_that_turns_critical_pages_at_once_as_its_opening() {
        let mut state = State::default();
        assert_eq!(
            alert(&mut state, "Slow", "warning", true, MIDNIGHT + HOUR),
            []
        );
        assert_eq!(
            alert(&mut state, "Down", "critical", true, MIDNIGHT + 2 * HOUR),
            [IntentKind::Opened]
        );
        assert!(
            release(&mut state, &[], &quiet_nights(), MIDNIGHT + 7 * HOUR)
                .intents
                .is_empty()
        );
    }

    #[test]
    fn a_transition_as_quiet_hours_end_is_the_one_opening() {
        let mut state = State::default();
        assert_eq!(
            alert(&mut state, "Slow", "warning", true, MIDNIGHT + HOUR),
            []
        );
        // A second signal arrives just after 07:00, before the tick releases the incident: it
        // goes out as the opening, and the tick has nothing left to release.
        assert_eq!(
            alert(
                &mut state,
                "Errors",
                "warning",
                true,
                MIDNIGHT + 7 * HOUR + 1
            ),
            [IntentKind::Opened]
        );
        assert!(
            release(&mut state, &[], &quiet_nights(), MIDNIGHT + 7 * HOUR + 2)
                .intents
                .is_empty()
        );
        // A reminder of a held incident on the tick that ends the quiet hours: released once.
        let mut reminded = State::default();
        alert(&mut reminded, "Slow", "warning", true, MIDNIGHT + HOUR);
        let key = reminded
            .incidents
            .keys()
            .next()
            .cloned()
            .expect("an incident");
        let reminder = Intent {
            by: None,
            step: None,
            kind: IntentKind::Reminder,
            incident_key: key,
            sequence: 9,
            at: MIDNIGHT + 7 * HOUR,
        };
        let table = quiet_nights();
        assert!(
            release(
                &mut reminded,
                std::slice::from_ref(&reminder),
                &table,
                MIDNIGHT + 7 * HOUR
            )
            .intents
            .is_empty()
        );
        assert_eq!(
            kinds(hold(&mut reminded, &[reminder], &table, MIDNIGHT + 7 * HOUR).0),
            [IntentKind::Opened]
        );
    }
}
