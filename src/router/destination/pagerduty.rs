//! PagerDuty Events API v2: `trigger` when an incident opens, escalates, reopens or is reminded,
//! `acknowledge` when somebody is on it, `resolve` when it resolves, all with one `dedup_key` per
//! incident episode, so retries and restarts never open a second page. The Events API has no
//! unacknowledge (routing tells PagerDuty nothing of one). Accepted events are answered 202.

use std::sync::Arc;

use serde_json::json;

use super::limits::{fit_json, truncate};
use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http, post_json, render};
use super::{DestinationKind, KindInfo, Limit, Parts};
use crate::config_check::{Checker, Obj};
use crate::router::dedup::{IntentKind, Severity};
use crate::router::notification::Notification;
use crate::router::template::{Mentions, TextFlavour};
use crate::router::template::{Templates, context};

pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The pagerduty kind; its documented limit: about 120 events per minute per integration key.
pub const KIND: KindInfo = KindInfo {
    name: "pagerduty",
    secret_field: Some("routing_key"),
    setting_keys: &["api_url"],
    rate_limit: Some(Limit {
        per_second: 2.0,
        burst: 10.0,
    }),
    coalesce: false,
    default_severities: Some(&[Severity::Critical]),
    text_flavour: TextFlavour::Plain,
    mentions: Mentions::None,
};

/// `api_url`: the Events API endpoint, for a proxy or a test stand-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub api_url: Option<String>,
}

impl Settings {
    pub(crate) fn check(checker: &mut Checker, obj: &Obj) -> Settings {
        Settings {
            api_url: checker.optional_text(obj, "api_url"),
        }
    }
}

impl PagerDuty {
    pub fn new(settings: &Settings, parts: Parts) -> Result<Self, String> {
        Ok(PagerDuty {
            url: settings
                .api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_URL.to_string()),
            routing_key: parts.secret()?,
            templates: parts.templates,
        })
    }
}

/// An event may take 512 KB; counted as 512,000 bytes.
pub const EVENT_MAX_BYTES: usize = 512_000;
/// `payload.summary`, and the cap on the other `payload` fields that come from labels.
pub const SUMMARY_MAX_CHARS: usize = 1024;

pub struct PagerDuty {
    pub url: String,
    pub routing_key: String,
    pub templates: Arc<Templates>,
}

fn severity(n: &Notification) -> &'static str {
    match n.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info | Severity::None => "info",
    }
}

impl Destination for PagerDuty {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Pagerduty
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let dedup_key = format!("stackgen-{}", n.episode_key);
        let field = |text: &str| truncate(text, SUMMARY_MAX_CHARS);
        let mut body = if n.kind == IntentKind::Resolved {
            json!({"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": dedup_key})
        } else if n.kind == IntentKind::Acknowledged {
            json!({"routing_key": self.routing_key, "event_action": "acknowledge", "dedup_key": dedup_key})
        } else {
            let title = render(&self.templates, "title", n)?;
            let c = context(n, self.templates.grafana_url.as_deref());
            let links: Vec<_> = [
                ("Runbook", "runbook_url"),
                ("Dashboard", "dashboard_url"),
                ("Prometheus graph", "generator_url"),
                ("Alertmanager", "alertmanager_url"),
            ]
            .into_iter()
            .filter_map(|(text, key)| {
                c[key]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .map(|href| json!({"href": href, "text": text}))
            })
            .collect();
            json!({
                "routing_key": self.routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "client": "stackgen",
                "links": links,
                "payload": {
                    "summary": field(&title),
                    "source": field(&if c["cluster"].as_str().unwrap_or("").is_empty() { n.service.clone() } else { format!("{}/{}", c["cluster"].as_str().unwrap_or(""), n.service) }),
                    "severity": severity(n),
                    "timestamp": c["at"],
                    "component": field(&n.service),
                    "group": field(&n.team),
                    "class": field(&n.alertname),
                    "custom_details": {
                        "firing": format!("{} of {}", n.firing_members, n.total_members),
                        "members": n.members,
                        "summary": c["summary"],
                        "description": c["description"],
                        "incident": n.incident_key,
                        "notification": n.kind.as_str(),
                    },
                },
            })
        };
        // Links are bounded (`template::link`); the details take what is left.
        fit_json(&mut body, EVENT_MAX_BYTES, &["/payload/custom_details"])?;
        post_json(
            self.url.clone(),
            &body,
            vec![("Idempotency-Key".into(), n.idempotency_key.clone())],
        )
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
