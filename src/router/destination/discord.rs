//! Discord webhook: one embed per notification. Discord answers 204; a 429 says how long to wait in
//! its `retry_after` body field (seconds, float) besides `Retry-After`; a 404 means the webhook is
//! gone, so the notification is rejected instead of hammering it (Discord bans webhooks that keep
//! failing).

use std::sync::Arc;

use serde_json::json;

use super::limits::truncate;
use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, snippet,
};
use super::{DestinationKind, KindInfo, Limit};
use crate::router::dedup::Severity;
use crate::router::notification::{AlertStatus, Notification};
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

/// The discord kind; its documented limit: 30 messages per minute per webhook.
pub const KIND: KindInfo = KindInfo {
    name: "discord",
    secret_field: Some("url"),
    setting_keys: &[],
    rate_limit: Some(Limit {
        per_second: 0.5,
        burst: 5.0,
    }),
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::Markdown,
    mentions: Mentions::None,
};

pub struct Discord {
    pub url: String,
    pub templates: Arc<Templates>,
}

fn color(n: &Notification) -> u32 {
    if n.status == AlertStatus::Resolved {
        return 0x2e_b8_86;
    }
    match n.severity {
        Severity::Critical => 0xd6_33_3f,
        Severity::Warning => 0xf2_a9_00,
        Severity::Info | Severity::None => 0x3b_82_f6,
    }
}

impl Destination for Discord {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Discord
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let body = json!({
            "username": "stackgen",
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": truncate(&title, 256),
                "description": truncate(&text, 4096),
                "color": color(n),
                "timestamp": crate::router::template::context(n, None)["at"],
            }],
        });
        post_json(self.url.clone(), &body, Vec::new())
    }

    /// `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` (seconds): wait before the next
    /// message instead of running into a 429.
    fn cooldown(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Option<crate::router::alert::Millis> {
        if header("x-ratelimit-remaining")?.trim() != "0" {
            return None;
        }
        let seconds: f64 = header("x-ratelimit-reset-after")?.trim().parse().ok()?;
        (seconds >= 0.0).then(|| (seconds * 1000.0).ceil() as crate::router::alert::Millis)
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        match reply.status {
            404 => Outcome::Rejected {
                reason: format!(
                    "HTTP 404: the webhook no longer exists ({})",
                    snippet(&reply.body)
                ),
            },
            429 => {
                let from_body = serde_json::from_str::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|v| v["retry_after"].as_f64())
                    .map(|seconds| (seconds * 1000.0).ceil() as i64);
                Outcome::Retry {
                    after: reply.retry_after.max(from_body),
                    reason: format!("HTTP 429: {}", snippet(&reply.body)),
                }
            }
            _ => classify_http(reply),
        }
    }
}
