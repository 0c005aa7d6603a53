//! The stackgen router: receives Alertmanager webhooks, turns per-instance alerts into one incident
//! per service, decides who owns it, and delivers notifications that survive crashes.
//!
//! Pure cores: [`alert`] (payload), [`dedup`] (incident state machine), [`routing`] (ownership and
//! routes), [`matcher`]. I/O at the edges: the store, the delivery workers and the HTTP API.

pub mod alert;
pub mod dedup;
pub mod matcher;
pub mod routing;
pub mod config;
