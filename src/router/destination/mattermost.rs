//! Mattermost incoming webhook (Slack-compatible): a heading and the text; optional channel.

use std::sync::Arc;

use serde_json::json;

use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, truncate,
};
use crate::router::routing::Notification;
use crate::router::template::Templates;

pub struct Mattermost {
    pub url: String,
    pub channel: Option<String>,
    pub templates: Arc<Templates>,
}

impl Destination for Mattermost {
    fn kind(&self) -> &'static str {
        "mattermost"
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
