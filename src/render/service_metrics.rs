//! The request series every service alert and objective reads, whatever a service's metrics are
//! called: [`REQUESTS`], [`ERRORS`] and [`DURATION_BUCKETS`], 5-minute rates by
//! `(cluster, namespace, service, team)` (and `le`). The shipped `services.yaml` records them from
//! the Prometheus client libraries' default names for every owned series; a service of another
//! convention (`services[].metrics`) is marked with [`MARK`], which those rules leave out, and gets
//! its own rules reading its own metrics ([`services_rule_file`]).
//!
//! Pure: the spec in, text out.

use serde_json::{Value, json};

use crate::rules::promql::quote;
use crate::spec::metrics::ServiceMetrics;
use crate::spec::{Service, Spec};
use crate::yaml;

/// Requests a second to a service.
pub const REQUESTS: &str = "stackgen:service_requests:rate5m";
/// Failed requests a second.
pub const ERRORS: &str = "stackgen:service_errors:rate5m";
/// Requests a second by latency bucket (`le`, in seconds).
pub const DURATION_BUCKETS: &str = "stackgen:service_request_duration_seconds_bucket:rate5m";
/// A service whose metrics are not the default names, with its `convention`.
pub const MARK: &str = "stackgen:service_metrics:info";

/// The labels every request series keeps.
const BY: &str = "cluster, namespace, service, team";

/// The default `services.yaml` with, first in its group, the marks and rules of every service whose
/// metrics are not the default names; unchanged when there is none.
pub fn services_rule_file(static_text: &str, spec: &Spec) -> Result<String, String> {
    const GROUP_START: &str = "    rules:\n";
    let renamed: Vec<&Service> = spec
        .services
        .iter()
        .filter(|s| s.metrics != ServiceMetrics::default())
        .collect();
    if renamed.is_empty() {
        return Ok(static_text.to_string());
    }
    let at = static_text
        .find(GROUP_START)
        .ok_or("services.yaml has no rules list")?
        + GROUP_START.len();
    let mut rules: Vec<Value> = renamed.iter().map(|s| mark(s)).collect();
    rules.extend(renamed.iter().flat_map(|s| service_rules(s)));
    let comment = "      # From the spec's services[].metrics: each service whose request metrics have other\n\
                   \x20     # names is marked (so the rules below leave it out) and gets its own request series.";
    Ok(format!(
        "{}{comment}{}\n{}",
        &static_text[..at],
        yaml::block(&Value::Array(rules), 6),
        &static_text[at..]
    ))
}

/// `namespace="…", service="…"`: the matchers of a service's own series.
pub fn scope(service: &Service) -> String {
    format!(
        "namespace={}, service={}",
        quote(&service.namespace),
        quote(&service.name)
    )
}

fn mark(service: &Service) -> Value {
    json!({
        "record": MARK,
        "expr": "vector(1)",
        "labels": {
            "namespace": service.namespace,
            "service": service.name,
            "convention": service.metrics.convention.name(),
        },
    })
}

/// The request series of one service, from its own metrics.
fn service_rules(service: &Service) -> Vec<Value> {
    let metrics = &service.metrics;
    let scope = scope(service);
    let rate = |selector: String, by: &str| format!("sum by ({by}) (rate({selector}[5m]))");
    // The service's own labels, which its series carry anyway: each rule's name and labels are
    // its own, apart from the default rule's (promtool reports two rules recording the same
    // series as duplicates).
    let labels = json!({"namespace": service.namespace, "service": service.name});
    let mut rules = vec![
        json!({"record": REQUESTS, "expr": rate(metrics.requests.promql("", &scope), BY), "labels": labels}),
        json!({"record": ERRORS, "expr": rate(metrics.errors.promql("", &scope), BY), "labels": labels}),
    ];
    if let Some(histogram) = &metrics.duration {
        rules.push(json!({
            "record": DURATION_BUCKETS,
            "expr": rate(histogram.promql("_bucket", &scope), &format!("{BY}, le")),
            "labels": labels,
        }));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nservices:\n  - {name: web, team: t, namespace: shop, port: 80}\n  - {name: edge, team: t, namespace: ingress, port: 80, metrics: ingress-nginx}\n  - {name: orders, team: t, namespace: shop, port: 80, metrics: {requests: 'orders_total{kind!=\"probe\"}', errors: 'orders_failed_total'}}\n";

    #[test]
    fn services_of_other_conventions_are_marked_and_read_their_own_metrics() {
        let spec = crate::spec::parse("s.yaml", SPEC).expect("valid");
        let shipped = include_str!("../../stack/prometheus/rules/services.yaml");
        let text = services_rule_file(shipped, &spec).expect("renders");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("yaml");
        let rules = docs[0]["groups"][0]["rules"].as_vec().expect("rules");
        let marks: Vec<(&str, &str)> = rules
            .iter()
            .take_while(|r| r["record"].as_str() == Some(MARK))
            .map(|r| {
                (
                    r["labels"]["service"].as_str().unwrap_or_default(),
                    r["labels"]["convention"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(marks, [("edge", "ingress-nginx"), ("orders", "explicit")]);
        let exprs = |record: &str| -> Vec<&str> {
            rules
                .iter()
                .filter(|r| r["record"].as_str() == Some(record))
                .filter_map(|r| r["expr"].as_str())
                .collect()
        };
        let requests = exprs(REQUESTS);
        assert_eq!(requests.len(), 3, "edge, orders, then the default rule");
        assert_eq!(
            requests[0],
            "sum by (cluster, namespace, service, team) (rate(nginx_ingress_controller_requests{namespace=\"ingress\", service=\"edge\"}[5m]))"
        );
        assert!(
            requests[2].contains(&format!("unless on (namespace, service) {MARK}")),
            "{}",
            requests[2]
        );
        assert_eq!(
            exprs(ERRORS)[1],
            "sum by (cluster, namespace, service, team) (rate(orders_failed_total{namespace=\"shop\", service=\"orders\"}[5m]))"
        );
        assert_eq!(exprs(DURATION_BUCKETS).len(), 2, "orders has no histogram");
        for rule in rules {
            let expr = rule["expr"].as_str().expect("expr");
            assert!(promql_parser::parser::parse(expr).is_ok(), "{expr}");
        }
        let plain = crate::spec::parse("s.yaml", "cluster: {name: a}\n").expect("valid");
        assert_eq!(
            services_rule_file(shipped, &plain).expect("renders"),
            shipped
        );
    }
}
