//! The `kustomization.yaml` that ties the output together for `kubectl apply -k`.
//!
//! Config files stay plain files in the output (easy to read and diff) and become ConfigMaps through
//! `configMapGenerator`. Names are kept stable (no kustomize hash suffix): a hash suffix would
//! change the pod templates that mount them and roll the pods, while Prometheus and Alertmanager
//! take a changed ConfigMap through their config reloaders, and Grafana reads its dashboards
//! again by itself. What only a restart takes (the router's configuration, Grafana's
//! datasources) rolls its pods through their `stackgen.io/config-hash` annotation. Stable names
//! also make `--out -` give the very same objects.

use serde_json::json;

use super::{RenderedStack, labels};
use crate::yaml;

pub(super) fn kustomization(stack: &RenderedStack) -> String {
    let namespace = &stack.namespace;
    let generators: Vec<_> = stack
        .config_maps
        .iter()
        .map(|cm| {
            let files: Vec<String> = cm
                .files
                .iter()
                .map(|(key, path)| format!("{key}={path}"))
                .collect();
            json!({
                "name": cm.name,
                "namespace": namespace,
                "files": files,
                "options": {"labels": labels(&cm.component)},
            })
        })
        .collect();
    let doc = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": stack.resources,
        "generatorOptions": {"disableNameSuffixHash": true},
        "configMapGenerator": generators,
    });
    format!(
        "{} Apply with: kubectl apply -k .\n{}",
        super::output::KUSTOMIZATION_HEADER,
        yaml::document(&doc)
    )
}
