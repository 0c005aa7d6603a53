//! The command line: argument types and the glue for each command. Only this module prints.

mod demo;
mod incidents;
mod slo;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diagnostic;
use crate::render;
use crate::router::preview::Previewed;
use crate::spec::{self, Platform};

#[derive(Parser, Debug)]
#[command(
    name = "stackgen",
    version,
    about = "Render a Prometheus + Alertmanager + Grafana stack from one short spec"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// See stackgen work, with nothing to install: render the example stack, start the router on
    /// loopback and replay an alert storm through it.
    Demo {
        /// Where to write the example spec and the rendered stack.
        #[arg(long, default_value = "stackgen-demo")]
        dir: PathBuf,
        /// Replay speed: 1 is real time (about 7 seconds of alerts), 10 is ten times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Write a commented starter stack.yaml.
    Init {
        /// Platform profile of the cluster.
        #[arg(long, value_enum, default_value = "generic")]
        platform: PlatformArg,
        /// Where to write it (`-` for standard output).
        #[arg(long, default_value = "stack.yaml")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a spec and report every problem in it.
    Validate {
        /// The spec file.
        spec: PathBuf,
        /// Check a service's metrics convention against a scrape of it: `SERVICE=FILE|URL`
        /// (`NAMESPACE/SERVICE=...` when the name is in several namespaces). May be repeated.
        #[arg(long = "metrics", value_name = "SERVICE=FILE|URL")]
        metrics: Vec<String>,
        /// Check one team's file against the spec, in place of the file the spec includes for
        /// that team (a team's own CI): its problems and the spec's are reported, other teams'
        /// files are only counted.
        #[arg(long, value_name = "TEAM_FILE")]
        team: Option<PathBuf>,
        /// `json`: one document on stdout ({valid, clusters, problems}); the exit code is the same.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Validate a spec, then write the whole stack.
    Render {
        /// The spec file.
        spec: PathBuf,
        /// Output directory (replaced whole; a fleet gets one directory per cluster), or `-` for
        /// one multi-document YAML stream on stdout.
        #[arg(long)]
        out: PathBuf,
        /// Of a fleet, only this cluster's stack (needed with `--out -`).
        #[arg(long)]
        cluster: Option<String>,
        /// `json`: the summary (files written and removed, clusters, Secrets to create) as one
        /// document on stdout instead of text on stderr.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Tell Prometheus or Alertmanager to reload (`POST /-/reload`) whenever the watched
    /// directories (their mounted ConfigMaps) change: the stack's sidecar, so rule and route
    /// changes never restart them.
    ConfigReloader {
        /// A directory to watch (every file under it, following ConfigMap symlinks). May be
        /// repeated.
        #[arg(long = "watch", required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The reload endpoint, e.g. http://127.0.0.1:9090/-/reload.
        #[arg(long)]
        reload_url: String,
        /// How often the directories are looked at (a Prometheus duration).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Print every container image the stack runs (for mirroring into air-gapped registries).
    Images {
        /// The spec file.
        spec: PathBuf,
        /// Print the images as published upstream (what to copy into a mirror) instead of as
        /// the pods pull them.
        #[arg(long)]
        upstream: bool,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Lint and test Prometheus rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The alert router: service-level incidents from Alertmanager webhooks.
    #[command(subcommand)]
    Router(RouterCommand),
    /// Service level objectives.
    #[command(subcommand)]
    Slo(SloCommand),
    /// The router's open incidents and silences: list, show, acknowledge, silence.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `stackgen completions bash > /etc/bash_completion.d/stackgen`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (stackgen.1 and one per command, stackgen-render.1, ...) into a
    /// directory.
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum IncidentsCommand {
    /// The open incidents, one line each (team, service, severity, members, who is on it).
    List {
        #[command(flatten)]
        router: RouterAccess,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// Only of this severity (critical, warning, info).
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// One open incident: its members and every notification with its delivery.
    Show {
        /// The incident's key (as `list` shows it).
        incident: String,
        #[command(flatten)]
        router: RouterAccess,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Say you are on an incident: its team is told once, pagers acknowledge, reminders stop.
    Ack {
        /// The incident's key.
        incident: String,
        #[command(flatten)]
        router: RouterAccess,
    },
    /// Take an acknowledgement back: the team is told, reminders start again.
    Unack {
        /// The incident's key.
        incident: String,
        #[command(flatten)]
        router: RouterAccess,
    },
    /// Hold the notifications of matching incidents for a while (a maintenance window when it
    /// starts later); they are still tracked, and told once when the silence ends.
    Silence {
        /// A matcher in Alertmanager's syntax; one must be `team="NAME"` of a team you respond
        /// for. May be repeated.
        #[arg(long = "matcher", required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long from its start (a Prometheus duration: 2h, 1h30m).
        #[arg(long, conflicts_with = "ends_at", required_unless_present = "ends_at")]
        duration: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long)]
        ends_at: Option<String>,
        /// When it starts (RFC 3339) [default: now].
        #[arg(long)]
        starts_at: Option<String>,
        /// Why, for the others on call.
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        router: RouterAccess,
    },
    /// End a silence now.
    Unsilence {
        /// The silence's id (as `silences` shows it).
        silence: String,
        #[command(flatten)]
        router: RouterAccess,
    },
    /// The silences the router keeps, the latest to start first.
    Silences {
        #[command(flatten)]
        router: RouterAccess,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

/// How `incidents` reaches the router and signs in.
#[derive(Args, Debug)]
struct RouterAccess {
    /// The router's URL, e.g. http://localhost:8080 (after kubectl port-forward).
    #[arg(long)]
    router: String,
    /// Sign in as this person (a user of the router's users file); actions need one.
    #[arg(long)]
    user: Option<String>,
    /// A file holding the person's password [default: $STACKGEN_ROUTER_PASSWORD].
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Without --user: a file holding the router's bearer token, to read [default:
    /// $STACKGEN_ROUTER_TOKEN].
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl RouterAccess {
    fn client(&self) -> anyhow::Result<incidents::Client> {
        incidents::Client::new(
            &self.router,
            self.user.as_deref(),
            self.password_file.as_deref(),
            self.token_file.as_deref(),
        )
    }
}

#[derive(Subcommand, Debug)]
enum SloCommand {
    /// Each objective's target, error budget left and burn rates, from a running Prometheus that
    /// evaluates the rendered slos.yaml.
    Status {
        /// Prometheus' base URL, e.g. http://localhost:9090 (after kubectl port-forward).
        #[arg(long)]
        prometheus: String,
        /// Only this service (`NAME` or `NAMESPACE/NAME`).
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
enum RouterCommand {
    /// Run the router.
    Serve {
        #[command(flatten)]
        config: RouterConfigArg,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Check a router configuration and report every problem in it.
    CheckConfig {
        #[command(flatten)]
        config: RouterConfigArg,
        /// `json`: one document on stdout ({valid, problems}); the exit code is the same.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Print exactly what a webhook body would send to one destination, without sending.
    Preview {
        #[command(flatten)]
        config: RouterConfigArg,
        /// `team/name` of the destination.
        #[arg(long)]
        destination: String,
        /// An Alertmanager webhook body (JSON).
        #[arg(long)]
        fixture: PathBuf,
    },
    /// Send a clearly marked test notification to one destination and report the outcome.
    SendTest {
        #[command(flatten)]
        config: RouterConfigArg,
        /// `team/name` of the destination.
        #[arg(long)]
        destination: String,
    },
    /// Which destinations an alert reaches, and what decided.
    #[command(subcommand)]
    Routes(RoutesCommand),
}

#[derive(Subcommand, Debug)]
enum RoutesCommand {
    /// Print the team, the incident and the destinations an alert with these labels reaches,
    /// and which route (or the team's destinations) decided, like `amtool config routes test`.
    Test {
        #[command(flatten)]
        config: RouterConfigArg,
        /// The alert's labels, `LABEL=VALUE` (e.g. alertname=HighErrorRate severity=warning).
        #[arg(value_name = "LABEL=VALUE")]
        labels: Vec<String>,
    },
}

/// The router configuration a `router` command reads: the file positional, as every stackgen
/// command takes its file; `--config FILE`, the earlier spelling, is still understood.
#[derive(clap::Args, Debug, Clone)]
struct RouterConfigArg {
    /// The router configuration (router.yaml).
    #[arg(value_name = "CONFIG", required_unless_present = "config_flag")]
    config: Option<PathBuf>,
    #[arg(long = "config", value_name = "CONFIG", hide = true)]
    config_flag: Option<PathBuf>,
}

impl RouterConfigArg {
    /// The configuration's path, and the positional argument left over when it was given as
    /// `--config` (the first label of `routes test`).
    fn resolve(&self) -> (PathBuf, Option<String>) {
        match (&self.config_flag, &self.config) {
            (Some(flag), positional) => (
                flag.clone(),
                positional.as_ref().map(|p| p.display().to_string()),
            ),
            (None, Some(positional)) => (positional.clone(), None),
            (None, None) => (PathBuf::new(), None),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Report every problem in rule files (exit 0 clean or warnings only, 1 errors).
    Lint {
        /// Rule files (default with `--team-file`: the rule files it names).
        #[arg(required_unless_present = "team_file")]
        files: Vec<PathBuf>,
        /// The team the files belong to (stackgen labels every rule of a team's file with it).
        #[arg(long, conflicts_with = "team_file")]
        team: Option<String>,
        /// A team file: its team labels the rules, its services are what `--metrics
        /// SERVICE=...` names (with `--spec`, as the spec sees them).
        #[arg(long)]
        team_file: Option<PathBuf>,
        /// A Prometheus text exposition (file or http:// URL); metric names missing from all given
        /// expositions are reported. `SERVICE=FILE|URL` (with `--spec`) is a scrape of that
        /// service, whose metrics convention is checked too. May be repeated.
        #[arg(long = "metrics", value_name = "[SERVICE=]FILE|URL")]
        metrics: Vec<String>,
        /// The spec whose services `--metrics SERVICE=...` names.
        #[arg(long)]
        spec: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run `promtool test rules` on test files against the rules as stackgen renders them.
    Test {
        /// promtool test files (their `rule_files` are relative to them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Label the rules with this team, as `stackgen render` does.
        #[arg(long, conflicts_with_all = ["spec", "team_file"])]
        team: Option<String>,
        /// Find the team from the spec that lists the rule files.
        #[arg(long, conflicts_with = "team_file")]
        spec: Option<PathBuf>,
        /// Label the rules with the team of this team file.
        #[arg(long)]
        team_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlatformArg {
    Generic,
    Digitalocean,
    Eks,
    Gke,
    Aks,
    Kubeadm,
    Kind,
}

impl From<PlatformArg> for Platform {
    fn from(p: PlatformArg) -> Self {
        match p {
            PlatformArg::Generic => Platform::Generic,
            PlatformArg::Digitalocean => Platform::Digitalocean,
            PlatformArg::Eks => Platform::Eks,
            PlatformArg::Gke => Platform::Gke,
            PlatformArg::Aks => Platform::Aks,
            PlatformArg::Kubeadm => Platform::Kubeadm,
            PlatformArg::Kind => Platform::Kind,
        }
    }
}

/// How a command ended, mapped to the exit code.
enum Outcome {
    Ok,
    Invalid,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Invalid) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Demo { dir, speed } => {
            demo::run(&dir, speed)?;
            Ok(Outcome::Ok)
        }
        Command::Init {
            platform,
            out,
            force,
        } => init(platform.into(), &out, force),
        Command::Validate {
            spec,
            metrics,
            team,
            format: Format::Json,
        } if metrics.is_empty() && team.is_none() => validate_json(&spec),
        Command::Validate {
            format: Format::Json,
            ..
        } => anyhow::bail!("--format json checks the spec alone: without --metrics and --team"),
        Command::Validate {
            spec,
            metrics,
            team,
            format: Format::Human,
        } => validate(&spec, &metrics, team.as_deref()),
        Command::Render {
            spec,
            out,
            cluster,
            format,
        } => render_command(&spec, &out, cluster.as_deref(), format),
        Command::Rules(RulesCommand::Lint {
            files,
            team,
            team_file,
            metrics,
            spec,
            format,
            deny_warnings,
        }) => rules_lint(
            files,
            team,
            team_file.as_deref(),
            &metrics,
            spec.as_deref(),
            format,
            deny_warnings,
        ),
        Command::Rules(RulesCommand::Test {
            files,
            team,
            spec,
            team_file,
        }) => rules_test(&files, team, spec.as_deref(), team_file.as_deref()),
        Command::Router(command) => router_command(command),
        Command::Slo(SloCommand::Status {
            prometheus,
            service,
            format,
        }) => slo_status(&prometheus, service.as_deref(), format),
        Command::Images {
            spec,
            upstream,
            format,
        } => images(&spec, upstream, format),
        Command::Incidents(command) => incidents_command(command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "stackgen", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing to stdout"))
                }
                _ => Ok(Outcome::Ok),
            }
        }
        Command::Man { out } => {
            let written = write_man_pages(&out)?;
            eprintln!("wrote {written} man pages to {}", out.display());
            Ok(Outcome::Ok)
        }
        Command::ConfigReloader {
            dirs,
            reload_url,
            interval,
            log_format,
        } => {
            let interval_ms = crate::config_check::values::parse_duration_ms(&interval)
                .map_err(|hint| anyhow::anyhow!("--interval {interval}: {hint}"))?;
            if interval_ms == 0 {
                anyhow::bail!("--interval must be longer than 0s");
            }
            if !reload_url.starts_with("http://") && !reload_url.starts_with("https://") {
                anyhow::bail!("--reload-url {reload_url}: an http:// or https:// URL");
            }
            init_logging(log_format);
            crate::reload::run(&dirs, &reload_url, Duration::from_millis(interval_ms))
        }
    }
}

fn render_command(
    spec: &Path,
    out: &Path,
    cluster: Option<&str>,
    format: Format,
) -> anyhow::Result<Outcome> {
    let Some(fleet) = load_fleet(spec)? else {
        return Ok(Outcome::Invalid);
    };
    let is_fleet = !fleet[0].router.fleet.is_empty();
    let chosen = choose_clusters(fleet, cluster)?;
    let mut stacks = Vec::new();
    for loaded in &chosen {
        let stack = render::render(loaded)
            .with_context(|| format!("rendering the stack of cluster {}", loaded.cluster.name))?;
        stacks.push((loaded.cluster.name.clone(), stack));
    }
    if out.as_os_str() == "-" {
        if stacks.len() > 1 {
            anyhow::bail!(
                "--out - writes one cluster's stack: add --cluster NAME (one of {})",
                fleet_names(&chosen)
            );
        }
        let stack = &stacks[0].1;
        std::io::stdout()
            .write_all(stack.stream().as_bytes())
            .context("writing to stdout")?;
        return Ok(Outcome::Ok);
    }
    let removed = if is_fleet && cluster.is_none() {
        render::output::write_fleet(&stacks, out)?
    } else {
        render::output::write_dir(&stacks[0].1, out)?
    };
    let files: usize = stacks.iter().map(|(_, s)| s.files().len()).sum();
    if let Format::Json = format {
        let document = serde_json::json!({
            "out": out.display().to_string(),
            "files": files,
            "removed": removed,
            "clusters": stacks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            "namespace": chosen[0].namespace,
            "secrets": required_secrets(&chosen[0]),
            "secrets_by_cluster": chosen.iter().map(|loaded| serde_json::json!({
                "cluster": loaded.cluster.name,
                "namespace": loaded.namespace,
                "secrets": required_secrets(loaded),
            })).collect::<Vec<_>>(),
        });
        println!("{document:#}");
        return Ok(Outcome::Ok);
    }
    eprintln!("wrote {files} files to {}", out.display());
    if !removed.is_empty() {
        eprintln!(
            "removed {} files an earlier render wrote that this one does not:",
            removed.len()
        );
        for path in &removed {
            eprintln!("  {path}");
        }
    }
    if is_fleet && cluster.is_none() {
        eprintln!("apply each cluster's stack to its own cluster:");
        for (name, _) in &stacks {
            eprintln!(
                "  kubectl --context {name} apply -k {}",
                out.join(name).display()
            );
        }
    } else {
        eprintln!("apply with: kubectl apply -k {}", out.display());
    }
    print_required_secrets(&chosen, is_fleet);
    let loaded = &chosen[0];
    if let Some(platform) = &loaded.router.platform_team
        && render::direct_path::direct_destinations(loaded).is_empty()
    {
        eprintln!(
            "note: team {platform} has no destination Alertmanager delivers to itself ({}): the router's own alerts (StackgenRouterDown, ...) reach it only through the router",
            render::direct_path::DIRECT_KINDS
        );
    }
    Ok(Outcome::Ok)
}

/// The clusters `--cluster` picks of a fleet (all of them without it).
fn choose_clusters(
    fleet: Vec<spec::Spec>,
    cluster: Option<&str>,
) -> anyhow::Result<Vec<spec::Spec>> {
    let Some(name) = cluster else {
        return Ok(fleet);
    };
    let names = fleet_names(&fleet);
    let chosen: Vec<spec::Spec> = fleet
        .into_iter()
        .filter(|s| s.cluster.name == name)
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("--cluster {name}: the spec has no such cluster (it has {names})");
    }
    Ok(chosen)
}

fn fleet_names(specs: &[spec::Spec]) -> String {
    specs
        .iter()
        .map(|s| s.cluster.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn slo_status(prometheus: &str, service: Option<&str>, format: Format) -> anyhow::Result<Outcome> {
    let answers = slo::query_all(prometheus)?;
    let statuses = slo::statuses(&answers, service);
    if statuses.is_empty() {
        eprintln!(
            "no objective{} at {prometheus}: does it load the rendered slos.yaml (services[].slos in the spec)?",
            service.map(|s| format!(" of {s}")).unwrap_or_default()
        );
        return Ok(Outcome::Invalid);
    }
    match format {
        Format::Human => print!("{}", slo::table(&statuses)),
        Format::Json => println!("{:#}", slo::json(&statuses)),
    }
    Ok(Outcome::Ok)
}

fn incidents_command(command: IncidentsCommand) -> anyhow::Result<Outcome> {
    match command {
        IncidentsCommand::List {
            router,
            team,
            service,
            severity,
            format,
        } => {
            let filter = incidents::Filter {
                team,
                service,
                severity,
            };
            let listed: Vec<serde_json::Value> = router
                .client()?
                .incidents()?
                .into_iter()
                .filter(|i| filter.keeps(i))
                .collect();
            match format {
                Format::Human => print!("{}", incidents::table(&listed)),
                Format::Json => println!("{:#}", serde_json::json!({ "incidents": listed })),
            }
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Show {
            incident,
            router,
            format,
        } => {
            let listed = router.client()?.incidents()?;
            let Some(found) = listed.iter().find(|i| i["key"].as_str() == Some(&incident)) else {
                eprintln!(
                    "no open incident `{incident}`: `stackgen incidents list` shows their keys"
                );
                return Ok(Outcome::Invalid);
            };
            match format {
                Format::Human => print!("{}", incidents::show(found)),
                Format::Json => println!("{found:#}"),
            }
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Ack { incident, router } => {
            let answer = router.client()?.act("acknowledge", &incident)?;
            println!(
                "acknowledged {incident} as {}",
                answer["by"].as_str().unwrap_or("?")
            );
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Silence {
            matchers,
            duration,
            ends_at,
            starts_at,
            comment,
            router,
        } => {
            let body = serde_json::json!({
                "matchers": matchers,
                "duration": duration,
                "ends_at": ends_at,
                "starts_at": starts_at,
                "comment": comment,
            });
            let answer = router.client()?.silence(&body)?;
            println!(
                "silence {} created by {}",
                answer["silence"].as_str().unwrap_or("?"),
                answer["by"].as_str().unwrap_or("?")
            );
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Unsilence { silence, router } => {
            let answer = router.client()?.unsilence(&silence)?;
            println!(
                "silence {silence} ended by {}",
                answer["by"].as_str().unwrap_or("?")
            );
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Silences { router, format } => {
            let silences = router.client()?.silences()?;
            match format {
                Format::Human => print!("{}", incidents::silences_table(&silences)),
                Format::Json => println!("{:#}", serde_json::json!({ "silences": silences })),
            }
            Ok(Outcome::Ok)
        }
        IncidentsCommand::Unack { incident, router } => {
            let answer = router.client()?.act("unacknowledge", &incident)?;
            println!(
                "unacknowledged {incident} as {}",
                answer["by"].as_str().unwrap_or("?")
            );
            Ok(Outcome::Ok)
        }
    }
}

/// Writes the man page of every command (and subcommand) into `dir`; returns how many.
fn write_man_pages(dir: &Path) -> anyhow::Result<usize> {
    fn write(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
        let command = command.clone().name(name.to_string());
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone())
            .render(&mut page)
            .context("formatting a man page")?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        let mut written = 1;
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            written += write(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(written)
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    write(&command, "stackgen", dir)
}

/// `stackgen images`: every image the stack runs, as pulled (or upstream), one per line or JSON.
fn images(spec: &Path, upstream: bool, format: Format) -> anyhow::Result<Outcome> {
    let Some(fleet) = load_fleet(spec)? else {
        return Ok(Outcome::Invalid);
    };
    // A fleet's clusters may pull from different mirrors: every cluster's images, once each,
    // with the clusters that pull it.
    let mut pairs = std::collections::BTreeMap::new();
    let mut pulled_by: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for loaded in &fleet {
        let stack = render::render(loaded)
            .with_context(|| format!("rendering the stack of cluster {}", loaded.cluster.name))?;
        for (pulled, source) in stack.images_with_upstream() {
            pulled_by
                .entry(pulled.clone())
                .or_default()
                .push(&loaded.cluster.name);
            pairs.insert(pulled.clone(), source.clone());
        }
    }
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Human => {
            let mut lines: Vec<&str> = if upstream {
                pairs.values().map(String::as_str).collect()
            } else {
                pairs.keys().map(String::as_str).collect()
            };
            lines.sort_unstable();
            lines.dedup();
            for image in lines {
                writeln!(stdout, "{image}").context("writing to stdout")?;
            }
        }
        Format::Json => {
            let images: Vec<serde_json::Value> = pairs
                .iter()
                .map(|(pulled, source)| {
                    serde_json::json!({
                        "image": pulled,
                        "upstream": source,
                        "digest": pulled.split_once('@').map(|(_, digest)| digest),
                        "clusters": pulled_by.get(pulled),
                    })
                })
                .collect();
            writeln!(stdout, "{:#}", serde_json::json!({ "images": images }))
                .context("writing to stdout")?;
        }
    }
    Ok(Outcome::Ok)
}

fn router_command(command: RouterCommand) -> anyhow::Result<Outcome> {
    let (config, left_over) = match &command {
        RouterCommand::CheckConfig { config, .. }
        | RouterCommand::Preview { config, .. }
        | RouterCommand::SendTest { config, .. }
        | RouterCommand::Serve { config, .. }
        | RouterCommand::Routes(RoutesCommand::Test { config, .. }) => config.resolve(),
    };
    let takes_labels = matches!(command, RouterCommand::Routes(_));
    if let (Some(extra), false) = (&left_over, takes_labels) {
        anyhow::bail!(
            "the configuration is given twice (`{extra}` and --config {}): name it once, as the first argument",
            config.display()
        );
    }
    if let RouterCommand::CheckConfig {
        format: Format::Json,
        ..
    } = command
    {
        let problems = match crate::router::config::load(&config) {
            Ok(_) => Vec::new(),
            Err(diagnostic::FileError::Invalid { diagnostics, .. }) => diagnostics,
            Err(err) => return Err(err.into()),
        };
        return print_check_json(&config, None, &problems);
    }
    let Some(loaded) = load_router_config(&config)? else {
        return Ok(Outcome::Invalid);
    };
    match command {
        RouterCommand::CheckConfig { .. } => {
            println!("{}: ok", config.display());
            Ok(Outcome::Ok)
        }
        RouterCommand::Preview {
            destination,
            fixture,
            ..
        } => preview(&loaded, &destination, &fixture),
        RouterCommand::SendTest { destination, .. } => send_test(&loaded, &destination),
        RouterCommand::Routes(RoutesCommand::Test { labels, .. }) => {
            let labels: Vec<String> = left_over.into_iter().chain(labels).collect();
            if labels.is_empty() {
                anyhow::bail!(
                    "give the alert's labels after the configuration: `stackgen router routes test router.yaml alertname=HighErrorRate service=checkout`"
                );
            }
            routes_test(&loaded, &labels)
        }
        RouterCommand::Serve { log_format, .. } => {
            init_logging(log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(crate::router::serve(loaded))?;
            Ok(Outcome::Ok)
        }
    }
}

fn preview(
    config: &crate::router::config::RouterConfig,
    destination: &str,
    fixture: &Path,
) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(fixture)
        .with_context(|| format!("reading {}", fixture.display()))?;
    let previews = crate::router::preview::preview(config, &destination_id(destination)?, &text)
        .map_err(anyhow::Error::msg)?;
    if previews.is_empty() {
        println!("(nothing would be sent: these alerts open or resolve no incident)");
    }
    for preview in previews {
        match preview {
            Previewed::Sent(payload) => println!("{}", describe_payload(&payload)),
            Previewed::NotSent { kind, reason } => {
                println!(
                    "(the {} notification would not reach {destination}: {reason})",
                    kind.as_str()
                )
            }
        }
    }
    Ok(Outcome::Ok)
}

fn routes_test(
    config: &crate::router::config::RouterConfig,
    pairs: &[String],
) -> anyhow::Result<Outcome> {
    let mut labels = crate::router::alert::Labels::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("`{pair}` is not LABEL=VALUE"))?;
        labels.insert(name.trim().to_string(), value.trim().to_string());
    }
    print!(
        "{}",
        crate::router::preview::trace(config, labels, crate::router::clock::now_ms())
    );
    Ok(Outcome::Ok)
}

fn send_test(
    config: &crate::router::config::RouterConfig,
    destination: &str,
) -> anyhow::Result<Outcome> {
    use crate::router::destination::Outcome as Delivery;
    let id = destination_id(destination)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = runtime.block_on(crate::router::preview::send_test(config, &id))?;
    Ok(match outcome {
        Delivery::Delivered => {
            println!("{destination}: delivered");
            Outcome::Ok
        }
        Delivery::Retry { reason, .. } => {
            println!("{destination}: failed, would be retried: {reason}");
            Outcome::Invalid
        }
        Delivery::Rejected { reason } => {
            println!("{destination}: rejected: {reason}");
            Outcome::Invalid
        }
    })
}

/// Checks a spec (with `team_file` in place of its team's included file), then each
/// `SERVICE=SOURCE` scrape against its service.
fn validate(path: &Path, scrapes: &[String], team_file: Option<&Path>) -> anyhow::Result<Outcome> {
    let mut clusters = 1;
    let spec = match team_file {
        None => match load_fleet(path)? {
            Some(fleet) => {
                clusters = fleet.len();
                fleet.into_iter().next()
            }
            None => None,
        },
        Some(team_file) => match load_for_team(path, team_file)? {
            TeamCheck::Whole(spec) => Some(*spec),
            TeamCheck::Invalid => None,
            TeamCheck::OthersInvalid if scrapes.is_empty() => {
                println!("{}: ok (against {})", team_file.display(), path.display());
                return Ok(Outcome::Ok);
            }
            TeamCheck::OthersInvalid => anyhow::bail!(
                "the scrape checks need the whole stack, and other teams' files are invalid"
            ),
        },
    };
    let Some(spec) = spec else {
        return Ok(Outcome::Invalid);
    };
    let mut findings = Vec::new();
    for argument in scrapes {
        let (name, source) = argument.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--metrics {argument}: write SERVICE=FILE or SERVICE=URL")
        })?;
        findings.extend(check_service_scrape(&spec.services, name, source)?.0);
    }
    print_findings(&findings, &[]);
    if findings.iter().any(|f| f.level == diagnostic::Level::Error) {
        return Ok(Outcome::Invalid);
    }
    match team_file {
        None if clusters > 1 => println!("{}: ok ({clusters} clusters)", path.display()),
        None => println!("{}: ok", path.display()),
        Some(team_file) => println!("{}: ok (against {})", team_file.display(), path.display()),
    }
    Ok(Outcome::Ok)
}

/// `validate --format json`: every cluster checked, the problems as JSON on stdout.
fn validate_json(path: &Path) -> anyhow::Result<Outcome> {
    match spec::load_fleet(path) {
        Ok(fleet) => {
            let names: Vec<String> = fleet.iter().map(|s| s.cluster.name.clone()).collect();
            print_check_json(path, Some(&names), &[])
        }
        Err(diagnostic::FileError::Invalid { diagnostics, .. }) => {
            print_check_json(path, None, &diagnostics)
        }
        Err(err) => Err(err.into()),
    }
}

/// The JSON result of a check: valid or not, the clusters (of a spec), every problem.
fn print_check_json(
    path: &Path,
    clusters: Option<&[String]>,
    problems: &[diagnostic::Diagnostic],
) -> anyhow::Result<Outcome> {
    let mut document = serde_json::json!({
        "file": path.display().to_string(),
        "valid": problems.is_empty(),
        "problems": problems.iter().map(diagnostic::Diagnostic::to_json).collect::<Vec<_>>(),
    });
    if let Some(clusters) = clusters {
        document["clusters"] = serde_json::json!(clusters);
    }
    println!("{document:#}");
    Ok(if problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Invalid
    })
}

/// What a team's check of its file found.
enum TeamCheck {
    /// The stack with the team's file is valid.
    Whole(Box<spec::Spec>),
    /// The team's file, its rule files or the spec have problems (reported).
    Invalid,
    /// Only other teams' files have problems (counted).
    OthersInvalid,
}

/// Loads the spec with `team_file` in place of its team's, and reports the problems of the
/// team file, its rule files and the spec; those of other teams' files are only counted (they
/// are their teams' to mend).
fn load_for_team(path: &Path, team_file: &Path) -> anyhow::Result<TeamCheck> {
    let loaded = spec::load_with_team_file(path, team_file);
    let Err(spec::SpecError::Invalid {
        file,
        source_text,
        diagnostics,
        included,
    }) = loaded
    else {
        return Ok(match reported(loaded)? {
            Some(spec) => TeamCheck::Whole(Box::new(spec)),
            None => TeamCheck::Invalid,
        });
    };
    let team_file_name = team_file.display().to_string();
    let dir = crate::files::dir_of(team_file);
    let rule_files: Vec<String> = included
        .get(&team_file_name)
        .and_then(|text| spec::parse_team_file(&team_file_name, text, dir).ok())
        .map(|(team, _)| {
            team.rule_files
                .iter()
                .map(|r| dir.join(&r.path).display().to_string())
                .collect()
        })
        .unwrap_or_default();
    let (ours, others): (Vec<_>, Vec<_>) = diagnostics
        .into_iter()
        .partition(|d| d.file == file || d.file == team_file_name || rule_files.contains(&d.file));
    if !others.is_empty() {
        eprintln!(
            "note: other teams' files have {} problem(s), not checked here: `stackgen validate {}` lists them",
            others.len(),
            path.display()
        );
    }
    if ours.is_empty() {
        return Ok(TeamCheck::OthersInvalid);
    }
    eprint!(
        "{}",
        spec::SpecError::Invalid {
            file,
            source_text,
            diagnostics: ours,
            included,
        }
        .render()
    );
    Ok(TeamCheck::Invalid)
}

/// Prints findings with the source line each points at (read from its file, or from `inputs`).
fn print_findings(findings: &[crate::rules::lint::Finding], inputs: &[(String, String)]) {
    let mut read: std::collections::BTreeMap<String, String> = inputs.iter().cloned().collect();
    for finding in findings {
        let file = &finding.diagnostic.file;
        if !read.contains_key(file) {
            let text = crate::files::read_text(Path::new(file)).unwrap_or_default();
            read.insert(file.clone(), text);
        }
    }
    let mut lines = diagnostic::SourceLines::default();
    for finding in findings {
        let file = finding.diagnostic.file.as_str();
        let source = read.get(file).map_or("", String::as_str);
        let line = lines.line(file, source, finding.diagnostic.location.line);
        eprintln!(
            "{}",
            finding.diagnostic.render_with_line(finding.level, line)
        );
    }
}

/// The problems of service `name`'s metrics convention in a scrape of it (`source`, a file or
/// URL), and the metric names the scrape has.
fn check_service_scrape(
    services: &[spec::Service],
    name: &str,
    source: &str,
) -> anyhow::Result<(
    Vec<crate::rules::lint::Finding>,
    std::collections::BTreeSet<String>,
)> {
    let service = find_service(services, name)?;
    let text = read_exposition(source)?;
    let series =
        crate::rules::exposition::series(&text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let findings = spec::scrape_check::check_scrape(service, &series);
    Ok((findings, series.into_iter().map(|(name, _)| name).collect()))
}

/// A `--metrics` value of `rules lint`: `SERVICE=SOURCE` (the part before `=` no URL), or a
/// plain source.
fn service_scrape(argument: &str) -> Option<(&str, &str)> {
    argument
        .split_once('=')
        .filter(|(name, _)| !name.is_empty() && !name.contains("://"))
}

/// The service `name` (or `namespace/name`) of the spec, with its index.
fn find_service<'s>(
    services: &'s [spec::Service],
    name: &str,
) -> anyhow::Result<&'s spec::Service> {
    let matching: Vec<&spec::Service> = services
        .iter()
        .filter(|s| s.name == name || format!("{}/{}", s.namespace, s.name) == name)
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => {
            let names: Vec<String> = services
                .iter()
                .map(|s| format!("{}/{}", s.namespace, s.name))
                .collect();
            anyhow::bail!(
                "--metrics: no service {name}; its services are {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
        _ => anyhow::bail!(
            "--metrics: {name} is a service in several namespaces; write NAMESPACE/{name}"
        ),
    }
}

/// Reads a team file on its own; its problems are reported on stderr and give `None`.
fn load_team_file(path: &Path) -> anyhow::Result<Option<(spec::Team, Vec<spec::Service>)>> {
    let text =
        crate::files::read_spec(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let dir = crate::files::dir_of(path);
    reported(
        spec::parse_team_file(&name, &text, dir).map_err(|diagnostics| {
            diagnostic::FileError::Invalid {
                file: name.clone(),
                source_text: text.clone(),
                diagnostics,
                included: std::collections::BTreeMap::new(),
            }
        }),
    )
}

fn load(path: &Path) -> anyhow::Result<Option<spec::Spec>> {
    reported(spec::load(path))
}

/// Every cluster's stack of a spec (one unless it is a fleet), or `None` after its problems.
fn load_fleet(path: &Path) -> anyhow::Result<Option<Vec<spec::Spec>>> {
    reported(spec::load_fleet(path))
}

/// A loaded file, or `None` after printing its problems on stderr; other errors pass through.
fn reported<T>(loaded: Result<T, diagnostic::FileError>) -> anyhow::Result<Option<T>> {
    match loaded {
        Ok(value) => Ok(Some(value)),
        Err(invalid @ diagnostic::FileError::Invalid { .. }) => {
            use std::io::IsTerminal as _;
            let colour = colour_wanted(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            eprint!("{}", colourize(&invalid.render(), colour));
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Whether diagnostics get colour: on a terminal, unless `NO_COLOR` is set to anything but
/// the empty string (no-color.org).
fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Rendered diagnostics with their `error:` heads in bold red and hints in cyan, when `colour`.
/// Only the heads stackgen writes at the start of a line are coloured; the source lines it
/// echoes start with their line number and are left as they are.
fn colourize(text: &str, colour: bool) -> String {
    if !colour {
        return text.to_string();
    }
    text.lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("error:") {
                format!("\x1b[1;31merror\x1b[0m:{rest}\n")
            } else if let Some(rest) = line.strip_prefix("  = hint:") {
                format!("  = \x1b[36mhint\x1b[0m:{rest}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// Prints the Secrets each rendered stack reads: once when every cluster reads the same ones in
/// the same namespace, else per group of clusters that do (the router's only where it runs).
fn print_required_secrets(chosen: &[spec::Spec], is_fleet: bool) {
    let mut groups: Vec<(&str, Vec<String>, Vec<&str>)> = Vec::new();
    for loaded in chosen {
        let secrets = required_secrets(loaded);
        match groups
            .iter_mut()
            .find(|(namespace, listed, _)| *namespace == loaded.namespace && *listed == secrets)
        {
            Some((_, _, clusters)) => clusters.push(&loaded.cluster.name),
            None => groups.push((&loaded.namespace, secrets, vec![&loaded.cluster.name])),
        }
    }
    for (namespace, secrets, clusters) in &groups {
        let clusters = match (is_fleet, groups.len()) {
            (false, _) => String::new(),
            (true, 1) => ", in every cluster".to_string(),
            (true, _) => format!(", in {}", clusters.join(", ")),
        };
        eprintln!(
            "the stack reads these Secrets in namespace {namespace} (create them first{clusters}):"
        );
        for line in secrets {
            eprintln!("  {line}");
        }
    }
}

/// The Secrets `spec`'s stack reads, one line per Secret with its keys and reader. A cluster of
/// a fleet whose router runs elsewhere reads only the token its Alertmanager sends with.
fn required_secrets(spec: &spec::Spec) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{}: admin-user, admin-password (Grafana)",
            spec.grafana.admin_secret
        ),
        format!(
            "{}: token (Alertmanager -> router)",
            spec.router.auth_secret
        ),
    ];
    let router_here = spec.router.remote.is_none();
    let router_refs = spec.secret_refs().into_iter().filter(|_| router_here);
    let direct_refs = render::direct_path::direct_path(spec).secrets;
    lines.extend(secret_lines(
        router_refs
            .map(|r| (r, "the router"))
            .chain(direct_refs.into_iter().map(|r| (r, "Alertmanager"))),
    ));
    lines.extend(secret_lines(
        spec.grafana_secret_refs()
            .into_iter()
            .map(|r| (r, "Grafana: OAuth, grafana.ini")),
    ));
    lines.extend(secret_lines(
        spec.prometheus_secret_refs()
            .into_iter()
            .map(|r| (r, "Prometheus: remote_write, Thanos")),
    ));
    let postgres = spec.router.postgres.as_ref().filter(|_| router_here);
    let postgres_ca = spec.router.postgres_ca.as_ref().filter(|_| router_here);
    match (postgres, postgres_ca) {
        (Some(db), Some(ca)) if ca.secret == db.secret => lines.push(format!(
            "{}: {}, {} (the router's PostgreSQL URL and CA bundle)",
            db.secret, db.key, ca.key
        )),
        (db, ca) => {
            if let Some(db) = db {
                lines.push(format!(
                    "{}: {} (the router's PostgreSQL URL)",
                    db.secret, db.key
                ));
            }
            if let Some(ca) = ca {
                lines.push(format!(
                    "{}: {} (the CA bundle of the router's PostgreSQL server)",
                    ca.secret, ca.key
                ));
            }
        }
    }
    lines
}

/// One line per Secret of `refs` (each with who reads it), by Secret name: its keys and readers.
fn secret_lines<'a>(refs: impl Iterator<Item = (spec::SecretRef, &'a str)>) -> Vec<String> {
    let mut by_secret: std::collections::BTreeMap<String, (Vec<String>, Vec<&str>)> =
        Default::default();
    for (secret, reader) in refs {
        let (keys, readers) = by_secret.entry(secret.secret).or_default();
        if !keys.contains(&secret.key) {
            keys.push(secret.key);
        }
        if !readers.contains(&reader) {
            readers.push(reader);
        }
    }
    by_secret
        .into_iter()
        .map(|(name, (keys, readers))| {
            format!("{name}: {} ({})", keys.join(", "), readers.join(", "))
        })
        .collect()
}

fn init(platform: Platform, out: &Path, force: bool) -> anyhow::Result<Outcome> {
    let text = spec::starter::starter(platform);
    if out.as_os_str() == "-" {
        print!("{text}");
        return Ok(Outcome::Ok);
    }
    if out.exists() && !force {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            out.display()
        );
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {}; edit it, then run: stackgen render {} --out stack/",
        out.display(),
        out.display()
    );
    Ok(Outcome::Ok)
}

#[allow(clippy::too_many_arguments)]
fn rules_lint(
    mut files: Vec<PathBuf>,
    team: Option<String>,
    team_file: Option<&Path>,
    metrics: &[String],
    spec_path: Option<&Path>,
    format: Format,
    deny_warnings: bool,
) -> anyhow::Result<Outcome> {
    use crate::rules::{exposition, lint};
    // The services `--metrics SERVICE=...` names, and the team labelling the rules.
    let (team, services) = match (team_file, spec_path) {
        (Some(team_file), spec_path) => {
            let Some((own, standalone)) = load_team_file(team_file)? else {
                return Ok(Outcome::Invalid);
            };
            if files.is_empty() {
                let dir = crate::files::dir_of(team_file);
                files = own.rule_files.iter().map(|r| dir.join(&r.path)).collect();
            }
            let services = match spec_path {
                // As the platform sees them (its stack namespace, its checks).
                Some(spec_path) => match load_for_team(spec_path, team_file)? {
                    TeamCheck::Whole(spec) => spec.services,
                    TeamCheck::Invalid => return Ok(Outcome::Invalid),
                    TeamCheck::OthersInvalid => standalone,
                },
                None => standalone,
            };
            (Some(own.name), Some(services))
        }
        (None, Some(spec_path)) => match load(spec_path)? {
            Some(spec) => (team, Some(spec.services)),
            None => return Ok(Outcome::Invalid),
        },
        (None, None) => (team, None),
    };
    let mut inputs = Vec::new();
    for path in &files {
        let text =
            crate::files::read_text(path).with_context(|| format!("reading {}", path.display()))?;
        inputs.push((path.display().to_string(), text));
    }
    let mut scrape_findings = Vec::new();
    let known_metrics = if metrics.is_empty() {
        None
    } else {
        let mut names = std::collections::BTreeSet::new();
        for argument in metrics {
            match (service_scrape(argument), &services) {
                (Some((service, source)), Some(services)) => {
                    let (findings, scraped) = check_service_scrape(services, service, source)?;
                    scrape_findings.extend(findings);
                    names.extend(scraped);
                }
                (Some(_), None) => anyhow::bail!(
                    "--metrics {argument}: a service's scrape needs --spec or --team-file, the file that declares it"
                ),
                (None, _) => {
                    let text = read_exposition(argument)?;
                    names.extend(
                        exposition::metric_names(&text)
                            .map_err(|e| anyhow::anyhow!("{argument}: {e}"))?,
                    );
                }
            }
        }
        Some(names)
    };
    let mut findings = lint::lint(
        &inputs,
        &lint::LintOptions {
            team,
            known_metrics,
        },
    );
    findings.extend(scrape_findings);
    match format {
        Format::Json => {
            let json: Vec<_> = findings.iter().map(lint::Finding::to_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json).context("encoding JSON")?
            );
        }
        Format::Human => {
            print_findings(&findings, &inputs);
            let errors = findings
                .iter()
                .filter(|f| f.level == diagnostic::Level::Error)
                .count();
            let warnings = findings.len() - errors;
            eprintln!(
                "{} file(s): {errors} error(s), {warnings} warning(s)",
                files.len()
            );
        }
    }
    let failed = findings
        .iter()
        .any(|f| f.level == diagnostic::Level::Error || deny_warnings);
    Ok(if failed {
        Outcome::Invalid
    } else {
        Outcome::Ok
    })
}

/// An exposition from a file or an `http://` URL.
fn read_exposition(source: &str) -> anyhow::Result<String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let response = ureq::get(source)
            .call()
            .with_context(|| format!("fetching {source}"))?;
        let mut body = response.into_body();
        body.read_to_string()
            .with_context(|| format!("reading {source}"))
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))
    }
}

fn rules_test(
    files: &[PathBuf],
    team: Option<String>,
    spec_path: Option<&Path>,
    team_file: Option<&Path>,
) -> anyhow::Result<Outcome> {
    use crate::rules::test;
    let team = match (team, spec_path, team_file) {
        (Some(team), _, _) => Some(team),
        (None, _, Some(team_file)) => match load_team_file(team_file)? {
            Some((team, _)) => Some(team.name),
            None => return Ok(Outcome::Invalid),
        },
        (None, Some(spec_path), None) => Some(team_from_spec(spec_path, files)?),
        (None, None, None) => None,
    };
    let promtool = test::find_promtool()?;
    let local = test::promtool_version(&promtool);
    match local
        .as_deref()
        .map(|local| test::version_mismatch(local, crate::spec::defaults::PROMETHEUS_IMAGE))
    {
        Some(Some(warning)) => eprintln!("warning: {warning}"),
        Some(None) => {}
        None => eprintln!(
            "warning: {} does not say its version; the stack deploys {}",
            promtool.display(),
            crate::spec::defaults::PROMETHEUS_IMAGE
        ),
    }
    let results = test::run(files, team.as_deref(), &promtool)?;
    let mut failed = 0;
    for result in &results {
        if result.passed {
            println!("ok    {}", result.file.display());
        } else {
            failed += 1;
            println!("FAIL  {}", result.file.display());
            for line in result.report.lines().filter(|l| !l.trim().is_empty()) {
                println!("      {line}");
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    Ok(if failed == 0 {
        Outcome::Ok
    } else {
        Outcome::Invalid
    })
}

/// The team whose `rule_files` (in the spec) include a rule file the test files use.
fn team_from_spec(spec_path: &Path, test_files: &[PathBuf]) -> anyhow::Result<String> {
    let Some(spec) = load(spec_path)? else {
        anyhow::bail!("{} is invalid", spec_path.display());
    };
    let base = crate::files::dir_of(spec_path);
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut used = Vec::new();
    for test_file in test_files {
        let text = std::fs::read_to_string(test_file)
            .with_context(|| format!("reading {}", test_file.display()))?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .with_context(|| format!("parsing {}", test_file.display()))?;
        let dir = crate::files::dir_of(test_file);
        for entry in docs
            .first()
            .and_then(|d| d["rule_files"].as_vec())
            .into_iter()
            .flatten()
        {
            if let Some(p) = entry.as_str() {
                used.push(canonical(&dir.join(p)));
            }
        }
    }
    spec.teams
        .iter()
        .find(|t| {
            t.rule_files
                .iter()
                .any(|r| used.contains(&canonical(&r.directory(base).join(&r.path))))
        })
        .map(|t| t.name.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no team in {} lists the rule files these tests use; pass --team",
                spec_path.display()
            )
        })
}

/// Loads a router.yaml; problems are reported on stderr and give `None`.
/// A destination named on the command line, `team/name`.
fn destination_id(text: &str) -> anyhow::Result<crate::router::routing::DestinationId> {
    crate::router::routing::DestinationId::parse(text)
        .ok_or_else(|| anyhow::anyhow!("destination `{text}` is not `team/name`"))
}

fn load_router_config(path: &Path) -> anyhow::Result<Option<crate::router::config::RouterConfig>> {
    reported(crate::router::config::load(path))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STACKGEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(|| OneLinePerEvent(std::io::stderr()))
            .init(),
    }
}

/// Writes each text log event as one line: a line break or control character inside it (from an
/// alert's label or annotation, say) is written as an escape, so no text can forge a log line.
struct OneLinePerEvent<W: std::io::Write>(W);

impl<W: std::io::Write> std::io::Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let line = crate::router::notification::one_line(body);
        self.0.write_all(line.as_bytes())?;
        self.0.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A payload as `router preview` prints it: the request line, headers and the body.
fn describe_payload(payload: &crate::router::destination::Payload) -> String {
    use crate::router::destination::Payload;
    match payload {
        Payload::Http {
            method,
            url,
            headers,
            body,
        } => {
            let body = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            let headers: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            format!("{method} {url}\n{headers}\n{body}\n")
        }
        Payload::Email(m) => format!(
            "To: {}\nSubject: {}\nMessage-ID: <{}>\n{}\n--- text/plain\n{}\n--- text/html\n{}\n",
            m.to.join(", "),
            m.subject,
            m.message_id,
            m.thread_root
                .as_ref()
                .map(|r| format!("In-Reply-To: <{r}>\nReferences: <{r}>\n"))
                .unwrap_or_default(),
            m.text,
            m.html
        ),
        Payload::Log { line } => format!("log: {line}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(std::ffi::OsStr::new(""))));
        assert!(!colour_wanted(true, Some(std::ffi::OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        let text = "error: bad\n --> s.yaml:1:1\n1 | error: as written\n  = hint: fix it\n";
        assert_eq!(colourize(text, false), text);
        assert_eq!(
            colourize(text, true),
            "\x1b[1;31merror\x1b[0m: bad\n --> s.yaml:1:1\n1 | error: as written\n  = \x1b[36mhint\x1b[0m: fix it\n"
        );
    }
}
