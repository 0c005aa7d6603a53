//! Prometheus: configuration (scrape jobs for the cluster, the stack, every declared service and
//! the pods in teams' namespaces that ask to be scraped), rules, RBAC limited to the scraped
//! namespaces, and the StatefulSet with its volume.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{
    Builder, PodDefaults, RenderError, allow_from_components, k8s_sd, keep, labels, resources,
    rules, scale_out, selector,
};
use crate::labels::{SCRAPE_POD_LABEL, SCRAPE_PORT_POD_LABEL};
use crate::spec::scale_out::Consumer;
use crate::spec::selectors::KeySetGroups;
use crate::spec::{Port, Service, Spec, defaults};

pub(super) fn build(stack: &mut Builder) -> Result<(), RenderError> {
    let spec = stack.spec;
    let rule_files = rules::rule_files(spec).map_err(RenderError::RuleFile)?;
    let dashboards = super::grafana::every_dashboard(spec);
    let reads = keep::reads(&rule_files, &dashboards).map_err(RenderError::RuleFile)?;
    let config = stack.config_template(
        "prometheus/prometheus.yml",
        "prometheus/prometheus.yml",
        &config_context(spec, &reads),
    )?;
    let parsed = stack.parse_back("prometheus/prometheus.yml", &config)?;
    let root = parsed.first().ok_or_else(|| RenderError::InvalidYaml {
        path: "prometheus/prometheus.yml".into(),
        message: "empty document".into(),
    })?;
    k8s_sd::check_config(root).map_err(RenderError::ServiceDiscovery)?;
    stack.config_map(
        "prometheus-config",
        "prometheus",
        vec![("prometheus.yml".into(), "prometheus/prometheus.yml".into())],
    );

    let mut entries = Vec::new();
    for (name, text) in rule_files {
        let path = format!("prometheus/rules/{name}");
        stack.config_file(&path, text);
        entries.push((name, path));
    }
    stack.config_map("prometheus-rules", "prometheus", entries);
    // Not deployed: the objectives' promtool tests, to run where the output is reviewed.
    if let Some(tests) = super::slos::slo_test_file(spec) {
        stack.config_file("prometheus/tests/slos_test.yaml", tests);
    }

    let ns = &spec.namespace;
    stack.template(
        "prometheus/rbac.yaml",
        "prometheus/rbac.yaml",
        &json!({
            "namespace": ns,
            "labels": labels("prometheus"),
            "scraped_namespaces": scraped_namespaces(spec),
        }),
    )?;
    let web = json!([{"name": "web", "port": 9090, "targetPort": "web"}]);
    stack.service(
        "prometheus/service.yaml",
        "prometheus",
        "prometheus",
        false,
        web.clone(),
    )?;
    // Thanos Query finds the sidecars through the headless Service (one address per replica).
    let mut headless = web;
    if spec.prometheus.thanos.is_some()
        && let Value::Array(ports) = &mut headless
    {
        ports.push(
            json!({"name": "grpc", "port": scale_out::THANOS_GRPC_PORT, "targetPort": "grpc"}),
        );
    }
    stack.service(
        "prometheus/service.yaml",
        "prometheus-headless",
        "prometheus",
        true,
        headless,
    )?;
    let image = stack.image(defaults::PROMETHEUS_IMAGE);
    let pod = stack.pod_placement(
        &spec.prometheus.placement,
        PodDefaults::spread("prometheus"),
    );
    // prometheus.yml and the rules reach Prometheus through its reload endpoint
    // (`--web.enable-lifecycle`): a rule change never restarts it.
    let mut sidecars = stack.config_reloader(
        &[
            ("config", "/etc/prometheus"),
            ("rules", "/etc/prometheus/rules"),
        ],
        9090,
    );
    let p = &spec.prometheus;
    let mut args = vec![
        "--config.file=/etc/prometheus/prometheus.yml".to_string(),
        "--storage.tsdb.path=/prometheus".into(),
        format!("--storage.tsdb.retention.time={}", p.retention),
        format!(
            "--storage.tsdb.retention.size={}",
            retention_size(p.volume_bytes)
        ),
        "--web.enable-lifecycle".into(),
        "--web.route-prefix=/".into(),
    ];
    if let Some(url) = p.external.url() {
        args.push(format!("--web.external-url={url}"));
    }
    if let Some(thanos) = &p.thanos {
        args.extend(scale_out::thanos_prometheus_args(thanos));
        let image = stack.image(&thanos.image);
        if let Value::Array(list) = &mut sidecars {
            list.push(scale_out::thanos_sidecar(thanos, &image));
        }
    }
    let secrets = spec.prometheus_secret_refs();
    stack.template(
        "prometheus/statefulset.yaml",
        "prometheus/statefulset.yaml",
        &json!({
            "namespace": ns,
            "labels": labels("prometheus"),
            "selector": selector("prometheus"),
            "replicas": p.replicas,
            "image": image,
            "pod": pod,
            "args": args,
            "secrets": super::projected_secrets(&secrets),
            "secrets_dir": scale_out::PROMETHEUS_SECRETS_DIR,
            "resources": resources(&p.resources),
            "storage_class": p.storage_class,
            "volume_size": p.volume_size,
            "sidecars": sidecars,
        }),
    )?;
    if let Some(ingress) = &p.external.ingress {
        stack.ingress(
            "prometheus/ingress.yaml",
            "prometheus",
            "web",
            &["/"],
            ingress,
        )?;
    }
    stack.workload_extras(
        "prometheus",
        "prometheus",
        p.replicas,
        true,
        Value::Array(network_policy_rules(spec)),
        "Prometheus answers Grafana, its peer replica, the stack's components and the consumers the spec declares.",
    )?;
    Ok(())
}

/// Who may reach Prometheus: the stack's components, and the spec's consumers (on the web
/// port and, with Thanos, the sidecar's StoreAPI). Without declared consumers the StoreAPI is
/// open to the cluster's namespaces, where a Thanos Query usually runs.
fn network_policy_rules(spec: &Spec) -> Vec<Value> {
    let mut rules = vec![allow_from_components(
        &[(9090, "TCP")],
        &["grafana", "prometheus", "alertmanager", "stackgen-router"],
    )];
    let consumers: Vec<Value> = spec
        .prometheus
        .consumers
        .iter()
        .map(|consumer| match consumer {
            Consumer::Pods {
                namespace,
                pod_labels,
            } => {
                let mut peer = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}});
                if !pod_labels.is_empty() {
                    peer["podSelector"] = json!({"matchLabels": pod_labels});
                }
                peer
            }
            Consumer::Cidr(cidr) => json!({"ipBlock": {"cidr": cidr}}),
        })
        .collect();
    let mut ports = vec![json!({"port": 9090, "protocol": "TCP"})];
    if spec.prometheus.thanos.is_some() {
        ports.push(json!({"port": scale_out::THANOS_GRPC_PORT, "protocol": "TCP"}));
    }
    if spec.prometheus.external.ingress.is_some() {
        // Its ingress controller runs in a namespace of its own.
        rules.push(json!({
            "ports": [{"port": 9090, "protocol": "TCP"}],
            "from": [{"namespaceSelector": {}}],
        }));
    }
    if !consumers.is_empty() {
        rules.push(json!({"ports": ports, "from": consumers}));
    } else if spec.prometheus.thanos.is_some() {
        rules.push(json!({
            "ports": [{"port": scale_out::THANOS_GRPC_PORT, "protocol": "TCP"}],
            "from": [{"namespaceSelector": {}}],
        }));
    }
    rules
}

/// The `metric_relabel_configs` of the exporters' jobs: keep the metric names the stack reads
/// (and `keep_metrics`), then, of a metric every expression selects by some labels' values, only
/// the series of those values.
fn metric_relabelling(reads: &keep::Reads, keep_metrics: &[String]) -> Vec<Value> {
    /// Marks a series of the values read, for the one drop after all the marks.
    const MARK: &str = "__tmp_stackgen_read";
    let mut rules = vec![json!({
        "source_labels": ["__name__"],
        "regex": reads.keep_regex(keep_metrics),
        "action": "keep",
    })];
    let values_read = reads.values_read(keep_metrics);
    if values_read.is_empty() {
        return rules;
    }
    for read in &values_read {
        rules.push(json!({
            "source_labels": read.source_labels,
            "regex": read.regex,
            "target_label": MARK,
            "replacement": "1",
        }));
    }
    let names: Vec<String> = values_read
        .iter()
        .map(|r| regex::escape(&r.metric))
        .collect();
    rules.push(json!({
        "source_labels": ["__name__", MARK],
        "regex": format!("(?:{});", names.join("|")),
        "action": "drop",
    }));
    rules.push(json!({"regex": MARK, "action": "labeldrop"}));
    rules
}

/// `--storage.tsdb.retention.size`: a share of the volume, in MiB, so the TSDB never fills it.
pub fn retention_size(volume_bytes: u64) -> String {
    let mib = (volume_bytes as f64 * defaults::RETENTION_SIZE_SHARE / 1048576.0).floor() as u64;
    format!("{mib}MB")
}

/// Namespaces Prometheus discovers endpoints or pods in (its RBAC Roles follow this list).
pub fn scraped_namespaces(spec: &Spec) -> Vec<String> {
    let mut names: BTreeSet<String> =
        BTreeSet::from([spec.namespace.clone(), "default".to_string()]);
    if spec.cluster.scrapes_control_plane() {
        names.insert("kube-system".into());
    }
    names.extend(spec.services.iter().map(|s| s.namespace.clone()));
    names.extend(team_namespaces(spec).into_iter().map(str::to_string));
    names.into_iter().collect()
}

fn config_context(spec: &Spec, reads: &keep::Reads) -> Value {
    let read = metric_relabelling(reads, &spec.prometheus.keep_metrics);
    let mut cadvisor_read = read.clone();
    if !reads.containerless_cgroups {
        // The cgroups above the containers (a pod's, the node's slices): nothing reads them.
        cadvisor_read.push(json!({
            "source_labels": ["__name__", "container"],
            "regex": "container_.*;",
            "action": "drop",
        }));
    }
    let kubelet_jobs = json!([
        {"job": "kubelet", "path": "/metrics", "metric_relabel": read},
        {"job": "cadvisor", "path": "/metrics/cadvisor", "metric_relabel": cadvisor_read},
    ]);
    let control_plane_jobs = json!([
        {"job": "kube-scheduler", "scheme": "https", "tls": true, "selector": "component=kube-scheduler", "address": "$1:10259", "metric_relabel": read},
        {"job": "kube-controller-manager", "scheme": "https", "tls": true, "selector": "component=kube-controller-manager", "address": "$1:10257", "metric_relabel": read},
        {"job": "etcd", "scheme": "http", "tls": false, "selector": "component=etcd", "address": "$1:2381", "metric_relabel": read},
    ]);
    let mut stack_jobs = vec![
        json!({"job": "prometheus", "keep": "prometheus;web", "instance_is_node": false, "exporter": false, "metric_relabel": []}),
        json!({"job": "alertmanager", "keep": "alertmanager;web", "instance_is_node": false, "exporter": false, "metric_relabel": []}),
        json!({"job": "grafana", "keep": "grafana;http", "instance_is_node": false, "exporter": false, "metric_relabel": []}),
    ];
    if spec.router.remote.is_none() {
        stack_jobs.push(json!({"job": "stackgen-router", "keep": "stackgen-router;http", "instance_is_node": false, "exporter": false, "metric_relabel": []}));
    }
    if spec.exporters.node_exporter {
        stack_jobs.push(json!({"job": "node-exporter", "keep": "node-exporter;metrics", "instance_is_node": true, "exporter": false, "metric_relabel": read}));
    }
    if spec.exporters.kube_state_metrics {
        stack_jobs.push(json!({"job": "kube-state-metrics", "keep": "kube-state-metrics;http-metrics", "instance_is_node": false, "exporter": true, "metric_relabel": read}));
    }
    json!({
        "cluster": spec.cluster.name,
        "platform": spec.cluster.platform.name(),
        "namespace": spec.namespace,
        "scrape_interval": spec.prometheus.scrape_interval,
        "evaluation_interval": spec.prometheus.evaluation_interval,
        "kubelet_jobs": kubelet_jobs,
        "control_plane": spec.cluster.scrapes_control_plane(),
        "control_plane_jobs": control_plane_jobs,
        "stack_jobs": stack_jobs,
        "metric_relabel": read,
        "services": service_jobs(&spec.services),
        "labelled_pods": labelled_pods_job(spec),
        "remote_write": super::scale_out::remote_write_section(spec),
        "extra_jobs": super::probes::scrape_configs(spec),
    })
}

/// The namespaces teams own (`teams[].namespaces`), sorted, each once.
fn team_namespaces(spec: &Spec) -> BTreeSet<&str> {
    spec.teams
        .iter()
        .flat_map(|team| team.namespaces.iter().map(String::as_str))
        .collect()
}

/// The job scraping the pods that ask to be (`stackgen.io/scrape: "true"`) in the namespaces
/// teams own, each attributed to the service its `ownership.service_label` names and to its
/// namespace's team, whatever it says itself; pods of declared services are left to their jobs.
/// `None` when no team owns a namespace.
fn labelled_pods_job(spec: &Spec) -> Option<Value> {
    let namespaces = team_namespaces(spec);
    if namespaces.is_empty() {
        return None;
    }
    let meta = |key: &str| format!("__meta_kubernetes_pod_label_{}", sd_label_name(key));
    let alternatives = |values: &[&str]| crate::rules::promql::alternatives(values);
    let owners: Vec<Value> = spec
        .teams
        .iter()
        .filter(|team| !team.namespaces.is_empty())
        .map(|team| {
            let names: Vec<&str> = team.namespaces.iter().map(String::as_str).collect();
            json!({"team": team.name, "regex": alternatives(&names)})
        })
        .collect();
    let declared: Vec<Value> = spec
        .services
        .iter()
        .filter(|service| namespaces.contains(service.namespace.as_str()))
        .map(|service| {
            let labels: Vec<String> = std::iter::once("__meta_kubernetes_namespace".to_string())
                .chain(service.selector.keys().map(|key| meta(key)))
                .collect();
            let regex = std::iter::once(service.namespace.as_str())
                .chain(service.selector.values().map(String::as_str))
                .map(|value| alternatives(&[value]))
                .collect::<Vec<_>>()
                .join(";");
            let named = format!(
                "{};{}",
                alternatives(&[&service.namespace]),
                alternatives(&[&service.name])
            );
            json!({"service": service.name, "labels": labels, "regex": regex, "named": named})
        })
        .collect();
    let listed: Vec<&str> = namespaces.iter().copied().collect();
    Some(json!({
        "job": LABELLED_PODS_JOB,
        "namespaces": listed,
        "namespace_regex": alternatives(&listed),
        "selector": format!("{SCRAPE_POD_LABEL}=true"),
        "scrape_label": meta(SCRAPE_POD_LABEL),
        "port_label": meta(SCRAPE_PORT_POD_LABEL),
        "service_label": meta(&spec.ownership.service_label),
        "owners": owners,
        "declared": declared,
    }))
}

fn selector_keys(service: &Service) -> BTreeSet<&str> {
    service.selector.keys().map(String::as_str).collect()
}

/// The scrape jobs of the services, in declaration order.
fn service_jobs(services: &[Service]) -> Vec<Value> {
    let mut groups = KeySetGroups::default();
    for (position, service) in services.iter().enumerate() {
        groups.add(&service.namespace, selector_keys(service), position);
    }
    services
        .iter()
        .enumerate()
        .map(|(position, service)| {
            let earlier: Vec<&Service> = groups
                .disjoint_before(&service.namespace, &selector_keys(service), position)
                .into_iter()
                .map(|earlier| &services[earlier])
                .collect();
            service_job(service, &earlier)
        })
        .collect()
}

/// The scrape job of `service`. A pod that a service declared before it in the same namespace
/// also selects (by other labels) is that service's, as in the ownership rules: dropped here.
fn service_job(service: &Service, claimed_earlier: &[&Service]) -> Value {
    let claimed_earlier: Vec<Value> = claimed_earlier
        .iter()
        .map(|other| {
            let labels: Vec<String> = other
                .selector
                .keys()
                .map(|key| format!("__meta_kubernetes_pod_label_{}", sd_label_name(key)))
                .collect();
            let values: Vec<&str> = other.selector.values().map(String::as_str).collect();
            let regex = values
                .iter()
                .map(|value| crate::rules::promql::alternatives(&[value]))
                .collect::<Vec<_>>()
                .join(";");
            json!({"service": other.name, "labels": labels, "regex": regex})
        })
        .collect();
    let (port_meta_label, port) = match &service.port {
        Port::Number(n) => ("__meta_kubernetes_pod_container_port_number", n.to_string()),
        Port::Name(name) => ("__meta_kubernetes_pod_container_port_name", name.clone()),
    };
    let label_selector = service
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "job": service_job_name(service),
        "name": service.name,
        "team": service.team,
        "namespace": service.namespace,
        "path": service.path,
        "label_selector": label_selector,
        "port_meta_label": port_meta_label,
        "port": port,
        "claimed_earlier": claimed_earlier,
    })
}

/// The job scraping the pods that ask to be scraped in teams' namespaces.
pub(super) const LABELLED_PODS_JOB: &str = "labelled-pods";

/// The job of a declared service: `NAMESPACE/NAME`.
pub(super) fn service_job_name(service: &Service) -> String {
    format!("{}/{}", service.namespace, service.name)
}

/// A Kubernetes label key as Prometheus' Kubernetes discovery names it in `__meta_*` labels.
fn sd_label_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_an_earlier_service_also_selects_is_not_scraped_again() {
        let spec = crate::spec::parse(
            "s.yaml",
            "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nservices:\n  - {name: web, team: t, namespace: shop, selector: {app.kubernetes.io/name: web}, port: 80}\n  - {name: cart, team: t, namespace: shop, selector: {app.kubernetes.io/name: cart}, port: 80}\n  - {name: audit, team: t, namespace: shop, selector: {component: audit}, port: 80}\n  - {name: other, team: t, namespace: ops, selector: {component: audit}, port: 80}\n",
        )
        .expect("valid");
        let jobs = service_jobs(&spec.services);
        let claimed = |job: &Value| -> Vec<String> {
            job["claimed_earlier"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {} {}", c["service"], c["labels"], c["regex"]))
                .collect()
        };
        assert!(claimed(&jobs[0]).is_empty());
        // cart selects app.kubernetes.io/name=cart: never a pod of web.
        assert!(claimed(&jobs[1]).is_empty());
        assert_eq!(
            claimed(&jobs[2]),
            [
                r#""web" ["__meta_kubernetes_pod_label_app_kubernetes_io_name"] "web""#,
                r#""cart" ["__meta_kubernetes_pod_label_app_kubernetes_io_name"] "cart""#
            ]
        );
        // Another namespace: nothing to share.
        assert!(claimed(&jobs[3]).is_empty());
    }

    #[test]
    fn pods_asking_to_be_scraped_are_looked_for_only_in_the_teams_namespaces() {
        let spec = crate::spec::parse(
            "s.yaml",
            "cluster: {name: a}\nrouter: {platform_team: t}\nownership: {service_label: app}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}, namespaces: [shop, cart]}\n  - {name: u, webhook: {url: {secret: s, key: k}}, namespaces: [search]}\n  - {name: v, webhook: {url: {secret: s, key: k}}}\nservices:\n  - {name: web, team: t, namespace: shop, selector: {tier: web}, port: 80}\n  - {name: ops, team: v, namespace: ops, port: 80}\n",
        )
        .expect("valid");
        let job = labelled_pods_job(&spec).expect("a job");
        assert_eq!(job["namespaces"], json!(["cart", "search", "shop"]));
        assert_eq!(job["service_label"], "__meta_kubernetes_pod_label_app");
        assert_eq!(
            job["owners"],
            json!([{"team": "t", "regex": "shop|cart"}, {"team": "u", "regex": "search"}])
        );
        let declared = job["declared"].as_array().expect("declared");
        assert_eq!(declared.len(), 1, "ops is in no team's namespace");
        assert_eq!(declared[0]["regex"], "shop;web");
        assert_eq!(declared[0]["named"], "shop;web");
        assert!(scraped_namespaces(&spec).contains(&"search".to_string()));

        let none = crate::spec::parse("s.yaml", "cluster: {name: a}\n").expect("valid");
        assert_eq!(labelled_pods_job(&none), None);
    }

    #[test]
    fn retention_size_is_80_percent_of_the_volume() {
        assert_eq!(retention_size(50 * 1024 * 1024 * 1024), "40960MB");
        assert_eq!(retention_size(10 * 1024 * 1024 * 1024), "8192MB");
    }
}
