//! Alertmanager: clustered replicas over a headless Service, routing every alert to the stackgen
//! router (bearer token from a Secret), Watchdog as a heartbeat, critical inhibiting warning; the
//! router's own health around it ([`direct_path`]).

use serde_json::{Value, json};

use super::direct_path::{SECRETS_DIR, TEMPLATE_FILE, direct_path};
use super::{
    Builder, PodDefaults, RenderError, allow_from_components, labels, projected_secrets, resources,
    selector,
};
use crate::spec::defaults;

/// Where Alertmanager mounts the router's bearer token.
const TOKEN_FILE: &str = "/etc/alertmanager/secrets/router/token";

pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let spec = stack.spec;
    let ns = &spec.namespace;
    // In a fleet, the router may run in another cluster, reached at its URL.
    let router_base = spec
        .router
        .remote
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://stackgen-router.{ns}.svc:8080"));
    let direct = direct_path(spec);
    stack.config_template("alertmanager/alertmanager.yml", "alertmanager/alertmanager.yml", &json!({
        "cluster": spec.cluster.name,
        "router_url": format!("{router_base}/api/v1/alertmanager"),
        "heartbeat_url": format!("{router_base}/api/v1/heartbeat"),
        "token_file": TOKEN_FILE,
        "teams": spec.teams.iter().map(|t| json!({"matcher": format!("team=\"{}\"", t.name)})).collect::<Vec<_>>(),
        "dead_mans_switch_routes": direct.dead_mans_switch_routes,
        "direct_routes": direct.routes,
        "direct_receivers": direct.receivers,
        "time_intervals": direct.time_intervals,
        "template_file": direct.uses_templates.then_some(TEMPLATE_FILE),
    }))?;
    let mut files = vec![(
        "alertmanager.yml".to_string(),
        "alertmanager/alertmanager.yml".to_string(),
    )];
    if direct.uses_templates {
        let templates = include_str!("../../stack/alertmanager/stackgen.tmpl");
        stack.config_file("alertmanager/stackgen.tmpl", templates.to_string());
        files.push(("stackgen.tmpl".into(), "alertmanager/stackgen.tmpl".into()));
    }
    stack.config_map("alertmanager-config", "alertmanager", files);

    let am = &spec.alertmanager;
    let mut args = vec![
        "--config.file=/etc/alertmanager/alertmanager.yml".to_string(),
        "--storage.path=/alertmanager".to_string(),
        "--web.listen-address=:9093".to_string(),
    ];
    if am.replicas > 1 {
        args.push("--cluster.listen-address=:9094".into());
        args.push("--cluster.advertise-address=$(POD_IP):9094".into());
        for i in 0..am.replicas {
            args.push(format!(
                "--cluster.peer=alertmanager-{i}.alertmanager-headless.{ns}.svc:9094"
            ));
        }
    } else {
        // A single replica has no peers: gossip off, so notifications never wait for it to settle.
        args.push("--cluster.listen-address=".into());
    }
    if let Some(url) = am.external.url() {
        args.push(format!("--web.external-url={url}"));
    }
    let image = stack.image(defaults::ALERTMANAGER_IMAGE);
    let pod = stack.pod_placement(
        &spec.alertmanager.placement,
        PodDefaults::spread("alertmanager"),
    );
    // Routes and templates reach Alertmanager through its reload endpoint: a route change
    // never restarts it (nor loses its silences and notification log).
    let reloader = stack.config_reloader(&[("config", "/etc/alertmanager")], 9093);
    stack.template(
        "alertmanager/statefulset.yaml",
        "alertmanager/statefulset.yaml",
        &json!({
            "namespace": ns,
            "labels": labels("alertmanager"),
            "selector": selector("alertmanager"),
            "replicas": am.replicas,
            "image": image,
            "pod": pod,
            "args": args,
            "resources": resources(&am.resources),
            "storage_class": am.storage_class,
            "volume_size": am.volume_size,
            "auth_secret": spec.router.auth_secret,
            "destination_secrets": projected_secrets(&direct.secrets),
            "destination_secrets_dir": SECRETS_DIR,
            "sidecars": reloader,
        }),
    )?;
    stack.service(
        "alertmanager/service.yaml",
        "alertmanager",
        "alertmanager",
        false,
        json!([
            {"name": "web", "port": 9093, "targetPort": "web"},
        ]),
    )?;
    stack.service(
        "alertmanager/service.yaml",
        "alertmanager-headless",
        "alertmanager",
        true,
        json!([
            {"name": "web", "port": 9093, "targetPort": "web"},
            {"name": "mesh-tcp", "port": 9094, "targetPort": "mesh-tcp", "protocol": "TCP"},
            {"name": "mesh-udp", "port": 9094, "targetPort": "mesh-udp", "protocol": "UDP"},
        ]),
    )?;
    if let Some(ingress) = &am.external.ingress {
        stack.ingress(
            "alertmanager/ingress.yaml",
            "alertmanager",
            "web",
            &["/"],
            ingress,
        )?;
    }
    stack.workload_extras(
        "alertmanager",
        "alertmanager",
        am.replicas,
        false,
        {
            let mut rules = vec![
                allow_from_components(&[(9093, "TCP")], &["prometheus", "grafana", "stackgen-router"]),
                allow_from_components(&[(9094, "TCP"), (9094, "UDP")], &["alertmanager"]),
            ];
            if am.external.ingress.is_some() {
                // Its ingress controller runs in a namespace of its own.
                rules.push(json!({
                    "ports": [{"port": 9093, "protocol": "TCP"}],
                    "from": [{"namespaceSelector": {}}],
                }));
            }
            Value::Array(rules)
        },
        "Alertmanager takes alerts from Prometheus, queries from Grafana and gossip from its peers.",
    )
}
