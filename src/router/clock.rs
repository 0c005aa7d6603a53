//! The router's one reading of the wall clock. Everything that decides (dedup, routing, retry,
//! rate limits) takes the time as an argument; only the loops at the edges call [`now_ms`].

use super::alert::Millis;

/// The current time in milliseconds since the epoch.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
