//! The stackgen router: its configuration (ownership and destinations from the spec, secrets as
//! mounted files), Deployment, Service and NetworkPolicy. On the embedded store: one replica with a
//! durable volume. On the shared PostgreSQL store (the user's database, its URL from a Secret):
//! `router.replicas` replicas, no volume, and a PodDisruptionBudget when there are several.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Builder, PodDefaults, RenderError, allow_from_components, content_hash, labels,
    projected_secrets, resources, selector,
};
use crate::spec::{Destination, SecretRef, Spec, defaults};
use crate::time_interval::TimeInterval;

/// Where the router finds a Secret key: the projected volume mounts each as `<secret>/<key>`.
pub fn secret_file(secret: &SecretRef) -> String {
    format!("/etc/stackgen/secrets/{}/{}", secret.secret, secret.key)
}

pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let spec = stack.spec;
    let ns = &spec.namespace;
    let config = stack.config_template(
        "router/router.yaml",
        "router/router.yaml",
        &config_context(spec),
    )?;
    stack.config_map(
        "stackgen-router-config",
        "stackgen-router",
        vec![("router.yaml".into(), "router/router.yaml".into())],
    );
    let image = stack.image(&spec.router.image);
    let pod = stack.pod_placement(
        &spec.router.placement,
        if spec.router.replicas > 1 {
            PodDefaults::spread("stackgen-router")
        } else {
            PodDefaults::default()
        },
    );
    stack.template(
        "router/deployment.yaml",
        "router/deployment.yaml",
        &json!({
            "namespace": ns,
            "labels": labels("stackgen-router"),
            "selector": selector("stackgen-router"),
            "image": image,
            "pod": pod,
            "resources": resources(&spec.router.resources),
            "auth_secret": spec.router.auth_secret,
            "secret_sources": secret_sources(spec),
            "config_hash": content_hash([config.as_str()]),
            "replicas": spec.router.replicas,
            "shared_store": spec.router.postgres.is_some(),
        }),
    )?;
    if spec.router.postgres.is_none() {
        stack.template(
            "router/pvc.yaml",
            "common/pvc.yaml",
            &json!({
                "name": "stackgen-router-data",
                "namespace": ns,
                "labels": labels("stackgen-router"),
                "size": "1Gi",
                "storage_class": spec.prometheus.storage_class,
            }),
        )?;
    }
    stack.service(
        "router/service.yaml",
        "stackgen-router",
        "stackgen-router",
        false,
        json!([
            {"name": "http", "port": 8080, "targetPort": "http"},
        ]),
    )?;
    if let Some(ingress) = &spec.router.ingress {
        // The page and the API people use; not the metrics, nor the webhooks unless the other
        // clusters of a fleet send them here (behind the router's bearer token).
        let mut paths = vec!["/incidents", "/api/v1/incidents", "/api/v1/silences"];
        if spec.router.fleet.len() > 1 {
            paths.extend(["/api/v1/alertmanager", "/api/v1/heartbeat"]);
        }
        stack.ingress(
            "router/ingress.yaml",
            "stackgen-router",
            "http",
            &paths,
            ingress,
        )?;
    }
    let mut rules = vec![allow_from_components(
        &[(8080, "TCP")],
        &["alertmanager", "prometheus"],
    )];
    let mut reason =
        "The router takes webhooks from Alertmanager and scrapes from Prometheus.".to_string();
    if spec.router.fleet.len() > 1 {
        // The other clusters' Alertmanagers come from outside the cluster, through whatever
        // `router.url` is (a load balancer, a node port, an ingress controller): from anywhere,
        // every webhook behind the router's bearer token and every page behind a person.
        rules.push(json!({"ports": [{"port": 8080, "protocol": "TCP"}]}));
        reason.push_str(" In a fleet, the other clusters' Alertmanagers send to it from outside the cluster, behind its bearer token.");
    } else if spec.router.people.is_some() || spec.router.ingress.is_some() {
        // People reach the incidents page through an ingress controller, an authenticating
        // proxy or a port-forward, from any namespace; every page and action needs a person.
        rules.push(json!({
            "ports": [{"port": 8080, "protocol": "TCP"}],
            "from": [{"namespaceSelector": {}}],
        }));
        reason.push_str(" People sign in to its incidents page from any namespace.");
    }
    stack.workload_extras(
        "router",
        "stackgen-router",
        spec.router.replicas,
        false,
        json!(rules),
        &reason,
    )
}

fn config_context(spec: &Spec) -> Value {
    let mut teams: BTreeMap<&str, Value> = spec
        .teams
        .iter()
        .map(|team| {
            let destinations: Vec<Value> = team
                .destinations
                .iter()
                .map(|d| {
                    let mut rendered = destination(d);
                    if let Some(severities) = team.severities_of(d.kind()) {
                        rendered["severities"] = json!(severities);
                    }
                    rendered
                })
                .collect();
            let mut rendered = json!({ "destinations": destinations });
            if !team.quiet_hours.is_empty() {
                rendered["quiet_hours"] = team
                    .quiet_hours
                    .iter()
                    .map(TimeInterval::to_value)
                    .collect();
            }
            (team.name.as_str(), rendered)
        })
        .collect();
    // With no team declared, the platform team logs every notification, so the router still works.
    let default_team = spec.router.platform_team.clone().or_else(|| {
        teams
            .is_empty()
            .then(|| defaults::UNDECLARED_TEAM.to_string())
    });
    if teams.is_empty() {
        teams.insert(
            defaults::UNDECLARED_TEAM,
            json!({ "destinations": [{"kind": "log"}] }),
        );
    }
    let services: BTreeMap<String, &str> = spec
        .services
        .iter()
        .map(|s| (format!("{}/{}", s.namespace, s.name), s.team.as_str()))
        .collect();
    let smtp = spec.router.smtp.as_ref().map(|smtp| {
        let mut fields =
            json!({"host": smtp.server.host, "port": smtp.server.port, "from": smtp.server.from, "tls": smtp.server.tls});
        if let Some(user) = &smtp.server.username {
            fields["username"] = json!(user);
        }
        if let Some(password) = &smtp.password {
            fields["password_file"] = json!(secret_file(password));
        }
        fields
    });
    let routes: Vec<Value> = spec
        .teams
        .iter()
        .flat_map(|team| {
            team.routes.iter().map(move |route| {
                let mut matchers = vec![format!("team={:?}", team.name)];
                matchers.extend(route.matchers.iter().cloned());
                let destinations: Vec<String> = route
                    .destinations
                    .iter()
                    .map(|kind| format!("{}/{}", team.name, kind.name()))
                    .collect();
                json!({"matchers": matchers, "destinations": destinations, "continue": route.continue_matching})
            })
        })
        .collect();
    let escalation: BTreeMap<&str, Vec<Value>> = spec
        .teams
        .iter()
        .filter(|team| !team.escalation.is_empty())
        .map(|team| {
            let steps = team
                .escalation
                .iter()
                .map(|step| {
                    let destinations: Vec<String> = step
                        .destinations
                        .iter()
                        .map(|target| {
                            let owner = target.team.as_deref().unwrap_or(&team.name);
                            format!("{owner}/{}", target.kind.name())
                        })
                        .collect();
                    json!({"after": step.after, "destinations": destinations})
                })
                .collect();
            (team.name.as_str(), steps)
        })
        .collect();
    let people = spec.router.people.as_ref().map(|people| {
        let mut rendered = json!({});
        if let Some(users) = &people.users {
            rendered["users_file"] = json!(secret_file(users));
        }
        if let Some(proxy) = &people.proxy {
            let mut fields = json!({"trusted": proxy.trusted});
            if let Some(header) = &proxy.user_header {
                fields["user_header"] = json!(header);
            }
            if let Some(header) = &proxy.groups_header {
                fields["groups_header"] = json!(header);
            }
            rendered["proxy"] = fields;
        }
        if !people.viewers.is_empty() {
            rendered["viewers"] = json!(people.viewers);
        }
        let responders: BTreeMap<&str, &Vec<String>> = spec
            .teams
            .iter()
            .filter(|t| !t.responders.is_empty())
            .map(|t| (t.name.as_str(), &t.responders))
            .collect();
        if !responders.is_empty() {
            rendered["responders"] = json!(responders);
        }
        rendered
    });
    json!({
        "cluster": spec.cluster.name,
        "teams": teams,
        "routes": routes,
        "escalation": escalation,
        "people": people,
        "services": services,
        "namespaces": spec
            .teams
            .iter()
            .flat_map(|t| t.namespaces.iter().map(move |ns| (ns.clone(), t.name.clone())))
            .collect::<BTreeMap<String, String>>(),
        "default_team": default_team,
        "heartbeat_team": default_team,
        "fleet": if spec.router.fleet.len() > 1 { spec.router.fleet.clone() } else { Vec::new() },
        "grafana_url": spec.grafana.ingress.as_ref().map(|i| {
            let scheme = if i.tls_secret.is_some() { "https" } else { "http" };
            format!("{scheme}://{}", i.host)
        }),
        "smtp": smtp,
        "postgres_url_file": spec.router.postgres.as_ref().map(secret_file),
        "postgres_ca_file": spec.router.postgres_ca.as_ref().map(secret_file),
    })
}

fn destination(d: &Destination) -> Value {
    match d {
        Destination::Email { to } => json!({"kind": "email", "to": to}),
        Destination::Pagerduty { routing_key } => {
            json!({"kind": "pagerduty", "routing_key_file": secret_file(routing_key)})
        }
        Destination::Opsgenie { api_key, region } => {
            json!({"kind": "opsgenie", "api_key_file": secret_file(api_key), "region": region})
        }
        other => match other.secret() {
            Some(url) => json!({"kind": other.kind().name(), "url_file": secret_file(url)}),
            None => json!({"kind": other.kind().name()}),
        },
    }
}

/// Projected-volume sources: every Secret the destinations (and the shared store) read, only the
/// keys they need.
fn secret_sources(spec: &Spec) -> Vec<Value> {
    let mut refs = spec.secret_refs();
    refs.extend(spec.router.postgres.iter().cloned());
    refs.extend(spec.router.postgres_ca.iter().cloned());
    projected_secrets(&refs)
}
