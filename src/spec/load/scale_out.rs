//! Reading `prometheus.remote_write`, `prometheus.thanos` and how Prometheus and Alertmanager
//! are reached from outside (`external_url`, `ingress`).
//!
//! Relabelling rules and queue settings are Prometheus configuration written as Prometheus
//! writes it; they are checked here (actions, regexes, label names, numbers, durations) so a
//! mistake is an error at its line, not a Prometheus that refuses to reload.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::Node;
use serde_json::{Value, json};

use super::{SECRET_REF_KEYS, defaults};
use crate::config_check::values;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::did_you_mean;
use crate::spec::scale_out::{
    Consumer, External, RemoteWrite, RemoteWriteAuth, SeriesKind, Thanos, Tls,
};

const REMOTE_WRITE_KEYS: &[&str] = &[
    "name",
    "url",
    "basic_auth",
    "bearer_token",
    "oauth2",
    "tls",
    "headers",
    "queue",
    "series",
    "write_relabel",
];
const BASIC_AUTH_KEYS: &[&str] = &["username", "password"];
const OAUTH2_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "token_url",
    "scopes",
    "endpoint_params",
];
const TLS_KEYS: &[&str] = &["ca", "cert", "key", "server_name", "insecure_skip_verify"];
/// `queue_config` fields: whole numbers, then durations.
const QUEUE_NUMBERS: &[&str] = &[
    "capacity",
    "max_shards",
    "min_shards",
    "max_samples_per_send",
];
const QUEUE_DURATIONS: &[&str] = &["batch_send_deadline", "min_backoff", "max_backoff"];
const RELABEL_KEYS: &[&str] = &[
    "source_labels",
    "separator",
    "regex",
    "modulus",
    "target_label",
    "replacement",
    "action",
];
const RELABEL_ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];
const CONSUMER_KEYS: &[&str] = &["namespace", "pod_labels", "cidr"];
const THANOS_KEYS: &[&str] = &["object_storage", "query_url", "image"];
/// Headers Prometheus sets itself and refuses in `headers`.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

impl Checker {
    /// `prometheus.remote_write`: every target, names unique.
    pub(in crate::spec) fn remote_writes(&mut self, obj: &Obj) -> Vec<RemoteWrite> {
        let field = obj.path("remote_write");
        let mut targets: Vec<RemoteWrite> = Vec::new();
        let mut names = BTreeSet::new();
        for (index, node) in self.list(obj, "remote_write").into_iter().enumerate() {
            let item = format!("{field}[{index}]");
            let Some(target) = self.object(node, &item, REMOTE_WRITE_KEYS) else {
                continue;
            };
            let Some(written) = self.remote_write(&target) else {
                continue;
            };
            if names.insert(written.name.clone()) {
                targets.push(written);
            } else {
                let span = target.get("name").map_or(*target.span(), |n| *n.span());
                self.error(
                    &span,
                    &target.path("name"),
                    format!("a second remote_write named `{}`", written.name),
                    Some("give each target its own `name` (it names the target's queue in Prometheus' own metrics)".into()),
                );
            }
        }
        targets
    }

    fn remote_write(&mut self, target: &Obj) -> Option<RemoteWrite> {
        let url = self
            .required(
                target,
                "url",
                "add `url: https://...`, the store's remote-write endpoint (Mimir: /api/v1/push, Thanos Receive: /api/v1/receive, VictoriaMetrics: /api/v1/write)",
            )
            .and_then(|n| {
                self.checked_string(n, &target.path("url"), "URL", values::check_http_url)
            });
        let name = match target.get("name") {
            Some(node) => {
                self.checked_string(node, &target.path("name"), "name", values::check_dns_label)
            }
            None => url.as_deref().and_then(|u| {
                reqwest::Url::parse(u)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
            }),
        };
        let auth = self.remote_write_auth(target);
        let tls = self
            .sub_object(target, "tls", TLS_KEYS)
            .map(|t| self.tls(&t));
        let headers = self.headers(target);
        let queue = self.queue(target);
        let series = self.series_kinds(target);
        let write_relabel = self.relabel_configs(target, "write_relabel");
        Some(RemoteWrite {
            name: name?,
            url: url?,
            auth: auth.ok()?,
            tls,
            headers,
            queue,
            series,
            write_relabel: write_relabel?,
        })
    }

    /// At most one of `basic_auth`, `bearer_token` and `oauth2`; `Err` when one is wrong.
    fn remote_write_auth(&mut self, target: &Obj) -> Result<Option<RemoteWriteAuth>, ()> {
        let given: Vec<&str> = ["basic_auth", "bearer_token", "oauth2"]
            .into_iter()
            .filter(|key| target.get(key).is_some())
            .collect();
        if given.len() > 1 {
            let span = target.get(given[1]).map_or(*target.span(), |n| *n.span());
            self.error(
                &span,
                &target.path(given[1]),
                format!("`{}` and `{}` given together", given[0], given[1]),
                Some("a remote_write signs in one way: keep one of basic_auth, bearer_token and oauth2".into()),
            );
            return Err(());
        }
        if let Some(obj) = self.sub_object(target, "basic_auth", BASIC_AUTH_KEYS) {
            let username = self
                .required(
                    &obj,
                    "username",
                    "add `username:` (the store's user or tenant)",
                )
                .and_then(|n| {
                    self.checked_string(n, &obj.path("username"), "user name", check_username)
                });
            let password = self
                .required(&obj, "password", "add `password: {secret: NAME, key: KEY}`")
                .and_then(|n| self.secret_ref(n, &obj.path("password")));
            return match (username, password) {
                (Some(username), Some(password)) => {
                    Ok(Some(RemoteWriteAuth::Basic { username, password }))
                }
                _ => Err(()),
            };
        }
        if let Some(node) = target.get("bearer_token") {
            return self
                .secret_ref(node, &target.path("bearer_token"))
                .map(|token| Some(RemoteWriteAuth::Bearer { token }))
                .ok_or(());
        }
        let Some(obj) = self.sub_object(target, "oauth2", OAUTH2_KEYS) else {
            return Ok(None);
        };
        let client_id = self.required_string(&obj, "client_id").map(|(id, _)| id);
        let client_secret = self
            .required(
                &obj,
                "client_secret",
                "add `client_secret: {secret: NAME, key: KEY}`",
            )
            .and_then(|n| self.secret_ref(n, &obj.path("client_secret")));
        let token_url = self
            .required(
                &obj,
                "token_url",
                "add `token_url: https://...`, the token endpoint",
            )
            .and_then(|n| {
                self.checked_string(n, &obj.path("token_url"), "URL", values::check_http_url)
            });
        let scopes: Vec<String> = self
            .list(&obj, "scopes")
            .into_iter()
            .filter_map(|n| self.string(n, &obj.path("scopes")).map(|(s, _)| s))
            .collect();
        let endpoint_params = self.string_map(&obj, "endpoint_params");
        match (client_id, client_secret, token_url) {
            (Some(client_id), Some(client_secret), Some(token_url)) => {
                Ok(Some(RemoteWriteAuth::OAuth2 {
                    client_id,
                    client_secret,
                    token_url,
                    scopes,
                    endpoint_params,
                }))
            }
            _ => Err(()),
        }
    }

    fn tls(&mut self, obj: &Obj) -> Tls {
        let reference = |checker: &mut Checker, key: &str| {
            obj.get(key)
                .and_then(|n| checker.secret_ref(n, &obj.path(key)))
        };
        let ca = reference(self, "ca");
        let cert = reference(self, "cert");
        let key = reference(self, "key");
        if cert.is_some() != key.is_some() {
            let missing = if cert.is_some() { "key" } else { "cert" };
            self.error(
                obj.span(),
                &obj.path(missing),
                format!("a client certificate needs both `cert` and `key`; `{missing}` is missing"),
                Some(format!("add `{missing}: {{secret: NAME, key: KEY}}`")),
            );
        }
        Tls {
            ca,
            cert,
            key,
            server_name: self.optional_checked(
                obj,
                "server_name",
                "server name",
                values::check_host,
            ),
            insecure_skip_verify: self.bool(Some(obj), "insecure_skip_verify", false),
        }
    }

    fn headers(&mut self, target: &Obj) -> BTreeMap<String, String> {
        let headers = self.string_map(target, "headers");
        let Some(map) = target.get("headers").and_then(Node::as_mapping) else {
            return headers;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            if value
                .as_scalar()
                .is_some_and(|v| v.as_str().chars().any(char::is_control))
            {
                self.error(
                    value.span(),
                    &target.path(&format!("headers.{name}")),
                    format!("the value of header `{name}` holds a control character"),
                    Some("a header value is one line of printable text".into()),
                );
            }
            let token_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
            if !token_ok {
                self.error(
                    key.span(),
                    &target.path(&format!("headers.{name}")),
                    format!("`{name}` is no HTTP header name"),
                    Some("a header name is letters, digits and '-' (X-Scope-OrgID)".into()),
                );
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.error(
                    key.span(),
                    &target.path(&format!("headers.{name}")),
                    format!("Prometheus sets `{name}` itself"),
                    Some(
                        "sign in with basic_auth, bearer_token or oauth2 instead of a header"
                            .into(),
                    ),
                );
            }
        }
        headers
    }

    /// A mapping of strings to strings under `key` (absent: empty).
    pub(in crate::spec) fn string_map(&mut self, obj: &Obj, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(node) = obj.get(key) else {
            return out;
        };
        let field = obj.path(key);
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                &field,
                format!("`{field}` must be a mapping"),
                Some("write `NAME: VALUE` per line".into()),
            );
            return out;
        };
        for (name, value) in map.iter() {
            if let Some((text, _)) = self.string(value, &format!("{field}.{}", name.as_str())) {
                out.insert(name.as_str().to_string(), text);
            }
        }
        out
    }

    fn queue(&mut self, target: &Obj) -> BTreeMap<String, Value> {
        let keys: Vec<&str> = QUEUE_NUMBERS
            .iter()
            .chain(QUEUE_DURATIONS)
            .copied()
            .collect();
        let mut queue = BTreeMap::new();
        let Some(obj) = self.sub_object(target, "queue", &keys) else {
            return queue;
        };
        for key in QUEUE_NUMBERS {
            if obj.get(key).is_some() {
                let n = self.uint(Some(&obj), key, 1, 10_000_000, 1);
                queue.insert((*key).to_string(), json!(n));
            }
        }
        for key in QUEUE_DURATIONS {
            if let Some(d) = self.optional_checked(&obj, key, "duration", values::check_duration) {
                queue.insert((*key).to_string(), json!(d));
            }
        }
        if let (Some(min), Some(max)) = (queue.get("min_shards"), queue.get("max_shards"))
            && min.as_u64() > max.as_u64()
        {
            let span = obj.get("min_shards").map_or(*obj.span(), |n| *n.span());
            self.error(
                &span,
                &obj.path("min_shards"),
                "min_shards is above max_shards".into(),
                Some("lower min_shards or raise max_shards".into()),
            );
        }
        queue
    }

    fn series_kinds(&mut self, target: &Obj) -> Vec<SeriesKind> {
        let names: Vec<&str> = SeriesKind::ALL.iter().map(|(n, _)| *n).collect();
        let Some(chosen) = self.names_from(target, "series", "kind of series", &names) else {
            return Vec::new();
        };
        SeriesKind::ALL
            .iter()
            .filter(|(name, _)| chosen.contains(name))
            .map(|(_, kind)| *kind)
            .collect()
    }

    /// Prometheus relabelling rules under `key`, each checked; `None` when any is wrong.
    pub(in crate::spec) fn relabel_configs(&mut self, obj: &Obj, key: &str) -> Option<Vec<Value>> {
        let field = obj.path(key);
        let mut rules = Vec::new();
        let mut ok = true;
        for (index, node) in self.list(obj, key).into_iter().enumerate() {
            let item = format!("{field}[{index}]");
            match self.relabel_config(node, &item) {
                Some(rule) => rules.push(rule),
                None => ok = false,
            }
        }
        ok.then_some(rules)
    }

    fn relabel_config(&mut self, node: &Node, field: &str) -> Option<Value> {
        let rule = self.object(node, field, RELABEL_KEYS)?;
        let before = self.diagnostics.len();
        let mut out = serde_json::Map::new();
        let action = match rule.get("action") {
            Some(n) => {
                let (action, _) = self.string(n, &rule.path("action"))?;
                if !RELABEL_ACTIONS.contains(&action.as_str()) {
                    let hint = match did_you_mean(&action, RELABEL_ACTIONS.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("actions: {}", RELABEL_ACTIONS.join(", ")),
                    };
                    self.error(
                        n.span(),
                        &rule.path("action"),
                        format!("unknown relabel action `{action}`"),
                        Some(hint),
                    );
                }
                action
            }
            None => "replace".to_string(),
        };
        out.insert("action".into(), json!(action));
        let mut source_labels = Vec::new();
        for n in self.list(&rule, "source_labels") {
            if let Some(label) = self.checked_string(
                n,
                &rule.path("source_labels"),
                "label name",
                values::check_prometheus_label,
            ) {
                source_labels.push(label);
            }
        }
        if !source_labels.is_empty() {
            out.insert("source_labels".into(), json!(source_labels));
        }
        if let Some(regex) = rule.get("regex")
            && let Some((text, _)) = self.string(regex, &rule.path("regex"))
        {
            if regex::Regex::new(&format!("^(?:{text})$")).is_err() {
                self.error(
                    regex.span(),
                    &rule.path("regex"),
                    format!("`{text}` is not a regex"),
                    Some("Prometheus reads RE2 syntax, anchored at both ends".into()),
                );
            }
            out.insert("regex".into(), json!(text));
        }
        for key in ["separator", "replacement"] {
            if let Some(n) = rule.get(key)
                && let Some((text, _)) = self.string(n, &rule.path(key))
            {
                out.insert(key.into(), json!(text));
            }
        }
        if let Some(n) = rule.get("target_label")
            && let Some((text, _)) = self.string(n, &rule.path("target_label"))
        {
            // `replace` may write `${1}`-style names; the others take a plain label name.
            if !text.contains('$')
                && let Err(hint) = values::check_prometheus_label(&text)
            {
                self.error(
                    n.span(),
                    &rule.path("target_label"),
                    format!("invalid label name `{text}`"),
                    Some(hint),
                );
            }
            out.insert("target_label".into(), json!(text));
        }
        if rule.get("modulus").is_some() {
            let m = self.uint(Some(&rule), "modulus", 1, u64::from(u32::MAX), 1);
            out.insert("modulus".into(), json!(m));
        }
        let needs = |key: &str| -> bool {
            match action.as_str() {
                "replace" | "hashmod" | "lowercase" | "uppercase" => key == "target_label",
                "keepequal" | "dropequal" => key == "target_label",
                _ => false,
            }
        };
        for key in ["target_label", "modulus"] {
            let wanted = needs(key) || (key == "modulus" && action == "hashmod");
            if wanted && !out.contains_key(key) {
                self.error(
                    rule.span(),
                    &rule.path(key),
                    format!("a `{action}` rule needs `{key}`"),
                    Some(format!("add `{key}:`")),
                );
            }
        }
        (self.diagnostics.len() == before).then_some(Value::Object(out))
    }

    /// `prometheus.thanos`.
    pub(in crate::spec) fn thanos(&mut self, obj: &Obj) -> Option<Thanos> {
        let thanos = self.sub_object(obj, "thanos", THANOS_KEYS)?;
        let object_storage = thanos
            .get("object_storage")
            .and_then(|n| self.secret_ref_in(n, &thanos.path("object_storage"), SECRET_REF_KEYS));
        Some(Thanos {
            object_storage,
            query_url: self.optional_checked(&thanos, "query_url", "URL", values::check_http_url),
            image: self.checked_or_default(
                Some(&thanos),
                "image",
                "image",
                values::check_pinned_image,
                defaults::THANOS_IMAGE,
            ),
        })
    }

    /// `prometheus.consumers`: who besides the stack may query Prometheus.
    pub(in crate::spec) fn consumers(&mut self, obj: &Obj) -> Vec<Consumer> {
        let field = obj.path("consumers");
        let mut consumers = Vec::new();
        for (index, node) in self.list(obj, "consumers").into_iter().enumerate() {
            let item = format!("{field}[{index}]");
            let Some(consumer) = self.object(node, &item, CONSUMER_KEYS) else {
                continue;
            };
            if let Some(cidr) = consumer.get("cidr") {
                if consumer.get("namespace").is_some() || consumer.get("pod_labels").is_some() {
                    self.error(
                        cidr.span(),
                        &consumer.path("cidr"),
                        "a consumer is pods of a namespace or a CIDR, not both".into(),
                        Some("write the CIDR as a consumer of its own".into()),
                    );
                    continue;
                }
                if let Some(cidr) =
                    self.checked_string(cidr, &consumer.path("cidr"), "CIDR", check_cidr)
                {
                    consumers.push(Consumer::Cidr(cidr));
                }
                continue;
            }
            let namespace = self
                .required(
                    &consumer,
                    "namespace",
                    "name the consumer's namespace (`namespace: keda`), or give `cidr:`",
                )
                .and_then(|n| {
                    self.checked_string(
                        n,
                        &consumer.path("namespace"),
                        "namespace name",
                        values::check_dns_label,
                    )
                });
            let pod_labels = self.string_map(&consumer, "pod_labels");
            for (key, value) in &pod_labels {
                if values::check_label_key(key).is_err()
                    || values::check_label_value(value).is_err()
                {
                    let span = consumer
                        .get("pod_labels")
                        .map_or(*consumer.span(), |n| *n.span());
                    self.error(
                        &span,
                        &consumer.path("pod_labels"),
                        format!("`{key}: {value}` is no pod label"),
                        Some("a pod label is a label key and a label value, as on the pods".into()),
                    );
                }
            }
            if let Some(namespace) = namespace {
                consumers.push(Consumer::Pods {
                    namespace,
                    pod_labels,
                });
            }
        }
        consumers
    }

    /// `external_url` and `ingress` of a component's section (`example`: a host for hints).
    pub(in crate::spec) fn external(&mut self, obj: Option<&Obj>, example: &str) -> External {
        let Some(obj) = obj else {
            return External::default();
        };
        External {
            url: self.optional_checked(obj, "external_url", "URL", values::check_http_url),
            ingress: self.ingress(obj, example),
        }
    }
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`).
fn check_cidr(text: &str) -> Result<(), String> {
    let hint = || "write a network such as 10.20.0.0/16 or fd00::/8".to_string();
    let (address, bits) = text.split_once('/').ok_or_else(hint)?;
    let address: std::net::IpAddr = address.parse().map_err(|_| hint())?;
    let bits: u8 = bits.parse().map_err(|_| hint())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(hint());
    }
    Ok(())
}

/// A basic-auth user name: printable, without the `:` that ends it on the wire.
fn check_username(text: &str) -> Result<(), String> {
    if text.is_empty() || text.contains(':') || text.chars().any(char::is_control) {
        Err("a user name is printable text without ':'".into())
    } else {
        Ok(())
    }
}
