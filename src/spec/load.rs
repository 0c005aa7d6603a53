//! Turns spec source text into a validated [`Spec`], collecting every problem on the way.
//!
//! The YAML is parsed into a tree that keeps the position of every node; a small [`Checker`] walks
//! it field by field. A bad field is reported and skipped, never ends the walk, so one run lists
//! every problem. Cross-field checks (owners exist, names are unique, e-mail needs SMTP) run last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use marked_yaml::{Node, Span};

use super::metrics::{Convention, Selector, ServiceMetrics};
use super::{
    AlertOverride, AlertmanagerSpec, Cluster, Destination, EscalationStep, EscalationTarget,
    Exporters, GrafanaSpec, IncludedFile, Ingress, Ownership, PeopleSpec, Platform, Port,
    PrometheusSpec, ProxySpec, Resources, RouterSpec, SecretRef, Service, Slo, SloKind, Smtp, Spec,
    Team, TeamRoute, defaults,
};
use crate::config_check::values;
use crate::config_check::{
    Checker, Obj, check_document, join, load_numbered_yaml, load_yaml, smtp,
};
use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::router::dedup::Severity;
use crate::router::destination::DestinationKind;
use crate::router::matcher::Matcher;

mod fleet;
mod grafana;
mod placement;
mod probes;
mod scale_out;

use placement::PLACEMENT_KEYS;

const TOP_KEYS: &[&str] = &[
    "cluster",
    "namespace",
    "prometheus",
    "alertmanager",
    "grafana",
    "exporters",
    "router",
    "teams",
    "services",
    "ownership",
    "alerts",
    "team_files",
    "images",
    "probes",
    "clusters",
];
/// How a team is reached and what it watches: the keys a `teams[]` entry and a team file share.
const TEAM_BODY_KEYS: [&str; 15] = [
    "slack",
    "mattermost",
    "discord",
    "msteams",
    "google_chat",
    "webhook",
    "email",
    "pagerduty",
    "opsgenie",
    "routes",
    "quiet_hours",
    "rule_files",
    "dashboards",
    "responders",
    "escalation",
];
/// A `teams[]` entry of the spec.
const TEAM_KEYS: [&str; 17] = team_keys(&["name"], &["namespaces"]);
/// A team file: one team, how it is reached, the services it owns, its rules and its changes
/// to the default alerts of its services. `name` is taken for `team` (as a `teams[]` entry
/// writes it); `namespaces` is known only to refuse it.
const TEAM_FILE_KEYS: [&str; 20] =
    team_keys(&["team", "name"], &["services", "alerts", "namespaces"]);

/// `before`, the team body's keys, then `after` (a wrong `TOTAL` fails the build).
const fn team_keys<const TOTAL: usize>(
    before: &[&'static str],
    after: &[&'static str],
) -> [&'static str; TOTAL] {
    let mut keys = [""; TOTAL];
    let mut i = 0;
    while i < before.len() {
        keys[i] = before[i];
        i += 1;
    }
    let mut j = 0;
    while j < TEAM_BODY_KEYS.len() {
        keys[i + j] = TEAM_BODY_KEYS[j];
        j += 1;
    }
    let mut k = 0;
    while k < after.len() {
        keys[i + j + k] = after[k];
        k += 1;
    }
    assert!(i + j + k == TOTAL, "TOTAL is the number of keys");
    keys
}
/// Namespaces the stack may not be rendered into.
const RESERVED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// A component's own keys and the placement keys every component takes.
const fn with_placement<const OWN: usize, const TOTAL: usize>(
    own: [&'static str; OWN],
) -> [&'static str; TOTAL] {
    let mut keys = [""; TOTAL];
    let mut i = 0;
    while i < OWN {
        keys[i] = own[i];
        i += 1;
    }
    let mut j = 0;
    while j < PLACEMENT_KEYS.len() {
        keys[OWN + j] = PLACEMENT_KEYS[j];
        j += 1;
    }
    assert!(OWN + PLACEMENT_KEYS.len() == TOTAL);
    keys
}

/// What the platform spec says about a team whose team file says the rest.
const TEAM_GRANT_KEYS: &[&str] = &["name", "namespaces"];
const ALERT_OVERRIDE_KEYS: &[&str] = &["enabled", "for", "severity", "threshold"];
const CLUSTER_KEYS: &[&str] = &["name", "platform", "control_plane_metrics"];
const PROMETHEUS_KEYS: &[&str] = &with_placement::<14, 19>([
    "keep_metrics",
    "remote_write",
    "thanos",
    "external_url",
    "ingress",
    "consumers",
    "scrape_jobs",
    "replicas",
    "retention",
    "volume_size",
    "storage_class",
    "scrape_interval",
    "evaluation_interval",
    "resources",
]);
const ALERTMANAGER_KEYS: &[&str] = &with_placement::<7, 12>([
    "external_url",
    "ingress",
    "replicas",
    "volume_size",
    "storage_class",
    "resources",
    "dead_mans_switch",
]);
const GRAFANA_KEYS: &[&str] = &with_placement::<7, 12>([
    "ingress",
    "oauth",
    "ini",
    "admin_secret",
    "volume_size",
    "storage_class",
    "resources",
]);
const INGRESS_KEYS: &[&str] = &["host", "class_name", "tls_secret", "annotations"];
const EXPORTER_KEYS: &[&str] = &["node_exporter", "kube_state_metrics"];
/// An exporter written as a mapping (`node_exporter: {tolerations: ...}`) instead of `true`.
const EXPORTER_DETAIL_KEYS: &[&str] = &with_placement::<1, 6>(["enabled"]);
const ROUTER_KEYS: &[&str] = &with_placement::<11, 16>([
    "cluster",
    "url",
    "image",
    "auth_secret",
    "platform_team",
    "smtp",
    "resources",
    "replicas",
    "store",
    "people",
    "ingress",
]);
const PEOPLE_KEYS: &[&str] = &["users", "proxy", "viewers"];
const PROXY_KEYS: &[&str] = &["trusted", "user_header", "groups_header"];
const ESCALATION_STEP_KEYS: &[&str] = &["after", "destinations"];
const ROUTER_STORE_KEYS: &[&str] = &["postgres"];
const SMTP_KEYS: [&str; 6] = {
    let [host, port, from, tls, username] = smtp::SERVER_KEYS;
    [host, port, from, tls, username, "password"]
};
const RESOURCES_KEYS: &[&str] = &["requests", "limits"];
const RESOURCE_NAMES: &[&str] = &["cpu", "memory"];
const TEAM_ROUTE_KEYS: &[&str] = &["matchers", "destinations", "continue"];
/// The destinations a team reaches at a URL held in a Secret.
const URL_DESTINATIONS: [DestinationKind; 6] = [
    DestinationKind::Slack,
    DestinationKind::Mattermost,
    DestinationKind::Discord,
    DestinationKind::Msteams,
    DestinationKind::GoogleChat,
    DestinationKind::Webhook,
];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "team",
    "namespace",
    "selector",
    "port",
    "path",
    "alerts",
    "slos",
    "metrics",
];
/// `services[].metrics` written out: the selectors of a service's request metrics.
const METRICS_KEYS: &[&str] = &["requests", "errors", "duration"];
const SLO_KEYS: &[&str] = &["availability", "latency"];
const SLO_OBJECTIVE_KEYS: &[&str] = &["objective", "window", "threshold", "min_rate"];
const SECRET_REF_KEYS: &[&str] = &["secret", "key"];
/// `router.store.postgres`: the URL's Secret key, and optionally the CA bundle's.
const POSTGRES_STORE_KEYS: &[&str] = &["secret", "key", "ca"];

/// Parses and validates spec source text. `file` is only used in diagnostics.
pub fn parse(file: &str, source: &str) -> Result<Spec, Vec<Diagnostic>> {
    check_document(file, source, |checker, root| checker.spec(root, &[]))
}

/// A team file to walk with the platform spec: the name its problems show, the directory its
/// rule files are relative to (its own), and its text.
#[derive(Debug, Clone)]
pub struct TeamFileSource {
    pub name: String,
    pub dir: PathBuf,
    pub text: String,
}

/// A mapping node of a list entry, with its entry's field in the file it is written in
/// (`services[2]`); the cross-checks compare entries of the spec and of every team file.
pub(super) struct Placed<'n> {
    pub(super) field: String,
    pub(super) node: &'n Node,
}

/// A loaded team file.
struct TeamFileRoot<'a> {
    source: &'a TeamFileSource,
    root: Node,
}

impl TeamFileRoot<'_> {
    /// The team the file declares, as written, with where.
    fn team(&self) -> Option<&marked_yaml::types::MarkedScalarNode> {
        let map = self.root.as_mapping()?;
        map.get_scalar("team").or_else(|| map.get_scalar("name"))
    }
}

/// Parses and validates the platform spec together with the team files it includes: one model,
/// every problem of every file at once. A fleet spec gives its first cluster's stack.
pub fn parse_with_team_files(
    file: &str,
    source: &str,
    team_files: &[TeamFileSource],
) -> Result<Spec, Vec<Diagnostic>> {
    parse_fleet_with_team_files(file, source, team_files).map(|mut specs| specs.swap_remove(0))
}

/// [`parse_with_team_files`] for every cluster: a fleet spec (`clusters:`) gives one stack per
/// cluster, in the order written; any other spec gives its one.
pub fn parse_fleet_with_team_files(
    file: &str,
    source: &str,
    team_files: &[TeamFileSource],
) -> Result<Vec<Spec>, Vec<Diagnostic>> {
    let mut checker = Checker::new(file);
    let root = match load_yaml(source) {
        Ok(root) => root,
        Err(err) => return Err(vec![checker.load_error(err)]),
    };
    let mut roots = Vec::new();
    for team_file in team_files {
        let index = checker.add_document(&team_file.name, "the team file");
        match load_numbered_yaml(index, &team_file.text) {
            Ok(root) => roots.push(TeamFileRoot {
                source: team_file,
                root,
            }),
            Err(err) => {
                let diagnostic = checker.load_error_in(
                    &team_file.name,
                    "a team file",
                    "start with `team: NAME`",
                    err,
                );
                checker.diagnostics.push(diagnostic);
            }
        }
    }
    let members = checker.fleet(&root);
    let mut specs = Vec::new();
    for member in &members {
        if let Some(mut spec) = checker.spec(&member.root, &roots) {
            spec.router.remote = member.remote_router.clone();
            spec.router.fleet = member.fleet.clone();
            specs.push(spec);
        }
    }
    checker.sort_diagnostics();
    // The clusters share most of the tree: a problem there is found once per cluster.
    let mut seen: Vec<Diagnostic> = Vec::new();
    checker.diagnostics.retain(|d| {
        let first = !seen.contains(d);
        if first {
            seen.push(d.clone());
        }
        first
    });
    if checker.diagnostics.is_empty() && !specs.is_empty() && specs.len() == members.len() {
        Ok(specs)
    } else {
        Err(checker.diagnostics)
    }
}

/// A team file read on its own (a team's CI, with no platform spec): the team, with no
/// namespaces, and its services, in the default stack namespace unless they name one.
pub fn parse_team_file(
    file: &str,
    source: &str,
    dir: &Path,
) -> Result<(Team, Vec<Service>), Vec<Diagnostic>> {
    let mut checker = Checker::new(file);
    let source = TeamFileSource {
        name: file.to_string(),
        dir: dir.to_path_buf(),
        text: source.to_string(),
    };
    let root = match load_yaml(&source.text) {
        Ok(root) => root,
        Err(err) => {
            return Err(vec![checker.load_error_in(
                file,
                "a team file",
                "start with `team: NAME`",
                err,
            )]);
        }
    };
    let root = TeamFileRoot {
        source: &source,
        root,
    };
    let grants = BTreeMap::new();
    let walked = checker.team_file(&root, defaults::NAMESPACE, &grants, true);
    checker.sort_diagnostics();
    match walked {
        Some((team, services, _)) if checker.diagnostics.is_empty() => Ok((team, services)),
        _ => Err(checker.diagnostics),
    }
}

/// The `team_files` entries of spec source text (a directory or a glob each), with where each
/// is written; nothing when the text does not parse (the spec's own check says why).
pub fn team_file_includes(source: &str) -> Vec<(String, Location)> {
    let Ok(root) = load_yaml(source) else {
        return Vec::new();
    };
    let Some(node) = root.as_mapping().and_then(|m| m.get_node("team_files")) else {
        return Vec::new();
    };
    let scalars: Vec<&Node> = match node.as_sequence() {
        Some(list) => list.iter().collect(),
        None => vec![node],
    };
    scalars
        .into_iter()
        .filter_map(|n| n.as_scalar())
        .map(|s| (s.as_str().to_string(), Location::of_span(s.span())))
        .collect()
}

/// The team a team file's text declares (`team:`), if it parses that far.
pub fn team_of_team_file(source: &str) -> Option<String> {
    let root = load_yaml(source).ok()?;
    let map = root.as_mapping()?;
    let team = map.get_scalar("team").or_else(|| map.get_scalar("name"))?;
    Some(team.as_str().to_string())
}

impl Checker {
    fn volume(&mut self, obj: Option<&Obj>, default: &str) -> (String, u64) {
        let parsed = obj.and_then(|o| {
            let node = o.get("volume_size")?;
            let field = o.path("volume_size");
            let (text, bytes) = self.quantity(node, &field)?;
            if bytes < 1024.0 * 1024.0 * 1024.0 {
                self.error(
                    node.span(),
                    &field,
                    format!("volume `{text}` is too small"),
                    Some("give a volume of at least 1Gi".into()),
                );
                return None;
            }
            Some((text, bytes as u64))
        });
        parsed.unwrap_or_else(|| {
            let bytes = values::parse_quantity(default).unwrap_or(0.0) as u64;
            (default.to_string(), bytes)
        })
    }

    fn resources(
        &mut self,
        parent: Option<&Obj>,
        defaults: &defaults::ResourceDefaults,
    ) -> Resources {
        let Resources {
            mut requests,
            mut limits,
        } = Resources::from_defaults(defaults);
        let Some(obj) = parent.and_then(|p| self.sub_object(p, "resources", RESOURCES_KEYS)) else {
            return Resources { requests, limits };
        };
        let mut parsed: BTreeMap<(&str, String), (f64, Location)> = BTreeMap::new();
        for (section, target) in [("requests", &mut requests), ("limits", &mut limits)] {
            let Some(section_obj) = self.sub_object(&obj, section, RESOURCE_NAMES) else {
                continue;
            };
            for name in RESOURCE_NAMES {
                let Some(node) = section_obj.get(name) else {
                    continue;
                };
                if let Some((text, value)) = self.quantity(node, &section_obj.path(name)) {
                    parsed.insert(
                        (section, name.to_string()),
                        (value, Location::of_span(node.span())),
                    );
                    target.insert(name.to_string(), text);
                }
            }
        }
        for name in RESOURCE_NAMES {
            let request = parsed
                .get(&("requests", name.to_string()))
                .map(|v| v.0)
                .or_else(|| {
                    requests
                        .get(*name)
                        .and_then(|t| values::parse_quantity(t).ok())
                });
            let limit = parsed.get(&("limits", name.to_string())).copied();
            if let (Some(request), Some((limit, location))) = (request, limit)
                && limit < request
            {
                self.diagnostics.push(Diagnostic {
                    file: self.file.clone(),
                    location,
                    field: obj.path(&format!("limits.{name}")),
                    message: format!("{name} limit is below the {name} request"),
                    hint: Some(format!("raise the limit or lower `requests.{name}`")),
                    redact: false,
                    width: None,
                });
            }
        }
        Resources { requests, limits }
    }

    fn spec(&mut self, root: &Node, team_files: &[TeamFileRoot]) -> Option<Spec> {
        let top = self.object(root, "", TOP_KEYS)?;
        let cluster = self.cluster(&top);
        let namespace = self.checked_or_default(
            Some(&top),
            "namespace",
            "namespace name",
            values::check_dns_label,
            defaults::NAMESPACE,
        );
        let platform = cluster.as_ref().map_or(Platform::Generic, |c| c.platform);
        let prometheus = self.prometheus(&top, platform);
        let alertmanager = self.alertmanager(&top, platform);
        let grafana = self.grafana(&top, platform);
        let exporter_obj = self.sub_object(&top, "exporters", EXPORTER_KEYS);
        let (node_exporter, node_exporter_placement) =
            self.exporter(exporter_obj.as_ref(), "node_exporter");
        let (kube_state_metrics, kube_state_metrics_placement) =
            self.exporter(exporter_obj.as_ref(), "kube_state_metrics");
        let exporters = Exporters {
            node_exporter,
            kube_state_metrics,
            node_exporter_placement,
            kube_state_metrics_placement,
        };
        let router = self.router(&top);
        let images = self.images(&top, &defaults::upstream_images(&router.image));
        self.team_file_patterns(&top);
        let claimed = self.claimed_teams(team_files);
        let mut teams = self.teams(&top, &claimed);
        let mut services = self.services(&top, &namespace);
        let probes = self.probes(&top);
        let mut service_nodes: Vec<Placed> = self
            .list(&top, "services")
            .into_iter()
            .enumerate()
            .map(|(index, node)| Placed {
                field: format!("services[{index}]"),
                node,
            })
            .collect();
        let platform_services = service_nodes.len();
        let grants: BTreeMap<String, Vec<String>> = teams
            .iter()
            .map(|t| (t.name.clone(), t.namespaces.clone()))
            .collect();
        let first_files = team_files.iter().filter(|team_file| {
            team_file
                .team()
                .and_then(|team| claimed.get(team.as_str()))
                .is_some_and(|first| std::ptr::eq(*first, *team_file))
        });
        for team_file in first_files {
            let Some((team, owned, placed)) =
                self.team_file(team_file, &namespace, &grants, router.smtp.is_some())
            else {
                continue;
            };
            match teams.iter_mut().find(|t| t.name == team.name) {
                Some(granted) => *granted = team,
                None => teams.push(team),
            }
            services.extend(owned);
            service_nodes.extend(placed);
        }
        self.escalation_targets_exist(&teams);
        let probes = self.probe_owners(probes, &services, &teams);
        self.scrape_job_owners(&prometheus.scrape_jobs, &teams);
        self.namespace_is_the_stacks(&top, &namespace, &teams);
        let alerts = self.alert_overrides(&top);
        let (team_label, service_label) = self.ownership_labels(&top);
        self.cross_checks(
            &top,
            &teams,
            &service_nodes,
            platform_services,
            &namespace,
            &router,
            &team_label,
        );
        Some(Spec {
            cluster: cluster?,
            namespace,
            prometheus,
            alertmanager,
            grafana,
            exporters,
            router,
            teams,
            services,
            ownership: Ownership {
                team_label,
                service_label,
            },
            alerts,
            images,
            probes,
        })
    }

    /// The stack's namespace is its own: not one Kubernetes keeps for itself, nor one a team
    /// owns (the stack's NetworkPolicies and RBAC would then cover the team's workloads).
    fn namespace_is_the_stacks(&mut self, top: &Obj, namespace: &str, teams: &[Team]) {
        let span = top.get("namespace").map_or(*top.span(), |n| *n.span());
        if RESERVED_NAMESPACES.contains(&namespace) {
            self.error(
                &span,
                "namespace",
                format!("the stack cannot run in `{namespace}`"),
                Some("Kubernetes and other tools keep that namespace for themselves; give the stack its own, such as `namespace: monitoring`".into()),
            );
            return;
        }
        if let Some(team) = teams
            .iter()
            .find(|t| t.namespaces.iter().any(|n| n == namespace))
        {
            self.error(
                &span,
                "namespace",
                format!(
                    "the stack's namespace `{namespace}` is also team `{}`'s",
                    team.name
                ),
                Some("give the stack a namespace of its own (`namespace: monitoring`), or take it out of the team's `namespaces`".into()),
            );
        }
    }

    /// An exporter of `exporters:`: `true`/`false`, or a mapping of `enabled` and where its pods
    /// run.
    fn exporter(
        &mut self,
        exporters: Option<&Obj>,
        key: &str,
    ) -> (bool, super::placement::Placement) {
        let Some(node) = exporters.and_then(|e| e.get(key)) else {
            return (true, Default::default());
        };
        if node.as_mapping().is_none() {
            return (self.bool(exporters, key, true), Default::default());
        }
        let field = exporters.map_or(key.to_string(), |e| e.path(key));
        let Some(obj) = self.object(node, &field, EXPORTER_DETAIL_KEYS) else {
            return (true, Default::default());
        };
        (
            self.bool(Some(&obj), "enabled", true),
            self.placement(Some(&obj)),
        )
    }

    /// `alerts:` — disable or tune default alerts by name.
    fn alert_overrides(&mut self, top: &Obj) -> BTreeMap<String, AlertOverride> {
        match top.get("alerts") {
            Some(node) => self.alert_override_map(node, "alerts", false),
            None => BTreeMap::new(),
        }
    }

    /// A mapping of default alert names to their changes, at `field`; `per_service`: only the
    /// alerts whose alerts carry a service can be named (`services[].alerts`).
    fn alert_override_map(
        &mut self,
        node: &Node,
        field: &str,
        per_service: bool,
    ) -> BTreeMap<String, AlertOverride> {
        let mut overrides = BTreeMap::new();
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                field,
                format!("`{field}` must be a mapping of alert names"),
                Some(if per_service {
                    "write e.g. `alerts: {ServiceHighLatency: {threshold: 30}}`".into()
                } else {
                    "write e.g. `alerts: {KubeNodePressure: {enabled: false}}`".into()
                }),
            );
            return overrides;
        };
        let known: Vec<&crate::rules::defaults::DefaultAlert> = crate::rules::defaults::alerts()
            .iter()
            .filter(|a| a.per_service || !per_service)
            .collect();
        for (name, value) in map.iter() {
            let field = join(field, name.as_str());
            let Some(alert) = known.iter().find(|a| a.name == name.as_str()) else {
                if per_service
                    && crate::rules::defaults::alerts()
                        .iter()
                        .any(|a| a.name == name.as_str())
                {
                    self.error(
                        name.span(),
                        &field,
                        format!(
                            "alert `{}` is not about a service, so it cannot be changed for one",
                            name.as_str()
                        ),
                        Some(
                            "change it for the whole cluster under the top-level `alerts:`".into(),
                        ),
                    );
                    continue;
                }
                let hint = match did_you_mean(name.as_str(), known.iter().map(|a| a.name.as_str())) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "only default alerts can be changed here; list them with `grep alert: stack/prometheus/rules/*.yaml`".to_string(),
                };
                self.error(
                    name.span(),
                    &field,
                    format!("unknown default alert `{}`", name.as_str()),
                    Some(hint),
                );
                continue;
            };
            let Some(obj) = self.object(value, &field, ALERT_OVERRIDE_KEYS) else {
                continue;
            };
            let o = Some(&obj);
            let enabled = self.bool(o, "enabled", true);
            let for_duration =
                self.optional_checked(&obj, "for", "duration", values::check_duration);
            let severity = obj.get("severity").and_then(|n| {
                let (text, _) = self.string(n, &obj.path("severity"))?;
                if crate::rules::lint::SEVERITIES.contains(&text.as_str()) {
                    Some(text)
                } else {
                    self.error(
                        n.span(),
                        &obj.path("severity"),
                        format!("invalid severity `{text}`"),
                        Some("use critical, warning or info".into()),
                    );
                    None
                }
            });
            let threshold = obj.get("threshold").and_then(|n| {
                let (text, _) = self.string(n, &obj.path("threshold"))?;
                if !alert.has_threshold {
                    self.error(n.span(), &obj.path("threshold"), format!("alert `{}` has no threshold to override", alert.name), Some(format!("its expression does not end in a comparison with a number; see stack/prometheus/rules/{}", alert.file)));
                    return None;
                }
                match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => Some(text),
                    _ => {
                        self.error(n.span(), &obj.path("threshold"), format!("invalid threshold `{text}`"), Some("write a number such as 0.1".into()));
                        None
                    }
                }
            });
            overrides.insert(
                name.as_str().to_string(),
                AlertOverride {
                    enabled,
                    for_duration,
                    severity,
                    threshold,
                },
            );
        }
        overrides
    }

    fn cluster(&mut self, top: &Obj) -> Option<Cluster> {
        let node = self.required(
            top,
            "cluster",
            "add `cluster: {name: my-cluster, platform: generic}`",
        )?;
        let obj = self.object(node, "cluster", CLUSTER_KEYS)?;
        let name =
            self.required_string(&obj, "name").and_then(
                |(name, _)| match values::check_label_value(&name).and_then(|()| {
                    if name.is_empty() {
                        Err("the cluster name labels every series; it cannot be empty".into())
                    } else {
                        Ok(())
                    }
                }) {
                    Ok(()) => Some(name),
                    Err(hint) => {
                        let node = obj.get("name")?;
                        self.error(
                            node.span(),
                            "cluster.name",
                            format!("invalid cluster name `{name}`"),
                            Some(hint),
                        );
                        None
                    }
                },
            );
        let platform = match obj.get("platform") {
            None => Some(Platform::Generic),
            Some(node) => {
                let (text, _) = self.string(node, "cluster.platform")?;
                let found = Platform::ALL
                    .iter()
                    .find(|(n, _)| *n == text)
                    .map(|(_, p)| *p);
                if found.is_none() {
                    let names = Platform::ALL.iter().map(|(n, _)| *n);
                    let hint = match did_you_mean(&text, names.clone()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("platforms: {}", names.collect::<Vec<_>>().join(", ")),
                    };
                    self.error(
                        node.span(),
                        "cluster.platform",
                        format!("unknown platform `{text}`"),
                        Some(hint),
                    );
                }
                found
            }
        };
        let control_plane_metrics = self.bool(Some(&obj), "control_plane_metrics", false);
        if let (true, Some(platform)) = (control_plane_metrics, platform)
            && !platform.exposes_control_plane()
        {
            let span = obj
                .get("control_plane_metrics")
                .map_or(*obj.span(), |n| *n.span());
            self.error(
                &span,
                "cluster.control_plane_metrics",
                format!("a {} cluster's control plane cannot be scraped", platform.name()),
                Some("its provider runs the scheduler, controller-manager and etcd out of reach; only kubeadm and kind clusters expose them".into()),
            );
        }
        Some(Cluster {
            name: name?,
            platform: platform?,
            control_plane_metrics,
        })
    }

    fn storage_class(&mut self, obj: Option<&Obj>, platform: Platform) -> Option<String> {
        obj.and_then(|o| {
            self.optional_checked(
                o,
                "storage_class",
                "storage class name",
                values::check_dns_subdomain,
            )
        })
        .or_else(|| defaults::storage_class(platform).map(str::to_string))
    }

    fn prometheus(&mut self, top: &Obj, platform: Platform) -> PrometheusSpec {
        let obj = self.sub_object(top, "prometheus", PROMETHEUS_KEYS);
        let o = obj.as_ref();
        let (volume_size, volume_bytes) = self.volume(o, defaults::PROMETHEUS_VOLUME);
        let scrape_interval = self.checked_or_default(
            o,
            "scrape_interval",
            "scrape interval",
            values::check_scrape_interval,
            defaults::SCRAPE_INTERVAL,
        );
        PrometheusSpec {
            replicas: self.uint(o, "replicas", 1, 10, defaults::PROMETHEUS_REPLICAS.into()) as u32,
            retention: self.checked_or_default(
                o,
                "retention",
                "duration",
                values::check_duration,
                defaults::PROMETHEUS_RETENTION,
            ),
            volume_size,
            volume_bytes,
            storage_class: self.storage_class(o, platform),
            scrape_jobs: o
                .map(|o| self.scrape_jobs(o, &scrape_interval))
                .unwrap_or_default(),
            scrape_interval,
            evaluation_interval: self.checked_or_default(
                o,
                "evaluation_interval",
                "duration",
                values::check_duration,
                defaults::EVALUATION_INTERVAL,
            ),
            resources: self.resources(o, &defaults::PROMETHEUS_RESOURCES),
            keep_metrics: o.map(|o| self.keep_metrics(o)).unwrap_or_default(),
            placement: self.placement(o),
            remote_write: o.map(|o| self.remote_writes(o)).unwrap_or_default(),
            thanos: o.and_then(|o| self.thanos(o)),
            external: self.external(o, "prometheus.example.com"),
            consumers: o.map(|o| self.consumers(o)).unwrap_or_default(),
        }
    }

    /// `prometheus.keep_metrics`: metric names, or regexes of names, the exporters' jobs keep
    /// besides what the stack reads.
    fn keep_metrics(&mut self, obj: &Obj) -> Vec<String> {
        let field = obj.path("keep_metrics");
        let mut kept = Vec::new();
        for (i, node) in self.list(obj, "keep_metrics").into_iter().enumerate() {
            let item = format!("{field}[{i}]");
            let Some((pattern, _)) = self.string(node, &item) else {
                continue;
            };
            match regex::Regex::new(&format!("^(?:{pattern})$")) {
                Ok(_) if !pattern.is_empty() => kept.push(format!("(?:{pattern})")),
                _ => self.error(
                    node.span(),
                    &item,
                    format!("`{pattern}` is not a regex of metric names"),
                    Some("write a metric name (`node_hwmon_temp_celsius`) or a regex of names (`container_fs_.*`)".into()),
                ),
            }
        }
        kept
    }

    fn alertmanager(&mut self, top: &Obj, platform: Platform) -> AlertmanagerSpec {
        let obj = self.sub_object(top, "alertmanager", ALERTMANAGER_KEYS);
        let o = obj.as_ref();
        AlertmanagerSpec {
            replicas: self.uint(o, "replicas", 1, 5, defaults::ALERTMANAGER_REPLICAS.into()) as u32,
            volume_size: self.volume(o, defaults::ALERTMANAGER_VOLUME).0,
            storage_class: self.storage_class(o, platform),
            resources: self.resources(o, &defaults::ALERTMANAGER_RESOURCES),
            dead_mans_switch: o.and_then(|a| {
                self.optional_checked(a, "dead_mans_switch", "ping URL", values::check_ping_url)
            }),
            placement: self.placement(o),
            external: self.external(o, "alertmanager.example.com"),
        }
    }

    /// An `ingress: {host, class_name, tls_secret}` of `parent` (`example`: a host for the hint).
    fn ingress(&mut self, parent: &Obj, example: &str) -> Option<Ingress> {
        let i = self.sub_object(parent, "ingress", INGRESS_KEYS)?;
        let host = self
            .required(&i, "host", &format!("add `host: {example}`"))
            .and_then(|node| {
                self.checked_string(
                    node,
                    &i.path("host"),
                    "host name",
                    values::check_dns_subdomain,
                )
            });
        let class_name = self.optional_checked(
            &i,
            "class_name",
            "ingress class name",
            values::check_dns_subdomain,
        );
        let tls_secret =
            self.optional_checked(&i, "tls_secret", "Secret name", values::check_dns_subdomain);
        let annotations = self.annotations(&i);
        Some(Ingress {
            host: host?,
            class_name,
            tls_secret,
            annotations,
        })
    }

    /// `annotations:` of an object stackgen renders (an ingress controller's or cert-manager's),
    /// keys checked as Kubernetes checks them.
    fn annotations(&mut self, obj: &Obj) -> BTreeMap<String, String> {
        let annotations = self.string_map(obj, "annotations");
        if let Some(map) = obj.get("annotations").and_then(Node::as_mapping) {
            for key in map.keys() {
                if let Err(hint) = values::check_label_key(key.as_str()) {
                    self.error(
                        key.span(),
                        &obj.path(&format!("annotations.{}", key.as_str())),
                        format!("invalid annotation `{}`", key.as_str()),
                        Some(hint.replace("a label key", "an annotation key")),
                    );
                }
            }
        }
        annotations
    }

    fn grafana(&mut self, top: &Obj, platform: Platform) -> GrafanaSpec {
        let obj = self.sub_object(top, "grafana", GRAFANA_KEYS);
        let o = obj.as_ref();
        let ingress = o.and_then(|g| self.ingress(g, "grafana.example.com"));
        let ingress_given = o.is_some_and(|g| g.get("ingress").is_some());
        GrafanaSpec {
            admin_secret: self.checked_or_default(
                o,
                "admin_secret",
                "Secret name",
                values::check_dns_subdomain,
                defaults::GRAFANA_ADMIN_SECRET,
            ),
            volume_size: self.volume(o, defaults::GRAFANA_VOLUME).0,
            storage_class: self.storage_class(o, platform),
            resources: self.resources(o, &defaults::GRAFANA_RESOURCES),
            placement: self.placement(o),
            oauth: o.and_then(|g| self.grafana_oauth(g, ingress_given)),
            ini: o.map(|g| self.grafana_ini(g)).unwrap_or_default(),
            ingress,
        }
    }

    fn router(&mut self, top: &Obj) -> RouterSpec {
        let obj = self.sub_object(top, "router", ROUTER_KEYS);
        let o = obj.as_ref();
        let smtp = o
            .and_then(|r| self.sub_object(r, "smtp", &SMTP_KEYS))
            .and_then(|s| self.smtp(&s));
        let postgres_node = o
            .and_then(|r| self.sub_object(r, "store", ROUTER_STORE_KEYS))
            .and_then(|store| store.get("postgres"));
        let postgres = postgres_node.and_then(|node| {
            self.secret_ref_in(node, "router.store.postgres", POSTGRES_STORE_KEYS)
        });
        let postgres_ca = postgres_node
            .and_then(Node::as_mapping)
            .and_then(|m| m.get_node("ca"))
            .filter(|n| !crate::config_check::is_null(n))
            .and_then(|node| self.secret_ref(node, "router.store.postgres.ca"));
        let replicas = self.uint(o, "replicas", 1, 10, defaults::ROUTER_REPLICAS.into()) as u32;
        // A store given but wrong has its own errors; this one is for a store not given.
        if replicas > 1
            && postgres_node.is_none()
            && let Some(node) = o.and_then(|r| r.get("replicas"))
        {
            self.error(
                node.span(),
                "router.replicas",
                format!("{replicas} router replicas need the shared PostgreSQL store"),
                Some("the embedded store serves one replica; add `store: {postgres: {secret: NAME, key: url}}` under `router` (a Secret holding a postgres:// URL), or keep `replicas: 1`".into()),
            );
        }
        RouterSpec {
            replicas,
            postgres,
            postgres_ca,
            image: self.checked_or_default(
                o,
                "image",
                "image",
                values::check_pinned_image,
                defaults::ROUTER_IMAGE,
            ),
            auth_secret: self.checked_or_default(
                o,
                "auth_secret",
                "Secret name",
                values::check_dns_subdomain,
                defaults::ROUTER_AUTH_SECRET,
            ),
            platform_team: o.and_then(|r| {
                self.optional_checked(r, "platform_team", "team name", values::check_dns_label)
            }),
            smtp,
            resources: self.resources(o, &defaults::ROUTER_RESOURCES),
            people: o
                .and_then(|r| self.sub_object(r, "people", PEOPLE_KEYS))
                .map(|p| self.people(&p)),
            ingress: o.and_then(|r| self.ingress(r, "incidents.example.com")),
            placement: self.placement(o),
            remote: None,
            fleet: Vec::new(),
        }
    }

    /// `router.people`: the users file's Secret, the proxy and the viewers.
    fn people(&mut self, obj: &Obj) -> PeopleSpec {
        let users = obj
            .get("users")
            .and_then(|n| self.secret_ref(n, &obj.path("users")));
        let proxy = self.sub_object(obj, "proxy", PROXY_KEYS).map(|proxy| {
            let field = proxy.path("trusted");
            let mut trusted = Vec::new();
            for node in self.list(&proxy, "trusted") {
                let Some((text, _)) = self.string(node, &field) else {
                    continue;
                };
                if crate::router::people::Network::parse(&text).is_some() {
                    trusted.push(text);
                } else {
                    self.error(
                        node.span(),
                        &field,
                        format!("`{text}` is not an address or a network"),
                        Some(
                            "write the proxy's addresses: `10.0.0.0/8`, `192.0.2.7` or `::1`"
                                .into(),
                        ),
                    );
                }
            }
            if trusted.is_empty() && proxy.get("trusted").is_none() {
                self.error(
                    proxy.span(),
                    &field,
                    "the proxy trusts no address: nobody could sign in through it".into(),
                    Some("list the addresses the proxy connects from (its pod network)".into()),
                );
            }
            ProxySpec {
                trusted,
                user_header: self.optional_text(&proxy, "user_header"),
                groups_header: self.optional_text(&proxy, "groups_header"),
            }
        });
        if users.is_none() && proxy.is_none() {
            self.error(
                obj.span(),
                &obj.field,
                "`router.people` gives nobody a way to sign in".into(),
                Some(
                    "add `users: {secret: NAME, key: users}` (htpasswd -B lines) or `proxy`".into(),
                ),
            );
        }
        PeopleSpec {
            users,
            proxy,
            viewers: self.principals(obj, "viewers"),
        }
    }

    /// `escalation`: the team's steps, each `{after: 10m, destinations: [pagerduty]}` (the
    /// team's own destinations, or `team/kind` for another team's).
    fn escalation(&mut self, obj: &Obj, destinations: &[Destination]) -> Vec<EscalationStep> {
        let declared: Vec<&str> = destinations.iter().map(|d| d.kind().name()).collect();
        let mut steps: Vec<EscalationStep> = Vec::new();
        let mut last: Option<u64> = None;
        for (i, node) in self.list(obj, "escalation").into_iter().enumerate() {
            let field = format!("{}[{i}]", obj.path("escalation"));
            let Some(step) = self.object(node, &field, ESCALATION_STEP_KEYS) else {
                continue;
            };
            let Some((after, location)) = self.required_string(&step, "after") else {
                continue;
            };
            let Ok(ms) = values::parse_duration_ms(&after) else {
                self.error_at(
                    location,
                    &step.path("after"),
                    format!("`{after}` is not a duration"),
                    Some("write 0s, 10m, 1h30m".into()),
                );
                continue;
            };
            if i == 0 && ms != 0 {
                self.error_at(
                    location,
                    &step.path("after"),
                    format!(
                        "the first step comes after {after}: nobody is told when an incident opens"
                    ),
                    Some("make the first step `after: 0s`".into()),
                );
            }
            if last.is_some_and(|before| ms <= before) {
                self.error_at(
                    location,
                    &step.path("after"),
                    format!("step {i} comes no later than the step before it"),
                    Some("list the steps in the order they come, each later than the last".into()),
                );
            }
            last = Some(ms);
            let mut targets = Vec::new();
            let nodes = self.list(&step, "destinations");
            if nodes.is_empty() {
                self.error(
                    step.span(),
                    &step.path("destinations"),
                    format!("{field} tells nobody"),
                    Some(format!(
                        "name the team's destinations ({}) or another team's as team/kind",
                        declared.join(", ")
                    )),
                );
            }
            for (j, d) in nodes.into_iter().enumerate() {
                let dfield = format!("{}[{j}]", step.path("destinations"));
                let Some((text, location)) = self.string(d, &dfield) else {
                    continue;
                };
                let (team, kind_text) = match text.split_once('/') {
                    Some((team, kind)) => (Some(team.to_string()), kind),
                    None => (None, text.as_str()),
                };
                let kind = DestinationKind::parse(kind_text)
                    .filter(|k| team.is_some() || declared.contains(&k.name()));
                match kind {
                    Some(kind) => targets.push(EscalationTarget {
                        team,
                        kind,
                        file: self.file_of(d.span()).to_string(),
                        location,
                    }),
                    None => {
                        let hint = did_you_mean(&text, declared.iter().copied()).map_or_else(
                            || {
                                format!(
                                    "the team's destinations: {}; another team's: team/kind",
                                    declared.join(", ")
                                )
                            },
                            |c| format!("did you mean `{c}`?"),
                        );
                        self.error(
                            d.span(),
                            &dfield,
                            format!("the team has no `{text}` destination"),
                            Some(hint),
                        );
                    }
                }
            }
            steps.push(EscalationStep {
                after,
                destinations: targets,
            });
        }
        steps
    }

    /// Every escalation step's destination of another team is one that team has.
    fn escalation_targets_exist(&mut self, teams: &[Team]) {
        for team in teams {
            for step in &team.escalation {
                for target in &step.destinations {
                    let Some(other) = &target.team else {
                        continue;
                    };
                    let exists = teams
                        .iter()
                        .find(|t| &t.name == other)
                        .map(|t| t.destinations.iter().any(|d| d.kind() == target.kind));
                    let (message, hint) = match exists {
                        Some(true) => continue,
                        Some(false) => (
                            format!("team `{other}` has no `{}` destination", target.kind.name()),
                            format!("name one of team {other}'s destinations"),
                        ),
                        None => (
                            format!("no team `{other}`"),
                            "name a team of the spec or of a team file".to_string(),
                        ),
                    };
                    self.diagnostics.push(Diagnostic {
                        file: target.file.clone(),
                        location: target.location,
                        field: format!("teams.{}.escalation", team.name),
                        message,
                        hint: Some(hint),
                        redact: false,
                        width: None,
                    });
                }
            }
        }
    }

    fn smtp(&mut self, obj: &Obj) -> Option<Smtp> {
        let server = self.smtp_server(obj);
        let password = obj
            .get("password")
            .and_then(|n| self.secret_ref(n, &obj.path("password")));
        Some(Smtp {
            server: server?,
            password,
        })
    }

    /// A `{secret, key}` reference. A plain string here is a secret pasted inline: refused.
    fn secret_ref(&mut self, node: &Node, field: &str) -> Option<SecretRef> {
        self.secret_ref_in(node, field, SECRET_REF_KEYS)
    }

    /// A `{secret: NAME, key: KEY}` reference in a mapping that may allow more `keys`.
    fn secret_ref_in(&mut self, node: &Node, field: &str, keys: &[&str]) -> Option<SecretRef> {
        if node.as_scalar().is_some() {
            self.error(
                node.span(),
                field,
                format!("`{field}` is a secret given as a literal value"),
                Some("store it in a Kubernetes Secret and reference it: `{secret: NAME, key: KEY}` (kubectl create secret generic NAME --from-literal=KEY=...)".into()),
            );
            if let Some(last) = self.diagnostics.last_mut() {
                last.redact = true;
            }
            return None;
        }
        let obj = self.object(node, field, keys)?;
        let secret = self
            .required(
                &obj,
                "secret",
                "name the Kubernetes Secret that holds the value",
            )
            .and_then(|n| {
                self.checked_string(
                    n,
                    &obj.path("secret"),
                    "Secret name",
                    values::check_dns_subdomain,
                )
            });
        let key = self
            .required(&obj, "key", "name the key inside the Secret")
            .and_then(|n| {
                self.checked_string(n, &obj.path("key"), "Secret key", values::check_secret_key)
            });
        Some(SecretRef {
            secret: secret?,
            key: key?,
        })
    }

    /// The platform spec's teams. A team with a team file (`claimed`) gets only its namespaces
    /// here; its file says the rest.
    fn teams(&mut self, top: &Obj, claimed: &BTreeMap<String, &TeamFileRoot>) -> Vec<Team> {
        let mut teams = Vec::new();
        for (index, node) in self.list(top, "teams").into_iter().enumerate() {
            let field = format!("teams[{index}]");
            let Some(obj) = self.object(node, &field, &TEAM_KEYS) else {
                continue;
            };
            let name = self
                .required(&obj, "name", "add `name: my-team`")
                .and_then(|n| {
                    self.checked_string(n, &obj.path("name"), "team name", values::check_dns_label)
                });
            let namespaces = self.team_namespaces(&obj);
            if let Some(team_file) = name.as_deref().and_then(|n| claimed.get(n)) {
                self.defined_once(&obj, team_file);
                teams.push(Team {
                    name: name.unwrap_or_default(),
                    destinations: Vec::new(),
                    severities: BTreeMap::new(),
                    routes: Vec::new(),
                    namespaces,
                    quiet_hours: Vec::new(),
                    rule_files: Vec::new(),
                    dashboards: Vec::new(),
                    responders: Vec::new(),
                    escalation: Vec::new(),
                });
                continue;
            }
            if let Some(team) = self.team_body(&obj, name, namespaces, Path::new("")) {
                teams.push(team);
            }
        }
        teams
    }

    /// A team whose team file says how it is reached is given only `name` and `namespaces` in
    /// the platform spec: anything else would be a second definition.
    fn defined_once(&mut self, grant: &Obj, team_file: &TeamFileRoot) {
        let Some(extra) = grant
            .map
            .keys()
            .find(|key| !TEAM_GRANT_KEYS.contains(&key.as_str()))
        else {
            return;
        };
        let Some(team) = team_file.team() else {
            return;
        };
        let place = self.place_of(extra.span(), team.span());
        self.error(
            team.span(),
            "team",
            format!(
                "team `{}` is defined twice: the platform spec gives it `{}` too ({place})",
                team.as_str(),
                extra.as_str()
            ),
            Some(format!(
                "a team is defined once: keep its destinations, routes and rule files in this file and only `{{name: {}, namespaces: [...]}}` in the platform spec",
                team.as_str()
            )),
        );
    }

    /// The files a team names under `key` (`rule_files`, `dashboards`), relative to `dir` (the
    /// directory of the team file naming them; empty: the spec's).
    fn named_files(&mut self, obj: &Obj, key: &str, dir: &Path) -> Vec<IncludedFile> {
        let mut files = Vec::new();
        for (i, n) in self.list(obj, key).into_iter().enumerate() {
            if let Some((path, location)) = self.string(n, &format!("{}[{i}]", obj.path(key))) {
                files.push(IncludedFile {
                    path,
                    location,
                    named_in: self.file_of(n.span()).to_string(),
                    dir: dir.to_path_buf(),
                    contents: None,
                });
            }
        }
        files
    }

    /// How a team is reached and what it watches: its destinations, routes, quiet hours, rule
    /// files and dashboards (the platform spec's `teams[]` entry, or a team file in `dir`).
    fn team_body(
        &mut self,
        obj: &Obj,
        name: Option<String>,
        namespaces: Vec<String>,
        dir: &Path,
    ) -> Option<Team> {
        let rule_files = self.named_files(obj, "rule_files", dir);
        let dashboards = self.named_files(obj, "dashboards", dir);
        let destinations = self.team_destinations(obj);
        let severities = self.destination_severities(obj);
        let routes = self.team_routes(obj, &destinations);
        let quiet_hours = self.quiet_hours(obj);
        let responders = self.principals(obj, "responders");
        let escalation = self.escalation(obj, &destinations);
        let declares_one = DestinationKind::ALL
            .iter()
            .any(|kind| obj.get(kind.name()).is_some());
        if !declares_one {
            self.error(
                obj.span(),
                &obj.field,
                format!(
                    "team `{}` has no destination: its alerts would reach nobody",
                    name.as_deref().unwrap_or("?")
                ),
                Some("give it one: slack, mattermost, discord, msteams, google_chat, webhook, email, pagerduty or opsgenie".into()),
            );
        }
        let team = Team {
            name: name?,
            destinations,
            severities,
            routes,
            namespaces,
            quiet_hours,
            rule_files,
            dashboards,
            responders,
            escalation,
        };
        self.every_severity_has_a_destination(&team, obj);
        Some(team)
    }

    /// `namespaces`: where the team owns every workload, listed as a service or not.
    fn team_namespaces(&mut self, obj: &Obj) -> Vec<String> {
        let field = obj.path("namespaces");
        self.list(obj, "namespaces")
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| {
                self.checked_string(
                    n,
                    &format!("{field}[{i}]"),
                    "namespace name",
                    values::check_dns_label,
                )
            })
            .collect()
    }

    /// `routes`: which of the team's destinations an alert of the team goes to, in order; the
    /// first matching route without `continue` ends the search, and an alert no route matches
    /// goes to every destination of the team.
    fn team_routes(&mut self, obj: &Obj, destinations: &[Destination]) -> Vec<TeamRoute> {
        let mut routes = Vec::new();
        for (i, node) in self.list(obj, "routes").into_iter().enumerate() {
            let field = format!("{}[{i}]", obj.path("routes"));
            let Some(route) = self.object(node, &field, TEAM_ROUTE_KEYS) else {
                continue;
            };
            let matchers: Vec<String> = self
                .matchers(&route)
                .iter()
                .map(Matcher::to_string)
                .collect();
            let declared: Vec<&str> = destinations.iter().map(|d| d.kind().name()).collect();
            let mut to = Vec::new();
            let nodes = self.list(&route, "destinations");
            if nodes.is_empty() {
                self.error(
                    route.span(),
                    &route.path("destinations"),
                    format!("{field} sends the alerts it matches to no destination"),
                    Some(format!(
                        "name the team's destinations: {}",
                        declared.join(", ")
                    )),
                );
            }
            for (j, d) in nodes.into_iter().enumerate() {
                let dfield = format!("{}[{j}]", route.path("destinations"));
                let Some((text, _)) = self.string(d, &dfield) else {
                    continue;
                };
                match DestinationKind::parse(&text).filter(|k| declared.contains(&k.name())) {
                    Some(kind) => to.push(kind),
                    None => {
                        let hint = did_you_mean(&text, declared.iter().copied()).map_or_else(
                            || format!("the team's destinations: {}", declared.join(", ")),
                            |c| format!("did you mean `{c}`?"),
                        );
                        self.error(
                            d.span(),
                            &dfield,
                            format!("the team has no `{text}` destination"),
                            Some(hint),
                        );
                    }
                }
            }
            let continue_matching = self.bool(Some(&route), "continue", false);
            routes.push(TeamRoute {
                matchers,
                destinations: to,
                continue_matching,
            });
        }
        routes
    }

    /// The `severities` each destination of a team takes, where the spec says.
    fn destination_severities(&mut self, obj: &Obj) -> BTreeMap<DestinationKind, Vec<Severity>> {
        let mut taken = BTreeMap::new();
        for kind in DestinationKind::ALL {
            let Some(map) = obj.get(kind.name()).and_then(Node::as_mapping) else {
                continue;
            };
            let destination = Obj {
                map,
                field: obj.path(kind.name()),
            };
            if let Some(names) =
                self.names_from(&destination, "severities", "severity", &Severity::NAMED)
            {
                taken.insert(
                    kind,
                    names.into_iter().filter_map(Severity::named).collect(),
                );
            }
        }
        taken
    }

    /// A team has a destination for every severity; otherwise its alerts of that severity
    /// would reach nobody.
    fn every_severity_has_a_destination(&mut self, team: &Team, obj: &Obj) {
        if team.destinations.is_empty() {
            return;
        }
        let missing =
            Severity::untaken(|s| team.destinations.iter().any(|d| team.takes(d.kind(), s)));
        if missing.is_empty() {
            return;
        }
        self.error(
            obj.span(),
            &obj.field,
            format!(
                "no destination of team `{}` takes {} alerts: they would reach nobody",
                team.name,
                missing.join(" or ")
            ),
            Some("a destination takes every severity unless its `severities` (for a pager, its kind: critical only) says otherwise; add a chat or e-mail destination, or list the severity in a destination's `severities`".into()),
        );
    }

    /// A team's destinations, one key per kind.
    fn team_destinations(&mut self, obj: &Obj) -> Vec<Destination> {
        let mut destinations = Vec::new();
        for kind in URL_DESTINATIONS {
            let Some(dest) = self.sub_object(obj, kind.name(), &["url", "severities"]) else {
                continue;
            };
            let url = self
                .required(&dest, "url", "add `url: {secret: NAME, key: KEY}`")
                .and_then(|n| self.secret_ref(n, &dest.path("url")));
            let Some(url) = url else { continue };
            destinations.push(match kind {
                DestinationKind::Slack => Destination::Slack { url },
                DestinationKind::Mattermost => Destination::Mattermost { url },
                DestinationKind::Discord => Destination::Discord { url },
                DestinationKind::Msteams => Destination::Msteams { url },
                DestinationKind::GoogleChat => Destination::GoogleChat { url },
                DestinationKind::Webhook => Destination::Webhook { url },
                DestinationKind::Email
                | DestinationKind::Pagerduty
                | DestinationKind::Opsgenie
                | DestinationKind::Log => continue,
            });
        }
        if let Some(email) = self.sub_object(obj, "email", &["to", "severities"]) {
            let mut to = Vec::new();
            for (i, n) in self.list(&email, "to").into_iter().enumerate() {
                if let Some(address) = self.checked_string(
                    n,
                    &format!("{}[{i}]", email.path("to")),
                    "e-mail address",
                    values::check_email,
                ) {
                    to.push(address);
                }
            }
            if to.is_empty() {
                self.error(
                    email.span(),
                    &email.path("to"),
                    "`email` needs at least one address in `to`".into(),
                    Some("add `to: [oncall@example.com]`".into()),
                );
            } else {
                destinations.push(Destination::Email { to });
            }
        }
        if let Some(pd) = self.sub_object(obj, "pagerduty", &["routing_key", "severities"]) {
            let routing_key = self
                .required(
                    &pd,
                    "routing_key",
                    "add `routing_key: {secret: NAME, key: KEY}` (an Events API v2 integration key)",
                )
                .and_then(|n| self.secret_ref(n, &pd.path("routing_key")));
            if let Some(routing_key) = routing_key {
                destinations.push(Destination::Pagerduty { routing_key });
            }
        }
        if let Some(og) = self.sub_object(obj, "opsgenie", &["api_key", "region", "severities"]) {
            let region = og.get("region").map_or(Some("us".to_string()), |n| {
                let (text, _) = self.string(n, &og.path("region"))?;
                if text == "us" || text == "eu" {
                    Some(text)
                } else {
                    self.error(
                        n.span(),
                        &og.path("region"),
                        format!("unknown Opsgenie region `{text}`"),
                        Some("use `us` or `eu`".into()),
                    );
                    None
                }
            });
            let api_key = self
                .required(&og, "api_key", "add `api_key: {secret: NAME, key: KEY}`")
                .and_then(|n| self.secret_ref(n, &og.path("api_key")));
            if let (Some(api_key), Some(region)) = (api_key, region) {
                destinations.push(Destination::Opsgenie { api_key, region });
            }
        }
        destinations
    }

    fn services(&mut self, top: &Obj, stack_namespace: &str) -> Vec<Service> {
        let mut services = Vec::new();
        for (index, node) in self.list(top, "services").into_iter().enumerate() {
            let field = format!("services[{index}]");
            let Some(obj) = self.object(node, &field, SERVICE_KEYS) else {
                continue;
            };
            let team = self.required_string(&obj, "team").map(|(t, _)| t);
            services.extend(self.service(&obj, team, stack_namespace));
        }
        services
    }

    /// Walks a team file: its team (with the namespaces the platform spec `grants` it), its
    /// services and their entries for the cross-checks. A service in a namespace granted to
    /// another team, or one claiming another team, is refused here.
    fn team_file<'r>(
        &mut self,
        team_file: &'r TeamFileRoot,
        stack_namespace: &str,
        grants: &BTreeMap<String, Vec<String>>,
        has_smtp: bool,
    ) -> Option<(Team, Vec<Service>, Vec<Placed<'r>>)> {
        let top = self.object(&team_file.root, "", &TEAM_FILE_KEYS)?;
        let key = if top.get("team").is_none() && top.get("name").is_some() {
            "name"
        } else {
            "team"
        };
        if key == "team"
            && top.get("team").is_some()
            && let Some(alias) = top.map.keys().find(|k| k.as_str() == "name")
        {
            self.error(
                alias.span(),
                "name",
                "the team is named twice, by `team` and `name`".into(),
                Some("keep `team: NAME`".into()),
            );
        }
        let name = self
            .required(
                &top,
                key,
                "add `team: my-team` (the team this file belongs to)",
            )
            .and_then(|n| self.checked_string(n, key, "team name", values::check_dns_label));
        if let Some(node) = top.map.keys().find(|k| k.as_str() == "namespaces") {
            self.error(
                node.span(),
                "namespaces",
                "a team file cannot give its team namespaces".into(),
                Some("the platform spec grants them: `teams: [{name: TEAM, namespaces: [...]}]` there".into()),
            );
        }
        if !has_smtp && let Some(node) = top.map.keys().find(|k| k.as_str() == "email") {
            self.error(
                node.span(),
                "email",
                "e-mail destination without an SMTP server".into(),
                Some("the platform spec sets the mail server: `router: {smtp: {host: smtp.example.com, from: alerts@example.com}}`".into()),
            );
        }
        let namespaces = name
            .as_ref()
            .and_then(|n| grants.get(n))
            .cloned()
            .unwrap_or_default();
        let team = self.team_body(&top, name, namespaces, &team_file.source.dir)?;
        let team_alerts = top
            .get("alerts")
            .map(|node| self.alert_override_map(node, "alerts", true))
            .unwrap_or_default();
        let owners: BTreeMap<&str, &str> = grants
            .iter()
            .flat_map(|(owner, namespaces)| {
                namespaces.iter().map(move |n| (n.as_str(), owner.as_str()))
            })
            .collect();
        let mut services = Vec::new();
        let mut placed = Vec::new();
        for (index, node) in self.list(&top, "services").into_iter().enumerate() {
            let field = format!("services[{index}]");
            let Some(obj) = self.object(node, &field, SERVICE_KEYS) else {
                continue;
            };
            if let Some(claimed) = obj.get("team").and_then(Node::as_scalar)
                && claimed.as_str() != team.name
            {
                self.error(
                    claimed.span(),
                    &obj.path("team"),
                    format!(
                        "a service of team `{}`'s file cannot belong to team `{}`",
                        team.name,
                        claimed.as_str()
                    ),
                    Some("a team file declares its own team's services; leave `team:` out".into()),
                );
                continue;
            }
            let Some(mut service) = self.service(&obj, Some(team.name.clone()), stack_namespace)
            else {
                continue;
            };
            if let Some(owner) = owners.get(service.namespace.as_str())
                && *owner != team.name
            {
                let span = obj
                    .get("namespace")
                    .or_else(|| obj.get("name"))
                    .map_or(*obj.span(), |n| *n.span());
                self.error(
                    &span,
                    &obj.path("namespace"),
                    format!(
                        "service `{}` is in namespace `{}`, which the platform spec gives team `{owner}`",
                        service.name, service.namespace
                    ),
                    Some(match grants.get(&team.name).filter(|n| !n.is_empty()) {
                        Some(own) => format!(
                            "team `{}` declares services in its own namespaces ({}) or in one no team is given",
                            team.name,
                            own.join(", ")
                        ),
                        None => format!(
                            "declare it in a namespace no team is given, or ask the platform team to give team `{}` one",
                            team.name
                        ),
                    }),
                );
                continue;
            }
            for (alert, change) in &team_alerts {
                service
                    .alerts
                    .entry(alert.clone())
                    .or_insert_with(|| change.clone());
            }
            services.push(service);
            placed.push(Placed { field, node });
        }
        Some((team, services, placed))
    }

    /// The first team file of each team; a second file of the same team is refused.
    fn claimed_teams<'r>(
        &mut self,
        team_files: &'r [TeamFileRoot<'r>],
    ) -> BTreeMap<String, &'r TeamFileRoot<'r>> {
        let mut claimed: BTreeMap<String, &TeamFileRoot> = BTreeMap::new();
        for team_file in team_files {
            let Some(team) = team_file.team() else {
                continue;
            };
            match claimed.get(team.as_str()) {
                Some(first) => {
                    let first_file = first.source.name.clone();
                    self.error(
                        team.span(),
                        "team",
                        format!(
                            "team `{}` already has a team file, {first_file}",
                            team.as_str()
                        ),
                        Some("a team is defined by one file; merge the two".into()),
                    );
                }
                None => {
                    claimed.insert(team.as_str().to_string(), team_file);
                }
            }
        }
        claimed
    }

    /// `team_files`: a directory (every `.yaml` and `.yml` file in it) or a glob (`teams/*.yaml`),
    /// or a list of them. `load` reads them; here only their shape is checked.
    fn team_file_patterns(&mut self, top: &Obj) {
        let Some(node) = top.get("team_files") else {
            return;
        };
        let entries: Vec<(String, &Node)> = match node.as_sequence() {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("team_files[{i}]"), n))
                .collect(),
            None => vec![("team_files".to_string(), node)],
        };
        for (field, entry) in entries {
            if let Some((text, _)) = self.string(entry, &field)
                && let Err(hint) = crate::files::check_team_file_pattern(&text)
            {
                self.error(
                    entry.span(),
                    &field,
                    format!("invalid team file pattern `{text}`"),
                    Some(hint),
                );
            }
        }
    }

    /// One entry of a services list, owned by `team`.
    fn service(
        &mut self,
        obj: &Obj,
        team: Option<String>,
        stack_namespace: &str,
    ) -> Option<Service> {
        let name = self
            .required(obj, "name", "add `name: my-service`")
            .and_then(|n| {
                self.checked_string(
                    n,
                    &obj.path("name"),
                    "service name",
                    values::check_dns_label,
                )
            });
        let namespace = self.checked_or_default(
            Some(obj),
            "namespace",
            "namespace name",
            values::check_dns_label,
            stack_namespace,
        );
        let selector = self.selector(obj, name.as_deref());
        let port = self
            .required(
                obj,
                "port",
                "name the container port that serves metrics: a number or a port name such as `http-metrics`",
            )
            .and_then(|n| self.port(n, &obj.path("port")));
        let path = self.checked_or_default(
            Some(obj),
            "path",
            "metrics path",
            values::check_http_path,
            defaults::METRICS_PATH,
        );
        let alerts = obj
            .get("alerts")
            .map(|node| self.alert_override_map(node, &obj.path("alerts"), true))
            .unwrap_or_default();
        let slos = obj
            .get("slos")
            .map(|node| self.slos(node, &obj.path("slos")))
            .unwrap_or_default();
        // The `metrics` key (or the service's name): what a scrape check points at.
        let metrics_location = obj
            .map
            .keys()
            .find(|key| key.as_str() == "metrics")
            .map(|key| key.span())
            .or_else(|| obj.get("name").map(|n| n.span()))
            .map_or_else(|| Location::of_span(obj.span()), Location::of_span);
        let metrics = match obj.get("metrics") {
            Some(node) => self.service_metrics(node, &obj.path("metrics")),
            None => Some(ServiceMetrics::default()),
        };
        if let Some(metrics) = &metrics
            && metrics.duration.is_none()
            && let Some(latency) = obj
                .get("slos")
                .and_then(|n| n.as_mapping())
                .and_then(|m| m.get_node("latency"))
        {
            self.error(
                latency.span(),
                &join(&obj.path("slos"), "latency"),
                "a latency objective needs the service's latency histogram".into(),
                Some("add `duration: NAME` under `metrics:` (a histogram in seconds, named without `_bucket`), or remove the latency objective".into()),
            );
        }
        Some(Service {
            name: name?,
            team: team?,
            namespace,
            selector: selector?,
            port: port?,
            path,
            alerts,
            slos,
            metrics: metrics?,
            metrics_location,
            written_in: self.file_of(obj.span()).to_string(),
            field: obj.field.clone(),
        })
    }

    /// `services[].metrics`: a convention's name (`opentelemetry`), or `requests`, `errors` and
    /// optionally `duration` as series selectors.
    fn service_metrics(&mut self, node: &Node, field: &str) -> Option<ServiceMetrics> {
        if let Some(scalar) = node.as_scalar() {
            let text = scalar.as_str();
            if let Some(convention) = Convention::preset(text) {
                return Some(ServiceMetrics::of(convention));
            }
            let names = Convention::PRESETS.map(Convention::name);
            let hint = match Convention::known_as(text)
                .map(Convention::name)
                .or_else(|| did_you_mean(text, names.iter().copied()))
            {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!(
                    "use one of {}, or write `requests:`, `errors:` and `duration:` selectors",
                    names.join(", ")
                ),
            };
            self.error(
                node.span(),
                field,
                format!("unknown metrics convention `{text}`"),
                Some(hint),
            );
            return None;
        }
        let obj = self.object(node, field, METRICS_KEYS)?;
        let requests = self
            .required(
                &obj,
                "requests",
                "add `requests: NAME`, the counter of every request the service answers",
            )
            .and_then(|n| self.metric_selector(n, &obj.path("requests")));
        let errors = self
            .required(
                &obj,
                "errors",
                "add `errors: NAME{...}`, the counter of the requests that failed",
            )
            .and_then(|n| self.metric_selector(n, &obj.path("errors")));
        let duration = match obj.get("duration") {
            Some(n) => Some(self.metric_selector(n, &obj.path("duration"))?),
            None => None,
        }
        .map(|mut histogram| {
            if let Some(base) = histogram.metric.strip_suffix("_bucket") {
                histogram.metric = base.to_string();
            }
            histogram
        });
        Some(ServiceMetrics {
            convention: Convention::Explicit,
            requests: requests?,
            errors: errors?,
            duration,
        })
    }

    fn metric_selector(&mut self, node: &Node, field: &str) -> Option<Selector> {
        let (text, _) = self.string(node, field)?;
        match Selector::parse(&text) {
            Ok(selector) => Some(selector),
            Err(hint) => {
                self.error(
                    node.span(),
                    field,
                    format!("invalid series selector `{text}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    /// `services[].slos`: `availability` and `latency`, each an objective in percent below 100,
    /// a window (default 30d, from 1d to 90d), the request rate below which it never pages
    /// (`min_rate`, default 1 per second) and, for latency, the bucket bound in seconds a good
    /// request is faster than.
    fn slos(&mut self, node: &Node, field: &str) -> Vec<Slo> {
        let mut slos = Vec::new();
        let Some(obj) = self.object(node, field, SLO_KEYS) else {
            return slos;
        };
        for (key, kind) in [
            ("availability", SloKind::Availability),
            ("latency", SloKind::Latency),
        ] {
            let Some(node) = obj.get(key) else { continue };
            let slo_field = obj.path(key);
            let Some(slo) = self.object(node, &slo_field, SLO_OBJECTIVE_KEYS) else {
                continue;
            };
            let objective = self
                .required(
                    &slo,
                    "objective",
                    "add `objective: 99.9` (percent of good requests)",
                )
                .and_then(|n| {
                    self.checked_string(
                        n,
                        &slo.path("objective"),
                        "objective",
                        values::check_objective,
                    )
                });
            let window = self.checked_or_default(
                Some(&slo),
                "window",
                "SLO window",
                values::check_slo_window,
                defaults::SLO_WINDOW,
            );
            let min_rate = self.checked_or_default(
                Some(&slo),
                "min_rate",
                "minimum request rate",
                values::check_request_rate,
                defaults::SLO_PAGE_MIN_RATE,
            );
            let threshold = match kind {
                SloKind::Latency => self
                    .required(
                        &slo,
                        "threshold",
                        "add `threshold: 0.5`: a good request is faster than this many seconds, a bucket bound of the service's histogram",
                    )
                    .and_then(|n| {
                        self.checked_string(n, &slo.path("threshold"), "latency threshold", values::check_seconds)
                    }),
                SloKind::Availability => {
                    if let Some(n) = slo.get("threshold") {
                        self.error(
                            n.span(),
                            &slo.path("threshold"),
                            "an availability objective has no threshold".into(),
                            Some("a request is good when it is not answered with a 5xx; a latency threshold goes under `latency:`".into()),
                        );
                    }
                    None
                }
            };
            let complete =
                objective.is_some() && (kind == SloKind::Availability || threshold.is_some());
            let location = Location::of_span(slo.get("threshold").map_or(slo.span(), |n| n.span()));
            if let (true, Some(objective)) = (complete, objective) {
                slos.push(Slo {
                    kind,
                    objective,
                    window,
                    threshold,
                    min_rate,
                    location,
                });
            }
        }
        slos
    }

    fn selector(
        &mut self,
        obj: &Obj,
        service_name: Option<&str>,
    ) -> Option<BTreeMap<String, String>> {
        let Some(node) = obj.get("selector") else {
            // Default: the common `app.kubernetes.io/name` label with the service's name.
            return service_name
                .map(|n| BTreeMap::from([("app.kubernetes.io/name".to_string(), n.to_string())]));
        };
        let field = obj.path("selector");
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                &field,
                "`selector` must be a mapping of pod labels".into(),
                Some("write e.g. `selector: {app: checkout}`".into()),
            );
            return None;
        };
        let mut selector = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map.iter() {
            let key_field = join(&field, key.as_str());
            if let Err(hint) = values::check_label_key(key.as_str()) {
                self.error(
                    key.span(),
                    &key_field,
                    format!("invalid label key `{}`", key.as_str()),
                    Some(hint),
                );
                ok = false;
                continue;
            }
            match self.checked_string(value, &key_field, "label value", values::check_label_value) {
                Some(v) if v.is_empty() => {
                    self.error(
                        value.span(),
                        &key_field,
                        format!("empty value for pod label `{}`", key.as_str()),
                        Some("kube-state-metrics exports an empty label as a missing one, so the ownership rules could not tell the pods apart; select by a label with a value".into()),
                    );
                    ok = false;
                }
                Some(v) => {
                    selector.insert(key.as_str().to_string(), v);
                }
                None => ok = false,
            }
        }
        if selector.is_empty() && ok {
            self.error(
                node.span(),
                &field,
                "an empty selector would match every pod in the namespace".into(),
                Some("name at least one pod label, e.g. `app: checkout`".into()),
            );
            return None;
        }
        ok.then_some(selector)
    }

    fn port(&mut self, node: &Node, field: &str) -> Option<Port> {
        let (text, _) = self.string(node, field)?;
        if text.chars().all(|c| c.is_ascii_digit()) {
            match text.parse::<u16>() {
                Ok(n) if n > 0 => return Some(Port::Number(n)),
                _ => {
                    self.error(
                        node.span(),
                        field,
                        format!("invalid port `{text}`"),
                        Some("a port number is from 1 to 65535".into()),
                    );
                    return None;
                }
            }
        }
        match values::check_port_name(&text) {
            Ok(()) => Some(Port::Name(text)),
            Err(hint) => {
                self.error(
                    node.span(),
                    field,
                    format!("invalid port `{text}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    /// Checks that span several fields: unique names, owners that exist, SMTP for e-mail.
    /// The checks across sections, run after the walk: names are unique, owners exist, e-mail
    /// has an SMTP server.
    #[allow(clippy::too_many_arguments)]
    fn cross_checks(
        &mut self,
        top: &Obj,
        teams: &[Team],
        service_nodes: &[Placed],
        platform_services: usize,
        stack_namespace: &str,
        router: &RouterSpec,
        team_label: &str,
    ) {
        let team_nodes: Vec<&Node> = self.list(top, "teams");
        let team_names: BTreeSet<&str> = teams.iter().map(|t| t.name.as_str()).collect();
        self.unique_team_names(&team_nodes);
        self.namespaces_owned_once(&team_nodes, teams);
        self.services_have_declared_owners(&service_nodes[..platform_services], &team_names);
        self.unique_services(service_nodes, stack_namespace);
        self.selectors_own_pods_once(service_nodes, stack_namespace, team_label);
        match &router.platform_team {
            Some(platform) => self.platform_team_declared(top, platform, &team_names),
            None if !teams.is_empty() => self.platform_team_missing(top, &team_names),
            None => {}
        }

        if router.smtp.is_none() {
            for (index, node) in team_nodes.iter().enumerate() {
                if let Some(span) = key_span(node, "email") {
                    self.error(&span, &format!("teams[{index}].email"), "e-mail destination without an SMTP server".into(), Some("add `router: {smtp: {host: smtp.example.com, from: alerts@example.com}}`".into()));
                }
            }
        }
    }

    fn unique_team_names(&mut self, team_nodes: &[&Node]) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, node) in team_nodes.iter().enumerate() {
            let Some(name) = node
                .as_mapping()
                .and_then(|m| m.get_scalar("name"))
                .map(|s| s.as_str().to_string())
            else {
                continue;
            };
            if let Some(first) = seen.get(&name) {
                let span = key_span(node, "name").unwrap_or(*node.span());
                self.error(
                    &span,
                    &format!("teams[{index}].name"),
                    format!("duplicate team `{name}`"),
                    Some(format!(
                        "`{name}` is already declared as teams[{first}]; merge the two"
                    )),
                );
            } else {
                seen.insert(name, index);
            }
        }
    }

    /// A namespace belongs to one team.
    fn namespaces_owned_once(&mut self, team_nodes: &[&Node], teams: &[Team]) {
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for team in teams {
            for namespace in &team.namespaces {
                match owners.get(namespace.as_str()) {
                    Some(owner) if *owner != team.name => {
                        let place = team_nodes
                            .iter()
                            .enumerate()
                            .find(|(_, n)| {
                                n.as_mapping()
                                    .and_then(|m| m.get_scalar("name"))
                                    .is_some_and(|s| s.as_str() == team.name)
                            })
                            .and_then(|(i, n)| {
                                let list = n.as_mapping()?.get_sequence("namespaces")?;
                                let item = list.iter().find(|x| {
                                    x.as_scalar().is_some_and(|s| s.as_str() == namespace)
                                })?;
                                Some((i, *item.span()))
                            });
                        let (index, span) = place.unwrap_or((0, Span::new_blank()));
                        self.error(
                            &span,
                            &format!("teams[{index}].namespaces"),
                            format!("namespace `{namespace}` is already team `{owner}`'s"),
                            Some("a namespace belongs to one team; move the other team's workloads or list them as its services".into()),
                        );
                    }
                    _ => {
                        owners.insert(namespace, &team.name);
                    }
                }
            }
        }
    }

    fn services_have_declared_owners(
        &mut self,
        service_nodes: &[Placed],
        team_names: &BTreeSet<&str>,
    ) {
        for placed in service_nodes {
            let Some(team) = placed
                .node
                .as_mapping()
                .and_then(|map| map.get_scalar("team"))
            else {
                continue;
            };
            if team_names.contains(team.as_str()) {
                continue;
            }
            let hint = match did_you_mean(team.as_str(), team_names.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None if team_names.is_empty() => {
                    "declare the team under `teams:` first".to_string()
                }
                None => format!(
                    "declared teams: {}",
                    team_names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            };
            self.error(
                team.span(),
                &join(&placed.field, "team"),
                format!("service owned by undeclared team `{}`", team.as_str()),
                Some(hint),
            );
        }
    }

    /// A service is one name per namespace, in the spec and every team file together.
    fn unique_services(&mut self, service_nodes: &[Placed], stack_namespace: &str) {
        let mut seen: BTreeMap<(String, String), &Placed> = BTreeMap::new();
        for placed in service_nodes {
            let Some(map) = placed.node.as_mapping() else {
                continue;
            };
            let Some(name) = map.get_scalar("name") else {
                continue;
            };
            let namespace = map
                .get_scalar("namespace")
                .map_or(stack_namespace, |n| n.as_str())
                .to_string();
            let key = (namespace.clone(), name.as_str().to_string());
            if let Some(first) = seen.get(&key) {
                let first_name = first
                    .node
                    .as_mapping()
                    .and_then(|m| m.get_scalar("name"))
                    .map_or(*first.node.span(), |n| *n.span());
                let place = self.place_of(&first_name, name.span());
                self.error(
                    name.span(),
                    &join(&placed.field, "name"),
                    format!(
                        "duplicate service `{}` in namespace `{namespace}`",
                        name.as_str()
                    ),
                    Some(format!(
                        "already declared as {} ({place}); a service is one name per namespace",
                        first.field
                    )),
                );
            } else {
                seen.insert(key, placed);
            }
        }
    }

    /// With teams declared, alerts of no service (nodes, the cluster, the stack itself) need an
    /// owner too.
    fn platform_team_missing(&mut self, top: &Obj, team_names: &BTreeSet<&str>) {
        let teams_key = top
            .map
            .keys()
            .find(|k| k.as_str() == "teams")
            .map(|k| *k.span());
        let span = top
            .get("router")
            .map(|r| *r.span())
            .or(teams_key)
            .unwrap_or(*top.span());
        self.error(
            &span,
            "router.platform_team",
            "teams are declared but no `router.platform_team`: alerts of no service (nodes, the cluster, the stack itself) would reach nobody".into(),
            Some(format!(
                "name the team that owns the cluster: `router: {{platform_team: NAME}}` (declared teams: {})",
                team_names.iter().copied().collect::<Vec<_>>().join(", ")
            )),
        );
    }

    fn platform_team_declared(&mut self, top: &Obj, platform: &str, team_names: &BTreeSet<&str>) {
        if team_names.contains(platform) {
            return;
        }
        let span = top
            .get("router")
            .and_then(|r| r.as_mapping())
            .and_then(|r| r.get_node("platform_team"))
            .map_or(*top.span(), |n| *n.span());
        let hint = match did_you_mean(platform, team_names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "declare the team under `teams:`".to_string(),
        };
        self.error(
            &span,
            "router.platform_team",
            format!("platform team `{platform}` is not declared"),
            Some(hint),
        );
    }
}

/// Where `key` of a mapping node is written.
fn key_span(node: &Node, key: &str) -> Option<Span> {
    node.as_mapping()
        .and_then(|m| m.get_node(key))
        .map(|n| *n.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec of `services` (each a flow mapping's inside) in namespace `shop`.
    fn spec_of_services(services: impl Iterator<Item = String>) -> String {
        let mut text = "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nservices:\n".to_string();
        for service in services {
            text.push_str(&format!(
                "  - {{{service}, team: t, namespace: shop, port: 80}}\n"
            ));
        }
        text
    }

    #[test]
    fn services_selected_by_many_sets_of_keys_cannot_square_the_scrape_config() {
        let by_own_key = spec_of_services(
            (0..=crate::spec::selectors::MAX_KEY_SETS)
                .map(|i| format!("name: s{i}, selector: {{key{i}: x}}")),
        );
        let problems = parse("s.yaml", &by_own_key).expect_err("too many key sets");
        assert!(
            problems[0].message.contains("different sets of label keys"),
            "{problems:?}"
        );
        let two_keys = spec_of_services((0..101).flat_map(|i| {
            [
                format!("name: a{i}, selector: {{app: a{i}}}"),
                format!("name: c{i}, selector: {{component: c{i}}}"),
            ]
        }));
        let problems = parse("s.yaml", &two_keys).expect_err("too many exclusions");
        assert!(problems[0].message.contains("step aside"), "{problems:?}");
        let fine =
            spec_of_services((0..2_000).map(|i| format!("name: s{i}, selector: {{app: s{i}}}")));
        parse("s.yaml", &fine).unwrap_or_else(|d| panic!("{d:?}"));
    }

    #[test]
    fn the_control_plane_is_scraped_only_when_asked_and_only_where_it_can_be() {
        let spec = |platform: &str, extra: &str| {
            format!("cluster: {{name: a, platform: {platform}{extra}}}\n")
        };
        let kubeadm = parse("s.yaml", &spec("kubeadm", "")).unwrap_or_else(|d| panic!("{d:?}"));
        assert!(
            !kubeadm.cluster.scrapes_control_plane(),
            "kubeadm binds the control plane's metrics to 127.0.0.1 unless told otherwise"
        );
        let asked = parse("s.yaml", &spec("kind", ", control_plane_metrics: true"))
            .unwrap_or_else(|d| panic!("{d:?}"));
        assert!(asked.cluster.scrapes_control_plane());
        let problems = parse("s.yaml", &spec("eks", ", control_plane_metrics: true"))
            .expect_err("a managed control plane");
        assert_eq!(
            problems[0].field, "cluster.control_plane_metrics",
            "{problems:?}"
        );
    }

    #[test]
    fn a_scrape_interval_the_rate_windows_cannot_take_is_refused() {
        let spec = |interval: &str| {
            format!("cluster: {{name: a}}\nprometheus: {{scrape_interval: {interval}}}\n")
        };
        parse("s.yaml", &spec("75s")).unwrap_or_else(|d| panic!("{d:?}"));
        for bad in ["2m", "500ms"] {
            let problems = parse("s.yaml", &spec(bad)).expect_err(bad);
            assert_eq!(
                problems[0].field, "prometheus.scrape_interval",
                "{problems:?}"
            );
            assert!(
                problems[0]
                    .hint
                    .as_deref()
                    .unwrap_or("")
                    .contains("5-minute windows"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn three_line_spec_gets_every_default() {
        let spec = parse(
            "s.yaml",
            "cluster:\n  name: prod\n  platform: digitalocean\n",
        )
        .expect("valid");
        assert_eq!(spec.namespace, "monitoring");
        assert_eq!(spec.prometheus.replicas, 2);
        assert_eq!(
            spec.prometheus.storage_class.as_deref(),
            Some("do-block-storage")
        );
        assert_eq!(spec.prometheus.volume_bytes, 50 * 1024 * 1024 * 1024);
        assert!(spec.exporters.node_exporter);
        assert!(spec.teams.is_empty());
    }

    #[test]
    fn the_shared_store_takes_an_optional_ca_bundle_as_a_secret_reference() {
        let base =
            "cluster: {name: prod, platform: digitalocean}\nrouter:\n  replicas: 2\n  store:\n";
        let good = format!(
            "{base}    postgres: {{secret: db, key: url, ca: {{secret: db-ca, key: ca.crt}}}}\n"
        );
        let spec = parse("s.yaml", &good).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(
            spec.router.postgres_ca,
            Some(SecretRef {
                secret: "db-ca".into(),
                key: "ca.crt".into()
            })
        );
        let without = format!("{base}    postgres: {{secret: db, key: url}}\n");
        let spec = parse("s.yaml", &without).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(spec.router.postgres_ca, None);
        let literal = format!("{base}    postgres: {{secret: db, key: url, ca: \"-----BEGIN\"}}\n");
        let errors = parse("s.yaml", &literal).expect_err("a literal CA");
        assert_eq!(errors[0].field, "router.store.postgres.ca");
        let incomplete = format!("{base}    postgres: {{secret: db, key: url, ca: {{key: x}}}}\n");
        let errors = parse("s.yaml", &incomplete).expect_err("no Secret name");
        assert_eq!(errors[0].field, "router.store.postgres.ca.secret");
        let unknown = format!("{base}    postgres: {{secret: db, key: url, cas: {{}}}}\n");
        let errors = parse("s.yaml", &unknown).expect_err("unknown key");
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `ca`?"));
    }

    #[test]
    fn reports_every_problem_in_source_order() {
        let src = "cluster:\n  name: prod\n  platfrom: eks\nprometheus:\n  retention: 15days\n  replicas: zero\nservices:\n  - name: Checkout\n    team: nobody\n    port: 8080\n";
        let errors = parse("s.yaml", src).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cluster.platfrom",
                "prometheus.retention",
                "prometheus.replicas",
                "services[0].name",
                "services[0].team"
            ]
        );
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `platform`?"));
    }

    #[test]
    fn keep_metrics_takes_names_and_regexes_of_names_and_refuses_what_is_no_regex() {
        let spec = parse(
            "s.yaml",
            "cluster: {name: a}\nprometheus:\n  keep_metrics: [node_hwmon_temp_celsius, container_fs_.*]\n",
        )
        .expect("valid");
        assert_eq!(
            spec.prometheus.keep_metrics,
            ["(?:node_hwmon_temp_celsius)", "(?:container_fs_.*)"]
        );
        let errors = parse(
            "s.yaml",
            "cluster: {name: a}\nprometheus:\n  keep_metrics: [\"container_(fs\"]\n",
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "prometheus.keep_metrics[0]");
        assert_eq!(errors[0].location, Location { line: 3, col: 18 });
    }

    #[test]
    fn escalation_responders_and_people_are_read_and_their_mistakes_pointed_at() {
        let teams = "teams:\n  - name: pay\n    slack: {url: {secret: s, key: k}}\n    pagerduty: {routing_key: {secret: s, key: p}}\n";
        let good = format!(
            "cluster: {{name: a}}\nrouter:\n  platform_team: ops\n  people: {{users: {{secret: u, key: users}}, viewers: [\"*\"]}}\n{teams}    responders: [dana, \"group:pay\"]\n    escalation:\n      - {{after: 0s, destinations: [slack]}}\n      - {{after: 10m, destinations: [pagerduty, ops/webhook]}}\n  - name: ops\n    webhook: {{url: {{secret: s, key: w}}}}\n"
        );
        let spec = parse("s.yaml", &good).unwrap_or_else(|d| panic!("{d:?}"));
        let pay = &spec.teams[0];
        assert_eq!(pay.responders, ["dana", "group:pay"]);
        assert_eq!(pay.escalation.len(), 2);
        assert_eq!(
            pay.escalation[1].destinations[1].team.as_deref(),
            Some("ops")
        );
        let people = spec.router.people.as_ref().expect("people");
        assert_eq!(people.users.as_ref().map(|u| u.secret.as_str()), Some("u"));
        assert!(
            spec.secret_refs()
                .iter()
                .any(|r| r.secret == "u" && r.key == "users")
        );

        let bad = format!(
            "cluster: {{name: a}}\nrouter:\n  platform_team: pay\n  people: {{viewers: [\"group:\"]}}\n{teams}    escalation:\n      - {{after: 5m, destinations: [slak]}}\n      - {{after: 5m, destinations: [nobody/pagerduty, pay/opsgenie]}}\n"
        );
        let errors = parse("s.yaml", &bad).expect_err("invalid");
        let found: Vec<(usize, &str)> = errors
            .iter()
            .map(|d| (d.location.line, d.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (4, "`router.people` gives nobody a way to sign in"),
                (4, "`group:` names nobody"),
                (
                    10,
                    "the first step comes after 5m: nobody is told when an incident opens"
                ),
                (10, "the team has no `slak` destination"),
                (11, "step 1 comes no later than the step before it"),
                (11, "no team `nobody`"),
                (11, "team `pay` has no `opsgenie` destination"),
            ]
        );
        assert_eq!(errors[3].hint.as_deref(), Some("did you mean `slack`?"));
    }

    #[test]
    fn literal_secret_is_refused() {
        let src = "cluster: {name: a}\nrouter: {platform_team: web}\nteams:\n  - name: web\n    slack: {url: \"https://hooks.slack.com/services/T/B/X\"}\n";
        let errors = parse("s.yaml", src).expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .message
                .contains("secret given as a literal value")
        );
        assert_eq!(errors[0].location, Location { line: 5, col: 18 });
    }

    #[test]
    fn limit_below_request_is_reported() {
        let src = "cluster: {name: a}\nprometheus:\n  resources:\n    requests: {memory: 4Gi}\n    limits: {memory: 2Gi}\n";
        let errors = parse("s.yaml", src).expect_err("invalid");
        assert_eq!(errors[0].field, "prometheus.resources.limits.memory");
    }

    #[test]
    fn yaml_syntax_error_has_a_position() {
        let errors = parse("s.yaml", "cluster: {name: a\n").expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("invalid YAML"));
    }
}
