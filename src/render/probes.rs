//! The spec's own scrape jobs (`prometheus.scrape_jobs`) and its probes (`probes:`): the blackbox
//! exporter (its modules, Deployment, Service and NetworkPolicy) and the Prometheus jobs that
//! scrape the targets and ask the exporter to probe.
//!
//! Every target carries its owner's `team` and `service` labels (and a probed service's
//! `namespace`), so a failing probe is one more signal of that service's incident.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Builder, PodDefaults, RenderError, allow_from_components, content_hash, labels};
use crate::spec::probes::{PROBE_JOB, Probe, ProbeTarget};
use crate::spec::{Spec, defaults};

/// Where the blackbox exporter listens.
const EXPORTER_PORT: u16 = 9115;
const COMPONENT: &str = "blackbox-exporter";
const CONFIG_FILE: &str = "blackbox-exporter/blackbox.yml";

/// The blackbox exporter, when the spec has probes.
pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let spec = stack.spec;
    if spec.probes.is_empty() {
        return Ok(());
    }
    let config = crate::yaml::document(&exporter_config(&spec.probes));
    let config = format!(
        "# Blackbox exporter modules rendered by stackgen: one per kind of check the probes make.\n{config}"
    );
    let config_hash = content_hash([config.as_str()]);
    stack.config_file(CONFIG_FILE, config);
    stack.config_map(
        "blackbox-exporter-config",
        COMPONENT,
        vec![("blackbox.yml".into(), CONFIG_FILE.into())],
    );
    let image = stack.image(defaults::BLACKBOX_EXPORTER_IMAGE);
    // It runs where Prometheus runs (the monitoring nodes, the same pull secrets).
    let pod = stack.pod_placement(&spec.prometheus.placement, PodDefaults::default());
    stack.template(
        "blackbox-exporter/deployment.yaml",
        "exporters/blackbox-exporter.yaml",
        &json!({
            "namespace": spec.namespace,
            "labels": labels(COMPONENT),
            "selector": super::selector(COMPONENT),
            "image": image,
            "pod": pod,
            "port": EXPORTER_PORT,
            "config_hash": config_hash,
            "resources": super::resources(&crate::spec::Resources::from_defaults(&defaults::BLACKBOX_EXPORTER_RESOURCES)),
        }),
    )?;
    stack.service(
        "blackbox-exporter/service.yaml",
        COMPONENT,
        COMPONENT,
        false,
        json!([{"name": "http", "port": EXPORTER_PORT, "targetPort": "http"}]),
    )?;
    stack.workload_extras(
        "blackbox-exporter",
        COMPONENT,
        1,
        false,
        json!([allow_from_components(&[(EXPORTER_PORT, "TCP")], &["prometheus"])]),
        "Only Prometheus asks the blackbox exporter to probe; its own requests go out unrestricted.",
    )
}

/// The exporter's configuration: the modules the probes use, each once.
fn exporter_config(probes: &[Probe]) -> Value {
    let mut modules = serde_json::Map::new();
    for probe in probes {
        modules
            .entry(probe.module())
            .or_insert_with(|| module(&probe.target));
    }
    json!({ "modules": modules })
}

fn module(target: &ProbeTarget) -> Value {
    match target {
        ProbeTarget::Http { status, .. } => {
            let mut http = json!({
                "preferred_ip_protocol": "ip4",
                "ip_protocol_fallback": true,
                // A redirect is followed, unless a redirect is what the probe expects.
                "follow_redirects": !status.iter().any(|code| (300..400).contains(code)),
            });
            if !status.is_empty() {
                http["valid_status_codes"] = json!(status);
            }
            json!({"prober": "http", "timeout": "10s", "http": http})
        }
        ProbeTarget::Tcp { tls, .. } => json!({
            "prober": "tcp",
            "timeout": "10s",
            "tcp": {"preferred_ip_protocol": "ip4", "ip_protocol_fallback": true, "tls": tls},
        }),
    }
}

/// The Prometheus jobs of `spec.prometheus.scrape_jobs` and of the probes (one job per probe
/// interval, every one labelled `job="probes"`).
pub(super) fn scrape_configs(spec: &Spec) -> Vec<Value> {
    let cluster = json!({"target_label": "cluster", "replacement": spec.cluster.name});
    let mut jobs: Vec<Value> = spec
        .prometheus
        .scrape_jobs
        .iter()
        .map(|job| {
            let mut target_labels: BTreeMap<&str, &str> = job
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            target_labels.insert("team", &job.team);
            target_labels.insert("service", &job.service);
            let mut config = json!({
                "job_name": job.name,
                "metrics_path": job.path,
                "scheme": job.scheme.name(),
                "static_configs": [{"targets": job.targets, "labels": target_labels}],
                "relabel_configs": [cluster],
            });
            if let Some(interval) = &job.interval {
                config["scrape_interval"] = json!(interval);
            }
            if let Some(timeout) = &job.timeout {
                config["scrape_timeout"] = json!(timeout);
            }
            config
        })
        .collect();
    let mut by_interval: BTreeMap<Option<&str>, Vec<&Probe>> = BTreeMap::new();
    for probe in &spec.probes {
        by_interval
            .entry(probe.interval.as_deref())
            .or_default()
            .push(probe);
    }
    let exporter = format!("{COMPONENT}.{}.svc:{EXPORTER_PORT}", spec.namespace);
    for (interval, probes) in by_interval {
        let groups: Vec<Value> = probes
            .iter()
            .map(|probe| {
                let mut target_labels = json!({
                    "__param_module": probe.module(),
                    "probe": probe.name,
                    "team": probe.team,
                    "service": probe.service,
                });
                if let Some(namespace) = &probe.namespace {
                    target_labels["namespace"] = json!(namespace);
                }
                json!({"targets": [probe.address()], "labels": target_labels})
            })
            .collect();
        let mut config = json!({
            "job_name": interval.map_or(PROBE_JOB.to_string(), |i| format!("{PROBE_JOB}/{i}")),
            "metrics_path": "/probe",
            "static_configs": groups,
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"source_labels": ["__param_target"], "target_label": "target"},
                {"target_label": "__address__", "replacement": exporter},
                {"target_label": "job", "replacement": PROBE_JOB},
                cluster,
            ],
        });
        if let Some(interval) = interval {
            config["scrape_interval"] = json!(interval);
        }
        jobs.push(config);
    }
    jobs
}
