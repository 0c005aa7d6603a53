//! The commented starter `stack.yaml` that `stackgen init` writes.

use super::{Platform, defaults};

/// A starter spec for `platform`: the required lines live, every knob present as a comment with its default.
pub fn starter(platform: Platform) -> String {
    let storage_class = defaults::storage_class(platform).unwrap_or("(the cluster default)");
    format!(
        r#"# stackgen cluster spec. Render with: stackgen render stack.yaml --out stack/
# Then apply with: kubectl apply -k stack/
cluster:
  name: my-cluster            # labels every series and alert (`cluster`)
  platform: {platform}        # generic, digitalocean, eks, gke, aks, kubeadm or kind

# namespace: {namespace}

# prometheus:
#   replicas: {prom_replicas}                 # two replicas evaluate the same rules; Alertmanager dedups
#   retention: {retention}
#   volume_size: {volume}           # retention.size is set to 85% of it, so the volume never fills
#   storage_class: {storage_class}
#   scrape_interval: {scrape}
#   evaluation_interval: {eval}
#   resources:
#     requests: {{cpu: 500m, memory: 2Gi}}
#     limits: {{memory: 4Gi}}

# alertmanager:
#   replicas: {am_replicas}                 # clustered peers over a headless Service

# grafana:
#   admin_secret: {grafana_secret}  # Secret with keys admin-user and admin-password
#   ingress:
#     host: grafana.example.com
#     class_name: nginx
#     tls_secret: grafana-tls

# exporters:
#   node_exporter: true
#   kube_state_metrics: true

# router:
#   image: {router_image}
#   auth_secret: {router_secret}   # Secret with key `token`, shared by Alertmanager and the router
#   smtp: {{host: smtp.example.com, port: 587, from: alerts@example.com, tls: starttls,
#          username: alerts, password: {{secret: smtp, key: password}}}}

# Teams and how to reach them. Secrets are always references to a Kubernetes Secret key.
# teams:
#   - name: payments
#     slack: {{url: {{secret: payments-alerting, key: slack-url}}}}
#     pagerduty: {{routing_key: {{secret: payments-alerting, key: pagerduty-key}}}}
#     email: {{to: [payments-oncall@example.com]}}
#     rule_files: [rules/payments.yaml]

# The services each team owns; their pods are scraped and every series carries service, team, namespace.
# services:
#   - name: checkout
#     team: payments
#     namespace: shop
#     selector: {{app: checkout}}
#     port: http-metrics        # container port name or number
#     path: /metrics
#     metrics: prometheus       # or opentelemetry, ingress-nginx, spring, grpc, or selectors
"#,
        platform = platform.name(),
        namespace = defaults::NAMESPACE,
        prom_replicas = defaults::PROMETHEUS_REPLICAS,
        retention = defaults::PROMETHEUS_RETENTION,
        volume = defaults::PROMETHEUS_VOLUME,
        scrape = defaults::SCRAPE_INTERVAL,
        eval = defaults::EVALUATION_INTERVAL,
        am_replicas = defaults::ALERTMANAGER_REPLICAS,
        grafana_secret = defaults::GRAFANA_ADMIN_SECRET,
        router_image = defaults::ROUTER_IMAGE,
        router_secret = defaults::ROUTER_AUTH_SECRET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_starter_is_a_valid_spec() {
        for (name, platform) in Platform::ALL {
            let spec = crate::spec::parse("stack.yaml", &starter(platform))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(spec.cluster.platform, platform);
        }
    }
}
