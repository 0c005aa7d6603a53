//! On call through the built binary: `stackgen incidents` lists the router's incidents and
//! acknowledges one as a person of the users file; the team's chat is told once, PagerDuty and
//! Opsgenie acknowledge through their APIs (contract-exact, at their stubs), the reminders stop
//! and stay stopped across a SIGKILL, and come back once the acknowledgement is taken back. A
//! viewer's acknowledgement is refused. On two replicas of one PostgreSQL database, an escalation
//! policy pages once, on time, through a SIGKILL of one replica, and not for an incident
//! acknowledged in time.

use std::process::{Command, Output};
use std::time::Duration;

use super::router::{Router, Sink, TOKEN};
use super::support::{stderr, stdout, wait_for, wait_until};

/// dana responds for team oncall; vic only views. Their passwords are their names reversed.
fn users_file() -> String {
    let line = |name: &str| {
        let password: String = name.chars().rev().collect();
        format!("{name}:{}\n", bcrypt::hash(password, 4).expect("hash"))
    };
    line("dana") + &line("vic")
}

fn incidents_cli(router: &Router, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stackgen"));
    command
        .arg("incidents")
        .args(args)
        .arg("--router")
        .arg(format!("http://127.0.0.1:{}", router.port))
        .env_remove("STACKGEN_ROUTER_PASSWORD")
        .env_remove("STACKGEN_ROUTER_TOKEN")
        .current_dir(dir);
    command.output().expect("stackgen runs")
}

/// The fixture's storm of checkout's three pods, as alerts of `service`.
fn storm_of(service: &str) -> Vec<u8> {
    let path = super::support::root().join(
        "tests/fixtures/alertmanager-webhook/01-one-service-three-instances-firing.body.json",
    );
    std::fs::read_to_string(path)
        .expect("fixture")
        .replace("checkout", service)
        .into_bytes()
}

/// The notifications of `kind` the chat received, for `service`.
fn told(chat: &Sink, kind: &str, service: &str) -> Vec<serde_json::Value> {
    chat.received()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["kind"] == kind && b["service"] == service)
        .collect()
}

#[test]
fn an_acknowledgement_from_the_cli_reaches_chat_and_pagers_and_holds_the_reminders_across_a_sigkill()
 {
    let chat = Sink::start(200);
    let pagerduty = Sink::start(202);
    let opsgenie = Sink::start(202);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("users"), users_file()).expect("users file");
    std::fs::write(dir.path().join("dana.password"), "anad\n").expect("password file");
    std::fs::write(dir.path().join("vic.password"), "civ\n").expect("password file");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{path: ./router.db}}\ndedup: {{reminder: 5s, stale_after: 1h}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 200ms}}\nteams:\n  oncall:\n    destinations:\n      - {{name: chat, kind: webhook, url: {}}}\n      - {{name: pager, kind: pagerduty, routing_key: R0UTINGKEY0000000000000000000000, api_url: {}/v2/enqueue}}\n      - {{name: opsgenie, kind: opsgenie, api_key: 00000000-1111-2222-3333-444444444444, api_url: {}}}\nownership: {{default_team: oncall}}\npeople:\n  users_file: users\n  responders:\n    oncall: [dana]\n  viewers: [vic]\n",
        chat.url(),
        format_args!("http://127.0.0.1:{}", pagerduty.port),
        format_args!("http://127.0.0.1:{}", opsgenie.port),
    );
    let mut router = Router::start(dir.path(), &config);
    let post = |router: &Router, service: &str| {
        let (status, answer) = router.post(
            &storm_of(service),
            "application/json",
            Some(&format!("Bearer {TOKEN}")),
        );
        assert_eq!(status, 200, "{answer}");
    };
    post(&router, "checkout");
    wait_for("the page and the chat", Duration::from_secs(15), || {
        !told(&chat, "opened", "checkout").is_empty()
            && !pagerduty.received().is_empty()
            && !opsgenie.received().is_empty()
    });

    // The list, with the token; the key to act on.
    let listed = incidents_cli(&router, dir.path(), &["list", "--token-file", "token"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(table.starts_with("INCIDENT"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("checkout"))
        .unwrap_or_else(|| panic!("no checkout incident in\n{table}"));
    assert!(row.contains("3 of 3") && row.contains("critical"), "{row}");
    let key = row.split_whitespace().next().expect("a key").to_string();

    // A viewer may read but not act.
    let refused = incidents_cli(
        &router,
        dir.path(),
        &[
            "ack",
            &key,
            "--user",
            "vic",
            "--password-file",
            "vic.password",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("403") && stderr(&refused).contains("no responder"),
        "{}",
        stderr(&refused)
    );

    let acked = incidents_cli(
        &router,
        dir.path(),
        &[
            "ack",
            &key,
            "--user",
            "dana",
            "--password-file",
            "dana.password",
        ],
    );
    assert!(acked.status.success(), "{}", stderr(&acked));
    assert_eq!(stdout(&acked), format!("acknowledged {key} as dana\n"));

    // The chat is told who; PagerDuty and Opsgenie acknowledge the alert they opened.
    let told_chat = wait_until("the chat told", Duration::from_secs(15), || {
        told(&chat, "acknowledged", "checkout").pop()
    });
    assert_eq!(told_chat["by"], "dana");
    let pd = wait_until("PagerDuty acknowledged", Duration::from_secs(15), || {
        pagerduty
            .received()
            .into_iter()
            .find(|r| r.body["event_action"] == "acknowledge")
    });
    let trigger = &pagerduty.received()[0];
    assert_eq!(pd.request_line, "POST /v2/enqueue");
    assert_eq!(
        pd.body,
        serde_json::json!({
            "routing_key": "R0UTINGKEY0000000000000000000000",
            "event_action": "acknowledge",
            "dedup_key": trigger.body["dedup_key"],
        })
    );
    let og = wait_until("Opsgenie acknowledged", Duration::from_secs(15), || {
        opsgenie
            .received()
            .into_iter()
            .find(|r| r.request_line.contains("/acknowledge"))
    });
    let alias = opsgenie.received()[0].body["alias"]
        .as_str()
        .expect("an alias")
        .to_string();
    assert_eq!(
        og.request_line,
        format!("POST /v2/alerts/{alias}/acknowledge?identifierType=alias")
    );
    assert_eq!(
        og.headers.get("authorization").map(String::as_str),
        Some("GenieKey 00000000-1111-2222-3333-444444444444")
    );
    assert_eq!(og.body["user"], "dana");
    assert_eq!(og.body["source"], "stackgen");

    // SIGKILL and a restart: the acknowledgement is durable. Another service, not acknowledged,
    // is reminded 5 s after it opens; checkout's reminder was due before that, and none came
    // after the acknowledgement.
    let acknowledged_at = told_chat["at"].as_i64().expect("at");
    router.kill();
    let mut router = Router::start_with(dir.path(), router.port);
    post(&router, "search");
    wait_for(
        "the unacknowledged incident reminded",
        Duration::from_secs(30),
        || !told(&chat, "reminder", "search").is_empty(),
    );
    let reminded_after_the_ack: Vec<serde_json::Value> = told(&chat, "reminder", "checkout")
        .into_iter()
        .filter(|n| n["at"].as_i64() > Some(acknowledged_at))
        .collect();
    assert_eq!(reminded_after_the_ack, Vec::<serde_json::Value>::new());
    let shown = incidents_cli(
        &router,
        dir.path(),
        &["show", &key, "--token-file", "token"],
    );
    assert!(
        stdout(&shown).contains("acknowledged  dana"),
        "{}",
        stdout(&shown)
    );

    // Taken back: the chat is told, PagerDuty is not (its Events API cannot), Opsgenie
    // unacknowledges, and the reminders come back.
    let unacked = incidents_cli(
        &router,
        dir.path(),
        &[
            "unack",
            &key,
            "--user",
            "dana",
            "--password-file",
            "dana.password",
        ],
    );
    assert!(unacked.status.success(), "{}", stderr(&unacked));
    wait_for("Opsgenie unacknowledged", Duration::from_secs(15), || {
        opsgenie.received().iter().any(|r| {
            r.request_line == format!("POST /v2/alerts/{alias}/unacknowledge?identifierType=alias")
        })
    });
    let unacknowledged_at = wait_until("the chat told of it", Duration::from_secs(15), || {
        told(&chat, "unacknowledged", "checkout").pop()
    })["at"]
        .as_i64();
    wait_for("checkout reminded again", Duration::from_secs(30), || {
        told(&chat, "reminder", "checkout")
            .iter()
            .any(|n| n["at"].as_i64() > unacknowledged_at)
    });
    assert_eq!(told(&chat, "unacknowledged", "checkout").len(), 1);
    let (_, incidents) = router.get("/api/v1/incidents");
    let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
    let checkout = incidents["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["key"] == key.as_str())
        .expect("checkout's incident");
    let to_pagerduty: Vec<&str> = checkout["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["destination"] == "oncall/pager")
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert!(
        to_pagerduty.contains(&"acknowledged") && !to_pagerduty.contains(&"unacknowledged"),
        "{to_pagerduty:?}"
    );
    router.kill();
}

/// A replica on `database` with team oncall's escalation policy: the hook at once, the pager
/// (PagerDuty, every severity) after 4 s without acknowledgement. dana responds for oncall.
fn escalating_replica(dir: &std::path::Path, database: &str, hook: &Sink, pager: &Sink) -> Router {
    std::fs::write(dir.join("db-url"), format!("{database}\n")).expect("url file");
    std::fs::write(dir.join("users"), users_file()).expect("users file");
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{postgres: {{url_file: ./db-url, lease: 2s}}}}\ndedup: {{stale_after: 1h}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 300ms, timeout: 1500ms}}\nteams:\n  oncall:\n    destinations:\n      - {{name: hook, kind: webhook, url: {}}}\n      - {{name: pager, kind: pagerduty, routing_key: R0UTINGKEY0000000000000000000000, api_url: 'http://127.0.0.1:{}/v2/enqueue', severities: [critical, warning, info]}}\nownership: {{default_team: oncall}}\nescalation:\n  oncall:\n    - {{after: 0s, destinations: [oncall/hook]}}\n    - {{after: 4s, destinations: [oncall/pager]}}\npeople:\n  users_file: users\n  responders:\n    oncall: [dana]\n",
        hook.url(),
        pager.port
    );
    Router::start(dir, &config)
}

/// The PagerDuty events for `service`'s incident: (event_action, the notification's kind).
fn pages_of(pager: &Sink, service: &str) -> Vec<(String, String)> {
    pager
        .received()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["payload"]["component"] == service || b["payload"].is_null())
        .map(|b| {
            (
                b["event_action"].as_str().unwrap_or("").to_string(),
                b["payload"]["custom_details"]["notification"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn escalation_and_acknowledgement_hold_across_a_sigkill_and_a_failover_between_replicas() {
    let database = super::pg::shared().database();
    let hook = Sink::start(200);
    let pager = Sink::start(202);
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut a = escalating_replica(dir_a.path(), &database, &hook, &pager);
    let b = escalating_replica(dir_b.path(), &database, &hook, &pager);
    for service in ["checkout", "search"] {
        let (status, answer) = a.post(
            &storm_of(service),
            "application/json",
            Some(&format!("Bearer {TOKEN}")),
        );
        assert_eq!(status, 200, "{answer}");
    }
    wait_for(
        "both incidents opened at the hook",
        Duration::from_secs(15),
        || {
            !told(&hook, "opened", "checkout").is_empty()
                && !told(&hook, "opened", "search").is_empty()
        },
    );
    assert_eq!(pager.received().len(), 0, "the pager is the second step");
    let opened_at = told(&hook, "opened", "checkout")[0]["opened_at"]
        .as_i64()
        .expect("opened_at");

    // dana acknowledges search on the other replica; then the first one is killed (it may hold
    // the lock the timed transitions run under: the other takes them over).
    let (_, listed) = b.get("/api/v1/incidents");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let search = listed["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["service"] == "search")
        .and_then(|i| i["key"].as_str())
        .expect("search's incident")
        .to_string();
    std::fs::write(dir_b.path().join("dana.password"), "anad").expect("password file");
    let acked = incidents_cli(
        &b,
        dir_b.path(),
        &[
            "ack",
            &search,
            "--user",
            "dana",
            "--password-file",
            "dana.password",
        ],
    );
    assert!(acked.status.success(), "{}", stderr(&acked));
    a.kill();

    // checkout, nobody on it, reaches the pager once, 4 s after it opened; search never does.
    wait_for(
        "checkout escalated to the pager",
        Duration::from_secs(30),
        || !pages_of(&pager, "checkout").is_empty(),
    );
    let page = pager.received()[0].body.clone();
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(
        page["payload"]["custom_details"]["notification"],
        "not_acknowledged"
    );
    let stepped = told(&hook, "acknowledged", "search");
    assert_eq!(
        stepped.len(),
        1,
        "the hook heard of the acknowledgement once"
    );
    let paged_at =
        chrono::DateTime::parse_from_rfc3339(page["payload"]["timestamp"].as_str().unwrap_or(""))
            .expect("a timestamp")
            .timestamp_millis();
    // PagerDuty's timestamp is to the second.
    let due = opened_at + 4_000;
    assert!(
        paged_at >= due - due % 1_000,
        "paged {} ms after it opened",
        paged_at - opened_at
    );
    // Another step would be due within a tick or two of a second replica: none comes.
    let (_, metrics) = b.get("/metrics");
    assert!(
        metrics.contains("stackgen_incident_transitions_total"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        pages_of(&pager, "checkout"),
        [("trigger".to_string(), "not_acknowledged".to_string())]
    );
    assert_eq!(pages_of(&pager, "search"), Vec::<(String, String)>::new());
    assert!(!b.log().contains("panicked"), "{}", b.log());
}

#[test]
fn a_silence_from_the_cli_holds_a_matching_incident_through_a_restart_and_its_end_tells_once() {
    let chat = Sink::start(200);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("users"), users_file()).expect("users file");
    std::fs::write(dir.path().join("dana.password"), "anad\n").expect("password file");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{path: ./router.db}}\ndedup: {{stale_after: 1h}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 200ms}}\nteams:\n  oncall:\n    destinations:\n      - {{name: chat, kind: webhook, url: {}}}\nownership: {{default_team: oncall}}\npeople:\n  users_file: users\n  responders:\n    oncall: [dana]\n",
        chat.url(),
    );
    let mut router = Router::start(dir.path(), &config);
    let as_dana = ["--user", "dana", "--password-file", "dana.password"];
    let mut args = vec![
        "silence",
        "--matcher",
        r#"team="oncall""#,
        "--matcher",
        r#"service="checkout""#,
        "--duration",
        "1h",
        "--comment",
        "database upgrade",
    ];
    args.extend(as_dana);
    let created = incidents_cli(&router, dir.path(), &args);
    assert!(created.status.success(), "{}", stderr(&created));
    let line = stdout(&created);
    let id = line
        .strip_prefix("silence ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no id in {line}"))
        .to_string();
    assert!(line.ends_with("created by dana\n"), "{line}");

    for service in ["checkout", "search"] {
        let (status, answer) = router.post(
            &storm_of(service),
            "application/json",
            Some(&format!("Bearer {TOKEN}")),
        );
        assert_eq!(status, 200, "{answer}");
    }
    // search, not silenced, is told; checkout, as new and as critical, is held.
    wait_for("search opened", Duration::from_secs(15), || {
        !told(&chat, "opened", "search").is_empty()
    });
    let (_, listed) = router.get("/api/v1/incidents");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let checkout = listed["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["service"] == "checkout")
        .expect("checkout is tracked");
    assert_eq!(checkout["held"], true, "{checkout}");
    assert!(
        chat.received()
            .iter()
            .all(|r| r.body["service"] != "checkout")
    );

    // A restart keeps the silence: checkout is still held.
    router.kill();
    let router = Router::start_with(dir.path(), router.port);
    let shown = incidents_cli(&router, dir.path(), &["silences", "--token-file", "token"]);
    let table = stdout(&shown);
    assert!(
        table.contains(&id)
            && table.contains(r#"team="oncall",service="checkout""#)
            && table.contains("database upgrade"),
        "{table}"
    );
    let mut args = vec!["unsilence", id.as_str()];
    args.extend(as_dana);
    let ended = incidents_cli(&router, dir.path(), &args);
    assert!(ended.status.success(), "{}", stderr(&ended));
    let opened = wait_until(
        "checkout told once the silence ended",
        Duration::from_secs(15),
        || told(&chat, "opened", "checkout").pop(),
    );
    assert_eq!(opened["firing_members"], 3);
    assert!(
        chat.received()
            .iter()
            .filter(|r| r.body["service"] == "checkout")
            .count()
            == 1
    );
}
