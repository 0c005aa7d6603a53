//! E-mail: a multipart text + HTML message per notification, threaded per incident episode (the
//! first message's `Message-ID` is the episode; later ones answer it with `In-Reply-To` and
//! `References`). Sent through the router's SMTP server by the delivery transport.

use std::sync::Arc;

use super::{Destination, EmailMessage, EncodeError, Outcome, Payload, Reply, render};
use super::{DestinationKind, KindInfo};
use crate::config_check::{Checker, Obj};
use crate::router::dedup::IntentKind;
use crate::router::notification::Notification;
use crate::router::template::Templates;
use crate::router::template::{Mentions, TextFlavour};

/// The email kind.
pub const KIND: KindInfo = KindInfo {
    name: "email",
    secret_field: None,
    setting_keys: &["to"],
    rate_limit: None,
    coalesce: true,
    default_severities: None,
    text_flavour: TextFlavour::Plain,
    mentions: Mentions::None,
};

/// `to`: the addresses every message goes to (at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub to: Vec<String>,
}

impl Settings {
    pub(crate) fn check(checker: &mut Checker, obj: &Obj) -> Settings {
        let to: Vec<String> = obj
            .get("to")
            .and_then(|node| node.as_sequence())
            .map(|list| {
                list.iter()
                    .filter_map(|n| n.as_scalar().map(|x| x.as_str().to_string()))
                    .filter(|address| !address.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if to.is_empty() {
            checker.error(
                obj.span(),
                &obj.path("to"),
                "an e-mail destination needs `to`".into(),
                Some("add `to: [oncall@example.com]`".into()),
            );
        }
        Settings { to }
    }
}

/// The longest subject sent, in characters: RFC 5322 caps a header line at 998 octets, and mail
/// readers show far fewer.
pub const SUBJECT_MAX: usize = 200;

/// A rendered subject as one header line: line breaks and control characters become spaces,
/// and a subject longer than [`SUBJECT_MAX`] is cut, marked `…`.
pub fn subject_line(subject: &str) -> String {
    let one_line: String = subject
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    super::limits::truncate(one_line.trim(), SUBJECT_MAX)
}

pub struct Email {
    pub to: Vec<String>,
    pub templates: Arc<Templates>,
}

/// The `Message-ID` domain part.
pub const MESSAGE_DOMAIN: &str = "stackgen.router";

impl Destination for Email {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Email
    }

    fn encode(&self, n: &Notification) -> Result<Payload, EncodeError> {
        let root = format!("{}@{MESSAGE_DOMAIN}", n.episode_key);
        let opens_thread = matches!(n.kind, IntentKind::Opened | IntentKind::Reopened);
        Ok(Payload::Email(EmailMessage {
            to: self.to.clone(),
            subject: subject_line(&render(&self.templates, "subject", n)?),
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
