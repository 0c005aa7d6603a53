//! One conformance test over every destination kind: the example config declares it and parses,
//! documented replies map to the right outcome, and the firing, resolved, acknowledged and
//! unacknowledged requests match golden JSON (`tests/golden/destinations/`, rewritten with `STACKGEN_BLESS=1`, not under CI). Then
//! e-mail through the router to a real SMTP server (aiosmtpd).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stackgen::router::config;
use stackgen::router::dedup::IntentKind;
use stackgen::router::delivery::Destinations;
use stackgen::router::destination::{Destination, DestinationKind, Outcome, Payload, Reply};
use stackgen::router::template::sample;

use super::support::{assert_expected, free_port, root, wait_for, wait_until};

/// Every kind, as `examples/destinations.yaml` declares it (secrets from the environment).
pub(super) const KINDS: &[&str] = &[
    "webhook",
    "slack",
    "mattermost",
    "discord",
    "msteams",
    "google_chat",
    "pagerduty",
    "opsgenie",
    "email",
    "log",
];

fn example_destinations() -> Destinations {
    let path = root().join("examples/destinations.yaml");
    let mut config =
        config::load(&path).unwrap_or_else(|e| panic!("examples/destinations.yaml: {e:?}"));
    // The example reads its secrets from the environment; the test gives each one inline instead
    // (setting the process environment would race the tests running beside it).
    let stand_ins: BTreeMap<&str, &str> = BTreeMap::from([
        ("EXAMPLE_WEBHOOK_URL", "https://hooks.example.test/stackgen"),
        (
            "EXAMPLE_SLACK_URL",
            "https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        (
            "EXAMPLE_MATTERMOST_URL",
            "https://chat.example.test/hooks/abc123",
        ),
        (
            "EXAMPLE_DISCORD_URL",
            "https://discord.com/api/webhooks/1/token",
        ),
        (
            "EXAMPLE_TEAMS_URL",
            "https://prod.westeurope.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=s",
        ),
        (
            "EXAMPLE_CHAT_URL",
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t",
        ),
        ("EXAMPLE_PAGERDUTY_KEY", "R0UTINGKEY0000000000000000000000"),
        (
            "EXAMPLE_OPSGENIE_KEY",
            "00000000-0000-0000-0000-000000000000",
        ),
    ]);
    for destination in config.teams.values_mut().flatten() {
        if let Some(config::SecretSource::Env(name)) = &destination.secret {
            let value = stand_ins
                .get(name.as_str())
                .unwrap_or_else(|| panic!("no stand-in for the secret {name}"));
            destination.secret = Some(config::SecretSource::Inline(value.to_string()));
        }
    }
    stackgen::router::delivery::build_destinations(&config).expect("destinations build")
}

fn payload_json(payload: &Payload) -> serde_json::Value {
    match payload {
        Payload::Http {
            method,
            url,
            headers,
            body,
        } => serde_json::json!({
            "method": method,
            "url": url,
            "headers": headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
            "body": serde_json::from_slice::<serde_json::Value>(body).unwrap_or(serde_json::Value::Null),
        }),
        Payload::Email(m) => serde_json::json!({
            "to": m.to, "subject": m.subject, "message_id": m.message_id, "thread_root": m.thread_root, "text": m.text, "html": m.html,
        }),
        Payload::Log { line } => serde_json::json!({ "log": line }),
    }
}

#[test]
fn every_destination_kind_conforms() {
    let destinations = example_destinations();
    let kinds: Vec<&str> = destinations.values().map(|d| d.kind().name()).collect();
    for kind in KINDS {
        assert!(
            kinds.contains(kind),
            "examples/destinations.yaml lacks a {kind} destination"
        );
    }
    let golden = root().join("tests/golden/destinations");
    std::fs::create_dir_all(&golden).expect("golden dir");
    for (id, destination) in &destinations {
        let kind = destination.kind().name();
        for intent in [
            IntentKind::Opened,
            IntentKind::Resolved,
            IntentKind::Acknowledged,
            IntentKind::Unacknowledged,
        ] {
            let payload = destination
                .encode(&sample(intent))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let text = serde_json::to_string_pretty(&payload_json(&payload)).expect("JSON") + "\n";
            assert_expected(
                &golden.join(format!(
                    "{}-{}.json",
                    id.to_string().replace('/', "-"),
                    intent.as_str()
                )),
                &text,
                &id.to_string(),
            );
        }
        if matches!(kind, "log" | "email") {
            continue;
        }
        let reply = |status: u16, retry_after: Option<i64>, body: &str| Reply {
            status,
            retry_after,
            body: body.into(),
        };
        let delivered = |o: &Outcome| matches!(o, Outcome::Delivered);
        let retried_after =
            |o: &Outcome, ms: i64| matches!(o, Outcome::Retry { after: Some(a), .. } if *a == ms);
        let retried = |o: &Outcome| matches!(o, Outcome::Retry { .. });
        let rejected = |o: &Outcome| matches!(o, Outcome::Rejected { .. });
        let success = match kind {
            "discord" => reply(204, None, ""),
            "msteams" | "pagerduty" | "opsgenie" => reply(202, None, r#"{"status":"success"}"#),
            _ => reply(200, None, "ok"),
        };
        assert!(delivered(&destination.classify(&success)), "{id}: success");
        assert!(
            delivered(&destination.classify(&reply(200, None, "ok"))) || kind == "msteams",
            "{id}: 200"
        );
        for status in [400, 401, 404] {
            assert!(
                rejected(&destination.classify(&reply(status, None, "{}"))),
                "{id}: {status} must not be retried"
            );
        }
        assert!(
            retried_after(&destination.classify(&reply(429, Some(7_000), "{}")), 7_000),
            "{id}: 429 honours Retry-After"
        );
        for status in [500, 503] {
            assert!(
                retried(&destination.classify(&reply(status, None, "oops"))),
                "{id}: {status} is retried"
            );
        }
    }
}

/// How a service counts a limit.
#[derive(Clone, Copy)]
enum Unit {
    Chars,
    Bytes,
}

/// The limits each service documents (`../shared/reference/destinations.md` and the services'
/// API references), written out here so a wrong constant in an encoder fails: a JSON pointer
/// into the request body (`""`: the whole body, as sent), the unit and the limit.
fn documented_limits(kind: &str, intent: IntentKind) -> Vec<(&'static str, Unit, usize)> {
    use Unit::{Bytes, Chars};
    match (kind, intent) {
        ("slack", _) => vec![
            ("/text", Chars, 40_000),
            ("/blocks/0/text/text", Chars, 150),
            ("/blocks/1/text/text", Chars, 3_000),
        ],
        ("mattermost", _) => vec![("/text", Chars, 16_383)],
        ("discord", _) => vec![
            ("/embeds/0/title", Chars, 256),
            ("/embeds/0/description", Chars, 4_096),
        ],
        ("msteams", _) => vec![
            ("", Bytes, 28_000),
            ("/attachments/0/content/body/1/text", Bytes, 28_000),
        ],
        ("google_chat", _) => vec![("", Bytes, 32_000), ("/text", Bytes, 32_000)],
        ("pagerduty", IntentKind::Resolved | IntentKind::Acknowledged) => {
            vec![("", Bytes, 512_000), ("/dedup_key", Chars, 255)]
        }
        ("pagerduty", _) => vec![
            ("", Bytes, 512_000),
            ("/dedup_key", Chars, 255),
            ("/payload/summary", Chars, 1_024),
        ],
        ("opsgenie", IntentKind::Resolved) => vec![("/note", Chars, 25_000)],
        ("opsgenie", IntentKind::Acknowledged | IntentKind::Unacknowledged) => {
            vec![("/note", Chars, 25_000), ("/user", Chars, 100)]
        }
        ("opsgenie", _) => vec![
            ("/message", Chars, 130),
            ("/alias", Chars, 512),
            ("/description", Chars, 15_000),
            ("/entity", Chars, 512),
            ("/tags/0", Chars, 50),
            ("/tags/1", Chars, 50),
            ("/tags/2", Chars, 50),
        ],
        _ => Vec::new(),
    }
}

/// A notification far over every service's limits, as an alert could make one within the
/// router's 1 MiB webhook: long multi-byte labels and annotations, with characters that grow
/// when JSON escapes them.
fn oversized(intent: IntentKind) -> stackgen::router::notification::Notification {
    let filler = |n: usize| "é\"€\u{1}𝄞<@U1> ".repeat(n);
    let mut n = sample(intent);
    n.by = n.by.map(|by| format!("{by}{}", filler(100)));
    n.alertname = format!("Huge{}", filler(300));
    n.service = format!("svc{}", filler(300));
    n.team = format!("team{}", filler(300));
    for i in 0..30 {
        n.labels
            .insert(format!("label_{i:02}_{}", "k".repeat(200)), filler(500));
    }
    n.annotations.insert("summary".into(), filler(3_000));
    n.annotations.insert("description".into(), filler(10_000));
    n.annotations.insert(
        "runbook_url".into(),
        format!("https://runbooks.example/{}", "r".repeat(4_000)),
    );
    n.members = (0..10)
        .map(|i| format!("pod=p{i}{}", filler(1_000)))
        .collect();
    n.firing_members = 400;
    n.total_members = 400;
    n
}

#[test]
fn every_destination_keeps_every_field_within_its_documented_limit() {
    let destinations = example_destinations();
    let mut report = serde_json::Map::new();
    for (id, destination) in &destinations {
        let kind = destination.kind().name();
        for intent in [
            IntentKind::Opened,
            IntentKind::Resolved,
            IntentKind::Acknowledged,
            IntentKind::Unacknowledged,
        ] {
            let payload = destination
                .encode(&oversized(intent))
                .unwrap_or_else(|e| panic!("{id}: an oversized alert is cut, not refused: {e}"));
            let body: serde_json::Value = match &payload {
                Payload::Http { body, .. } => {
                    serde_json::from_slice(body).expect("the request body is JSON")
                }
                Payload::Email(m) => serde_json::json!({"subject": m.subject}),
                Payload::Log { .. } => continue,
            };
            let sent = match &payload {
                Payload::Http { body, .. } => body.len(),
                _ => 0,
            };
            let mut limits = documented_limits(kind, intent);
            if kind == "email" {
                limits.push(("/subject", Unit::Chars, 200));
            }
            let mut fields = serde_json::Map::new();
            for (pointer, unit, limit) in limits {
                let (size, cut) = if pointer.is_empty() {
                    (sent, None)
                } else {
                    let text = body
                        .pointer(pointer)
                        .and_then(|v| v.as_str())
                        .unwrap_or_else(|| panic!("{id}: no {pointer} in {body}"));
                    let size = match unit {
                        Unit::Chars => text.chars().count(),
                        Unit::Bytes => text.len(),
                    };
                    (size, Some(text.ends_with('…')))
                };
                assert!(
                    size <= limit,
                    "{id} {intent:?}: {pointer:?} takes {size}, over the limit of {limit}"
                );
                fields.insert(
                    if pointer.is_empty() {
                        "request".into()
                    } else {
                        pointer.into()
                    },
                    serde_json::json!({"limit": limit, "size": size, "cut": cut}),
                );
            }
            if kind == "opsgenie" && intent == IntentKind::Opened {
                let details = body["details"].as_object().expect("details");
                let chars: usize = details
                    .iter()
                    .map(|(k, v)| k.chars().count() + v.as_str().map_or(0, |v| v.chars().count()))
                    .sum();
                assert!(chars <= 8_000, "{id}: details take {chars} characters");
                let tags = body["tags"].as_array().expect("tags");
                assert!(tags.len() <= 20);
                fields.insert(
                    "/details".into(),
                    serde_json::json!({"limit": 8_000, "size": chars, "cut": Some(details.values().any(|v| v.as_str().is_some_and(|v| v.ends_with('…'))))}),
                );
            }
            if kind == "discord" {
                let embed = &body["embeds"][0];
                let chars: usize = ["title", "description"]
                    .iter()
                    .map(|k| embed[k].as_str().map_or(0, |v| v.chars().count()))
                    .sum();
                assert!(chars <= 6_000, "{id}: an embed takes {chars} characters");
            }
            if !fields.is_empty() {
                report.insert(format!("{id} {}", intent.as_str()), fields.into());
            }
        }
    }
    let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
    assert_expected(
        &root().join("tests/golden/destinations/limits.json"),
        &text,
        "limits",
    );
}

#[test]
fn discord_retry_after_body_and_teams_legacy_errors() {
    let destinations = example_destinations();
    let discord = destinations
        .values()
        .find(|d| d.kind() == DestinationKind::Discord)
        .expect("discord");
    let body = r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#;
    assert_eq!(
        discord.classify(&Reply {
            status: 429,
            retry_after: None,
            body: body.into()
        }),
        Outcome::Retry {
            after: Some(1_500),
            reason: format!("HTTP 429: {body}")
        }
    );
    let headers = |name: &str| match name {
        "x-ratelimit-remaining" => Some("0".to_string()),
        "x-ratelimit-reset-after" => Some("1.25".to_string()),
        _ => None,
    };
    assert_eq!(
        discord.cooldown(&headers),
        Some(1_250),
        "Discord's rate-limit headers pause the next send"
    );
    assert_eq!(discord.cooldown(&|_: &str| None), None);
    let legacy = stackgen::router::destination::msteams::MsTeams {
        url: "https://contoso.webhook.office.com/webhookb2/x".into(),
        templates: stackgen::router::template::defaults(),
    };
    assert!(matches!(
        legacy.classify(&Reply {
            status: 200,
            retry_after: None,
            body: "1".into()
        }),
        Outcome::Delivered
    ));
    assert!(matches!(legacy.classify(&Reply { status: 200, retry_after: None, body: "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429".into() }), Outcome::Retry { .. }));
    assert!(matches!(
        legacy.classify(&Reply {
            status: 200,
            retry_after: None,
            body: "Summary or Text is required.".into()
        }),
        Outcome::Rejected { .. }
    ));
}

#[test]
fn no_secret_appears_in_any_error_or_debug_output() {
    let destinations = example_destinations();
    let secrets = [
        "XXXX",
        "abc123",
        "R0UTINGKEY0000000000000000000000",
        "00000000-0000-0000-0000-000000000000",
        "token=t",
        "sig=s",
    ];
    for (id, destination) in &destinations {
        for status in [400, 401, 404, 429, 500] {
            let outcome = destination.classify(&Reply {
                status,
                retry_after: None,
                body: "error".into(),
            });
            let text = format!("{outcome:?}");
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "{id}: outcome for {status} shows a secret: {text}"
                );
            }
        }
    }
    let config = config::load(&root().join("examples/destinations.yaml")).expect("config");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("inline-secret-value"),
        "config Debug shows an inline secret"
    );
}

/// A child process killed by its PID when dropped (also when a test fails).
pub(super) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd's Mailbox handler on a loopback port; killed by its PID when dropped.
pub(super) struct SmtpServer {
    child: Child,
    pub port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start_smtp(maildir: &Path) -> SmtpServer {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let server = SmtpServer { child, port };
    wait_for(
        "aiosmtpd's greeting (pip install aiosmtpd)",
        Duration::from_secs(15),
        || {
            let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let mut greeting = [0u8; 3];
            std::io::Read::read_exact(&mut &stream, &mut greeting).is_ok() && &greeting == b"220"
        },
    );
    server
}

/// A real SMTP server delivering into `maildir` and a router in `dir` whose team payments has
/// one e-mail destination to `to` (a YAML list); the router's port.
fn email_router(dir: &Path, maildir: &Path, to: &str) -> (SmtpServer, Killed, u16) {
    let smtp = start_smtp(maildir);
    let router_port = free_port();
    let config = format!(
        "listen: 127.0.0.1:{router_port}\nauth: {{bearer_token: t0k}}\nstore: {{path: ./router.db}}\ndedup: {{resolve_hold: 1s}}\nsmtp: {{host: 127.0.0.1, port: {}, from: alerts@example.com, tls: none}}\nteams:\n  payments:\n    destinations:\n      - kind: email\n        to: {to}\nownership: {{default_team: payments}}\n",
        smtp.port
    );
    std::fs::write(dir.join("router.yaml"), config).expect("config");
    let router = Killed(
        Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(["router", "serve", "--config", "router.yaml"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("router starts"),
    );
    (smtp, router, router_port)
}

#[test]
fn email_reaches_a_real_smtp_server_threaded_with_both_parts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let maildir = dir.path().join("mail");
    let (_smtp, _router, router_port) = email_router(
        dir.path(),
        &maildir,
        "[oncall@example.com, second@example.com]",
    );
    let post = |name: &str| {
        let body = std::fs::read(
            root()
                .join("tests/fixtures/alertmanager-webhook")
                .join(name),
        )
        .expect("fixture");
        let status = wait_until("the router's answer", Duration::from_secs(15), || {
            ureq::post(&format!(
                "http://127.0.0.1:{router_port}/api/v1/alertmanager"
            ))
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer t0k")
            .send(&body[..])
            .ok()
            .map(|response| response.status().as_u16())
        });
        assert_eq!(status, 200);
    };
    post("01-one-service-three-instances-firing.body.json");
    post("02-one-instance-resolved-two-still-firing.body.json");
    post("03-all-instances-resolved.body.json");
    let new = maildir.join("new");
    let mails = wait_until("2 mails in the mailbox", Duration::from_secs(20), || {
        let mut mails: Vec<String> = std::fs::read_dir(&new)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        mails.sort_by_key(|m| m.contains("In-Reply-To"));
        (mails.len() >= 2).then_some(mails)
    });
    let (opened, resolved) = (&mails[0], &mails[1]);
    for mail in [opened, resolved] {
        assert!(mail.contains("From: alerts@example.com"), "{mail}");
        assert!(
            mail.contains("X-RcptTo: oncall@example.com, second@example.com")
                || mail.contains("X-RcptTo: oncall@example.com,second@example.com"),
            "{mail}"
        );
        assert!(mail.contains("multipart/alternative"), "{mail}");
        assert!(
            mail.contains("text/plain") && mail.contains("text/html"),
            "{mail}"
        );
    }
    assert!(
        opened.contains("Subject: [CRITICAL] HighErrorRate on checkout"),
        "{opened}"
    );
    let message_id = opened
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("Message-ID")
        .trim()
        .to_string();
    assert!(
        resolved.contains("Subject: [RESOLVED] HighErrorRate on checkout"),
        "{resolved}"
    );
    assert!(
        resolved.contains(&format!("In-Reply-To: {message_id}")),
        "resolved mail answers the opened one:\n{resolved}"
    );
    assert!(
        resolved.contains(&format!("References: {message_id}")),
        "{resolved}"
    );
}

/// An alert name of 5,000 characters with a line break makes a subject no SMTP server refuses:
/// one line, cut to 200 characters and marked, and the mail arrives (aiosmtpd, like most
/// servers, answers "Line too long" to an unfolded 5,000-character header).
#[test]
fn a_huge_alert_name_still_arrives_by_email_with_a_short_subject() {
    let dir = tempfile::tempdir().expect("temp dir");
    let maildir = dir.path().join("mail");
    let (_smtp, _router, router_port) = email_router(dir.path(), &maildir, "[oncall@example.com]");
    let huge = format!("Huge{}\nBcc: everyone@example.com", "x".repeat(5_000));
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join(
            "tests/fixtures/alertmanager-webhook/01-one-service-three-instances-firing.body.json",
        ))
        .expect("fixture"),
    )
    .expect("JSON");
    for alert in body["alerts"].as_array_mut().into_iter().flatten() {
        alert["labels"]["alertname"] = serde_json::Value::from(huge.clone());
    }
    let status = wait_until("the router's answer", Duration::from_secs(15), || {
        ureq::post(&format!(
            "http://127.0.0.1:{router_port}/api/v1/alertmanager"
        ))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer t0k")
        .send(body.to_string().as_bytes())
        .ok()
        .map(|response| response.status().as_u16())
    });
    assert_eq!(status, 200);
    let new = maildir.join("new");
    let mail = wait_until("the mail in the mailbox", Duration::from_secs(20), || {
        std::fs::read_dir(&new)
            .ok()?
            .flatten()
            .find_map(|e| std::fs::read_to_string(e.path()).ok())
    });
    let header_end = mail.find("\n\n").unwrap_or(mail.len());
    let headers = &mail[..header_end];
    assert!(headers.contains("Subject: [CRITICAL] "), "{headers}");
    assert!(
        !headers.lines().any(|line| line.starts_with("Bcc:")),
        "a header was injected:\n{headers}"
    );
    // Cut to 200 characters: the encoded subject is a few short folded lines, not 5,000.
    let subject_bytes: usize = headers
        .split("Subject: ")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|line| !line.contains(": ") || line.starts_with(' '))
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    assert!(
        subject_bytes < 600,
        "{subject_bytes} bytes of subject:\n{headers}"
    );
    assert!(headers.lines().all(|line| line.len() <= 998), "{headers}");
}
