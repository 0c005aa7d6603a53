//! Durable state: incidents, their members, the heartbeat and the outbox of planned notifications.
//!
//! [`Store`] is what the engine and the delivery workers need; [`sqlite::SqliteStore`] is the
//! embedded default (no server; WAL mode, every commit synced before the webhook is answered).
//! The trait is shaped so a PostgreSQL store shared by several replicas can implement it too.

pub mod sqlite;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::alert::Millis;
use super::dedup::{Heartbeat, Incident, Member, State};
use super::routing::Notification;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
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

    fn parse(text: &str) -> Option<Self> {
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
    /// `team/destination`.
    pub destination: String,
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
    pub heartbeat: Option<Heartbeat>,
    pub outbox: Vec<OutboxEntry>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.members.is_empty()
            && self.forgotten_incidents.is_empty()
            && self.heartbeat.is_none()
            && self.outbox.is_empty()
    }
}

/// The result of one delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered { at: Millis },
    RetryAt { at: Millis, error: String },
    Dead { error: String },
}

pub trait Store: Send {
    /// The whole dedup state, as last committed.
    fn load_state(&mut self) -> Result<State, StoreError>;
    /// Writes a batch atomically and durably.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// Pending entries due at `now`, oldest first, skipping those in `in_flight`. Only the oldest
    /// pending entry of each destination qualifies, so every destination gets its notifications
    /// in the order they were planned.
    fn due(
        &mut self,
        now: Millis,
        limit: usize,
        in_flight: &BTreeSet<String>,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Pending entries of one destination, oldest first (for a digest).
    fn pending_for(
        &mut self,
        destination: &str,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// The earliest next attempt of any pending entry.
    fn next_due(&mut self) -> Result<Option<Millis>, StoreError>;
    /// Records an attempt's outcome (and counts the attempt).
    fn record(&mut self, id: &str, outcome: &Recorded) -> Result<(), StoreError>;
    /// Outbox entries of these incidents (for the API).
    fn entries_for(&mut self, incident_keys: &[String]) -> Result<Vec<OutboxEntry>, StoreError>;
    fn pending_count(&mut self) -> Result<u64, StoreError>;
    /// Removes delivered and dead entries created before `cutoff`; returns how many.
    fn gc(&mut self, cutoff: Millis) -> Result<usize, StoreError>;
    /// Cheap check that the store answers.
    fn ping(&mut self) -> Result<(), StoreError>;
    /// Housekeeping off the request path (for SQLite: checkpointing the WAL).
    fn maintain(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
