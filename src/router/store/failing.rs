//! A store whose writes fail, as when the disk is full or the database is locked away: reads
//! answer (empty), commits and pings fail. For the engine's and the API's tests.

use std::collections::BTreeSet;

use super::{
    Batch, IncidentStore, OpenCounts, OutboxEntry, OutboxStore, Recorded, Scope, StoreChores,
    StoreError,
};
use crate::router::alert::Millis;
use crate::router::dedup::State;
use crate::router::routing::DestinationId;

/// A store whose writes fail, as when the disk is full or the database is locked away.
pub(crate) struct FailingStore;

impl IncidentStore for FailingStore {
    fn load_state(&mut self) -> Result<State, StoreError> {
        Ok(State::default())
    }
    fn commit(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Io("disk full".into()))
    }
    fn locked_step(
        &mut self,
        _: &Scope,
        _: &mut dyn FnMut(&mut State) -> Batch,
    ) -> Result<(), StoreError> {
        Err(StoreError::Io("disk full".into()))
    }
    fn open_counts(&mut self) -> Result<OpenCounts, StoreError> {
        Ok(OpenCounts::default())
    }
}

/// Nothing is ever planned, so the outbox stays empty.
impl OutboxStore for FailingStore {
    fn due(
        &mut self,
        _: Millis,
        _: usize,
        _: &BTreeSet<String>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(Vec::new())
    }
    fn pending_for(&mut self, _: &DestinationId, _: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(Vec::new())
    }
    fn next_due(&mut self) -> Result<Option<Millis>, StoreError> {
        Ok(None)
    }
    fn record(&mut self, _: &str, _: &Recorded) -> Result<(), StoreError> {
        Ok(())
    }
    fn entries_for(&mut self, _: &[String]) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(Vec::new())
    }
    fn pending_count(&mut self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

impl StoreChores for FailingStore {
    fn is_leader(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn forget_resolved(&mut self, _: Millis) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    fn gc(&mut self, _: Millis) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn ping(&mut self) -> Result<(), StoreError> {
        Err(StoreError::Io("disk full".into()))
    }
}
