//! `router.yaml`: the router's configuration, checked field by field with every problem reported
//! at once (file:line:col, the source line and a hint), like the stack spec.
//!
//! One file per section: `secret.rs` (secrets and `auth`), `store.rs`, `teams.rs` (destinations
//! and their templates), `routes.rs` (`dedup`, `ownership`, `routes`, `heartbeat`),
//! `delivery.rs` (`delivery`, `smtp`), `people.rs` (`people`) and `escalation.rs` (`escalation`). The checked config holds what it read and compiled (templates, the
//! database's CA bundle), so nothing is read twice; only secrets are read when the router starts.

mod delivery;
mod escalation;
mod people;
mod routes;
mod secret;
mod store;
mod teams;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::alert::Millis;
use super::dedup::{DedupSettings, Severity};
use super::destination::DestinationKind;
use super::ownership::Ownership;
use super::routing::{DestinationId, EscalationStep, RoutingTable};
use crate::config_check::{Checker, Obj, check_document, values};
use crate::diagnostic::{Diagnostic, Location};

pub use delivery::{DeliveryConfig, SmtpConfig};
pub use secret::{AuthConfig, SecretSource};
pub use store::PostgresConfig;
pub use teams::{DestinationConfig, Teams};

const TOP_KEYS: &[&str] = &[
    "grafana_url",
    "listen",
    "auth",
    "body_limit",
    "http",
    "store",
    "dedup",
    "heartbeat",
    "delivery",
    "teams",
    "ownership",
    "routes",
    "cluster",
    "smtp",
    "people",
    "escalation",
];

const HTTP_KEYS: &[&str] = &["header_timeout", "body_timeout", "connections_per_client"];

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub listen: SocketAddr,
    pub auth: AuthConfig,
    pub body_limit: usize,
    /// `http`: the deadlines and the per-client connection cap of the HTTP edge.
    pub edge: super::edge::EdgeLimits,
    pub store_path: PathBuf,
    /// `store.sync: full`: sync every commit to disk (survives power loss), not only to the OS.
    pub store_sync_full: bool,
    /// The shared PostgreSQL store, instead of the embedded one.
    pub postgres: Option<PostgresConfig>,
    pub retention: Millis,
    pub ownership: Ownership,
    pub dedup: DedupSettings,
    pub delivery: DeliveryConfig,
    pub teams: Teams,
    /// Routes, the teams' destinations and the severities each takes, for routing.
    pub routing: RoutingTable,
    pub smtp: Option<SmtpConfig>,
    /// `people`: who signs in to the incidents page and API, and what each may do.
    pub people: crate::router::people::People,
    /// Base of Grafana links (`dashboard` annotations are paths).
    pub grafana_url: Option<String>,
}

impl RouterConfig {
    pub fn destination(&self, id: &DestinationId) -> Option<&DestinationConfig> {
        self.teams.get(&id.team)?.iter().find(|c| c.id == *id)
    }

    /// Every destination, in team order.
    pub fn destinations(&self) -> impl Iterator<Item = &DestinationConfig> {
        self.teams.values().flatten()
    }
}

/// Why a config could not be loaded.
pub type ConfigError = crate::diagnostic::FileError;

/// Reads and checks a router.yaml, with the files it names (templates, the CA bundle) relative
/// to its directory.
pub fn load(path: &Path) -> Result<RouterConfig, ConfigError> {
    let source = crate::files::read_spec(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        reason: error.into(),
    })?;
    let file = path.display().to_string();
    // The empty path for a bare file name: the files it names are then shown as written.
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&file, &source, base).map_err(|diagnostics| ConfigError::Invalid {
        file,
        source_text: source,
        diagnostics,
        included: BTreeMap::new(),
    })
}

/// Checks router.yaml source text; the files it names are read relative to `base`. Every problem
/// is reported.
pub fn parse(file: &str, source: &str, base: &Path) -> Result<RouterConfig, Vec<Diagnostic>> {
    check_document(file, source, |checker, root| {
        checker.router_config(root, base)
    })
}

fn ms(value: u64) -> Millis {
    Millis::try_from(value).unwrap_or(Millis::MAX)
}

impl Checker {
    pub(crate) fn duration(&mut self, obj: Option<&Obj>, key: &str, default: &str) -> Millis {
        let text = obj
            .and_then(|o| self.optional_checked(o, key, "duration", values::check_duration))
            .unwrap_or_else(|| default.to_string());
        ms(values::parse_duration_ms(&text).unwrap_or(0))
    }

    fn string_list(&mut self, obj: Option<&Obj>, key: &str, default: &[&str]) -> Vec<String> {
        let defaults = || default.iter().map(|s| s.to_string()).collect();
        let Some(o) = obj.filter(|o| o.get(key).is_some()) else {
            return defaults();
        };
        let nodes = self.list(o, key);
        nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                self.string(n, &format!("{}[{i}]", o.path(key)))
                    .map(|(s, _)| s)
            })
            .collect()
    }

    fn router_config(&mut self, root: &marked_yaml::Node, base: &Path) -> Option<RouterConfig> {
        let top = self.object(root, "", TOP_KEYS)?;
        let listen = self.listen(&top);
        let auth = self.auth(&top);
        let body_limit = self.body_limit(&top);
        let edge = self.edge_limits(&top);
        let store = self.store_section(&top, base);
        let grafana_url = top
            .get("grafana_url")
            .and_then(|n| self.string(n, "grafana_url"))
            .map(|(u, _)| u);
        let mut quiet_hours = BTreeMap::new();
        let teams = self.teams_section(&top, base, grafana_url.as_deref(), &mut quiet_hours);
        let dedup = self.sub_object(&top, "dedup", routes::DEDUP_KEYS);
        let ownership = self.ownership_section(&top, dedup.as_ref(), &teams);
        let heartbeat = self.heartbeat_section(&top, &teams);
        let delivery = self.delivery_section(&top);
        if let Some(pg) = &store.postgres {
            self.lease_outlasts_a_delivery(pg.lease, &delivery, store.lease_location);
        }
        let routes = self.routes_section(&top, &teams);
        let escalation = self.escalation_section(&top, &teams);
        let smtp = self.smtp_section(&top, &teams);
        let people = self.people_section(&top, base, &teams);
        if let Some(node) = top.get("cluster") {
            self.string(node, "cluster");
        }
        let routing = RoutingTable {
            routes,
            team_destinations: teams
                .iter()
                .map(|(team, ds)| (team.clone(), ds.iter().map(|d| d.id.name.clone()).collect()))
                .collect(),
            severities: teams
                .values()
                .flatten()
                .filter_map(|d| Some((d.id.clone(), d.severities.clone()?)))
                .collect(),
            quiet_hours,
            cannot_unacknowledge: teams
                .values()
                .flatten()
                .filter(|d| d.kind() == DestinationKind::Pagerduty)
                .map(|d| d.id.clone())
                .collect(),
            escalation: escalation
                .iter()
                .map(|(team, steps)| {
                    let steps = steps
                        .iter()
                        .map(|(after, destinations)| EscalationStep {
                            after: *after,
                            destinations: destinations.clone(),
                        })
                        .collect();
                    (team.clone(), steps)
                })
                .collect(),
        };
        self.every_severity_reaches_each_team(&top, &teams, &routing);
        Some(RouterConfig {
            listen: listen?,
            auth,
            body_limit,
            edge,
            store_path: store.path,
            store_sync_full: store.sync_full,
            postgres: store.postgres,
            retention: store.retention,
            dedup: self.dedup_timing(
                dedup.as_ref(),
                heartbeat,
                escalation
                    .iter()
                    .map(|(team, steps)| {
                        (
                            team.clone(),
                            steps.iter().map(|(after, _)| *after).collect(),
                        )
                    })
                    .collect(),
            ),
            ownership,
            delivery,
            teams,
            routing,
            smtp,
            grafana_url,
            people,
        })
    }

    fn listen(&mut self, top: &Obj) -> Option<SocketAddr> {
        let text = top
            .get("listen")
            .and_then(|n| self.string(n, "listen"))
            .map(|(t, _)| t)
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Some(address);
        }
        let span = top.get("listen").map_or(*top.span(), |n| *n.span());
        self.error(
            &span,
            "listen",
            format!("invalid listen address `{text}`"),
            Some("write host:port, e.g. 0.0.0.0:8080 or 127.0.0.1:8080".into()),
        );
        None
    }

    fn body_limit(&mut self, top: &Obj) -> usize {
        let Some(node) = top.get("body_limit") else {
            return 4 * 1024 * 1024;
        };
        match self.quantity(node, "body_limit") {
            Some((_, bytes)) if bytes >= 1024.0 => bytes as usize,
            Some((text, _)) => {
                self.error(
                    node.span(),
                    "body_limit",
                    format!("body limit `{text}` is too small"),
                    Some("give at least 1Ki; Alertmanager's bodies are often tens of KiB".into()),
                );
                0
            }
            None => 0,
        }
    }

    /// `http`: how long a client may take over a request's headers and its body, and how many
    /// connections one client address may hold.
    fn edge_limits(&mut self, top: &Obj) -> super::edge::EdgeLimits {
        let defaults = super::edge::EdgeLimits::default();
        let Some(http) = self.sub_object(top, "http", HTTP_KEYS) else {
            return defaults;
        };
        let deadline = |checker: &mut Self, key: &str, default: std::time::Duration| {
            let default_text = format!("{}s", default.as_secs());
            let millis = checker.duration(Some(&http), key, &default_text);
            if millis < 1_000 {
                let span = http.get(key).map_or(*http.span(), |n| *n.span());
                checker.error(
                    &span,
                    &http.path(key),
                    format!("`{key}` must be at least 1s"),
                    Some("a busy Alertmanager needs a few seconds; the default is fine".into()),
                );
                return default;
            }
            std::time::Duration::from_millis(millis as u64)
        };
        super::edge::EdgeLimits {
            header_timeout: deadline(self, "header_timeout", defaults.header_timeout),
            body_timeout: deadline(self, "body_timeout", defaults.body_timeout),
            connections_per_client: self.uint(
                Some(&http),
                "connections_per_client",
                1,
                65_536,
                defaults.connections_per_client as u64,
            ) as usize,
        }
    }

    /// The timings of `dedup` (its keys and labels belong to the ownership).
    fn dedup_timing(
        &mut self,
        dedup: Option<&Obj>,
        heartbeat: Option<super::dedup::HeartbeatSettings>,
        escalation: BTreeMap<String, Vec<Millis>>,
    ) -> DedupSettings {
        DedupSettings {
            resolve_hold: self.duration(dedup, "resolve_hold", "2m"),
            stale_after: self.duration(dedup, "stale_after", "15m"),
            reminder: self.duration(dedup, "reminder", "4h"),
            heartbeat,
            escalation,
        }
    }

    /// Every team has a destination for each severity (without routes, an alert of the team
    /// goes to the team's destinations that take its severity).
    fn every_severity_reaches_each_team(
        &mut self,
        top: &Obj,
        teams: &Teams,
        routing: &RoutingTable,
    ) {
        for (team, destinations) in teams {
            if destinations.is_empty() {
                continue;
            }
            let missing =
                Severity::untaken(|s| destinations.iter().any(|d| routing.takes(&d.id, s)));
            if missing.is_empty() {
                continue;
            }
            let location = top
                .get("teams")
                .and_then(|t| t.as_mapping())
                .and_then(|t| t.get_node(team))
                .map_or_else(
                    || Location::of_span(top.span()),
                    |n| Location::of_span(n.span()),
                );
            self.error_at(
                location,
                &format!("teams.{team}"),
                format!(
                    "no destination of team `{team}` takes {} alerts: they would reach nobody",
                    missing.join(" or ")
                ),
                Some("list the severity in a destination's `severities` (a pager takes critical alerts only unless it says otherwise; chat and e-mail every severity)".into()),
            );
        }
    }

    fn lease_outlasts_a_delivery(
        &mut self,
        lease: Millis,
        delivery: &DeliveryConfig,
        location: Location,
    ) {
        if lease > delivery.timeout {
            return;
        }
        self.error_at(
            location,
            "store.postgres.lease",
            format!(
                "the lease ({lease} ms) must be longer than `delivery.timeout` ({} ms)",
                delivery.timeout
            ),
            Some("a claim must outlast one delivery attempt, or another replica sends the same notification meanwhile".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::destination::DestinationSettings;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../examples/router.yaml");
        let config = parse("examples/router.yaml", text, Path::new("examples"))
            .unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            config.auth.bearer_token,
            Some(SecretSource::Env("STACKGEN_ROUTER_TOKEN".into()))
        );
        assert_eq!(config.body_limit, 4 * 1024 * 1024);
        assert_eq!(config.dedup.resolve_hold, 120_000);
        assert_eq!(config.routing.routes.len(), 1);
        assert_eq!(config.teams["payments"][0].retry_statuses, vec![409]);
        assert_eq!(config.ownership.default_team.as_deref(), Some("platform"));
    }

    #[test]
    fn every_problem_is_reported_with_a_hint() {
        let text = "listen: nowhere\nauth: {bearer_token_file: /a, bearer_token_env: B}\nteams:\n  web:\n    destinations:\n      - kind: webhok\n      - kind: webhook\n        url: http://x\n        url_env: X\nownership:\n  default_team: wbe\nroutes:\n  - matchers: ['severity=~\"(\"']\n    destinations: [web/chat]\n";
        let problems = parse("r.yaml", text, Path::new(".")).expect_err("invalid");
        let messages: Vec<&str> = problems.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "invalid listen address `nowhere`",
                "`bearer_token` is given more than once",
                "unknown destination kind `webhok`",
                "`url` is given more than once",
                "unknown team `wbe`",
                "invalid matcher `severity=~\"(\"`",
                "unknown destination `web/chat`",
            ]
        );
        assert_eq!(problems[2].hint.as_deref(), Some("did you mean `webhook`?"));
    }

    #[test]
    fn the_postgres_store_takes_its_url_from_a_file_and_a_lease_longer_than_a_delivery() {
        let base = "teams: {a: {destinations: [{kind: log}]}}\nownership: {default_team: a}\n";
        let good = format!("store: {{postgres: {{url_file: /run/db-url, lease: 45s}}}}\n{base}");
        let config = parse("r.yaml", &good, Path::new(".")).unwrap_or_else(|d| panic!("{d:?}"));
        let postgres = config.postgres.expect("the PostgreSQL store");
        assert_eq!(postgres.url, SecretSource::File("/run/db-url".into()));
        assert_eq!(postgres.lease, 45_000);
        assert!(postgres.ca.is_none());
        let bad = format!(
            "store: {{path: x.db, postgres: {{url: \"postgres://u:hunter2@db/x\"}}}}\n{base}"
        );
        let problems = parse("r.yaml", &bad, Path::new(".")).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["store.postgres.url"]);
        assert!(problems[0].redact, "the inline URL is not echoed");
        let both = format!("store: {{path: x.db, postgres: {{url_env: DB}}}}\n{base}");
        let problems = parse("r.yaml", &both, Path::new(".")).expect_err("invalid");
        assert_eq!(problems[0].field, "store.path");
        let short = format!(
            "store: {{postgres: {{url_env: DB, lease: 5s}}}}\ndelivery: {{timeout: 10s}}\n{base}"
        );
        let problems = parse("r.yaml", &short, Path::new(".")).expect_err("invalid");
        assert_eq!(problems[0].field, "store.postgres.lease");
    }

    #[test]
    fn the_http_edge_takes_deadlines_of_a_second_or_more_and_a_positive_cap() {
        let base = "teams: {a: {destinations: [{kind: log}]}}\nownership: {default_team: a}\n";
        let good = format!("http: {{header_timeout: 3s, connections_per_client: 8}}\n{base}");
        let config = parse("r.yaml", &good, Path::new(".")).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(
            config.edge.header_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(config.edge.body_timeout, std::time::Duration::from_secs(15));
        assert_eq!(config.edge.connections_per_client, 8);
        let bad = format!(
            "http: {{header_timeout: 100ms, body_timeout: 0s, connections_per_client: 0}}\n{base}"
        );
        let problems = parse("r.yaml", &bad, Path::new(".")).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "http.header_timeout",
                "http.body_timeout",
                "http.connections_per_client"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn a_destination_takes_only_its_own_kinds_settings() {
        let text = "teams:\n  web:\n    destinations:\n      - {kind: opsgenie, api_key_env: K, region: eu}\n      - {kind: slack, url_env: U, region: eu}\n  a/b:\n    destinations: [{kind: log}]\nownership: {default_team: web}\n";
        let problems = parse("r.yaml", text, Path::new(".")).expect_err("invalid");
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|d| (d.field.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "teams.web.destinations[1].region",
                    "unknown key `region` in `teams.web.destinations[1]`"
                ),
                ("teams.a/b", "team name `a/b` cannot be empty or hold a `/`"),
            ]
        );
        let good = text.replace(", region: eu}\n  a/b", "}\n  ab");
        let config = parse("r.yaml", &good, Path::new(".")).unwrap_or_else(|d| panic!("{d:?}"));
        let opsgenie = config.teams["web"][0].settings.clone();
        assert_eq!(
            opsgenie,
            DestinationSettings::Opsgenie(crate::router::destination::opsgenie::Settings {
                region: Some("eu".into()),
                api_url: None,
            })
        );
    }

    #[test]
    fn a_config_where_an_alert_could_reach_nobody_is_refused() {
        let text = "teams:\n  web: {destinations: [{kind: log}]}\n  quiet: {destinations: []}\nroutes:\n  - matchers: ['severity=\"info\"']\n    destinations: []\n";
        let problems = parse("r.yaml", text, Path::new(".")).expect_err("invalid");
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|d| (d.field.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "ownership.default_team",
                    "no `ownership.default_team`: an alert of no known team would reach no destination"
                ),
                (
                    "teams.quiet.destinations",
                    "team `quiet` has no destination: its alerts would reach nobody"
                ),
                (
                    "routes[0].destinations",
                    "routes[0] sends the alerts it matches to no destination"
                ),
            ]
        );
    }

    #[test]
    fn inline_secrets_never_show_in_debug() {
        let s = SecretSource::Inline("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
