//! What Prometheus watches besides the cluster and the declared services: `prometheus.scrape_jobs`
//! (targets outside Kubernetes, such as a database VM's exporter) and `probes:` (URLs and ports
//! checked from outside through the blackbox exporter, as users reach them).
//!
//! The model only; `load` reads it, the Prometheus renderer writes it out. Every job and probe
//! names its owner, so what fails reaches the team that owns it as one incident of its service.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diagnostic::Location;

/// The job name of every probe, so rules tell probe results from scrape targets.
pub const PROBE_JOB: &str = "probes";

/// One `prometheus.scrape_jobs` entry: static targets scraped like a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapeJob {
    /// The Prometheus job name; unique, and none of the stack's own.
    pub name: String,
    pub team: String,
    /// The `service` label of its series (the job's name unless given).
    pub service: String,
    /// `host:port` of each target.
    pub targets: Vec<String>,
    pub path: String,
    pub scheme: Scheme,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Extra target labels (`env: db`), never the ownership labels.
    pub labels: BTreeMap<String, String>,
    /// Where its `team` is written, for a team that does not exist.
    #[serde(skip)]
    pub team_location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One `probes:` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    /// Names the probe (its `probe` label); unique.
    pub name: String,
    pub target: ProbeTarget,
    /// The owner: the team of `service` when it names a declared service, else `team:`.
    pub team: String,
    /// The `service` label (the declared service probed, or the probe's name).
    pub service: String,
    /// The namespace of the declared service probed, so the probe's alerts join its incident.
    pub namespace: Option<String>,
    pub interval: Option<String>,
    /// Where the probe's owner is written (`service:` or `team:`), for one that does not exist.
    #[serde(skip)]
    pub owner_location: Location,
    /// Whether the owner is written as `service:` (else `team:`).
    #[serde(skip)]
    pub owner_is_service: bool,
}

/// What a probe checks, and so the blackbox exporter module it uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTarget {
    /// An `http`/`https` URL answering with one of `status` (empty: any 2xx), through the
    /// redirects it gives.
    Http { url: String, status: Vec<u16> },
    /// A `host:port` accepting TCP connections (`tls`: and completing a TLS handshake).
    Tcp { address: String, tls: bool },
}

impl Probe {
    /// The blackbox exporter module this probe uses.
    pub fn module(&self) -> String {
        match &self.target {
            ProbeTarget::Http { status, .. } if status.is_empty() => "http_2xx".into(),
            ProbeTarget::Http { status, .. } => format!(
                "http_{}",
                status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("_")
            ),
            ProbeTarget::Tcp { tls: false, .. } => "tcp_connect".into(),
            ProbeTarget::Tcp { tls: true, .. } => "tcp_tls".into(),
        }
    }

    /// What the blackbox exporter is asked to probe (`target=`).
    pub fn address(&self) -> &str {
        match &self.target {
            ProbeTarget::Http { url, .. } => url,
            ProbeTarget::Tcp { address, .. } => address,
        }
    }
}
