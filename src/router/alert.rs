//! The Alertmanager webhook payload (version 4), as sent by Alertmanager 0.25 through 0.34.
//!
//! Optional and newer fields (`notification_reason`, `routeLabels`, ...) and unknown future fields
//! are tolerated. [`WebhookPayload::into_updates`] checks what serde cannot (version, statuses,
//! timestamps) and turns each alert into an [`AlertUpdate`] for the dedup state machine.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Labels or annotations.
pub type Labels = BTreeMap<String, String>;

/// Milliseconds since the Unix epoch; the router's only notion of time.
pub type Millis = i64;

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookPayload {
    pub version: String,
    #[serde(rename = "groupKey", default)]
    pub group_key: String,
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: u64,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(rename = "groupLabels", default)]
    pub group_labels: Labels,
    #[serde(rename = "commonLabels", default)]
    pub common_labels: Labels,
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: Labels,
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookAlert {
    pub status: String,
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// One alert's new state, ready for the dedup state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertUpdate {
    pub fingerprint: u64,
    pub labels: Labels,
    pub annotations: Labels,
    pub firing: bool,
    pub starts_at: Millis,
    /// `None` while firing (Alertmanager sends the zero time then).
    pub ends_at: Option<Millis>,
    pub generator_url: String,
    /// The sending Alertmanager's own URL (`externalURL`), for a link back.
    pub alertmanager_url: String,
}

/// Why a well-formed JSON body is still not a webhook we accept (answered with 422).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("unsupported webhook version {0:?}; Alertmanager sends version \"4\"")]
    Version(String),
    #[error("alerts[{index}]: status {status:?} is neither \"firing\" nor \"resolved\"")]
    Status { index: usize, status: String },
    #[error("alerts[{index}]: {field} {value:?} is not an RFC 3339 time")]
    Time {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("alerts[{index}] has no labels")]
    NoLabels { index: usize },
}

impl WebhookPayload {
    /// Checks the payload and converts its alerts.
    pub fn into_updates(self) -> Result<Vec<AlertUpdate>, PayloadError> {
        if self.version != "4" {
            return Err(PayloadError::Version(self.version));
        }
        let external_url = self.external_url;
        self.alerts
            .into_iter()
            .enumerate()
            .map(|(index, alert)| {
                alert.into_update(index).map(|mut update| {
                    update.alertmanager_url = external_url.clone();
                    update
                })
            })
            .collect()
    }
}

impl WebhookAlert {
    fn into_update(self, index: usize) -> Result<AlertUpdate, PayloadError> {
        let firing = match self.status.as_str() {
            "firing" => true,
            "resolved" => false,
            _ => {
                return Err(PayloadError::Status {
                    index,
                    status: self.status,
                });
            }
        };
        if self.labels.is_empty() {
            return Err(PayloadError::NoLabels { index });
        }
        let starts_at = parse_time(&self.starts_at).ok_or_else(|| PayloadError::Time {
            index,
            field: "startsAt",
            value: self.starts_at.clone(),
        })?;
        let ends_at = if self.ends_at.is_empty() || self.ends_at.starts_with("0001-01-01") {
            None
        } else {
            Some(parse_time(&self.ends_at).ok_or_else(|| PayloadError::Time {
                index,
                field: "endsAt",
                value: self.ends_at.clone(),
            })?)
        };
        let fingerprint = u64::from_str_radix(&self.fingerprint, 16)
            .ok()
            .filter(|_| self.fingerprint.len() == 16)
            .unwrap_or_else(|| label_fingerprint(&self.labels));
        Ok(AlertUpdate {
            fingerprint,
            labels: self.labels,
            annotations: self.annotations,
            firing,
            starts_at,
            ends_at: if firing { None } else { ends_at },
            generator_url: self.generator_url,
            alertmanager_url: String::new(),
        })
    }
}

fn parse_time(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// A stable 64-bit fingerprint of a label set (FNV-1a over sorted `name=value` pairs), for alerts
/// sent without Alertmanager's fingerprint.
pub fn label_fingerprint(labels: &Labels) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for byte in name
            .bytes()
            .chain([0xff])
            .chain(value.bytes())
            .chain([0xfe])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(alert: &str) -> String {
        format!(
            r#"{{"version":"4","status":"firing","receiver":"r","alerts":[{alert}],"notification_reason":"first notification","routeLabels":{{}},"futureField":[1,2]}}"#
        )
    }

    #[test]
    fn accepts_firing_and_resolved_alerts_and_unknown_fields() {
        let text = payload(
            r#"{"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-11-23T02:21:59.162Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"515b48fbc35e7347","extra":true}"#,
        );
        let parsed: WebhookPayload = serde_json::from_str(&text).expect("parses");
        let updates = parsed.into_updates().expect("valid");
        assert_eq!(updates[0].fingerprint, 0x515b48fbc35e7347);
        assert!(updates[0].firing);
        assert_eq!(updates[0].ends_at, None);
        assert_eq!(updates[0].starts_at, 1_795_400_519_162);
    }

    #[test]
    fn rejects_wrong_version_status_and_time() {
        let wrong_version = r#"{"version":"3","status":"firing","alerts":[]}"#;
        let parsed: WebhookPayload = serde_json::from_str(wrong_version).expect("parses");
        assert_eq!(
            parsed.into_updates(),
            Err(PayloadError::Version("3".into()))
        );
        let bad_status =
            payload(r#"{"status":"burning","labels":{"a":"b"},"startsAt":"2026-11-23T02:21:59Z"}"#);
        let parsed: WebhookPayload = serde_json::from_str(&bad_status).expect("parses");
        assert!(matches!(
            parsed.into_updates(),
            Err(PayloadError::Status { index: 0, .. })
        ));
        let bad_time = payload(r#"{"status":"firing","labels":{"a":"b"},"startsAt":"yesterday"}"#);
        let parsed: WebhookPayload = serde_json::from_str(&bad_time).expect("parses");
        assert!(matches!(
            parsed.into_updates(),
            Err(PayloadError::Time {
                field: "startsAt",
                ..
            })
        ));
    }

    #[test]
    fn missing_fingerprint_is_derived_from_labels() {
        let text = payload(
            r#"{"status":"resolved","labels":{"alertname":"A","pod":"p"},"startsAt":"2026-11-23T02:21:59Z","endsAt":"2026-11-23T02:25:00Z"}"#,
        );
        let parsed: WebhookPayload = serde_json::from_str(&text).expect("parses");
        let update = &parsed.into_updates().expect("valid")[0];
        assert_eq!(update.fingerprint, label_fingerprint(&update.labels));
        assert_eq!(update.ends_at, Some(1_795_400_700_000));
    }
}
