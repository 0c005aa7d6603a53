//! `router.yaml`: the router's configuration, checked field by field with every problem reported
//! at once (file:line:col, the source line and a hint), like the stack spec.
//!
//! Secrets (the inbound token, destination URLs and keys) come from a file or an environment
//! variable (`<field>_file`, `<field>_env`); an inline value is accepted but never required.
//! They are read when the router starts ([`SecretSource::read`]), not when the file is checked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use marked_yaml::{LoaderOptions, Node};

use super::alert::Millis;
use super::dedup::{DedupSettings, HeartbeatSettings};
use super::matcher::Matcher;
use super::routing::{DestinationRef, Ownership, OwnershipRule, Route};
use crate::config_check::{Checker, Obj};
use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::spec::values;

const TOP_KEYS: &[&str] = &[
    "grafana_url",
    "listen",
    "auth",
    "body_limit",
    "store",
    "dedup",
    "heartbeat",
    "delivery",
    "teams",
    "ownership",
    "routes",
    "cluster",
    "smtp",
];
const AUTH_KEYS: &[&str] = &[
    "bearer_token",
    "bearer_token_file",
    "bearer_token_env",
    "basic",
];
const BASIC_KEYS: &[&str] = &["username", "password", "password_file", "password_env"];
const STORE_KEYS: &[&str] = &["path", "retention", "sync", "postgres"];
const POSTGRES_KEYS: &[&str] = &["url", "url_file", "url_env", "lease", "ca_file"];
const DEDUP_KEYS: &[&str] = &[
    "key",
    "service_labels",
    "instance_labels",
    "resolve_hold",
    "stale_after",
    "reminder",
];
const HEARTBEAT_KEYS: &[&str] = &["alertname", "timeout", "team"];
const DELIVERY_KEYS: &[&str] = &[
    "initial_backoff",
    "max_backoff",
    "max_age",
    "concurrency",
    "timeout",
];
const OWNERSHIP_KEYS: &[&str] = &["services", "rules", "default_team"];
const RULE_KEYS: &[&str] = &["matchers", "team"];
const ROUTE_KEYS: &[&str] = &["matchers", "destinations", "continue"];
const SMTP_KEYS: &[&str] = &[
    "host",
    "port",
    "from",
    "tls",
    "username",
    "password",
    "password_file",
    "password_env",
];

/// Destination kinds and the secret field each reads.
pub const DESTINATION_KINDS: &[(&str, Option<&str>)] = &[
    ("webhook", Some("url")),
    ("log", None),
    ("slack", Some("url")),
    ("mattermost", Some("url")),
    ("discord", Some("url")),
    ("msteams", Some("url")),
    ("google_chat", Some("url")),
    ("pagerduty", Some("routing_key")),
    ("opsgenie", Some("api_key")),
    ("email", None),
];

/// Where a secret comes from. Its `Debug` never shows an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    Inline(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
            SecretSource::Inline(_) => write!(f, "Inline(<redacted>)"),
        }
    }
}

impl SecretSource {
    /// Reads the secret (trailing newline removed). The error names the source, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            SecretSource::Inline(value) => Ok(value.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    pub bearer_token: Option<SecretSource>,
    pub basic: Option<(String, SecretSource)>,
}

#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: String,
    pub secret: Option<SecretSource>,
    /// Other fields (e.g. `to`, `region`, `api_url`), for the destinations that read them.
    pub options: BTreeMap<String, String>,
    /// Template parts replaced from files (the team's, then the destination's own).
    pub templates: BTreeMap<String, TemplateFile>,
    /// Reply statuses to retry, or to reject, whatever the kind's rule says.
    pub retry_statuses: Vec<u16>,
    pub reject_statuses: Vec<u16>,
}

/// A template part read from a file, and where the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    pub path: PathBuf,
    pub location: Location,
}

/// The outgoing mail server of `email` destinations.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub from: String,
    /// `starttls`, `tls` (implicit) or `none`.
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub initial_backoff: Millis,
    pub max_backoff: Millis,
    pub max_age: Millis,
    pub concurrency: usize,
    pub timeout: Millis,
}

/// `store.postgres`: the database several router replicas share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (or `key=value` settings), from a file or
    /// an environment variable: it carries a password, so never inline.
    pub url: SecretSource,
    /// How long a replica's claim on a notification keeps the others away; after a replica dies,
    /// its claims are taken over when this expires. Longer than `delivery.timeout`.
    pub lease: Millis,
    /// The PEM CA bundle that verifies the server when TLS is used (relative to the config's
    /// directory); without it, the public web PKI roots.
    pub ca_file: Option<ConfigFile>,
}

/// A file the config names (read when the config is loaded), and where it names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub listen: SocketAddr,
    pub auth: AuthConfig,
    pub body_limit: usize,
    pub store_path: PathBuf,
    /// `store.sync: full`: sync every commit to disk (survives power loss), not only to the OS.
    pub store_sync_full: bool,
    /// The shared PostgreSQL store, instead of the embedded one.
    pub postgres: Option<PostgresConfig>,
    pub retention: Millis,
    pub ownership: Ownership,
    pub dedup: DedupSettings,
    pub delivery: DeliveryConfig,
    pub teams: BTreeMap<String, Vec<DestinationConfig>>,
    pub routes: Vec<Route>,
    pub smtp: Option<SmtpConfig>,
    /// Base of Grafana links (`dashboard` annotations are paths).
    pub grafana_url: Option<String>,
}

impl RouterConfig {
    /// Destination names per team, for routing.
    pub fn team_destinations(&self) -> BTreeMap<String, Vec<String>> {
        self.teams
            .iter()
            .map(|(team, ds)| (team.clone(), ds.iter().map(|d| d.name.clone()).collect()))
            .collect()
    }

    pub fn destination(&self, d: &DestinationRef) -> Option<&DestinationConfig> {
        self.teams.get(&d.team)?.iter().find(|c| c.name == d.name)
    }
}

/// Why a config could not be loaded.
pub type ConfigError = crate::diagnostic::FileError;

/// Reads the template overrides of a destination (paths relative to the config's directory) and
/// compiles them, checked against sample notifications.
pub fn templates_for(
    config: &RouterConfig,
    destination: &DestinationConfig,
    base: &Path,
) -> Result<crate::router::template::Templates, (Location, String)> {
    let mut overrides = BTreeMap::new();
    for (part, file) in &destination.templates {
        let path = base.join(&file.path);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            (
                file.location,
                format!("cannot read template {}: {e}", path.display()),
            )
        })?;
        overrides.insert(part.clone(), text);
    }
    let location = destination
        .templates
        .values()
        .next()
        .map_or_else(Location::default, |f| f.location);
    crate::router::template::Templates::new(
        &destination.kind,
        &overrides,
        config.grafana_url.clone(),
    )
    .map_err(|e| (location, e))
}

/// Reads and checks a router.yaml, its template files included.
pub fn load(path: &Path) -> Result<RouterConfig, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = parse(&file, &source).map_err(|diagnostics| ConfigError::Invalid {
        file: file.clone(),
        source_text: source.clone(),
        diagnostics,
    })?;
    let mut diagnostics = Vec::new();
    if let Some(ca_file) = config.postgres.as_mut().and_then(|pg| pg.ca_file.as_mut()) {
        ca_file.path = base.join(&ca_file.path);
        if let Err(message) = crate::router::store::postgres_tls::read_ca_bundle(&ca_file.path) {
            diagnostics.push(Diagnostic {
                file: file.clone(),
                location: ca_file.location,
                field: "store.postgres.ca_file".into(),
                message,
                hint: Some("point `ca_file` (relative to this file's directory) at the PEM CA bundle of the database's provider: one or more `-----BEGIN CERTIFICATE-----` blocks".into()),
                redact: false,
                width: None,
            });
        }
    }
    for (team, destinations) in &config.teams {
        for destination in destinations.iter() {
            if let Err((location, message)) = templates_for(&config, destination, base) {
                diagnostics.push(Diagnostic {
                    file: file.clone(),
                    location,
                    field: format!("teams.{team}.{}", destination.name),
                    message: format!("destination `{team}/{}`: {message}", destination.name),
                    hint: Some("templates see: kind, kind_label, is_resolved, status, severity, severity_label, team, service, alertname, cluster, namespace, firing_members, total_members, members, more_members, summary, description, runbook_url, dashboard_url, generator_url, alertmanager_url, opened_at, at, duration, labels, annotations, incident_key".into()),
                    redact: false,
                    width: None,
                });
            }
        }
    }
    if diagnostics.is_empty() {
        return Ok(config);
    }
    Err(ConfigError::Invalid {
        file,
        source_text: source,
        diagnostics,
    })
}

/// Checks router.yaml source text; every problem is reported.
pub fn parse(file: &str, source: &str) -> Result<RouterConfig, Vec<Diagnostic>> {
    let mut checker = Checker {
        file: file.to_string(),
        diagnostics: Vec::new(),
    };
    let root = match marked_yaml::parse_yaml_with_options(
        0,
        source,
        LoaderOptions::default().error_on_duplicate_keys(true),
    ) {
        Ok(root) => root,
        Err(err) => return Err(vec![checker.load_error(err)]),
    };
    let config = checker.router_config(&root);
    match config {
        Some(config) if checker.diagnostics.is_empty() => Ok(config),
        _ => {
            let mut diagnostics = checker.diagnostics;
            diagnostics.sort_by_key(|d| d.location);
            Err(diagnostics)
        }
    }
}

fn ms(value: u64) -> Millis {
    Millis::try_from(value).unwrap_or(Millis::MAX)
}

impl Checker {
    fn duration(&mut self, obj: Option<&Obj>, key: &str, default: &str) -> Millis {
        let text = obj
            .and_then(|o| self.optional_checked(o, key, "duration", values::check_duration))
            .unwrap_or_else(|| default.to_string());
        ms(values::parse_duration_ms(&text).unwrap_or(0))
    }

    fn string_list(&mut self, obj: Option<&Obj>, key: &str, default: &[&str]) -> Vec<String> {
        let Some(o) = obj else {
            return default.iter().map(|s| s.to_string()).collect();
        };
        if o.get(key).is_none() {
            return default.iter().map(|s| s.to_string()).collect();
        }
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

    /// A secret given as `field`, `field_file` or `field_env` (exactly one).
    fn secret(&mut self, obj: &Obj, field: &str, required: bool) -> Option<SecretSource> {
        let variants = [
            (field.to_string(), 0),
            (format!("{field}_file"), 1),
            (format!("{field}_env"), 2),
        ];
        let given: Vec<(&String, usize, &Node)> = variants
            .iter()
            .filter_map(|(k, kind)| obj.get(k).map(|n| (k, *kind, n)))
            .collect();
        match given.as_slice() {
            [] => {
                if required {
                    self.error(obj.span(), &obj.path(field), format!("missing `{field}_file` or `{field}_env`"), Some(format!("point `{field}_file` at a mounted secret or `{field}_env` at an environment variable")));
                }
                None
            }
            [(key, kind, node)] => {
                let (text, _) = self.string(node, &obj.path(key))?;
                if text.is_empty() {
                    self.error(
                        node.span(),
                        &obj.path(key),
                        format!("`{key}` is empty"),
                        None,
                    );
                    return None;
                }
                Some(match kind {
                    0 => SecretSource::Inline(text),
                    1 => SecretSource::File(PathBuf::from(text)),
                    _ => SecretSource::Env(text),
                })
            }
            [_, (key, _, node), ..] => {
                self.error(
                    node.span(),
                    &obj.path(key),
                    format!("`{field}` is given more than once"),
                    Some(format!(
                        "keep one of `{field}`, `{field}_file`, `{field}_env`"
                    )),
                );
                None
            }
        }
    }

    fn matchers(&mut self, obj: &Obj) -> Vec<Matcher> {
        let mut matchers = Vec::new();
        for (i, node) in self.list(obj, "matchers").into_iter().enumerate() {
            let field = format!("{}[{i}]", obj.path("matchers"));
            let Some((text, _)) = self.string(node, &field) else {
                continue;
            };
            match Matcher::parse(&text) {
                Ok(m) => matchers.push(m),
                Err(hint) => self.error(
                    node.span(),
                    &field,
                    format!("invalid matcher `{text}`"),
                    Some(hint),
                ),
            }
        }
        matchers
    }

    fn router_config(&mut self, root: &Node) -> Option<RouterConfig> {
        let top = self.object(root, "", TOP_KEYS)?;
        let listen_text = top
            .get("listen")
            .and_then(|n| self.string(n, "listen"))
            .map(|(t, _)| t)
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let span = top.get("listen").map_or(*top.span(), |n| *n.span());
                self.error(
                    &span,
                    "listen",
                    format!("invalid listen address `{listen_text}`"),
                    Some("write host:port, e.g. 0.0.0.0:8080 or 127.0.0.1:8080".into()),
                );
                None
            }
        };
        let auth = self.auth(&top);
        let body_limit = match top.get("body_limit") {
            None => 4 * 1024 * 1024,
            Some(node) => match self.quantity(node, "body_limit") {
                Some((_, bytes)) if bytes >= 1024.0 => bytes as usize,
                Some((text, _)) => {
                    self.error(
                        node.span(),
                        "body_limit",
                        format!("body limit `{text}` is too small"),
                        Some(
                            "give at least 1Ki; Alertmanager's bodies are often tens of KiB".into(),
                        ),
                    );
                    0
                }
                None => 0,
            },
        };
        let store = self.sub_object(&top, "store", STORE_KEYS);
        let store_path = store
            .as_ref()
            .and_then(|s| s.get("path"))
            .and_then(|n| self.string(n, "store.path"))
            .map(|(p, _)| PathBuf::from(p))
            .unwrap_or_else(|| PathBuf::from("router.db"));
        let retention = self.duration(store.as_ref(), "retention", "168h");
        let store_sync_full = match store.as_ref().and_then(|s| s.get("sync")) {
            None => false,
            Some(node) => match self.string(node, "store.sync").map(|(t, _)| t).as_deref() {
                Some("normal") => false,
                Some("full") => true,
                Some(other) => {
                    self.error(node.span(), "store.sync", format!("unknown sync mode `{other}`"), Some("`normal`: survives a crash of the router; `full`: also survives power loss (slower)".into()));
                    false
                }
                None => false,
            },
        };
        let postgres = store
            .as_ref()
            .and_then(|s| self.sub_object(s, "postgres", POSTGRES_KEYS))
            .and_then(|pg| {
                if let Some(node) = pg.get("url") {
                    self.error(
                        node.span(),
                        "store.postgres.url",
                        "the database URL is given inline; it carries a password".into(),
                        Some("give `url_file` (a mounted Secret) or `url_env` (an environment variable)".into()),
                    );
                    if let Some(last) = self.diagnostics.last_mut() {
                        last.redact = true;
                    }
                    return None;
                }
                let url = self.secret(&pg, "url", true)?;
                let lease = self.duration(Some(&pg), "lease", "30s");
                let ca_file = pg
                    .get("ca_file")
                    .and_then(|n| self.string(n, "store.postgres.ca_file"))
                    .map(|(path, location)| ConfigFile {
                        path: PathBuf::from(path),
                        location,
                    });
                Some((url, lease, ca_file, pg.get("lease").map(|n| *n.span())))
            });
        if postgres.is_some() {
            for key in ["path", "sync"] {
                if let Some(node) = store.as_ref().and_then(|s| s.get(key)) {
                    self.error(
                        node.span(),
                        &format!("store.{key}"),
                        format!(
                            "`store.{key}` is for the embedded store, but `store.postgres` is set"
                        ),
                        Some(format!(
                            "remove `{key}`: the PostgreSQL store keeps everything in the database"
                        )),
                    );
                }
            }
        }
        let dedup_obj = self.sub_object(&top, "dedup", DEDUP_KEYS);
        let d = dedup_obj.as_ref();
        let key = self.string_list(d, "key", &["team", "service", "alertname"]);
        let service_labels = self.string_list(d, "service_labels", &["service", "job"]);
        let instance_labels = self.string_list(
            d,
            "instance_labels",
            &[
                "instance",
                "pod",
                "node",
                "container",
                "pod_ip",
                "host",
                "hostname",
                "uid",
                "endpoint",
            ],
        );
        let resolve_hold = self.duration(d, "resolve_hold", "2m");
        let stale_after = self.duration(d, "stale_after", "15m");
        let reminder = self.duration(d, "reminder", "4h");
        let teams = self.router_teams(&top);
        let heartbeat = self
            .sub_object(&top, "heartbeat", HEARTBEAT_KEYS)
            .and_then(|h| {
                let alertname = h
                    .get("alertname")
                    .and_then(|n| self.string(n, "heartbeat.alertname"))
                    .map_or_else(|| "Watchdog".to_string(), |(t, _)| t);
                let timeout = self.duration(Some(&h), "timeout", "5m");
                let team = self.required_string(&h, "team")?;
                self.known_team(&teams, &team.0, h.get("team"), "heartbeat.team");
                Some(HeartbeatSettings {
                    alertname,
                    timeout,
                    team: team.0,
                })
            });
        let delivery_obj = self.sub_object(&top, "delivery", DELIVERY_KEYS);
        let dl = delivery_obj.as_ref();
        let delivery = DeliveryConfig {
            initial_backoff: self.duration(dl, "initial_backoff", "1s"),
            max_backoff: self.duration(dl, "max_backoff", "5m"),
            max_age: self.duration(dl, "max_age", "24h"),
            concurrency: self.uint(dl, "concurrency", 1, 256, 8) as usize,
            timeout: self.duration(dl, "timeout", "10s"),
        };
        let postgres = postgres.map(|(url, lease, ca_file, span)| {
            if lease <= delivery.timeout {
                self.error(
                    &span.unwrap_or(*top.span()),
                    "store.postgres.lease",
                    format!(
                        "the lease ({lease} ms) must be longer than `delivery.timeout` ({} ms)",
                        delivery.timeout
                    ),
                    Some("a claim must outlast one delivery attempt, or another replica sends the same notification meanwhile".into()),
                );
            }
            PostgresConfig {
                url,
                lease,
                ca_file,
            }
        });
        let ownership = self.ownership(&top, &teams, key, service_labels, instance_labels);
        let routes = self.routes(&top, &teams);
        let smtp = self.sub_object(&top, "smtp", SMTP_KEYS).and_then(|smtp| {
            let host = self.required_string(&smtp, "host").map(|(h, _)| h);
            let from = smtp.get("from").and_then(|n| self.checked_string(n, "smtp.from", "sender address", values::check_email));
            if smtp.get("from").is_none() {
                self.error(smtp.span(), "smtp.from", "missing required key `from`".into(), Some("add `from: alerts@example.com`".into()));
            }
            let tls = smtp.get("tls").map_or(Some("starttls".to_string()), |n| {
                let (text, _) = self.string(n, "smtp.tls")?;
                if ["starttls", "tls", "none"].contains(&text.as_str()) {
                    Some(text)
                } else {
                    self.error(n.span(), "smtp.tls", format!("unknown SMTP TLS mode `{text}`"), Some("use `starttls` (port 587), `tls` (implicit, port 465) or `none` (a local relay)".into()));
                    None
                }
            });
            let default_port = if tls.as_deref() == Some("tls") { 465 } else { 587 };
            let port = self.uint(Some(&smtp), "port", 1, 65535, default_port) as u16;
            let username = smtp.get("username").and_then(|n| self.string(n, "smtp.username")).map(|(u, _)| u);
            let password = self.secret(&smtp, "password", false);
            Some(SmtpConfig { host: host?, port, from: from?, tls: tls?, username, password })
        });
        if smtp.is_none() {
            for (team, destinations) in &teams {
                if destinations.iter().any(|d| d.kind == "email") {
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
        let grafana_url = top
            .get("grafana_url")
            .and_then(|n| self.string(n, "grafana_url"))
            .map(|(u, _)| u);
        if let Some(node) = top.get("cluster") {
            self.string(node, "cluster");
        }
        Some(RouterConfig {
            listen: listen?,
            auth,
            body_limit,
            store_path,
            store_sync_full,
            postgres,
            retention,
            ownership,
            dedup: DedupSettings {
                resolve_hold,
                stale_after,
                reminder,
                heartbeat,
            },
            delivery,
            teams,
            routes,
            smtp,
            grafana_url,
        })
    }

    /// `templates: {title: file, text: file, ...}` of a team or a destination.
    fn template_files(
        &mut self,
        obj: &Obj,
        inherited: &BTreeMap<String, TemplateFile>,
    ) -> BTreeMap<String, TemplateFile> {
        let mut files = inherited.clone();
        let Some(templates) = self.sub_object(obj, "templates", crate::router::template::PARTS)
        else {
            return files;
        };
        for part in crate::router::template::PARTS {
            if let Some(node) = templates.get(part)
                && let Some((path, location)) = self.string(node, &templates.path(part))
            {
                files.insert(
                    part.to_string(),
                    TemplateFile {
                        path: PathBuf::from(path),
                        location,
                    },
                );
            }
        }
        files
    }

    fn auth(&mut self, top: &Obj) -> AuthConfig {
        let Some(auth) = self.sub_object(top, "auth", AUTH_KEYS) else {
            return AuthConfig::default();
        };
        let bearer_token = self.secret(&auth, "bearer_token", false);
        let basic = self.sub_object(&auth, "basic", BASIC_KEYS).and_then(|b| {
            let username = self.required_string(&b, "username").map(|(u, _)| u);
            let password = self.secret(&b, "password", true);
            Some((username?, password?))
        });
        if bearer_token.is_none() && basic.is_none() && auth.map.is_empty() {
            self.error(
                auth.span(),
                "auth",
                "`auth` names no credential".into(),
                Some("add `bearer_token_file`/`bearer_token_env`, or `basic`".into()),
            );
        }
        AuthConfig {
            bearer_token,
            basic,
        }
    }

    fn known_team(
        &mut self,
        teams: &BTreeMap<String, Vec<DestinationConfig>>,
        team: &str,
        node: Option<&Node>,
        field: &str,
    ) {
        if teams.contains_key(team) {
            return;
        }
        let hint = did_you_mean(team, teams.keys().map(String::as_str)).map_or_else(
            || {
                format!(
                    "declared teams: {}",
                    teams.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
            |c| format!("did you mean `{c}`?"),
        );
        let location = node
            .map(|n| Location::of_span(n.span()))
            .unwrap_or_default();
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            location,
            field: field.to_string(),
            message: format!("unknown team `{team}`"),
            hint: Some(hint),
            redact: false,
            width: None,
        });
    }

    fn router_teams(&mut self, top: &Obj) -> BTreeMap<String, Vec<DestinationConfig>> {
        let mut teams = BTreeMap::new();
        let Some(node) = top.get("teams") else {
            self.error(
                top.span(),
                "teams",
                "missing `teams`".into(),
                Some("declare at least one team with its destinations".into()),
            );
            return teams;
        };
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                "teams",
                "`teams` must be a mapping of team names".into(),
                None,
            );
            return teams;
        };
        for (team_name, value) in map.iter() {
            let field = format!("teams.{}", team_name.as_str());
            let Some(team) = self.object(value, &field, &["destinations", "templates"]) else {
                continue;
            };
            let team_templates = self.template_files(&team, &BTreeMap::new());
            let mut destinations: Vec<DestinationConfig> = Vec::new();
            for (i, dnode) in self.list(&team, "destinations").into_iter().enumerate() {
                let dfield = format!("{field}.destinations[{i}]");
                let Some(dmap) = dnode.as_mapping() else {
                    self.error(
                        dnode.span(),
                        &dfield,
                        "a destination is a mapping with `kind`".into(),
                        None,
                    );
                    continue;
                };
                let kind = dmap
                    .get_scalar("kind")
                    .map(|k| (k.as_str().to_string(), *k.span()));
                let Some((kind, kind_span)) = kind else {
                    self.error(
                        dmap.span(),
                        &format!("{dfield}.kind"),
                        "destination without `kind`".into(),
                        Some(format!(
                            "kinds: {}",
                            DESTINATION_KINDS
                                .iter()
                                .map(|(k, _)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                    continue;
                };
                let Some((_, secret_field)) = DESTINATION_KINDS.iter().find(|(k, _)| *k == kind)
                else {
                    let hint = did_you_mean(&kind, DESTINATION_KINDS.iter().map(|(k, _)| *k))
                        .map_or_else(
                            || {
                                format!(
                                    "kinds: {}",
                                    DESTINATION_KINDS
                                        .iter()
                                        .map(|(k, _)| *k)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            },
                            |c| format!("did you mean `{c}`?"),
                        );
                    self.error(
                        &kind_span,
                        &format!("{dfield}.kind"),
                        format!("unknown destination kind `{kind}`"),
                        Some(hint),
                    );
                    continue;
                };
                let mut keys: Vec<String> = vec![
                    "kind".into(),
                    "name".into(),
                    "to".into(),
                    "region".into(),
                    "channel".into(),
                    "api_url".into(),
                    "templates".into(),
                    "retry_statuses".into(),
                    "reject_statuses".into(),
                ];
                if let Some(f) = secret_field {
                    keys.extend([f.to_string(), format!("{f}_file"), format!("{f}_env")]);
                }
                let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let Some(dobj) = self.object(dnode, &dfield, &key_refs) else {
                    continue;
                };
                let secret = secret_field.and_then(|f| self.secret(&dobj, f, true));
                let name = dobj
                    .get("name")
                    .and_then(|n| self.string(n, &dobj.path("name")))
                    .map_or_else(|| kind.clone(), |(n, _)| n);
                if destinations.iter().any(|d| d.name == name) {
                    let span = dobj.get("name").map_or(*dobj.span(), |n| *n.span());
                    self.error(
                        &span,
                        &dobj.path("name"),
                        format!(
                            "team `{}` has two destinations named `{name}`",
                            team_name.as_str()
                        ),
                        Some("give each destination of a team its own `name`".into()),
                    );
                }
                let mut options = BTreeMap::new();
                for key in ["region", "channel", "api_url"] {
                    if let Some((v, _)) =
                        dobj.get(key).and_then(|n| self.string(n, &dobj.path(key)))
                    {
                        options.insert(key.to_string(), v);
                    }
                }
                if let Some(to) = dobj.get("to") {
                    let addresses: Vec<String> = to
                        .as_sequence()
                        .map(|s| {
                            s.iter()
                                .filter_map(|n| n.as_scalar().map(|x| x.as_str().to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    options.insert("to".into(), addresses.join(","));
                }
                if kind == "email" && options.get("to").is_none_or(|t| t.is_empty()) {
                    self.error(
                        dobj.span(),
                        &dobj.path("to"),
                        "an e-mail destination needs `to`".into(),
                        Some("add `to: [oncall@example.com]`".into()),
                    );
                }
                let templates = self.template_files(&dobj, &team_templates);
                let mut statuses = |key: &str| -> Vec<u16> {
                    let field = dobj.path(key);
                    let nodes = self.list(&dobj, key);
                    nodes
                        .iter()
                        .filter_map(|n| {
                            let (text, _) = self.string(n, &field)?;
                            match text.parse::<u16>() {
                                Ok(code) if (100..=599).contains(&code) => Some(code),
                                _ => {
                                    self.error(
                                        n.span(),
                                        &field,
                                        format!("`{text}` is not an HTTP status"),
                                        Some("write codes such as 403 or 409".into()),
                                    );
                                    None
                                }
                            }
                        })
                        .collect()
                };
                let retry_statuses = statuses("retry_statuses");
                let reject_statuses = statuses("reject_statuses");
                destinations.push(DestinationConfig {
                    name,
                    kind,
                    secret,
                    options,
                    templates,
                    retry_statuses,
                    reject_statuses,
                });
            }
            teams.insert(team_name.as_str().to_string(), destinations);
        }
        teams
    }

    fn ownership(
        &mut self,
        top: &Obj,
        teams: &BTreeMap<String, Vec<DestinationConfig>>,
        key: Vec<String>,
        service_labels: Vec<String>,
        instance_labels: Vec<String>,
    ) -> Ownership {
        let mut ownership = Ownership {
            key,
            service_labels,
            instance_labels: instance_labels.into(),
            known_teams: teams.keys().cloned().collect(),
            ..Ownership::default()
        };
        let Some(obj) = self.sub_object(top, "ownership", OWNERSHIP_KEYS) else {
            return ownership;
        };
        if let Some(node) = obj.get("services") {
            match node.as_mapping() {
                Some(map) => {
                    for (service, team) in map.iter() {
                        let field = format!("ownership.services.{}", service.as_str());
                        if let Some((team, _)) = self.string(team, &field) {
                            self.known_team(teams, &team, map.get_node(service.as_str()), &field);
                            ownership
                                .services
                                .insert(service.as_str().to_string(), team);
                        }
                    }
                }
                None => self.error(
                    node.span(),
                    "ownership.services",
                    "`services` maps `namespace/service` (or `service`) to a team".into(),
                    None,
                ),
            }
        }
        for (i, node) in self.list(&obj, "rules").into_iter().enumerate() {
            let field = format!("ownership.rules[{i}]");
            let Some(rule) = self.object(node, &field, RULE_KEYS) else {
                continue;
            };
            let matchers = self.matchers(&rule);
            if let Some((team, _)) = self.required_string(&rule, "team") {
                self.known_team(teams, &team, rule.get("team"), &rule.path("team"));
                ownership.rules.push(OwnershipRule { matchers, team });
            }
        }
        if let Some(node) = obj.get("default_team")
            && let Some((team, _)) = self.string(node, "ownership.default_team")
        {
            self.known_team(teams, &team, Some(node), "ownership.default_team");
            ownership.default_team = Some(team);
        }
        ownership
    }

    fn routes(
        &mut self,
        top: &Obj,
        teams: &BTreeMap<String, Vec<DestinationConfig>>,
    ) -> Vec<Route> {
        let mut routes = Vec::new();
        for (i, node) in self.list(top, "routes").into_iter().enumerate() {
            let field = format!("routes[{i}]");
            let Some(route) = self.object(node, &field, ROUTE_KEYS) else {
                continue;
            };
            let matchers = self.matchers(&route);
            let mut destinations = Vec::new();
            for (j, dnode) in self.list(&route, "destinations").into_iter().enumerate() {
                let dfield = format!("{field}.destinations[{j}]");
                let Some((text, _)) = self.string(dnode, &dfield) else {
                    continue;
                };
                let Some((team, name)) = text.split_once('/') else {
                    self.error(
                        dnode.span(),
                        &dfield,
                        format!("destination `{text}` is not `team/name`"),
                        Some("name a destination as team/destination, e.g. payments/chat".into()),
                    );
                    continue;
                };
                let exists = teams
                    .get(team)
                    .is_some_and(|ds| ds.iter().any(|d| d.name == name));
                if !exists {
                    let all: Vec<String> = teams
                        .iter()
                        .flat_map(|(t, ds)| ds.iter().map(move |d| format!("{t}/{}", d.name)))
                        .collect();
                    let hint = did_you_mean(&text, all.iter().map(String::as_str)).map_or_else(
                        || format!("declared destinations: {}", all.join(", ")),
                        |c| format!("did you mean `{c}`?"),
                    );
                    self.error(
                        dnode.span(),
                        &dfield,
                        format!("unknown destination `{text}`"),
                        Some(hint),
                    );
                    continue;
                }
                destinations.push(DestinationRef {
                    team: team.to_string(),
                    name: name.to_string(),
                });
            }
            let continue_matching = self.bool(Some(&route), "continue", false);
            routes.push(Route {
                matchers,
                destinations,
                continue_matching,
            });
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../examples/router.yaml");
        let config = parse("examples/router.yaml", text).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(
            config.auth.bearer_token,
            Some(SecretSource::Env("STACKGEN_ROUTER_TOKEN".into()))
        );
        assert_eq!(config.body_limit, 4 * 1024 * 1024);
        assert_eq!(config.dedup.resolve_hold, 120_000);
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.teams["payments"][0].retry_statuses, vec![409]);
        assert_eq!(config.ownership.default_team.as_deref(), Some("platform"));
    }

    #[test]
    fn every_problem_is_reported_with_a_hint() {
        let text = "listen: nowhere\nauth: {bearer_token_file: /a, bearer_token_env: B}\nteams:\n  web:\n    destinations:\n      - kind: webhok\n      - kind: webhook\n        url: http://x\n        url_env: X\nownership:\n  default_team: wbe\nroutes:\n  - matchers: ['severity=~\"(\"']\n    destinations: [web/chat]\n";
        let problems = parse("r.yaml", text).expect_err("invalid");
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
        let config = parse("r.yaml", &good).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(
            config.postgres,
            Some(PostgresConfig {
                url: SecretSource::File("/run/db-url".into()),
                lease: 45_000,
                ca_file: None,
            })
        );
        let bad = format!(
            "store: {{path: x.db, postgres: {{url: \"postgres://u:hunter2@db/x\"}}}}\n{base}"
        );
        let problems = parse("r.yaml", &bad).expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["store.postgres.url"]);
        assert!(problems[0].redact, "the inline URL is not echoed");
        let both = format!("store: {{path: x.db, postgres: {{url_env: DB}}}}\n{base}");
        let problems = parse("r.yaml", &both).expect_err("invalid");
        assert_eq!(problems[0].field, "store.path");
        let short = format!(
            "store: {{postgres: {{url_env: DB, lease: 5s}}}}\ndelivery: {{timeout: 10s}}\n{base}"
        );
        let problems = parse("r.yaml", &short).expect_err("invalid");
        assert_eq!(problems[0].field, "store.postgres.lease");
    }

    #[test]
    fn inline_secrets_never_show_in_debug() {
        let s = SecretSource::Inline("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
