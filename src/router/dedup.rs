//! Service-level deduplication: the incident state machine. Pure: no I/O, time is an argument.
//!
//! Alerts are grouped into incidents by a key (team + service + alert name by default); per-instance
//! alerts are *members* of their incident. [`step`] applies a batch of alert updates, [`tick`] the
//! passage of time; both change the state in place and return the [`Intent`]s (notifications to
//! plan) plus what changed (for the store). Only state transitions notify: opened, reopened,
//! escalated, reminder, resolved. Members joining or leaving, repeated webhooks, the same alert from
//! two Alertmanager replicas and out-of-order deliveries change state but never notify.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::alert::{AlertUpdate, Labels, Millis};

/// Timing of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupSettings {
    /// A resolve is held this long; a member firing again inside it sends nothing.
    pub resolve_hold: Millis,
    /// A firing member not repeated by Alertmanager for this long counts as resolved.
    pub stale_after: Millis,
    /// An open incident is reminded this long after its last notification.
    pub reminder: Millis,
    /// The pipeline heartbeat, if any.
    pub heartbeat: Option<HeartbeatSettings>,
    /// Each team's escalation policy: when each step is reached, after the incident opened,
    /// while nobody acknowledges it (the first at 0; the steps' destinations are routing's).
    pub escalation: BTreeMap<String, Vec<Millis>>,
}

impl DedupSettings {
    fn steps_reached(&self, incident: &Incident) -> usize {
        let delays = self.escalation.get(&incident.team).into_iter().flatten();
        steps_reached(incident, delays.copied())
    }
}

/// How many steps of an escalation policy (the steps' delays, in order) an incident has reached:
/// those it was told to (`escalation_step`), and at least every step due at once.
pub fn steps_reached(incident: &Incident, delays: impl Iterator<Item = Millis>) -> usize {
    let at_once = delays.take_while(|after| *after == 0).count();
    (incident.escalation_step as usize).max(at_once)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSettings {
    pub alertname: String,
    pub timeout: Millis,
    /// The team that owns the "monitoring pipeline silent" incident.
    pub team: String,
    /// A fleet's clusters (by their `cluster` label): each has a heartbeat of its own, so one
    /// cluster going silent is not hidden by the others. Only the listed clusters are watched: a
    /// cluster taken out of the fleet stops being one (its open incident resolves) and a cluster
    /// not listed yet is not paged for. Empty: one heartbeat, whichever cluster sends it.
    pub clusters: Vec<String>,
}

impl HeartbeatSettings {
    /// The incidents the heartbeat may raise (the one heartbeat's, or each listed cluster's).
    pub fn incident_keys(&self) -> Vec<String> {
        if self.clusters.is_empty() {
            vec![HEARTBEAT_INCIDENT.to_string()]
        } else {
            self.clusters
                .iter()
                .map(|c| cluster_heartbeat_incident(c))
                .collect()
        }
    }
}

/// The key of the incident raised when `cluster`'s heartbeat stops.
pub fn cluster_heartbeat_incident(cluster: &str) -> String {
    format!("{HEARTBEAT_INCIDENT}/{cluster}")
}

/// An alert update with its incident already decided (see `routing::classify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub key: String,
    pub team: String,
    pub service: String,
    pub alertname: String,
    /// Labels that identify a member rather than the incident (shared, cheap to clone).
    pub instance_labels: std::sync::Arc<[String]>,
    pub update: AlertUpdate,
}

impl Classified {
    /// Values of the per-instance labels, e.g. `pod=checkout-1,instance=10.0.0.1:8080` (computed
    /// only for new members).
    pub fn member_identity(&self) -> String {
        let identity: Vec<String> = self
            .instance_labels
            .iter()
            .filter_map(|l| self.update.labels.get(l).map(|v| format!("{l}={v}")))
            .collect();
        if identity.is_empty() {
            format!("fingerprint={:016x}", self.update.fingerprint)
        } else {
            identity.join(",")
        }
    }

    /// The alert's labels without the per-instance ones, with the decided team and service
    /// (computed only for new incidents).
    pub fn incident_labels(&self) -> Labels {
        let mut labels: Labels = self
            .update
            .labels
            .iter()
            .filter(|(k, _)| !self.instance_labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("team".into(), self.team.clone());
        if !self.service.is_empty() {
            labels.insert("service".into(), self.service.clone());
        }
        labels
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    None,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn of(labels: &Labels) -> Severity {
        match labels
            .get("severity")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("critical" | "error" | "page" | "high") => Severity::Critical,
            Some("warning" | "warn" | "medium") => Severity::Warning,
            Some("info" | "low" | "informational") => Severity::Info,
            _ => Severity::None,
        }
    }

    /// The severities a config names (`none` is only what an alert without one has).
    pub const NAMED: [&'static str; 3] = ["critical", "warning", "info"];

    /// The names of the severities (critical, warning, info) that `taken` says no destination
    /// takes: alerts of those would reach nobody.
    pub fn untaken(taken: impl Fn(Severity) -> bool) -> Vec<&'static str> {
        [Severity::Critical, Severity::Warning, Severity::Info]
            .into_iter()
            .filter(|s| !taken(*s))
            .map(Severity::as_str)
            .collect()
    }

    /// The severity a config names `name`.
    pub fn named(name: &str) -> Option<Severity> {
        match name {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Status {
    /// Created by this batch, not evaluated yet.
    New,
    Open,
    /// Every member resolved; the resolve is held until `since + resolve_hold`.
    Resolving {
        since: Millis,
    },
    Resolved {
        at: Millis,
    },
}

/// One member alert of an incident (an instance, pod, node, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub identity: String,
    /// The alert it is a member for: the signal, of the incident's several, it belongs to.
    #[serde(default)]
    pub alertname: String,
    pub severity: Severity,
    pub firing: bool,
    pub starts_at: Millis,
    pub ends_at: Option<Millis>,
    /// When Alertmanager last sent it (for staleness).
    pub last_seen: Millis,
}

/// A service-level incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub key: String,
    pub team: String,
    pub service: String,
    pub alertname: String,
    pub labels: Labels,
    /// The annotations of one firing member (the first of the episode, or the latest to refire).
    pub annotations: Labels,
    /// Firing members of this episode brought different annotations (a per-pod rule's summary
    /// names its pod): messages then show `annotations` as one example, not as the service's.
    #[serde(default)]
    pub annotations_vary: bool,
    pub generator_url: String,
    /// Link back to the Alertmanager that sent the alerts.
    #[serde(default)]
    pub alertmanager_url: String,
    pub status: Status,
    /// Highest severity among firing members.
    pub severity: Severity,
    /// Severity of the last opened/escalated notification.
    pub notified_severity: Severity,
    pub opened_at: Millis,
    pub last_notified_at: Millis,
    /// Counts the incident's transitions; part of every notification's idempotency key.
    pub sequence: u32,
    /// Incremented each time the incident (re)opens.
    pub episode: u32,
    /// The signals (alert names) the notifications of this episode have named so far: a signal
    /// not among them is news, told in one update.
    #[serde(default)]
    pub signals_told: BTreeSet<String>,
    /// Notifications of this incident are held for its team's quiet hours (`quiet`).
    #[serde(default)]
    pub held: bool,
    /// The team has heard nothing of this episode yet: every notification so far was held.
    #[serde(default)]
    pub unheard: bool,
    /// Somebody is on it: no reminders until it is unacknowledged, gets worse or reopens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    /// The steps of its team's escalation policy this episode has been told to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub escalation_step: u32,
    #[serde(skip)]
    pub members: BTreeMap<u64, Member>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Incident {
    pub fn firing_members(&self) -> usize {
        self.members.values().filter(|m| m.firing).count()
    }

    /// Whether more than one member fires (stops counting at two).
    fn several_firing(&self) -> bool {
        self.members.values().filter(|m| m.firing).take(2).count() > 1
    }

    /// Notes the annotations of a member that (re)fires: the first firing member of an episode
    /// sets them; a later one with other annotations marks them as varying. `replace` makes the
    /// member's annotations the ones shown.
    fn note_annotations(&mut self, annotations: &Labels, replace: bool) {
        if !self.several_firing() {
            self.annotations_vary = false;
        } else if *annotations != self.annotations {
            self.annotations_vary = true;
        }
        if replace || !self.several_firing() {
            self.annotations = annotations.clone();
        }
    }

    /// The names of the alerts that fire now: the incident's signals.
    pub fn firing_signals(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter(|m| m.firing)
            .map(|m| self.signal_of(m).to_string())
            .collect()
    }

    /// The signal a member belongs to (a member stored before signals were kept: the
    /// incident's own alert).
    pub fn signal_of<'a>(&'a self, member: &'a Member) -> &'a str {
        if member.alertname.is_empty() {
            &self.alertname
        } else {
            &member.alertname
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Open | Status::Resolving { .. })
    }
}

/// Who said they are on an incident, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentKind {
    Opened,
    Reopened,
    Escalated,
    /// A new signal joined the open incident (no new page: the same episode).
    Updated,
    Reminder,
    Resolved,
    /// Somebody is on it (told to the team; pagers acknowledge their alert).
    Acknowledged,
    /// Nobody is on it any more: reminders start again.
    Unacknowledged,
    /// Nobody acknowledged it in time: the next step of the team's escalation policy is told.
    NotAcknowledged,
}

impl IntentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Opened => "opened",
            IntentKind::Reopened => "reopened",
            IntentKind::Escalated => "escalated",
            IntentKind::Updated => "updated",
            IntentKind::Reminder => "reminder",
            IntentKind::Resolved => "resolved",
            IntentKind::Acknowledged => "acknowledged",
            IntentKind::Unacknowledged => "unacknowledged",
            IntentKind::NotAcknowledged => "not_acknowledged",
        }
    }
}

/// A notification to plan: this incident made this transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub kind: IntentKind,
    pub incident_key: String,
    /// The incident's sequence after the transition.
    pub sequence: u32,
    pub at: Millis,
    /// The person whose action this is (an acknowledgement), if it is one.
    pub by: Option<String>,
    /// The escalation step reached (by index), for [`IntentKind::NotAcknowledged`].
    pub step: Option<usize>,
}

/// The pipeline heartbeat's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub last_seen: Option<Millis>,
    /// When each cluster's heartbeat was last seen (a fleet's; see [`HeartbeatSettings`]).
    #[serde(default)]
    pub clusters: BTreeMap<String, Millis>,
}

/// Everything the state machine remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub incidents: BTreeMap<String, Incident>,
    pub heartbeat: Heartbeat,
    /// Every silence not yet forgotten (they hold notifications, see `quiet`).
    pub silences: super::silence::Silences,
}

/// What a step or tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub intents: Vec<Intent>,
    /// Incidents whose own fields changed (to be stored).
    pub changed_incidents: BTreeSet<String>,
    /// Members that changed, by incident key and fingerprint.
    pub changed_members: BTreeSet<(String, u64)>,
    pub heartbeat_changed: bool,
    /// Silences created or ended, by id (to be stored).
    pub changed_silences: BTreeSet<String>,
    /// Alerts that changed nothing (repeats, duplicates, stale out-of-order updates).
    pub ignored: usize,
}

/// The key of the incident raised when the heartbeat stops.
pub const HEARTBEAT_INCIDENT: &str = "stackgen/monitoring-pipeline/heartbeat";

/// How far `last_seen` may lag behind the latest repeat: a quarter of `stale_after`, at most a
/// minute. Staleness is judged that much early at worst.
fn last_seen_step(settings: &DedupSettings) -> Millis {
    (settings.stale_after / 4).min(60_000)
}

/// Applies a batch of alert updates received at `now`.
pub fn step(
    state: &mut State,
    alerts: &[Classified],
    now: Millis,
    settings: &DedupSettings,
) -> Outcome {
    let mut out = Outcome::default();
    let mut touched = BTreeSet::new();
    for alert in alerts {
        if let Some(heartbeat) = settings
            .heartbeat
            .as_ref()
            .filter(|h| h.alertname == alert.alertname)
        {
            if alert.update.firing {
                state.heartbeat.last_seen =
                    Some(state.heartbeat.last_seen.map_or(now, |t| t.max(now)));
                if let Some(cluster) = alert
                    .update
                    .labels
                    .get("cluster")
                    .filter(|cluster| heartbeat.clusters.contains(cluster))
                {
                    let seen = state
                        .heartbeat
                        .clusters
                        .entry(cluster.clone())
                        .or_insert(now);
                    *seen = (*seen).max(now);
                }
                out.heartbeat_changed = true;
            }
            continue;
        }
        if !state.incidents.contains_key(&alert.key) {
            state
                .incidents
                .insert(alert.key.clone(), new_incident(alert, now));
        }
        let Some(incident) = state.incidents.get_mut(&alert.key) else {
            continue;
        };
        if apply_member(incident, alert, now) {
            out.changed_members
                .insert((alert.key.clone(), alert.update.fingerprint));
            touched.insert(alert.key.clone());
        } else {
            // A repeated firing alert refreshes the member's staleness clock, in steps of
            // `last_seen_step` so that repeats do not each cost a write.
            if let Some(member) = incident.members.get_mut(&alert.update.fingerprint)
                && member.firing
                && alert.update.firing
                && now - member.last_seen >= last_seen_step(settings)
            {
                member.last_seen = now;
                out.changed_members
                    .insert((alert.key.clone(), alert.update.fingerprint));
            }
            out.ignored += 1;
        }
        if incident.status == Status::New {
            touched.insert(alert.key.clone());
        }
    }
    for key in touched {
        if let Some(incident) = state.incidents.get_mut(&key) {
            evaluate(incident, now, &mut out);
            if incident.status == Status::New {
                // Only resolved updates for an incident never opened: nothing to remember.
                state.incidents.remove(&key);
                out.changed_members.retain(|(k, _)| *k != key);
            }
        }
    }
    out
}

/// A new incident for an alert, not yet evaluated.
fn new_incident(alert: &Classified, now: Millis) -> Incident {
    Incident {
        annotations: alert.update.annotations.clone(),
        generator_url: alert.update.generator_url.clone(),
        alertmanager_url: alert.update.alertmanager_url.clone(),
        ..unopened_incident(
            &alert.key,
            &alert.team,
            &alert.service,
            &alert.alertname,
            alert.incident_labels(),
            now,
        )
    }
}

/// An incident that has told nothing yet and has no members, no annotations and no severity.
fn unopened_incident(
    key: &str,
    team: &str,
    service: &str,
    alertname: &str,
    labels: Labels,
    now: Millis,
) -> Incident {
    Incident {
        key: key.to_string(),
        team: team.to_string(),
        service: service.to_string(),
        alertname: alertname.to_string(),
        labels,
        annotations: Labels::new(),
        annotations_vary: false,
        generator_url: String::new(),
        alertmanager_url: String::new(),
        status: Status::New,
        severity: Severity::None,
        notified_severity: Severity::None,
        opened_at: now,
        last_notified_at: now,
        sequence: 0,
        episode: 0,
        signals_told: BTreeSet::new(),
        held: false,
        unheard: false,
        acknowledged: None,
        escalation_step: 0,
        members: BTreeMap::new(),
    }
}

/// Applies one update to its member; false when it changes nothing (a repeat or a stale update).
fn apply_member(incident: &mut Incident, alert: &Classified, now: Millis) -> bool {
    let update = &alert.update;
    match incident.members.get_mut(&update.fingerprint) {
        Some(member) if update.firing => {
            if member.firing {
                // Same episode repeated (or an older start): nothing new.
                if update.starts_at <= member.starts_at {
                    return false;
                }
                member.starts_at = update.starts_at;
                member.last_seen = now;
                return true;
            }
            // A firing update older than the member's resolve is out of order.
            if member
                .ends_at
                .is_some_and(|ended| update.starts_at <= ended)
            {
                return false;
            }
            member.firing = true;
            member.severity = Severity::of(&update.labels);
            member.starts_at = update.starts_at;
            member.ends_at = None;
            member.last_seen = now;
            if incident.status != Status::New {
                incident.note_annotations(&update.annotations, true);
            }
            true
        }
        Some(member) => {
            if !member.firing {
                return false;
            }
            // A resolve of an earlier episode than the one firing now is out of order.
            if update.ends_at.is_some_and(|ended| ended < member.starts_at) {
                return false;
            }
            member.firing = false;
            member.ends_at = Some(update.ends_at.unwrap_or(now));
            member.last_seen = now;
            true
        }
        None => {
            if !update.firing && !incident.is_open() {
                return false;
            }
            incident.members.insert(
                update.fingerprint,
                Member {
                    identity: alert.member_identity(),
                    alertname: alert.alertname.clone(),
                    severity: Severity::of(&update.labels),
                    firing: update.firing,
                    starts_at: update.starts_at,
                    ends_at: if update.firing {
                        None
                    } else {
                        Some(update.ends_at.unwrap_or(now))
                    },
                    last_seen: now,
                },
            );
            if update.firing {
                if !incident.several_firing() {
                    incident.generator_url = update.generator_url.clone();
                }
                incident.note_annotations(&update.annotations, false);
            }
            true
        }
    }
}

/// Re-evaluates an incident after its members changed.
fn evaluate(incident: &mut Incident, now: Millis, out: &mut Outcome) {
    // One pass over the members: does any fire, the highest severity, and the signals not told.
    let mut highest = None;
    let mut untold: Vec<String> = Vec::new();
    for member in incident.members.values().filter(|m| m.firing) {
        highest = highest.max(Some(member.severity));
        let signal = incident.signal_of(member);
        if !incident.signals_told.contains(signal) && !untold.iter().any(|u| u == signal) {
            untold.push(signal.to_string());
        }
    }
    let any_firing = highest.is_some();
    let severity = highest.unwrap_or(incident.severity);
    let before = incident.clone();
    incident.severity = severity;
    match incident.status {
        Status::New | Status::Resolved { .. } if any_firing => {
            let kind = if incident.status == Status::New && incident.episode == 0 {
                IntentKind::Opened
            } else {
                IntentKind::Reopened
            };
            incident.status = Status::Open;
            incident.opened_at = now;
            incident.episode += 1;
            incident.notified_severity = severity;
            incident.signals_told = incident.firing_signals();
            // A new episode: whoever was on the last one is not on this one yet, and its
            // escalation starts over.
            incident.acknowledged = None;
            incident.escalation_step = 0;
            notify(incident, kind, now, out);
        }
        Status::Open | Status::Resolving { .. } if any_firing => {
            incident.status = Status::Open;
            // An incident stored before signals were told: what fires now is what was told.
            let news = !incident.signals_told.is_empty() && !untold.is_empty();
            incident.signals_told.extend(untold);
            if severity > incident.notified_severity {
                incident.notified_severity = severity;
                // Worse than what was acknowledged: it needs somebody's attention again.
                incident.acknowledged = None;
                notify(incident, IntentKind::Escalated, now, out);
            } else if news {
                notify(incident, IntentKind::Updated, now, out);
            }
        }
        Status::Open => incident.status = Status::Resolving { since: now },
        _ => {}
    }
    if *incident != before {
        out.changed_incidents.insert(incident.key.clone());
    }
}

fn notify(incident: &mut Incident, kind: IntentKind, now: Millis, out: &mut Outcome) {
    notify_by(incident, kind, None, now, out);
}

fn notify_by(
    incident: &mut Incident,
    kind: IntentKind,
    by: Option<&str>,
    now: Millis,
    out: &mut Outcome,
) {
    incident.sequence += 1;
    incident.last_notified_at = now;
    out.intents.push(Intent {
        kind,
        incident_key: incident.key.clone(),
        sequence: incident.sequence,
        at: now,
        by: by.map(str::to_string),
        step: None,
    });
    out.changed_incidents.insert(incident.key.clone());
}

/// Why an action on an incident was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no incident `{0}`")]
    Unknown(String),
    #[error("incident `{0}` is resolved: there is nothing to be on")]
    NotOpen(String),
}

/// `by` says they are on the open incident `key`: the team is told once, pagers acknowledge
/// their alert, and reminders stop until it is unacknowledged, gets more severe or reopens.
/// Acknowledging an acknowledged incident changes nothing (a repeated request).
pub fn acknowledge(
    state: &mut State,
    key: &str,
    by: &str,
    now: Millis,
) -> Result<Outcome, ActionError> {
    let incident = open_incident(state, key)?;
    let mut out = Outcome::default();
    if incident.acknowledged.is_none() {
        incident.acknowledged = Some(Acknowledgement {
            by: by.to_string(),
            at: now,
        });
        notify_by(incident, IntentKind::Acknowledged, Some(by), now, &mut out);
    }
    Ok(out)
}

/// `by` is no longer on the incident `key`: the team is told once and reminders count again from
/// now. Unacknowledging an incident nobody acknowledged changes nothing.
pub fn unacknowledge(
    state: &mut State,
    key: &str,
    by: &str,
    now: Millis,
) -> Result<Outcome, ActionError> {
    let incident = open_incident(state, key)?;
    let mut out = Outcome::default();
    if incident.acknowledged.take().is_some() {
        notify_by(
            incident,
            IntentKind::Unacknowledged,
            Some(by),
            now,
            &mut out,
        );
    }
    Ok(out)
}

fn open_incident<'a>(state: &'a mut State, key: &str) -> Result<&'a mut Incident, ActionError> {
    let incident = state
        .incidents
        .get_mut(key)
        .ok_or_else(|| ActionError::Unknown(key.to_string()))?;
    if incident.is_open() {
        Ok(incident)
    } else {
        Err(ActionError::NotOpen(key.to_string()))
    }
}

/// Applies the passage of time: stale members, held resolves that are due, reminders, the heartbeat.
pub fn tick(state: &mut State, now: Millis, settings: &DedupSettings) -> Outcome {
    let mut out = Outcome::default();
    for incident in state.incidents.values_mut() {
        if !incident.is_open() {
            continue;
        }
        let mut stale = false;
        for (fingerprint, member) in incident.members.iter_mut() {
            if member.firing && now - member.last_seen >= settings.stale_after {
                member.firing = false;
                member.ends_at = Some(now);
                out.changed_members
                    .insert((incident.key.clone(), *fingerprint));
                stale = true;
            }
        }
        if stale {
            evaluate(incident, now, &mut out);
        }
        match incident.status {
            Status::Resolving { since } if now - since >= settings.resolve_hold => {
                incident.status = Status::Resolved { at: now };
                notify(incident, IntentKind::Resolved, now, &mut out);
            }
            Status::Open
                if incident.acknowledged.is_none()
                    && now - incident.last_notified_at >= settings.reminder =>
            {
                notify(incident, IntentKind::Reminder, now, &mut out);
            }
            _ => {}
        }
        if incident.status == Status::Open && incident.acknowledged.is_none() {
            escalate(incident, now, settings, &mut out);
        }
    }
    if let Some(heartbeat) = &settings.heartbeat {
        tick_heartbeat(state, now, heartbeat, &mut out);
    }
    out
}

/// Tells each step of the team's escalation policy that has come due since the incident opened
/// (nobody acknowledged it in time), once.
fn escalate(incident: &mut Incident, now: Millis, settings: &DedupSettings, out: &mut Outcome) {
    let Some(steps) = settings.escalation.get(&incident.team) else {
        return;
    };
    let reached = settings.steps_reached(incident);
    for (step, after) in steps.iter().enumerate().skip(reached) {
        if now - incident.opened_at < *after {
            break;
        }
        incident.escalation_step = step as u32 + 1;
        incident.sequence += 1;
        incident.last_notified_at = now;
        out.intents.push(Intent {
            kind: IntentKind::NotAcknowledged,
            incident_key: incident.key.clone(),
            sequence: incident.sequence,
            at: now,
            by: None,
            step: Some(step),
        });
        out.changed_incidents.insert(incident.key.clone());
    }
}

fn tick_heartbeat(
    state: &mut State,
    now: Millis,
    heartbeat: &HeartbeatSettings,
    out: &mut Outcome,
) {
    resolve_unwatched_heartbeats(state, now, heartbeat, out);
    if heartbeat.clusters.is_empty() {
        let last_seen = *state.heartbeat.last_seen.get_or_insert_with(|| {
            // Count the silence from the first tick, so a heartbeat that never arrives is noticed.
            out.heartbeat_changed = true;
            now
        });
        watch_heartbeat(
            state,
            HEARTBEAT_INCIDENT,
            None,
            last_seen,
            now,
            heartbeat,
            out,
        );
        return;
    }
    for cluster in &heartbeat.clusters {
        let last_seen = *state
            .heartbeat
            .clusters
            .entry(cluster.clone())
            .or_insert_with(|| {
                // Count the silence from the first tick, so a heartbeat that never arrives is noticed.
                out.heartbeat_changed = true;
                now
            });
        let key = cluster_heartbeat_incident(cluster);
        watch_heartbeat(state, &key, Some(cluster), last_seen, now, heartbeat, out);
    }
}

/// Resolves the open heartbeat incidents the settings no longer watch: a cluster taken out of the
/// fleet, the one heartbeat of a router that now watches a fleet's, or a fleet's of one that now
/// watches one heartbeat. Their silence is no incident any more.
fn resolve_unwatched_heartbeats(
    state: &mut State,
    now: Millis,
    heartbeat: &HeartbeatSettings,
    out: &mut Outcome,
) {
    let watched = heartbeat.incident_keys();
    let cluster_prefix = cluster_heartbeat_incident("");
    for incident in state.incidents.values_mut() {
        let of_heartbeat =
            incident.key == HEARTBEAT_INCIDENT || incident.key.starts_with(&cluster_prefix);
        if of_heartbeat && incident.status == Status::Open && !watched.contains(&incident.key) {
            incident.status = Status::Resolving { since: now };
            out.changed_incidents.insert(incident.key.clone());
        }
    }
}

/// Opens the incident `key` when the heartbeat (of `cluster`, or the one heartbeat) last seen at
/// `last_seen` has been silent for the timeout, and resolves it when the heartbeat is back.
fn watch_heartbeat(
    state: &mut State,
    key: &str,
    cluster: Option<&str>,
    last_seen: Millis,
    now: Millis,
    heartbeat: &HeartbeatSettings,
    out: &mut Outcome,
) {
    let silent = now - last_seen >= heartbeat.timeout;
    let open = state.incidents.get(key).is_some_and(Incident::is_open);
    if silent && !open {
        let incident = state
            .incidents
            .entry(key.to_string())
            .or_insert_with(|| silent_pipeline_incident(key, cluster, heartbeat, now));
        let kind = if incident.episode == 0 {
            IntentKind::Opened
        } else {
            IntentKind::Reopened
        };
        incident.status = Status::Open;
        incident.opened_at = now;
        incident.episode += 1;
        incident.notified_severity = Severity::Critical;
        notify(incident, kind, now, out);
    } else if !silent
        && open
        && let Some(incident) = state.incidents.get_mut(key)
        && incident.status == Status::Open
    {
        // The heartbeat is back: resolve through the usual hold.
        incident.status = Status::Resolving { since: now };
        out.changed_incidents.insert(key.to_string());
    }
}

/// The "monitoring pipeline silent" incident (of `cluster`, in a fleet).
fn silent_pipeline_incident(
    key: &str,
    cluster: Option<&str>,
    heartbeat: &HeartbeatSettings,
    now: Millis,
) -> Incident {
    let mut labels = Labels::from([
        (
            "alertname".to_string(),
            "MonitoringPipelineSilent".to_string(),
        ),
        ("severity".to_string(), "critical".to_string()),
        ("team".to_string(), heartbeat.team.clone()),
    ]);
    let summary = match cluster {
        Some(cluster) => {
            labels.insert("cluster".into(), cluster.to_string());
            format!(
                "No {} heartbeat from cluster {cluster}'s Alertmanager: its monitoring pipeline is silent.",
                heartbeat.alertname
            )
        }
        None => format!(
            "No {} heartbeat from Alertmanager: the monitoring pipeline is silent.",
            heartbeat.alertname
        ),
    };
    Incident {
        annotations: Labels::from([("summary".to_string(), summary)]),
        severity: Severity::Critical,
        ..unopened_incident(
            key,
            &heartbeat.team,
            "monitoring-pipeline",
            "MonitoringPipelineSilent",
            labels,
            now,
        )
    }
}

/// Removes incidents resolved before `cutoff`; returns their keys.
pub fn forget_resolved(state: &mut State, cutoff: Millis) -> Vec<String> {
    let gone: Vec<String> = state
        .incidents
        .values()
        .filter(|i| matches!(i.status, Status::Resolved { at } if at < cutoff))
        .map(|i| i.key.clone())
        .collect();
    for key in &gone {
        state.incidents.remove(key);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn settings() -> DedupSettings {
        DedupSettings {
            resolve_hold: 2 * MIN,
            stale_after: 15 * MIN,
            reminder: 240 * MIN,
            heartbeat: None,
            escalation: BTreeMap::new(),
        }
    }

    fn alert(
        service: &str,
        pod: usize,
        firing: bool,
        starts: Millis,
        ends: Option<Millis>,
        severity: &str,
    ) -> Classified {
        let labels: Labels = [
            ("alertname", "HighErrorRate"),
            ("service", service),
            ("severity", severity),
            ("team", "payments"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut full = labels.clone();
        full.insert("pod".into(), format!("{service}-{pod}"));
        Classified {
            key: format!("payments/{service}/HighErrorRate"),
            team: "payments".into(),
            service: service.into(),
            alertname: "HighErrorRate".into(),
            instance_labels: vec!["pod".to_string()].into(),
            update: AlertUpdate {
                fingerprint: super::super::alert::label_fingerprint(&full),
                labels: full,
                annotations: Labels::new(),
                firing,
                starts_at: starts,
                ends_at: ends,
                generator_url: String::new(),
                alertmanager_url: String::new(),
            },
        }
    }

    fn kinds(out: &Outcome) -> Vec<IntentKind> {
        out.intents.iter().map(|i| i.kind).collect()
    }

    /// A state driven through steps and ticks, collecting the kinds of intent it emits.
    struct Run {
        state: State,
        settings: DedupSettings,
        intents: Vec<IntentKind>,
    }

    impl Run {
        fn new(settings: DedupSettings) -> Run {
            Run {
                state: State::default(),
                settings,
                intents: Vec::new(),
            }
        }

        fn step(&mut self, alerts: &[Classified], now: Millis) {
            let out = step(&mut self.state, alerts, now, &self.settings);
            self.intents.extend(kinds(&out));
        }

        fn tick(&mut self, now: Millis) {
            let out = tick(&mut self.state, now, &self.settings);
            self.intents.extend(kinds(&out));
        }
    }

    /// `alert` of another signal (alert name) of the same service, in the per-service incident.
    fn signal(mut alert: Classified, alertname: &str) -> Classified {
        alert.alertname = alertname.into();
        alert.key = format!("payments/{}", alert.service);
        alert
            .update
            .labels
            .insert("alertname".into(), alertname.into());
        alert.update.fingerprint = super::super::alert::label_fingerprint(&alert.update.labels);
        alert
    }

    #[test]
    fn an_acknowledgement_stops_reminders_until_it_is_taken_back_or_the_incident_worsens() {
        let s = DedupSettings {
            resolve_hold: 2 * MIN,
            stale_after: 24 * 60 * MIN,
            reminder: 60 * MIN,
            heartbeat: None,
            escalation: BTreeMap::new(),
        };
        let mut run = Run::new(s);
        let key = "payments/checkout/HighErrorRate";
        run.step(&[alert("checkout", 0, true, 0, None, "warning")], 0);
        let acked = acknowledge(&mut run.state, key, "dana", 10 * MIN).expect("open");
        assert_eq!(kinds(&acked), [IntentKind::Acknowledged]);
        assert_eq!(acked.intents[0].by.as_deref(), Some("dana"));
        assert_eq!(
            run.state.incidents[key].acknowledged,
            Some(Acknowledgement {
                by: "dana".into(),
                at: 10 * MIN
            })
        );
        // A repeated request (a double click, a retried POST) tells nobody again.
        let again = acknowledge(&mut run.state, key, "erin", 11 * MIN).expect("open");
        assert!(again.intents.is_empty() && again.changed_incidents.is_empty());
        assert_eq!(
            run.state.incidents[key]
                .acknowledged
                .as_ref()
                .map(|a| a.by.as_str()),
            Some("dana")
        );
        // Hours pass: no reminder while somebody is on it.
        run.tick(200 * MIN);
        assert_eq!(run.intents, [IntentKind::Opened]);
        // A more severe signal needs attention again: it escalates, and reminders follow.
        run.step(
            &[alert("checkout", 1, true, 210 * MIN, None, "critical")],
            210 * MIN,
        );
        assert_eq!(run.state.incidents[key].acknowledged, None);
        run.tick(269 * MIN);
        run.tick(270 * MIN);
        assert_eq!(
            run.intents,
            [
                IntentKind::Opened,
                IntentKind::Escalated,
                IntentKind::Reminder
            ]
        );
        // Taken back: told once, and the reminder counts from then.
        acknowledge(&mut run.state, key, "dana", 280 * MIN).expect("open");
        let back = unacknowledge(&mut run.state, key, "dana", 290 * MIN).expect("open");
        assert_eq!(kinds(&back), [IntentKind::Unacknowledged]);
        assert_eq!(back.intents[0].by.as_deref(), Some("dana"));
        assert!(
            unacknowledge(&mut run.state, key, "dana", 291 * MIN)
                .expect("open")
                .intents
                .is_empty(),
            "nobody is on it: nothing to take back"
        );
        run.intents.clear();
        run.tick(349 * MIN);
        assert!(run.intents.is_empty());
        run.tick(350 * MIN);
        assert_eq!(run.intents, [IntentKind::Reminder]);
        // Resolved: nothing to be on. A reopened episode starts unacknowledged.
        acknowledge(&mut run.state, key, "dana", 351 * MIN).expect("open");
        run.step(
            &[
                alert("checkout", 0, false, 0, Some(352 * MIN), "warning"),
                alert("checkout", 1, false, 210 * MIN, Some(352 * MIN), "critical"),
            ],
            352 * MIN,
        );
        run.tick(355 * MIN);
        assert_eq!(
            acknowledge(&mut run.state, key, "dana", 356 * MIN),
            Err(ActionError::NotOpen(key.into()))
        );
        assert_eq!(
            acknowledge(&mut run.state, "payments/nothing/A", "dana", 356 * MIN),
            Err(ActionError::Unknown("payments/nothing/A".into()))
        );
        run.step(
            &[alert("checkout", 0, true, 360 * MIN, None, "warning")],
            360 * MIN,
        );
        assert_eq!(
            run.intents,
            [
                IntentKind::Reminder,
                IntentKind::Resolved,
                IntentKind::Reopened
            ]
        );
        assert_eq!(run.state.incidents[key].acknowledged, None);
    }

    #[test]
    fn escalation_steps_come_due_in_virtual_time_while_nobody_acknowledges() {
        let s = DedupSettings {
            resolve_hold: 2 * MIN,
            stale_after: 24 * 60 * MIN,
            reminder: 24 * 60 * MIN,
            heartbeat: None,
            escalation: BTreeMap::from([("payments".to_string(), vec![0, 10 * MIN, 30 * MIN])]),
        };
        let steps = |out: &Outcome| -> Vec<(IntentKind, Option<usize>)> {
            out.intents.iter().map(|i| (i.kind, i.step)).collect()
        };
        let mut state = State::default();
        let key = "payments/checkout/HighErrorRate";
        let opened = step(
            &mut state,
            &[alert("checkout", 0, true, 0, None, "critical")],
            0,
            &s,
        );
        assert_eq!(steps(&opened), [(IntentKind::Opened, None)]);
        assert_eq!(
            s.steps_reached(&state.incidents[key]),
            1,
            "the first step at once"
        );
        assert!(tick(&mut state, 10 * MIN - 1, &s).intents.is_empty());
        assert_eq!(
            steps(&tick(&mut state, 10 * MIN, &s)),
            [(IntentKind::NotAcknowledged, Some(1))]
        );
        assert!(
            tick(&mut state, 10 * MIN + 1, &s).intents.is_empty(),
            "told once"
        );
        assert!(tick(&mut state, 30 * MIN - 1, &s).intents.is_empty());
        assert_eq!(
            steps(&tick(&mut state, 30 * MIN, &s)),
            [(IntentKind::NotAcknowledged, Some(2))]
        );
        assert!(
            tick(&mut state, 90 * MIN, &s).intents.is_empty(),
            "no step after the last"
        );
        assert_eq!(state.incidents[key].escalation_step, 3);

        // Acknowledged in time: no step comes. Taken back late: what is due comes at once.
        let mut state = State::default();
        step(
            &mut state,
            &[alert("checkout", 0, true, 0, None, "critical")],
            0,
            &s,
        );
        acknowledge(&mut state, key, "dana", 5 * MIN).expect("open");
        assert!(tick(&mut state, 45 * MIN, &s).intents.is_empty());
        unacknowledge(&mut state, key, "dana", 45 * MIN).expect("open");
        assert_eq!(
            steps(&tick(&mut state, 45 * MIN, &s)),
            [
                (IntentKind::NotAcknowledged, Some(1)),
                (IntentKind::NotAcknowledged, Some(2))
            ]
        );
        // A new episode starts its escalation over.
        step(
            &mut state,
            &[alert("checkout", 0, false, 0, Some(46 * MIN), "critical")],
            46 * MIN,
            &s,
        );
        tick(&mut state, 49 * MIN, &s);
        step(
            &mut state,
            &[alert("checkout", 0, true, 50 * MIN, None, "critical")],
            50 * MIN,
            &s,
        );
        assert_eq!(state.incidents[key].escalation_step, 0);
        assert!(tick(&mut state, 59 * MIN, &s).intents.is_empty());
        assert_eq!(
            steps(&tick(&mut state, 60 * MIN, &s)),
            [(IntentKind::NotAcknowledged, Some(1))]
        );
    }

    #[test]
    fn a_service_failing_several_ways_is_one_incident_told_once_per_new_signal() {
        let s = settings();
        let mut run = Run::new(s.clone());
        // One pod's alert of a signal of checkout, firing or resolved at `at`.
        let of = |alertname: &'static str, severity: &'static str| {
            move |pod: usize, firing: bool, at: Millis| {
                let ends = (!firing).then_some(at);
                signal(
                    alert("checkout", pod, firing, at, ends, severity),
                    alertname,
                )
            }
        };
        let errors = of("ServiceHighErrorRate", "warning");
        let down = of("ServiceTargetsDown", "warning");
        let critical = of("KubeDeploymentReplicasUnavailable", "critical");
        run.step(&[errors(0, true, 0), errors(1, true, 0)], 0);
        assert_eq!(run.intents, [IntentKind::Opened]);
        // A second signal: one update, not a new incident or page.
        run.step(&[down(0, true, MIN)], MIN);
        // The same signals again, and one more pod of a known signal: nothing new.
        run.step(
            &[
                errors(0, true, 0),
                down(0, true, MIN),
                down(1, true, 2 * MIN),
            ],
            2 * MIN,
        );
        assert_eq!(run.intents, [IntentKind::Opened, IntentKind::Updated]);
        // A third signal, more severe: one escalation (it names the signal too).
        run.step(&[critical(0, true, 3 * MIN)], 3 * MIN);
        assert_eq!(
            run.intents,
            [
                IntentKind::Opened,
                IntentKind::Updated,
                IntentKind::Escalated
            ]
        );
        assert_eq!(run.state.incidents.len(), 1);
        let incident = &run.state.incidents["payments/checkout"];
        assert_eq!(incident.firing_signals().len(), 3);
        assert_eq!(incident.episode, 1);
        // Resolved only when every signal has resolved (and after the hold).
        run.step(
            &[
                errors(0, false, 4 * MIN),
                errors(1, false, 4 * MIN),
                down(0, false, 4 * MIN),
                down(1, false, 4 * MIN),
            ],
            4 * MIN,
        );
        run.tick(4 * MIN + s.resolve_hold + 1);
        assert_eq!(run.intents.len(), 3, "one signal still fires");
        run.step(&[critical(0, false, 8 * MIN)], 8 * MIN);
        run.tick(8 * MIN + s.resolve_hold);
        assert_eq!(run.intents.last(), Some(&IntentKind::Resolved));
        assert_eq!(run.intents.len(), 4);
        // A new episode tells its signals afresh.
        run.step(&[down(0, true, 20 * MIN)], 20 * MIN);
        run.step(&[errors(0, true, 21 * MIN)], 21 * MIN);
        assert_eq!(
            run.intents[4..],
            [IntentKind::Reopened, IntentKind::Updated]
        );
    }

    /// `alert` with a `summary` annotation.
    fn with_summary(mut alert: Classified, summary: &str) -> Classified {
        alert
            .update
            .annotations
            .insert("summary".into(), summary.into());
        alert
    }

    #[test]
    fn members_with_their_own_summaries_mark_the_annotations_as_an_example() {
        let s = settings();
        let key = "payments/checkout/HighErrorRate";
        let per_pod = |pod: usize, firing: bool, at: Millis| {
            let ends = (!firing).then_some(at);
            with_summary(
                alert("checkout", pod, firing, at, ends, "critical"),
                &format!("pod checkout-{pod} fails"),
            )
        };
        let mut state = State::default();
        step(&mut state, &[per_pod(0, true, 0)], 0, &s);
        assert!(
            !state.incidents[key].annotations_vary,
            "one member is the service"
        );
        step(
            &mut state,
            &[per_pod(1, true, MIN), per_pod(2, true, MIN)],
            MIN,
            &s,
        );
        let incident = &state.incidents[key];
        assert!(incident.annotations_vary);
        assert_eq!(incident.annotations["summary"], "pod checkout-0 fails");

        // Every member resolves, then one fires again: a new episode of one member.
        let all_resolved: Vec<_> = (0..3).map(|pod| per_pod(pod, false, 2 * MIN)).collect();
        step(&mut state, &all_resolved, 2 * MIN, &s);
        tick(&mut state, 5 * MIN, &s);
        step(&mut state, &[per_pod(2, true, 6 * MIN)], 6 * MIN, &s);
        let incident = &state.incidents[key];
        assert!(!incident.annotations_vary, "a new episode of one member");
        assert_eq!(incident.annotations["summary"], "pod checkout-2 fails");

        // Members sharing one summary (a service-level text) do not vary.
        let mut state = State::default();
        let same: Vec<_> = (0..5)
            .map(|pod| {
                with_summary(
                    alert("checkout", pod, true, 0, None, "critical"),
                    "checkout fails",
                )
            })
            .collect();
        step(&mut state, &same, 0, &s);
        assert!(!state.incidents[key].annotations_vary);
    }

    #[test]
    fn a_storm_of_500_members_is_one_opened_and_one_resolved() {
        let mut run = Run::new(settings());
        let firing: Vec<Classified> = (0..500)
            .map(|p| alert("checkout", p, true, 0, None, "critical"))
            .collect();
        for chunk in firing.chunks(37) {
            run.step(chunk, MIN);
        }
        // Alertmanager repeats the whole group: nothing new.
        run.step(&firing, 2 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened]);
        assert_eq!(run.state.incidents.len(), 1);
        assert_eq!(
            run.state.incidents["payments/checkout/HighErrorRate"].firing_members(),
            500
        );

        let resolved: Vec<Classified> = (0..500)
            .map(|p| alert("checkout", p, false, 0, Some(3 * MIN), "critical"))
            .collect();
        for chunk in resolved.chunks(50) {
            run.step(chunk, 3 * MIN);
        }
        run.tick(4 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened], "the resolve is held");
        run.tick(5 * MIN);
        run.tick(6 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened, IntentKind::Resolved]);
    }

    #[test]
    fn duplicates_and_reordering_add_nothing() {
        let mut run = Run::new(settings());
        let fire = alert("checkout", 1, true, MIN, None, "critical");
        let resolve = alert("checkout", 1, false, MIN, Some(5 * MIN), "critical");
        run.step(&[fire.clone(), fire.clone()], 2 * MIN);
        // The same alert from a second Alertmanager replica.
        run.step(std::slice::from_ref(&fire), 2 * MIN);
        run.step(std::slice::from_ref(&resolve), 6 * MIN);
        // A late copy of the firing webhook (same startsAt) arrives after the resolve.
        run.step(std::slice::from_ref(&fire), 6 * MIN);
        run.tick(9 * MIN);
        // And late duplicates after the incident resolved reopen nothing.
        run.step(&[fire.clone(), resolve.clone()], 10 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened, IntentKind::Resolved]);
    }

    #[test]
    fn flapping_inside_the_hold_sends_nothing_and_a_real_refire_reopens() {
        let mut run = Run::new(settings());
        run.step(&[alert("checkout", 1, true, 0, None, "warning")], 0);
        for round in 0..5 {
            let t = (round * 2 + 1) * 30_000;
            run.step(
                &[alert("checkout", 1, false, t - 30_000, Some(t), "warning")],
                t,
            );
            run.step(
                &[alert("checkout", 1, true, t + 1, None, "warning")],
                t + 30_000,
            );
            run.tick(t + 30_000);
        }
        assert_eq!(
            run.intents,
            vec![IntentKind::Opened],
            "flapping inside the hold is silent"
        );
        run.step(
            &[alert("checkout", 1, false, 0, Some(10 * MIN), "warning")],
            10 * MIN,
        );
        run.tick(13 * MIN);
        run.step(
            &[alert("checkout", 1, true, 20 * MIN, None, "warning")],
            20 * MIN,
        );
        assert_eq!(
            run.intents,
            vec![
                IntentKind::Opened,
                IntentKind::Resolved,
                IntentKind::Reopened
            ]
        );
    }

    #[test]
    fn severity_rise_escalates_once_and_reminders_follow_the_interval() {
        let mut run = Run::new(DedupSettings {
            stale_after: 1000 * MIN,
            ..settings()
        });
        run.step(&[alert("checkout", 1, true, 0, None, "warning")], 0);
        // A critical member of the same service and alert raises the incident's severity.
        let critical = alert("checkout", 2, true, MIN, None, "critical");
        run.step(std::slice::from_ref(&critical), MIN);
        run.step(&[critical], 2 * MIN);
        run.tick(200 * MIN);
        run.tick(242 * MIN);
        assert_eq!(
            run.intents,
            vec![
                IntentKind::Opened,
                IntentKind::Escalated,
                IntentKind::Reminder
            ]
        );
    }

    #[test]
    fn members_that_go_stale_resolve_the_incident() {
        let mut run = Run::new(settings());
        run.step(&[alert("checkout", 1, true, 0, None, "critical")], 0);
        run.tick(14 * MIN);
        run.tick(15 * MIN);
        run.tick(17 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened, IntentKind::Resolved]);
    }

    #[test]
    fn two_services_are_two_incidents() {
        let s = settings();
        let mut state = State::default();
        let out = step(
            &mut state,
            &[
                alert("checkout", 1, true, 0, None, "critical"),
                alert("search", 1, true, 0, None, "critical"),
            ],
            0,
            &s,
        );
        assert_eq!(kinds(&out), vec![IntentKind::Opened, IntentKind::Opened]);
    }

    #[test]
    fn silent_heartbeat_opens_and_returning_heartbeat_resolves() {
        let mut run = Run::new(DedupSettings {
            heartbeat: Some(HeartbeatSettings {
                alertname: "Watchdog".into(),
                timeout: 5 * MIN,
                team: "platform".into(),
                clusters: Vec::new(),
            }),
            ..settings()
        });
        let mut watchdog = alert("", 0, true, 0, None, "info");
        watchdog.alertname = "Watchdog".into();
        run.tick(0);
        run.step(std::slice::from_ref(&watchdog), MIN);
        run.tick(5 * MIN);
        assert!(
            run.intents.is_empty(),
            "the heartbeat never notifies by itself"
        );
        run.tick(6 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened]);
        assert_eq!(run.state.incidents[HEARTBEAT_INCIDENT].team, "platform");
        run.step(std::slice::from_ref(&watchdog), 7 * MIN);
        run.tick(7 * MIN);
        run.tick(9 * MIN);
        assert_eq!(run.intents, vec![IntentKind::Opened, IntentKind::Resolved]);
    }

    /// In a fleet each cluster's heartbeat is watched on its own: the cluster that goes silent
    /// (or never sends one) is one incident of its own, labelled with the cluster, and resolves
    /// when it is back; the others' heartbeats do not hide it.
    #[test]
    fn each_cluster_of_a_fleet_has_a_heartbeat_of_its_own() {
        let mut run = Run::new(DedupSettings {
            heartbeat: Some(HeartbeatSettings {
                alertname: "Watchdog".into(),
                timeout: 5 * MIN,
                team: "platform".into(),
                clusters: vec!["eu".into(), "us".into(), "ap".into()],
            }),
            ..settings()
        });
        let watchdog = |cluster: &str| {
            let mut alert = alert("", 0, true, 0, None, "info");
            alert.alertname = "Watchdog".into();
            alert.update.labels.insert("cluster".into(), cluster.into());
            alert
        };
        run.tick(0);
        // eu and us keep beating; ap never does, and us stops after 2 minutes.
        for minute in 1..=12 {
            let mut beats = vec![watchdog("eu")];
            if minute <= 2 {
                beats.push(watchdog("us"));
            }
            run.step(&beats, minute * MIN);
            run.tick(minute * MIN);
        }
        let open: Vec<(&str, &str)> = run
            .state
            .incidents
            .values()
            .filter(|i| i.is_open())
            .map(|i| (i.key.as_str(), i.labels["cluster"].as_str()))
            .collect();
        assert_eq!(
            open,
            [
                ("stackgen/monitoring-pipeline/heartbeat/ap", "ap"),
                ("stackgen/monitoring-pipeline/heartbeat/us", "us"),
            ]
        );
        assert_eq!(run.intents, vec![IntentKind::Opened, IntentKind::Opened]);
        assert!(!run.state.incidents.contains_key(HEARTBEAT_INCIDENT));
        // us comes back: its incident resolves through the hold; ap's stays open.
        for minute in 13..=20 {
            run.step(&[watchdog("eu"), watchdog("us")], minute * MIN);
            run.tick(minute * MIN);
        }
        assert_eq!(
            run.intents,
            vec![IntentKind::Opened, IntentKind::Opened, IntentKind::Resolved]
        );
        assert!(run.state.incidents["stackgen/monitoring-pipeline/heartbeat/ap"].is_open());

        // ap is taken out of the fleet: its incident resolves, and it is not watched any more.
        let mut without_ap = run.settings.clone();
        if let Some(heartbeat) = without_ap.heartbeat.as_mut() {
            heartbeat.clusters.retain(|c| c != "ap");
        }
        run.settings = without_ap;
        for minute in 21..=40 {
            run.step(&[watchdog("eu"), watchdog("us")], minute * MIN);
            run.tick(minute * MIN);
        }
        assert_eq!(
            run.intents,
            vec![
                IntentKind::Opened,
                IntentKind::Opened,
                IntentKind::Resolved,
                IntentKind::Resolved
            ]
        );
        assert!(run.state.incidents.values().all(|i| !i.is_open()));
        // A cluster not listed is not paged for, however long it beats and then stops.
        for minute in 41..=45 {
            run.step(
                &[watchdog("eu"), watchdog("us"), watchdog("new")],
                minute * MIN,
            );
            run.tick(minute * MIN);
        }
        for minute in 46..=60 {
            run.step(&[watchdog("eu"), watchdog("us")], minute * MIN);
            run.tick(minute * MIN);
        }
        assert_eq!(run.intents.len(), 4, "{:?}", run.intents);
        assert!(!run.state.heartbeat.clusters.contains_key("new"));
    }

    /// A router that changes between one heartbeat and a fleet's resolves the incidents it no
    /// longer watches, both ways, instead of leaving them open for ever.
    #[test]
    fn a_heartbeat_no_longer_watched_resolves() {
        let settings_with = |clusters: Vec<String>| DedupSettings {
            heartbeat: Some(HeartbeatSettings {
                alertname: "Watchdog".into(),
                timeout: 5 * MIN,
                team: "platform".into(),
                clusters,
            }),
            ..settings()
        };
        // One heartbeat, never heard: its incident opens.
        let mut run = Run::new(settings_with(Vec::new()));
        for minute in 0..=6 {
            run.tick(minute * MIN);
        }
        assert!(run.state.incidents[HEARTBEAT_INCIDENT].is_open());
        // The router now watches a fleet: the one heartbeat's incident resolves, the silent
        // cluster's opens.
        run.settings = settings_with(vec!["eu".into()]);
        for minute in 7..=20 {
            run.tick(minute * MIN);
        }
        assert!(!run.state.incidents[HEARTBEAT_INCIDENT].is_open());
        assert!(run.state.incidents[&cluster_heartbeat_incident("eu")].is_open());
        // And back to one heartbeat, heard: the cluster's resolves too.
        run.settings = settings_with(Vec::new());
        let mut watchdog = alert("", 0, true, 0, None, "info");
        watchdog.alertname = "Watchdog".into();
        for minute in 21..=40 {
            run.step(std::slice::from_ref(&watchdog), minute * MIN);
            run.tick(minute * MIN);
        }
        assert!(run.state.incidents.values().all(|i| !i.is_open()));
        assert_eq!(
            run.intents,
            vec![
                IntentKind::Opened,
                IntentKind::Resolved,
                IntentKind::Opened,
                IntentKind::Resolved
            ]
        );
    }

    /// Property: whatever the batching, order and duplication of a storm's webhooks, one service
    /// gets exactly one `opened` and, once every member resolved, one `resolved`.
    #[test]
    fn any_order_batching_and_duplication_of_a_storm_gives_one_opened_and_one_resolved() {
        let s = settings();
        for seed in 0..25 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut run = Run::new(s.clone());
            let members = 1 + rng.usize(..500);
            let mut firing: Vec<Classified> = (0..members)
                .flat_map(|p| {
                    let copies = 1 + rng.usize(..3);
                    std::iter::repeat_n(alert("checkout", p, true, 0, None, "critical"), copies)
                })
                .collect();
            rng.shuffle(&mut firing);
            let mut now = MIN;
            let mut rest = firing.as_slice();
            while !rest.is_empty() {
                let take = (1 + rng.usize(..100)).min(rest.len());
                run.step(&rest[..take], now);
                rest = &rest[take..];
                now += rng.i64(0..1_000);
                run.tick(now);
            }
            let mut resolving: Vec<Classified> = (0..members)
                .map(|p| alert("checkout", p, false, 0, Some(now), "critical"))
                .chain(
                    (0..rng.usize(..20))
                        .map(|p| alert("checkout", p % members, true, 0, None, "critical")),
                )
                .collect();
            rng.shuffle(&mut resolving);
            for chunk in resolving.chunks(1 + rng.usize(..64)) {
                now += rng.i64(0..500);
                run.step(chunk, now);
            }
            run.tick(now + s.resolve_hold);
            run.tick(now + 2 * s.resolve_hold);
            assert_eq!(
                run.intents,
                vec![IntentKind::Opened, IntentKind::Resolved],
                "seed {seed}, {members} members"
            );
        }
    }

    #[test]
    fn resolved_incidents_are_forgotten_after_the_retention_only() {
        let s = settings();
        let mut state = State::default();
        step(
            &mut state,
            &[alert("checkout", 1, true, 0, None, "critical")],
            0,
            &s,
        );
        step(
            &mut state,
            &[alert("search", 1, true, 0, None, "critical")],
            0,
            &s,
        );
        step(
            &mut state,
            &[alert("checkout", 1, false, 0, Some(MIN), "critical")],
            MIN,
            &s,
        );
        tick(&mut state, 4 * MIN, &s);
        assert!(
            forget_resolved(&mut state, 4 * MIN).is_empty(),
            "resolved at the cutoff is kept"
        );
        assert_eq!(
            forget_resolved(&mut state, 5 * MIN),
            vec!["payments/checkout/HighErrorRate".to_string()]
        );
        assert_eq!(
            state.incidents.keys().collect::<Vec<_>>(),
            ["payments/search/HighErrorRate"],
            "open incidents stay"
        );
    }
}
