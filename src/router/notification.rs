//! A notification: what one destination is told about one transition of an incident. Planned by
//! the routing (`routing::plan`), kept in the outbox as it was planned, and encoded by destinations.

use serde::{Deserialize, Serialize};

use super::alert::{Labels, Millis};
use super::dedup::{IntentKind, Severity};

/// One signal of an incident: an alert of the service, with how many of its members fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub alertname: String,
    pub severity: Severity,
    pub firing_members: usize,
    pub total_members: usize,
}

/// Whether the incident still fires when it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AlertStatus {
    /// Resolved for a resolve, firing for every other transition.
    pub fn of(kind: IntentKind) -> AlertStatus {
        if kind == IntentKind::Resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// A notification as planned: what every destination encodes from. Stored in the outbox, so a
/// retry after a restart sends exactly what was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across retries and restarts: destinations use it as their idempotency key.
    pub idempotency_key: String,
    pub kind: IntentKind,
    pub incident_key: String,
    /// Same for every notification of one incident episode (PagerDuty dedup_key, thread keys).
    pub episode_key: String,
    pub team: String,
    pub service: String,
    pub alertname: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub opened_at: Millis,
    pub at: Millis,
    pub firing_members: usize,
    pub total_members: usize,
    /// The first few firing members, e.g. `pod=checkout-1`.
    pub members: Vec<String>,
    pub labels: Labels,
    pub annotations: Labels,
    /// The members' annotations differ: `annotations` are one member's (say, one pod's summary),
    /// shown as an example, not as the service's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub annotations_vary: bool,
    pub generator_url: String,
    #[serde(default)]
    pub alertmanager_url: String,
    /// The incident's signals (its alerts by name) when there are several, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
    /// The person whose action this notification tells (who acknowledged, or unacknowledged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Set only on a digest: one line per notification it stands for (sent together because the
    /// destination's rate limit was reached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digest: Vec<String>,
}

/// How many members a notification lists by name.
pub const LISTED_MEMBERS: usize = 10;

/// `text` on one line: line breaks (including NEL and the Unicode line and paragraph separators)
/// and other control characters are written as escapes (`\n`, `\u{2028}`), so text from an
/// alert can never start a new line of a log or a console.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    let breaks = |c: char| c.is_control() && c != '\t' || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(breaks) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if breaks(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod one_line_tests {
    use super::one_line;

    #[test]
    fn nothing_from_an_alert_starts_a_new_line() {
        assert_eq!(one_line("plain\ttext"), "plain\ttext");
        let forged = "ok\n2026-12-01T00:00:00Z  INFO forged\r\u{85}\u{2028}\u{1b}[2J";
        let line = one_line(forged);
        assert!(
            !line.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{1b}']),
            "{line}"
        );
        assert_eq!(
            line,
            "ok\\n2026-12-01T00:00:00Z  INFO forged\\r\\u{85}\\u{2028}\\u{1b}[2J"
        );
    }
}
