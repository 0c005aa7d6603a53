//! Label names with one meaning across stackgen. The rule linter's per-instance check and the
//! router's member identity read the same list, so an alert the linter calls per-instance is one
//! whose instances the router folds into one incident.

/// Labels that identify one instance of a service rather than the service, in the order the
/// router writes a member's identity (`pod=checkout-1,node=n1`).
pub const PER_INSTANCE_LABELS: &[&str] = &[
    "instance",
    "pod",
    "node",
    "container",
    "pod_ip",
    "host",
    "hostname",
    "uid",
    "endpoint",
];

/// The pod label a team may set on its pods to own them (`ownership.team_label` in the spec).
pub const DEFAULT_TEAM_POD_LABEL: &str = "stackgen.io/team";

/// The pod label that names the service of a pod scraped because it asks to be, unless the spec
/// names another (`ownership.service_label`).
pub const DEFAULT_SERVICE_POD_LABEL: &str = "app.kubernetes.io/name";

/// The pod label by which a pod in a team's namespace asks to be scraped (value `"true"`).
pub const SCRAPE_POD_LABEL: &str = "stackgen.io/scrape";

/// The pod label that gives the port of a pod that asks to be scraped (else the
/// `prometheus.io/port` annotation).
pub const SCRAPE_PORT_POD_LABEL: &str = "stackgen.io/port";

/// The Prometheus label name kube-state-metrics gives the Kubernetes label `key` on its
/// `kube_*_labels` series: `label_` and the key with every character outside `[a-zA-Z0-9_]`
/// made `_`, in snake case (`app.kubernetes.io/name` becomes `label_app_kubernetes_io_name`,
/// `tier` becomes `label_tier`, `myApp` becomes `label_my_app`).
pub fn kube_state_metrics_label(key: &str) -> String {
    let mut name = String::from("label_");
    let mut previous: Option<char> = None;
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::kube_state_metrics_label;

    #[test]
    fn kube_state_metrics_label_names_follow_its_sanitising() {
        for (key, expected) in [
            ("app", "label_app"),
            ("app.kubernetes.io/name", "label_app_kubernetes_io_name"),
            ("stackgen.io/team", "label_stackgen_io_team"),
            ("myApp", "label_my_app"),
            ("HTTPServer", "label_httpserver"),
            ("tier2Name", "label_tier2_name"),
            ("a-b_c", "label_a_b_c"),
        ] {
            assert_eq!(kube_state_metrics_label(key), expected, "{key}");
        }
    }
}
