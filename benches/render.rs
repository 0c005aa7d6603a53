//! Render benchmark: a generated spec with 1,000 services and 50 teams, parsed and rendered.
//!
//! Run with `cargo bench --bench render`; prints the median and the fastest of the runs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

const TEAMS: usize = 50;
const SERVICES: usize = 1_000;
const RUNS: usize = 30;

fn generated_spec() -> String {
    let mut spec = String::from("cluster: {name: bench, platform: digitalocean}\nteams:\n");
    for t in 0..TEAMS {
        let _ = writeln!(
            spec,
            "  - name: team-{t}\n    slack: {{url: {{secret: team-{t}-alerting, key: slack-url}}}}\n    pagerduty: {{routing_key: {{secret: team-{t}-alerting, key: pd-key}}}}"
        );
    }
    spec.push_str("services:\n");
    for s in 0..SERVICES {
        let _ = writeln!(
            spec,
            "  - name: service-{s}\n    team: team-{}\n    namespace: ns-{}\n    selector: {{app: service-{s}}}\n    port: http-metrics",
            s % TEAMS,
            s % 100
        );
    }
    spec
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "median {:.1} ms, fastest {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[0])
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let source = generated_spec();
    let mut parse_times = Vec::new();
    let mut render_times = Vec::new();
    let mut files = 0;
    let mut bytes = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let spec = stackgen::spec::parse("bench.yaml", &source).expect("generated spec is valid");
        parse_times.push(start.elapsed());
        let start = Instant::now();
        let stack = stackgen::render::render(&spec).expect("renders");
        render_times.push(start.elapsed());
        files = stack.files().len();
        bytes = stack.files().values().map(String::len).sum::<usize>();
    }
    println!(
        "spec: {SERVICES} services, {TEAMS} teams ({} bytes); output: {files} files, {bytes} bytes",
        source.len()
    );
    println!("parse + validate: {}", summary(parse_times));
    println!("render:           {}", summary(render_times));
}
