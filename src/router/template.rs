//! Message templates: what a notification says, in handlebars, per destination kind.
//!
//! Every destination renders up to four parts: `title`, `text` (Markdown-ish chat text), `html`
//! and `subject` (e-mail). Defaults live in `stack/router/templates/`; a team or a destination may
//! replace any part from a file. Templates run in strict mode, and every template is rendered
//! against a sample notification when the config is checked, so a missing variable is an error at
//! `check-config` time, not at 3 a.m. Output is always inserted into payloads as a value (JSON
//! built with serde, HTML escaped for e-mail), so an annotation can never break a payload.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde_json::{Value, json};

use super::dedup::IntentKind;
use super::dedup::Severity;
use super::notification::{AlertStatus, Notification};

/// The parts a destination can render.
pub const PARTS: &[&str] = &["title", "text", "html", "subject"];

const DEFAULT_TITLE: &str = include_str!("../../stack/router/templates/title.hbs");
const DEFAULT_TEXT: &str = include_str!("../../stack/router/templates/text.hbs");
const DEFAULT_HTML: &str = include_str!("../../stack/router/templates/html.hbs");
const DEFAULT_SUBJECT: &str = include_str!("../../stack/router/templates/subject.hbs");
/// `text` for Markdown chats (Mattermost, Discord, Teams) and for Slack's mrkdwn (also Google Chat).
const MARKDOWN_TEXT: &str = include_str!("../../stack/router/templates/markdown/text.hbs");
const SLACK_TEXT: &str = include_str!("../../stack/router/templates/slack/text.hbs");

/// Which default `text` a destination kind renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFlavour {
    /// Plain text (webhooks, pagers, e-mail, the log).
    Plain,
    /// Markdown (Mattermost, Discord, Teams).
    Markdown,
    /// Slack's mrkdwn (also Google Chat's).
    SlackMrkdwn,
}

/// The default of a part for a flavour of text.
fn default_part(flavour: TextFlavour, part: &str) -> &'static str {
    match (flavour, part) {
        (TextFlavour::SlackMrkdwn, "text") => SLACK_TEXT,
        (TextFlavour::Markdown, "text") => MARKDOWN_TEXT,
        (_, "title") => DEFAULT_TITLE,
        (_, "subject") => DEFAULT_SUBJECT,
        (_, "html") => DEFAULT_HTML,
        _ => DEFAULT_TEXT,
    }
}

/// How many members a message lists by name.
pub const LISTED: usize = 5;

/// Compiled templates for one destination.
pub struct Templates {
    text_engine: Handlebars<'static>,
    html_engine: Handlebars<'static>,
    /// Where a dashboard link starts (`dashboard` annotations are paths like `/d/uid`).
    pub grafana_url: Option<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The default templates of a flavour, with `overrides` (part name -> template text).
    pub fn new(
        flavour: TextFlavour,
        mentions: Mentions,
        overrides: &BTreeMap<String, String>,
        grafana_url: Option<String>,
    ) -> Result<Self, String> {
        let mut text_engine = Handlebars::new();
        text_engine.set_strict_mode(true);
        if mentions == Mentions::None {
            text_engine.register_escape_fn(handlebars::no_escape);
        } else {
            text_engine.register_escape_fn(move |value| mentions.defuse(value));
        }
        let mut html_engine = Handlebars::new();
        html_engine.set_strict_mode(true);
        for part in PARTS.iter().copied() {
            let source = overrides
                .get(part)
                .map_or(default_part(flavour, part), String::as_str);
            let engine = if part == "html" {
                &mut html_engine
            } else {
                &mut text_engine
            };
            engine
                .register_template_string(part, source)
                .map_err(|e| format!("template `{part}`: {e}"))?;
        }
        let templates = Templates {
            text_engine,
            html_engine,
            grafana_url,
        };
        // Strict mode only fails on what a render touches: render every part against samples.
        for sample in [
            sample(IntentKind::Opened),
            sample(IntentKind::Resolved),
            sample(IntentKind::Acknowledged),
        ] {
            for part in PARTS {
                templates
                    .render(part, &sample)
                    .map_err(|e| format!("template `{part}`: {e}"))?;
            }
        }
        Ok(templates)
    }

    /// Renders one part for a notification.
    pub fn render(&self, part: &str, notification: &Notification) -> Result<String, String> {
        let context = context(notification, self.grafana_url.as_deref());
        let engine = if part == "html" {
            &self.html_engine
        } else {
            &self.text_engine
        };
        engine
            .render(part, &context)
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string())
    }
}

/// Shared default templates (no overrides).
pub fn defaults() -> Arc<Templates> {
    static DEFAULTS: std::sync::OnceLock<Arc<Templates>> = std::sync::OnceLock::new();
    DEFAULTS
        .get_or_init(|| {
            Arc::new(
                Templates::new(TextFlavour::Plain, Mentions::None, &BTreeMap::new(), None)
                    .unwrap_or_else(|e| panic!("built-in templates are broken: {e}")),
            )
        })
        .clone()
}

fn rfc3339(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `1h 5m`, `3m 20s`, `45s`.
pub fn human_duration(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `ServiceTargetsDown 12 of 40, ServiceHighErrorRate 3 of 40`: each signal with how many of
/// its members fire.
fn signals_summary(n: &Notification) -> String {
    n.signals
        .iter()
        .map(|s| {
            format!(
                "{} {} of {}",
                s.alertname, s.firing_members, s.total_members
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `url` as a link every destination may show: only `http://` and `https://` URLs (anything else,
/// `javascript:` say, gives no link at all), with every character that could end the link in a
/// chat's or Markdown's link syntax (`|`, `>`, `)`, spaces, quotes, ...) percent-encoded. So is
/// `@`: it would read as a mention where mentions are defused (a zero-width space would break the
/// link), and in the authority it only serves to disguise the host (`https://bank.example@evil`).
/// A link longer than [`LINK_MAX_BYTES`] once encoded gives no link either: it would be cut, and a cut link
/// leads nowhere.
pub fn link(url: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return String::new();
    }
    let mut out = String::with_capacity(url.len());
    for byte in url.trim().bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~:/?#!$&'*+,;=%".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        if out.len() > LINK_MAX_BYTES {
            return String::new();
        }
    }
    out
}

/// The longest link, encoded (a Prometheus graph link of a long expression takes a few
/// kilobytes).
pub const LINK_MAX_BYTES: usize = 4096;

/// How a chat service could read text from an alert as a mention of people, and what defuses
/// it: every value a template inserts goes through this (the template's own text does not, so
/// a mention a team wants stays in its template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mentions {
    /// The service notifies nobody from text (or is told not to, like Discord).
    None,
    /// Slack: `<!channel>`, `<@U123>`, `<!subteam^S1>` and links are `<...>`: `&`, `<` and `>`
    /// escaped as Slack documents; a zero-width space keeps `@channel` plain text.
    Slack,
    /// Mattermost: `@channel`, `@here`, `@all`, `@user`: a zero-width space after every `@`.
    AtSign,
    /// Google Chat: `<users/all>`, `<users/123>`: a zero-width space after every `<`, and after
    /// every `@`.
    AngleBrackets,
}

const ZERO_WIDTH_SPACE: char = '\u{200B}';

impl Mentions {
    /// `text` as it may appear in a message without notifying anybody.
    pub fn defuse(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match (self, c) {
                (Mentions::Slack, '&') => out.push_str("&amp;"),
                (Mentions::Slack, '<') => out.push_str("&lt;"),
                (Mentions::Slack, '>') => out.push_str("&gt;"),
                (Mentions::Slack | Mentions::AtSign | Mentions::AngleBrackets, '@')
                | (Mentions::AngleBrackets, '<') => {
                    out.push(c);
                    out.push(ZERO_WIDTH_SPACE);
                }
                _ => out.push(c),
            }
        }
        out
    }
}

/// What templates see. Every key is always present (empty when unknown), so strict mode only
/// fails on names that do not exist.
pub fn context(n: &Notification, grafana_url: Option<&str>) -> Value {
    let annotation = |key: &str| n.annotations.get(key).cloned().unwrap_or_default();
    let dashboard = annotation("dashboard");
    let dashboard_url = match (grafana_url, dashboard.starts_with('/')) {
        (Some(base), true) => format!("{}{dashboard}", base.trim_end_matches('/')),
        (_, true) => String::new(),
        _ => dashboard,
    };
    let listed: Vec<&String> = n.members.iter().take(LISTED).collect();
    json!({
        "signals": n.signals,
        "several_signals": n.signals.len() > 1,
        "signal_count": n.signals.len(),
        "signals_summary": signals_summary(n),
        "kind": n.kind.as_str(),
        "kind_label": n.kind.as_str().to_uppercase(),
        "is_resolved": n.kind == IntentKind::Resolved,
        "is_acknowledgement": matches!(n.kind, IntentKind::Acknowledged | IntentKind::Unacknowledged),
        "by": n.by.clone().unwrap_or_default(),
        "status": n.status,
        "severity": n.severity,
        "severity_label": n.severity.as_str().to_uppercase(),
        "team": n.team,
        "service": if n.service.is_empty() { "-" } else { n.service.as_str() },
        "alertname": n.alertname,
        "cluster": n.labels.get("cluster").cloned().unwrap_or_default(),
        "namespace": n.labels.get("namespace").cloned().unwrap_or_default(),
        "firing_members": n.firing_members,
        "total_members": n.total_members,
        "members": listed,
        "more_members": n.firing_members.saturating_sub(listed.len()),
        "summary": annotation("summary"),
        "summary_is_an_example": n.annotations_vary && n.total_members > 1,
        "description": annotation("description"),
        "runbook_url": link(&annotation("runbook_url")),
        "dashboard_url": link(&dashboard_url),
        "generator_url": link(&n.generator_url),
        "alertmanager_url": link(&n.alertmanager_url),
        "opened_at": rfc3339(n.opened_at),
        "at": rfc3339(n.at),
        "duration": human_duration(n.at - n.opened_at),
        "labels": n.labels,
        "annotations": n.annotations,
        "incident_key": n.incident_key,
        "is_digest": !n.digest.is_empty(),
        "digest": n.digest,
        "digest_count": n.digest.len(),
    })
}

/// A representative notification, for checking templates and for `router preview`.
pub fn sample(kind: IntentKind) -> Notification {
    let labels: BTreeMap<String, String> = [
        ("alertname", "HighErrorRate"),
        ("cluster", "prod"),
        ("namespace", "shop"),
        ("service", "checkout"),
        ("severity", "critical"),
        ("team", "payments"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let annotations: BTreeMap<String, String> = [
        ("summary", "checkout answers 12% of requests with 5xx."),
        (
            "description",
            "More than 5% of the HTTP requests to checkout fail, across all its pods.",
        ),
        ("runbook_url", "https://runbooks.example/HighErrorRate"),
        ("dashboard", "/d/stackgen-services?var-service=checkout"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Notification {
        idempotency_key: "0f3a9c2e7b1d4a65c8e2f0b9a7d3c1e5".into(),
        kind,
        incident_key: "payments/checkout/HighErrorRate".into(),
        episode_key: "8c1e5f0a3b7d9e2c4a6f8b0d2e4c6a8f".into(),
        team: "payments".into(),
        service: "checkout".into(),
        alertname: "HighErrorRate".into(),
        severity: Severity::Critical,
        status: AlertStatus::of(kind),
        opened_at: 1_795_400_519_000,
        at: if kind == IntentKind::Resolved {
            1_795_404_419_000
        } else {
            1_795_400_519_000
        },
        firing_members: if kind == IntentKind::Resolved { 0 } else { 12 },
        total_members: 40,
        members: (1..=12)
            .map(|i| format!("pod=checkout-7d9f8b6c5-{i:02}"))
            .collect(),
        labels,
        annotations,
        annotations_vary: false,
        generator_url: "http://prometheus.example:9090/graph?g0.expr=...".into(),
        alertmanager_url: "http://alertmanager.example:9093".into(),
        signals: Vec::new(),
        by: matches!(kind, IntentKind::Acknowledged | IntentKind::Unacknowledged)
            .then(|| "dana".to_string()),
        digest: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_what_is_wrong_with_which_service_and_how_badly() {
        let t = defaults();
        let opened = sample(IntentKind::Opened);
        let title = t.render("title", &opened).expect("renders");
        assert!(
            title.contains("HighErrorRate")
                && title.contains("checkout")
                && title.contains("CRITICAL"),
            "{title}"
        );
        let text = t.render("text", &opened).expect("renders");
        assert!(text.contains("12 of 40"), "{text}");
        assert!(
            text.contains("pod=checkout-7d9f8b6c5-01") && text.contains("and 7 more"),
            "{text}"
        );
        assert!(
            text.contains("https://runbooks.example/HighErrorRate"),
            "{text}"
        );
        assert!(
            text.contains("Alertmanager: http://alertmanager.example:9093"),
            "{text}"
        );
        let resolved = t
            .render("title", &sample(IntentKind::Resolved))
            .expect("renders");
        assert!(
            resolved.starts_with("RESOLVED") && resolved.contains("1h 5m"),
            "{resolved}"
        );
    }

    #[test]
    fn html_escapes_and_strict_mode_refuses_unknown_variables() {
        let mut n = sample(IntentKind::Opened);
        n.annotations
            .insert("summary".into(), "<script>alert(1)</script>".into());
        let html = defaults().render("html", &n).expect("renders");
        assert!(
            !html.contains("<script>") && html.contains("&lt;script&gt;"),
            "{html}"
        );
        let bad = BTreeMap::from([("title".to_string(), "{{servcie}} is down".to_string())]);
        let err = Templates::new(TextFlavour::SlackMrkdwn, Mentions::None, &bad, None)
            .expect_err("strict");
        assert!(
            err.contains("template `title`") && err.contains("servcie"),
            "{err}"
        );
    }

    #[test]
    fn each_chat_kind_gets_links_in_its_own_markup() {
        let n = sample(IntentKind::Opened);
        let text = |flavour: TextFlavour| {
            Templates::new(flavour, Mentions::None, &BTreeMap::new(), None)
                .and_then(|t| t.render("text", &n))
                .expect("renders")
        };
        assert!(
            text(TextFlavour::SlackMrkdwn)
                .contains("<https://runbooks.example/HighErrorRate|Runbook>")
        );
        assert!(
            text(TextFlavour::Markdown)
                .contains("[Runbook](https://runbooks.example/HighErrorRate)")
        );
        assert!(
            text(TextFlavour::Plain).contains("Runbook: https://runbooks.example/HighErrorRate")
        );
    }

    #[test]
    fn one_member_s_summary_among_many_reads_as_an_example() {
        let mut n = sample(IntentKind::Opened);
        let render = |n: &Notification, flavour: TextFlavour, part: &str| {
            Templates::new(flavour, Mentions::None, &BTreeMap::new(), None)
                .and_then(|t| t.render(part, n))
                .expect("renders")
        };
        for (kind, part) in [
            (TextFlavour::Plain, "text"),
            (TextFlavour::SlackMrkdwn, "text"),
            (TextFlavour::Markdown, "text"),
            (TextFlavour::Plain, "html"),
        ] {
            assert!(
                !render(&n, kind, part).contains("For example"),
                "{kind:?} {part}"
            );
        }
        n.annotations_vary = true;
        for (kind, part) in [
            (TextFlavour::Plain, "text"),
            (TextFlavour::SlackMrkdwn, "text"),
            (TextFlavour::Markdown, "text"),
            (TextFlavour::Plain, "html"),
        ] {
            let text = render(&n, kind, part);
            assert!(
                text.contains("For example: ") && text.contains("checkout answers 12%"),
                "{kind:?} {part}: {text}"
            );
        }
        n.total_members = 1;
        assert!(!render(&n, TextFlavour::Plain, "text").contains("For example"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(45_000), "45s");
        assert_eq!(human_duration(200_000), "3m 20s");
        assert_eq!(human_duration(3_900_000), "1h 5m");
        assert_eq!(human_duration(90_000_000), "1d 1h");
    }

    #[test]
    fn an_incident_of_several_signals_names_them() {
        let mut n = sample(IntentKind::Updated);
        n.signals = vec![
            crate::router::notification::Signal {
                alertname: "ServiceTargetsDown".into(),
                severity: Severity::Critical,
                firing_members: 12,
                total_members: 40,
            },
            crate::router::notification::Signal {
                alertname: "ServiceHighErrorRate".into(),
                severity: Severity::Warning,
                firing_members: 31,
                total_members: 40,
            },
        ];
        let title = defaults().render("title", &n).expect("renders");
        assert_eq!(
            title,
            "[CRITICAL] checkout (payments): 2 signals: ServiceTargetsDown 12 of 40, ServiceHighErrorRate 31 of 40, updated"
        );
        for flavour in [
            TextFlavour::Plain,
            TextFlavour::Markdown,
            TextFlavour::SlackMrkdwn,
        ] {
            let text = Templates::new(flavour, Mentions::None, &BTreeMap::new(), None)
                .and_then(|t| t.render("text", &n))
                .expect("renders");
            assert!(
                text.contains(
                    "2 signals: ServiceTargetsDown 12 of 40, ServiceHighErrorRate 31 of 40."
                ),
                "{flavour:?}: {text}"
            );
        }
    }

    /// Mention syntaxes of Slack, Mattermost and Google Chat, and links that try to carry one.
    const MENTIONS: &[&str] = &[
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U024BE7LH>",
        "<!subteam^SAZ94GDB8>",
        "@channel",
        "@here",
        "@all",
        "@everyone",
        "@oncall",
        "<users/all>",
        "<users/1234>",
        "https://x|Runbook> <!channel",
        "<https://evil.example|click>",
    ];

    fn hostile_notification(rng: &mut fastrand::Rng) -> Notification {
        let mut text = || -> String {
            (0..rng.usize(1..5))
                .map(|_| {
                    let piece = MENTIONS[rng.usize(..MENTIONS.len())];
                    if rng.bool() {
                        format!("{piece} ")
                    } else {
                        piece.to_string()
                    }
                })
                .collect()
        };
        let mut n = sample(IntentKind::Opened);
        n.annotations.insert("summary".into(), text());
        n.annotations.insert("description".into(), text());
        n.annotations.insert(
            "runbook_url".into(),
            format!("https://runbooks.example/{}", text()),
        );
        n.alertname = text();
        n.members = vec![text(), text()];
        n
    }

    /// What would notify people in each service's text: its mention syntax, unescaped.
    fn notifies(kind: crate::router::destination::DestinationKind, text: &str) -> Option<String> {
        use crate::router::destination::DestinationKind as K;
        let found = |patterns: &[&str]| {
            patterns
                .iter()
                .find(|p| text.contains(**p))
                .map(|p| p.to_string())
        };
        match kind {
            K::Slack => found(&["<!", "<@", "@channel", "@here", "@everyone"]),
            K::Mattermost => found(&["@channel", "@here", "@all", "@everyone", "@oncall"]),
            K::GoogleChat => found(&["<users/", "@all"]),
            _ => None,
        }
    }

    #[test]
    fn text_from_alerts_never_mentions_anybody_in_any_chat() {
        use crate::router::destination::DestinationKind;
        let mut rng = fastrand::Rng::with_seed(14);
        for kind in [
            DestinationKind::Slack,
            DestinationKind::Mattermost,
            DestinationKind::GoogleChat,
        ] {
            let info = kind.info();
            let templates =
                Templates::new(info.text_flavour, info.mentions, &BTreeMap::new(), None)
                    .expect("default templates");
            for _ in 0..300 {
                let n = hostile_notification(&mut rng);
                for part in ["title", "text"] {
                    let text = templates.render(part, &n).expect("renders");
                    assert_eq!(notifies(kind, &text), None, "{kind:?} {part}: {text}");
                }
            }
        }
    }

    #[test]
    fn a_template_of_the_team_may_still_mention_on_purpose() {
        let overrides = BTreeMap::from([("text".to_string(), "<!here> {{summary}}".to_string())]);
        let templates = Templates::new(TextFlavour::SlackMrkdwn, Mentions::Slack, &overrides, None)
            .expect("ok");
        let mut n = sample(IntentKind::Opened);
        n.annotations
            .insert("summary".into(), "<!channel> & co".into());
        assert_eq!(
            templates.render("text", &n).expect("renders"),
            "<!here> &lt;!channel&gt; &amp; co"
        );
    }

    #[test]
    fn only_http_links_are_links_and_nothing_breaks_out_of_one() {
        assert_eq!(link("javascript:alert(1)"), "");
        assert_eq!(link(" JavaScript:alert(1)"), "");
        assert_eq!(link("data:text/html,<b>x</b>"), "");
        assert_eq!(link("/d/uid"), "");
        assert_eq!(
            link("https://x.example/a|Runbook> <!channel>"),
            "https://x.example/a%7CRunbook%3E%20%3C!channel%3E"
        );
        assert_eq!(
            link("HTTPS://x.example/r?a=1&b=(2)"),
            "HTTPS://x.example/r?a=1&b=%282%29"
        );
        let long = format!("https://x.example/{}", "a".repeat(LINK_MAX_BYTES));
        assert_eq!(link(&long), "");
        assert_eq!(
            link("https://bank.example@evil.example/@me"),
            "https://bank.example%40evil.example/%40me"
        );
    }

    #[test]
    fn links_reach_every_chat_intact_where_mentions_are_defused() {
        use crate::router::destination::DestinationKind;
        let mut n = sample(IntentKind::Opened);
        n.annotations.insert(
            "runbook_url".into(),
            "https://wiki.example/@oncall/runbook?owner=team@example.com".into(),
        );
        let expected = "https://wiki.example/%40oncall/runbook?owner=team%40example.com";
        for kind in DestinationKind::ALL {
            let info = kind.info();
            let templates =
                Templates::new(info.text_flavour, info.mentions, &BTreeMap::new(), None)
                    .expect("default templates");
            let text = templates.render("text", &n).expect("renders");
            assert!(text.contains(expected), "{kind:?}: {text}");
        }
    }
}
