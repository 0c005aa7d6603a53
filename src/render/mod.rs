//! Rendering: a validated [`Spec`] in, the whole stack out as an ordered map of path to contents.
//!
//! Pure: no file or network access, no clock. One builder per component adds its files; every
//! rendered document is parsed back before it is accepted, so a template bug fails here and not in
//! the cluster. [`output`] is the only place that writes the result anywhere.

mod alertmanager;
pub mod direct_path;
mod exporters;
mod grafana;
pub mod k8s_sd;
pub mod keep;
mod kustomize;
pub mod output;
pub mod ownership;
mod probes;
mod prometheus;
mod router;
pub mod rules;
mod scale_out;
pub mod service_metrics;
pub mod slos;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::spec::{Resources, SecretRef, Spec};
use crate::yaml;

/// The rendered stack: every output file by relative path, plus what the kustomization lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStack {
    namespace: String,
    files: BTreeMap<String, String>,
    /// Manifest files in apply order (namespace first).
    resources: Vec<String>,
    /// ConfigMaps built from plain config files by kustomize's `configMapGenerator`.
    config_maps: Vec<GeneratedConfigMap>,
    /// Every image a pod runs (mirrored and pinned as the spec says), with its upstream name.
    images: BTreeMap<String, String>,
}

/// A ConfigMap assembled from files of the output (key = file name inside the ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedConfigMap {
    pub name: String,
    pub component: String,
    pub files: Vec<(String, String)>,
}

impl RenderedStack {
    /// Every output file, by path relative to the output directory.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Every container image the stack runs, as its pods pull it, with the image it is
    /// published as upstream (the same unless `images:` mirrors or pins it).
    pub fn images_with_upstream(&self) -> &BTreeMap<String, String> {
        &self.images
    }

    /// The whole stack as one multi-document YAML stream: the manifests in apply order, then the
    /// ConfigMaps that the kustomization would generate, built from the same files.
    pub fn stream(&self) -> String {
        let namespace = &self.namespace;
        let mut docs: Vec<String> = Vec::new();
        for path in &self.resources {
            let text = self.files.get(path).map(String::as_str).unwrap_or_default();
            docs.extend(split_documents(text));
        }
        for config_map in &self.config_maps {
            let data: serde_json::Map<String, Value> = config_map
                .files
                .iter()
                .map(|(key, path)| {
                    let text = self.files.get(path).cloned().unwrap_or_default();
                    (key.clone(), Value::String(text))
                })
                .collect();
            let doc = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": config_map.name,
                    "namespace": namespace,
                    "labels": labels(&config_map.component),
                },
                "data": data,
            });
            docs.push(yaml::document(&doc));
        }
        docs.iter()
            .map(|d| format!("---\n{}", d.trim_start_matches("---\n")))
            .collect()
    }
}

/// Splits a multi-document YAML file at its `---` lines, dropping empty documents.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Why rendering failed. Each is a bug in stackgen or its templates, never in the user's spec
/// (which was validated before), except an invalid team rule file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("rendering {0}")]
    Template(String),
    #[error("rendered {path} is not valid YAML: {message}")]
    InvalidYaml { path: String, message: String },
    #[error("rendered {path} is not valid JSON: {message}")]
    InvalidJson { path: String, message: String },
    #[error("rendered prometheus.yml has an invalid kubernetes_sd_configs block: {0}")]
    ServiceDiscovery(String),
    #[error("{0}")]
    RuleFile(String),
}

/// Renders the whole stack for `spec`.
pub fn render(spec: &Spec) -> Result<RenderedStack, RenderError> {
    let mut stack = Builder::new(spec);
    stack.template(
        "namespace.yaml",
        "namespace.yaml",
        &json!({
            "namespace": spec.namespace,
            "labels": labels("namespace"),
        }),
    )?;
    prometheus::build(&mut stack)?;
    alertmanager::build(&mut stack)?;
    grafana::build(&mut stack)?;
    exporters::build(&mut stack)?;
    probes::build(&mut stack)?;
    if spec.router.remote.is_none() {
        router::build(&mut stack)?;
    }
    let (mut rendered, already_parsed) = stack.finish();
    let kustomization = kustomize::kustomization(&rendered);
    rendered
        .files
        .insert("kustomization.yaml".into(), kustomization);
    check_parses(&rendered, &already_parsed)?;
    Ok(rendered)
}

/// Accumulates the files of the stack while the component builders run.
struct Builder<'a> {
    spec: &'a Spec,
    stack: RenderedStack,
    /// Files already parsed back by their builder (the final check skips them).
    parsed: BTreeSet<String>,
}

impl<'a> Builder<'a> {
    fn new(spec: &'a Spec) -> Self {
        Builder {
            spec,
            parsed: BTreeSet::new(),
            stack: RenderedStack {
                namespace: spec.namespace.clone(),
                files: BTreeMap::new(),
                resources: Vec::new(),
                config_maps: Vec::new(),
                images: BTreeMap::new(),
            },
        }
    }

    /// Renders a manifest template into `path` and lists it as a kustomize resource.
    fn template(&mut self, path: &str, name: &str, context: &Value) -> Result<(), RenderError> {
        let text = template::render(name, context).map_err(RenderError::Template)?;
        self.manifest(path, text);
        Ok(())
    }

    /// An Ingress at `path` sending `paths` of the host to the Service `name`'s `port`.
    fn ingress(
        &mut self,
        path: &str,
        name: &str,
        port: &str,
        paths: &[&str],
        ingress: &crate::spec::Ingress,
    ) -> Result<(), RenderError> {
        self.template(
            path,
            "common/ingress.yaml",
            &serde_json::json!({
                "name": name,
                "service": name,
                "paths": paths,
                "port": port,
                "annotations": ingress.annotations,
                "namespace": self.stack.namespace,
                "labels": labels(name),
                "host": ingress.host,
                "class_name": ingress.class_name,
                "tls_secret": ingress.tls_secret,
            }),
        )
    }

    /// Adds a manifest (a file kustomize applies), appending to the file if it exists already.
    fn manifest(&mut self, path: &str, text: String) {
        match self.stack.files.get_mut(path) {
            Some(existing) => {
                existing.push_str("---\n");
                existing.push_str(&text);
            }
            None => {
                self.stack.files.insert(path.to_string(), text);
                self.stack.resources.push(path.to_string());
            }
        }
    }

    /// Renders a plain config file (not a manifest) into `path`.
    fn config_template(
        &mut self,
        path: &str,
        name: &str,
        context: &Value,
    ) -> Result<String, RenderError> {
        let text = template::render(name, context).map_err(RenderError::Template)?;
        self.stack.files.insert(path.to_string(), text.clone());
        Ok(text)
    }

    fn config_file(&mut self, path: &str, text: String) {
        self.stack.files.insert(path.to_string(), text);
    }

    /// Declares a ConfigMap generated from files already added.
    fn config_map(&mut self, name: &str, component: &str, files: Vec<(String, String)>) {
        self.stack.config_maps.push(GeneratedConfigMap {
            name: name.to_string(),
            component: component.to_string(),
            files,
        });
    }

    /// The reference a pod pulls for the upstream `image` (the spec's mirror and digest), noted
    /// for `stackgen images`.
    fn image(&mut self, image: &str) -> String {
        let pulled = self.spec.images.resolve(image);
        self.stack.images.insert(pulled.clone(), image.to_string());
        pulled
    }

    /// The pod-spec fields of where a component's pods run: the spec's `placement` over the
    /// component's defaults (its `affinity` parts replace the default parts of the same name;
    /// its tolerations replace the default ones), and the image pull secrets of the stack and
    /// the component. An empty object when nothing is set.
    fn pod_placement(
        &self,
        placement: &crate::spec::placement::Placement,
        defaults: PodDefaults,
    ) -> Value {
        let mut pod = serde_json::Map::new();
        let mut affinity: serde_json::Map<String, Value> = defaults.affinity.into_iter().collect();
        affinity.extend(placement.affinity.clone());
        if !affinity.is_empty() {
            pod.insert("affinity".into(), Value::Object(affinity));
        }
        if !placement.node_selector.is_empty() {
            pod.insert("nodeSelector".into(), json!(placement.node_selector));
        }
        let tolerations = placement
            .tolerations
            .clone()
            .unwrap_or(defaults.tolerations);
        if !tolerations.is_empty() {
            pod.insert("tolerations".into(), Value::Array(tolerations));
        }
        if let Some(class) = placement
            .priority_class_name
            .as_deref()
            .or(defaults.priority_class_name)
        {
            pod.insert("priorityClassName".into(), json!(class));
        }
        let mut pull_secrets: Vec<&String> = self.spec.images.pull_secrets.iter().collect();
        for name in &placement.image_pull_secrets {
            if !pull_secrets.contains(&name) {
                pull_secrets.push(name);
            }
        }
        if !pull_secrets.is_empty() {
            pod.insert(
                "imagePullSecrets".into(),
                pull_secrets
                    .iter()
                    .map(|name| json!({"name": name}))
                    .collect(),
            );
        }
        Value::Object(pod)
    }

    /// The config reloader sidecar of a component whose configuration is mounted from
    /// ConfigMaps (`mounts`: volume name and path): the stackgen binary (the router's image,
    /// already in the stack, so nothing more to mirror) posts `/-/reload` on `port` when a
    /// mounted file changes, so configuration changes reach the process without a restart.
    /// Returned as the one-item list the StatefulSet templates append to their containers.
    fn config_reloader(&mut self, mounts: &[(&str, &str)], port: u16) -> Value {
        let image = self.image(&self.spec.router.image.clone());
        let mut args = vec!["config-reloader".to_string()];
        for (_, path) in mounts {
            args.push(format!("--watch={path}"));
        }
        args.push(format!("--reload-url=http://127.0.0.1:{port}/-/reload"));
        json!([{
            "name": "config-reloader",
            "image": image,
            "args": args,
            "resources": resources(&Resources::from_defaults(&crate::spec::defaults::CONFIG_RELOADER_RESOURCES)),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts.iter().map(|(volume, path)| json!({
                "name": volume,
                "mountPath": path,
                "readOnly": true,
            })).collect::<Vec<_>>(),
        }])
    }

    /// The standard objects around a workload: ServiceAccount, PodDisruptionBudget (replicas > 1)
    /// and a NetworkPolicy with the given ingress rules.
    /// `automount`: whether the pods need a Kubernetes API token (only Prometheus and
    /// kube-state-metrics do).
    fn workload_extras(
        &mut self,
        dir: &str,
        component: &str,
        replicas: u32,
        automount: bool,
        ingress: Value,
        description: &str,
    ) -> Result<(), RenderError> {
        let ns = &self.spec.namespace;
        self.template(
            &format!("{dir}/serviceaccount.yaml"),
            "common/serviceaccount.yaml",
            &json!({
                "name": component,
                "namespace": ns,
                "labels": labels(component),
                "automount": automount,
            }),
        )?;
        if replicas > 1 {
            self.template(
                &format!("{dir}/pdb.yaml"),
                "common/pdb.yaml",
                &json!({
                    "name": component,
                    "namespace": ns,
                    "labels": labels(component),
                    "selector": selector(component),
                }),
            )?;
        }
        self.template(
            &format!("{dir}/networkpolicy.yaml"),
            "common/networkpolicy.yaml",
            &json!({
                "name": component,
                "namespace": ns,
                "labels": labels(component),
                "selector": selector(component),
                "ingress": ingress,
                "description": description,
            }),
        )
    }

    fn service(
        &mut self,
        path: &str,
        name: &str,
        component: &str,
        headless: bool,
        ports: Value,
    ) -> Result<(), RenderError> {
        self.template(
            path,
            "common/service.yaml",
            &json!({
                "name": name,
                "namespace": self.spec.namespace,
                "labels": labels(component),
                "selector": selector(component),
                "headless": headless,
                "ports": ports,
            }),
        )
    }

    /// Parses a rendered YAML file now (for a builder that needs its structure) and records that
    /// it need not be parsed again.
    fn parse_back(&mut self, path: &str, text: &str) -> Result<Vec<yaml_rust2::Yaml>, RenderError> {
        let docs = parse_yaml(path, text)?;
        self.parsed.insert(path.to_string());
        Ok(docs)
    }

    fn finish(self) -> (RenderedStack, BTreeSet<String>) {
        (self.stack, self.parsed)
    }
}

/// What a component's pods get where the spec says nothing of their placement.
#[derive(Default)]
struct PodDefaults {
    affinity: Option<(String, Value)>,
    tolerations: Vec<Value>,
    priority_class_name: Option<&'static str>,
}

impl PodDefaults {
    /// Replicas spread over nodes where they can be (a preference, so a small cluster still
    /// schedules them).
    fn spread(component: &str) -> PodDefaults {
        PodDefaults {
            affinity: Some((
                "podAntiAffinity".into(),
                json!({"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector(component)},
                    },
                }]}),
            )),
            ..PodDefaults::default()
        }
    }
}

/// The labels every object of a component carries.
fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": "stackgen",
        "app.kubernetes.io/part-of": "stackgen",
        "app.kubernetes.io/managed-by": "stackgen",
    })
}

/// The labels a component's pods are selected by (a stable subset of [`labels`]).
fn selector(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": "stackgen",
    })
}

fn resources(resources: &Resources) -> Value {
    json!({ "requests": resources.requests, "limits": resources.limits })
}

/// A NetworkPolicy ingress rule: these ports, from pods of these stack components.
fn allow_from_components(ports: &[(u16, &str)], components: &[&str]) -> Value {
    json!({
        "ports": ports.iter().map(|(port, protocol)| json!({"port": port, "protocol": protocol})).collect::<Vec<_>>(),
        "from": components.iter().map(|c| json!({"podSelector": {"matchLabels": selector(c)}})).collect::<Vec<_>>(),
    })
}

/// Short content hash for the `stackgen.io/config-hash` pod annotation.
fn content_hash<'t>(parts: impl IntoIterator<Item = &'t str>) -> String {
    crate::hash::short_hex(parts, 8)
}

fn parse_yaml(path: &str, text: &str) -> Result<Vec<yaml_rust2::Yaml>, RenderError> {
    yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| RenderError::InvalidYaml {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Parses every rendered YAML and JSON file back, so broken output never leaves the renderer.
fn check_parses(
    stack: &RenderedStack,
    already_parsed: &BTreeSet<String>,
) -> Result<(), RenderError> {
    for (path, text) in &stack.files {
        if already_parsed.contains(path) {
            continue;
        }
        if path.ends_with(".tmpl") {
            // Alertmanager's Go templates, embedded as written; the real Alertmanager checks them.
            continue;
        }
        if path.ends_with(".json") {
            serde_json::from_str::<Value>(text).map_err(|e| RenderError::InvalidJson {
                path: path.clone(),
                message: e.to_string(),
            })?;
        } else {
            check_yaml(path, text)?;
        }
    }
    Ok(())
}

/// Checks that `text` parses as YAML without building its tree (a rendered file can take tens
/// of megabytes; its tree, ten times that).
fn check_yaml(path: &str, text: &str) -> Result<(), RenderError> {
    struct Discard;
    impl yaml_rust2::parser::EventReceiver for Discard {
        fn on_event(&mut self, _event: yaml_rust2::Event) {}
    }
    yaml_rust2::parser::Parser::new_from_str(text)
        .load(&mut Discard, true)
        .map_err(|e| RenderError::InvalidYaml {
            path: path.to_string(),
            message: e.to_string(),
        })
}

/// Projected-volume sources mounting each Secret key as `<secret>/<key>`: one source per Secret,
/// only the keys named, each once.
fn projected_secrets(refs: &[SecretRef]) -> Vec<Value> {
    let mut by_secret: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in refs {
        by_secret.entry(&r.secret).or_default().insert(&r.key);
    }
    by_secret
        .into_iter()
        .map(|(secret, keys)| {
            let items: Vec<Value> = keys
                .into_iter()
                .map(|key| json!({"key": key, "path": format!("{secret}/{key}")}))
                .collect();
            json!({"secret": {"name": secret, "items": items}})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Spec {
        crate::spec::parse("s.yaml", "cluster: {name: prod, platform: digitalocean}\n")
            .expect("valid")
    }

    #[test]
    fn renders_the_same_bytes_twice() {
        let spec = minimal();
        assert_eq!(
            render(&spec).expect("renders"),
            render(&spec).expect("renders")
        );
    }

    #[test]
    fn stream_holds_every_manifest_and_generated_config_map() {
        let stack = render(&minimal()).expect("renders");
        let stream = stack.stream();
        let docs = yaml_rust2::YamlLoader::load_from_str(&stream).expect("valid stream");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds.len(), docs.len(), "every document has a kind");
        assert_eq!(kinds.first(), Some(&"Namespace"));
        for name in [
            "prometheus-config",
            "prometheus-rules",
            "alertmanager-config",
            "grafana-dashboards",
        ] {
            assert!(
                docs.iter().any(|d| d["kind"].as_str() == Some("ConfigMap")
                    && d["metadata"]["name"].as_str() == Some(name)),
                "{name} missing"
            );
        }
    }

    /// Configuration reaches Prometheus and Alertmanager through their reloaders: a change to
    /// prometheus.yml, a rule file or a route leaves their StatefulSets as they were (no pod
    /// rolls), while the image, the arguments and the resources change them.
    #[test]
    fn only_changes_that_need_a_restart_change_the_pod_templates() {
        let spec_text = "cluster: {name: a}\nrouter: {platform_team: web}\nteams:\n  - name: web\n    webhook: {url: {secret: hooks, key: web}}\n    rule_files: [web.yaml]\n";
        let rules = "groups:\n  - name: web\n    rules:\n      - alert: WebDown\n        expr: max by (service) (up) == 0\n        for: 5m\n";
        let spec_with = |text: &str| {
            let mut spec = crate::spec::parse("s.yaml", spec_text).expect("valid");
            spec.teams[0].rule_files[0].contents = Some(text.to_string());
            spec
        };
        let workloads = [
            "prometheus/statefulset.yaml",
            "alertmanager/statefulset.yaml",
        ];
        let base = render(&spec_with(rules)).expect("renders");
        let mut config_changes = vec![spec_with(&rules.replace("for: 5m", "for: 10m"))];
        let mut scrape = spec_with(rules);
        scrape.prometheus.scrape_interval = "15s".into();
        config_changes.push(scrape);
        let mut route = spec_with(rules);
        route.teams[0].routes.push(crate::spec::TeamRoute {
            matchers: vec!["severity=\"critical\"".into()],
            destinations: vec![crate::router::destination::DestinationKind::Webhook],
            continue_matching: false,
        });
        config_changes.push(route);
        for changed in &config_changes {
            let changed = render(changed).expect("renders");
            assert_ne!(
                (
                    &base.files()["prometheus/prometheus.yml"],
                    &base.files()["prometheus/rules/team-web-web.yaml"],
                    &base.files()["router/router.yaml"],
                ),
                (
                    &changed.files()["prometheus/prometheus.yml"],
                    &changed.files()["prometheus/rules/team-web-web.yaml"],
                    &changed.files()["router/router.yaml"],
                ),
                "the change reaches a configuration file"
            );
            for workload in workloads {
                assert_eq!(
                    base.files()[workload],
                    changed.files()[workload],
                    "{workload} must not change with configuration"
                );
            }
        }
        let mut retention = spec_with(rules);
        retention.prometheus.retention = "7d".into();
        let mut resources = spec_with(rules);
        resources
            .alertmanager
            .resources
            .limits
            .insert("memory".into(), "1Gi".into());
        for (changed, workload) in [(retention, workloads[0]), (resources, workloads[1])] {
            let changed = render(&changed).expect("renders");
            assert_ne!(
                base.files()[workload],
                changed.files()[workload],
                "{workload}"
            );
        }
        assert!(
            base.files()[workloads[0]].contains("--reload-url=http://127.0.0.1:9090/-/reload")
                && base.files()[workloads[1]]
                    .contains("--reload-url=http://127.0.0.1:9093/-/reload"),
            "each has its reloader"
        );
    }

    #[test]
    fn split_documents_drops_comment_only_parts() {
        assert_eq!(
            split_documents("# c\n---\na: 1\n---\n"),
            vec!["a: 1\n".to_string()]
        );
    }
}
