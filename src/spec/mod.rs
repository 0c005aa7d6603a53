//! The cluster spec (`stack.yaml`): the validated model every other part of stackgen reads.
//!
//! [`parse`] turns source text into a [`Spec`] or the full list of problems in it; [`load`] adds the
//! file reading (the spec and the team rule files it names). Defaults live in [`defaults`], the value
//! checks in `config_check::values`, the starter file written by `stackgen init` in
//! [`starter`].

pub mod defaults;
pub mod grafana;
mod load;
pub mod metrics;
mod ownership;
pub mod placement;
pub mod probes;
pub mod scale_out;
pub mod scrape_check;
pub mod selectors;
pub mod starter;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config_check::smtp::SmtpServer;
use crate::diagnostic::{Diagnostic, Location};
use crate::router::dedup::Severity;
use crate::router::destination::DestinationKind;
use crate::time_interval::TimeInterval;

pub use load::{
    TeamFileSource, parse, parse_fleet_with_team_files, parse_team_file, parse_with_team_files,
    team_file_includes, team_of_team_file,
};

/// A fully validated stack spec with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub cluster: Cluster,
    /// Namespace the stack is deployed into.
    pub namespace: String,
    pub prometheus: PrometheusSpec,
    pub alertmanager: AlertmanagerSpec,
    pub grafana: GrafanaSpec,
    pub exporters: Exporters,
    pub router: RouterSpec,
    pub teams: Vec<Team>,
    pub services: Vec<Service>,
    pub ownership: Ownership,
    /// Changes to default alerts, by alert name.
    pub alerts: BTreeMap<String, AlertOverride>,
    /// Where every image is pulled from (a mirror, digests, pull secrets).
    pub images: placement::Images,
    /// URLs and ports checked from outside through the blackbox exporter (`probes:`).
    pub probes: Vec<probes::Probe>,
}

/// How Kubernetes signals (workloads, pods, volumes) find their owner beyond the service list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ownership {
    /// The pod label whose value names the team owning the pod (`ownership.team_label`), honoured
    /// in namespaces of that team or of no team.
    pub team_label: String,
    /// The pod label naming the service of a pod scraped because it asks to be
    /// (`stackgen.io/scrape: "true"` in a team's namespace; `ownership.service_label`).
    pub service_label: String,
}

/// A change to one default alert, made in the spec instead of copying its rule group.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AlertOverride {
    /// `false` drops the alert.
    pub enabled: bool,
    pub for_duration: Option<String>,
    pub severity: Option<String>,
    /// Replaces the number the expression compares against (`... > 0.05`).
    pub threshold: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub platform: Platform,
    /// `control_plane_metrics: true`: the scheduler, controller-manager and etcd listen where
    /// Prometheus can reach them (kubeadm and kind bind them to 127.0.0.1 by default).
    pub control_plane_metrics: bool,
}

impl Cluster {
    /// Whether the control plane gets scrape jobs and alerts.
    pub fn scrapes_control_plane(&self) -> bool {
        self.control_plane_metrics && self.platform.exposes_control_plane()
    }
}

/// The platform profile decides what the cluster exposes (control plane metrics) and storage defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Generic,
    Digitalocean,
    Eks,
    Gke,
    Aks,
    Kubeadm,
    Kind,
}

impl Platform {
    pub const ALL: [(&'static str, Platform); 7] = [
        ("generic", Platform::Generic),
        ("digitalocean", Platform::Digitalocean),
        ("eks", Platform::Eks),
        ("gke", Platform::Gke),
        ("aks", Platform::Aks),
        ("kubeadm", Platform::Kubeadm),
        ("kind", Platform::Kind),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("generic", |(n, _)| n)
    }

    /// Whether the scheduler, controller-manager and etcd can be scraped. Managed control planes
    /// (and an unknown `generic` cluster) do not expose them, so they get neither jobs nor alerts.
    pub fn exposes_control_plane(self) -> bool {
        matches!(self, Platform::Kubeadm | Platform::Kind)
    }
}

/// CPU and memory requests and limits, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

impl Resources {
    /// The default requests and limits of a component.
    pub fn from_defaults(d: &defaults::ResourceDefaults) -> Self {
        let mut limits = BTreeMap::from([("memory".to_string(), d.limit_memory.to_string())]);
        if let Some(cpu) = d.limit_cpu {
            limits.insert("cpu".into(), cpu.into());
        }
        Resources {
            requests: BTreeMap::from([
                ("cpu".to_string(), d.request_cpu.to_string()),
                ("memory".to_string(), d.request_memory.to_string()),
            ]),
            limits,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrometheusSpec {
    pub replicas: u32,
    /// `--storage.tsdb.retention.time`.
    pub retention: String,
    pub volume_size: String,
    /// The volume in bytes (parsed from `volume_size`), used to derive the size-based retention.
    pub volume_bytes: u64,
    pub storage_class: Option<String>,
    pub scrape_interval: String,
    pub evaluation_interval: String,
    pub resources: Resources,
    /// Regexes of metric names the exporters' jobs keep besides what the stack reads
    /// (`prometheus.keep_metrics`), each as `(?:...)`.
    pub keep_metrics: Vec<String>,
    pub placement: placement::Placement,
    pub remote_write: Vec<scale_out::RemoteWrite>,
    pub thanos: Option<scale_out::Thanos>,
    pub external: scale_out::External,
    pub consumers: Vec<scale_out::Consumer>,
    /// Static targets scraped like services (`prometheus.scrape_jobs`).
    pub scrape_jobs: Vec<probes::ScrapeJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertmanagerSpec {
    pub replicas: u32,
    pub volume_size: String,
    pub storage_class: Option<String>,
    pub resources: Resources,
    /// An external dead man's switch (a ping URL) Alertmanager sends Watchdog to every minute,
    /// so a cluster whose whole pipeline is gone is noticed from outside it.
    pub dead_mans_switch: Option<String>,
    pub placement: placement::Placement,
    pub external: scale_out::External,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrafanaSpec {
    pub ingress: Option<Ingress>,
    /// Secret holding `admin-user` and `admin-password`; never rendered, only referenced.
    pub admin_secret: String,
    pub volume_size: String,
    pub storage_class: Option<String>,
    pub resources: Resources,
    pub placement: placement::Placement,
    /// Sign-in through an OAuth 2.0 / OpenID Connect provider (`grafana.oauth`).
    pub oauth: Option<grafana::OAuth>,
    /// `grafana.ini` settings (`grafana.ini`), over the stack's own.
    pub ini: grafana::Ini,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ingress {
    pub host: String,
    pub class_name: Option<String>,
    pub tls_secret: Option<String>,
    /// The ingress controller's and cert-manager's settings
    /// (`cert-manager.io/cluster-issuer: letsencrypt`).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exporters {
    pub node_exporter: bool,
    pub kube_state_metrics: bool,
    pub node_exporter_placement: placement::Placement,
    pub kube_state_metrics_placement: placement::Placement,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterSpec {
    pub image: String,
    /// Replicas behind the router's Service; more than one needs the shared store (`postgres`).
    pub replicas: u32,
    /// Secret key holding the `postgres://` URL of the database the replicas share; `None`: the
    /// embedded store on a volume (one replica).
    pub postgres: Option<SecretRef>,
    /// Secret key holding the PEM CA bundle that verifies the database's certificate when the
    /// connection uses TLS (`router.store.postgres.ca`); `None`: the public web PKI roots.
    pub postgres_ca: Option<SecretRef>,
    /// Secret with key `token`: the bearer token Alertmanager presents to the router.
    pub auth_secret: String,
    /// The team that owns alerts of no service (cluster and stack health) and the heartbeat.
    pub platform_team: Option<String>,
    pub smtp: Option<Smtp>,
    pub resources: Resources,
    /// Who signs in to the router's incidents API and page (`router.people`).
    pub people: Option<PeopleSpec>,
    /// Where the incidents page and API are reached from outside the cluster.
    pub ingress: Option<Ingress>,
    pub placement: placement::Placement,
    /// In a fleet, the URL of the router in another cluster that this cluster's Alertmanagers
    /// send to; `None`: the router runs here.
    pub remote: Option<String>,
    /// In a fleet, every cluster's name (the router here serves them all); empty otherwise.
    pub fleet: Vec<String>,
}

/// `router.people`: the users file and the authenticating proxy, and who may read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeopleSpec {
    /// A Secret key holding `name:bcrypt-hash` lines.
    pub users: Option<SecretRef>,
    pub proxy: Option<ProxySpec>,
    pub viewers: Vec<String>,
}

/// The authenticating proxy in front of the router.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxySpec {
    pub trusted: Vec<String>,
    pub user_header: Option<String>,
    pub groups_header: Option<String>,
}

/// Outgoing mail server used by `email` destinations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Smtp {
    #[serde(flatten)]
    pub server: SmtpServer,
    pub password: Option<SecretRef>,
}

/// A reference to one key of a Kubernetes Secret. Specs never hold secret values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SecretRef {
    pub secret: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    pub name: String,
    pub destinations: Vec<Destination>,
    /// The severities a destination takes, where the spec says (`severities`); the others take
    /// their kind's default (pagers: critical; chat and e-mail: every severity).
    pub severities: BTreeMap<DestinationKind, Vec<Severity>>,
    /// Which of the team's destinations its alerts go to, in order (none: all of them).
    pub routes: Vec<TeamRoute>,
    /// Namespaces where the team owns every workload, listed as a service or not; a `team`
    /// label inside them names no other team.
    pub namespaces: Vec<String>,
    /// When the team's non-critical notifications wait (held until the quiet hours end).
    pub quiet_hours: Vec<TimeInterval>,
    pub rule_files: Vec<IncludedFile>,
    /// Grafana dashboards (JSON), provisioned into the team's folder; once read, their
    /// contents are the text Grafana loads.
    pub dashboards: Vec<IncludedFile>,
    /// Who may act on the team's incidents (people, `group:NAME`, `*`).
    pub responders: Vec<String>,
    /// The team's escalation policy, in order (none: routes and destinations decide).
    pub escalation: Vec<EscalationStep>,
}

/// A step of a team's escalation policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationStep {
    /// As written (`10m`); `0s` for the first step.
    pub after: String,
    pub destinations: Vec<EscalationTarget>,
}

/// A destination an escalation step tells: one of the team's own, or another team's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationTarget {
    /// `None`: the team's own.
    pub team: Option<String>,
    pub kind: DestinationKind,
    /// Where the spec names it, to report another team's destination that does not exist.
    #[serde(skip)]
    pub file: String,
    #[serde(skip)]
    pub location: crate::diagnostic::Location,
}

/// A route of a team: alerts of the team matching every matcher go to these destinations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRoute {
    /// Matchers in Alertmanager's syntax (`severity="critical"`, `service=~"checkout|cart"`).
    pub matchers: Vec<String>,
    pub destinations: Vec<DestinationKind>,
    /// Go on to the next route after this one matched.
    pub continue_matching: bool,
}

impl Team {
    /// The severities the team's destination of `kind` takes; `None`: every severity.
    pub fn severities_of(&self, kind: DestinationKind) -> Option<Vec<Severity>> {
        self.severities
            .get(&kind)
            .cloned()
            .or_else(|| kind.info().default_severities.map(<[Severity]>::to_vec))
    }

    /// Whether the team's destination of `kind` takes `severity`.
    pub fn takes(&self, kind: DestinationKind, severity: Severity) -> bool {
        self.severities_of(kind)
            .is_none_or(|taken| taken.contains(&severity))
    }
}

/// Where a team is reached. Chat and webhook destinations post to a URL held in a Secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Destination {
    Slack { url: SecretRef },
    Mattermost { url: SecretRef },
    Discord { url: SecretRef },
    Msteams { url: SecretRef },
    GoogleChat { url: SecretRef },
    Webhook { url: SecretRef },
    Email { to: Vec<String> },
    Pagerduty { routing_key: SecretRef },
    Opsgenie { api_key: SecretRef, region: String },
}

impl Destination {
    /// The router destination kind (also the spec key) of this destination.
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Slack { .. } => DestinationKind::Slack,
            Destination::Mattermost { .. } => DestinationKind::Mattermost,
            Destination::Discord { .. } => DestinationKind::Discord,
            Destination::Msteams { .. } => DestinationKind::Msteams,
            Destination::GoogleChat { .. } => DestinationKind::GoogleChat,
            Destination::Webhook { .. } => DestinationKind::Webhook,
            Destination::Email { .. } => DestinationKind::Email,
            Destination::Pagerduty { .. } => DestinationKind::Pagerduty,
            Destination::Opsgenie { .. } => DestinationKind::Opsgenie,
        }
    }

    /// The Secret key this destination reads, if any.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            Destination::Slack { url }
            | Destination::Mattermost { url }
            | Destination::Discord { url }
            | Destination::Msteams { url }
            | Destination::GoogleChat { url }
            | Destination::Webhook { url } => Some(url),
            Destination::Pagerduty { routing_key } => Some(routing_key),
            Destination::Opsgenie { api_key, .. } => Some(api_key),
            Destination::Email { .. } => None,
        }
    }
}

/// A file a team names (a rule file, a dashboard) as written, with the place it was named (for
/// errors) and, once [`load`] has read it, its contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncludedFile {
    pub path: String,
    #[serde(skip)]
    pub location: Location,
    /// The file that names it: the spec or a team file (for errors).
    #[serde(skip)]
    pub named_in: String,
    /// The directory of the team file naming it, where `path` is relative to; empty when the
    /// spec names it (then relative to the spec's directory).
    #[serde(skip)]
    pub dir: std::path::PathBuf,
    #[serde(skip)]
    pub contents: Option<String>,
}

impl IncludedFile {
    /// The directory `path` is relative to, given the spec's.
    pub fn directory(&self, spec_dir: &Path) -> std::path::PathBuf {
        if self.dir.as_os_str().is_empty() {
            spec_dir.to_path_buf()
        } else {
            self.dir.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub team: String,
    pub namespace: String,
    /// Pod labels that select the service's pods.
    pub selector: BTreeMap<String, String>,
    pub port: Port,
    pub path: String,
    /// Default alerts changed for this service only (`services[].alerts`), over `alerts:`.
    pub alerts: BTreeMap<String, AlertOverride>,
    /// The service's objectives (`services[].slos`), availability first.
    pub slos: Vec<Slo>,
    /// How its request metrics are named (`services[].metrics`, the Prometheus default unless set).
    pub metrics: metrics::ServiceMetrics,
    /// Where `metrics:` is written, or the service's entry when it is not.
    #[serde(skip)]
    pub metrics_location: Location,
    /// The file the service is declared in (the spec or a team file), and its entry there
    /// (`services[2]`), for problems found later.
    #[serde(skip)]
    pub written_in: String,
    #[serde(skip)]
    pub field: String,
}

/// A service level objective: the share of good requests over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    pub kind: SloKind,
    /// Percent of requests that must be good, as written (`99.9`); below 100.
    pub objective: String,
    /// The window the objective holds over (a Prometheus duration, default 30d).
    pub window: String,
    /// Latency: a good request is faster than this many seconds (a histogram bucket bound).
    pub threshold: Option<String>,
    /// Requests per second below which the service never pages (it still gets the ticket).
    pub min_rate: String,
    /// Where the threshold is written (latency), or the objective's entry.
    #[serde(skip)]
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloKind {
    /// Good: not answered with a 5xx.
    Availability,
    /// Good: answered within the threshold.
    Latency,
}

impl SloKind {
    pub fn name(self) -> &'static str {
        match self {
            SloKind::Availability => "availability",
            SloKind::Latency => "latency",
        }
    }
}

/// A metrics port, by container port number or name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Port {
    Number(u16),
    Name(String),
}

impl Spec {
    /// The Secret keys Prometheus reads (remote_write credentials, Thanos' object storage),
    /// sorted and without duplicates.
    pub fn prometheus_secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = self
            .prometheus
            .remote_write
            .iter()
            .flat_map(|r| r.secrets().into_iter().cloned())
            .chain(
                self.prometheus
                    .thanos
                    .iter()
                    .filter_map(|t| t.object_storage.clone()),
            )
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }

    /// The Secret keys Grafana reads besides its admin account (the OAuth client secret,
    /// `grafana.ini` settings), sorted and without duplicates.
    pub fn grafana_secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = self
            .grafana
            .oauth
            .iter()
            .map(|o| o.client_secret.clone())
            .chain(self.grafana.ini.values().flat_map(|settings| {
                settings.values().filter_map(|value| match value {
                    grafana::IniValue::Secret(secret) => Some(secret.clone()),
                    grafana::IniValue::Text(_) => None,
                })
            }))
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }

    /// All Secret keys the router reads, sorted and without duplicates.
    pub fn secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = self
            .teams
            .iter()
            .flat_map(|t| {
                t.destinations
                    .iter()
                    .filter_map(Destination::secret)
                    .cloned()
            })
            .chain(self.router.smtp.iter().filter_map(|s| s.password.clone()))
            .chain(self.router.people.iter().filter_map(|p| p.users.clone()))
            .collect();
        refs.sort();
        refs.dedup();
        refs
    }
}

/// Why a spec could not be loaded.
pub type SpecError = crate::diagnostic::FileError;

/// Reads and validates a spec file with the team files it includes (`team_files`), then reads
/// the team rule files they name (relative to the file naming them) and lints them for their
/// team: a rule file Prometheus would refuse to load (or one labelled with another team) is an
/// error here, at its own file, line and column.
/// A fleet spec gives its first cluster's stack ([`load_fleet`] gives them all).
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    load_with(path, None).map(|mut specs| specs.swap_remove(0))
}

/// [`load`] for every cluster of a fleet spec (`clusters:`), in the order written; any other
/// spec gives its one stack.
pub fn load_fleet(path: &Path) -> Result<Vec<Spec>, SpecError> {
    load_with(path, None)
}

/// [`load`], with `team_file` (a team's changed file, wherever it is) in place of the file the
/// spec includes for the same team, or added when it includes none: a team's own check.
pub fn load_with_team_file(path: &Path, team_file: &Path) -> Result<Spec, SpecError> {
    load_with(path, Some(team_file)).map(|mut specs| specs.swap_remove(0))
}

fn load_with(path: &Path, replacement: Option<&Path>) -> Result<Vec<Spec>, SpecError> {
    let source = crate::files::read_spec(path).map_err(|error| SpecError::Read {
        path: path.to_path_buf(),
        reason: error.into(),
    })?;
    let file = path.display().to_string();
    let invalid = |diagnostics, included| SpecError::Invalid {
        file: file.clone(),
        source_text: source.clone(),
        diagnostics,
        included,
    };
    let base = crate::files::dir_of(path);
    let (mut team_files, mut diagnostics) = read_team_files(&file, base, &source);
    if let Some(replacement) = replacement {
        let text = crate::files::read_spec(replacement).map_err(|error| SpecError::Read {
            path: replacement.to_path_buf(),
            reason: error.into(),
        })?;
        let dir = crate::files::dir_of(replacement).to_path_buf();
        let team = team_of_team_file(&text);
        let same_file = |name: &str| {
            std::fs::canonicalize(name).ok() == std::fs::canonicalize(replacement).ok()
        };
        team_files.retain(|included| {
            !same_file(&included.name)
                && (team.is_none() || team_of_team_file(&included.text) != team)
        });
        team_files.push(TeamFileSource {
            name: replacement.display().to_string(),
            dir,
            text,
        });
    }
    let mut included: BTreeMap<String, String> = team_files
        .iter()
        .map(|t| (t.name.clone(), t.text.clone()))
        .collect();
    if !diagnostics.is_empty() {
        // The includes themselves failed: the spec without the missing files would only say
        // that their teams have no destination, so the files read are checked on their own.
        for team_file in &team_files {
            if let Err(more) = parse_team_file(&team_file.name, &team_file.text, &team_file.dir) {
                diagnostics.extend(more);
            }
        }
        return Err(invalid(diagnostics, included));
    }
    let mut specs = match parse_fleet_with_team_files(&file, &source, &team_files) {
        Ok(spec) => spec,
        Err(mut found) => {
            // The rule files of each team file that reads on its own are checked too, so a
            // team sees every problem of its change at once.
            for team_file in &team_files {
                if let Ok((mut team, _)) =
                    parse_team_file(&team_file.name, &team_file.text, &team_file.dir)
                {
                    found.extend(read_rule_files(&mut team, base, &file, 0, &mut included));
                }
            }
            return Err(invalid(found, included));
        }
    };
    for spec in &mut specs {
        let mut found = Vec::new();
        for (team_index, team) in spec.teams.iter_mut().enumerate() {
            found.extend(read_rule_files(
                team,
                base,
                &file,
                team_index,
                &mut included,
            ));
        }
        found.extend(dashboard_uids_unique(&spec.teams));
        for found in found {
            // Every cluster of a fleet reads the same files: each problem once.
            if !diagnostics.contains(&found) {
                diagnostics.push(found);
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(specs)
    } else {
        Err(invalid(diagnostics, included))
    }
}

/// Reads the rule files and dashboards `team` names (into it), lints the rule files as the
/// team's and checks the dashboards; returns the problems, and adds the texts read to
/// `included`. `team_index` is the team's entry in the spec `file`.
fn read_rule_files(
    team: &mut Team,
    base: &Path,
    file: &str,
    team_index: usize,
    included: &mut BTreeMap<String, String>,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut texts = Vec::new();
    for (file_index, rule_file) in team.rule_files.iter_mut().enumerate() {
        match read_named(rule_file, base, file, team_index, "rule_files", file_index) {
            Ok((rule_path, text)) => {
                texts.push((rule_path, text.clone()));
                rule_file.contents = Some(text);
            }
            Err(problem) => diagnostics.push(*problem),
        }
    }
    diagnostics.extend(team_rule_errors(&team.name, &texts));
    included.extend(texts);
    diagnostics.extend(read_dashboards(team, base, file, team_index, included));
    diagnostics
}

/// The most bytes of dashboards a team provisions: they share one ConfigMap, which Kubernetes
/// keeps under 1 MiB.
const MAX_TEAM_DASHBOARD_BYTES: usize = 900 * 1024;

/// Reads and checks the dashboards `team` names; their contents become what Grafana loads.
fn read_dashboards(
    team: &mut Team,
    base: &Path,
    file: &str,
    team_index: usize,
    included: &mut BTreeMap<String, String>,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut bytes = 0;
    for (index, dashboard) in team.dashboards.iter_mut().enumerate() {
        let (path, text) = match read_named(dashboard, base, file, team_index, "dashboards", index)
        {
            Ok(read) => read,
            Err(problem) => {
                diagnostics.push(*problem);
                continue;
            }
        };
        included.insert(path.clone(), text.clone());
        let named_here = |message: String, hint: &str| Diagnostic {
            file: dashboard.named_in.clone(),
            location: dashboard.location,
            field: format!("teams.{}.dashboards", team.name),
            message,
            hint: Some(hint.to_string()),
            redact: false,
            width: None,
        };
        let key = dashboard_file_name(&dashboard.path);
        if let Some(first) = names.insert(key.clone(), dashboard.path.clone()) {
            diagnostics.push(named_here(
                format!(
                    "`{}` and `{first}` are both provisioned as {key}",
                    dashboard.path
                ),
                "rename one: a team's dashboards are files of one folder",
            ));
        }
        match crate::rules::dashboard::check(&path, &text) {
            Ok(checked) => {
                if checked.uid.starts_with("stackgen-") {
                    diagnostics.push(named_here(
                        format!("the uid `{}` is one of the stack's", checked.uid),
                        "uids starting with `stackgen-` are the stack's own dashboards; choose another",
                    ));
                }
                bytes += checked.provisioned.len();
                dashboard.contents = Some(checked.provisioned);
            }
            Err(problems) => diagnostics.extend(problems),
        }
    }
    if bytes > MAX_TEAM_DASHBOARD_BYTES
        && let Some(first) = team.dashboards.first()
    {
        diagnostics.push(Diagnostic {
            file: first.named_in.clone(),
            location: first.location,
            field: format!("teams.{}.dashboards", team.name),
            message: format!(
                "team {}'s dashboards hold {} KiB; one ConfigMap holds at most {} KiB",
                team.name,
                bytes / 1024,
                MAX_TEAM_DASHBOARD_BYTES / 1024
            ),
            hint: Some(
                "drop unused panels, or split the team's dashboards among its services' teams"
                    .into(),
            ),
            redact: false,
            width: None,
        });
    }
    diagnostics
}

/// Every dashboard uid once across all teams (Grafana keeps one dashboard per uid); a second
/// one is a problem where its file is named.
fn dashboard_uids_unique(teams: &[Team]) -> Vec<Diagnostic> {
    let mut first_of: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for team in teams {
        for dashboard in &team.dashboards {
            let Some(uid) = dashboard
                .contents
                .as_deref()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                .and_then(|json| json["uid"].as_str().map(str::to_string))
            else {
                continue;
            };
            match first_of.get(&uid) {
                Some((first_team, first_path)) => diagnostics.push(Diagnostic {
                    file: dashboard.named_in.clone(),
                    location: dashboard.location,
                    field: format!("teams.{}.dashboards", team.name),
                    message: format!(
                        "`{}` has the uid `{uid}` of team {first_team}'s `{first_path}`",
                        dashboard.path
                    ),
                    hint: Some(
                        "give every dashboard its own uid: Grafana keeps one dashboard per uid"
                            .into(),
                    ),
                    redact: false,
                    width: None,
                }),
                None => {
                    first_of.insert(uid, (&team.name, &dashboard.path));
                }
            }
        }
    }
    diagnostics
}

/// The file name a team's dashboard is provisioned as (the ConfigMap key, in the folder).
pub fn dashboard_file_name(path: &str) -> String {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.ends_with(".json") {
        name
    } else {
        format!("{name}.json")
    }
}

/// Reads a file `team` names, the `index`th of `key`: relative to the file naming it; a team
/// file's file that its directory does not have is looked for beside the spec, where a single
/// spec would name it. Gives the path read (as shown) and the text.
fn read_named(
    named: &IncludedFile,
    base: &Path,
    file: &str,
    team_index: usize,
    key: &str,
    index: usize,
) -> Result<(String, String), Box<Diagnostic>> {
    let dir = named.directory(base);
    let named_by_spec = named.named_in == file;
    let read = crate::files::read_confined(&dir, &named.path).or_else(|error| {
        match (&error, named_by_spec) {
            (crate::files::ReadError::Io(io), false)
                if io.kind() == std::io::ErrorKind::NotFound =>
            {
                crate::files::read_confined(base, &named.path).map_err(|_| error)
            }
            _ => Err(error),
        }
    });
    let what = if key == "dashboards" {
        "dashboard"
    } else {
        "rule file"
    };
    read.map(|(path, text)| (path.display().to_string(), text))
        .map_err(|err| {
            Box::new(Diagnostic {
                file: named.named_in.clone(),
                location: named.location,
                field: if named_by_spec {
                    format!("teams[{team_index}].{key}[{index}]")
                } else {
                    format!("{key}[{index}]")
                },
                message: format!("cannot read {what} `{}`: {err}", named.path),
                hint: Some(format!(
                    "a {what} is a regular file inside {} ({}), named by a path relative to it",
                    if named_by_spec {
                        "the spec's directory"
                    } else {
                        "its team file's directory (or, failing that, the spec's)"
                    },
                    dir.display()
                )),
                redact: false,
                width: None,
            })
        })
}

/// Reads the team files the spec's `team_files` name (relative to `base`, its directory); a
/// pattern that cannot be read is a problem at its place in the spec.
fn read_team_files(
    file: &str,
    base: &Path,
    source: &str,
) -> (Vec<TeamFileSource>, Vec<Diagnostic>) {
    let mut team_files: Vec<TeamFileSource> = Vec::new();
    let mut diagnostics = Vec::new();
    let mut bytes = 0u64;
    let problem = |location, field: String, message: String, hint: &str| Diagnostic {
        file: file.to_string(),
        location,
        field,
        message,
        hint: Some(hint.to_string()),
        redact: false,
        width: None,
    };
    for (index, (pattern, location)) in team_file_includes(source).into_iter().enumerate() {
        let field = format!("team_files[{index}]");
        let relative_paths = match crate::files::team_files_matching(base, &pattern) {
            Ok(paths) => paths,
            Err(reason) => {
                diagnostics.push(problem(
                    location,
                    field,
                    format!("cannot read team files `{pattern}`: {reason}"),
                    "name a directory of team files, or a glob such as `teams/*.yaml`, relative to the spec's directory",
                ));
                continue;
            }
        };
        for relative in relative_paths {
            let name = base.join(&relative).display().to_string();
            if team_files.iter().any(|t| t.name == name) {
                continue;
            }
            match crate::files::read_confined(base, &relative) {
                Ok((_, text)) => {
                    bytes += text.len() as u64;
                    if bytes > crate::files::MAX_TEAM_FILE_BYTES
                        || team_files.len() >= crate::files::MAX_TEAM_FILES
                    {
                        diagnostics.push(problem(
                            location,
                            field,
                            format!(
                                "the team files hold more than {} files or {} MiB",
                                crate::files::MAX_TEAM_FILES,
                                crate::files::MAX_TEAM_FILE_BYTES / 1024 / 1024
                            ),
                            "split the platform into several stacks",
                        ));
                        return (team_files, diagnostics);
                    }
                    let dir = crate::files::dir_of(&base.join(&relative)).to_path_buf();
                    team_files.push(TeamFileSource { name, dir, text });
                }
                Err(err) => diagnostics.push(problem(
                    location,
                    field.clone(),
                    format!("cannot read team file `{relative}`: {err}"),
                    "a team file is a regular file inside the spec's directory",
                )),
            }
        }
    }
    (team_files, diagnostics)
}

/// The errors of a team's rule files, linted together as the team's (warnings are for
/// `stackgen rules lint`).
fn team_rule_errors(team: &str, files: &[(String, String)]) -> Vec<Diagnostic> {
    let options = crate::rules::lint::LintOptions {
        team: Some(team.to_string()),
        known_metrics: None,
    };
    crate::rules::lint::lint(files, &options)
        .into_iter()
        .filter(|finding| finding.level == crate::diagnostic::Level::Error)
        .map(|finding| finding.diagnostic)
        .collect()
}
