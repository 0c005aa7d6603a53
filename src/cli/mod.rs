//! The command line: argument types and the glue for each command. Only this module prints.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::diagnostic;
use crate::render;
use crate::spec::{self, Platform, SpecError};

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
    },
    /// Validate a spec, then write the whole stack.
    Render {
        /// The spec file.
        spec: PathBuf,
        /// Output directory (replaced whole), or `-` for one multi-document YAML stream on stdout.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print every container image the stack runs (for mirroring into air-gapped registries).
    Images {
        /// The spec file.
        spec: PathBuf,
    },
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
        Command::Init {
            platform,
            out,
            force,
        } => init(platform.into(), &out, force),
        Command::Validate { spec } => Ok(match load(&spec)? {
            Some(_) => {
                println!("{}: ok", spec.display());
                Outcome::Ok
            }
            None => Outcome::Invalid,
        }),
        Command::Render { spec, out } => {
            let Some(loaded) = load(&spec)? else {
                return Ok(Outcome::Invalid);
            };
            let stack = render::render(&loaded).context("rendering the stack")?;
            if out.as_os_str() == "-" {
                std::io::stdout()
                    .write_all(stack.stream().as_bytes())
                    .context("writing to stdout")?;
            } else {
                render::output::write_dir(&stack, &out)?;
                eprintln!("wrote {} files to {}", stack.files().len(), out.display());
                let secrets = required_secrets(&loaded);
                eprintln!("apply with: kubectl apply -k {}", out.display());
                eprintln!(
                    "the stack reads these Secrets in namespace {} (create them first):",
                    loaded.namespace
                );
                for line in secrets {
                    eprintln!("  {line}");
                }
            }
            Ok(Outcome::Ok)
        }
        Command::Images { spec } => {
            let Some(loaded) = load(&spec)? else {
                return Ok(Outcome::Invalid);
            };
            let stack = render::render(&loaded).context("rendering the stack")?;
            let mut stdout = std::io::stdout().lock();
            for image in stack.images() {
                writeln!(stdout, "{image}").context("writing to stdout")?;
            }
            Ok(Outcome::Ok)
        }
    }
}

/// Loads a spec; invalid specs are reported on stderr and give `None`.
fn load(path: &Path) -> anyhow::Result<Option<spec::Spec>> {
    match spec::load(path) {
        Ok(spec) => Ok(Some(spec)),
        Err(SpecError::Invalid {
            source_text,
            diagnostics,
            ..
        }) => {
            eprint!("{}", diagnostic::render_all(&diagnostics, &source_text));
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// The Secrets (and keys) the rendered stack expects to exist.
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
    let mut by_secret: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in spec.secret_refs() {
        by_secret.entry(r.secret).or_default().push(r.key);
    }
    lines.extend(
        by_secret
            .into_iter()
            .map(|(s, keys)| format!("{s}: {} (destinations)", keys.join(", "))),
    );
    lines
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
