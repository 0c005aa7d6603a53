//! The SMTP server section that the stack spec (`router.smtp`) and router.yaml (`smtp`) share:
//! the same keys, defaults and messages in both. Each format adds its own password field.

use super::{Checker, Obj, values};

/// The keys of the server itself; each format adds its password keys.
pub(crate) const SERVER_KEYS: [&str; 5] = ["host", "port", "from", "tls", "username"];

/// An outgoing mail server, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub from: String,
    /// `starttls` (the default, port 587), `tls` (implicit, port 465) or `none` (a local relay).
    pub tls: String,
    pub username: Option<String>,
}

impl Checker {
    /// The server fields of an SMTP section; every problem is reported.
    pub(crate) fn smtp_server(&mut self, obj: &Obj) -> Option<SmtpServer> {
        let host = self
            .required(obj, "host", "add `host: smtp.example.com`")
            .and_then(|node| {
                self.checked_string(node, &obj.path("host"), "SMTP host", values::check_host)
            });
        let from = self
            .required(obj, "from", "add `from: alerts@example.com`")
            .and_then(|node| {
                self.checked_string(
                    node,
                    &obj.path("from"),
                    "sender address",
                    values::check_email,
                )
            });
        let tls = obj.get("tls").map_or(Some("starttls".to_string()), |node| {
            let (text, _) = self.string(node, &obj.path("tls"))?;
            if ["starttls", "tls", "none"].contains(&text.as_str()) {
                return Some(text);
            }
            self.error(
                node.span(),
                &obj.path("tls"),
                format!("unknown SMTP TLS mode `{text}`"),
                Some(
                    "use `starttls` (port 587), `tls` (implicit, port 465) or `none` (a local relay)"
                        .into(),
                ),
            );
            None
        });
        let default_port = if tls.as_deref() == Some("tls") {
            465
        } else {
            587
        };
        let port = self.uint(Some(obj), "port", 1, 65535, default_port) as u16;
        let username = obj
            .get("username")
            .and_then(|n| self.string(n, &obj.path("username")))
            .map(|(u, _)| u);
        Some(SmtpServer {
            host: host?,
            port,
            from: from?,
            tls: tls?,
            username,
        })
    }
}
