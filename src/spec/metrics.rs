//! How a service names its request metrics (`services[].metrics`): one of the conventions services
//! really expose (the Prometheus client default, OpenTelemetry's semantic conventions,
//! ingress-nginx, Spring Boot's Micrometer, gRPC) or explicit selectors. The static service alerts
//! and the objectives both read a service's requests, errors and latency histogram through it.
//!
//! Pure: a selector is parsed and written back as PromQL, never spliced in as text, so what a spec
//! writes can add matchers to a selector but never change the expression around it.

use serde::Serialize;

use crate::rules::promql::{self, quote};

/// A naming convention for request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Convention {
    /// The Prometheus client libraries' default: `http_requests_total{code}` and
    /// `http_request_duration_seconds`.
    Prometheus,
    /// OpenTelemetry semantic conventions: `http_server_request_duration_seconds` with
    /// `http_response_status_code`.
    Opentelemetry,
    /// The ingress-nginx controller: `nginx_ingress_controller_requests{status}` and
    /// `nginx_ingress_controller_request_duration_seconds`.
    IngressNginx,
    /// Spring Boot's Micrometer: `http_server_requests_seconds{status}`.
    Spring,
    /// gRPC's server interceptors: `grpc_server_handled_total{grpc_code}` and
    /// `grpc_server_handling_seconds`.
    Grpc,
    /// Selectors written in the spec.
    Explicit,
}

impl Convention {
    /// The conventions a spec can name, in the order the documentation lists them.
    pub const PRESETS: [Convention; 5] = [
        Convention::Prometheus,
        Convention::Opentelemetry,
        Convention::IngressNginx,
        Convention::Spring,
        Convention::Grpc,
    ];

    /// The name a spec writes (`metrics: ingress-nginx`).
    pub fn name(self) -> &'static str {
        match self {
            Convention::Prometheus => "prometheus",
            Convention::Opentelemetry => "opentelemetry",
            Convention::IngressNginx => "ingress-nginx",
            Convention::Spring => "spring",
            Convention::Grpc => "grpc",
            Convention::Explicit => "explicit",
        }
    }

    /// The preset a name people also call it by means (`micrometer` is `spring`).
    pub fn known_as(name: &str) -> Option<Convention> {
        match name.to_ascii_lowercase().as_str() {
            "otel" | "open-telemetry" | "opentelemetry" => Some(Convention::Opentelemetry),
            "micrometer" | "spring-boot" | "springboot" | "spring" => Some(Convention::Spring),
            "nginx" | "nginx-ingress" | "ingress_nginx" | "ingress-nginx" => {
                Some(Convention::IngressNginx)
            }
            "client_golang" | "default" | "prometheus" => Some(Convention::Prometheus),
            "grpc-go" | "go-grpc-prometheus" | "grpc" => Some(Convention::Grpc),
            _ => None,
        }
    }

    /// The preset of that name.
    pub fn preset(name: &str) -> Option<Convention> {
        Convention::PRESETS.into_iter().find(|c| c.name() == name)
    }
}

/// A service's request metrics: the counter of requests, the counter of bad ones, and the latency
/// histogram (in seconds) when it has one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceMetrics {
    pub convention: Convention,
    /// Every request (a counter).
    pub requests: Selector,
    /// The requests that failed (a counter, most often `requests` with one more matcher).
    pub errors: Selector,
    /// The latency histogram: its name without `_bucket`, with matchers for the requests it should
    /// measure.
    pub duration: Option<Selector>,
}

/// gRPC status codes that say the server failed, not the caller.
const GRPC_SERVER_ERRORS: &str =
    "Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss";

impl ServiceMetrics {
    /// The metrics of a preset convention (`Explicit` has no preset: it gives the default).
    pub fn of(convention: Convention) -> ServiceMetrics {
        let selector = |metric: &str, matchers: &[(&str, MatchOp, &str)]| Selector {
            metric: metric.to_string(),
            matchers: matchers
                .iter()
                .map(|(label, op, value)| Matcher {
                    label: label.to_string(),
                    op: *op,
                    value: value.to_string(),
                })
                .collect(),
        };
        let five_hundreds = |label| (label, MatchOp::Regex, "5..");
        match convention {
            Convention::Prometheus | Convention::Explicit => ServiceMetrics {
                convention: Convention::Prometheus,
                requests: selector("http_requests_total", &[]),
                errors: selector("http_requests_total", &[five_hundreds("code")]),
                duration: Some(selector("http_request_duration_seconds", &[])),
            },
            Convention::Opentelemetry => ServiceMetrics {
                convention,
                requests: selector("http_server_request_duration_seconds_count", &[]),
                errors: selector(
                    "http_server_request_duration_seconds_count",
                    &[five_hundreds("http_response_status_code")],
                ),
                duration: Some(selector("http_server_request_duration_seconds", &[])),
            },
            Convention::IngressNginx => ServiceMetrics {
                convention,
                requests: selector("nginx_ingress_controller_requests", &[]),
                errors: selector(
                    "nginx_ingress_controller_requests",
                    &[five_hundreds("status")],
                ),
                duration: Some(selector(
                    "nginx_ingress_controller_request_duration_seconds",
                    &[],
                )),
            },
            // Prometheus's own scrapes of the actuator are not the service's traffic.
            Convention::Spring => {
                let not_actuator = ("uri", MatchOp::NotRegex, "/actuator/.*");
                ServiceMetrics {
                    convention,
                    requests: selector("http_server_requests_seconds_count", &[not_actuator]),
                    errors: selector(
                        "http_server_requests_seconds_count",
                        &[not_actuator, five_hundreds("status")],
                    ),
                    duration: Some(selector("http_server_requests_seconds", &[not_actuator])),
                }
            }
            // Nor are the kubelet's health checks.
            Convention::Grpc => {
                let not_health = ("grpc_service", MatchOp::NotEqual, "grpc.health.v1.Health");
                ServiceMetrics {
                    convention,
                    requests: selector("grpc_server_handled_total", &[not_health]),
                    errors: selector(
                        "grpc_server_handled_total",
                        &[
                            not_health,
                            ("grpc_code", MatchOp::Regex, GRPC_SERVER_ERRORS),
                        ],
                    ),
                    duration: Some(selector("grpc_server_handling_seconds", &[not_health])),
                }
            }
        }
    }
}

impl Default for ServiceMetrics {
    fn default() -> ServiceMetrics {
        ServiceMetrics::of(Convention::Prometheus)
    }
}

/// A metric name and label matchers: the series a selector reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selector {
    pub metric: String,
    pub matchers: Vec<Matcher>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    fn promql(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// Labels stackgen sets on a service's series and selects by itself: a selector cannot name them.
pub const RESERVED_LABELS: [&str; 5] = ["cluster", "namespace", "service", "team", "le"];

impl Selector {
    /// Parses a PromQL instant vector selector with a metric name (`orders_total{result="error"}`);
    /// the error is a hint saying what to write instead.
    pub fn parse(text: &str) -> Result<Selector, String> {
        use promql_parser::label::MatchOp as Op;
        use promql_parser::parser::Expr;
        const EXAMPLE: &str =
            "write a metric name with label matchers, such as `orders_total{result=\"error\"}`";
        let expr = promql::parse(text).map_err(|e| format!("{}; {EXAMPLE}", e.message))?;
        let Expr::VectorSelector(vector) = expr else {
            return Err(format!(
                "only a series selector is allowed here, not an expression; {EXAMPLE}"
            ));
        };
        let Some(metric) = vector.name.clone() else {
            return Err(format!("the selector names no metric; {EXAMPLE}"));
        };
        if vector.offset.is_some() || vector.at.is_some() {
            return Err("a selector here takes no `offset` or `@`".into());
        }
        if !vector.matchers.or_matchers.is_empty() {
            return Err("a selector here takes no `or` between matchers".into());
        }
        let mut matchers = Vec::new();
        for matcher in &vector.matchers.matchers {
            if matcher.name == "__name__" {
                if matcher.value == metric {
                    continue;
                }
                return Err("name the metric before the braces, not with `__name__`".into());
            }
            if RESERVED_LABELS.contains(&matcher.name.as_str()) {
                return Err(format!(
                    "`{}` is set by stackgen on every series of the service, which it selects itself; remove the matcher",
                    matcher.name
                ));
            }
            let op = match matcher.op {
                Op::Equal => MatchOp::Equal,
                Op::NotEqual => MatchOp::NotEqual,
                Op::Re(_) => MatchOp::Regex,
                Op::NotRe(_) => MatchOp::NotRegex,
            };
            matchers.push(Matcher {
                label: matcher.name.clone(),
                op,
                value: matcher.value.clone(),
            });
        }
        Ok(Selector { metric, matchers })
    }

    /// The selector as PromQL: the metric name with `suffix`, then `scope` (matchers already
    /// written as PromQL, such as a service's `namespace="shop", service="checkout"`), then its
    /// own matchers.
    pub fn promql(&self, suffix: &str, scope: &str) -> String {
        let mut matchers: Vec<String> = Vec::new();
        if !scope.is_empty() {
            matchers.push(scope.to_string());
        }
        matchers.extend(
            self.matchers
                .iter()
                .map(|m| format!("{}{}{}", m.label, m.op.promql(), quote(&m.value))),
        );
        format!("{}{suffix}{{{}}}", self.metric, matchers.join(", "))
    }
}

/// Label values of a series: label name to value, absent labels empty (as a scrape gives them).
pub type Labels = crate::rules::exposition::SeriesLabels;

impl Selector {
    /// Whether this selector selects a series of its metric with `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels.get(&m.label).map_or("", String::as_str);
            match m.op {
                MatchOp::Equal => value == m.value,
                MatchOp::NotEqual => value != m.value,
                MatchOp::Regex => full_match(&m.value, value),
                MatchOp::NotRegex => !full_match(&m.value, value),
            }
        })
    }

    /// `base` with values for the labels this selector matches on, so that it selects the series;
    /// `None` when no value is found (a regular expression too clever to sample).
    pub fn example(&self, base: &Labels) -> Option<Labels> {
        let mut labels = base.clone();
        for m in &self.matchers {
            if labels.contains_key(&m.label) {
                continue;
            }
            let value = match m.op {
                MatchOp::Equal => Some(m.value.clone()),
                MatchOp::Regex => sample(&m.value),
                MatchOp::NotEqual if m.value.is_empty() => Some("x".into()),
                MatchOp::NotRegex if full_match(&m.value, "") => OTHER_VALUES
                    .iter()
                    .find(|v| !full_match(&m.value, v))
                    .map(|v| v.to_string()),
                MatchOp::NotEqual | MatchOp::NotRegex => None,
            };
            if let Some(value) = value {
                labels.insert(m.label.clone(), value);
            }
        }
        self.matches(&labels).then_some(labels)
    }

    /// `base` with one more label whose value this selector does not select (`code="200"` for
    /// `code=~"5.."`) and `kept` still does; `None` when there is no such value.
    pub fn counterexample(&self, base: &Labels, kept: &Selector) -> Option<Labels> {
        self.matchers
            .iter()
            .filter(|m| !base.contains_key(&m.label))
            .find_map(|m| {
                let candidates: Vec<String> = match m.op {
                    MatchOp::NotEqual => vec![m.value.clone()],
                    MatchOp::NotRegex => sample(&m.value).into_iter().collect(),
                    MatchOp::Equal | MatchOp::Regex => {
                        // A status like the bad one: `200` beside `5..`, `OK` beside `Internal`.
                        let numeric =
                            sample(&m.value).is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()));
                        let mut values = OTHER_VALUES.to_vec();
                        if !numeric {
                            values.rotate_left(1);
                        }
                        values
                            .into_iter()
                            .map(str::to_string)
                            .chain([format!("{}-other", m.value)])
                            .collect()
                    }
                };
                candidates.into_iter().find_map(|value| {
                    let mut labels = base.clone();
                    labels.insert(m.label.clone(), value);
                    (!self.matches(&labels) && kept.matches(&labels)).then_some(labels)
                })
            })
    }
}

/// Values a label of a good request takes, in the order tried: an HTTP status, a gRPC code.
const OTHER_VALUES: [&str; 4] = ["200", "OK", "ok", "other"];

/// Whether the RE2 expression `pattern` matches all of `value`, as a PromQL matcher does.
fn full_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// A value the regular expression matches (`500` for `5..`), for the plain expressions label
/// matchers use: the first alternative, any character as `0`, a class as its first member, a
/// repetition once (or not at all when it may be absent). Checked, so `None` rather than wrong.
fn sample(pattern: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '|' if depth == 0 => break,
            '(' => {
                depth += 1;
                if chars.peek() == Some(&'?') {
                    chars.next();
                    chars.next();
                }
            }
            ')' => depth = depth.saturating_sub(1),
            '^' | '$' => {}
            '.' => out.push('0'),
            '*' | '?' => {
                out.pop();
            }
            '+' => {}
            '\\' => match chars.next() {
                Some('d') => out.push('0'),
                Some('w') => out.push('a'),
                Some('s') => out.push(' '),
                Some(other) => out.push(other),
                None => return None,
            },
            '[' => {
                let first = chars.next().filter(|c| *c != '^')?;
                out.push(first);
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '{' => return None,
            c => out.push(c),
        }
    }
    full_match(pattern, &out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_written_back_with_the_scope_first() {
        let selector = Selector::parse(r#"orders_total{result=~"fail.*", region!="test"}"#)
            .expect("a selector");
        assert_eq!(
            selector.promql("", "namespace=\"shop\""),
            r#"orders_total{namespace="shop", result=~"fail.*", region!="test"}"#
        );
        let quoted = Selector::parse(r#"x_total{path="a\"b"}"#).expect("a selector");
        assert_eq!(quoted.promql("", ""), r#"x_total{path="a\"b"}"#);
        assert!(promql_parser::parser::parse(&quoted.promql("_bucket", "service=\"s\"")).is_ok());
    }

    #[test]
    fn only_a_named_selector_of_the_services_own_labels_parses() {
        for (text, hint) in [
            ("rate(x_total[5m])", "only a series selector"),
            ("x_total or y_total", "only a series selector"),
            ("{job=\"a\"}", "names no metric"),
            (
                "x_total{namespace=\"shop\"}",
                "`namespace` is set by stackgen",
            ),
            ("x_total{le=\"1\"}", "`le` is set by stackgen"),
            ("x_total offset 5m", "no `offset`"),
            ("x_total{", "write a metric name"),
            ("x_total{a=\"1\" or b=\"2\"}", "no `or`"),
        ] {
            let error = Selector::parse(text).expect_err(text);
            assert!(error.contains(hint), "{text}: {error}");
        }
    }

    #[test]
    fn test_series_are_found_for_simple_expressions() {
        assert_eq!(sample("5..").as_deref(), Some("500"));
        assert_eq!(sample(GRPC_SERVER_ERRORS).as_deref(), Some("Unknown"));
        assert_eq!(
            sample("(?:fail|error)ed").as_deref(),
            None,
            "alternatives inside a group"
        );
        assert_eq!(sample("err.*").as_deref(), Some("err"));
        assert_eq!(sample("[45]xx").as_deref(), Some("4xx"));
        assert_eq!(sample("a{2}"), None);
        let base = Labels::new();
        for convention in Convention::PRESETS {
            let metrics = ServiceMetrics::of(convention);
            let request = metrics.requests.example(&base).expect("a request");
            let bad = metrics.errors.example(&request).expect("a failed request");
            assert!(metrics.requests.matches(&bad), "{convention:?}");
            let good = metrics
                .errors
                .counterexample(&request, &metrics.requests)
                .expect("a good request");
            assert!(metrics.requests.matches(&good), "{convention:?}");
            assert!(!metrics.errors.matches(&good), "{convention:?}: {good:?}");
        }
        let grpc = ServiceMetrics::of(Convention::Grpc);
        let bad = grpc.errors.example(&base).expect("a failed call");
        assert_eq!(bad.get("grpc_code").map(String::as_str), Some("Unknown"));
        assert_eq!(
            bad.get("grpc_service"),
            None,
            "absent is not the health service"
        );
        let health = Labels::from([(
            "grpc_service".to_string(),
            "grpc.health.v1.Health".to_string(),
        )]);
        assert!(!grpc.requests.matches(&health));
    }

    #[test]
    fn every_preset_is_named_and_has_a_histogram() {
        for convention in Convention::PRESETS {
            assert_eq!(Convention::preset(convention.name()), Some(convention));
            let metrics = ServiceMetrics::of(convention);
            assert_eq!(metrics.convention, convention);
            assert!(metrics.duration.is_some());
            assert_ne!(metrics.requests, metrics.errors);
        }
        assert_eq!(Convention::preset("explicit"), None);
        assert_eq!(Convention::known_as("Micrometer"), Some(Convention::Spring));
        assert_eq!(
            Convention::known_as("OTel"),
            Some(Convention::Opentelemetry)
        );
    }
}
