//! Reading the scheduling knobs of a component and the `images:` section.
//!
//! Tolerations and affinity are Kubernetes structures written as Kubernetes writes them; they are
//! checked against the shape of their API types here, so a misspelt `topologyKey` or a weight
//! that is no number is an error at its line and column, not at `kubectl apply`.

use std::collections::BTreeMap;

use marked_yaml::Node;
use serde_json::{Value, json};

use crate::config_check::values;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::did_you_mean;
use crate::spec::placement::{Images, Placement};

/// The keys every component's section takes for where its pods run.
pub(super) const PLACEMENT_KEYS: [&str; 5] = [
    "node_selector",
    "tolerations",
    "affinity",
    "priority_class_name",
    "image_pull_secrets",
];
const IMAGES_KEYS: &[&str] = &["registry", "digests", "pull_secrets"];

/// The shape of a Kubernetes value, as far as the spec checks it.
enum Shape {
    Object(&'static [(&'static str, &'static Shape)]),
    List(&'static Shape),
    /// A mapping of strings to strings (`matchLabels`).
    StringMap,
    Text,
    /// One of these words.
    Word(&'static [&'static str]),
    Integer,
}

static TEXT: Shape = Shape::Text;
static TEXTS: Shape = Shape::List(&TEXT);
static REQUIREMENT_OPERATOR: Shape =
    Shape::Word(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]);
static REQUIREMENT: Shape = Shape::Object(&[
    ("key", &TEXT),
    ("operator", &REQUIREMENT_OPERATOR),
    ("values", &TEXTS),
]);
static REQUIREMENTS: Shape = Shape::List(&REQUIREMENT);
static NODE_SELECTOR_TERM: Shape = Shape::Object(&[
    ("matchExpressions", &REQUIREMENTS),
    ("matchFields", &REQUIREMENTS),
]);
static NODE_SELECTOR_TERMS: Shape = Shape::List(&NODE_SELECTOR_TERM);
static NODE_SELECTOR: Shape = Shape::Object(&[("nodeSelectorTerms", &NODE_SELECTOR_TERMS)]);
static WEIGHT: Shape = Shape::Integer;
static PREFERRED_NODE_TERM: Shape =
    Shape::Object(&[("weight", &WEIGHT), ("preference", &NODE_SELECTOR_TERM)]);
static PREFERRED_NODE_TERMS: Shape = Shape::List(&PREFERRED_NODE_TERM);
static NODE_AFFINITY: Shape = Shape::Object(&[
    (
        "requiredDuringSchedulingIgnoredDuringExecution",
        &NODE_SELECTOR,
    ),
    (
        "preferredDuringSchedulingIgnoredDuringExecution",
        &PREFERRED_NODE_TERMS,
    ),
]);
static STRING_MAP: Shape = Shape::StringMap;
static LABEL_SELECTOR: Shape = Shape::Object(&[
    ("matchLabels", &STRING_MAP),
    ("matchExpressions", &REQUIREMENTS),
]);
static POD_AFFINITY_TERM: Shape = Shape::Object(&[
    ("labelSelector", &LABEL_SELECTOR),
    ("namespaceSelector", &LABEL_SELECTOR),
    ("namespaces", &TEXTS),
    ("topologyKey", &TEXT),
    ("matchLabelKeys", &TEXTS),
    ("mismatchLabelKeys", &TEXTS),
]);
static POD_AFFINITY_TERMS: Shape = Shape::List(&POD_AFFINITY_TERM);
static WEIGHTED_POD_AFFINITY_TERM: Shape =
    Shape::Object(&[("weight", &WEIGHT), ("podAffinityTerm", &POD_AFFINITY_TERM)]);
static WEIGHTED_POD_AFFINITY_TERMS: Shape = Shape::List(&WEIGHTED_POD_AFFINITY_TERM);
static POD_AFFINITY: Shape = Shape::Object(&[
    (
        "requiredDuringSchedulingIgnoredDuringExecution",
        &POD_AFFINITY_TERMS,
    ),
    (
        "preferredDuringSchedulingIgnoredDuringExecution",
        &WEIGHTED_POD_AFFINITY_TERMS,
    ),
]);
static AFFINITY: Shape = Shape::Object(&[
    ("nodeAffinity", &NODE_AFFINITY),
    ("podAffinity", &POD_AFFINITY),
    ("podAntiAffinity", &POD_AFFINITY),
]);
static TOLERATION_OPERATOR: Shape = Shape::Word(&["Exists", "Equal"]);
static TAINT_EFFECT: Shape = Shape::Word(&["NoSchedule", "PreferNoSchedule", "NoExecute"]);
static TOLERATION: Shape = Shape::Object(&[
    ("key", &TEXT),
    ("operator", &TOLERATION_OPERATOR),
    ("value", &TEXT),
    ("effect", &TAINT_EFFECT),
    ("tolerationSeconds", &WEIGHT),
]);
static TOLERATIONS: Shape = Shape::List(&TOLERATION);

impl Checker {
    /// The scheduling knobs in a component's section `obj` (absent: none).
    pub(in crate::spec) fn placement(&mut self, obj: Option<&Obj>) -> Placement {
        let Some(obj) = obj else {
            return Placement::default();
        };
        let mut placement = Placement::default();
        if let Some(node) = obj.get("node_selector") {
            let field = obj.path("node_selector");
            if let Some(Value::Object(map)) = self.shaped(node, &field, &STRING_MAP) {
                for (key, value) in map {
                    let value = value.as_str().unwrap_or_default().to_string();
                    placement.node_selector.insert(key, value);
                }
            }
        }
        if let Some(node) = obj.get("tolerations") {
            let field = obj.path("tolerations");
            if let Some(Value::Array(list)) = self.shaped(node, &field, &TOLERATIONS) {
                placement.tolerations = Some(list);
            }
        }
        if let Some(node) = obj.get("affinity") {
            let field = obj.path("affinity");
            if let Some(Value::Object(map)) = self.shaped(node, &field, &AFFINITY) {
                placement.affinity = map.into_iter().collect();
            }
        }
        placement.priority_class_name = self.optional_checked(
            obj,
            "priority_class_name",
            "priority class name",
            values::check_dns_subdomain,
        );
        placement.image_pull_secrets = self.secret_names(obj, "image_pull_secrets");
        placement
    }

    /// `images:`, the registry mirror, digests and pull secrets of every image. `known` are the
    /// upstream images the stack runs, which `digests` must name.
    pub(in crate::spec) fn images(&mut self, top: &Obj, known: &[String]) -> Images {
        let Some(obj) = self.sub_object(top, "images", IMAGES_KEYS) else {
            return Images::default();
        };
        let registry = self.optional_checked(&obj, "registry", "registry", check_registry);
        let mut digests = BTreeMap::new();
        if let Some(node) = obj.get("digests") {
            let field = obj.path("digests");
            match node.as_mapping() {
                Some(map) => {
                    for (image, digest) in map.iter() {
                        let item = format!("{field}.{}", image.as_str());
                        if !known.iter().any(|k| k == image.as_str()) {
                            let hint = match did_you_mean(
                                image.as_str(),
                                known.iter().map(String::as_str),
                            ) {
                                Some(close) => format!("did you mean `{close}`?"),
                                None => format!(
                                    "`stackgen images SPEC --upstream` lists them: {}",
                                    known.join(", ")
                                ),
                            };
                            self.error(
                                image.span(),
                                &item,
                                format!("`{}` is no image the stack runs", image.as_str()),
                                Some(hint),
                            );
                            continue;
                        }
                        if let Some(digest) =
                            self.checked_string(digest, &item, "digest", check_digest)
                        {
                            digests.insert(image.as_str().to_string(), digest);
                        }
                    }
                }
                None => self.error(
                    node.span(),
                    &field,
                    format!("`{field}` must be a mapping of image to digest"),
                    Some("write `quay.io/prometheus/prometheus:v3.13.2: sha256:...`".into()),
                ),
            }
        }
        Images {
            registry,
            digests,
            pull_secrets: self.secret_names(&obj, "pull_secrets"),
        }
    }

    /// A list of Secret names under `key`.
    fn secret_names(&mut self, obj: &Obj, key: &str) -> Vec<String> {
        let field = obj.path(key);
        let mut names = Vec::new();
        for (index, node) in self.list(obj, key).into_iter().enumerate() {
            if let Some(name) = self.checked_string(
                node,
                &format!("{field}[{index}]"),
                "Secret name",
                values::check_dns_subdomain,
            ) && !names.contains(&name)
            {
                names.push(name);
            }
        }
        names
    }

    /// `node` checked against `shape` and turned into the JSON the manifests carry; `None` when
    /// any part of it is wrong (each wrong part reported).
    fn shaped(&mut self, node: &Node, field: &str, shape: &Shape) -> Option<Value> {
        match shape {
            Shape::Object(keys) => {
                let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
                let obj = self.object(node, field, &names)?;
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (key, inner) in keys.iter() {
                    let Some(value) = obj.get(key) else { continue };
                    match self.shaped(value, &obj.path(key), inner) {
                        Some(v) => {
                            out.insert((*key).to_string(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Object(out))
            }
            Shape::List(inner) => {
                let Some(items) = node.as_sequence() else {
                    self.error(
                        node.span(),
                        field,
                        format!("`{field}` must be a list"),
                        Some("write one `- ` item per line".into()),
                    );
                    return None;
                };
                let mut out = Vec::new();
                let mut ok = true;
                for (index, item) in items.iter().enumerate() {
                    match self.shaped(item, &format!("{field}[{index}]"), inner) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Array(out))
            }
            Shape::StringMap => {
                let Some(map) = node.as_mapping() else {
                    self.error(
                        node.span(),
                        field,
                        format!("`{field}` must be a mapping of label to value"),
                        Some("write `LABEL: VALUE` per line".into()),
                    );
                    return None;
                };
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (key, value) in map.iter() {
                    let item = format!("{field}.{}", key.as_str());
                    if let Err(hint) = values::check_label_key(key.as_str()) {
                        self.error(
                            key.span(),
                            &item,
                            format!("invalid label `{}`", key.as_str()),
                            Some(hint),
                        );
                        ok = false;
                        continue;
                    }
                    match self.checked_string(
                        value,
                        &item,
                        "label value",
                        values::check_label_value,
                    ) {
                        Some(v) => {
                            out.insert(key.as_str().to_string(), Value::String(v));
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Value::Object(out))
            }
            Shape::Text => self.string(node, field).map(|(text, _)| json!(text)),
            Shape::Word(words) => {
                let (text, _) = self.string(node, field)?;
                if words.contains(&text.as_str()) {
                    return Some(json!(text));
                }
                let hint = match did_you_mean(&text, words.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("one of {}", words.join(", ")),
                };
                self.error(
                    node.span(),
                    field,
                    format!("unknown `{text}` for `{field}`"),
                    Some(hint),
                );
                None
            }
            Shape::Integer => {
                let (text, _) = self.string(node, field)?;
                match text.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(json!(n)),
                    _ => {
                        self.error(
                            node.span(),
                            field,
                            format!("`{field}` must be a whole number, got `{text}`"),
                            Some("write a number such as 100".into()),
                        );
                        None
                    }
                }
            }
        }
    }
}

/// A registry host, optionally with a port and a path (`registry.example.com:5000/mirror`).
fn check_registry(text: &str) -> Result<(), String> {
    let hint = || {
        "a registry is a host, an optional :port and optional path, e.g. registry.example.com:5000/mirror (no scheme, no trailing /)".to_string()
    };
    let (host_port, path) = text.split_once('/').unwrap_or((text, ""));
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, ""));
    let host_ok = values::check_host(host).is_ok();
    let port_ok = port.is_empty() || port.parse::<u16>().is_ok_and(|p| p > 0);
    let path_ok = path.is_empty()
        || path.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                })
        });
    if host_ok && port_ok && path_ok && !text.contains("://") && !text.ends_with('/') {
        Ok(())
    } else {
        Err(hint())
    }
}

/// An image digest: `sha256:` and 64 lowercase hex digits.
fn check_digest(text: &str) -> Result<(), String> {
    match text.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) =>
        {
            Ok(())
        }
        _ => Err("a digest is `sha256:` and 64 lowercase hex digits, as `crane digest IMAGE` or `skopeo inspect` print it".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_digests_are_checked() {
        for good in [
            "mirror.internal",
            "10.0.0.5:5000",
            "harbor.corp/proxy/quay",
            "localhost:5000",
        ] {
            assert!(check_registry(good).is_ok(), "{good}");
        }
        for bad in [
            "https://mirror",
            "mirror.internal/",
            "mirror:0",
            "a b",
            "mirror/UPPER",
        ] {
            assert!(check_registry(bad).is_err(), "{bad}");
        }
        assert!(check_digest(&format!("sha256:{}", "0f".repeat(32))).is_ok());
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest(&format!("sha512:{}", "0".repeat(64))).is_err());
    }
}
