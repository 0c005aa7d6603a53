//! The commented starter `stack.yaml` that `stackgen init` writes.

use super::{Platform, defaults};

/// A starter spec for `platform`: the required lines live, every knob present as a comment with its default.
pub fn starter(platform: Platform) -> String {
    let storage_class = match defaults::storage_class(platform) {
        Some(class) => class.to_string(),
        None => "fast-ssd           # unset: the cluster's default StorageClass".to_string(),
    };
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
#   scrape_jobs:                    # targets outside the cluster, owned by a team
#     - {{name: billing-db, team: payments, targets: [db-1.example.internal:9187]}}

# alertmanager:
#   replicas: {am_replicas}                 # clustered peers over a headless Service

# grafana:
#   admin_secret: {grafana_secret}  # Secret with keys admin-user and admin-password
#   ingress:
#     host: grafana.example.com
#     class_name: nginx
#     tls_secret: grafana-tls
#   oauth:                          # sign-in through your identity provider (generic OAuth/OIDC)
#     name: SSO
#     client_id: grafana
#     client_secret: {{secret: grafana-oauth, key: client-secret}}
#     auth_url: https://sso.example.com/oauth2/authorize
#     token_url: https://sso.example.com/oauth2/token
#     api_url: https://sso.example.com/oauth2/userinfo
#   ini:                            # grafana.ini overrides, by section; secret values by reference
#     users: {{default_theme: light}}

# exporters:
#   node_exporter: true
#   kube_state_metrics: true

# router:
#   image: {router_image}
#   platform_team: payments         # owns the alerts of no service (nodes, the cluster, the stack itself)
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
#     dashboards: [dashboards/payments.json]  # Grafana dashboards, in a folder of the team's own

# The services each team owns; their pods are scraped and every series carries service, team, namespace.
# services:
#   - name: checkout
#     team: payments
#     namespace: shop
#     selector: {{app: checkout}}
#     port: http-metrics        # container port name or number
#     path: /metrics
#     metrics: prometheus       # or opentelemetry, ingress-nginx, spring, grpc, or selectors

# URLs and TCP endpoints probed through the blackbox exporter, each owned by a service or a team.
# probes:
#   - {{name: checkout-page, url: https://shop.example.com/checkout, service: checkout}}
#   - {{name: ledger, tcp: ledger.payments.internal:5432, tls: true, team: payments}}
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

    /// The starter with every commented knob uncommented: each example is a valid spec too.
    fn uncommented(starter: &str) -> String {
        starter
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(knob) if knob.starts_with(' ') || is_top_level_key(knob) => knob,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn is_top_level_key(line: &str) -> bool {
        line.split_once(':').is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    #[test]
    fn every_commented_example_is_valid_when_uncommented() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir_all(dir.path().join("dashboards")).expect("dashboards dir");
        std::fs::write(dir.path().join("rules/payments.yaml"), "groups: []\n").expect("rule file");
        std::fs::write(
            dir.path().join("dashboards/payments.json"),
            r#"{"title": "Payments", "uid": "payments", "panels": []}"#,
        )
        .expect("dashboard");
        for (name, platform) in Platform::ALL {
            let full = uncommented(&starter(platform));
            assert!(
                full.contains("\nprobes:") && full.contains("\n  oauth:"),
                "{full}"
            );
            let path = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&path, &full).expect("spec");
            let spec = crate::spec::load(&path).unwrap_or_else(|e| panic!("{name}: {e:?}\n{full}"));
            assert_eq!(spec.probes.len(), 2, "{name}");
            assert_eq!(spec.services.len(), 1, "{name}");
        }
    }
}
