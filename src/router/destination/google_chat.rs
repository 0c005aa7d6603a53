//! Google Chat space webhook: one thread per incident episode (`thread.threadKey`), and the
//! notification's idempotency key as `requestId`, so a retried request never posts twice.

use std::sync::Arc;

use serde_json::json;

use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, truncate,
};
use crate::router::routing::Notification;
use crate::router::template::Templates;

pub struct GoogleChat {
    pub url: String,
    pub templates: Arc<Templates>,
}

impl Destination for GoogleChat {
    fn kind(&self) -> &'static str {
        "google_chat"
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD&requestId={}",
            self.url, n.idempotency_key
        );
        let body = json!({
            "text": truncate(&format!("*{title}*\n{text}"), 30_000),
            "thread": {"threadKey": n.episode_key},
        });
        post_json(url, &body, Vec::new())
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
