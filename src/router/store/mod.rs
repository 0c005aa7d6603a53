//! Durable state: incidents, their members, the heartbeat, silences and the outbox of planned
//! notifications. Every step loads the silences (a short list): any incident may match one.
//!
//! [`Store`] is what the engine and the delivery workers need, in three roles: [`IncidentStore`]
//! (ingest and incidents), [`OutboxStore`] (the outbox and delivery) and [`StoreChores`]. [`sqlite::SqliteStore`] is the
//! embedded default (no server; WAL mode, every commit synced before the webhook is answered; one
//! router process). [`postgres::PostgresStore`] is shared by several router replicas: each engine
//! step is decided on the rows as stored, inside one transaction that locks the incidents it
//! touches ([`IncidentStore::locked_step`]), outbox entries are claimed with a lease, and the fleet-wide
//! chores run on the one replica holding [`StoreChores::is_leader`].

#[cfg(test)]
pub(crate) mod failing;
pub mod postgres;
pub mod postgres_tls;
pub mod sqlite;

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::alert::Millis;
use super::dedup::{Heartbeat, Incident, Member, State};
use super::notification::Notification;
use super::routing::DestinationId;
use super::silence::Silence;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {}", describe_postgres_error(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("store: stored {what} is unreadable: {message}")]
    Corrupt { what: &'static str, message: String },
    #[error("store: {0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up after the maximum age, or rejected by the destination; kept, counted and logged.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// One planned notification to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    /// The notification's idempotency key.
    pub id: String,
    pub destination: DestinationId,
    pub notification: Notification,
    pub created_at: Millis,
    pub next_attempt_at: Millis,
    pub attempts: u32,
    pub state: DeliveryState,
    pub last_error: Option<String>,
}

/// Everything one engine step changed, written in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub incidents: Vec<Incident>,
    pub members: Vec<(String, u64, Member)>,
    pub forgotten_incidents: Vec<String>,
    /// Stored as the later of this and the stored heartbeat (replicas may race on it).
    pub heartbeat: Option<Heartbeat>,
    pub outbox: Vec<OutboxEntry>,
    /// Silences created or ended (written whole).
    pub silences: Vec<Silence>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.members.is_empty()
            && self.forgotten_incidents.is_empty()
            && self.heartbeat.is_none()
            && self.outbox.is_empty()
            && self.silences.is_empty()
    }
}

/// What one [`IncidentStore::locked_step`] loads (and locks) before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Incident keys the step touches (any order; the store sorts them before locking).
    pub keys: Vec<String>,
    /// Also every open (or resolving) incident: the timed transitions of a tick.
    pub open: bool,
    /// Also the pipeline heartbeat.
    pub heartbeat: bool,
}

/// Sizes the gauges show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounts {
    /// Open or resolving incidents.
    pub incidents: u64,
    /// Firing members of those incidents.
    pub firing_members: u64,
}

/// How an entry is claimed for delivery: by whom, and for how long other routers leave it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Who claims (unique per router process on a shared store).
    pub owner: String,
    /// How long a claim keeps other routers away; it must outlast one delivery attempt.
    pub lease: Millis,
}

impl Default for Claims {
    fn default() -> Self {
        Claims {
            owner: "local".into(),
            lease: 60_000,
        }
    }
}

/// The result of one delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered { at: Millis },
    RetryAt { at: Millis, error: String },
    Dead { error: String },
}

/// Incidents: what the engine reads and writes when it ingests alerts and ticks.
pub trait IncidentStore: Send {
    /// The whole dedup state, as last committed.
    fn load_state(&mut self) -> Result<State, StoreError>;
    /// Writes a batch atomically and durably.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Loads the incidents of `scope` as stored, locked against every other writer until the
    /// step commits, lets `decide` change them and plan what to write, and writes that batch in
    /// the same transaction. `decide` may run more than once (a shared store retries a step that
    /// lost a race), each time on freshly loaded state.
    fn locked_step(
        &mut self,
        scope: &Scope,
        decide: &mut dyn FnMut(&mut State) -> Batch,
    ) -> Result<(), StoreError>;
    /// How many incidents are open and how many members of them fire.
    fn open_counts(&mut self) -> Result<OpenCounts, StoreError>;
}

/// The outbox: planned notifications, claimed and recorded by the delivery workers.
pub trait OutboxStore: Send {
    /// Claims pending entries due at `now`, oldest first, skipping those in `in_flight`, and
    /// returns them. Only the oldest pending entry of each destination qualifies, so every
    /// destination gets its notifications in the order they were planned; an entry claimed by
    /// another owner whose lease has not expired does not qualify.
    fn due(
        &mut self,
        now: Millis,
        limit: usize,
        in_flight: &BTreeSet<String>,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Pending entries of one destination, oldest first (for a digest).
    fn pending_for(
        &mut self,
        destination: &DestinationId,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// The earliest time a pending entry may be claimed (its next attempt, or the end of another
    /// owner's lease).
    fn next_due(&mut self) -> Result<Option<Millis>, StoreError>;
    /// Records an attempt's outcome for a pending entry (and counts the attempt), releasing its
    /// claim. An entry no longer pending (another router recorded it first) stays as it is.
    fn record(&mut self, id: &str, outcome: &Recorded) -> Result<(), StoreError>;
    /// Outbox entries of these incidents (for the API).
    fn entries_for(&mut self, incident_keys: &[String]) -> Result<Vec<OutboxEntry>, StoreError>;
    fn pending_count(&mut self) -> Result<u64, StoreError>;
}

/// Chores: leadership, garbage collection, health and housekeeping.
pub trait StoreChores: Send {
    /// Whether this router runs the fleet-wide chores (reminders, held resolves, stale members,
    /// the heartbeat, garbage collection). Always true for a store only one router uses; on a
    /// shared store, true on the one router holding the lock, which passes to another when its
    /// holder dies.
    fn is_leader(&mut self) -> Result<bool, StoreError>;
    /// Deletes the incidents resolved before `cutoff` (with their members); returns their keys.
    fn forget_resolved(&mut self, cutoff: Millis) -> Result<Vec<String>, StoreError>;
    /// Removes delivered and dead entries created before `cutoff`; returns how many.
    fn gc(&mut self, cutoff: Millis) -> Result<usize, StoreError>;
    /// Cheap check that the store answers.
    fn ping(&mut self) -> Result<(), StoreError>;
    /// Housekeeping off the request path (for SQLite: checkpointing the WAL).
    fn maintain(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A whole store: every role. The embedded and the PostgreSQL store are one each.
pub trait Store: IncidentStore + OutboxStore + StoreChores {}

impl<T: IncidentStore + OutboxStore + StoreChores> Store for T {}

/// A PostgreSQL error as the server said it (message and SQLSTATE), or the client's description.
pub fn describe_postgres_error(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

/// A value as both stores keep it: JSON text.
fn to_json<T: Serialize>(value: &T, what: &'static str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

/// A value read back from its JSON text; unreadable text is a corrupt `what`.
fn from_json<T: DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// An outbox row as both stores keep it: the notification as JSON, the state as text.
struct StoredEntry {
    id: String,
    destination: String,
    notification: String,
    created_at: Millis,
    next_attempt_at: Millis,
    attempts: u32,
    state: String,
    last_error: Option<String>,
}

impl StoredEntry {
    fn decode(self) -> Result<OutboxEntry, StoreError> {
        Ok(OutboxEntry {
            id: self.id,
            destination: DestinationId::parse(&self.destination)
                .ok_or_else(|| corrupt("destination", &self.destination))?,
            notification: from_json(&self.notification, "notification")?,
            created_at: self.created_at,
            next_attempt_at: self.next_attempt_at,
            attempts: self.attempts,
            state: DeliveryState::parse(&self.state)
                .ok_or_else(|| corrupt("delivery state", &self.state))?,
            last_error: self.last_error,
        })
    }
}
