//! Opsgenie Alert API: create with `alias` = the incident episode (one open alert per alias, so a
//! retry only bumps its count), close by alias when the incident resolves. US or EU API base.

use std::sync::Arc;

use serde_json::json;

use super::{
    Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render, truncate,
};
use crate::router::dedup::IntentKind;
use crate::router::routing::Notification;
use crate::router::template::Templates;

pub const US_URL: &str = "https://api.opsgenie.com";
pub const EU_URL: &str = "https://api.eu.opsgenie.com";

pub struct Opsgenie {
    /// API base, e.g. `https://api.eu.opsgenie.com`.
    pub base_url: String,
    pub api_key: String,
    pub templates: Arc<Templates>,
}

fn priority(n: &Notification) -> &'static str {
    match n.severity.as_str() {
        "critical" => "P1",
        "warning" => "P3",
        _ => "P5",
    }
}

impl Destination for Opsgenie {
    fn kind(&self) -> &'static str {
        "opsgenie"
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
