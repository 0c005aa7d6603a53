//! The incidents page: open incidents by team and service, one incident's timeline, the
//! silences, and the forms that acknowledge, silence and end silences. Server-rendered HTML with
//! one small stylesheet, no script; readable on a phone.
//!
//! Pure: the views, the person, the form token and the time are arguments. Every text from an
//! alert or a person is escaped ([`escape`]); links keep only `http(s)` URLs.

use std::fmt::Write as _;

use super::alert::Millis;
use super::engine::IncidentView;
use super::silence::Silence;
use super::template::link;

/// The page's stylesheet, served at [`STYLE_PATH`] (the Content-Security-Policy allows no other).
pub const STYLESHEET: &str = include_str!("../../stack/router/page.css");
pub const STYLE_PATH: &str = "/incidents/style.css";

/// What the page's policy allows: its own stylesheet and forms, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text as a URL's query value.
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn time(millis: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The incidents listed: only those of a team, a service, a severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub team: Option<String>,
    pub service: Option<String>,
    pub severity: Option<String>,
}

impl Filter {
    fn keeps(&self, view: &IncidentView) -> bool {
        let i = &view.incident;
        let is = |wanted: &Option<String>, value: &str| {
            wanted.as_deref().is_none_or(|w| w.is_empty() || w == value)
        };
        is(&self.team, &i.team)
            && is(&self.service, &i.service)
            && is(&self.severity, i.severity.as_str())
    }
}

/// Who looks at the page, and the token their forms carry.
pub struct Viewer<'a> {
    pub name: &'a str,
    /// Teams whose incidents they may act on.
    pub responds_for: &'a [String],
    /// Proves a form was served to them (`csrf` field).
    pub form_token: &'a str,
    /// Where Grafana is, for dashboards annotated by path (`/d/uid`).
    pub grafana_url: Option<&'a str>,
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head><body>",
        escape(title)
    );
}

fn nav(out: &mut String, viewer: &Viewer) {
    let _ = write!(
        out,
        "<header><a href=\"/incidents\">Incidents</a> <a href=\"/incidents/silences\">Silences</a> \
         <span class=\"who\">{}</span></header>",
        escape(viewer.name)
    );
}

/// A form posting `fields` (name, value) to `action`, with the viewer's token, as one button.
fn button(out: &mut String, action: &str, fields: &[(&str, &str)], label: &str, viewer: &Viewer) {
    let _ = write!(out, "<form method=\"post\" action=\"{}\">", escape(action));
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">{}</button></form>",
        escape(viewer.form_token),
        escape(label)
    );
}

/// The open incidents, `filter`ed, most severe and oldest first.
pub fn incidents(views: &[IncidentView], filter: &Filter, viewer: &Viewer) -> String {
    let mut out = String::with_capacity(4096 + views.len() * 512);
    head(&mut out, "Incidents");
    nav(&mut out, viewer);
    let mut shown: Vec<&IncidentView> = views.iter().filter(|v| filter.keeps(v)).collect();
    shown.sort_by(|a, b| {
        b.incident
            .severity
            .cmp(&a.incident.severity)
            .then(a.incident.opened_at.cmp(&b.incident.opened_at))
            .then(a.incident.key.cmp(&b.incident.key))
    });
    let _ = write!(
        out,
        "<main><h1>Open incidents <small>{} of {}</small></h1>",
        shown.len(),
        views.len()
    );
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or(""));
    let _ = write!(
        out,
        "<form class=\"filter\" method=\"get\" action=\"/incidents\">\
         <label>Team <input name=\"team\" value=\"{}\"></label>\
         <label>Service <input name=\"service\" value=\"{}\"></label>\
         <label>Severity <select name=\"severity\">",
        value(&filter.team),
        value(&filter.service)
    );
    for severity in ["", "critical", "warning", "info"] {
        let selected = if filter.severity.as_deref().unwrap_or("") == severity {
            " selected"
        } else {
            ""
        };
        let label = if severity.is_empty() { "any" } else { severity };
        let _ = write!(
            out,
            "<option value=\"{severity}\"{selected}>{label}</option>"
        );
    }
    out.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    out.push_str(
        "<table class=\"incidents\"><thead><tr><th>Severity</th><th>Team</th><th>Service</th>\
         <th>Signals</th><th>Members</th><th>Opened</th><th>On it</th><th></th></tr></thead><tbody>",
    );
    for view in shown {
        let i = &view.incident;
        let mut signals: Vec<&str> = view
            .members
            .iter()
            .filter(|m| m.member.firing)
            .map(|m| {
                if m.member.alertname.is_empty() {
                    i.alertname.as_str()
                } else {
                    m.member.alertname.as_str()
                }
            })
            .collect();
        signals.sort_unstable();
        signals.dedup();
        if signals.is_empty() {
            signals.push(&i.alertname);
        }
        let on_it = match &i.acknowledged {
            Some(ack) => format!("acknowledged by {}", escape(&ack.by)),
            None if i.held => "held".to_string(),
            None => String::new(),
        };
        let _ = write!(
            out,
            "<tr class=\"{severity}\"><td><span class=\"severity\">{severity}</span></td><td>{team}</td>\
             <td>{service}</td><td>{signals}</td><td>{firing} of {total}</td><td>{opened}</td><td>{on_it}</td>\
             <td><a href=\"/incidents/view?key={key}\">Timeline</a></td></tr>",
            severity = i.severity.as_str(),
            team = escape(&i.team),
            service = escape(if i.service.is_empty() {
                "-"
            } else {
                &i.service
            }),
            signals = escape(&signals.join(", ")),
            firing = view.firing_members,
            total = view.total_members,
            opened = time(i.opened_at),
            key = query_value(&i.key),
        );
    }
    out.push_str("</tbody></table></main></body></html>\n");
    out
}

/// One incident: what it is, its links, who is on it, its timeline, and the forms to act.
pub fn incident(view: &IncidentView, silences: &[Silence], viewer: &Viewer, now: Millis) -> String {
    let i = &view.incident;
    let mut out = String::with_capacity(8192);
    head(&mut out, &format!("{} on {}", i.alertname, i.service));
    nav(&mut out, viewer);
    let _ = write!(
        out,
        "<main><h1><span class=\"severity {severity}\">{severity}</span> {alert} on {service} <small>({team})</small></h1>\
         <p>{firing} of {total} members firing, opened {opened}.</p>",
        severity = i.severity.as_str(),
        alert = escape(&i.alertname),
        service = escape(if i.service.is_empty() {
            "-"
        } else {
            &i.service
        }),
        team = escape(&i.team),
        firing = view.firing_members,
        total = view.total_members,
        opened = time(i.opened_at),
    );
    if let Some(summary) = i.annotations.get("summary") {
        let _ = write!(out, "<p class=\"summary\">{}</p>", escape(summary));
    }
    out.push_str("<p class=\"links\">");
    let dashboard = i
        .annotations
        .get("dashboard")
        .map(|d| match viewer.grafana_url {
            Some(base) if d.starts_with('/') => format!("{}{d}", base.trim_end_matches('/')),
            _ => d.clone(),
        });
    for (text, url) in [
        ("Runbook", i.annotations.get("runbook_url").cloned()),
        ("Dashboard", dashboard),
        ("Prometheus", Some(i.generator_url.clone())),
        ("Alertmanager", Some(i.alertmanager_url.clone())),
    ] {
        let href = link(url.as_deref().unwrap_or(""));
        if !href.is_empty() {
            let _ = write!(out, "<a href=\"{}\">{text}</a> ", escape(&href));
        }
    }
    out.push_str("</p>");
    let may_act = viewer.responds_for.contains(&i.team);
    match &i.acknowledged {
        Some(ack) => {
            let _ = write!(
                out,
                "<p class=\"acknowledged\">Acknowledged by {} at {}.</p>",
                escape(&ack.by),
                time(ack.at)
            );
            if may_act {
                button(
                    &mut out,
                    "/incidents/unacknowledge",
                    &[("incident", &i.key)],
                    "Unacknowledge",
                    viewer,
                );
            }
        }
        None if may_act => {
            button(
                &mut out,
                "/incidents/acknowledge",
                &[("incident", &i.key)],
                "Acknowledge",
                viewer,
            );
        }
        None => {}
    }
    let matching: Vec<&Silence> = silences
        .iter()
        .filter(|s| s.ends_at > now && s.matches(&i.labels))
        .collect();
    for silence in &matching {
        let _ = write!(
            out,
            "<p class=\"silenced\">Silenced by {} from {} to {}: {}</p>",
            escape(&silence.created_by),
            time(silence.starts_at),
            time(silence.ends_at),
            escape(&silence.comment)
        );
    }
    if may_act {
        silence_form(&mut out, i, viewer);
    }
    out.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    let mut events: Vec<(Millis, String)> = vec![(i.opened_at, "opened".to_string())];
    for delivery in &view.deliveries {
        let who = delivery
            .by
            .as_deref()
            .map(|by| format!(" ({})", escape(by)))
            .unwrap_or_default();
        let error = delivery
            .last_error
            .as_deref()
            .map(|e| format!(": {}", escape(e)))
            .unwrap_or_default();
        events.push((
            delivery.at,
            format!(
                "{kind}{who} to {destination}: {state} after {attempts} attempt(s){error}",
                kind = escape(&delivery.kind),
                destination = escape(&delivery.destination),
                state = delivery.state.as_str(),
                attempts = delivery.attempts,
            ),
        ));
    }
    if let Some(ack) = &i.acknowledged {
        events.push((ack.at, format!("acknowledged by {}", escape(&ack.by))));
    }
    for silence in &matching {
        events.push((
            silence.created_at,
            format!("silenced by {}", escape(&silence.created_by)),
        ));
    }
    events.sort_by_key(|(at, _)| *at);
    for (at, text) in events {
        let _ = write!(out, "<li><time>{}</time> {text}</li>", time(at));
    }
    out.push_str("</ol><h2>Members</h2><ul class=\"members\">");
    for member in &view.members {
        let m = &member.member;
        let _ = write!(
            out,
            "<li class=\"{}\">{} {}</li>",
            if m.firing { "firing" } else { "resolved" },
            escape(if m.alertname.is_empty() {
                &i.alertname
            } else {
                &m.alertname
            }),
            escape(&m.identity)
        );
    }
    out.push_str("</ul></main></body></html>\n");
    out
}

/// A silence of this incident's team and service, for a while, with a reason.
fn silence_form(out: &mut String, i: &super::dedup::Incident, viewer: &Viewer) {
    // Quoted as the matchers read them back (JSON string syntax), whatever the names hold.
    let quoted = |value: &str| serde_json::to_string(value).unwrap_or_default();
    let mut matchers = format!("team={}", quoted(&i.team));
    if !i.service.is_empty() {
        let _ = write!(matchers, "\nservice={}", quoted(&i.service));
    }
    let _ = write!(
        out,
        "<details><summary>Silence</summary><form class=\"silence\" method=\"post\" action=\"/incidents/silence\">\
         <label>Matchers, one a line <textarea name=\"matchers\" rows=\"3\">{}</textarea></label>\
         <label>For <input name=\"duration\" value=\"2h\"></label>\
         <label>Starting (RFC 3339, empty: now) <input name=\"starts_at\" value=\"\"></label>\
         <label>Why <input name=\"comment\" required></label>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Silence</button></form></details>",
        escape(&matchers),
        escape(viewer.form_token)
    );
}

/// The silences, in force and to come first, with a button to end each the viewer may end.
pub fn silences(silences: &[Silence], viewer: &Viewer, now: Millis) -> String {
    let mut out = String::with_capacity(4096);
    head(&mut out, "Silences");
    nav(&mut out, viewer);
    out.push_str("<main><h1>Silences</h1><table class=\"silences\"><thead><tr><th>Matchers</th><th>From</th><th>To</th><th>By</th><th>Why</th><th></th></tr></thead><tbody>");
    for silence in silences {
        let state = if silence.in_force(now) {
            "in-force"
        } else if silence.starts_at > now {
            "pending"
        } else {
            "ended"
        };
        let _ = write!(
            out,
            "<tr class=\"{state}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            escape(&silence.matchers.join(", ")),
            time(silence.starts_at),
            time(silence.ends_at),
            escape(&silence.created_by),
            escape(&silence.comment)
        );
        let may_end = silence
            .team()
            .is_some_and(|team| viewer.responds_for.contains(&team));
        if state != "ended" && may_end {
            button(
                &mut out,
                "/incidents/unsilence",
                &[("silence", &silence.id)],
                "End",
                viewer,
            );
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::router::dedup::{Incident, Member};
    use crate::router::engine::{DeliveryView, MemberView};
    use crate::router::store::DeliveryState;

    fn view(team: &str, service: &str, summary: &str) -> IncidentView {
        let incident: Incident = serde_json::from_value(json!({
            "key": format!("{team}/{service}"),
            "team": team,
            "service": service,
            "alertname": "HighErrorRate",
            "labels": {"team": team, "service": service},
            "annotations": {"summary": summary, "runbook_url": "javascript:alert(1)", "dashboard": "https://grafana.example/d/x?a=1&b=\"2\""},
            "generator_url": "http://prometheus.example/graph",
            "status": {"state": "open"},
            "severity": "critical",
            "notified_severity": "critical",
            "opened_at": 1_796_083_200_000_i64,
            "last_notified_at": 1_796_083_200_000_i64,
            "sequence": 1,
            "episode": 1,
        }))
        .expect("an incident");
        let member: Member = serde_json::from_value(json!({
            "identity": "pod=<img src=x onerror=alert(1)>",
            "alertname": "HighErrorRate",
            "severity": "critical",
            "firing": true,
            "starts_at": 0,
            "ends_at": null,
            "last_seen": 0,
        }))
        .expect("a member");
        IncidentView {
            firing_members: 1,
            total_members: 1,
            incident,
            members: vec![MemberView {
                fingerprint: "1".into(),
                member,
            }],
            deliveries: vec![DeliveryView {
                id: "d".into(),
                destination: "payments/chat".into(),
                kind: "opened".into(),
                at: 1_796_083_200_000,
                by: None,
                state: DeliveryState::Dead,
                attempts: 3,
                last_error: Some("<script>boom</script>".into()),
            }],
        }
    }

    #[test]
    fn text_from_alerts_and_people_cannot_change_the_page() {
        let hostile = view(
            "payments",
            "checkout\"><script>x()</script>",
            "<b>bold</b> & \"quoted\"",
        );
        let teams = vec!["payments".to_string()];
        let viewer = Viewer {
            name: "dana<script>",
            responds_for: &teams,
            form_token: "t\"oken",
            grafana_url: None,
        };
        for html in [
            incidents(std::slice::from_ref(&hostile), &Filter::default(), &viewer),
            incident(&hostile, &[], &viewer, 0),
        ] {
            assert!(
                !html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"),
                "{html}"
            );
            assert!(!html.contains("javascript:"), "only http(s) links");
            assert!(!html.contains("t\"oken"));
        }
        let page = incident(&hostile, &[], &viewer, 0);
        assert!(
            page.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"),
            "{page}"
        );
        assert!(
            page.contains("href=\"https://grafana.example/d/x?a=1&amp;b=%222%22\""),
            "{page}"
        );
        assert!(page.contains("dead after 3 attempt(s): &lt;script&gt;"));
        assert!(
            page.contains("Acknowledge</button>"),
            "a responder of payments may act"
        );
    }

    #[test]
    fn filters_and_permissions_shape_the_list() {
        let views = [
            view("payments", "checkout", "a"),
            view("search", "api", "b"),
        ];
        let none: Vec<String> = Vec::new();
        let viewer = Viewer {
            name: "vic",
            responds_for: &none,
            form_token: "t",
            grafana_url: Some("https://grafana.example"),
        };
        let filter = Filter {
            team: Some("search".into()),
            ..Filter::default()
        };
        let html = incidents(&views, &filter, &viewer);
        assert!(
            html.contains("<small>1 of 2</small>")
                && html.contains(">api<")
                && !html.contains(">checkout<")
        );
        let mut by_path = view("payments", "checkout", "a");
        by_path.incident.annotations.insert(
            "dashboard".into(),
            "/d/stackgen-services?var-service=checkout".into(),
        );
        let page = incident(&by_path, &[], &viewer, 0);
        assert!(
            !page.contains("<form method=\"post\""),
            "a viewer gets no form"
        );
        assert!(
            page.contains(
                "href=\"https://grafana.example/d/stackgen-services?var-service=checkout\""
            ),
            "{page}"
        );
        assert_eq!(
            query_value("payments/checkout a&b"),
            "payments%2Fcheckout%20a%26b"
        );
    }
}
