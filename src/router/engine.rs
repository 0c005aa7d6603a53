//! The engine: the one thread that owns the store's write connection and decides incidents.
//!
//! Webhook handlers send it parsed alerts; it drains whatever is queued, runs the dedup state
//! machine on all of it, plans notifications, and commits everything in one transaction (group
//! commit) before any of those requests is answered. Once a second it applies the passage of time
//! (`dedup::tick`), and once a minute it forgets what the retention allows.
//!
//! Two modes, by store:
//! - **Owned** (the embedded store, one router process): the whole state is loaded once and kept
//!   in memory; a step commits what it changed. If a commit fails, every request of the batch gets
//!   an error (503) and the state is reloaded from the store.
//! - **Shared** (PostgreSQL, several replicas): nothing is kept; each step locks and loads the
//!   incidents it touches ([`super::store::IncidentStore::locked_step`]), decides on them as stored and commits in the
//!   same transaction, so replicas given the same alerts never both notify. The timed transitions
//!   and garbage collection run only on the replica that [`super::store::StoreChores::is_leader`] names.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tracing::{error, warn};

use super::alert::Millis;
use super::clock::now_ms;
use super::config::RouterConfig;
use super::dedup::{self, Classified, Incident, Outcome, State};
use super::metrics::{Metrics, labels};
use super::notification::Notification;
use super::quiet;
use super::routing;
use super::silence::{self, NewSilence, SilenceError};
use super::store::{Batch, DeliveryState, OutboxEntry, Scope, Store, StoreError};

/// The most requests one group commit takes.
const MAX_BATCH: usize = 1024;

/// Why the engine could not do what it was asked. Cloned to every request of a group commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the engine has stopped")]
    Stopped,
    /// A commit (or a locked step on the shared store) failed.
    #[error("the store is unavailable: {0}")]
    CommitFailed(String),
    /// The state could not be reloaded after a failed commit.
    #[error("the store is unavailable")]
    NotReloaded,
    /// A failed commit is not yet followed by a reload.
    #[error("the last commit failed; the state is reloaded first")]
    Reloading,
    #[error("the engine has no state")]
    NoState,
    /// Reading the store failed.
    #[error("{0}")]
    Store(String),
    /// The action was refused: the incident is unknown or not open.
    #[error(transparent)]
    Refused(#[from] dedup::ActionError),
    /// The person does not respond for the incident's team.
    #[error("{by} is no responder of team {team}")]
    Forbidden { by: String, team: String },
    /// A silence that cannot be, or is not known.
    #[error(transparent)]
    Silence(#[from] SilenceError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e.to_string())
    }
}

pub enum Command {
    Ingest {
        alerts: Vec<Classified>,
        reply: oneshot::Sender<Result<usize, EngineError>>,
    },
    Incidents {
        reply: oneshot::Sender<Result<Vec<IncidentView>, EngineError>>,
    },
    Ready {
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Act {
        action: Action,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Silences {
        reply: oneshot::Sender<Result<Vec<silence::Silence>, EngineError>>,
    },
}

/// What a person does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Acknowledge the incident of the action's `key`.
    Acknowledge,
    /// Take the acknowledgement of the incident of `key` back.
    Unacknowledge,
    /// Create a silence under this id.
    Silence { id: String, silence: NewSilence },
    /// End the silence of this id now.
    Unsilence { id: String },
}

/// A person's action, allowed on the incidents and silences of `teams` only (the teams they
/// respond for): an incident's team is known only once it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    /// The incident acted on (empty for a silence).
    pub key: String,
    pub by: String,
    pub teams: std::collections::BTreeSet<String>,
}

impl Action {
    /// Decides the action on the state (pure).
    fn apply(&self, state: &mut State, now: Millis) -> Result<Outcome, EngineError> {
        let forbidden = |team: String| EngineError::Forbidden {
            by: self.by.clone(),
            team,
        };
        match &self.kind {
            ActionKind::Silence { id, silence } => {
                let team = silence::check(silence, now)?;
                if !self.teams.contains(&team) {
                    return Err(forbidden(team));
                }
                silence::create(
                    &mut state.silences,
                    id.clone(),
                    silence.clone(),
                    &self.by,
                    now,
                );
                return Ok(Outcome {
                    changed_silences: [id.clone()].into(),
                    ..Outcome::default()
                });
            }
            ActionKind::Unsilence { id } => {
                let team = state
                    .silences
                    .get(id)
                    .ok_or_else(|| SilenceError::Unknown(id.clone()))?
                    .team()
                    .unwrap_or_default();
                if !self.teams.contains(&team) {
                    return Err(forbidden(team));
                }
                silence::expire(&mut state.silences, id, &self.by, now)?;
                return Ok(Outcome {
                    changed_silences: [id.clone()].into(),
                    ..Outcome::default()
                });
            }
            ActionKind::Acknowledge | ActionKind::Unacknowledge => {}
        }
        let team = state
            .incidents
            .get(&self.key)
            .map(|incident| incident.team.clone())
            .ok_or_else(|| dedup::ActionError::Unknown(self.key.clone()))?;
        if !self.teams.contains(&team) {
            return Err(forbidden(team));
        }
        let outcome = match self.kind {
            ActionKind::Unacknowledge => dedup::unacknowledge(state, &self.key, &self.by, now),
            _ => dedup::acknowledge(state, &self.key, &self.by, now),
        };
        Ok(outcome?)
    }
}

/// How handlers reach the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Command>,
}

impl EngineHandle {
    /// Stores the alerts; `Ok` only once they are durably committed.
    pub async fn ingest(&self, alerts: Vec<Classified>) -> Result<usize, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Ingest { alerts, reply })
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn incidents(&self) -> Result<Vec<IncidentView>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Incidents { reply })
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Every silence not yet forgotten, the latest to start first.
    pub async fn silences(&self) -> Result<Vec<silence::Silence>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Silences { reply })
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Does `action`; `Ok` once what it changed and the notifications it plans are committed.
    pub async fn act(&self, action: Action) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Act { action, reply })
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// `Ok` when the store answers and the engine can commit; otherwise why not.
    pub async fn ready(&self) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Ready { reply })
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

/// An open incident as the API shows it.
#[derive(Debug, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    /// How many of its members fire, of how many (all of them, not only those listed).
    pub firing_members: usize,
    pub total_members: usize,
    /// The first members (at most 1,000).
    pub members: Vec<MemberView>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub fingerprint: String,
    #[serde(flatten)]
    pub member: dedup::Member,
}

#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub destination: String,
    pub kind: String,
    /// When the notification was planned.
    pub at: Millis,
    /// Who the notification tells of (an acknowledgement's person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How many members of an incident the API lists.
const LISTED_MEMBERS: usize = 1000;

pub struct Engine {
    /// The whole incident state when this router is the store's only user; `None` on a shared
    /// store, where every step loads what it touches.
    state: Option<State>,
    store: Box<dyn Store>,
    config: Arc<RouterConfig>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// False after a failed commit until the state is reloaded.
    healthy: bool,
}

impl Engine {
    pub fn new(
        mut store: Box<dyn Store>,
        config: Arc<RouterConfig>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Result<Self, super::store::StoreError> {
        let state = store.load_state()?;
        let engine = Engine {
            state: Some(state),
            store,
            config,
            metrics,
            wake,
            healthy: true,
        };
        engine.update_gauges();
        Ok(engine)
    }

    /// An engine on a store shared with other routers: it keeps no state of its own.
    pub fn shared(
        store: Box<dyn Store>,
        config: Arc<RouterConfig>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Engine {
            state: None,
            store,
            config,
            metrics,
            wake,
            healthy: true,
        }
    }

    /// Starts the engine thread; it stops when every handle is dropped.
    pub fn spawn(self) -> std::io::Result<(EngineHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("stackgen-engine".into())
            .spawn(move || self.run(rx))?;
        Ok((EngineHandle { tx }, thread))
    }

    fn run(mut self, rx: Receiver<Command>) {
        let mut last_tick = 0;
        let mut last_gc = now_ms();
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(250)) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut commands: Vec<Command> = first.into_iter().collect();
            while commands.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => commands.push(command),
                    Err(_) => break,
                }
            }
            let now = now_ms();
            if !commands.is_empty() {
                self.handle(commands, now);
            }
            if now - last_tick >= 1_000 {
                last_tick = now;
                self.tick(now);
            }
            if now - last_gc >= 60_000 {
                last_gc = now;
                self.gc(now);
            }
        }
    }

    fn handle(&mut self, commands: Vec<Command>, now: Millis) {
        let mut ingests = Vec::new();
        for command in commands {
            match command {
                Command::Ingest { alerts, reply } => ingests.push((alerts, reply)),
                Command::Incidents { reply } => {
                    let _ = reply.send(self.incident_views());
                }
                Command::Ready { reply } => {
                    let ready = if self.healthy {
                        self.store.ping().map_err(EngineError::from)
                    } else {
                        Err(EngineError::Reloading)
                    };
                    let _ = reply.send(ready);
                }
                Command::Act { action, reply } => {
                    let _ = reply.send(self.act(&action, now));
                }
                Command::Silences { reply } => {
                    let silences = match &self.state {
                        Some(state) => Ok(state.silences.clone()),
                        None => self
                            .store
                            .load_state()
                            .map(|state| state.silences)
                            .map_err(EngineError::from),
                    };
                    let _ = reply.send(silences.map(|silences| {
                        let mut listed: Vec<silence::Silence> = silences.into_values().collect();
                        listed.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then(a.id.cmp(&b.id)));
                        listed
                    }));
                }
            }
        }
        if ingests.is_empty() {
            return;
        }
        let result = if self.state.is_some() {
            self.ingest_owned(&ingests, now)
        } else {
            self.ingest_shared(&ingests, now)
        };
        if result.is_ok() {
            let total: usize = ingests.iter().map(|(alerts, _)| alerts.len()).sum();
            self.metrics.alerts_received.inc_by(total as u64);
        }
        for (alerts, reply) in ingests {
            let _ = reply.send(result.clone().map(|()| alerts.len()));
        }
    }

    /// Decides and commits one action, on the state in memory or in a locked step of the shared
    /// store (the incident as stored, so two replicas never both apply it).
    fn act(&mut self, action: &Action, now: Millis) -> Result<(), EngineError> {
        if self.state.is_none() {
            let scope = Scope {
                keys: vec![action.key.clone()],
                ..Scope::default()
            };
            let mut refused = None;
            self.shared_step(&scope, now, |state| match action.apply(state, now) {
                Ok(outcome) => {
                    refused = None;
                    outcome
                }
                Err(e) => {
                    refused = Some(e);
                    Outcome::default()
                }
            })?;
            return refused.map_or(Ok(()), Err);
        }
        if !self.healthy && !self.reload() {
            return Err(EngineError::NotReloaded);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(EngineError::NoState);
        };
        let outcome = action.apply(state, now)?;
        self.commit(outcome, now)
    }

    fn ingest_owned(&mut self, ingests: &[Ingest], now: Millis) -> Result<(), EngineError> {
        if !self.healthy && !self.reload() {
            return Err(EngineError::NotReloaded);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(EngineError::NoState);
        };
        let mut outcome = Outcome::default();
        for (alerts, _) in ingests {
            merge(
                &mut outcome,
                dedup::step(state, alerts, now, &self.config.dedup),
            );
        }
        self.commit(outcome, now)
    }

    /// One transaction on the shared store: lock and load the incidents these alerts touch,
    /// decide, write.
    fn ingest_shared(&mut self, ingests: &[Ingest], now: Millis) -> Result<(), EngineError> {
        let heartbeat_name = self
            .config
            .dedup
            .heartbeat
            .as_ref()
            .map(|h| h.alertname.as_str());
        let mut scope = Scope::default();
        for alert in ingests.iter().flat_map(|(alerts, _)| alerts) {
            if Some(alert.alertname.as_str()) == heartbeat_name {
                scope.heartbeat = true;
            } else {
                scope.keys.push(alert.key.clone());
            }
        }
        let config = self.config.clone();
        self.shared_step(&scope, now, |state| {
            let mut outcome = Outcome::default();
            for (alerts, _) in ingests {
                merge(&mut outcome, dedup::step(state, alerts, now, &config.dedup));
            }
            outcome
        })
    }

    /// Runs `decide` in a locked step of the shared store, plans and writes its outcome, and
    /// counts what it committed.
    fn shared_step(
        &mut self,
        scope: &Scope,
        now: Millis,
        mut decide: impl FnMut(&mut State) -> Outcome,
    ) -> Result<(), EngineError> {
        let config = self.config.clone();
        let mut committed = (Vec::new(), 0, 0);
        let result = self.store.locked_step(scope, &mut |state| {
            let outcome = decide(state);
            let (batch, unroutable) = plan(state, &outcome, &config, now);
            committed = (outcome.intents, batch.outbox.len(), unroutable);
            batch
        });
        match result {
            Ok(()) => {
                self.count_committed(&committed.0, committed.1, committed.2);
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "the shared store failed; answering 503");
                Err(EngineError::CommitFailed(e.to_string()))
            }
        }
    }

    fn count_committed(&self, intents: &[dedup::Intent], planned: usize, unroutable: usize) {
        self.metrics.incidents_unroutable.inc_by(unroutable as u64);
        for intent in intents {
            self.metrics
                .incident_transitions
                .get_or_create(&labels(&[("kind", intent.kind.as_str())]))
                .inc();
        }
        self.metrics.notifications_planned.inc_by(planned as u64);
        if planned > 0 {
            self.wake.notify_one();
        }
    }

    /// Plans the outcome's notifications and commits everything it changed (owned mode).
    fn commit(&mut self, outcome: Outcome, now: Millis) -> Result<(), EngineError> {
        let Some(state) = self.state.as_mut() else {
            return Err(EngineError::NoState);
        };
        let (batch, unroutable) = plan(state, &outcome, &self.config, now);
        if batch.is_empty() {
            self.metrics.incidents_unroutable.inc_by(unroutable as u64);
            return Ok(());
        }
        match self.store.commit(&batch) {
            Ok(()) => {
                self.count_committed(&outcome.intents, batch.outbox.len(), unroutable);
                self.update_gauges();
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "commit failed; answering 503 and reloading the state from the store");
                self.healthy = false;
                self.reload();
                Err(EngineError::CommitFailed(e.to_string()))
            }
        }
    }

    fn reload(&mut self) -> bool {
        match self.store.load_state() {
            Ok(state) => {
                self.state = Some(state);
                self.healthy = true;
                true
            }
            Err(e) => {
                error!(error = %e, "reloading the state from the store failed");
                false
            }
        }
    }

    fn tick(&mut self, now: Millis) {
        if self.state.is_none() {
            return self.tick_shared(now);
        }
        if !self.healthy && !self.reload() {
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let mut outcome = dedup::tick(state, now, &self.config.dedup);
        let released = quiet::release(state, &outcome.intents, &self.config.routing, now);
        merge(&mut outcome, released);
        if let Err(e) = self.commit(outcome, now) {
            warn!(error = %e, "committing the timed transitions failed; they are retried on the next tick");
        }
        if let Ok(pending) = self.store.pending_count() {
            self.metrics.outbox_pending.set(pending as i64);
        }
    }

    /// The timed transitions on a shared store: only on the leader, over every open incident.
    fn tick_shared(&mut self, now: Millis) {
        match self.store.is_leader() {
            Ok(true) => {
                let heartbeat = self.config.dedup.heartbeat.is_some();
                let scope = Scope {
                    keys: self
                        .config
                        .dedup
                        .heartbeat
                        .as_ref()
                        .map(|h| h.incident_keys())
                        .unwrap_or_default(),
                    open: true,
                    heartbeat,
                };
                let config = self.config.clone();
                if let Err(e) = self.shared_step(&scope, now, |state| {
                    let mut outcome = dedup::tick(state, now, &config.dedup);
                    let released = quiet::release(state, &outcome.intents, &config.routing, now);
                    merge(&mut outcome, released);
                    outcome
                }) {
                    warn!(error = %e, "the timed transitions failed; they are retried on the next tick");
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "asking the shared store for the leader lock failed"),
        }
        if let Ok(counts) = self.store.open_counts() {
            self.metrics.incidents_open.set(counts.incidents as i64);
            self.metrics
                .members_active
                .set(counts.firing_members as i64);
        }
        if let Ok(pending) = self.store.pending_count() {
            self.metrics.outbox_pending.set(pending as i64);
        }
    }

    fn gc(&mut self, now: Millis) {
        let cutoff = now - self.config.retention;
        let result = match self.state.as_mut() {
            Some(state) => {
                // The store forgets silences that ended before the cutoff; so does the memory.
                state.silences.retain(|_, s| s.ends_at >= cutoff);
                let batch = Batch {
                    forgotten_incidents: dedup::forget_resolved(state, cutoff),
                    ..Batch::default()
                };
                self.store.commit(&batch)
            }
            None => match self.store.is_leader() {
                Ok(true) => self.store.forget_resolved(cutoff).map(|_| ()),
                Ok(false) => return,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result.and_then(|()| self.store.gc(cutoff).map(|_| ())) {
            warn!(error = %e, "garbage collection failed; it runs again in a minute");
        }
    }

    fn update_gauges(&self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let open: Vec<&Incident> = state.incidents.values().filter(|i| i.is_open()).collect();
        self.metrics.incidents_open.set(open.len() as i64);
        self.metrics
            .members_active
            .set(open.iter().map(|i| i.firing_members()).sum::<usize>() as i64);
    }

    fn incident_views(&mut self) -> Result<Vec<IncidentView>, EngineError> {
        let loaded;
        let state = match &self.state {
            Some(state) => state,
            None => {
                loaded = self.store.load_state()?;
                &loaded
            }
        };
        let open: Vec<Incident> = state
            .incidents
            .values()
            .filter(|i| i.is_open())
            .cloned()
            .collect();
        let keys: Vec<String> = open.iter().map(|i| i.key.clone()).collect();
        let entries = self.store.entries_for(&keys)?;
        Ok(open
            .into_iter()
            .map(|incident| {
                let members = incident
                    .members
                    .iter()
                    .take(LISTED_MEMBERS)
                    .map(|(fp, m)| MemberView {
                        fingerprint: format!("{fp:016x}"),
                        member: m.clone(),
                    })
                    .collect();
                let deliveries = entries
                    .iter()
                    .filter(|e| e.notification.incident_key == incident.key)
                    .map(|e| DeliveryView {
                        id: e.id.clone(),
                        destination: e.destination.to_string(),
                        kind: e.notification.kind.as_str().to_string(),
                        at: e.notification.at,
                        by: e.notification.by.clone(),
                        state: e.state,
                        attempts: e.attempts,
                        last_error: e.last_error.clone(),
                    })
                    .collect();
                IncidentView {
                    firing_members: incident.firing_members(),
                    total_members: incident.members.len(),
                    incident,
                    members,
                    deliveries,
                }
            })
            .collect())
    }
}

/// One webhook's alerts and where its answer goes.
type Ingest = (Vec<Classified>, oneshot::Sender<Result<usize, EngineError>>);

/// What an outcome writes: the changed incidents and members of `state`, the heartbeat, and an
/// outbox entry per planned notification; and how many transitions found no destination.
fn plan(
    state: &mut State,
    outcome: &Outcome,
    config: &RouterConfig,
    now: Millis,
) -> (Batch, usize) {
    let mut unroutable = 0;
    let mut batch = Batch::default();
    let (deliver, held) = quiet::hold(state, &outcome.intents, &config.routing, now);
    for intent in &deliver {
        let Some(incident) = state.incidents.get(&intent.incident_key) else {
            continue;
        };
        let planned = routing::plan(intent, incident, &config.routing);
        // An escalation step whose destinations do not take the severity tells nobody, as meant.
        if planned.is_empty() && intent.kind != dedup::IntentKind::NotAcknowledged {
            unroutable += 1;
            warn!(
                incident = %incident.key,
                team = %incident.team,
                kind = intent.kind.as_str(),
                "no destination for this incident: give its team destinations, add a route, or set ownership.default_team"
            );
        }
        for (destination, notification) in planned {
            batch
                .outbox
                .push(outbox_entry(destination, notification, now));
        }
    }
    for key in outcome.changed_incidents.union(&held) {
        if let Some(incident) = state.incidents.get(key) {
            batch.incidents.push(incident.clone());
        }
    }
    for (key, fingerprint) in &outcome.changed_members {
        if let Some(member) = state
            .incidents
            .get(key)
            .and_then(|i| i.members.get(fingerprint))
        {
            batch
                .members
                .push((key.clone(), *fingerprint, member.clone()));
        }
    }
    if outcome.heartbeat_changed {
        batch.heartbeat = Some(state.heartbeat.clone());
    }
    batch.silences = outcome
        .changed_silences
        .iter()
        .filter_map(|id| state.silences.get(id).cloned())
        .collect();
    (batch, unroutable)
}

fn merge(into: &mut Outcome, from: Outcome) {
    into.intents.extend(from.intents);
    into.changed_incidents.extend(from.changed_incidents);
    into.changed_members.extend(from.changed_members);
    into.heartbeat_changed |= from.heartbeat_changed;
    into.changed_silences.extend(from.changed_silences);
    into.ignored += from.ignored;
}

fn outbox_entry(
    destination: routing::DestinationId,
    notification: Notification,
    now: Millis,
) -> OutboxEntry {
    OutboxEntry {
        id: notification.idempotency_key.clone(),
        destination,
        notification,
        created_at: now,
        next_attempt_at: now,
        attempts: 0,
        state: DeliveryState::Pending,
        last_error: None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::router::ownership::classify;
    use crate::router::ownership::fixtures::update;
    use crate::router::store::IncidentStore;
    use crate::router::store::OutboxStore;
    use crate::router::store::failing::FailingStore;
    use crate::router::store::sqlite::{SqliteOptions, SqliteStore};

    const CONFIG: &str = "teams:\n  payments:\n    destinations:\n      - {kind: log, name: chat}\n      - {kind: log, name: pager}\nownership: {default_team: payments}\ndedup: {resolve_hold: 1m}\n";
    const OPTIONS: SqliteOptions = SqliteOptions {
        sync_full: false,
        auto_checkpoint: true,
    };

    fn config() -> Arc<RouterConfig> {
        let parsed = crate::router::config::parse("r.yaml", CONFIG, Path::new("."));
        Arc::new(parsed.unwrap_or_else(|d| panic!("{d:?}")))
    }

    fn engine_on(store: Box<dyn Store>) -> Engine {
        engine_with(store, config())
    }

    fn engine_with(store: Box<dyn Store>, config: Arc<RouterConfig>) -> Engine {
        Engine::new(
            store,
            config,
            Arc::new(Metrics::new()),
            Arc::new(Notify::new()),
        )
        .expect("the engine starts")
    }

    /// Alerts of checkout's pods, firing or resolved at `at`.
    fn alerts(firing: bool, pods: &[&str], at: Millis) -> Vec<Classified> {
        let config = config();
        pods.iter()
            .map(|pod| {
                let mut alert = update(&[
                    ("alertname", "HighErrorRate"),
                    ("service", "checkout"),
                    ("severity", "critical"),
                    ("pod", pod),
                ]);
                alert.firing = firing;
                alert.ends_at = (!firing).then_some(at);
                classify(alert, &config.ownership)
            })
            .collect()
    }

    /// One webhook through the engine at `now`; the answer it gets.
    fn ingest(
        engine: &mut Engine,
        alerts: Vec<Classified>,
        now: Millis,
    ) -> Result<usize, EngineError> {
        let (reply, mut answer) = oneshot::channel();
        engine.handle(vec![Command::Ingest { alerts, reply }], now);
        answer.try_recv().expect("answered within the step")
    }

    /// The outbox as another process would read it from the file: (destination, kind).
    fn committed_outbox(path: &Path) -> Vec<(String, String)> {
        let mut store = SqliteStore::open(path, OPTIONS).expect("the store opens");
        let keys: Vec<String> = store
            .load_state()
            .expect("state")
            .incidents
            .into_keys()
            .collect();
        let mut entries: Vec<(String, String)> = store
            .entries_for(&keys)
            .expect("entries")
            .into_iter()
            .map(|e| {
                (
                    e.destination.to_string(),
                    e.notification.kind.as_str().to_string(),
                )
            })
            .collect();
        entries.sort();
        entries
    }

    /// One action through the engine at `now`; the answer it gets.
    fn act(engine: &mut Engine, action: Action, now: Millis) -> Result<(), EngineError> {
        let (reply, mut answer) = oneshot::channel();
        engine.handle(vec![Command::Act { action, reply }], now);
        answer.try_recv().expect("answered within the step")
    }

    #[test]
    fn an_acknowledgement_is_committed_told_and_still_holds_the_reminders_after_a_restart() {
        const MIN: Millis = 60_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("router.db");
        let text = CONFIG.replace(
            "dedup: {resolve_hold: 1m}",
            "dedup: {resolve_hold: 1m, reminder: 10m}",
        );
        let config = Arc::new(
            crate::router::config::parse("r.yaml", &text, Path::new("."))
                .unwrap_or_else(|d| panic!("{d:?}")),
        );
        let store = || Box::new(SqliteStore::open(&path, OPTIONS).expect("store"));
        let mut engine = engine_with(store(), config.clone());
        ingest(&mut engine, alerts(true, &["p1", "p2"], 0), 1_000).expect("stored");
        let key = alerts(true, &["p1"], 0)[0].key.clone();
        let action = |kind: ActionKind, key: &str, teams: &[&str]| Action {
            kind,
            key: key.to_string(),
            by: "dana".into(),
            teams: teams.iter().map(|t| t.to_string()).collect(),
        };
        let ack = |key: &str| action(ActionKind::Acknowledge, key, &["payments"]);
        assert_eq!(
            act(
                &mut engine,
                action(ActionKind::Acknowledge, &key, &["search"]),
                1_500
            ),
            Err(EngineError::Forbidden {
                by: "dana".into(),
                team: "payments".into()
            }),
            "only a responder of the incident's team acts on it"
        );
        assert_eq!(act(&mut engine, ack(&key), 2_000), Ok(()));
        let told = |kind: &str| -> Vec<String> {
            committed_outbox(&path)
                .into_iter()
                .filter(|(_, k)| k == kind)
                .map(|(destination, _)| destination)
                .collect()
        };
        assert_eq!(told("acknowledged"), ["payments/chat", "payments/pager"]);
        assert_eq!(
            act(&mut engine, ack("payments/nothing/A"), 3_000),
            Err(EngineError::Refused(dedup::ActionError::Unknown(
                "payments/nothing/A".into()
            )))
        );
        // A restart: the acknowledgement is read back and still holds the reminder.
        drop(engine);
        let mut engine = engine_with(store(), config);
        ingest(&mut engine, alerts(true, &["p1", "p2"], 0), 9 * MIN).expect("stored");
        engine.tick(12 * MIN);
        assert_eq!(told("reminder"), Vec::<String>::new());
        let unack = action(ActionKind::Unacknowledge, &key, &["payments"]);
        assert_eq!(act(&mut engine, unack, 13 * MIN), Ok(()));
        assert_eq!(told("unacknowledged"), ["payments/chat", "payments/pager"]);
        engine.tick(22 * MIN);
        assert_eq!(told("reminder"), Vec::<String>::new());
        engine.tick(23 * MIN);
        assert_eq!(told("reminder"), ["payments/chat", "payments/pager"]);
    }

    #[test]
    fn a_storm_of_one_service_is_committed_as_one_incident_before_it_is_answered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("router.db");
        let mut engine = engine_on(Box::new(SqliteStore::open(&path, OPTIONS).expect("store")));
        assert_eq!(
            ingest(&mut engine, alerts(true, &["p1", "p2", "p3"], 0), 1_000),
            Ok(3)
        );
        let stored = SqliteStore::open(&path, OPTIONS)
            .expect("store")
            .load_state()
            .expect("state");
        assert_eq!(stored.incidents.len(), 1);
        let incident = stored.incidents.values().next().expect("one incident");
        assert_eq!(incident.members.len(), 3);
        let opened = vec![
            ("payments/chat".to_string(), "opened".to_string()),
            ("payments/pager".to_string(), "opened".to_string()),
        ];
        assert_eq!(committed_outbox(&path), opened);
        // Alertmanager sends the same group again: nothing new is planned.
        assert_eq!(
            ingest(&mut engine, alerts(true, &["p1", "p2", "p3"], 0), 31_000),
            Ok(3)
        );
        assert_eq!(committed_outbox(&path), opened);
    }

    #[test]
    fn a_resolve_is_held_then_told_once_by_the_tick() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("router.db");
        let mut engine = engine_on(Box::new(SqliteStore::open(&path, OPTIONS).expect("store")));
        assert_eq!(ingest(&mut engine, alerts(true, &["p1"], 0), 1_000), Ok(1));
        assert_eq!(
            ingest(&mut engine, alerts(false, &["p1"], 10_000), 10_000),
            Ok(1)
        );
        engine.tick(40_000);
        assert_eq!(
            committed_outbox(&path).len(),
            2,
            "still held at 30 s of 1 m"
        );
        engine.tick(71_000);
        engine.tick(72_000);
        let resolved: Vec<_> = committed_outbox(&path)
            .into_iter()
            .filter(|(_, kind)| kind == "resolved")
            .collect();
        assert_eq!(
            resolved.len(),
            2,
            "one resolve per destination, once: {resolved:?}"
        );
    }

    #[test]
    fn one_group_commit_answers_each_webhook_with_its_own_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("router.db");
        let mut engine = engine_on(Box::new(SqliteStore::open(&path, OPTIONS).expect("store")));
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        engine.handle(
            vec![
                Command::Ingest {
                    alerts: alerts(true, &["p1", "p2"], 0),
                    reply: first,
                },
                Command::Ingest {
                    alerts: alerts(true, &["p3"], 0),
                    reply: second,
                },
            ],
            1_000,
        );
        assert_eq!(first_answer.try_recv().expect("answered"), Ok(2));
        assert_eq!(second_answer.try_recv().expect("answered"), Ok(1));
        assert_eq!(
            committed_outbox(&path).len(),
            2,
            "one incident, one notification each"
        );
    }

    #[test]
    fn a_transition_of_a_team_without_destinations_is_counted_unroutable() {
        let config = config();
        let mut state = State::default();
        let mut alert = alerts(true, &["p1"], 0);
        // An incident stored under a team the configuration no longer has.
        for classified in &mut alert {
            classified.team = "gone".into();
            classified.key = "gone/checkout/HighErrorRate".into();
        }
        let outcome = dedup::step(&mut state, &alert, 1_000, &config.dedup);
        let (batch, unroutable) = plan(&mut state, &outcome, &config, 1_000);
        assert_eq!(unroutable, 1);
        assert!(batch.outbox.is_empty());
        let mut known = State::default();
        let outcome = dedup::step(&mut known, &alerts(true, &["p1"], 0), 1_000, &config.dedup);
        assert_eq!(plan(&mut known, &outcome, &config, 1_000).1, 0);
    }

    #[test]
    fn a_failed_commit_is_refused_so_alertmanager_sends_it_again() {
        let mut engine = engine_on(Box::new(FailingStore));
        let answer = ingest(&mut engine, alerts(true, &["p1"], 0), 1_000);
        assert_eq!(
            answer,
            Err(EngineError::CommitFailed("store: disk full".into()))
        );
        let (reply, mut ready) = oneshot::channel();
        engine.handle(vec![Command::Ready { reply }], 2_000);
        assert_eq!(
            ready.try_recv().expect("answered"),
            Err(EngineError::Store("store: disk full".into()))
        );
    }
}
