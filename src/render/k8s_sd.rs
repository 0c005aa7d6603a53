//! Checks the `kubernetes_sd_configs` blocks of a rendered prometheus.yml.
//!
//! The Prometheus and promtool that Debian ships are built without Kubernetes service discovery, so
//! they cannot check these blocks; stackgen checks them itself: known keys, a valid role, namespaces
//! named explicitly (Prometheus' RBAC only covers those), and selectors whose role fits the
//! discovery role and whose label/field expressions parse.

use yaml_rust2::Yaml;

use crate::config_check::values;

const ROLES: &[&str] = &[
    "endpoints",
    "endpointslice",
    "service",
    "pod",
    "node",
    "ingress",
];
const SD_KEYS: &[&str] = &[
    "api_server",
    "role",
    "kubeconfig_file",
    "basic_auth",
    "authorization",
    "oauth2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "tls_config",
    "namespaces",
    "selectors",
    "attach_metadata",
];

/// Checks every `kubernetes_sd_configs` block of a parsed prometheus.yml (scrape configs and
/// Alertmanager discovery).
pub fn check_config(root: &Yaml) -> Result<(), String> {
    let scrape = root["scrape_configs"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let alerting = root["alerting"]["alertmanagers"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (kind, list) in [
        ("scrape_configs", scrape),
        ("alerting.alertmanagers", alerting),
    ] {
        for (index, entry) in list.iter().enumerate() {
            let name = entry["job_name"]
                .as_str()
                .map_or_else(|| format!("{kind}[{index}]"), str::to_string);
            if let Some(blocks) = entry["kubernetes_sd_configs"].as_vec() {
                for (i, block) in blocks.iter().enumerate() {
                    check_block(block)
                        .map_err(|e| format!("{name}: kubernetes_sd_configs[{i}]: {e}"))?;
                }
            }
        }
    }
    Ok(())
}

/// Checks one `kubernetes_sd_configs` entry.
pub fn check_block(block: &Yaml) -> Result<(), String> {
    let map = block.as_hash().ok_or("must be a mapping")?;
    for key in map.keys() {
        let key = key.as_str().ok_or("keys must be strings")?;
        if !SD_KEYS.contains(&key) {
            return Err(format!("unknown key `{key}`"));
        }
    }
    let role = block["role"].as_str().ok_or("`role` is required")?;
    if !ROLES.contains(&role) {
        return Err(format!(
            "unknown role `{role}` (one of {})",
            ROLES.join(", ")
        ));
    }
    if role != "node" {
        let names = block["namespaces"]["names"].as_vec().ok_or(
            "name the namespaces to watch (`namespaces.names`); Prometheus may only read those",
        )?;
        if names.is_empty() {
            return Err("`namespaces.names` is empty".into());
        }
        for name in names {
            let name = name.as_str().ok_or("namespace names must be strings")?;
            values::check_dns_label(name).map_err(|hint| format!("namespace `{name}`: {hint}"))?;
        }
    }
    if let Some(selectors) = block["selectors"].as_vec() {
        for selector in selectors {
            check_selector(role, selector)?;
        }
    } else if !block["selectors"].is_badvalue() {
        return Err("`selectors` must be a list".into());
    }
    if !block["attach_metadata"].is_badvalue()
        && block["attach_metadata"]["node"].as_bool().is_none()
    {
        return Err("`attach_metadata` takes `node: true|false`".into());
    }
    Ok(())
}

fn check_selector(role: &str, selector: &Yaml) -> Result<(), String> {
    let map = selector.as_hash().ok_or("a selector must be a mapping")?;
    for key in map.keys() {
        let key = key.as_str().unwrap_or_default();
        if !["role", "label", "field"].contains(&key) {
            return Err(format!("unknown selector key `{key}`"));
        }
    }
    let selector_role = selector["role"].as_str().ok_or("a selector needs `role`")?;
    let allowed: &[&str] = match role {
        "endpoints" => &["endpoints", "pod", "service"],
        "endpointslice" => &["endpointslice", "pod", "service"],
        other => std::slice::from_ref(match other {
            "service" => &"service",
            "pod" => &"pod",
            "node" => &"node",
            _ => &"ingress",
        }),
    };
    if !allowed.contains(&selector_role) {
        return Err(format!(
            "selector role `{selector_role}` does not fit discovery role `{role}` (allowed: {})",
            allowed.join(", ")
        ));
    }
    for key in ["label", "field"] {
        if let Some(expr) = selector[key].as_str() {
            check_selector_expression(expr).map_err(|e| format!("{key} selector `{expr}`: {e}"))?;
        } else if !selector[key].is_badvalue() {
            return Err(format!("`{key}` must be a string"));
        }
    }
    Ok(())
}

/// A Kubernetes equality-based selector: `k=v`, `k==v`, `k!=v`, `k` or `!k`, comma-separated.
fn check_selector_expression(expr: &str) -> Result<(), String> {
    for term in expr.split(',') {
        let term = term.trim();
        let (key, value) = if let Some((k, v)) = term.split_once("!=") {
            (k, Some(v))
        } else if let Some((k, v)) = term.split_once("==") {
            (k, Some(v))
        } else if let Some((k, v)) = term.split_once('=') {
            (k, Some(v))
        } else {
            (term.strip_prefix('!').unwrap_or(term), None)
        };
        values::check_label_key(key.trim())?;
        if let Some(value) = value {
            values::check_label_value(value.trim())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::YamlLoader;

    fn block(text: &str) -> Result<(), String> {
        let docs = YamlLoader::load_from_str(text).expect("yaml");
        check_block(&docs[0])
    }

    #[test]
    fn accepts_what_stackgen_renders() {
        assert_eq!(block("role: node"), Ok(()));
        assert_eq!(
            block(
                "role: pod\nnamespaces: {names: [shop]}\nselectors: [{role: pod, label: 'app=checkout,tier!=db'}]"
            ),
            Ok(())
        );
        assert_eq!(
            block("role: endpoints\nnamespaces: {names: [default]}\nattach_metadata: {node: true}"),
            Ok(())
        );
    }

    #[test]
    fn rejects_mistakes() {
        assert!(
            block("role: pods\nnamespaces: {names: [a]}")
                .expect_err("role")
                .contains("unknown role")
        );
        assert!(block("role: pod").expect_err("ns").contains("namespaces"));
        assert!(block("role: pod\nnamespaces: {names: [Shop]}").is_err());
        assert!(
            block("role: pod\nnamespaces: {names: [a]}\nselectors: [{role: service, label: a=b}]")
                .expect_err("fit")
                .contains("does not fit")
        );
        assert!(
            block("role: pod\nnamespaces: {names: [a]}\nselectors: [{role: pod, label: 'a=b c'}]")
                .is_err()
        );
        assert!(
            block("role: node\nnamespace: {names: [a]}")
                .expect_err("key")
                .contains("unknown key")
        );
    }
}
