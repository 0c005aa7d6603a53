//! Opsgenie Alert API: create with `alias` = the incident episode (one open alert per alias, so a
//! retry only bumps its count), close by alias when the incident resolves. US or EU API base.

use std::sync::Arc;

use serde_json::json;

use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, truncate,
};
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
        if n.kind == IntentKind::Resolved {
            let text = render(&self.templates, "title", n)?;
            let body =
                json!({"source": "stackgen", "user": "stackgen", "note": truncate(&text, 25_000)});
            return post_json(
                format!("{base}/v2/alerts/{alias}/close?identifierType=alias"),
                &body,
                auth,
            );
        }
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let body = json!({
            "message": truncate(&title, 130),
            "alias": alias,
            "description": truncate(&text, 15_000),
            "priority": priority(n),
            "source": "stackgen",
            "entity": n.service,
            "tags": [format!("team:{}", n.team), format!("service:{}", n.service), format!("severity:{}", n.severity)],
            "details": n.labels,
        });
        post_json(format!("{base}/v2/alerts"), &body, auth)
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
