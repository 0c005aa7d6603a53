//! The path around the router, in the real Alertmanager with no router running: the alerts that
//! say the router cannot notify anybody reach the platform team's Slack and PagerDuty from
//! Alertmanager alone (by severity, with alert text defused), a team's alert of the same name does
//! not, and Watchdog pings the external dead man's switch.

use std::process::Command;

use serde_json::{Value, json};

use yaml_rust2::Yaml;

use super::e2e::{
    ALERTMANAGER_PKG, DEADLINE, key, load_yaml, map_at, rewrite_strings, save_yaml,
    start_alertmanagers,
};
use super::router::{Sink, TOKEN};
use super::support::{free_port, render_to_temp, run_ok, tool, wait_explained};

const SPEC: &str = "tests/fixtures/specs/direct-path.yaml";
const ROUTING_KEY: &str = "R0UTINGKEYDIRECT000000000000000";
const PING_URL: &str = "https://hc-ping.example.com/2f9a6c1e-5b7d-4e0a-9c3f-direct";
/// What a hostile alert label or annotation could carry to notify a whole channel.
const MENTIONS: &str = "<!channel> @here <https://evil.example|click>";

fn alert(name: &str, severity: &str, extra: &[(&str, &str)]) -> Value {
    let now = chrono::Utc::now();
    let mut labels = json!({
        "alertname": name,
        "severity": severity,
        "cluster": "direct",
        "namespace": "monitoring",
    });
    for (key, value) in extra {
        labels[*key] = json!(value);
    }
    json!({
        "labels": labels,
        "annotations": {
            "summary": format!("{name} {MENTIONS}"),
            "description": format!("Nobody is notified through the router. {MENTIONS}"),
            "runbook_url": "https://github.com/stackgen/stackgen/blob/main/docs/runbooks.md#stackgenrouterdown",
        },
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
    })
}

/// Every text field of the Slack messages `sink` accepted, one string per message.
fn slack_texts(sink: &Sink) -> Vec<String> {
    sink.received()
        .iter()
        .filter(|r| r.answered < 300)
        .map(|r| {
            let attachment = &r.body["attachments"][0];
            format!(
                "{}\n{}",
                attachment["title"].as_str().unwrap_or_default(),
                attachment["text"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn with_the_router_down_its_own_alerts_reach_the_platform_team_through_alertmanager_alone() {
    let (tmp, out) = render_to_temp(SPEC);
    let dir = tmp.path();
    let slack = Sink::start(200);
    let pagerduty = Sink::start(202);
    let dead_mans_switch = Sink::start(200);
    for (path, value) in [
        ("router/token", TOKEN.to_string()),
        (
            "destinations/platform-alerting/slack-url",
            format!("http://127.0.0.1:{}/services/T000/B000/XXXX", slack.port),
        ),
        (
            "destinations/platform-alerting/pagerduty-routing-key",
            ROUTING_KEY.to_string(),
        ),
    ] {
        let file = dir.join("etc/alertmanager/secrets").join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("secret dir");
        std::fs::write(&file, value).expect("write secret");
    }
    // PagerDuty's and the dead man's switch's endpoints on loopback.
    let config_path = out.join("alertmanager/alertmanager.yml");
    let mut config = load_yaml(&config_path);
    let ping = format!("http://127.0.0.1:{}/ping", dead_mans_switch.port);
    rewrite_strings(&mut config, &|text| {
        if text == PING_URL {
            ping.clone()
        } else {
            text.to_string()
        }
    });
    let pagerduty_url = format!("http://127.0.0.1:{}/v2/enqueue", pagerduty.port);
    let mut pagers = 0;
    if let Yaml::Array(receivers) = &mut map_at(&mut config, &[])[&key("receivers")] {
        for receiver in receivers {
            let Yaml::Hash(receiver) = receiver else {
                continue;
            };
            let Some(Yaml::Array(configs)) = receiver.get_mut(&key("pagerduty_configs")) else {
                continue;
            };
            for pager in configs {
                if let Yaml::Hash(pager) = pager {
                    pager.insert(key("url"), Yaml::String(pagerduty_url.clone()));
                    pagers += 1;
                }
            }
        }
    }
    assert_eq!(pagers, 1, "one receiver pages: the critical one");
    save_yaml(&config_path, &config);

    // Nothing listens on the router's port: the router is down.
    let alertmanager = start_alertmanagers(&out, dir, 1, free_port()).remove(0);
    let alerts = json!([
        alert("StackgenRouterDown", "critical", &[]),
        alert("StackgenRouterQueueBackingUp", "warning", &[]),
        alert("Watchdog", "info", &[]),
        // A team's rule of the same name: it carries its team, so it stays on the router's path.
        alert(
            "StackgenRouterUnroutable",
            "critical",
            &[("team", "payments"), ("namespace", "shop")]
        ),
    ]);
    let posted = ureq::post(&alertmanager.url("/api/v2/alerts"))
        .header("Content-Type", "application/json")
        .send(alerts.to_string().as_bytes());
    assert!(
        posted.is_ok(),
        "posting alerts: {posted:?}\n{}",
        alertmanager.log()
    );

    let explain = || {
        format!(
            "slack: {:#?}\npagerduty: {:#?}\nping: {}\n{}",
            slack_texts(&slack),
            pagerduty
                .received()
                .iter()
                .map(|r| r.body.clone())
                .collect::<Vec<_>>(),
            dead_mans_switch.received().len(),
            alertmanager.log()
        )
    };
    wait_explained(
        "Slack to get the critical and the warning, PagerDuty the critical, the switch a ping",
        DEADLINE,
        || {
            let texts = slack_texts(&slack);
            texts.iter().any(|t| t.contains("StackgenRouterDown"))
                && texts
                    .iter()
                    .any(|t| t.contains("StackgenRouterQueueBackingUp"))
                && !pagerduty.received().is_empty()
                && !dead_mans_switch.received().is_empty()
        },
        explain,
    );

    for text in slack_texts(&slack) {
        assert!(text.contains("[FIRING]"), "{text}");
        for mention in ["<!channel>", "@here", "<https://"] {
            assert!(!text.contains(mention), "{mention} reached Slack: {text}");
        }
        assert!(
            text.contains("&lt;!channel&gt; @\u{200b}here &lt;https://evil.example|click&gt;"),
            "{text}"
        );
        assert!(
            !text.contains("payments"),
            "a team's alert went direct: {text}"
        );
    }
    let pages: Vec<Value> = pagerduty
        .received()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    for page in &pages {
        assert_eq!(page["routing_key"], ROUTING_KEY, "{page:#}");
        assert_eq!(page["event_action"], "trigger", "{page:#}");
        let summary = page["payload"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.contains("StackgenRouterDown"),
            "only the critical alert pages: {page:#}"
        );
    }
    let ping = &dead_mans_switch.received()[0];
    assert!(
        ping.request_line.starts_with("POST /ping"),
        "{}",
        ping.request_line
    );
    assert_eq!(ping.body["commonLabels"]["alertname"], "Watchdog");
}

/// `amtool config routes test` on the rendered route tree: the direct receivers take the router's
/// health alerts of no team, by severity; the same names with a team go to the router; Watchdog
/// goes to both the dead man's switch and the router's heartbeat.
#[test]
fn the_route_tree_sends_only_the_routers_health_around_it() {
    let (_tmp, out) = render_to_temp(SPEC);
    let amtool = tool("amtool", ALERTMANAGER_PKG);
    let config = out.join("alertmanager/alertmanager.yml");
    let route = |receivers: &str, labels: &[&str]| {
        run_ok(
            Command::new(&amtool)
                .args(["config", "routes", "test"])
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--verify.receivers={receivers}"))
                .args(labels),
        );
    };
    route(
        "platform-direct-critical",
        &[
            "alertname=StackgenRouterDown",
            "severity=critical",
            "cluster=direct",
        ],
    );
    route(
        "platform-direct-warning-info",
        &["alertname=StackgenRouterQueueBackingUp", "severity=warning"],
    );
    route(
        "platform-direct-critical",
        &[
            "alertname=AlertmanagerNotificationsFailing",
            "severity=critical",
            "integration=webhook",
        ],
    );
    route(
        "stackgen-router",
        &[
            "alertname=StackgenRouterDown",
            "severity=critical",
            "team=payments",
        ],
    );
    route(
        "stackgen-router",
        &[
            "alertname=StackgenRouterDeliveriesFailing",
            "severity=critical",
            "team=payments",
        ],
    );
    route(
        "stackgen-router",
        &["alertname=KubeNodeNotReady", "severity=critical"],
    );
    route(
        "dead-mans-switch,stackgen-router-heartbeat",
        &["alertname=Watchdog", "severity=info"],
    );
}
