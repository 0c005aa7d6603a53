//! Metrics conventions with the real Prometheus, as stackgen renders it: one service in each
//! convention (`tests/fixtures/conventions/stack.yaml`) serves its own metric names on loopback,
//! scraped through the rendered relabelling (discovered through files carrying the
//! `__meta_kubernetes_*` labels). Healthy, every objective has its request series with the owning
//! team and no errors; under an error burst every objective that can page does so for its team,
//! the OpenTelemetry service without objectives gets the static error-rate alert, the quiet
//! service does not page, and `stackgen slo status` reads the burn rates.
//!
//! Only timings change: scrapes and evaluations every second, the alerts' `for` one second.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::e2e::{DEADLINE, start_prometheus};
use super::http_stub::{HttpStub, Reply};
use super::support::{query, render_to_temp, stackgen, stderr, stdout, wait_explained, wait_until};

const SPEC: &str = "tests/fixtures/conventions/stack.yaml";
/// Requests a second to every service but `quiet`.
const RATE: f64 = 20.0;
/// The share of requests failing during the burst.
const BURST_ERRORS: f64 = 0.5;

/// How a test service's metrics are named.
#[derive(Debug, Clone, Copy)]
enum Naming {
    Prometheus,
    OpenTelemetry,
    IngressNginx,
    Spring,
    Grpc,
    Orders,
}

/// A test service: where it is, who owns it, what it serves.
struct TestService {
    namespace: &'static str,
    name: &'static str,
    team: &'static str,
    /// The container port the rendered job keeps: a number or a name.
    port: &'static str,
    naming: Naming,
    rate: f64,
}

const SERVICES: [TestService; 8] = [
    service("shop", "web", "shop", "8080", Naming::Prometheus, RATE),
    service("shop", "api", "shop", "8080", Naming::OpenTelemetry, RATE),
    service(
        "shop",
        "catalog",
        "shop",
        "8080",
        Naming::OpenTelemetry,
        RATE,
    ),
    service(
        "ingress-nginx",
        "ingress-nginx",
        "edge",
        "metrics",
        Naming::IngressNginx,
        RATE,
    ),
    service("shop", "accounts", "shop", "8080", Naming::Spring, RATE),
    service("shop", "search", "shop", "9090", Naming::Grpc, RATE),
    service("shop", "quiet", "shop", "9090", Naming::Grpc, 0.01),
    service("shop", "orders", "shop", "8080", Naming::Orders, RATE),
];

const fn service(
    namespace: &'static str,
    name: &'static str,
    team: &'static str,
    port: &'static str,
    naming: Naming,
    rate: f64,
) -> TestService {
    TestService {
        namespace,
        name,
        team,
        port,
        naming,
        rate,
    }
}

/// When the error burst began, if it has.
type Burst = Arc<Mutex<Option<Instant>>>;

/// The exposition of `naming` after `good` and `bad` requests (every one faster than 50 ms).
fn exposition(naming: Naming, good: f64, bad: f64) -> String {
    let all = good + bad;
    let histogram = |name: &str, labels: &str, count: f64| {
        let comma = if labels.is_empty() { "" } else { "," };
        ["0.05", "0.1", "0.25", "0.5", "1", "2", "+Inf"]
            .iter()
            .map(|le| format!("{name}_bucket{{{labels}{comma}le=\"{le}\"}} {count}\n"))
            .chain([
                format!("{name}_sum{{{labels}}} {}\n", count * 0.01),
                format!("{name}_count{{{labels}}} {count}\n"),
            ])
            .collect::<String>()
    };
    match naming {
        Naming::Prometheus => format!(
            "http_requests_total{{code=\"200\",method=\"GET\"}} {good}\nhttp_requests_total{{code=\"500\",method=\"GET\"}} {bad}\n{}",
            histogram("http_request_duration_seconds", "", all)
        ),
        Naming::OpenTelemetry => [("200", good), ("500", bad)]
            .iter()
            .map(|(code, count)| {
                histogram(
                    "http_server_request_duration_seconds",
                    &format!("http_request_method=\"GET\",http_response_status_code=\"{code}\""),
                    *count,
                )
            })
            .collect(),
        // The controller labels each request with the Ingress and backend it went to.
        Naming::IngressNginx => {
            let labels = |status: &str| {
                format!(
                    "controller_class=\"k8s.io/ingress-nginx\",ingress=\"web\",namespace=\"shop\",service=\"web\",method=\"GET\",path=\"/\",status=\"{status}\""
                )
            };
            format!(
                "nginx_ingress_controller_requests{{{}}} {good}\nnginx_ingress_controller_requests{{{}}} {bad}\n{}",
                labels("200"),
                labels("502"),
                histogram(
                    "nginx_ingress_controller_request_duration_seconds",
                    "ingress=\"web\",namespace=\"shop\",service=\"web\"",
                    all
                )
            )
        }
        // Prometheus's scrapes of the actuator count too, always 200.
        Naming::Spring => [
            ("/actuator/prometheus", "200", "SUCCESS", all),
            ("/accounts/{id}", "200", "SUCCESS", good),
            ("/accounts/{id}", "500", "SERVER_ERROR", bad),
        ]
        .iter()
        .map(|(uri, status, outcome, count)| {
            histogram(
                "http_server_requests_seconds",
                &format!("method=\"GET\",outcome=\"{outcome}\",status=\"{status}\",uri=\"{uri}\""),
                *count,
            )
        })
        .collect(),
        // The kubelet's health checks, always OK, as many as the calls.
        Naming::Grpc => {
            let handled = |service: &str, method: &str, code: &str, count: f64| {
                format!(
                    "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"unary\"}} {count}\n"
                )
            };
            format!(
                "{}{}{}{}",
                handled("grpc.health.v1.Health", "Check", "OK", all),
                handled("search.v1.Search", "Query", "OK", good),
                handled("search.v1.Search", "Query", "Unavailable", bad),
                histogram(
                    "grpc_server_handling_seconds",
                    "grpc_method=\"Query\",grpc_service=\"search.v1.Search\",grpc_type=\"unary\"",
                    all
                )
            )
        }
        // Synthetic orders are not counted; out of stock is not an error.
        Naming::Orders => format!(
            "orders_received_total{{source=\"synthetic\"}} {all}\norders_received_total{{source=\"web\"}} {all}\norders_rejected_total{{reason=\"internal\"}} {bad}\norders_rejected_total{{reason=\"out_of_stock\"}} {}\n{}",
            all * 0.1,
            histogram("orders_processing_seconds", "", all)
        ),
    }
}

impl TestService {
    /// Serves the service's metrics, counting requests in real time at its rate, with
    /// [`BURST_ERRORS`] of them failing once the burst began.
    fn start(&self, burst: &Burst) -> HttpStub {
        let (naming, rate, burst) = (self.naming, self.rate, burst.clone());
        let began = Instant::now();
        HttpStub::start(move |_| {
            let now = Instant::now();
            let all = rate * now.duration_since(began).as_secs_f64();
            let bursting = burst.lock().expect("burst lock").map_or(0.0, |start| {
                now.saturating_duration_since(start).as_secs_f64()
            });
            let bad = rate * BURST_ERRORS * bursting;
            Reply::new(200, exposition(naming, all - bad, bad))
                .header("Content-Type", "text/plain; version=0.0.4")
        })
    }

    /// The target group Kubernetes pod discovery would give the service's job.
    fn target_groups(&self, port: u16) -> Value {
        let (number, name) = match self.port.parse::<u16>() {
            Ok(_) => (self.port, "http"),
            Err(_) => ("9102", self.port),
        };
        json!([{
            "targets": [format!("127.0.0.1:{port}")],
            "labels": {
                "__meta_kubernetes_namespace": self.namespace,
                "__meta_kubernetes_pod_name": format!("{}-0", self.name),
                "__meta_kubernetes_pod_node_name": "node-1",
                "__meta_kubernetes_pod_phase": "Running",
                "__meta_kubernetes_pod_ready": "true",
                "__meta_kubernetes_pod_container_name": self.name,
                "__meta_kubernetes_pod_container_port_name": name,
                "__meta_kubernetes_pod_container_port_number": number,
                "__meta_kubernetes_pod_container_port_protocol": "TCP",
            }
        }])
    }
}

/// The rendered rules with the alerts' `for` at one second and the daily group every second.
fn quicken_rules(rules: &Path) {
    let pending = regex::Regex::new(r#"(?m)^(\s+for: )"?\d+[smh]"?$"#).expect("a valid regex");
    for file in ["services.yaml", "slos.yaml"] {
        let path = rules.join(file);
        let text = std::fs::read_to_string(&path).expect("rendered rules");
        let text = pending
            .replace_all(&text, "${1}1s")
            .replace("interval: \"5m\"", "interval: \"1s\"");
        std::fs::write(&path, text).expect("write rules");
    }
}

/// `(namespace/service, label)` of every series.
fn owners(series: &[Value], label: &str) -> BTreeSet<(String, String)> {
    series
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                format!(
                    "{}/{}",
                    m["namespace"].as_str().unwrap_or_default(),
                    m["service"].as_str().unwrap_or_default()
                ),
                m[label].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_convention_feeds_objectives_and_alerts_through_the_rendered_scrape_config() {
    let (tmp, out) = render_to_temp(SPEC);
    quicken_rules(&out.join("prometheus/rules"));
    let burst: Burst = Arc::new(Mutex::new(None));
    let stubs: Vec<HttpStub> = SERVICES.iter().map(|s| s.start(&burst)).collect();
    let jobs: Vec<(String, Value)> = SERVICES
        .iter()
        .zip(&stubs)
        .map(|(s, stub)| {
            (
                format!("{}/{}", s.namespace, s.name),
                s.target_groups(stub.port),
            )
        })
        .collect();
    let exporters: Vec<(&str, Value)> = jobs.iter().map(|(j, g)| (j.as_str(), g.clone())).collect();
    let prometheus = start_prometheus(&out, tmp.path(), &[], &exporters, &[]);
    let base = prometheus.url("");

    // Healthy: every objective's request series, with its owner, and no errors.
    let objectives: BTreeSet<(String, String)> = [
        ("shop/web", "availability"),
        ("shop/api", "availability"),
        ("shop/api", "latency"),
        ("ingress-nginx/ingress-nginx", "availability"),
        ("ingress-nginx/ingress-nginx", "latency"),
        ("shop/accounts", "availability"),
        ("shop/accounts", "latency"),
        ("shop/search", "availability"),
        ("shop/search", "latency"),
        ("shop/quiet", "availability"),
        ("shop/orders", "availability"),
        ("shop/orders", "latency"),
    ]
    .iter()
    .map(|(service, slo)| (service.to_string(), slo.to_string()))
    .collect();
    wait_explained(
        "every objective to have its error rate",
        DEADLINE,
        || owners(&query(&base, "stackgen:slo_errors:rate5m == 0"), "slo") == objectives,
        || {
            format!(
                "{:#?}\n{}",
                query(&base, "stackgen:slo_errors:rate5m"),
                prometheus.log()
            )
        },
    );
    let teams = owners(&query(&base, "stackgen:slo_requests:rate5m > 0"), "team");
    let owned: BTreeSet<(String, String)> = SERVICES
        .iter()
        .filter(|s| s.name != "catalog")
        .map(|s| (format!("{}/{}", s.namespace, s.name), s.team.to_string()))
        .collect();
    assert_eq!(teams, owned);
    assert_eq!(
        owners(&query(&base, "stackgen:service_requests:rate5m"), "team").len(),
        8,
        "catalog, with no objective, has its request series too"
    );
    // The controller's own namespace and service labels give way to the target's.
    let proxied = query(
        &base,
        "nginx_ingress_controller_requests{exported_namespace=\"shop\", exported_service=\"web\", namespace=\"ingress-nginx\", service=\"ingress-nginx\", team=\"edge\"}",
    );
    assert_eq!(proxied.len(), 2, "{proxied:#?}");
    // The actuator's scrapes, the health checks and the synthetic orders (as many as the
    // requests) are not requests: each of those services counts as many as web, not twice as
    // many. Compared within one evaluation of the rules, as the rates still grow over 5 minutes.
    let as_many_as_web = |service: &str| {
        let ratio = query(
            &base,
            &format!(
                "stackgen:service_requests:rate5m{{service=\"{service}\"}} / ignoring (service) stackgen:service_requests:rate5m{{service=\"web\"}}"
            ),
        );
        ratio
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
    };
    wait_explained(
        "accounts, search and orders to count only their own requests",
        DEADLINE,
        || {
            ["accounts", "search", "orders", "api"]
                .iter()
                .all(|s| as_many_as_web(s).is_some_and(|r| (0.8..1.25).contains(&r)))
        },
        || format!("{:#?}", query(&base, "stackgen:service_requests:rate5m")),
    );

    // The burst: half of all requests fail.
    *burst.lock().expect("burst lock") = Some(Instant::now());
    let paging: BTreeSet<(String, String)> = [
        ("shop/web", "shop"),
        ("shop/api", "shop"),
        ("ingress-nginx/ingress-nginx", "edge"),
        ("shop/accounts", "shop"),
        ("shop/search", "shop"),
        ("shop/orders", "shop"),
    ]
    .iter()
    .map(|(service, team)| (service.to_string(), team.to_string()))
    .collect();
    wait_explained(
        "every objective but quiet's to page its team",
        DEADLINE,
        || {
            owners(
                &query(
                    &base,
                    "ALERTS{alertname=\"ServiceErrorBudgetBurning\", alertstate=\"firing\", severity=\"critical\", slo=\"availability\"}",
                ),
                "team",
            ) == paging
        },
        || format!("{:#?}", query(&base, "stackgen:slo_burn_rate:rate5m")),
    );
    let static_alert = wait_until("catalog's static error-rate alert", DEADLINE, || {
        let firing = owners(
            &query(
                &base,
                "ALERTS{alertname=\"ServiceHighErrorRate\", alertstate=\"firing\"}",
            ),
            "team",
        );
        (!firing.is_empty()).then_some(firing)
    });
    assert_eq!(
        static_alert,
        [("shop/catalog".to_string(), "shop".to_string())].into(),
        "only catalog has no availability objective"
    );
    let quiet = query(
        &base,
        "ALERTS{alertname=\"ServiceErrorBudgetBurning\", service=\"quiet\"}",
    );
    assert!(quiet.is_empty(), "below its minimum rate: {quiet:#?}");
    let latency = query(
        &base,
        "ALERTS{alertname=\"ServiceErrorBudgetBurning\", slo=\"latency\"}",
    );
    assert!(latency.is_empty(), "every request stays fast: {latency:#?}");

    // slo status reads the same burn.
    let status = stackgen(&["slo", "status", "--prometheus", &base, "--format", "json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let rows: Value = serde_json::from_str(&stdout(&status)).expect("JSON rows");
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), objectives.len(), "{rows:#?}");
    for row in rows
        .iter()
        .filter(|r| r["slo"] == "availability" && r["service"] != "quiet")
    {
        let burn = row["burn_1h"].as_f64().unwrap_or_default();
        assert!(burn > 14.4, "{row}");
    }
}
