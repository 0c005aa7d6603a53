//! `probes:` and `prometheus.scrape_jobs` end to end: the real blackbox exporter (Debian's
//! prometheus-blackbox-exporter) runs the rendered modules, the real Prometheus the rendered jobs
//! and rules, against loopback servers that answer 200, 503 and 301 and a port nobody listens on.
//! Each probe's result must arrive with its owner's labels, and the failing ones must be on their
//! way to a ProbeFailing alert.

use super::e2e::{DEADLINE, spawn, start_prometheus};
use super::http_stub::{HttpStub, Reply};
use super::support::{free_port, render_into, tool, wait_explained};

/// Where the rendered jobs send probes, replaced by the loopback exporter's address.
const EXPORTER_IN_CLUSTER: &str = "blackbox-exporter.monitoring.svc:9115";

#[test]
fn probes_run_through_the_real_blackbox_exporter_and_carry_their_owners() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let healthy = HttpStub::start(|_| Reply::new(200, "ok"));
    let broken = HttpStub::start(|_| Reply::new(503, "down for maintenance"));
    let moved = HttpStub::start(|_| {
        Reply::new(301, "moved").header("Location", "http://127.0.0.1:9/nowhere")
    });
    let closed_port = free_port();
    let exporter_port = free_port();
    let spec = dir.join("stack.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"cluster: {{name: prod}}
router: {{platform_team: platform}}
teams:
  - name: platform
    webhook: {{url: {{secret: hooks, key: platform}}}}
  - name: payments
    webhook: {{url: {{secret: hooks, key: payments}}}}
services:
  - {{name: checkout, team: payments, namespace: shop, selector: {{app: checkout}}, port: http}}
prometheus:
  scrape_jobs:
    - name: exporter-self
      team: platform
      targets: ["127.0.0.1:{exporter_port}"]
      labels: {{env: test}}
probes:
  - name: checkout-health
    url: http://127.0.0.1:{}/healthz
    service: checkout
  - name: partner-api
    url: http://127.0.0.1:{}/health
    team: payments
  - name: old-site
    url: http://127.0.0.1:{}/
    status: [301]
    team: payments
  - name: ledger-port
    tcp: 127.0.0.1:{closed_port}
    team: platform
"#,
            healthy.port, broken.port, moved.port
        ),
    )
    .expect("spec");
    let out = dir.join("out");
    render_into(&spec, &out);

    let exporter_bin = tool(
        "prometheus-blackbox-exporter",
        "apt-get install prometheus-blackbox-exporter",
    );
    let exporter = spawn(
        "blackbox-exporter",
        &exporter_bin,
        &[
            format!(
                "--config.file={}",
                out.join("blackbox-exporter/blackbox.yml").display()
            ),
            format!("--web.listen-address=127.0.0.1:{exporter_port}"),
        ],
        &[],
        dir,
        exporter_port,
    );
    wait_explained(
        "the blackbox exporter to take the rendered modules",
        DEADLINE,
        || super::e2e::get_ok(&exporter.url("/-/healthy")),
        || exporter.log(),
    );
    let config = out.join("prometheus/prometheus.yml");
    let text = std::fs::read_to_string(&config).expect("prometheus.yml");
    assert!(text.contains(EXPORTER_IN_CLUSTER), "{text}");
    std::fs::write(
        &config,
        text.replace(EXPORTER_IN_CLUSTER, &format!("127.0.0.1:{exporter_port}")),
    )
    .expect("prometheus.yml");
    let prometheus = start_prometheus(&out, dir, &[], &[], &[]);

    let owners = [
        ("checkout-health", "payments", "checkout", 1.0),
        ("partner-api", "payments", "partner-api", 0.0),
        ("old-site", "payments", "old-site", 1.0),
        ("ledger-port", "platform", "ledger-port", 0.0),
    ];
    for (probe, team, service, success) in owners {
        let selector = format!(
            r#"probe_success{{job="probes", cluster="prod", probe="{probe}", team="{team}", service="{service}"}}"#
        );
        wait_explained(
            &format!("{selector} to be {success}"),
            DEADLINE,
            || {
                prometheus.query(&selector).first().is_some_and(|sample| {
                    sample["value"][1].as_str() == Some(if success == 1.0 { "1" } else { "0" })
                })
            },
            || format!("{}\n{}", prometheus.log(), exporter.log()),
        );
    }
    let namespaced =
        prometheus.query(r#"probe_success{probe="checkout-health", namespace="shop"}"#);
    assert_eq!(
        namespaced.len(),
        1,
        "a probe of a service carries its namespace"
    );
    wait_explained(
        "the extra scrape job's target to be up with its owner",
        DEADLINE,
        || {
            !prometheus.query(r#"up{job="exporter-self", team="platform", service="exporter-self", env="test", cluster="prod"} == 1"#,
            )
            .is_empty()
        },
        || prometheus.log(),
    );
    wait_explained(
        "ProbeFailing to be pending for the two failing probes only",
        DEADLINE,
        || {
            let alerts = prometheus.query(r#"ALERTS{alertname="ProbeFailing"}"#);
            let mut probes: Vec<&str> = alerts
                .iter()
                .filter_map(|a| a["metric"]["probe"].as_str())
                .collect();
            probes.sort_unstable();
            probes == ["ledger-port", "partner-api"]
        },
        || prometheus.log(),
    );
    // A probe's `up` is the exporter answering, not a pod of the service: it is no target of
    // the service's. The extra job's target is counted, in the same evaluation that would count
    // the probes of checkout (which has no pods here).
    wait_explained(
        "the extra job's target to be counted as its service's",
        DEADLINE,
        || {
            !prometheus
                .query(
                    r#"stackgen:service_targets:count{service="exporter-self", team="platform"}"#,
                )
                .is_empty()
        },
        || prometheus.log(),
    );
    assert!(
        prometheus
            .query(r#"stackgen:service_targets:count{service="checkout"}"#)
            .is_empty(),
        "probes counted as service targets"
    );
}
