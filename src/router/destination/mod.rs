//! Destinations: each encodes a notification into a request and classifies the reply. No I/O and
//! no sleeping here; sending and retrying are shared (`delivery`).
//!
//! [`DestinationKind`] is the one list of kinds. Each kind's file owns what is about it: its
//! [`KindInfo`] (name, secret field, documented rate limit, template flavour), its typed settings
//! and their checks, and its encoding. The matches below are exhaustive, so a kind that is not
//! wired everywhere does not compile.

pub mod discord;
pub mod email;
pub mod google_chat;
pub mod limits;
pub mod log;
pub mod mattermost;
pub mod msteams;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::sync::Arc;

use super::alert::Millis;
use super::dedup::Severity;
use super::notification::Notification;
use super::template::{Mentions, Templates, TextFlavour};
use crate::config_check::{Checker, Obj};

/// Every kind of destination the router delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DestinationKind {
    Webhook,
    Log,
    Slack,
    Mattermost,
    Discord,
    Msteams,
    GoogleChat,
    Pagerduty,
    Opsgenie,
    Email,
}

/// A service's documented rate limit: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

/// What a kind of destination is, as its own file declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindInfo {
    /// The `kind:` in router.yaml.
    pub name: &'static str,
    /// The field its secret is read from (`<field>`, `<field>_file`, `<field>_env`).
    pub secret_field: Option<&'static str>,
    /// Keys of its own settings in router.yaml, besides the ones every destination has.
    pub setting_keys: &'static [&'static str],
    /// The service's documented rate limit, if it has one.
    pub rate_limit: Option<Limit>,
    /// Whether notifications waiting behind the rate limit may go out as one digest. Pagers may
    /// not: every incident keeps its own page.
    pub coalesce: bool,
    /// The default `text` template it renders.
    pub text_flavour: TextFlavour,
    /// How its service could read alert text as mentions, and so how inserted values are defused.
    pub mentions: Mentions,
    /// The severities it takes when its config does not say (`None`: every severity). Pagers
    /// take critical alerts only, so a warning never pages anybody.
    pub default_severities: Option<&'static [Severity]>,
}

impl DestinationKind {
    pub const ALL: [DestinationKind; 10] = [
        DestinationKind::Webhook,
        DestinationKind::Log,
        DestinationKind::Slack,
        DestinationKind::Mattermost,
        DestinationKind::Discord,
        DestinationKind::Msteams,
        DestinationKind::GoogleChat,
        DestinationKind::Pagerduty,
        DestinationKind::Opsgenie,
        DestinationKind::Email,
    ];

    pub fn info(self) -> &'static KindInfo {
        match self {
            DestinationKind::Webhook => &webhook::KIND,
            DestinationKind::Log => &log::KIND,
            DestinationKind::Slack => &slack::KIND,
            DestinationKind::Mattermost => &mattermost::KIND,
            DestinationKind::Discord => &discord::KIND,
            DestinationKind::Msteams => &msteams::KIND,
            DestinationKind::GoogleChat => &google_chat::KIND,
            DestinationKind::Pagerduty => &pagerduty::KIND,
            DestinationKind::Opsgenie => &opsgenie::KIND,
            DestinationKind::Email => &email::KIND,
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The kind named `name` in router.yaml.
    pub fn parse(name: &str) -> Option<DestinationKind> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Every kind's name, for hints.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(DestinationKind::name)
    }

    /// Checks this kind's own settings in a destination's mapping.
    pub(crate) fn check_settings(self, checker: &mut Checker, obj: &Obj) -> DestinationSettings {
        match self {
            DestinationKind::Webhook => DestinationSettings::Webhook,
            DestinationKind::Log => DestinationSettings::Log,
            DestinationKind::Slack => DestinationSettings::Slack,
            DestinationKind::Mattermost => {
                DestinationSettings::Mattermost(mattermost::Settings::check(checker, obj))
            }
            DestinationKind::Discord => DestinationSettings::Discord,
            DestinationKind::Msteams => DestinationSettings::Msteams,
            DestinationKind::GoogleChat => DestinationSettings::GoogleChat,
            DestinationKind::Pagerduty => {
                DestinationSettings::Pagerduty(pagerduty::Settings::check(checker, obj))
            }
            DestinationKind::Opsgenie => {
                DestinationSettings::Opsgenie(opsgenie::Settings::check(checker, obj))
            }
            DestinationKind::Email => {
                DestinationSettings::Email(email::Settings::check(checker, obj))
            }
        }
    }
}

impl serde::Serialize for DestinationKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A destination's kind with its typed settings, as router.yaml gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationSettings {
    Webhook,
    Log,
    Slack,
    Mattermost(mattermost::Settings),
    Discord,
    Msteams,
    GoogleChat,
    Pagerduty(pagerduty::Settings),
    Opsgenie(opsgenie::Settings),
    Email(email::Settings),
}

impl DestinationSettings {
    pub fn kind(&self) -> DestinationKind {
        match self {
            DestinationSettings::Webhook => DestinationKind::Webhook,
            DestinationSettings::Log => DestinationKind::Log,
            DestinationSettings::Slack => DestinationKind::Slack,
            DestinationSettings::Mattermost(_) => DestinationKind::Mattermost,
            DestinationSettings::Discord => DestinationKind::Discord,
            DestinationSettings::Msteams => DestinationKind::Msteams,
            DestinationSettings::GoogleChat => DestinationKind::GoogleChat,
            DestinationSettings::Pagerduty(_) => DestinationKind::Pagerduty,
            DestinationSettings::Opsgenie(_) => DestinationKind::Opsgenie,
            DestinationSettings::Email(_) => DestinationKind::Email,
        }
    }

    /// The destination, from its secret (read when the router starts) and compiled templates.
    pub fn build(&self, parts: Parts) -> Result<Box<dyn Destination>, String> {
        Ok(match self {
            DestinationSettings::Webhook => Box::new(webhook::Webhook {
                url: parts.secret()?,
            }),
            DestinationSettings::Log => Box::new(log::Log),
            DestinationSettings::Slack => Box::new(slack::Slack {
                url: parts.secret()?,
                templates: parts.templates,
            }),
            DestinationSettings::Mattermost(settings) => {
                Box::new(mattermost::Mattermost::new(settings, parts)?)
            }
            DestinationSettings::Discord => Box::new(discord::Discord {
                url: parts.secret()?,
                templates: parts.templates,
            }),
            DestinationSettings::Msteams => Box::new(msteams::MsTeams {
                url: parts.secret()?,
                templates: parts.templates,
            }),
            DestinationSettings::GoogleChat => Box::new(google_chat::GoogleChat {
                url: parts.secret()?,
                templates: parts.templates,
            }),
            DestinationSettings::Pagerduty(settings) => {
                Box::new(pagerduty::PagerDuty::new(settings, parts)?)
            }
            DestinationSettings::Opsgenie(settings) => {
                Box::new(opsgenie::Opsgenie::new(settings, parts)?)
            }
            DestinationSettings::Email(settings) => Box::new(email::Email {
                to: settings.to.clone(),
                templates: parts.templates,
            }),
        })
    }
}

/// What a destination is built from besides its settings.
pub struct Parts {
    /// The secret, read from its file or environment variable.
    pub secret: Option<String>,
    pub templates: Arc<Templates>,
}

impl Parts {
    fn secret(&self) -> Result<String, String> {
        self.secret
            .clone()
            .ok_or_else(|| "no secret configured".to_string())
    }
}

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

/// Renders a template part, as an encoding error when it fails.
pub fn render(templates: &Templates, part: &str, n: &Notification) -> Result<String, EncodeError> {
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

impl Outcome {
    /// A retry because the service answered 429 (too many requests): it asked to slow down.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Outcome::Retry { reason, .. } if reason.starts_with("HTTP 429"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct EncodeError(pub String);

pub trait Destination: Send + Sync {
    fn kind(&self) -> DestinationKind;
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
    fn kind(&self) -> DestinationKind {
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
        assert_eq!(d.kind(), DestinationKind::Log);
    }

    #[test]
    fn every_kind_is_found_by_its_own_name() {
        for kind in DestinationKind::ALL {
            assert_eq!(DestinationKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(DestinationKind::parse("webhok"), None);
        let names: std::collections::BTreeSet<_> = DestinationKind::names().collect();
        assert_eq!(names.len(), DestinationKind::ALL.len(), "names are unique");
        assert!(DestinationKind::Webhook.info().rate_limit.is_none());
        assert!(DestinationKind::Slack.info().rate_limit.is_some());
        assert!(
            !DestinationKind::Pagerduty.info().coalesce,
            "every incident keeps its own page"
        );
    }

    #[test]
    fn a_429_is_a_request_to_slow_down_not_a_failure() {
        assert!(classify_http(&reply(429)).is_rate_limited());
        for status in [500, 503, 400] {
            assert!(!classify_http(&reply(status)).is_rate_limited(), "{status}");
        }
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
