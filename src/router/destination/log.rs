//! The `log` destination: the notification as one structured line in the router's log.

use super::{Destination, EncodeError, Outcome, Payload, Reply};
use super::{DestinationKind, KindInfo};
use crate::router::notification::Notification;
use crate::router::template::{Mentions, TextFlavour};

/// The log kind.
pub const KIND: KindInfo = KindInfo {
    name: "log",
    secret_field: None,
    setting_keys: &[],
    rate_limit: None,
    coalesce: false,
    default_severities: None,
    text_flavour: TextFlavour::Plain,
    mentions: Mentions::None,
};

pub struct Log;

impl Destination for Log {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Log
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        Ok(Payload::Log {
            line: crate::router::notification::one_line(&format!(
                "[{}] {} {} for {} (team {}): {} of {} members firing{}",
                n.severity,
                n.kind.as_str(),
                n.alertname,
                if n.service.is_empty() {
                    "-"
                } else {
                    &n.service
                },
                n.team,
                n.firing_members,
                n.total_members,
                match n.annotations.get("summary") {
                    Some(summary) if n.annotations_vary && n.total_members > 1 =>
                        format!(", for example: {summary}"),
                    Some(summary) => format!(": {summary}"),
                    None => String::new(),
                }
            ))
            .into_owned(),
        })
    }

    fn classify(&self, _reply: &Reply) -> Outcome {
        Outcome::Delivered
    }
}
