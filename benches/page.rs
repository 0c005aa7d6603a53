//! Incidents page benchmark: 1,000 open incidents with 50,000 members in all, the list page and
//! one incident's page rendered (escaping every text), as the router serves them.
//!
//! Run with `cargo bench --bench page`; prints the median and the fastest of the runs.

use std::time::{Duration, Instant};

use serde_json::json;
use stackgen::router::dedup::{Incident, Member};
use stackgen::router::engine::{IncidentView, MemberView};
use stackgen::router::page::{self, Filter, Viewer};

const INCIDENTS: usize = 1_000;
const MEMBERS: usize = 50;
const RUNS: usize = 30;

fn views() -> Vec<IncidentView> {
    (0..INCIDENTS)
        .map(|i| {
            let team = format!("team-{}", i % 50);
            let service = format!("service-{i}");
            let incident: Incident = serde_json::from_value(json!({
                "key": format!("{team}/{service}"),
                "team": team,
                "service": service,
                "alertname": "ServiceHighErrorRate",
                "labels": {"team": team, "service": service, "namespace": format!("ns-{}", i % 100), "severity": "critical"},
                "annotations": {"summary": format!("{service} answers 12% of requests with 5xx <b>&</b>"), "runbook_url": "https://runbooks.example/ServiceHighErrorRate"},
                "generator_url": "http://prometheus.example:9090/graph?g0.expr=x",
                "status": {"state": "open"},
                "severity": if i % 3 == 0 { "critical" } else { "warning" },
                "notified_severity": "critical",
                "opened_at": 1_796_083_200_000_i64 + i as i64 * 1_000,
                "last_notified_at": 1_796_083_200_000_i64,
                "sequence": 1,
                "episode": 1,
            }))
            .expect("an incident");
            let members: Vec<MemberView> = (0..MEMBERS)
                .map(|m| {
                    let member: Member = serde_json::from_value(json!({
                        "identity": format!("pod={service}-7d9f8b6c5-{m:02}", service = incident.service),
                        "alertname": if m % 2 == 0 { "ServiceHighErrorRate" } else { "ServiceTargetsDown" },
                        "severity": "critical",
                        "firing": m % 5 != 0,
                        "starts_at": 1_796_083_200_000_i64,
                        "ends_at": null,
                        "last_seen": 1_796_083_200_000_i64,
                    }))
                    .expect("a member");
                    MemberView {
                        fingerprint: format!("{m:016x}"),
                        member,
                    }
                })
                .collect();
            IncidentView {
                firing_members: members.iter().filter(|m| m.member.firing).count(),
                total_members: members.len(),
                incident,
                members,
                deliveries: Vec::new(),
            }
        })
        .collect()
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, fastest {:.2} ms",
        ms(times[times.len() / 2]),
        ms(times[0])
    )
}

fn main() {
    let views = views();
    let teams: Vec<String> = (0..50).map(|t| format!("team-{t}")).collect();
    let viewer = Viewer {
        name: "dana",
        responds_for: &teams,
        form_token: "0123456789abcdef",
        grafana_url: Some("https://grafana.example"),
    };
    let mut list = Vec::new();
    let mut one = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let html = page::incidents(&views, &Filter::default(), &viewer);
        list.push(start.elapsed());
        bytes = html.len();
        let start = Instant::now();
        let html = page::incident(&views[500], &[], &viewer, 1_796_083_300_000);
        one.push(start.elapsed());
        assert!(html.contains("Acknowledge"));
    }
    println!(
        "incidents page, {INCIDENTS} open incidents with {} members ({bytes} bytes): {}",
        INCIDENTS * MEMBERS,
        summary(list)
    );
    println!("one incident's page, {MEMBERS} members: {}", summary(one));
}
