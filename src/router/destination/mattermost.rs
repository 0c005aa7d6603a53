//! Mattermost incoming webhook (Slack-compatible): a heading and the text; optional channel.

use std::sync::Arc;

use serde_json::json;

use super::limits::truncate;
use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render};
use super::{DestinationKind, KindInfo, Limit, Parts};
use crate::config_check::{Checker, Obj};
use crate::router::notification::Notification;
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

/// The mattermost kind; its documented limit: as Slack by default.
pub const KIND: KindInfo = KindInfo {
    name: "mattermost",
    secret_field: Some("url"),
    setting_keys: &["channel"],
    rate_limit: Some(Limit {
        per_second: 1.0,
        burst: 3.0,
    }),
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::Markdown,
    mentions: Mentions::AtSign,
};

/// `channel`: post to this channel instead of the webhook's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub channel: Option<String>,
}

impl Settings {
    pub(crate) fn check(checker: &mut Checker, obj: &Obj) -> Settings {
        Settings {
            channel: checker.optional_text(obj, "channel"),
        }
    }
}

pub struct Mattermost {
    pub url: String,
    pub channel: Option<String>,
    pub templates: Arc<Templates>,
}

impl Mattermost {
    pub fn new(settings: &Settings, parts: Parts) -> Result<Self, String> {
        Ok(Mattermost {
            url: parts.secret()?,
            channel: settings.channel.clone(),
            templates: parts.templates,
        })
    }
}

impl Destination for Mattermost {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Mattermost
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let mut body = json!({
            "username": "stackgen",
            "text": truncate(&format!("#### {title}\n{text}"), 16_000),
        });
        if let Some(channel) = &self.channel {
            body["channel"] = json!(channel);
        }
        post_json(self.url.clone(), &body, Vec::new())
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
