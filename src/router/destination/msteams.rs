//! Microsoft Teams: a Workflows (Power Automate) webhook with an Adaptive Card, answered 202. The
//! retired Office 365 connector URLs (`*.webhook.office.com`) are still spoken to with the same
//! card, but they answer 200 even on failure, with the error in the body: anything but `1` is a
//! failure there.

use std::sync::Arc;

use serde_json::json;

use super::limits::{fit_json, truncate};
use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, snippet,
};
use super::{DestinationKind, KindInfo, Limit};
use crate::router::dedup::Severity;
use crate::router::notification::{AlertStatus, Notification};
use crate::router::template::{Mentions, TextFlavour};
use crate::router::template::{Templates, context};

/// The msteams kind; its documented limit: 4 requests per second per connector.
pub const KIND: KindInfo = KindInfo {
    name: "msteams",
    secret_field: Some("url"),
    setting_keys: &[],
    rate_limit: Some(Limit {
        per_second: 1.0,
        burst: 4.0,
    }),
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::Markdown,
    mentions: Mentions::None,
};

/// A Workflows message may take 28 KB; counted as 28,000 bytes of the request body.
pub const MESSAGE_MAX_BYTES: usize = 28_000;

pub struct MsTeams {
    pub url: String,
    pub templates: Arc<Templates>,
}

impl MsTeams {
    fn legacy_connector(&self) -> bool {
        self.url.contains(".webhook.office.com/")
    }
}

impl Destination for MsTeams {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Msteams
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let title = render(&self.templates, "title", n)?;
        let text = render(&self.templates, "text", n)?;
        let links = context(n, self.templates.grafana_url.as_deref());
        let actions: Vec<_> = [
            ("Runbook", "runbook_url"),
            ("Dashboard", "dashboard_url"),
            ("Prometheus", "generator_url"),
            ("Alertmanager", "alertmanager_url"),
        ]
        .into_iter()
        .filter_map(|(label, key)| {
            links[key]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(|url| json!({"type": "Action.OpenUrl", "title": label, "url": url}))
        })
        .collect();
        let mut body = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": truncate(&title, 500), "weight": "Bolder", "size": "Medium", "wrap": true,
                         "color": if n.status == AlertStatus::Resolved { "Good" } else if n.severity == Severity::Critical { "Attention" } else { "Warning" }},
                        {"type": "TextBlock", "text": text, "wrap": true},
                    ],
                    "actions": actions,
                },
            }],
        });
        // Links are bounded (`template::link`) and never cut: a cut URL leads nowhere.
        fit_json(
            &mut body,
            MESSAGE_MAX_BYTES,
            &[
                "/attachments/0/content/body/0/text",
                "/attachments/0/content/body/1/text",
            ],
        )?;
        post_json(self.url.clone(), &body, Vec::new())
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        if self.legacy_connector() && reply.status == 200 && reply.body.trim() != "1" {
            let reason = format!("HTTP 200 with an error: {}", snippet(&reply.body));
            return if reply.body.contains("429") {
                Outcome::Retry {
                    after: None,
                    reason,
                }
            } else {
                Outcome::Rejected { reason }
            };
        }
        classify_http(reply)
    }
}
