//! Opsgenie Alert API: create with `alias` = the incident episode (one open alert per alias, so a
//! retry only bumps its count), close by alias when the incident resolves, acknowledge and
//! unacknowledge it by alias in the name of the person who did. US or EU API base.

use std::sync::Arc;

use serde_json::json;

use super::limits::{truncate, water_level};
use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render};
use super::{DestinationKind, KindInfo, Limit, Parts};
use crate::config_check::{Checker, Obj};
use crate::router::dedup::{IntentKind, Severity};
use crate::router::notification::Notification;
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

pub const US_URL: &str = "https://api.opsgenie.com";
pub const EU_URL: &str = "https://api.eu.opsgenie.com";

/// The opsgenie kind; its documented limit: the Alert API's per-second request limit.
pub const KIND: KindInfo = KindInfo {
    name: "opsgenie",
    secret_field: Some("api_key"),
    setting_keys: &["region", "api_url"],
    rate_limit: Some(Limit {
        per_second: 1.0,
        burst: 10.0,
    }),
    coalesce: false,
    default_severities: Some(&[Severity::Critical]),
    text_flavour: TextFlavour::Plain,
    mentions: Mentions::None,
};

/// `region: eu` for the EU API (anything else: the US one); `api_url` replaces either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub region: Option<String>,
    pub api_url: Option<String>,
}

impl Settings {
    pub(crate) fn check(checker: &mut Checker, obj: &Obj) -> Settings {
        Settings {
            region: checker.optional_text(obj, "region"),
            api_url: checker.optional_text(obj, "api_url"),
        }
    }

    fn base_url(&self) -> String {
        match (&self.api_url, self.region.as_deref()) {
            (Some(url), _) => url.clone(),
            (None, Some("eu")) => EU_URL.to_string(),
            (None, _) => US_URL.to_string(),
        }
    }
}

impl Opsgenie {
    pub fn new(settings: &Settings, parts: Parts) -> Result<Self, String> {
        Ok(Opsgenie {
            base_url: settings.base_url(),
            api_key: parts.secret()?,
            templates: parts.templates,
        })
    }
}

pub struct Opsgenie {
    /// API base, e.g. `https://api.eu.opsgenie.com`.
    pub base_url: String,
    pub api_key: String,
    pub templates: Arc<Templates>,
}

/// The documented limits of an alert's fields, in characters.
pub mod max_chars {
    pub const MESSAGE: usize = 130;
    pub const DESCRIPTION: usize = 15_000;
    pub const ENTITY: usize = 512;
    pub const TAG: usize = 50;
    /// `details`, keys and values together.
    pub const DETAILS: usize = 8_000;
    pub const NOTE: usize = 25_000;
    /// The display name of who acts on an alert.
    pub const USER: usize = 100;
}

/// The key that counts the labels left out of `details`.
const OMITTED_KEY: &str = "omitted_labels";
/// The longest key kept in `details`, and the fewest characters a value keeps.
const DETAIL_KEY_MAX: usize = 128;
const DETAIL_VALUE_MIN: usize = 16;

/// The alert's labels as `details`, within [`max_chars::DETAILS`]: keys cut to
/// [`DETAIL_KEY_MAX`], labels beyond what fits counted under [`OMITTED_KEY`], and long values cut
/// to one common length.
fn details(labels: &crate::router::alert::Labels) -> serde_json::Map<String, serde_json::Value> {
    let reserve = OMITTED_KEY.len() + 8;
    let mut kept: Vec<(String, &str)> = Vec::new();
    let mut key_chars = 0;
    for (key, value) in labels {
        let key = truncate(key, DETAIL_KEY_MAX);
        let chars = key.chars().count();
        if key_chars + chars + DETAIL_VALUE_MIN * (kept.len() + 1) + reserve > max_chars::DETAILS {
            break;
        }
        key_chars += chars;
        kept.push((key, value.as_str()));
    }
    let omitted = labels.len() - kept.len();
    let budget = max_chars::DETAILS - key_chars - if omitted > 0 { reserve } else { 0 };
    let lengths: Vec<usize> = kept.iter().map(|(_, v)| v.chars().count()).collect();
    let level = water_level(&lengths, budget);
    let mut map: serde_json::Map<String, serde_json::Value> = kept
        .into_iter()
        .map(|(key, value)| (key, json!(truncate(value, level))))
        .collect();
    if omitted > 0 {
        map.insert(OMITTED_KEY.to_string(), json!(omitted.to_string()));
    }
    map
}

fn priority(n: &Notification) -> &'static str {
    match n.severity {
        Severity::Critical => "P1",
        Severity::Warning => "P3",
        Severity::Info | Severity::None => "P5",
    }
}

impl Destination for Opsgenie {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Opsgenie
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let alias = format!("stackgen-{}", n.episode_key);
        let base = self.base_url.trim_end_matches('/');
        let auth = vec![(
            "Authorization".to_string(),
            format!("GenieKey {}", self.api_key),
        )];
        // Close, acknowledge and unacknowledge act on the alert by its alias, in the person's name.
        let action = match n.kind {
            IntentKind::Resolved => Some("close"),
            IntentKind::Acknowledged => Some("acknowledge"),
            IntentKind::Unacknowledged => Some("unacknowledge"),
            _ => None,
        };
        if let Some(action) = action {
            let text = render(&self.templates, "title", n)?;
            let user = n.by.as_deref().unwrap_or("stackgen");
            let body = json!({
                "source": "stackgen",
                "user": truncate(user, max_chars::USER),
                "note": truncate(&text, max_chars::NOTE),
            });
            return post_json(
                format!("{base}/v2/alerts/{alias}/{action}?identifierType=alias"),
                &body,
                auth,
            );
        }
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let tags = [
            format!("team:{}", n.team),
            format!("service:{}", n.service),
            format!("severity:{}", n.severity),
        ]
        .map(|tag| truncate(&tag, max_chars::TAG));
        let body = json!({
            "message": truncate(&title, max_chars::MESSAGE),
            "alias": alias,
            "description": truncate(&text, max_chars::DESCRIPTION),
            "priority": priority(n),
            "source": "stackgen",
            "entity": truncate(&n.service, max_chars::ENTITY),
            "tags": tags,
            "details": details(&n.labels),
        });
        post_json(format!("{base}/v2/alerts"), &body, auth)
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
