//! A service's metrics (`services[].metrics`) checked against a scrape of it (`stackgen validate
//! --metrics SERVICE=FILE|URL`): its requests counter is there and carries the label its errors
//! are told apart by, its latency histogram is there, and each latency objective's threshold is
//! one of the histogram's bucket bounds. A scrape of other names gets, as a hint, the convention it
//! looks like.
//!
//! Pure: the spec's service and the scrape's series in, findings out.

use std::collections::BTreeSet;

use super::metrics::{Convention, Labels, Selector, ServiceMetrics};
use super::{Service, SloKind};
use crate::diagnostic::{Diagnostic, Level, Location, did_you_mean};
use crate::rules::lint::Finding;

/// One series of a scrape: its name and labels.
pub type Series = (String, Labels);

/// What is wrong with `service` (at its entry of the file declaring it) given the `series` a
/// scrape of it returned.
pub fn check_scrape(service: &Service, series: &[Series]) -> Vec<Finding> {
    let metrics = &service.metrics;
    let file = service.written_in.as_str();
    let field = format!("{}.metrics", service.field);
    let mut findings = Vec::new();
    let mut push = |level, location: Location, field: &str, message: String, hint: String| {
        findings.push(Finding {
            level,
            diagnostic: Diagnostic {
                file: file.to_string(),
                location,
                field: field.to_string(),
                message,
                hint: Some(hint),
                ..Diagnostic::default()
            },
        });
    };
    let at = service.metrics_location;
    let selected = |selector: &Selector, name: &str| -> Vec<&Labels> {
        series
            .iter()
            .filter(|(n, labels)| n == name && selector.matches(labels))
            .map(|(_, labels)| labels)
            .collect()
    };

    let requests = selected(&metrics.requests, &metrics.requests.metric);
    if requests.is_empty() {
        let named = series.iter().any(|(n, _)| *n == metrics.requests.metric);
        let message = if named {
            format!(
                "no series of `{}` in the scrape is selected by `{}`",
                metrics.requests.metric,
                metrics.requests.promql("", "")
            )
        } else {
            format!(
                "the scrape has no `{}`, the requests of {}",
                metrics.requests.metric,
                described(metrics.convention)
            )
        };
        push(
            Level::Error,
            at,
            &field,
            message,
            requests_hint(metrics, series),
        );
        return findings;
    }

    // Errors are told apart by labels: some request must carry each one the errors select on.
    if metrics.errors.metric == metrics.requests.metric {
        let carried: BTreeSet<&str> = requests
            .iter()
            .flat_map(|labels| labels.keys().map(String::as_str))
            .collect();
        let told_by: Vec<&str> = metrics
            .errors
            .matchers
            .iter()
            .map(|m| m.label.as_str())
            .filter(|label| !metrics.requests.matchers.iter().any(|m| m.label == *label))
            .collect();
        for label in told_by.into_iter().filter(|l| !carried.contains(l)) {
            push(
                Level::Error,
                at,
                &field,
                format!(
                    "no request in the scrape carries `{label}`, the label `{}` tells failed requests by, so no error would ever count",
                    metrics.errors.promql("", "")
                ),
                match did_you_mean(label, carried.iter().copied()) {
                    Some(close) => format!(
                        "the requests carry `{close}`: name it with explicit `requests:` and `errors:` selectors"
                    ),
                    None => format!(
                        "the requests carry {}; write explicit `requests:` and `errors:` selectors",
                        listed(&carried)
                    ),
                },
            );
        }
    } else if !series.iter().any(|(n, _)| *n == metrics.errors.metric) {
        push(
            Level::Warning,
            at,
            &field,
            format!("the scrape has no `{}` (the failed requests)", metrics.errors.metric),
            "a counter that appears with the first failure is fine; a misspelt one never counts an error".into(),
        );
    }

    let latency: Vec<_> = service
        .slos
        .iter()
        .filter(|slo| slo.kind == SloKind::Latency)
        .collect();
    let Some(histogram) = &metrics.duration else {
        return findings;
    };
    let buckets = selected(histogram, &format!("{}_bucket", histogram.metric));
    if buckets.is_empty() {
        let (level, hint) = if latency.is_empty() {
            (
                Level::Warning,
                "ServiceHighLatency and the latency panels stay empty for this service".to_string(),
            )
        } else {
            (
                Level::Error,
                format!(
                    "its latency objective can never be measured; {}",
                    histogram_hint(metrics.convention)
                ),
            )
        };
        push(
            level,
            at,
            &field,
            format!("the scrape has no histogram `{}_bucket`", histogram.metric),
            hint,
        );
        return findings;
    }
    let mut bounds: Vec<f64> = buckets
        .iter()
        .filter_map(|labels| labels.get("le")?.parse::<f64>().ok())
        .filter(|bound| bound.is_finite())
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    for slo in latency {
        let threshold = slo.threshold.as_deref().unwrap_or("1");
        let Ok(seconds) = threshold.parse::<f64>() else {
            continue;
        };
        if bounds
            .iter()
            .any(|b| (b - seconds).abs() <= 1e-9 * seconds.max(1.0))
        {
            continue;
        }
        push(
            Level::Error,
            slo.location,
            &format!("{}.slos.latency.threshold", service.field),
            format!(
                "latency threshold {threshold} is not a bucket bound of `{}`, so the objective can never be measured",
                histogram.metric
            ),
            format!(
                "its bounds are {}; use one of them, or add {threshold} to the histogram's buckets",
                bounds
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    findings
}

/// How a service of `convention` gets its latency histogram.
fn histogram_hint(convention: Convention) -> &'static str {
    match convention {
        Convention::Spring => {
            "set `management.metrics.distribution.percentiles-histogram.http.server.requests=true` in the service"
        }
        Convention::Grpc => {
            "call `grpc_prometheus.EnableHandlingTimeHistogram()` (or your interceptor's equivalent) in the server"
        }
        _ => "export the histogram from the service, or name the one it has with `duration:`",
    }
}

/// "convention `grpc`", or "the selectors written".
fn described(convention: Convention) -> String {
    match convention {
        Convention::Explicit => "the selectors written".into(),
        preset => format!("convention `{}`", preset.name()),
    }
}

/// What to write instead when the requests are missing: the convention the scrape looks like, or
/// a name close to the one expected.
fn requests_hint(metrics: &ServiceMetrics, series: &[Series]) -> String {
    let names: BTreeSet<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    let looks_like = Convention::PRESETS.into_iter().find(|preset| {
        *preset != metrics.convention
            && names.contains(ServiceMetrics::of(*preset).requests.metric.as_str())
    });
    if let Some(preset) = looks_like {
        return format!(
            "the scrape looks like `{}`: write `metrics: {}`",
            preset.name(),
            preset.name()
        );
    }
    if let Some(close) = did_you_mean(&metrics.requests.metric, names.iter().copied()) {
        return format!("did you mean `{close}`?");
    }
    "check that the scrape is the service's own (its port and path), or name its requests counter with explicit `requests:` and `errors:` selectors".into()
}

fn listed(labels: &BTreeSet<&str>) -> String {
    if labels.is_empty() {
        return "no labels".into();
    }
    labels
        .iter()
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(extra: &str) -> Service {
        let spec = crate::spec::parse(
            "s.yaml",
            &format!("cluster: {{name: a}}\nrouter: {{platform_team: t}}\nteams:\n  - {{name: t, webhook: {{url: {{secret: s, key: k}}}}}}\nservices:\n  - {{name: api, team: t, port: 80{extra}}}\n"),
        )
        .expect("valid");
        spec.services[0].clone()
    }

    fn scrape(text: &str) -> Vec<Series> {
        crate::rules::exposition::series(text).expect("an exposition")
    }

    fn messages(findings: &[Finding]) -> Vec<(Level, String, String)> {
        findings
            .iter()
            .map(|f| {
                (
                    f.level,
                    f.diagnostic.message.clone(),
                    f.diagnostic.hint.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    const OTEL: &str = "# TYPE http_server_request_duration_seconds histogram\nhttp_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"0.25\"} 3\nhttp_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"0.5\"} 4\nhttp_server_request_duration_seconds_bucket{http_response_status_code=\"200\",le=\"+Inf\"} 5\nhttp_server_request_duration_seconds_sum{http_response_status_code=\"200\"} 1\nhttp_server_request_duration_seconds_count{http_response_status_code=\"200\"} 5\n";

    #[test]
    fn a_scrape_of_the_convention_is_clean() {
        let api =
            service(", metrics: opentelemetry, slos: {latency: {objective: 99, threshold: 0.5}}");
        assert_eq!(messages(&check_scrape(&api, &scrape(OTEL))), vec![]);
    }

    #[test]
    fn a_scrape_of_another_convention_says_which_it_looks_like() {
        let api = service("");
        let found = messages(&check_scrape(&api, &scrape(OTEL)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Level::Error);
        assert!(found[0].1.contains("no `http_requests_total`"), "{found:?}");
        assert!(
            found[0].2.contains("write `metrics: opentelemetry`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_threshold_between_buckets_and_a_missing_status_label_are_errors() {
        let api =
            service(", metrics: opentelemetry, slos: {latency: {objective: 99, threshold: 0.3}}");
        let found = messages(&check_scrape(&api, &scrape(OTEL)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].1.contains("threshold 0.3 is not a bucket bound"),
            "{found:?}"
        );
        assert!(found[0].2.contains("0.25, 0.5"), "{found:?}");

        let unlabelled = "http_requests_total{status=\"200\"} 5\nhttp_request_duration_seconds_bucket{le=\"+Inf\"} 5\n";
        let found = messages(&check_scrape(&service(""), &scrape(unlabelled)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("carries `code`"), "{found:?}");
        assert!(found[0].2.contains("`status`"), "{found:?}");
    }

    #[test]
    fn a_missing_histogram_is_an_error_only_for_a_latency_objective() {
        let counters = "http_requests_total{code=\"200\"} 5\n";
        let found = messages(&check_scrape(&service(""), &scrape(counters)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Level::Warning);
        let with_objective = service(", slos: {latency: {objective: 99, threshold: 0.5}}");
        let found = messages(&check_scrape(&with_objective, &scrape(counters)));
        assert_eq!(found[0].0, Level::Error, "{found:?}");
    }
}
