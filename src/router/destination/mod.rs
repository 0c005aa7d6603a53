//! Destinations: each encodes a notification into a request and classifies the reply. No I/O and
//! no sleeping here; sending and retrying are shared (`delivery`).

pub mod discord;
pub mod email;
pub mod google_chat;
pub mod log;
pub mod mattermost;
pub mod msteams;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use super::alert::Millis;
use super::routing::Notification;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Http {
        method: &'static str,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Written to the router's log.
    Log { line: String },
    /// Sent through the router's SMTP server.
    Email(EmailMessage),
}

/// An e-mail, ready for the SMTP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Without angle brackets.
    pub message_id: String,
    /// The first message of the incident's episode, which every later one answers.
    pub thread_root: Option<String>,
}

/// A JSON POST.
pub fn post_json(
    url: String,
    body: &serde_json::Value,
    extra_headers: Vec<(String, String)>,
) -> Result<Payload, EncodeError> {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(extra_headers);
    Ok(Payload::Http {
        method: "POST",
        url,
        headers,
        body: serde_json::to_vec(body).map_err(|e| EncodeError(e.to_string()))?,
    })
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Renders a template part, as an encoding error when it fails.
pub fn render(
    templates: &super::template::Templates,
    part: &str,
    n: &Notification,
) -> Result<String, EncodeError> {
    templates
        .render(part, n)
        .map_err(|e| EncodeError(format!("template `{part}`: {e}")))
}

/// What came back from an HTTP destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` (seconds or an HTTP date), already converted to a delay.
    pub retry_after: Option<Millis>,
    pub body: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again (after at least `after`, when the destination said so).
    Retry {
        after: Option<Millis>,
        reason: String,
    },
    /// Never retry: the destination refused the request for good.
    Rejected {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct EncodeError(pub String);

pub trait Destination: Send + Sync {
    fn kind(&self) -> &'static str;
    fn encode(&self, notification: &Notification) -> Result<Payload, EncodeError>;
    fn classify(&self, reply: &Reply) -> Outcome;
    /// How long to send nothing more to this destination after a reply, from its rate-limit
    /// headers (looked up by lower-case name). Most services say nothing.
    fn cooldown(&self, _header: &dyn Fn(&str) -> Option<String>) -> Option<Millis> {
        None
    }
}

/// The shared HTTP rule: 2xx delivered; 408, 429 and 5xx (but 501) retried; other codes rejected.
pub fn classify_http(reply: &Reply) -> Outcome {
    match reply.status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500 | 502..=599 => Outcome::Retry {
            after: reply.retry_after,
            reason: format!("HTTP {}: {}", reply.status, snippet(&reply.body)),
        },
        status => Outcome::Rejected {
            reason: format!("HTTP {status}: {}", snippet(&reply.body)),
        },
    }
}

/// The first line of a reply body, shortened, for logs and the outbox.
pub fn snippet(body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    if line.chars().count() > 200 {
        format!("{}...", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}

/// A destination whose reply classification is changed by the config: statuses listed in
/// `retry_statuses` are retried, those in `reject_statuses` rejected; others as the kind says.
pub struct Reclassified {
    pub inner: Box<dyn Destination>,
    pub retry: std::collections::BTreeSet<u16>,
    pub reject: std::collections::BTreeSet<u16>,
}

impl Destination for Reclassified {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn encode(&self, notification: &Notification) -> Result<Payload, EncodeError> {
        self.inner.encode(notification)
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        if self.retry.contains(&reply.status) {
            Outcome::Retry {
                after: reply.retry_after,
                reason: format!(
                    "HTTP {} (retried by config): {}",
                    reply.status,
                    snippet(&reply.body)
                ),
            }
        } else if self.reject.contains(&reply.status) {
            Outcome::Rejected {
                reason: format!(
                    "HTTP {} (rejected by config): {}",
                    reply.status,
                    snippet(&reply.body)
                ),
            }
        } else {
            self.inner.classify(reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            retry_after: Some(3_000),
            body: "x".into(),
        }
    }

    #[test]
    fn config_can_retry_or_reject_chosen_statuses() {
        let d = Reclassified {
            inner: Box::new(log::Log),
            retry: [404].into(),
            reject: [503].into(),
        };
        assert!(matches!(
            d.classify(&reply(404)),
            Outcome::Retry {
                after: Some(3_000),
                ..
            }
        ));
        assert!(matches!(d.classify(&reply(503)), Outcome::Rejected { .. }));
        assert_eq!(d.kind(), "log");
    }

    #[test]
    fn http_status_classes() {
        assert_eq!(classify_http(&reply(202)), Outcome::Delivered);
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(
                    classify_http(&reply(status)),
                    Outcome::Retry {
                        after: Some(3_000),
                        ..
                    }
                ),
                "{status}"
            );
        }
        for status in [400, 401, 404, 501] {
            assert!(
                matches!(classify_http(&reply(status)), Outcome::Rejected { .. }),
                "{status}"
            );
        }
    }
}
