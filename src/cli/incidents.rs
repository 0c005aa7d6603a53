//! `stackgen incidents`: the router's open incidents on a terminal, and acknowledging them.
//!
//! Reads sign in with the router's bearer token (`--token-file` or `STACKGEN_ROUTER_TOKEN`) or as
//! a person; actions always as a person (`--user`, the password from `--password-file` or
//! `STACKGEN_ROUTER_PASSWORD`), checked against the router's users file. Text from alerts is
//! shown escaped: a label cannot move the cursor or start a line of its own.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// How the router is reached and who asks.
pub struct Client {
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `user` with the password from `password_file` (or the environment); without a user, the
    /// token from `token_file` (or the environment), if any.
    pub fn new(
        router: &str,
        user: Option<&str>,
        password_file: Option<&Path>,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Client> {
        if !router.starts_with("http://") && !router.starts_with("https://") {
            bail!("--router {router}: an http:// or https:// URL");
        }
        let secret = |file: Option<&Path>, variable: &str| -> anyhow::Result<Option<String>> {
            match file {
                Some(path) => std::fs::read_to_string(path)
                    .map(|text| Some(text.trim_end_matches(['\n', '\r']).to_string()))
                    .with_context(|| format!("reading {}", path.display())),
                None => Ok(std::env::var(variable).ok()),
            }
        };
        let authorization = match user {
            Some(user) => {
                let password = secret(password_file, "STACKGEN_ROUTER_PASSWORD")?.with_context(
                    || format!("no password for {user}: give --password-file or set STACKGEN_ROUTER_PASSWORD"),
                )?;
                let pair = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            None => {
                secret(token_file, "STACKGEN_ROUTER_TOKEN")?.map(|token| format!("Bearer {token}"))
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client {
            base: router.trim_end_matches('/').to_string(),
            authorization,
            agent,
        })
    }

    /// The open incidents, as the router's API gives them.
    pub fn incidents(&self) -> anyhow::Result<Vec<Value>> {
        let mut request = self.agent.get(format!("{}/api/v1/incidents", self.base));
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        let answer = answer(request.call(), &self.base)?;
        Ok(answer["incidents"].as_array().cloned().unwrap_or_default())
    }

    /// Acknowledges (`acknowledge`) or unacknowledges the incident `key`.
    pub fn act(&self, action: &str, key: &str) -> anyhow::Result<Value> {
        self.post(
            &format!("/api/v1/incidents/{action}"),
            &json!({ "incident": key }),
        )
    }

    /// Every silence the router keeps.
    pub fn silences(&self) -> anyhow::Result<Vec<Value>> {
        let mut request = self.agent.get(format!("{}/api/v1/silences", self.base));
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        let answer = answer(request.call(), &self.base)?;
        Ok(answer["silences"].as_array().cloned().unwrap_or_default())
    }

    /// Creates a silence (`POST /api/v1/silences`); the router's answer holds its id.
    pub fn silence(&self, silence: &Value) -> anyhow::Result<Value> {
        self.post("/api/v1/silences", silence)
    }

    /// Ends the silence `id` now.
    pub fn unsilence(&self, id: &str) -> anyhow::Result<Value> {
        self.post("/api/v1/silences/expire", &json!({ "silence": id }))
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value);
        }
        answer(request.send(body.to_string()), &self.base)
    }
}

/// The JSON of a 2xx answer, or the router's reason as the error.
fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    base: &str,
) -> anyhow::Result<Value> {
    let mut response = result.with_context(|| format!("reaching the router at {base}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the router's answer ({status})"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let reason = body["error"].as_str().unwrap_or("no reason given");
        bail!("the router answered {status}: {}", escaped(reason));
    }
    Ok(body)
}

/// Filters of `incidents list`.
#[derive(Debug, Default)]
pub struct Filter {
    pub team: Option<String>,
    pub service: Option<String>,
    pub severity: Option<String>,
}

impl Filter {
    pub fn keeps(&self, incident: &Value) -> bool {
        let is = |field: &str, wanted: &Option<String>| {
            wanted
                .as_deref()
                .is_none_or(|w| incident[field].as_str() == Some(w))
        };
        is("team", &self.team) && is("service", &self.service) && is("severity", &self.severity)
    }
}

/// Text from an alert, safe on a terminal and in one table cell.
fn escaped(text: &str) -> String {
    crate::router::notification::one_line(text).into_owned()
}

fn field(incident: &Value, key: &str) -> String {
    escaped(incident[key].as_str().unwrap_or(""))
}

fn members(incident: &Value) -> String {
    format!(
        "{} of {}",
        incident["firing_members"].as_u64().unwrap_or(0),
        incident["total_members"].as_u64().unwrap_or(0)
    )
}

fn acknowledged(incident: &Value) -> String {
    incident["acknowledged"]["by"]
        .as_str()
        .map(escaped)
        .unwrap_or_else(|| "-".into())
}

fn opened(incident: &Value) -> String {
    time(&incident["opened_at"])
}

/// A time in milliseconds since the epoch, as a terminal shows it.
fn time(millis: &Value) -> String {
    millis
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The incidents as a table, one line each.
pub fn table(incidents: &[Value]) -> String {
    let header = [
        "INCIDENT",
        "TEAM",
        "SERVICE",
        "SEVERITY",
        "STATE",
        "MEMBERS",
        "OPENED",
        "ACKNOWLEDGED BY",
    ];
    let rows: Vec<[String; 8]> = incidents
        .iter()
        .map(|i| {
            [
                field(i, "key"),
                field(i, "team"),
                field(i, "service"),
                field(i, "severity"),
                escaped(i["status"]["state"].as_str().unwrap_or("")),
                members(i),
                opened(i),
                acknowledged(i),
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// `rows` under `header`, each column as wide as its widest cell.
fn aligned<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The silences as a table, one line each (the comment cut to 60 characters).
pub fn silences_table(silences: &[Value]) -> String {
    let header = ["SILENCE", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"];
    let rows: Vec<[String; 6]> = silences
        .iter()
        .map(|s| {
            let matchers: Vec<String> = s["matchers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(escaped))
                .collect();
            let comment = field(s, "comment");
            let comment = match comment.char_indices().nth(60) {
                Some((cut, _)) => format!("{}…", &comment[..cut]),
                None => comment,
            };
            [
                field(s, "id"),
                matchers.join(","),
                time(&s["starts_at"]),
                time(&s["ends_at"]),
                field(s, "created_by"),
                comment,
            ]
        })
        .collect();
    aligned(&header, &rows)
}

/// One incident in full: its fields, signals' members and notifications.
pub fn show(incident: &Value) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<14}{value}");
    };
    line("incident", field(incident, "key"));
    line("team", field(incident, "team"));
    line("service", field(incident, "service"));
    line("alert", field(incident, "alertname"));
    line("severity", field(incident, "severity"));
    line(
        "state",
        escaped(incident["status"]["state"].as_str().unwrap_or("")),
    );
    line("opened", opened(incident));
    line("members", members(incident) + " firing");
    line("acknowledged", acknowledged(incident));
    if let Some(summary) = incident["annotations"]["summary"].as_str() {
        line("summary", escaped(summary));
    }
    for member in incident["members"].as_array().into_iter().flatten() {
        let state = if member["firing"].as_bool() == Some(true) {
            "firing"
        } else {
            "resolved"
        };
        line(
            "  member",
            format!(
                "{} {} ({state})",
                escaped(member["alertname"].as_str().unwrap_or("")),
                escaped(member["identity"].as_str().unwrap_or(""))
            ),
        );
    }
    for delivery in incident["deliveries"].as_array().into_iter().flatten() {
        line(
            "  notified",
            format!(
                "{} {}: {} after {} attempt(s){}",
                escaped(delivery["kind"].as_str().unwrap_or("")),
                escaped(delivery["destination"].as_str().unwrap_or("")),
                escaped(delivery["state"].as_str().unwrap_or("")),
                delivery["attempts"].as_u64().unwrap_or(0),
                delivery["last_error"]
                    .as_str()
                    .map(|e| format!(" ({})", escaped(e)))
                    .unwrap_or_default()
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(key: &str, team: &str, by: Option<&str>) -> Value {
        let mut incident = json!({
            "key": key,
            "team": team,
            "service": "checkout",
            "alertname": "HighErrorRate",
            "severity": "critical",
            "status": {"state": "open"},
            "opened_at": 1_796_083_200_000_i64,
            "firing_members": 12,
            "total_members": 40,
            "annotations": {"summary": "line\nbreak\u{1b}[2J"},
            "members": [{"alertname": "HighErrorRate", "identity": "pod=checkout-1", "firing": true}],
            "deliveries": [{"kind": "opened", "destination": "payments/chat", "state": "delivered", "attempts": 1}],
        });
        if let Some(by) = by {
            incident["acknowledged"] = json!({"by": by, "at": 1});
        }
        incident
    }

    #[test]
    fn the_table_lines_up_and_alert_text_cannot_drive_the_terminal() {
        let incidents = [
            incident("payments/checkout", "payments", Some("dana")),
            incident("search/api\u{1b}[31m", "search", None),
        ];
        let text = table(&incidents);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("INCIDENT"));
        assert!(lines[1].contains("12 of 40") && lines[1].ends_with("dana"));
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(lines[2].contains("search/api\\u{1b}[31m"));
        let shown = show(&incidents[0]);
        assert!(shown.contains("acknowledged  dana"));
        assert!(
            shown.contains("summary       line\\nbreak\\u{1b}[2J"),
            "{shown}"
        );
        assert!(shown.contains("  notified    opened payments/chat: delivered after 1 attempt(s)"));
    }

    #[test]
    fn filters_keep_the_incidents_of_the_team_service_and_severity_asked() {
        let payments = incident("payments/checkout", "payments", None);
        let filter = Filter {
            team: Some("payments".into()),
            ..Filter::default()
        };
        assert!(filter.keeps(&payments));
        assert!(
            !Filter {
                severity: Some("warning".into()),
                ..Filter::default()
            }
            .keeps(&payments)
        );
    }
}
