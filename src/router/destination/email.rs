//! E-mail: a multipart text + HTML message per notification, threaded per incident episode (the
//! first message's `Message-ID` is the episode; later ones answer it with `In-Reply-To` and
//! `References`). Sent through the router's SMTP server by the delivery transport.

use std::sync::Arc;

use super::{Destination, EmailMessage, EncodeError, Outcome, Payload, Reply, render};
use crate::router::dedup::IntentKind;
use crate::router::routing::Notification;
use crate::router::template::Templates;

pub struct Email {
    pub to: Vec<String>,
    pub templates: Arc<Templates>,
}

/// The `Message-ID` domain part.
pub const MESSAGE_DOMAIN: &str = "stackgen.router";

impl Destination for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let root = format!("{}@{MESSAGE_DOMAIN}", n.episode_key);
        let opens_thread = matches!(n.kind, IntentKind::Opened | IntentKind::Reopened);
        Ok(Payload::Email(EmailMessage {
            to: self.to.clone(),
            subject: render(&self.templates, "subject", n)?,
            text: render(&self.templates, "text", n)?,
            html: render(&self.templates, "html", n)?,
            message_id: if opens_thread {
                root.clone()
            } else {
                format!("{}@{MESSAGE_DOMAIN}", n.idempotency_key)
            },
            thread_root: (!opens_thread).then_some(root),
        }))
    }

    /// SMTP outcomes are classified by the transport (4xx transient, 5xx permanent).
    fn classify(&self, _reply: &Reply) -> Outcome {
        Outcome::Delivered
    }
}
