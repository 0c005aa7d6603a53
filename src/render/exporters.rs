//! The exporters: node-exporter on every node and kube-state-metrics, each optional in the spec.

use serde_json::json;

use super::{
    Builder, PodDefaults, RenderError, allow_from_components, labels, resources, selector,
};
use crate::spec::defaults;

pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let spec = stack.spec;
    let ns = &spec.namespace;
    if spec.exporters.node_exporter {
        let image = stack.image(defaults::NODE_EXPORTER_IMAGE);
        // On every node, tainted or not, before anything else is evicted.
        let pod = stack.pod_placement(
            &spec.exporters.node_exporter_placement,
            PodDefaults {
                tolerations: vec![json!({"operator": "Exists"})],
                priority_class_name: Some("system-node-critical"),
                ..PodDefaults::default()
            },
        );
        stack.template("node-exporter/daemonset.yaml", "exporters/node-exporter.yaml", &json!({
            "namespace": ns,
            "labels": labels("node-exporter"),
            "selector": selector("node-exporter"),
            "image": image,
            "pod": pod,
            "resources": resources(&crate::spec::Resources::from_defaults(&defaults::NODE_EXPORTER_RESOURCES)),
        }))?;
        stack.service(
            "node-exporter/service.yaml",
            "node-exporter",
            "node-exporter",
            false,
            json!([
                {"name": "metrics", "port": 9100, "targetPort": "metrics"},
            ]),
        )?;
        stack.workload_extras(
            "node-exporter",
            "node-exporter",
            1,
            false,
            json!([allow_from_components(&[(9100, "TCP")], &["prometheus"])]),
            "Only Prometheus scrapes node-exporter (host-network pods are also guarded by the node firewall).",
        )?;
    }
    if spec.exporters.kube_state_metrics {
        let image = stack.image(defaults::KUBE_STATE_METRICS_IMAGE);
        let pod = stack.pod_placement(
            &spec.exporters.kube_state_metrics_placement,
            PodDefaults::default(),
        );
        stack.template("kube-state-metrics/deployment.yaml", "exporters/kube-state-metrics.yaml", &json!({
            "namespace": ns,
            "labels": labels("kube-state-metrics"),
            "selector": selector("kube-state-metrics"),
            "image": image,
            "pod": pod,
            "allowlist_arg": format!("--metric-labels-allowlist={}", super::ownership::pod_label_allowlist(spec)),
            "resources": resources(&crate::spec::Resources::from_defaults(&defaults::KUBE_STATE_METRICS_RESOURCES)),
        }))?;
        stack.service(
            "kube-state-metrics/service.yaml",
            "kube-state-metrics",
            "kube-state-metrics",
            false,
            json!([
                {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics"},
                {"name": "telemetry", "port": 8081, "targetPort": "telemetry"},
            ]),
        )?;
        stack.workload_extras(
            "kube-state-metrics",
            "kube-state-metrics",
            1,
            true,
            json!([allow_from_components(
                &[(8080, "TCP"), (8081, "TCP")],
                &["prometheus"]
            )]),
            "Only Prometheus scrapes kube-state-metrics.",
        )?;
    }
    Ok(())
}
