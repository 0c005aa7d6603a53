//! The path around the router: the alerts that say the router cannot notify anybody (it is down,
//! missing, backed up, routing nowhere, or Alertmanager cannot reach it) go from Alertmanager
//! straight to the platform team's destinations that Alertmanager delivers to itself, so they
//! never depend on what they report. Also the optional external dead man's switch for Watchdog.
//!
//! Pure: the spec in, Alertmanager routes, receivers and the Secret keys to mount out.

use serde_json::{Value, json};

use crate::router::dedup::Severity;
use crate::spec::{Destination, SecretRef, Spec, Team};

/// The default alerts that mean notifications through the router are not getting out. Matched
/// with `team=""`: rules of team files always carry their team, so none can take this path.
pub const ROUTER_HEALTH_ALERTS: [&str; 5] = [
    "StackgenRouterDown",
    "StackgenRouterMissing",
    "StackgenRouterQueueBackingUp",
    "StackgenRouterUnroutable",
    "AlertmanagerNotificationsFailing",
];

/// The destination kinds Alertmanager delivers to by itself, with the secret read from a file
/// (the Alertmanager of the stack and Debian's 0.25 alike).
pub const DIRECT_KINDS: &str = "slack, mattermost, email, pagerduty or opsgenie";

/// Where Alertmanager mounts the Secret keys the direct receivers read.
pub const SECRETS_DIR: &str = "/etc/alertmanager/secrets/destinations";

/// The receiver of the external dead man's switch.
const DEAD_MANS_SWITCH: &str = "dead-mans-switch";

/// The name of the platform team's quiet hours in Alertmanager's `time_intervals`.
const QUIET_HOURS: &str = "platform-quiet-hours";

/// What the rendered Alertmanager configuration gets from the direct path.
#[derive(Debug, Default)]
pub struct DirectPath {
    /// The first route: Watchdog to the dead man's switch, with `continue`.
    pub dead_mans_switch_routes: Vec<Value>,
    /// Routes placed before the team routes, by severity.
    pub routes: Vec<Value>,
    pub receivers: Vec<Value>,
    /// Alertmanager `time_intervals` the routes name (the platform team's quiet hours).
    pub time_intervals: Vec<Value>,
    /// Whether a receiver uses the chat templates of [`TEMPLATE_FILE`].
    pub uses_templates: bool,
    /// Secret keys the receivers read, mounted under [`SECRETS_DIR`].
    pub secrets: Vec<SecretRef>,
}

/// Severities whose direct alerts go to the same destinations, muted in quiet hours or not.
struct SeverityGroup {
    /// Indexes into the platform team's destinations.
    destinations: Vec<usize>,
    muted: bool,
    severities: Vec<&'static str>,
}

/// The platform team's destinations Alertmanager can deliver to without the router.
pub fn direct_destinations(spec: &Spec) -> Vec<&Destination> {
    platform_team(spec).map_or_else(Vec::new, |team| {
        team.destinations
            .iter()
            .filter(|d| direct_config(spec, d).is_some())
            .collect()
    })
}

fn platform_team(spec: &Spec) -> Option<&Team> {
    let name = spec.router.platform_team.as_deref()?;
    spec.teams.iter().find(|t| t.name == name)
}

/// The file Alertmanager reads a Secret key from.
pub fn secret_file(secret: &SecretRef) -> String {
    format!("{SECRETS_DIR}/{}/{}", secret.secret, secret.key)
}

/// The routes, receivers, time intervals and secrets of the direct path and the dead man's switch.
pub fn direct_path(spec: &Spec) -> DirectPath {
    let mut path = DirectPath::default();
    if let Some(url) = &spec.alertmanager.dead_mans_switch {
        path.dead_mans_switch_routes.push(json!({
            "receiver": DEAD_MANS_SWITCH,
            "matchers": ["alertname=\"Watchdog\""],
            "group_wait": "0s",
            "group_interval": "1m",
            "repeat_interval": "1m",
            "continue": true,
        }));
        path.receivers.push(json!({
            "name": DEAD_MANS_SWITCH,
            "webhook_configs": [{"url": url, "send_resolved": false}],
        }));
    }
    let Some(team) = platform_team(spec) else {
        return path;
    };
    let quiet = !team.quiet_hours.is_empty();
    if quiet {
        path.time_intervals.push(json!({
            "name": QUIET_HOURS,
            "time_intervals": team.quiet_hours.iter().map(|i| i.to_value()).collect::<Vec<_>>(),
        }));
    }
    // Severities taking the same destinations (and the same quiet hours) share a receiver.
    let mut groups: Vec<SeverityGroup> = Vec::new();
    for severity in [Severity::Critical, Severity::Warning, Severity::Info] {
        let chosen: Vec<usize> = (team.destinations.iter().enumerate())
            .filter(|(_, d)| team.takes(d.kind(), severity) && direct_config(spec, d).is_some())
            .map(|(index, _)| index)
            .collect();
        if chosen.is_empty() {
            // Nothing direct takes this severity: such alerts go through the router as any other.
            continue;
        }
        let muted = quiet && severity != Severity::Critical;
        match groups
            .iter_mut()
            .find(|g| g.destinations == chosen && g.muted == muted)
        {
            Some(group) => group.severities.push(severity.as_str()),
            None => groups.push(SeverityGroup {
                destinations: chosen,
                muted,
                severities: vec![severity.as_str()],
            }),
        }
    }
    let single = groups.len() == 1;
    for SeverityGroup {
        destinations: chosen,
        muted,
        severities,
    } in groups
    {
        let receiver = if single {
            "platform-direct".to_string()
        } else {
            format!("platform-direct-{}", severities.join("-"))
        };
        let severity = match severities.as_slice() {
            [one] => format!("severity=\"{one}\""),
            many => format!("severity=~\"{}\"", many.join("|")),
        };
        let mut route = json!({
            "receiver": receiver,
            "matchers": [
                format!("alertname=~\"{}\"", ROUTER_HEALTH_ALERTS.join("|")),
                "team=\"\"".to_string(),
                severity,
            ],
        });
        if muted {
            route["mute_time_intervals"] = json!([QUIET_HOURS]);
        }
        path.routes.push(route);
        let mut receiver = json!({ "name": receiver });
        for (field, config) in chosen
            .into_iter()
            .filter_map(|index| direct_config(spec, &team.destinations[index]))
        {
            match receiver[field].as_array_mut() {
                Some(list) => list.push(config),
                None => receiver[field] = json!([config]),
            }
        }
        path.uses_templates |= receiver.get("slack_configs").is_some();
        path.receivers.push(receiver);
    }
    let smtp_password = spec.router.smtp.as_ref().and_then(|s| s.password.as_ref());
    for destination in direct_destinations(spec) {
        let secret = match destination {
            Destination::Email { .. } => smtp_password,
            other => other.secret(),
        };
        path.secrets.extend(secret.cloned());
    }
    path.secrets.sort();
    path.secrets.dedup();
    path
}

/// The Go templates of the chat messages (`stack/alertmanager/stackgen.tmpl`), where Alertmanager
/// reads them.
pub const TEMPLATE_FILE: &str = "/etc/alertmanager/stackgen.tmpl";

/// The Alertmanager receiver field and config of `destination`, if Alertmanager reaches it
/// without the router. Discord, Microsoft Teams and webhooks need a URL from a file, which
/// Alertmanager reads only from 0.26 on; it has no Google Chat integration.
fn direct_config(spec: &Spec, destination: &Destination) -> Option<(&'static str, Value)> {
    match destination {
        // Mattermost's incoming webhooks take Slack's payload. The messages' texts defuse every
        // value taken from an alert, as the router's own Slack and Mattermost messages do.
        Destination::Slack { url } | Destination::Mattermost { url } => Some((
            "slack_configs",
            json!({
                "api_url_file": secret_file(url),
                "send_resolved": true,
                "title": "{{ template \"stackgen.direct.title\" . }}",
                "text": "{{ template \"stackgen.direct.text\" . }}",
            }),
        )),
        Destination::Pagerduty { routing_key } => Some((
            "pagerduty_configs",
            json!({"routing_key_file": secret_file(routing_key), "send_resolved": true}),
        )),
        Destination::Opsgenie { api_key, region } => {
            let mut config = json!({"api_key_file": secret_file(api_key), "send_resolved": true});
            if region == "eu" {
                config["api_url"] = json!("https://api.eu.opsgenie.com/");
            }
            Some(("opsgenie_configs", config))
        }
        Destination::Email { to } => {
            let smtp = spec.router.smtp.as_ref()?;
            let server = &smtp.server;
            let mut config = json!({
                "to": to.join(", "),
                "from": server.from,
                "smarthost": format!("{}:{}", server.host, server.port),
                // Alertmanager speaks implicit TLS on port 465 and STARTTLS elsewhere.
                "require_tls": server.tls != "none",
                "send_resolved": true,
            });
            if let Some(user) = &server.username {
                config["auth_username"] = json!(user);
            }
            if let Some(password) = &smtp.password {
                config["auth_password_file"] = json!(secret_file(password));
            }
            Some(("email_configs", config))
        }
        Destination::Discord { .. }
        | Destination::Msteams { .. }
        | Destination::GoogleChat { .. }
        | Destination::Webhook { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(platform_team: &str, extra: &str) -> Spec {
        let text = format!(
            "cluster: {{name: a}}\n{extra}router:\n  platform_team: ops\n  smtp: {{host: smtp.example.com, from: alerts@example.com, password: {{secret: smtp, key: password}}}}\nteams:\n  - name: shop\n    slack: {{url: {{secret: shop, key: slack}}}}\n  - name: ops\n{platform_team}"
        );
        crate::spec::parse("stack.yaml", &text).expect("a valid spec")
    }

    fn matchers(route: &Value) -> Vec<&str> {
        route["matchers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    #[test]
    fn a_pager_takes_the_critical_router_alerts_and_chat_every_severity() {
        let spec = spec(
            "    pagerduty: {routing_key: {secret: ops, key: pd}}\n    mattermost: {url: {secret: ops, key: mm}}\n    webhook: {url: {secret: ops, key: hook}}\n",
            "",
        );
        let path = direct_path(&spec);
        assert_eq!(path.routes.len(), 2, "{:#?}", path.routes);
        assert_eq!(
            matchers(&path.routes[0]),
            [
                "alertname=~\"StackgenRouterDown|StackgenRouterMissing|StackgenRouterQueueBackingUp|StackgenRouterUnroutable|AlertmanagerNotificationsFailing\"",
                "team=\"\"",
                "severity=\"critical\"",
            ]
        );
        assert_eq!(path.routes[0]["receiver"], "platform-direct-critical");
        assert_eq!(matchers(&path.routes[1])[2], "severity=~\"warning|info\"");
        let critical = &path.receivers[0];
        assert_eq!(
            critical["pagerduty_configs"][0]["routing_key_file"],
            "/etc/alertmanager/secrets/destinations/ops/pd"
        );
        assert_eq!(
            critical["slack_configs"][0]["api_url_file"],
            "/etc/alertmanager/secrets/destinations/ops/mm"
        );
        let rest = &path.receivers[1];
        assert_eq!(rest["name"], "platform-direct-warning-info");
        assert!(rest.get("pagerduty_configs").is_none(), "{rest:#}");
        assert!(rest.get("webhook_configs").is_none(), "{rest:#}");
        assert!(path.uses_templates);
        let secrets: Vec<String> = path
            .secrets
            .iter()
            .map(|s| format!("{}/{}", s.secret, s.key))
            .collect();
        // The webhook is not direct, and no e-mail reads the SMTP password.
        assert_eq!(secrets, ["ops/mm", "ops/pd"]);
        assert_eq!(direct_destinations(&spec).len(), 2);
    }

    #[test]
    fn severities_taking_the_same_destinations_share_one_receiver() {
        let spec = spec(
            "    email: {to: [ops@example.com, sre@example.com]}\n    opsgenie: {api_key: {secret: ops, key: og}, region: eu, severities: [critical, warning, info]}\n",
            "",
        );
        let path = direct_path(&spec);
        assert_eq!(path.routes.len(), 1, "{:#?}", path.routes);
        assert_eq!(path.routes[0]["receiver"], "platform-direct");
        assert_eq!(
            matchers(&path.routes[0])[2],
            "severity=~\"critical|warning|info\""
        );
        let receiver = &path.receivers[0];
        let email = &receiver["email_configs"][0];
        assert_eq!(email["to"], "ops@example.com, sre@example.com");
        assert_eq!(email["smarthost"], "smtp.example.com:587");
        assert_eq!(email["require_tls"], true);
        assert_eq!(
            email["auth_password_file"],
            "/etc/alertmanager/secrets/destinations/smtp/password"
        );
        assert_eq!(
            receiver["opsgenie_configs"][0]["api_url"],
            "https://api.eu.opsgenie.com/"
        );
        assert!(!path.uses_templates, "no chat, no templates");
        assert_eq!(path.secrets.len(), 2, "{:?}", path.secrets);
    }

    #[test]
    fn quiet_hours_mute_only_what_is_below_critical() {
        let spec = spec(
            "    slack: {url: {secret: ops, key: slack}}\n    quiet_hours:\n      - weekdays: [saturday, sunday]\n",
            "",
        );
        let path = direct_path(&spec);
        assert_eq!(path.time_intervals.len(), 1);
        assert_eq!(path.time_intervals[0]["name"], QUIET_HOURS);
        assert_eq!(
            path.time_intervals[0]["time_intervals"][0]["weekdays"],
            json!(["saturday", "sunday"])
        );
        assert_eq!(path.routes.len(), 2, "{:#?}", path.routes);
        assert!(path.routes[0].get("mute_time_intervals").is_none());
        assert_eq!(path.routes[1]["mute_time_intervals"][0], QUIET_HOURS);
        // The same Slack, but one receiver per route: severities only share unmuted.
        assert_eq!(path.receivers.len(), 2);
    }

    #[test]
    fn a_platform_team_alertmanager_cannot_reach_gets_no_direct_route() {
        let spec = spec(
            "    webhook: {url: {secret: ops, key: hook}}\n    google_chat: {url: {secret: ops, key: chat}}\n    discord: {url: {secret: ops, key: discord}}\n    msteams: {url: {secret: ops, key: teams}}\n",
            "",
        );
        let path = direct_path(&spec);
        assert!(path.routes.is_empty() && path.receivers.is_empty());
        assert!(path.secrets.is_empty());
        assert!(direct_destinations(&spec).is_empty());
    }

    #[test]
    fn the_dead_mans_switch_takes_watchdog_before_the_heartbeat_route() {
        let spec = spec(
            "    webhook: {url: {secret: ops, key: hook}}\n",
            "alertmanager:\n  dead_mans_switch: https://hc-ping.com/5f1c0a3e\n",
        );
        let path = direct_path(&spec);
        let route = &path.dead_mans_switch_routes[0];
        assert_eq!(matchers(route), ["alertname=\"Watchdog\""]);
        assert_eq!(route["continue"], true, "the heartbeat must still get it");
        assert_eq!(route["repeat_interval"], "1m");
        assert_eq!(
            path.receivers[0]["webhook_configs"][0]["url"],
            "https://hc-ping.com/5f1c0a3e"
        );
    }
}
