//! `stackgen slo status` against the real Prometheus evaluating the rendered `slos.yaml` (and the
//! request series of `services.yaml` it reads): a service failing 1% of its requests burns a 99.9%
//! objective ten times as fast as allowed.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::e2e::spawn;
use super::http_stub::{HttpStub, Reply};
use super::support::{free_port, render_to_temp, stackgen, stderr, stdout, tool, wait_until};

#[test]
fn slo_status_reads_the_budget_and_burn_rates_from_prometheus() {
    let (tmp, out) = render_to_temp("tests/fixtures/slos/stack.yaml");
    let dir = tmp.path();
    // The daily group every second, so the test need not wait five minutes.
    let rules = std::fs::read_to_string(out.join("prometheus/rules/slos.yaml"))
        .expect("rendered slos.yaml")
        .replace("interval: \"5m\"", "interval: \"1s\"");
    assert!(
        rules.contains("interval: \"1s\""),
        "the daily group has its own interval"
    );
    std::fs::write(dir.join("slos.yaml"), rules).expect("write rules");
    // The request series the objectives read.
    std::fs::copy(
        out.join("prometheus/rules/services.yaml"),
        dir.join("services.yaml"),
    )
    .expect("copy services.yaml");

    // checkout: 10 requests a second, 1% of them answered 500, counting in real time.
    let began = Instant::now();
    let exporter = HttpStub::start(move |_| {
        let seconds = began.elapsed().as_secs_f64();
        let labels = |code: &str| {
            format!(
                "http_requests_total{{cluster=\"slo\",namespace=\"shop\",service=\"checkout\",team=\"shop\",pod=\"checkout-0\",code=\"{code}\"}}"
            )
        };
        Reply::new(
            200,
            format!(
                "{} {}\n{} {}\n",
                labels("200"),
                9.9 * seconds,
                labels("500"),
                0.1 * seconds
            ),
        )
        .header("Content-Type", "text/plain; version=0.0.4")
    });
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [services.yaml, slos.yaml]\nscrape_configs:\n  - job_name: checkout\n    honor_labels: true\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
        exporter.port
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let port = free_port();
    let prometheus = spawn(
        "prometheus",
        &tool("prometheus", "apt-get install prometheus"),
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
        dir,
        port,
    );
    let url = prometheus.url("");
    let status = |args: &[&str]| {
        let mut all = vec!["slo", "status", "--prometheus", url.as_str()];
        all.extend(args);
        stackgen(&all)
    };
    let checkout = wait_until(
        "slo status to show checkout's budget and 1-hour burn rate",
        Duration::from_secs(60),
        || {
            let output = status(&["--service", "shop/checkout", "--format", "json"]);
            let rows: Value = serde_json::from_str(&stdout(&output)).ok()?;
            let row = rows
                .as_array()?
                .iter()
                .find(|r| r["slo"] == "availability")?
                .clone();
            (row.get("budget_left").is_some() && row.get("burn_3d").is_some()).then_some(row)
        },
    );
    assert_eq!(checkout["service"], "checkout");
    assert_eq!(checkout["objective"].as_f64(), Some(0.999));
    let burn = checkout["burn_1h"].as_f64().expect("a 1-hour burn rate");
    assert!(
        (burn - 10.0).abs() < 0.5,
        "1% errors burn a 0.1% budget 10 times as fast: {burn}"
    );
    let left = checkout["budget_left"].as_f64().expect("the budget left");
    assert!(
        (left + 9.0).abs() < 0.5,
        "ten times the budget spent leaves -900%: {left}"
    );

    // The terminal table: every objective, checkout's latency one without traffic yet.
    let table = status(&[]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.starts_with("SERVICE"), "{text}");
    assert!(
        text.contains("shop/checkout  availability  99.9%"),
        "{text}"
    );
    assert!(text.contains("shop/quiet"), "{text}");
    let latency = text
        .lines()
        .find(|l| l.contains("shop/checkout") && l.contains("latency"))
        .expect("checkout's latency objective");
    assert!(
        latency.contains("99%") && latency.contains(" -"),
        "{latency}"
    );

    let unknown = status(&["--service", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no objective of nosuch"),
        "{}",
        stderr(&unknown)
    );
    let bad_url = stackgen(&["slo", "status", "--prometheus", "ftp://example.com"]);
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(
        stderr(&bad_url).contains("http:// or https:// URL"),
        "{}",
        stderr(&bad_url)
    );
    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = stackgen(&["slo", "status", "--prometheus", &closed]);
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        stderr(&unreachable).contains("asking"),
        "{}",
        stderr(&unreachable)
    );
}
