//! Slack incoming webhook: `text` as the notification fallback plus Block Kit blocks. Slack answers
//! 200 `ok`; 429 carries `Retry-After`.

use std::sync::Arc;

use serde_json::json;

use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, truncate,
};
use crate::router::routing::Notification;
use crate::router::template::Templates;

pub struct Slack {
    pub url: String,
    pub templates: Arc<Templates>,
}

impl Destination for Slack {
    fn kind(&self) -> &'static str {
        "slack"
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
