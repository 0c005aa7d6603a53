//! Google Chat space webhook: one thread per incident episode (`thread.threadKey`), and the
//! notification's idempotency key as `requestId`, so a retried request never posts twice.

use std::sync::Arc;

use serde_json::json;

use super::limits::fit_json;
use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render};
use super::{DestinationKind, KindInfo, Limit};
use crate::router::notification::Notification;
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

/// The google_chat kind; its documented limit: 60 messages per minute per space.
pub const KIND: KindInfo = KindInfo {
    name: "google_chat",
    secret_field: Some("url"),
    setting_keys: &[],
    rate_limit: Some(Limit {
        per_second: 1.0,
        burst: 1.0,
    }),
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::SlackMrkdwn,
    mentions: Mentions::AngleBrackets,
};

/// A message may take 32,000 bytes.
pub const MESSAGE_MAX_BYTES: usize = 32_000;

pub struct GoogleChat {
    pub url: String,
    pub templates: Arc<Templates>,
}

impl Destination for GoogleChat {
    fn kind(&self) -> DestinationKind {
        DestinationKind::GoogleChat
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD&requestId={}",
            self.url, n.idempotency_key
        );
        let mut body = json!({
            "text": format!("*{title}*\n{text}"),
            "thread": {"threadKey": n.episode_key},
        });
        fit_json(&mut body, MESSAGE_MAX_BYTES, &["/text"])?;
        post_json(url, &body, Vec::new())
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
