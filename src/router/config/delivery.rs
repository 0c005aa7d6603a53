//! How notifications go out: `delivery` (retries, concurrency, timeouts) and `smtp`, the mail
//! server of e-mail destinations (the same section as the spec's `router.smtp`).

use super::secret::SecretSource;
use super::teams::Teams;
use crate::config_check::smtp::{self, SmtpServer};
use crate::config_check::{Checker, Obj};
use crate::router::alert::Millis;
use crate::router::destination::DestinationKind;

const DELIVERY_KEYS: &[&str] = &[
    "initial_backoff",
    "max_backoff",
    "max_age",
    "concurrency",
    "timeout",
];
const SMTP_KEYS: [&str; 8] = {
    let [host, port, from, tls, username] = smtp::SERVER_KEYS;
    [
        host,
        port,
        from,
        tls,
        username,
        "password",
        "password_file",
        "password_env",
    ]
};

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub initial_backoff: Millis,
    pub max_backoff: Millis,
    pub max_age: Millis,
    pub concurrency: usize,
    pub timeout: Millis,
}

/// The outgoing mail server of `email` destinations.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub server: SmtpServer,
    pub password: Option<SecretSource>,
}

impl Checker {
    pub(super) fn delivery_section(&mut self, top: &Obj) -> DeliveryConfig {
        let obj = self.sub_object(top, "delivery", DELIVERY_KEYS);
        let d = obj.as_ref();
        DeliveryConfig {
            initial_backoff: self.duration(d, "initial_backoff", "1s"),
            max_backoff: self.duration(d, "max_backoff", "5m"),
            max_age: self.duration(d, "max_age", "24h"),
            concurrency: self.uint(d, "concurrency", 1, 256, 8) as usize,
            timeout: self.duration(d, "timeout", "10s"),
        }
    }

    /// `smtp`; without it, a team with an e-mail destination is an error.
    pub(super) fn smtp_section(&mut self, top: &Obj, teams: &Teams) -> Option<SmtpConfig> {
        let smtp = self.sub_object(top, "smtp", &SMTP_KEYS).and_then(|obj| {
            let server = self.smtp_server(&obj);
            let password = self.secret(&obj, "password", false);
            Some(SmtpConfig {
                server: server?,
                password,
            })
        });
        if smtp.is_none() {
            for (team, destinations) in teams {
                if destinations
                    .iter()
                    .any(|d| d.kind() == DestinationKind::Email)
                {
                    self.error(
                        top.span(),
                        &format!("teams.{team}"),
                        format!(
                            "team `{team}` has an e-mail destination but there is no `smtp` server"
                        ),
                        Some(
                            "add `smtp: {host: smtp.example.com, from: alerts@example.com}`".into(),
                        ),
                    );
                }
            }
        }
        smtp
    }
}
