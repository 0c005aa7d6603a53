//! Service level objectives (`services[].slos`) as Prometheus rules: per-service SLI rates, the
//! error ratios over the windows of the multiwindow, multi-burn-rate alerts (page at 14.4x over
//! 1h and 5m or 6x over 6h and 30m; ticket at 3x over 1d and 2h or 1x over 3d and 6h), and the
//! error budget left. Only the 5-minute rates are per service (they select its request series,
//! recorded in `services.yaml` from the metrics its convention names); the windows, ratios and
//! alerts are written once for every service, joined with a per-service error budget series.
//! The promtool tests rendered beside them feed series named as each service's convention names
//! them.
//!
//! Pure: the spec in, one rule file out.

use serde_json::{Value, json};

use super::service_metrics::{self, DURATION_BUCKETS, ERRORS, REQUESTS};
use crate::rules::promql::quote;
use crate::spec::metrics::Labels;
use crate::spec::{Service, Slo, SloKind, Spec};
use crate::yaml;

/// The rule file holding the objectives.
pub const FILE: &str = "slos.yaml";

/// The windows evaluated with the other rules, and the daily ones evaluated every 5 minutes.
const FAST_WINDOWS: [&str; 4] = ["30m", "1h", "2h", "6h"];
const DAILY_WINDOWS: [&str; 2] = ["1d", "3d"];

/// A ticket needs at least this many requests in its long window. (A page needs the objective's
/// `min_rate`, so a quiet service does not page on two errors.)
const MIN_REQUESTS: u32 = 100;

/// The rule file for `spec`'s objectives, or `None` when no service has one.
pub fn slo_rule_file(spec: &Spec) -> Option<String> {
    let services: Vec<&Service> = spec
        .services
        .iter()
        .filter(|s| !s.slos.is_empty())
        .collect();
    if services.is_empty() {
        return None;
    }
    let mut fast = Vec::new();
    for service in &services {
        for slo in &service.slos {
            fast.extend(service_rules(service, slo));
        }
    }
    for window in FAST_WINDOWS {
        for series in ["requests", "errors"] {
            fast.push(json!({
                "record": format!("stackgen:slo_{series}:rate{window}"),
                "expr": format!("avg_over_time(stackgen:slo_{series}:rate5m[{window}])"),
            }));
        }
    }
    for window in std::iter::once("5m").chain(FAST_WINDOWS) {
        fast.extend(ratio_and_burn_rate(window));
    }
    fast.push(json!({
        "alert": "ServiceErrorBudgetBurning",
        "expr": format!(
            "(\n{}\n)\nor\n(\n{}\n)\n",
            burn("1h", "5m", 14.4, Minimum::PageRate),
            burn("6h", "30m", 6.0, Minimum::PageRate)
        ),
        "for": "2m",
        "labels": {"severity": "critical"},
        "annotations": {
            "summary": "{{ $labels.service }} in {{ $labels.namespace }} burns its {{ $labels.slo }} error budget fast.",
            "description": "Bad requests over the last hour (and 5 minutes) or 6 hours (and 30 minutes) use the {{ $labels.slo }} error budget 14.4 or 6 times as fast as the objective allows: 2% or 5% of a 30-day budget gone in that time. It burns {{ $value }} times as fast over the last hour or 6 hours.",
            "runbook_url": "https://github.com/stackgen/stackgen/blob/main/docs/runbooks.md#serviceerrorbudgetburning",
            "dashboard": "/d/stackgen-slos?var-service={{ $labels.service }}",
        },
    }));

    // Every 5 minutes: a copy of the 5-minute rates, whose averages give the daily windows and
    // the budget left over the objective's window from a few thousand samples.
    let mut daily = Vec::new();
    for series in ["requests", "errors"] {
        daily.push(json!({
            "record": format!("stackgen:slo_{series}:rate5m_every5m"),
            "expr": format!("stackgen:slo_{series}:rate5m"),
        }));
        for window in DAILY_WINDOWS {
            daily.push(json!({
                "record": format!("stackgen:slo_{series}:rate{window}"),
                "expr": format!("avg_over_time(stackgen:slo_{series}:rate5m_every5m[{window}])"),
            }));
        }
    }
    for window in DAILY_WINDOWS {
        daily.extend(ratio_and_burn_rate(window));
    }
    let mut windows: Vec<&str> = services
        .iter()
        .flat_map(|s| s.slos.iter().map(|slo| slo.window.as_str()))
        .collect();
    windows.sort_unstable();
    windows.dedup();
    for window in windows {
        daily.push(json!({
            "record": "stackgen:slo_error_budget:remaining",
            "expr": format!(
                "1 - (\n  avg_over_time(stackgen:slo_errors:rate5m_every5m[{window}])\n    / avg_over_time(stackgen:slo_requests:rate5m_every5m[{window}])\n)\n  / on (namespace, service, slo) group_left ()\n    stackgen:slo_error_budget:ratio{{window={}}}\n",
                quote(window)
            ),
            // One rule per window: each its own series, as promtool asks.
            "labels": {"window": window},
        }));
    }
    daily.push(json!({
        "alert": "ServiceErrorBudgetBurningSlowly",
        "expr": format!(
            "(\n{}\n)\nor\n(\n{}\n)\n",
            burn("1d", "2h", 3.0, Minimum::Requests(86_400)),
            burn("3d", "6h", 1.0, Minimum::Requests(259_200))
        ),
        "for": "15m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.service }} in {{ $labels.namespace }} burns its {{ $labels.slo }} error budget faster than it lasts.",
            "description": "Bad requests over the last day (and 2 hours) or 3 days (and 6 hours) use the {{ $labels.slo }} error budget 3 or 1 times as fast as the objective allows: 10% of a 30-day budget gone in a day, or the whole budget by the end of the window. It burns {{ $value }} times as fast over the last day or 3 days.",
            "runbook_url": "https://github.com/stackgen/stackgen/blob/main/docs/runbooks.md#serviceerrorbudgetburningslowly",
            "dashboard": "/d/stackgen-slos?var-service={{ $labels.service }}",
        },
    }));

    let file = json!({"groups": [
        {"name": "stackgen.slos", "rules": fast},
        {"name": "stackgen.slos.daily", "interval": "5m", "rules": daily},
    ]});
    Some(format!(
        "# Service level objectives rendered by stackgen from the spec's services[].slos: SLI rates\n\
         # per service, error ratios over the burn-rate windows, the budget left, and the page and\n\
         # ticket alerts of the multiwindow, multi-burn-rate method.\n{}",
        yaml::document(&file)
    ))
}

/// The promtool unit tests of `spec`'s objectives (`prometheus/tests/slos_test.yaml`), or `None`
/// when no service has one: for each objective, a burn of 15 times the budget pages (where a
/// burn that fast is possible), and a burn of exactly the budget (1x) fires nothing in 6 hours.
/// Run them with `promtool test rules slos_test.yaml` in that directory.
pub fn slo_test_file(spec: &Spec) -> Option<String> {
    let mut tests = Vec::new();
    let mut untested = Vec::new();
    for service in spec.services.iter() {
        for slo in &service.slos {
            let budget: f64 = budget_ratio(&slo.objective).parse().unwrap_or(1.0);
            let rate: f64 = slo.min_rate.parse::<f64>().unwrap_or(1.0).max(5.0) * 2.0;
            let per_minute = rate * 60.0;
            let page = format!(
                "ALERTS{{alertname=\"ServiceErrorBudgetBurning\", alertstate=\"firing\", cluster={}, namespace={}, service={}, severity=\"critical\", slo={}, team={}}}",
                quote(&spec.cluster.name),
                quote(&service.namespace),
                quote(&service.name),
                quote(slo.kind.name()),
                quote(&service.team)
            );
            let selector = format!(
                "alertstate=\"firing\", namespace={}, service={}, slo={}",
                quote(&service.namespace),
                quote(&service.name),
                quote(slo.kind.name())
            );
            let (Some(fast_burn), Some(budget_burn)) = (
                traffic(spec, service, slo, per_minute, 15.0 * budget, 30),
                traffic(spec, service, slo, per_minute, budget, 360),
            ) else {
                untested.push(format!(
                    "{}/{} {}",
                    service.namespace,
                    service.name,
                    slo.kind.name()
                ));
                continue;
            };
            // A burn of 15 times the budget is possible only below 100% bad requests.
            if 15.0 * budget < 1.0 {
                tests.push(json!({
                    "name": format!("{}/{} {}: a burn of 15 times the budget pages", service.namespace, service.name, slo.kind.name()),
                    "interval": "1m",
                    "input_series": fast_burn,
                    "promql_expr_test": [{
                        "expr": format!("ALERTS{{alertname=\"ServiceErrorBudgetBurning\", {selector}}}"),
                        "eval_time": "20m",
                        "exp_samples": [{"labels": page, "value": 1}],
                    }],
                }));
            }
            tests.push(json!({
                "name": format!("{}/{} {}: a burn of exactly the budget fires nothing", service.namespace, service.name, slo.kind.name()),
                "interval": "1m",
                "input_series": budget_burn,
                "promql_expr_test": [{
                    "expr": format!("ALERTS{{{selector}}}"),
                    "eval_time": "6h",
                    "exp_samples": [],
                }],
            }));
        }
    }
    if tests.is_empty() && untested.is_empty() {
        return None;
    }
    let file = json!({
        "rule_files": ["../rules/services.yaml", format!("../rules/{FILE}")],
        "evaluation_interval": "1m",
        "tests": tests,
    });
    let untested = if untested.is_empty() {
        String::new()
    } else {
        format!(
            "# Not tested here: {}, whose metrics selectors are too clever to find label values for;\n\
             # write a test of your own with series they select.\n",
            untested.join(", ")
        )
    };
    Some(format!(
        "# promtool unit tests of the objectives in {FILE}, rendered by stackgen with the rules:\n\
         #   cd prometheus/tests && promtool test rules slos_test.yaml\n{untested}{}",
        yaml::document(&file)
    ))
}

/// Series of `per_minute` requests a minute to `service`, named as its metrics are, `bad` of them
/// (a share) bad for `slo`, over `minutes`; `None` when its selectors are too clever to find label
/// values for.
fn traffic(
    spec: &Spec,
    service: &Service,
    slo: &Slo,
    per_minute: f64,
    bad: f64,
    minutes: u32,
) -> Option<Vec<Value>> {
    let base = Labels::from(
        [
            ("cluster", spec.cluster.name.as_str()),
            ("namespace", &service.namespace),
            ("service", &service.name),
            ("team", &service.team),
            ("pod", &format!("{}-0", service.name)),
        ]
        .map(|(label, value)| (label.to_string(), value.to_string())),
    );
    let series = |metric: &str, labels: &Labels, per_minute: f64| {
        let labels: Vec<String> = labels
            .iter()
            .map(|(label, value)| format!("{label}={}", quote(value)))
            .collect();
        json!({
            "series": format!("{metric}{{{}}}", labels.join(", ")),
            "values": format!("0+{per_minute}x{minutes}"),
        })
    };
    let metrics = &service.metrics;
    match slo.kind {
        SloKind::Availability => {
            let (requests, errors) = (&metrics.requests, &metrics.errors);
            let request = requests.example(&base)?;
            if errors.metric == requests.metric {
                let failed = errors.example(&request).filter(|l| requests.matches(l))?;
                let good = errors.counterexample(&request, requests)?;
                Some(vec![
                    series(&requests.metric, &good, per_minute * (1.0 - bad)),
                    series(&requests.metric, &failed, per_minute * bad),
                ])
            } else {
                let failed = errors.example(&base)?;
                Some(vec![
                    series(&requests.metric, &request, per_minute),
                    series(&errors.metric, &failed, per_minute * bad),
                ])
            }
        }
        SloKind::Latency => {
            let histogram = metrics.duration.as_ref()?;
            let labels = histogram.example(&base)?;
            let bucket = |bound: &str| {
                let mut labels = labels.clone();
                labels.insert("le".into(), bound.into());
                labels
            };
            let metric = format!("{}_bucket", histogram.metric);
            let bound = slo.threshold.as_deref().unwrap_or("1");
            Some(vec![
                series(&metric, &bucket(bound), per_minute * (1.0 - bad)),
                series(&metric, &bucket("+Inf"), per_minute),
            ])
        }
    }
}

/// The objective series and the 5-minute rates of one objective of one service, from the
/// service's request series.
fn service_rules(service: &Service, slo: &Slo) -> Vec<Value> {
    let kind = slo.kind.name();
    let scope = service_metrics::scope(service);
    let (requests, errors) = match slo.kind {
        SloKind::Availability => (
            format!("{REQUESTS}{{{scope}}}"),
            format!("{ERRORS}{{{scope}}}\n  or\n0 * {REQUESTS}{{{scope}}}"),
        ),
        SloKind::Latency => {
            let all = format!("sum without (le) ({DURATION_BUCKETS}{{{scope}, le=\"+Inf\"}})");
            let fast = format!(
                "sum without (le) ({DURATION_BUCKETS}{{{scope}, le=~{}}})",
                quote(&bucket_bound_pattern(
                    slo.threshold.as_deref().unwrap_or("1")
                ))
            );
            (
                all.clone(),
                format!("clamp_min(\n  {all}\n    - {fast},\n  0\n)"),
            )
        }
    };
    // The service's own labels too, which its series carry anyway: each rule's name and labels
    // are its own (promtool reports two rules recording the same series as duplicates).
    let labels = json!({"namespace": service.namespace, "service": service.name, "slo": kind});
    let of_slo = json!({"namespace": service.namespace, "service": service.name, "slo": kind});
    let mut budget_labels = of_slo.clone();
    budget_labels["window"] = json!(slo.window);
    vec![
        json!({
            "record": "stackgen:slo_error_budget:ratio",
            "expr": format!("vector({})", budget_ratio(&slo.objective)),
            "labels": budget_labels,
        }),
        json!({
            "record": "stackgen:slo_page_min_rate",
            // The number as Rust prints it: a PromQL number whatever way the spec wrote it.
            "expr": format!("vector({})", slo.min_rate.parse::<f64>().unwrap_or(1.0)),
            "labels": of_slo,
        }),
        json!({"record": "stackgen:slo_requests:rate5m", "expr": requests, "labels": labels}),
        json!({"record": "stackgen:slo_errors:rate5m", "expr": errors, "labels": labels}),
    ]
}

/// The share of requests allowed to be bad, in decimal: 100% minus the objective (`99.9` gives
/// `0.001`), computed on the digits so that no rounding moves the alerts' thresholds.
fn budget_ratio(objective: &str) -> String {
    let (whole, fraction) = objective.split_once('.').unwrap_or((objective, ""));
    let scale = fraction.len() as u32;
    let good: u64 = format!("{whole}{fraction}").parse().unwrap_or(0);
    let bad = (100 * 10u64.pow(scale)).saturating_sub(good);
    let digits = bad.to_string();
    let places = scale as usize + 2;
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// The share of bad requests over `window`, and how many times as fast as the objective allows
/// it spends the budget (the burn rate).
fn ratio_and_burn_rate(window: &str) -> [Value; 2] {
    [
        json!({
            "record": format!("stackgen:slo_error_ratio:rate{window}"),
            "expr": format!("stackgen:slo_errors:rate{window} / stackgen:slo_requests:rate{window}"),
        }),
        json!({
            "record": format!("stackgen:slo_burn_rate:rate{window}"),
            "expr": format!("stackgen:slo_error_ratio:rate{window}\n  / on (namespace, service, slo) group_left ()\n    stackgen:slo_error_budget:ratio"),
        }),
    ]
}

/// How much traffic a burn must have seen in its long window.
enum Minimum {
    /// At least the objective's `min_rate` (a page).
    PageRate,
    /// At least [`MIN_REQUESTS`] requests over the window of this many seconds (a ticket).
    Requests(u32),
}

/// Both windows burn the budget more than `factor` times as fast as the objective allows (burn
/// rates rounded to 4 decimals, so a burn of exactly the factor is not more than it for the
/// rounding of rates), with the `minimum` traffic in the long window.
fn burn(long: &str, short: &str, factor: f64, minimum: Minimum) -> String {
    let traffic = match minimum {
        Minimum::PageRate => {
            "on (namespace, service, slo) group_left () stackgen:slo_page_min_rate".to_string()
        }
        Minimum::Requests(seconds) => format!("({MIN_REQUESTS} / {seconds})"),
    };
    format!(
        "    round(stackgen:slo_burn_rate:rate{long}, 0.0001) > {factor}\n  and\n    round(stackgen:slo_burn_rate:rate{short}, 0.0001) > {factor}\n  and on (cluster, namespace, service, team, slo)\n    stackgen:slo_requests:rate{long} >= {traffic}"
    )
}

/// The `le` values a bucket bound of `seconds` is written as: client libraries write `1` or
/// `1.0`, and Prometheus 3 stores `1.0`.
fn bucket_bound_pattern(seconds: &str) -> String {
    let value: f64 = seconds.parse().unwrap_or(1.0);
    let shortest = format!("{value}");
    if value.fract() == 0.0 {
        format!("{shortest}|{shortest}\\.0")
    } else {
        shortest.replace('.', "\\.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_exact_in_decimal() {
        assert_eq!(budget_ratio("99.9"), "0.001");
        assert_eq!(budget_ratio("99.95"), "0.0005");
        assert_eq!(budget_ratio("99"), "0.01");
        assert_eq!(budget_ratio("95.5"), "0.045");
        assert_eq!(budget_ratio("90"), "0.1");
        assert_eq!(budget_ratio("0.5"), "0.995");
        assert_eq!(budget_ratio("99.999999"), "0.00000001");
    }

    #[test]
    fn bucket_bounds_match_every_way_they_are_written() {
        assert_eq!(bucket_bound_pattern("1"), "1|1\\.0");
        assert_eq!(bucket_bound_pattern("2.0"), "2|2\\.0");
        assert_eq!(bucket_bound_pattern("0.25"), "0\\.25");
        assert_eq!(bucket_bound_pattern("0.250"), "0\\.25");
    }

    #[test]
    fn an_objective_whose_selectors_cannot_be_sampled_is_listed_untested() {
        let spec = crate::spec::parse(
            "s.yaml",
            "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nservices:\n  - name: odd\n    team: t\n    namespace: shop\n    port: 80\n    metrics: {requests: calls_total, errors: 'calls_total{code=~\"5[0-9]{2}\"}'}\n    slos: {availability: {objective: 99.9}}\n  - {name: web, team: t, namespace: shop, port: 80, slos: {availability: {objective: 99}}}\n",
        )
        .expect("valid");
        let text = slo_test_file(&spec).expect("a test file");
        assert!(
            text.contains("# Not tested here: shop/odd availability,"),
            "{text}"
        );
        assert!(!text.contains("shop/odd availability:"), "{text}");
        assert!(
            text.contains("shop/web availability: a burn of 15 times"),
            "{text}"
        );
    }

    #[test]
    fn only_the_five_minute_rates_are_per_service() {
        let spec = crate::spec::parse(
            "s.yaml",
            "cluster: {name: a}\nrouter: {platform_team: t}\nteams:\n  - {name: t, webhook: {url: {secret: s, key: k}}}\nservices:\n  - {name: a, team: t, namespace: shop, port: 80, slos: {availability: {objective: 99.9}, latency: {objective: 99, threshold: 0.5, window: 7d}}}\n  - {name: b, team: t, namespace: shop, port: 80, slos: {availability: {objective: 99.5}}}\n  - {name: c, team: t, namespace: shop, port: 80}\n",
        )
        .expect("valid");
        let text = slo_rule_file(&spec).expect("a rule file");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("yaml");
        let rules: Vec<&yaml_rust2::Yaml> = docs[0]["groups"]
            .as_vec()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_vec().into_iter().flatten())
            .collect();
        let named = |name: &str| {
            rules
                .iter()
                .filter(|r| r["record"].as_str() == Some(name) || r["alert"].as_str() == Some(name))
                .count()
        };
        assert_eq!(named("stackgen:slo_error_budget:ratio"), 3);
        assert_eq!(named("stackgen:slo_requests:rate5m"), 3);
        assert_eq!(named("stackgen:slo_error_ratio:rate1h"), 1);
        assert_eq!(
            named("stackgen:slo_error_budget:remaining"),
            2,
            "7d and 30d"
        );
        assert_eq!(named("ServiceErrorBudgetBurning"), 1);
        assert_eq!(named("ServiceErrorBudgetBurningSlowly"), 1);
        assert!(text.contains("le=~\"0\\\\.5\""), "{text}");
        assert!(!text.contains("service=\"c\""));
        for rule in &rules {
            let expr = rule["expr"].as_str().expect("expr");
            assert!(promql_parser::parser::parse(expr).is_ok(), "{expr}");
        }
        let none = crate::spec::parse("s.yaml", "cluster: {name: a}\n").expect("valid");
        assert_eq!(slo_rule_file(&none), None);
    }
}
