//! Several router processes on one PostgreSQL database (real server, see `pg.rs`), through the
//! built binary on loopback: the same storm sent to two replicas at once notifies each transition
//! exactly once at every destination; a replica killed with SIGKILL while it holds a notification
//! during a destination outage leaves it to the other after the lease, and no pager event is
//! accepted twice; a database restart under load is answered with 503 (so Alertmanager retries),
//! the router recovers by itself and loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::pg;
use super::router::{Router, Sink, TOKEN};
use super::support::{free_port, wait_explained, wait_for};

/// Services in a storm and alerts (pods) per service.
const SERVICES: usize = 8;
const PODS: usize = 25;
const LEASE_MS: u64 = 2_000;

/// A replica on `database`, started and ready: a webhook sink and a PagerDuty stub.
fn replica(dir: &Path, database: &str, hook: &Sink, pager: &Sink) -> Router {
    Router::start(dir, &replica_config(dir, database, hook, pager))
}

/// The router.yaml of a replica (with `PORT` for the port), its database URL written beside it.
fn replica_config(dir: &Path, database: &str, hook: &Sink, pager: &Sink) -> String {
    std::fs::write(dir.join("db-url"), format!("{database}\n")).expect("url file");
    format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nbody_limit: 1Mi\nstore: {{postgres: {{url_file: ./db-url, lease: {LEASE_MS}ms}}}}\ndedup: {{resolve_hold: 1s}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 300ms, concurrency: 4, timeout: 1500ms}}\nteams:\n  oncall:\n    destinations:\n      - name: hook\n        kind: webhook\n        url: {}\n      - name: pager\n        kind: pagerduty\n        routing_key: R0UTINGKEY0000000000000000000000\n        api_url: http://127.0.0.1:{}/v2/enqueue\n        severities: [critical, warning, info]\nownership: {{default_team: oncall}}\n",
        hook.url(),
        pager.port
    )
}

/// Webhook bodies for `services` services of `PODS` pods each (`severity`, the first `PODS`
/// pods from `first_pod` on): per service the whole group and the group in chunks of five, as
/// Alertmanager sends a growing group.
fn storm_of(
    services: std::ops::Range<usize>,
    firing: bool,
    severity: &str,
    first_pod: usize,
) -> Vec<Vec<u8>> {
    let status = if firing { "firing" } else { "resolved" };
    let ends = if firing {
        "0001-01-01T00:00:00Z"
    } else {
        "2026-11-23T03:00:00Z"
    };
    let alert = |service: usize, pod: usize| {
        format!(
            r#"{{"status":"{status}","labels":{{"alertname":"ServiceDown","service":"svc-{service}","pod":"svc-{service}-{pod}","severity":"{severity}"}},"annotations":{{"summary":"svc-{service} is down"}},"startsAt":"2026-11-23T02:21:59Z","endsAt":"{ends}","generatorURL":"","fingerprint":""}}"#
        )
    };
    let body = |service: usize, pods: std::ops::Range<usize>| {
        let alerts: Vec<String> = pods.map(|p| alert(service, p)).collect();
        format!(
            r#"{{"version":"4","status":"{status}","receiver":"stackgen","groupKey":"svc-{service}","truncatedAlerts":0,"groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://alertmanager.test","alerts":[{}]}}"#,
            alerts.join(",")
        )
        .into_bytes()
    };
    let mut bodies = Vec::new();
    for service in services {
        let end = first_pod + PODS;
        for start in (first_pod..end).step_by(5) {
            bodies.push(body(service, start..(start + 5).min(end)));
        }
        bodies.push(body(service, first_pod..end));
    }
    bodies
}

/// A storm of critical alerts.
fn storm(services: std::ops::Range<usize>, firing: bool) -> Vec<Vec<u8>> {
    storm_of(services, firing, "critical", 0)
}

/// POSTs `body` until the router accepts it (as Alertmanager retries a 5xx); returns every status.
fn post_until_accepted(router: &Router, body: &[u8]) -> Vec<u16> {
    let auth = format!("Bearer {TOKEN}");
    let mut statuses = Vec::new();
    wait_explained(
        "the router accepting the body",
        Duration::from_secs(60),
        || {
            let (status, answer) = router.post(body, "application/json", Some(&auth));
            statuses.push(status);
            assert!(
                status == 200 || status == 503,
                "only the store may refuse: {status} {answer}"
            );
            status == 200
        },
        || router.log(),
    );
    statuses
}

/// Sends every body to every router at the same moment (one thread per router, each twice, in
/// its own order).
fn send_to_all(routers: &[&Router], bodies: &[Vec<u8>]) {
    let start = std::sync::Barrier::new(routers.len());
    std::thread::scope(|scope| {
        for (index, router) in routers.iter().enumerate() {
            let start = &start;
            scope.spawn(move || {
                let mut order: Vec<&Vec<u8>> = bodies.iter().chain(bodies.iter()).collect();
                order.rotate_left(index * bodies.len() / routers.len().max(1));
                start.wait();
                for body in order {
                    post_until_accepted(router, body);
                }
            });
        }
    });
}

/// Accepted webhook notifications, counted by (incident, kind).
fn hook_transitions(hook: &Sink) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in hook.received().into_iter().filter(|r| r.answered < 300) {
        let key = (
            r.body["incident_key"].as_str().unwrap_or("").to_string(),
            r.body["kind"].as_str().unwrap_or("").to_string(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Accepted PagerDuty events, counted by (dedup_key, transition): `resolve`, or the
/// notification kind of a `trigger` (an escalation triggers the same dedup key again).
fn pager_events(pager: &Sink) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for r in pager.received().into_iter().filter(|r| r.answered < 300) {
        let action = r.body["event_action"].as_str().unwrap_or("");
        let transition = if action == "trigger" {
            r.body["payload"]["custom_details"]["notification"]
                .as_str()
                .unwrap_or("")
        } else {
            action
        };
        let key = (
            r.body["dedup_key"].as_str().unwrap_or("").to_string(),
            transition.to_string(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn count_kind<K: Ord>(counts: &BTreeMap<(K, String), usize>, kind: &str) -> usize {
    counts.keys().filter(|(_, k)| k == kind).count()
}

/// Every transition exactly once: `services` incidents through `kinds` at the webhook, the same
/// transitions at the pager, each (dedup_key, transition) accepted once.
fn assert_once_per_transition(hook: &Sink, pager: &Sink, services: usize, kinds: &[&str]) {
    let transitions = hook_transitions(hook);
    let expected: BTreeSet<(String, String)> = (0..services)
        .flat_map(|s| {
            kinds
                .iter()
                .map(move |kind| (format!("oncall/svc-{s}"), kind.to_string()))
        })
        .collect();
    assert_eq!(
        transitions.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the webhook got exactly these transitions"
    );
    assert!(
        transitions.values().all(|&n| n == 1),
        "a transition notified more than once: {transitions:?}"
    );
    let events = pager_events(pager);
    for kind in kinds {
        let action = if *kind == "resolved" { "resolve" } else { kind };
        assert_eq!(count_kind(&events, action), services, "{kind}: {events:?}");
    }
    assert_eq!(events.len(), services * kinds.len(), "{events:?}");
    assert!(
        events.values().all(|&n| n == 1),
        "a pager dedup key was accepted twice for one transition: {events:?}"
    );
}

#[test]
fn two_replicas_given_the_same_storm_notify_each_transition_once() {
    let database = pg::shared().database();
    let hook = Sink::start(200);
    let pager = Sink::start(202);
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = replica(dir_a.path(), &database, &hook, &pager);
    let b = replica(dir_b.path(), &database, &hook, &pager);

    // Opened as warnings, escalated by critical members: the escalation is decided on incidents
    // both replicas already store, so only the row lock keeps it single.
    send_to_all(&[&a, &b], &storm_of(0..SERVICES, true, "warning", 0));
    wait_for("every incident opened", Duration::from_secs(20), || {
        count_kind(&hook_transitions(&hook), "opened") == SERVICES
            && count_kind(&pager_events(&pager), "opened") == SERVICES
    });
    send_to_all(&[&a, &b], &storm_of(0..SERVICES, true, "critical", PODS));
    wait_for("every incident escalated", Duration::from_secs(20), || {
        count_kind(&hook_transitions(&hook), "escalated") == SERVICES
            && count_kind(&pager_events(&pager), "escalated") == SERVICES
    });
    let mut resolved = storm_of(0..SERVICES, false, "warning", 0);
    resolved.extend(storm_of(0..SERVICES, false, "critical", PODS));
    send_to_all(&[&a, &b], &resolved);
    wait_for("every incident resolved", Duration::from_secs(20), || {
        count_kind(&hook_transitions(&hook), "resolved") == SERVICES
            && count_kind(&pager_events(&pager), "resolve") == SERVICES
    });
    // Late duplicates (a second replica's tick or delivery) would arrive within this.
    std::thread::sleep(Duration::from_millis(1500));
    assert_once_per_transition(
        &hook,
        &pager,
        SERVICES,
        &["opened", "escalated", "resolved"],
    );
    assert_eq!(
        hook.received().len(),
        3 * SERVICES,
        "nothing else reached the webhook"
    );
    for router in [&a, &b] {
        assert!(!router.log().contains("panicked"), "{}", router.log());
    }
}

#[test]
fn a_replica_killed_mid_delivery_leaves_its_claims_to_the_other_after_the_lease() {
    let database = pg::shared().database();
    let hook = Sink::start(200);
    // The pager is down: it answers 503, slowly, so a replica holds its claim a while.
    let pager = Sink::start(503);
    pager.delay.store(800, Ordering::SeqCst);
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut a = replica(dir_a.path(), &database, &hook, &pager);
    let b = replica(dir_b.path(), &database, &hook, &pager);
    let services = SERVICES / 2;
    send_to_all(&[&a, &b], &storm(0..services, true));

    // Wait until the first replica holds a pager notification, then kill it with SIGKILL. It may
    // hold two: an entry another replica committed with an earlier timestamp comes first, and is
    // claimed beside the one already held; any one of them shows the lease at work.
    let mut db = postgres::Client::connect(&database, postgres::NoTls).expect("connect");
    let pid = a.child.id();
    let mut held: Option<(String, i64)> = None;
    wait_for(
        "the first replica to hold a pager notification",
        Duration::from_secs(30),
        || {
            held = db
                .query_opt(
                    "SELECT id, lease_until - (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
                     FROM outbox WHERE state = 'pending' AND destination = 'oncall/pager' \
                     AND claimed_by LIKE '%-' || $1 || '-%' \
                     AND lease_until > (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
                     ORDER BY id LIMIT 1",
                    &[&pid.to_string()],
                )
                .expect("query")
                .map(|row| (row.get(0), row.get(1)));
            held.is_some()
        },
    );
    a.kill();
    let killed_at = Instant::now();
    let (held_id, lease_left) = held.expect("a held notification");
    // The outage ends.
    pager.delay.store(0, Ordering::SeqCst);
    pager.status.store(202, Ordering::SeqCst);

    wait_for(
        "the surviving replica to trigger every incident",
        Duration::from_secs(30),
        || count_kind(&pager_events(&pager), "opened") == services,
    );
    let taken_over = pager
        .received()
        .into_iter()
        .find(|r| r.answered < 300 && r.headers.get("idempotency-key") == Some(&held_id))
        .expect("the held notification was delivered");
    let waited = taken_over.at.saturating_duration_since(killed_at);
    assert!(
        waited.as_millis() as i64 >= lease_left - 200,
        "taken over after {waited:?}, before the dead replica's lease ({lease_left} ms) ran out"
    );
    send_to_all(&[&b], &storm(0..services, false));
    wait_for("every incident resolved", Duration::from_secs(30), || {
        count_kind(&pager_events(&pager), "resolve") == services
            && count_kind(&hook_transitions(&hook), "resolved") == services
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_once_per_transition(&hook, &pager, services, &["opened", "resolved"]);
    let failed = pager
        .received()
        .iter()
        .filter(|r| r.answered == 503)
        .count();
    assert!(failed >= 1, "the outage was seen");
    assert!(!b.log().contains("panicked"), "{}", b.log());
}

#[test]
fn a_database_restart_under_load_is_answered_with_503_and_loses_nothing() {
    let mut server = pg::PgServer::start();
    let database = server.database();
    let hook = Sink::start(200);
    let pager = Sink::start(202);
    let dir = tempfile::tempdir().expect("dir");
    let router = replica(dir.path(), &database, &hook, &pager);
    const LOAD: usize = 40;
    let bodies: Vec<Vec<u8>> = (0..LOAD)
        .map(|s| storm(s..s + 1, true).pop().expect("a body"))
        .collect();
    let (statuses, ready_while_down) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut statuses = Vec::new();
            for body in &bodies {
                statuses.extend(post_until_accepted(&router, body));
                std::thread::sleep(Duration::from_millis(30));
            }
            statuses
        });
        wait_for("some load accepted", Duration::from_secs(20), || {
            count_kind(&hook_transitions(&hook), "opened") >= 5
        });
        server.stop();
        let mut ready_while_down = (0, String::new());
        wait_for("/readyz to fail", Duration::from_secs(20), || {
            ready_while_down = router.get("/readyz");
            ready_while_down.0 == 503
        });
        std::thread::sleep(Duration::from_millis(1500));
        server.restart();
        wait_for("/readyz to pass again", Duration::from_secs(30), || {
            router.get("/readyz").0 == 200
        });
        (load.join().expect("load thread"), ready_while_down)
    });
    assert!(
        ready_while_down
            .1
            .contains("the store is unavailable: store: "),
        "/readyz says why: {}",
        ready_while_down.1
    );
    assert!(
        statuses.contains(&503),
        "the load never met the outage: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), LOAD);
    wait_for("every incident notified", Duration::from_secs(30), || {
        count_kind(&hook_transitions(&hook), "opened") == LOAD
            && count_kind(&pager_events(&pager), "opened") == LOAD
    });
    std::thread::sleep(Duration::from_millis(1000));
    // A delivery whose outcome could not be recorded while the database was down is sent again
    // after it (at least once, as promised): the same notification, under the same
    // Idempotency-Key, so a receiver keeps one. No transition is ever two notifications.
    let mut keys: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for r in hook.received().into_iter().filter(|r| r.answered < 300) {
        keys.entry((
            r.body["incident_key"].as_str().unwrap_or("").to_string(),
            r.body["kind"].as_str().unwrap_or("").to_string(),
        ))
        .or_default()
        .extend(r.headers.get("idempotency-key").cloned());
    }
    assert!(
        keys.values().all(|k| k.len() == 1),
        "a transition notified as two notifications: {keys:?}"
    );
    let (status, incidents) = router.get("/api/v1/incidents");
    assert_eq!(status, 200);
    let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
    let stored = incidents["incidents"].as_array().map_or(0, Vec::len);
    assert_eq!(stored, LOAD, "every accepted alert's incident is stored");
    assert!(!router.log().contains("panicked"), "{}", router.log());
}

#[test]
fn a_router_started_before_its_database_serves_503_then_takes_up_its_work() {
    let mut server = pg::PgServer::start();
    let database = server.database();
    server.stop();
    let hook = Sink::start(200);
    let pager = Sink::start(202);
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = replica_config(dir.path(), &database, &hook, &pager);
    std::fs::write(
        dir.path().join("router.yaml"),
        config.replace("PORT", &port.to_string()),
    )
    .expect("config");
    let router = Router::start_serving(dir.path(), port);
    let (status, reason) = router.get("/readyz");
    assert_eq!(status, 503, "{reason}");
    assert!(
        reason.contains("the store is unavailable: store: connecting to PostgreSQL at 127.0.0.1:"),
        "/readyz says why: {reason}"
    );
    let body = storm(0..1, true).pop().expect("a body");
    let (status, answer) = router.post(&body, "application/json", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(status, 503, "{answer}");
    assert!(
        router.log().contains("the database does not answer yet"),
        "{}",
        router.log()
    );

    server.restart();
    wait_for("/readyz to pass", Duration::from_secs(30), || {
        router.get("/readyz").0 == 200
    });
    assert_eq!(post_until_accepted(&router, &body).last(), Some(&200));
    wait_for("the incident notified", Duration::from_secs(20), || {
        count_kind(&hook_transitions(&hook), "opened") == 1
            && count_kind(&pager_events(&pager), "opened") == 1
    });
}
