//! Where the stack's pods run and where their images come from: the per-component scheduling
//! knobs (`node_selector`, `tolerations`, `affinity`, `priority_class_name`,
//! `image_pull_secrets`) and the stack-wide image settings (`images.registry` for an air-gapped
//! mirror, `images.digests` for pinning, `images.pull_secrets`).
//!
//! The model only; `load` reads it and the renderer turns it into pod-spec fields.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The scheduling knobs of one component's pods, as the spec writes them (already checked).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Placement {
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes `tolerations`, each checked field by field; `None`: the component's default.
    pub tolerations: Option<Vec<Value>>,
    /// A Kubernetes `affinity`; its parts replace the component's default parts of the same name
    /// (`podAntiAffinity` spreading replicas over nodes).
    pub affinity: BTreeMap<String, Value>,
    pub priority_class_name: Option<String>,
    /// Secrets of type `kubernetes.io/dockerconfigjson`, besides `images.pull_secrets`.
    pub image_pull_secrets: Vec<String>,
}

/// `images:`: where every image is pulled from.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Images {
    /// Replaces the registry host of every image (`registry.example.com/mirror`): an air-gapped
    /// cluster pulls everything from its own mirror, under the same repository paths.
    pub registry: Option<String>,
    /// Pins images by digest, keyed by the image as stackgen names it upstream
    /// (`quay.io/prometheus/prometheus:v3.13.2`) to `sha256:...`.
    pub digests: BTreeMap<String, String>,
    /// Pull secrets every pod of the stack uses.
    pub pull_secrets: Vec<String>,
}

impl Images {
    /// The reference a pod runs for the upstream `image`: the mirror's registry in place of the
    /// upstream one, and the digest when one is pinned.
    pub fn resolve(&self, image: &str) -> String {
        let mut resolved = match &self.registry {
            Some(registry) => format!("{registry}/{}", repository_path(image)),
            None => image.to_string(),
        };
        if let Some(digest) = self.digests.get(image) {
            resolved = format!(
                "{}@{digest}",
                resolved.split('@').next().unwrap_or(&resolved)
            );
        }
        resolved
    }
}

/// The image without its registry host: `quay.io/prometheus/prometheus:v3` gives
/// `prometheus/prometheus:v3`; an image of Docker Hub written without a host
/// (`grafana/grafana:13`) is already a path.
pub fn repository_path(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, rest)) if is_registry_host(first) => rest,
        _ => image,
    }
}

/// Whether the first path component of an image reference is a registry host: it holds a dot
/// or a port, or is `localhost` (Docker's own rule).
fn is_registry_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_keeps_the_repository_path_and_a_digest_pins_the_tag() {
        let images = Images {
            registry: Some("mirror.internal:5000/stack".into()),
            digests: BTreeMap::from([(
                "quay.io/prometheus/prometheus:v3.13.2".to_string(),
                format!("sha256:{}", "a".repeat(64)),
            )]),
            pull_secrets: Vec::new(),
        };
        assert_eq!(
            images.resolve("quay.io/prometheus/prometheus:v3.13.2"),
            format!(
                "mirror.internal:5000/stack/prometheus/prometheus:v3.13.2@sha256:{}",
                "a".repeat(64)
            )
        );
        assert_eq!(
            images.resolve("docker.io/grafana/grafana:13.1.3"),
            "mirror.internal:5000/stack/grafana/grafana:13.1.3"
        );
        assert_eq!(
            images.resolve("grafana/grafana:13.1.3"),
            "mirror.internal:5000/stack/grafana/grafana:13.1.3"
        );
        assert_eq!(
            images.resolve("localhost/stackgen:1"),
            "mirror.internal:5000/stack/stackgen:1"
        );
        assert_eq!(
            Images::default().resolve("registry.k8s.io/kube-state-metrics/kube-state-metrics:v2"),
            "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2"
        );
    }
}
