//! Slack incoming webhook: `text` as the notification fallback plus Block Kit blocks. Slack answers
//! 200 `ok`; 429 carries `Retry-After`.

use std::sync::Arc;

use serde_json::json;

use super::limits::truncate;
use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render};
use super::{DestinationKind, KindInfo, Limit};
use crate::router::notification::Notification;
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

/// The slack kind; its documented limit: about 1 message per second per webhook, short bursts allowed.
pub const KIND: KindInfo = KindInfo {
    name: "slack",
    secret_field: Some("url"),
    setting_keys: &[],
    rate_limit: Some(Limit {
        per_second: 1.0,
        burst: 3.0,
    }),
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::SlackMrkdwn,
    mentions: Mentions::Slack,
};

pub struct Slack {
    pub url: String,
    pub templates: Arc<Templates>,
}

impl Destination for Slack {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Slack
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let body = json!({
            "text": truncate(&format!("{title}\n{text}"), 3000),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150), "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}},
            ],
        });
        post_json(self.url.clone(), &body, Vec::new())
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
