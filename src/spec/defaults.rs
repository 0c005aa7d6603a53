//! Every default of the spec in one place: what a three-line spec gets.
//!
//! Resource figures follow the sizes kube-prometheus ships (and what users report running), with
//! memory limits equal to requests for the stateful parts so they are not the first to be evicted.

use super::Platform;

pub const NAMESPACE: &str = "monitoring";

pub const PROMETHEUS_REPLICAS: u32 = 2;
pub const PROMETHEUS_RETENTION: &str = "15d";
pub const PROMETHEUS_VOLUME: &str = "50Gi";
pub const SCRAPE_INTERVAL: &str = "30s";
pub const EVALUATION_INTERVAL: &str = "30s";
/// Share of the Prometheus volume given to `--storage.tsdb.retention.size`: the WAL and compaction
/// need the rest, and the volume stays below KubePersistentVolumeFillingUp's 90%.
pub const RETENTION_SIZE_SHARE: f64 = 0.8;

pub const ALERTMANAGER_REPLICAS: u32 = 2;
pub const ALERTMANAGER_VOLUME: &str = "1Gi";

pub const GRAFANA_VOLUME: &str = "2Gi";
pub const GRAFANA_ADMIN_SECRET: &str = "grafana-admin";

/// With no team declared, this team owns everything and the router logs its notifications.
pub const UNDECLARED_TEAM: &str = "platform";
pub const ROUTER_IMAGE: &str = "ghcr.io/stackgen/stackgen:0.1.0";
pub const ROUTER_AUTH_SECRET: &str = "stackgen-router-auth";
pub const ROUTER_REPLICAS: u32 = 1;

pub const METRICS_PATH: &str = "/metrics";

/// Pinned images of the third-party components.
pub const PROMETHEUS_IMAGE: &str = "quay.io/prometheus/prometheus:v3.13.2";
pub const ALERTMANAGER_IMAGE: &str = "quay.io/prometheus/alertmanager:v0.33.1";
pub const GRAFANA_IMAGE: &str = "docker.io/grafana/grafana:13.1.3";
pub const NODE_EXPORTER_IMAGE: &str = "quay.io/prometheus/node-exporter:v1.12.1";
pub const KUBE_STATE_METRICS_IMAGE: &str =
    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.19.1";

pub const THANOS_IMAGE: &str = "quay.io/thanos/thanos:v0.39.2";
/// Runs the `probes:` of a spec.
pub const BLACKBOX_EXPORTER_IMAGE: &str = "quay.io/prometheus/blackbox-exporter:v0.27.0";

/// The images the stack runs as published upstream, with the router's (`router.image`): what
/// `images.digests` pins and `images.registry` mirrors.
pub fn upstream_images(router_image: &str) -> Vec<String> {
    [
        PROMETHEUS_IMAGE,
        ALERTMANAGER_IMAGE,
        GRAFANA_IMAGE,
        NODE_EXPORTER_IMAGE,
        KUBE_STATE_METRICS_IMAGE,
        THANOS_IMAGE,
        BLACKBOX_EXPORTER_IMAGE,
        router_image,
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// `(requests, limits)` as `(cpu, memory)` pairs; an empty CPU limit means none (no throttling).
pub struct ResourceDefaults {
    pub request_cpu: &'static str,
    pub request_memory: &'static str,
    pub limit_cpu: Option<&'static str>,
    pub limit_memory: &'static str,
}

pub const PROMETHEUS_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "500m",
    request_memory: "2Gi",
    limit_cpu: None,
    limit_memory: "4Gi",
};
pub const ALERTMANAGER_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "20m",
    request_memory: "64Mi",
    limit_cpu: None,
    limit_memory: "128Mi",
};
pub const GRAFANA_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "100m",
    request_memory: "256Mi",
    limit_cpu: None,
    limit_memory: "512Mi",
};
pub const ROUTER_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "50m",
    request_memory: "64Mi",
    limit_cpu: None,
    limit_memory: "256Mi",
};
/// The config reloader sidecar: a file walk and an HTTP call every few seconds.
pub const CONFIG_RELOADER_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "5m",
    request_memory: "16Mi",
    limit_cpu: None,
    limit_memory: "32Mi",
};
pub const NODE_EXPORTER_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "50m",
    request_memory: "64Mi",
    limit_cpu: Some("250m"),
    limit_memory: "128Mi",
};
pub const BLACKBOX_EXPORTER_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "20m",
    request_memory: "32Mi",
    limit_cpu: Some("200m"),
    limit_memory: "64Mi",
};
pub const KUBE_STATE_METRICS_RESOURCES: ResourceDefaults = ResourceDefaults {
    request_cpu: "50m",
    request_memory: "128Mi",
    limit_cpu: None,
    limit_memory: "512Mi",
};

/// The storage class a platform provides when the spec names none (`None`: the cluster default).
pub fn storage_class(platform: Platform) -> Option<&'static str> {
    match platform {
        Platform::Digitalocean => Some("do-block-storage"),
        Platform::Kind => Some("standard"),
        _ => None,
    }
}

/// The window of a service level objective.
pub const SLO_WINDOW: &str = "30d";

/// Requests per second below which a service's objective never pages.
pub const SLO_PAGE_MIN_RATE: &str = "1";
