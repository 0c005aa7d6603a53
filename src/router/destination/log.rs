//! The `log` destination: the notification as one structured line in the router's log.

use super::{Destination, EncodeError, Outcome, Payload, Reply};
use crate::router::routing::Notification;

pub struct Log;

impl Destination for Log {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        Ok(Payload::Log {
            line: format!(
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
                n.annotations
                    .get("summary")
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            ),
        })
    }

    fn classify(&self, _reply: &Reply) -> Outcome {
        Outcome::Delivered
    }
}
