//! Grafana: Prometheus and Alertmanager datasources, the stack's dashboards and each team's (in
//! the team's own folder) provisioned from ConfigMaps, admin
//! credentials from a Secret (never a default password), a ReadWriteOnce volume with `Recreate`,
//! and an optional Ingress with TLS.

use serde_json::json;

use super::{
    Builder, PodDefaults, RenderError, allow_from_components, content_hash, labels, resources,
    selector,
};
use crate::spec::defaults;
use crate::spec::grafana::{IniValue, OAuth, environment_name};

/// The dashboards shipped with the stack, by file name.
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "services.json",
        include_str!("../../stack/grafana/dashboards/services.json"),
    ),
    (
        "cluster.json",
        include_str!("../../stack/grafana/dashboards/cluster.json"),
    ),
    (
        "stack.json",
        include_str!("../../stack/grafana/dashboards/stack.json"),
    ),
];

/// The dashboard of the services' objectives, shipped when a service has one.
pub const SLO_DASHBOARD: (&str, &str) = (
    "slos.json",
    include_str!("../../stack/grafana/dashboards/slos.json"),
);

/// The dashboards `spec`'s stack ships, by file name.
pub fn dashboards(spec: &crate::spec::Spec) -> Vec<(&'static str, &'static str)> {
    let objectives = spec.services.iter().any(|s| !s.slos.is_empty());
    DASHBOARDS
        .iter()
        .copied()
        .chain(objectives.then_some(SLO_DASHBOARD))
        .collect()
}

/// A team's dashboards as Grafana loads them: `(file name, text)` in the order named.
pub fn team_dashboards(team: &crate::spec::Team) -> Vec<(String, &str)> {
    team.dashboards
        .iter()
        .filter_map(|d| {
            d.contents
                .as_deref()
                .map(|text| (crate::spec::dashboard_file_name(&d.path), text))
        })
        .collect()
}

/// Every dashboard the stack provisions, the stack's and the teams', as Grafana loads them.
pub fn every_dashboard(spec: &crate::spec::Spec) -> Vec<&str> {
    dashboards(spec)
        .into_iter()
        .map(|(_, text)| text)
        .chain(
            spec.teams
                .iter()
                .flat_map(|team| team_dashboards(team).into_iter().map(|(_, text)| text)),
        )
        .collect()
}

/// Where the dashboards of `team` are mounted in Grafana's pod.
fn team_dashboards_dir(team: &str) -> String {
    format!("/var/lib/grafana-dashboards-teams/{team}")
}

/// The teams with dashboards: their names, ConfigMaps and mount paths.
fn teams_with_dashboards(spec: &crate::spec::Spec) -> Vec<serde_json::Value> {
    spec.teams
        .iter()
        .filter(|team| !team.dashboards.is_empty())
        .enumerate()
        .map(|(index, team)| {
            json!({
                "team": team.name,
                // A volume name is a DNS label: a team's name may already be 63 characters.
                "volume": format!("team-dashboards-{index}"),
                "config_map": format!("grafana-dashboards-{}", team.name),
                "path": team_dashboards_dir(&team.name),
            })
        })
        .collect()
}

pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let config_hash = provisioning(stack)?;
    deployment(stack, &config_hash)?;
    let spec = stack.spec;
    let ns = &spec.namespace;
    let g = &spec.grafana;
    stack.template(
        "grafana/pvc.yaml",
        "common/pvc.yaml",
        &json!({
            "name": "grafana-data",
            "namespace": ns,
            "labels": labels("grafana"),
            "size": g.volume_size,
            "storage_class": g.storage_class,
        }),
    )?;
    stack.service(
        "grafana/service.yaml",
        "grafana",
        "grafana",
        false,
        json!([
            {"name": "http", "port": 3000, "targetPort": "http"},
        ]),
    )?;
    if let Some(ingress) = &g.ingress {
        stack.ingress("grafana/ingress.yaml", "grafana", "http", &["/"], ingress)?;
    }
    // Users reach Grafana through an ingress controller or a port-forward, from any namespace.
    let ingress_rule = json!({
        "ports": [{"port": 3000, "protocol": "TCP"}],
        "from": [{"namespaceSelector": {}}],
    });
    stack.workload_extras(
        "grafana",
        "grafana",
        1,
        false,
        json!([ingress_rule, allow_from_components(&[(3000, "TCP")], &["prometheus"])]),
        "Grafana is reached by users (ingress controller or port-forward) and scraped by Prometheus.",
    )
}

/// The datasources, the dashboard providers and the dashboards, as ConfigMaps; returns the hash
/// of the datasources and providers, which Grafana reads only at start (so a change rolls it).
/// The dashboards are not in it: the provider reads their files again every 30 seconds.
fn provisioning(stack: &mut Builder) -> Result<String, RenderError> {
    let spec = stack.spec;
    let ns = &spec.namespace;
    let datasources = stack.config_template(
        "grafana/datasources.yaml",
        "grafana/datasources.yaml",
        &json!({
            "prometheus_url": format!("http://prometheus.{ns}.svc:9090"),
            "query_url": spec.prometheus.thanos.as_ref().and_then(|t| t.query_url.clone()),
            "local_name": format!("Prometheus ({} only)", spec.cluster.name),
            "alertmanager_url": format!("http://alertmanager.{ns}.svc:9093"),
            "scrape_interval": spec.prometheus.scrape_interval,
        }),
    )?;
    let providers = stack.config_template(
        "grafana/dashboard-providers.yaml",
        "grafana/dashboards.yaml",
        &json!({
            "folder": format!("stackgen ({})", spec.cluster.name),
            "teams": teams_with_dashboards(spec),
        }),
    )?;
    stack.config_map(
        "grafana-datasources",
        "grafana",
        vec![("datasources.yaml".into(), "grafana/datasources.yaml".into())],
    );
    stack.config_map(
        "grafana-dashboard-providers",
        "grafana",
        vec![(
            "dashboards.yaml".into(),
            "grafana/dashboard-providers.yaml".into(),
        )],
    );
    let hashed = [datasources, providers];
    let mut entries = Vec::new();
    for (name, text) in dashboards(spec) {
        let path = format!("grafana/dashboards/{name}");
        stack.config_file(&path, text.to_string());
        entries.push((name.to_string(), path));
    }
    stack.config_map("grafana-dashboards", "grafana", entries);
    for team in &spec.teams {
        let mut entries = Vec::new();
        for (name, text) in team_dashboards(team) {
            let path = format!("grafana/dashboards-{}/{name}", team.name);
            stack.config_file(&path, text.to_string());
            entries.push((name, path));
        }
        if !entries.is_empty() {
            stack.config_map(
                &format!("grafana-dashboards-{}", team.name),
                "grafana",
                entries,
            );
        }
    }
    Ok(content_hash(hashed.iter().map(String::as_str)))
}

/// The Deployment: admin credentials from the Secret, anonymous access and sign-up off.
fn deployment(stack: &mut Builder, config_hash: &str) -> Result<(), RenderError> {
    let spec = stack.spec;
    let g = &spec.grafana;
    let secret_env = |name: &str, key: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": g.admin_secret, "key": key}}});
    let mut env = vec![
        secret_env("GF_SECURITY_ADMIN_USER", "admin-user"),
        secret_env("GF_SECURITY_ADMIN_PASSWORD", "admin-password"),
        json!({"name": "GF_AUTH_ANONYMOUS_ENABLED", "value": "false"}),
        json!({"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"}),
        json!({"name": "GF_ANALYTICS_CHECK_FOR_UPDATES", "value": "false"}),
        json!({"name": "GF_USERS_ALLOW_SIGN_UP", "value": "false"}),
    ];
    if let Some(ingress) = &g.ingress {
        let scheme = if ingress.tls_secret.is_some() {
            "https"
        } else {
            "http"
        };
        env.push(
            json!({"name": "GF_SERVER_ROOT_URL", "value": format!("{scheme}://{}/", ingress.host)}),
        );
    }
    if let Some(oauth) = &g.oauth {
        env.extend(oauth_env(oauth));
    }
    for (section, settings) in &g.ini {
        for (key, value) in settings {
            let name = environment_name(section, key);
            let variable = match value {
                IniValue::Text(text) => json!({"name": name, "value": text}),
                IniValue::Secret(secret) => {
                    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret.secret, "key": secret.key}}})
                }
            };
            // The spec's setting wins over the stack's own of the same name.
            env.retain(|existing| existing["name"] != variable["name"]);
            env.push(variable);
        }
    }
    let image = stack.image(defaults::GRAFANA_IMAGE);
    let pod = stack.pod_placement(&spec.grafana.placement, PodDefaults::default());
    stack.template(
        "grafana/deployment.yaml",
        "grafana/deployment.yaml",
        &json!({
            "namespace": spec.namespace,
            "labels": labels("grafana"),
            "selector": selector("grafana"),
            "image": image,
            "pod": pod,
            "env": env,
            "resources": resources(&g.resources),
            "config_hash": config_hash,
            "teams": teams_with_dashboards(spec),
        }),
    )
}

/// Grafana's `auth.generic_oauth` settings for `oauth`, as environment variables.
fn oauth_env(oauth: &OAuth) -> Vec<serde_json::Value> {
    let setting = |key: &str, value: &str| json!({"name": environment_name("auth.generic_oauth", key), "value": value});
    let mut env = vec![
        setting("enabled", "true"),
        setting("name", &oauth.name),
        setting("client_id", &oauth.client_id),
        json!({
            "name": environment_name("auth.generic_oauth", "client_secret"),
            "valueFrom": {"secretKeyRef": {"name": oauth.client_secret.secret, "key": oauth.client_secret.key}},
        }),
        setting("auth_url", &oauth.auth_url),
        setting("token_url", &oauth.token_url),
        setting("scopes", &oauth.scopes.join(" ")),
        setting("use_pkce", "true"),
        setting(
            "allow_sign_up",
            if oauth.allow_sign_up { "true" } else { "false" },
        ),
    ];
    if let Some(api_url) = &oauth.api_url {
        env.push(setting("api_url", api_url));
    }
    if let Some(path) = &oauth.role_attribute_path {
        env.push(setting("role_attribute_path", path));
        // A user the path gives no role is refused, not made a Viewer.
        env.push(setting("role_attribute_strict", "true"));
    }
    if !oauth.allowed_groups.is_empty() {
        env.push(setting("allowed_groups", &oauth.allowed_groups.join(" ")));
        env.push(setting("groups_attribute_path", "groups"));
    }
    if oauth.disable_login_form {
        env.push(json!({"name": environment_name("auth", "disable_login_form"), "value": "true"}));
    }
    env
}
