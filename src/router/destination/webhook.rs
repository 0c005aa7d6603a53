//! The generic webhook: the notification as JSON, POSTed with an `Idempotency-Key` header.

use super::{Destination, EncodeError, Outcome, Payload, Reply, classify_http};
use super::{DestinationKind, KindInfo};
use crate::router::notification::Notification;
use crate::router::template::{Mentions, TextFlavour};

/// The webhook kind.
pub const KIND: KindInfo = KindInfo {
    name: "webhook",
    secret_field: Some("url"),
    setting_keys: &[],
    rate_limit: None,
    coalesce: false,
    default_severities: None,
    text_flavour: TextFlavour::Plain,
    mentions: Mentions::None,
};

pub struct Webhook {
    pub url: String,
}

impl Destination for Webhook {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Webhook
    }

    fn encode(&self, notification: &Notification) -> Result<Payload, EncodeError> {
        let mut body =
            serde_json::to_value(notification).map_err(|e| EncodeError(e.to_string()))?;
        if let Some(fields) = body.as_object_mut() {
            fields.insert("version".into(), serde_json::Value::String("1".into()));
        }
        Ok(Payload::Http {
            method: "POST",
            url: self.url.clone(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                (
                    "Idempotency-Key".into(),
                    notification.idempotency_key.clone(),
                ),
            ],
            body: serde_json::to_vec(&body).map_err(|e| EncodeError(e.to_string()))?,
        })
    }

    fn classify(&self, reply: &Reply) -> Outcome {
        classify_http(reply)
    }
}
