//! The router through the built binary on loopback: every real Alertmanager body accepted, bad
//! inputs refused with the right status and reason, webhook in -> notification out at a local
//! sink, nothing lost across SIGKILL, and `/metrics` parsing as an exposition.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http_stub::{HttpStub, Reply, StubRequest};
use super::support::{files_under, free_port, root, wait_for, wait_until};

pub(super) const TOKEN: &str = "test-token-5c1f";

/// One request the sink received.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) at: Instant,
    /// Method and target, e.g. `POST /v2/alerts?x=y`.
    pub(super) request_line: String,
    /// Body size in bytes.
    pub(super) size: usize,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: serde_json::Value,
    pub(super) answered: u16,
}

/// A loopback HTTP server standing in for a webhook destination; answers with `status`. It
/// stops serving when dropped.
pub(super) struct Sink {
    pub(super) port: u16,
    pub(super) status: Arc<AtomicU16>,
    /// Statuses to answer first, in order, before falling back to `status`.
    pub(super) script: Arc<Mutex<VecDeque<u16>>>,
    /// Milliseconds to hold every answer (the status is decided, and recorded, on arrival).
    pub(super) delay: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Serves until the sink is dropped.
    _server: HttpStub,
}

impl Sink {
    pub(super) fn start(status: u16) -> Sink {
        let status = Arc::new(AtomicU16::new(status));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let delay = Arc::new(AtomicU64::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, q, d, r) = (
            status.clone(),
            script.clone(),
            delay.clone(),
            received.clone(),
        );
        let server = HttpStub::start(move |request| answer(request, &s, &q, &d, &r));
        Sink {
            port: server.port,
            status,
            script,
            delay,
            received,
            _server: server,
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Distinct idempotency keys answered with 2xx.
    pub(super) fn delivered_keys(&self) -> std::collections::BTreeSet<String> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300)
            .filter_map(|r| r.headers.get("idempotency-key").cloned())
            .collect()
    }
}

/// Records one request and answers it: the next scripted status, else `status`.
fn answer(
    request: StubRequest,
    status: &AtomicU16,
    script: &Mutex<VecDeque<u16>>,
    delay: &AtomicU64,
    received: &Mutex<Vec<Received>>,
) -> Reply {
    let answered = script
        .lock()
        .ok()
        .and_then(|mut q| q.pop_front())
        .unwrap_or_else(|| status.load(Ordering::SeqCst));
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).trim().to_string(),
            )
        })
        .collect();
    if let Ok(mut list) = received.lock() {
        list.push(Received {
            request_line: format!("{} {}", request.method, request.uri),
            size: request.body.len(),
            at: Instant::now(),
            headers,
            body: serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null),
            answered,
        });
    }
    // A 429 asks for one second; everything else for none.
    let retry_after = if answered == 429 { 1 } else { 0 };
    // Answer like the services: 204 has no body, the others a short one.
    let body = if answered == 204 { "" } else { "ok" };
    Reply::new(answered, body)
        .header("Retry-After", retry_after.to_string())
        .held_for(Duration::from_millis(delay.load(Ordering::SeqCst)))
}

/// The router binary on a loopback port; killed by its PID when dropped.
pub(super) struct Router {
    pub(super) child: Child,
    pub(super) port: u16,
    log: PathBuf,
}

impl Router {
    pub(super) fn start(dir: &Path, config: &str) -> Router {
        let port = free_port();
        let config_path = dir.join("router.yaml");
        std::fs::write(&config_path, config.replace("PORT", &port.to_string()))
            .expect("write config");
        Router::start_with(dir, port)
    }

    /// Starts (or restarts) the router with the config already in `dir`.
    pub(super) fn start_with(dir: &Path, port: u16) -> Router {
        let router = Router::spawn(dir, port);
        wait_for("the router to be ready", Duration::from_secs(20), || {
            router.get("/readyz").0 == 200
        });
        router
    }

    /// Starts the router with the config already in `dir` and waits until it serves, ready or
    /// not (its store may not answer yet).
    pub(super) fn start_serving(dir: &Path, port: u16) -> Router {
        let router = Router::spawn(dir, port);
        wait_for("the router to serve", Duration::from_secs(20), || {
            router.get("/healthz").0 == 200
        });
        router
    }

    fn spawn(dir: &Path, port: u16) -> Router {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = dir.join(format!(
            "router-{}.log",
            STARTS.fetch_add(1, Ordering::SeqCst)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(["router", "serve"])
            .arg(dir.join("router.yaml"))
            .env("TEST_ROUTER_TOKEN", TOKEN)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("router starts");
        Router { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&self.url(path))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
        {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// POSTs a body; returns the status and the parsed JSON answer.
    pub(super) fn post(
        &self,
        body: &[u8],
        content_type: &str,
        authorization: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = ureq::post(&self.url("/api/v1/alertmanager"))
            .header("Content-Type", content_type)
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(auth) = authorization {
            request = request.header("Authorization", auth);
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                )
            }
            Err(e) => panic!("POST failed: {e}"),
        }
    }

    pub(super) fn post_fixture(&self, name: &str) -> u16 {
        let body = std::fs::read(fixture(name)).expect("fixture");
        self.post(&body, "application/json", Some(&format!("Bearer {TOKEN}")))
            .0
    }

    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `request` as it is over a fresh connection and returns everything the router answers.
fn raw_request(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/alertmanager-webhook")
        .join(name)
}

/// A sink answering `status`, and a router (in a temporary directory) notifying it. Bind all
/// three: the router is killed before its directory is removed.
fn router_with_sink(status: u16) -> (Sink, tempfile::TempDir, Router) {
    let sink = Sink::start(status);
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::start(dir.path(), &config(&sink.url(), ""));
    (sink, dir, router)
}

fn config(sink_url: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nbody_limit: 64Ki\nstore: {{path: ./router.db}}\ndedup: {{resolve_hold: 1s}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 200ms, concurrency: 4}}\nteams:\n  oncall:\n    destinations:\n      - name: hook\n        kind: webhook\n        url: {sink_url}\nownership: {{default_team: oncall}}\n{extra}"
    )
}

#[test]
fn every_real_alertmanager_body_is_accepted() {
    let (_sink, _dir, router) = router_with_sink(200);
    let bodies: Vec<String> = files_under(&root().join("tests/fixtures/alertmanager-webhook"))
        .into_iter()
        .filter(|f| f.ends_with(".body.json"))
        .collect();
    assert_eq!(bodies.len(), 18);
    for body in bodies {
        assert_eq!(
            router.post_fixture(&body),
            200,
            "{body} was not accepted:\n{}",
            router.log()
        );
    }
}

#[test]
fn bad_inputs_get_the_right_status_and_reason() {
    let (_sink, _dir, router) = router_with_sink(200);
    let bearer = format!("Bearer {TOKEN}");
    let good =
        std::fs::read(fixture("01-one-service-three-instances-firing.body.json")).expect("fixture");
    let alert = |status: &str, starts: &str| {
        format!(
            r#"{{"version":"4","status":"firing","alerts":[{{"status":"{status}","labels":{{"alertname":"A"}},"startsAt":"{starts}"}}]}}"#
        )
    };
    let huge = format!(
        r#"{{"version":"4","status":"firing","alerts":[],"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    // (what, body, content type, Authorization, expected status, expected reason)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no credentials",
            good.clone(),
            "application/json",
            None,
            401,
            "missing credentials",
        ),
        (
            "wrong token",
            good.clone(),
            "application/json",
            Some("Bearer nope"),
            401,
            "bad credentials",
        ),
        (
            "wrong scheme",
            good.clone(),
            "application/json",
            Some("Basic dXNlcjpwYXNz"),
            401,
            "bad credentials",
        ),
        (
            "wrong content type",
            good.clone(),
            "text/plain",
            Some(&bearer),
            415,
            "content type must be application/json",
        ),
        (
            "truncated JSON",
            good[..good.len() / 2].to_vec(),
            "application/json",
            Some(&bearer),
            400,
            "malformed JSON",
        ),
        (
            "not JSON at all",
            b"\xff\xfe garbage".to_vec(),
            "application/json",
            Some(&bearer),
            400,
            "malformed JSON",
        ),
        (
            "a JSON list",
            b"[]".to_vec(),
            "application/json",
            Some(&bearer),
            422,
            "not an Alertmanager webhook",
        ),
        (
            "no alerts field",
            br#"{"version":"4","status":"firing"}"#.to_vec(),
            "application/json",
            Some(&bearer),
            422,
            "missing field `alerts`",
        ),
        (
            "version 3",
            br#"{"version":"3","status":"firing","alerts":[]}"#.to_vec(),
            "application/json",
            Some(&bearer),
            422,
            "unsupported webhook version",
        ),
        (
            "bad alert status",
            alert("burning", "2026-11-23T02:21:59Z").into_bytes(),
            "application/json",
            Some(&bearer),
            422,
            "neither \"firing\" nor \"resolved\"",
        ),
        (
            "bad startsAt",
            alert("firing", "yesterday").into_bytes(),
            "application/json",
            Some(&bearer),
            422,
            "not an RFC 3339 time",
        ),
        (
            "over the body limit",
            huge.into_bytes(),
            "application/json",
            Some(&bearer),
            413,
            "larger than the limit of 65536 bytes",
        ),
    ];
    for (what, body, content_type, auth, status, reason) in cases {
        let (got, answer) = router.post(&body, content_type, auth);
        assert_eq!(got, status, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{what}: reason {error:?} lacks {reason:?}"
        );
    }
    // Every other error is JSON too: an unknown path, a wrong method.
    for (path, method, status) in [
        ("/nope", "GET", 404),
        ("/api/v1/alertmanager", "GET", 405),
        ("/api/v1/incidents", "DELETE", 405),
    ] {
        let answer = raw_request(
            router.port,
            &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} {path}: {answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(json["error"].is_string(), "{method} {path}: {answer}");
    }
    // A broken chunked body is malformed (400), not too large.
    let answer = raw_request(
        router.port,
        &format!(
            "POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed body"), "{answer}");
    // Good input still works after all that, and the router never crashed.
    assert_eq!(
        router
            .post(&good, "application/json; charset=utf-8", Some(&bearer))
            .0,
        200
    );
    assert!(!router.log().contains("panicked"), "{}", router.log());
}

#[test]
fn webhook_in_one_notification_out_per_transition() {
    let (sink, _dir, router) = router_with_sink(200);
    for name in [
        "01-one-service-three-instances-firing.body.json",
        "01-one-service-three-instances-firing.body.json",
        "02-one-instance-resolved-two-still-firing.body.json",
    ] {
        assert_eq!(router.post_fixture(name), 200);
    }
    wait_for("the opened notification", Duration::from_secs(10), || {
        sink.received().len() == 1
    });
    let opened = &sink.received()[0];
    assert_eq!(opened.body["kind"], "opened");
    assert_eq!(opened.body["service"], "checkout");
    assert_eq!(opened.body["firing_members"], 3);
    assert_eq!(
        opened.body["alertmanager_url"],
        "http://alertmanager.example:9093"
    );
    assert_eq!(
        opened.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        opened.headers.get("idempotency-key"),
        opened.body["idempotency_key"]
            .as_str()
            .map(str::to_string)
            .as_ref()
    );
    // The sink has the request before the router records the outcome: wait for the record.
    let incidents = wait_until(
        "the delivery recorded as delivered",
        Duration::from_secs(10),
        || {
            let (status, incidents) = router.get("/api/v1/incidents");
            assert_eq!(status, 200);
            let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
            (incidents["incidents"][0]["deliveries"][0]["state"] == "delivered")
                .then_some(incidents)
        },
    );
    assert_eq!(
        incidents["incidents"][0]["members"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    assert_eq!(
        router.post_fixture("03-all-instances-resolved.body.json"),
        200
    );
    wait_for("the resolved notification", Duration::from_secs(10), || {
        sink.received().len() == 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    let kinds: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.body["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "resolved"],
        "exactly one notification per transition"
    );
}

#[test]
fn nothing_is_lost_when_the_router_is_killed_with_pending_notifications() {
    // The destination fails at first, so the notifications are pending in the outbox.
    let (sink, dir, mut router) = router_with_sink(503);
    let port = router.port;
    for name in [
        "04a-two-services-firing-payments.body.json",
        "04b-two-services-firing-search.body.json",
        "05-many-labels-annotations-unicode.body.json",
    ] {
        assert_eq!(router.post_fixture(name), 200);
    }
    // The first notification fails (in order, the other two wait behind it); all three are in
    // the outbox, pending.
    wait_for("a failed attempt", Duration::from_secs(10), || {
        !sink.received().is_empty()
    });
    let (_, incidents) = router.get("/api/v1/incidents");
    let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
    let pending = incidents["incidents"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|i| i["deliveries"][0]["state"] == "pending")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(pending, 3, "{incidents}");
    router.kill();
    // A request of the killed router may still be in the sink's hands: one answered probe
    // (no Idempotency-Key, counted by neither assertion) means every earlier request is
    // answered, with 503, before the sink starts answering 200.
    let _ = ureq::post(&sink.url()).send("probe");
    assert!(sink.delivered_keys().is_empty());

    sink.status.store(200, Ordering::SeqCst);
    let router = Router::start_with(dir.path(), port);
    wait_for(
        "every notification delivered after the restart",
        Duration::from_secs(15),
        || sink.delivered_keys().len() == 3,
    );
    // The incidents survived too: the same alerts again open nothing new.
    for name in [
        "04a-two-services-firing-payments.body.json",
        "04b-two-services-firing-search.body.json",
    ] {
        assert_eq!(router.post_fixture(name), 200);
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        sink.delivered_keys().len(),
        3,
        "a restart must not notify again: {:?}",
        sink.delivered_keys()
    );
    let opened: Vec<_> = sink
        .received()
        .into_iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.body["incident_key"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        opened.len(),
        3,
        "each pending notification delivered once: {opened:?}"
    );
}

#[test]
fn metrics_parse_as_an_exposition() {
    let (sink, _dir, router) = router_with_sink(200);
    assert_eq!(
        router.post_fixture("01-one-service-three-instances-firing.body.json"),
        200
    );
    wait_for("a delivery", Duration::from_secs(10), || {
        sink.received().len() == 1
    });
    // The sink has the request before the router has its answer and counts the attempt.
    wait_for(
        "the delivery attempt counted",
        Duration::from_secs(10),
        || {
            router
                .get("/metrics")
                .1
                .contains("stackgen_delivery_attempts_total")
        },
    );
    let (status, text) = router.get("/metrics");
    assert_eq!(status, 200);
    let names = stackgen::rules::exposition::metric_names(&text).expect("parses");
    for name in [
        "stackgen_alerts_received_total",
        "stackgen_incidents_open",
        "stackgen_outbox_pending_notifications",
        "stackgen_delivery_attempts_total",
        "stackgen_notifications_planned_total",
    ] {
        assert!(
            names.contains(name),
            "{name} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains("stackgen_alerts_received_total 3"), "{text}");
}

#[test]
fn sigterm_stops_gracefully_and_keeps_what_was_accepted() {
    let (sink, dir, mut router) = router_with_sink(503);
    let port = router.port;
    assert_eq!(
        router.post_fixture("01-one-service-three-instances-firing.body.json"),
        200
    );
    wait_for("a failed attempt", Duration::from_secs(10), || {
        !sink.received().is_empty()
    });
    let pid = router.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = wait_until(
        "the router stopping on SIGTERM",
        Duration::from_secs(10),
        || router.child.try_wait().expect("wait"),
    );
    assert!(exit.success(), "exit status {exit:?}\n{}", router.log());
    assert!(router.log().contains("stopped"), "{}", router.log());
    // The pending notification is delivered after the next start.
    sink.status.store(200, Ordering::SeqCst);
    let _router = Router::start_with(dir.path(), port);
    wait_for(
        "the delivery after the restart",
        Duration::from_secs(10),
        || sink.delivered_keys().len() == 1,
    );
}

#[test]
fn a_429_with_retry_after_is_honoured_and_the_message_arrives_once() {
    let sink = Sink::start(200);
    if let Ok(mut script) = sink.script.lock() {
        script.push_back(429);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::start(dir.path(), &config(&sink.url(), ""));
    assert_eq!(
        router.post_fixture("01-one-service-three-instances-firing.body.json"),
        200
    );
    wait_for(
        "the delivery after the 429",
        Duration::from_secs(10),
        || sink.delivered_keys().len() == 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    let received = sink.received();
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [429, 200],
        "one retry, one delivery"
    );
    assert_eq!(
        received[0].headers.get("idempotency-key"),
        received[1].headers.get("idempotency-key")
    );
    let waited = received[1].at.duration_since(received[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured (retried after {waited:?})"
    );
    let (_, metrics) = router.get("/metrics");
    assert!(
        metrics.contains("outcome=\"throttled\"} 1") && !metrics.contains("outcome=\"retry\""),
        "a 429 is counted as throttled, not as a failed attempt: {metrics}"
    );
}

#[test]
fn a_destination_down_then_up_gets_every_notification_in_order() {
    let (sink, _dir, router) = router_with_sink(503);
    let fixtures = [
        "04a-two-services-firing-payments.body.json",
        "04b-two-services-firing-search.body.json",
        "05-many-labels-annotations-unicode.body.json",
    ];
    for name in fixtures {
        assert_eq!(router.post_fixture(name), 200);
    }
    wait_for("failed attempts", Duration::from_secs(10), || {
        sink.received().len() >= 3
    });
    sink.status.store(200, Ordering::SeqCst);
    wait_for(
        "every notification delivered",
        Duration::from_secs(15),
        || sink.delivered_keys().len() == 3,
    );
    let delivered: Vec<String> = sink
        .received()
        .into_iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.body["service"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        delivered,
        ["payments", "search", "menü-service"],
        "delivered in the order the incidents opened"
    );
    // While the destination was down, only the oldest notification was tried.
    let failed: std::collections::BTreeSet<String> = sink
        .received()
        .into_iter()
        .filter(|r| r.answered == 503)
        .filter_map(|r| r.body["service"].as_str().map(str::to_string))
        .collect();
    assert_eq!(failed.into_iter().collect::<Vec<_>>(), ["payments"]);
}

#[test]
fn a_permanent_400_is_rejected_and_counted() {
    let (sink, _dir, router) = router_with_sink(400);
    assert_eq!(
        router.post_fixture("01-one-service-three-instances-firing.body.json"),
        200
    );
    // Once recorded dead, the notification can never be sent again.
    let incidents = wait_until(
        "the delivery recorded dead",
        Duration::from_secs(10),
        || {
            let (_, incidents) = router.get("/api/v1/incidents");
            let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
            (incidents["incidents"][0]["deliveries"][0]["state"] == "dead").then_some(incidents)
        },
    );
    assert_eq!(sink.received().len(), 1, "a 400 is not retried");
    let (_, metrics) = router.get("/metrics");
    assert!(
        metrics.contains(
            "stackgen_notifications_dead_total{destination=\"oncall/hook\",team=\"oncall\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"rejected\"} 1"), "{metrics}");
    assert!(
        incidents["incidents"][0]["deliveries"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("HTTP 400")
    );
}

#[test]
fn preview_prints_the_request_and_send_test_reports_the_outcome() {
    let sink = Sink::start(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    std::fs::write(
        dir.path().join("router.yaml"),
        config(&sink.url(), "").replace("PORT", &port.to_string()),
    )
    .expect("config");
    let config_path = dir.path().join("router.yaml");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(args)
            .env("TEST_ROUTER_TOKEN", TOKEN)
            .output()
            .expect("runs")
    };
    let preview_of = |destination: &str, fixture: &str| {
        run(&[
            "router",
            "preview",
            config_path.to_str().expect("utf-8"),
            "--destination",
            destination,
            "--fixture",
            fixture,
        ])
    };
    let send_test = |destination: &str| {
        run(&[
            "router",
            "send-test",
            config_path.to_str().expect("utf-8"),
            "--destination",
            destination,
        ])
    };
    let fixture = fixture("01-one-service-three-instances-firing.body.json");
    let preview = preview_of("oncall/hook", fixture.to_str().expect("utf-8"));
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(
        preview.status.success(),
        "{}",
        String::from_utf8_lossy(&preview.stderr)
    );
    // Where it would go, never the secret URL itself (a webhook URL is a credential).
    assert!(
        text.starts_with(&format!("POST http://127.0.0.1:{}/<redacted>", sink.port)),
        "{text}"
    );
    assert!(!text.contains(&sink.url()), "{text}");
    assert!(
        text.contains("\"kind\": \"opened\"") && text.contains("Idempotency-Key: "),
        "{text}"
    );
    assert!(sink.received().is_empty(), "preview must not send");
    let resolved = fixture_path_str("03-all-instances-resolved.body.json");
    let preview = preview_of("oncall/hook", &resolved);
    assert!(String::from_utf8_lossy(&preview.stdout).contains("\"kind\": \"resolved\""));

    let sent = send_test("oncall/hook");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "oncall/hook: delivered"
    );
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].body["annotations"]["summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("TEST:")
    );
    sink.status.store(400, Ordering::SeqCst);
    let refused = send_test("oncall/hook");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("rejected: HTTP 400"));
}

fn fixture_path_str(name: &str) -> String {
    fixture(name).to_string_lossy().into_owned()
}

/// A burst beyond a destination's documented rate limit (Slack: one message a second, bursts of
/// three) arrives as the first messages and then one digest, nothing dropped.
#[test]
fn a_burst_over_the_rate_limit_is_coalesced_into_a_digest() {
    let sink = Sink::start(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let slack = config(&sink.url(), "").replace(
        "name: hook\n        kind: webhook",
        "name: hook\n        kind: slack",
    );
    let router = Router::start(dir.path(), &slack);
    let fixtures = [
        "04a-two-services-firing-payments.body.json",
        "04b-two-services-firing-search.body.json",
        "05-many-labels-annotations-unicode.body.json",
        "06-group-larger-than-max-alerts-truncated.body.json",
        "07-alert-without-service-label.body.json",
        "08a-repeat-first-notification.body.json",
        "09a-member-join-initial.body.json",
    ];
    for name in fixtures {
        assert_eq!(router.post_fixture(name), 200);
    }
    let texts = || -> Vec<String> {
        sink.received()
            .iter()
            .map(|r| r.body["text"].as_str().unwrap_or("").to_string())
            .collect()
    };
    // How many notifications the messages stand for: one each, or the lines of a digest.
    let covered = |texts: &[String]| -> usize {
        texts
            .iter()
            .map(|t| {
                if t.contains("sent together") {
                    t.lines()
                        .filter(|l| l.starts_with("- [") || l.starts_with("• ["))
                        .count()
                } else {
                    1
                }
            })
            .sum()
    };
    wait_for(
        "every notification, directly or in a digest",
        Duration::from_secs(15),
        || covered(&texts()) >= 7,
    );
    std::thread::sleep(Duration::from_millis(1200));
    let texts = texts();
    assert_eq!(
        covered(&texts),
        7,
        "each notification exactly once:\n{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("sent together")),
        "no digest:\n{texts:#?}"
    );
    assert!(
        texts.len() < 7,
        "the burst was not coalesced: {} messages",
        texts.len()
    );
}

/// Every destination kind through the running router to a stub of its service that answers like
/// the service (Discord 204, Teams, PagerDuty and Opsgenie 202, the others 200) and whose recorded
/// requests are checked against the documented contract: method, path, content type, auth header,
/// required fields and size limits; one request per transition.
#[test]
fn every_destination_speaks_its_service_contract_through_the_router() {
    let kinds = [
        ("slack", 200),
        ("mattermost", 200),
        ("discord", 204),
        ("msteams", 202),
        ("google_chat", 200),
        ("pagerduty", 202),
        ("opsgenie", 202),
    ];
    let stubs: Vec<(&str, Sink)> = kinds
        .iter()
        .map(|(kind, status)| (*kind, Sink::start(*status)))
        .collect();
    let mut destinations = String::new();
    for (kind, stub) in &stubs {
        let base = format!("http://127.0.0.1:{}", stub.port);
        let line = match *kind {
            "pagerduty" => format!(
                "      - kind: pagerduty\n        routing_key: R0UTINGKEY0000000000000000000000\n        api_url: {base}/v2/enqueue\n"
            ),
            "opsgenie" => format!(
                "      - kind: opsgenie\n        api_key: 00000000-1111-2222-3333-444444444444\n        api_url: {base}\n"
            ),
            "google_chat" => format!(
                "      - kind: google_chat\n        url: {base}/v1/spaces/AAA/messages?key=k&token=t\n"
            ),
            other => format!("      - kind: {other}\n        url: {base}/hook\n"),
        };
        destinations.push_str(&line);
    }
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{path: ./router.db}}\ndedup: {{resolve_hold: 1s}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 200ms}}\nteams:\n  oncall:\n    destinations:\n{destinations}ownership: {{default_team: oncall}}\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::start(dir.path(), &config);
    for name in [
        "01-one-service-three-instances-firing.body.json",
        "02-one-instance-resolved-two-still-firing.body.json",
        "03-all-instances-resolved.body.json",
    ] {
        assert_eq!(router.post_fixture(name), 200);
    }
    for (kind, stub) in &stubs {
        wait_for(
            &format!("{kind}: opened and resolved"),
            Duration::from_secs(15),
            || stub.received().len() >= 2,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for (kind, stub) in &stubs {
        let received = stub.received();
        assert_eq!(received.len(), 2, "{kind}: one request per transition");
        for (index, r) in received.iter().enumerate() {
            let resolved = index == 1;
            let b = &r.body;
            assert!(
                r.request_line.starts_with("POST "),
                "{kind}: {}",
                r.request_line
            );
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/json"),
                "{kind}"
            );
            let text_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            match *kind {
                "slack" => {
                    assert_eq!(r.request_line, "POST /hook");
                    assert!(
                        !text_of(&b["text"]).is_empty(),
                        "slack needs `text` as the fallback"
                    );
                    assert_eq!(b["blocks"][0]["type"], "header");
                    assert!(text_of(&b["blocks"][0]["text"]["text"]).chars().count() <= 150);
                }
                "mattermost" => assert!(!text_of(&b["text"]).is_empty(), "mattermost needs `text`"),
                "discord" => {
                    let embed = &b["embeds"][0];
                    assert!(
                        text_of(&embed["title"]).chars().count() <= 256
                            && text_of(&embed["description"]).chars().count() <= 4096
                    );
                    assert_eq!(
                        b["allowed_mentions"]["parse"],
                        serde_json::json!([]),
                        "no @everyone from an annotation"
                    );
                }
                "msteams" => {
                    assert_eq!(b["type"], "message");
                    assert_eq!(
                        b["attachments"][0]["contentType"],
                        "application/vnd.microsoft.card.adaptive"
                    );
                    assert_eq!(b["attachments"][0]["content"]["type"], "AdaptiveCard");
                    assert!(r.size <= 28 * 1024, "Teams takes at most 28 KB");
                }
                "google_chat" => {
                    assert!(r.request_line.starts_with("POST /v1/spaces/AAA/messages?key=k&token=t&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD&requestId="), "{}", r.request_line);
                    assert!(!text_of(&b["text"]).is_empty());
                    assert!(
                        !text_of(&b["thread"]["threadKey"]).is_empty(),
                        "one thread per incident"
                    );
                    assert!(r.size <= 32_000);
                }
                "pagerduty" => {
                    assert_eq!(r.request_line, "POST /v2/enqueue");
                    assert_eq!(b["routing_key"], "R0UTINGKEY0000000000000000000000");
                    assert!(text_of(&b["dedup_key"]).len() <= 255);
                    if resolved {
                        assert_eq!(b["event_action"], "resolve");
                    } else {
                        assert_eq!(b["event_action"], "trigger");
                        assert!(
                            ["critical", "error", "warning", "info"]
                                .contains(&b["payload"]["severity"].as_str().unwrap_or(""))
                        );
                        assert!(!text_of(&b["payload"]["source"]).is_empty());
                        assert!(text_of(&b["payload"]["summary"]).chars().count() <= 1024);
                    }
                }
                "opsgenie" => {
                    assert_eq!(
                        r.headers.get("authorization").map(String::as_str),
                        Some("GenieKey 00000000-1111-2222-3333-444444444444")
                    );
                    if resolved {
                        assert!(
                            r.request_line.starts_with("POST /v2/alerts/stackgen-")
                                && r.request_line.ends_with("/close?identifierType=alias"),
                            "{}",
                            r.request_line
                        );
                    } else {
                        assert_eq!(r.request_line, "POST /v2/alerts");
                        assert!(
                            !text_of(&b["message"]).is_empty()
                                && text_of(&b["message"]).chars().count() <= 130
                        );
                        assert!(text_of(&b["alias"]).len() <= 512);
                    }
                }
                _ => unreachable!(),
            }
        }
        // PagerDuty's trigger and resolve share one dedup_key; Opsgenie closes the alias it opened.
        if *kind == "pagerduty" {
            assert_eq!(received[0].body["dedup_key"], received[1].body["dedup_key"]);
        }
        if *kind == "opsgenie" {
            let alias = received[0].body["alias"].as_str().unwrap_or("").to_string();
            assert!(received[1].request_line.contains(&alias));
        }
    }
}

/// Team payments with a chat (a webhook stub answering 200) and a pager (a PagerDuty stub
/// answering 202, taking its kind's default severities), and its router.
fn chat_and_pager() -> (Sink, Sink, tempfile::TempDir, Router) {
    chat_and_pager_with("")
}

/// [`chat_and_pager`] with `team_extra` (indented YAML) added to team payments.
fn chat_and_pager_with(team_extra: &str) -> (Sink, Sink, tempfile::TempDir, Router) {
    let chat = Sink::start(200);
    let pager = Sink::start(202);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{path: ./router.db}}\nteams:\n  payments:\n{team_extra}    destinations:\n      - {{name: chat, kind: webhook, url: {}}}\n      - {{name: pager, kind: pagerduty, routing_key: R0UTINGKEY, api_url: {}}}\nownership: {{default_team: payments}}\n",
        chat.url(),
        pager.url()
    );
    let router = Router::start(dir.path(), &config);
    (chat, pager, dir, router)
}

/// The fixture of three firing instances, as alerts of `service` with `severity`.
fn three_firing_of(service: &str, severity: &str) -> String {
    std::fs::read_to_string(fixture("01-one-service-three-instances-firing.body.json"))
        .expect("fixture")
        .replace(
            "\"severity\":\"critical\"",
            &format!("\"severity\":\"{severity}\""),
        )
        .replace("checkout", service)
}

/// Severity decides the channel: a pager takes critical alerts only (its kind's default), chat
/// every one. With the real router: a warning reaches the chat and not the pager, a critical
/// alert both; `routes test` and `preview` say the same without sending anything.
#[test]
fn a_warning_reaches_the_chat_and_not_the_pager() {
    let (chat, pager, dir, router) = chat_and_pager();
    let body = three_firing_of;
    let auth = format!("Bearer {TOKEN}");
    let deliveries = |service: &str| -> Vec<String> {
        let (_, text) = router.get("/api/v1/incidents");
        let incidents: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let mut found: Vec<String> = incidents["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["service"] == service)
            .flat_map(|i| i["deliveries"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d["destination"].as_str().map(str::to_string))
            .collect();
        found.sort();
        found
    };
    let (status, _) = router.post(
        body("checkout", "warning").as_bytes(),
        "application/json",
        Some(&auth),
    );
    assert_eq!(status, 200);
    // Planned in the transaction that answered 200: the outbox holds every notification.
    assert_eq!(deliveries("checkout"), ["payments/chat"]);
    let (status, _) = router.post(
        body("search-api", "critical").as_bytes(),
        "application/json",
        Some(&auth),
    );
    assert_eq!(status, 200);
    assert_eq!(
        deliveries("search-api"),
        ["payments/chat", "payments/pager"]
    );
    wait_for("the page for search-api", Duration::from_secs(10), || {
        pager.received().len() == 1
    });
    assert_eq!(pager.received()[0].body["event_action"], "trigger");
    wait_for("both chat messages", Duration::from_secs(10), || {
        chat.received().len() == 2
    });
    assert_eq!(pager.received().len(), 1, "the warning paged nobody");

    let config_path = dir.path().join("router.yaml");
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(args)
            .env("TEST_ROUTER_TOKEN", TOKEN)
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let config_arg = config_path.to_str().expect("utf-8");
    let trace = cli(&[
        "router",
        "routes",
        "test",
        config_arg,
        "alertname=HighErrorRate",
        "service=checkout",
        "severity=warning",
    ]);
    assert_eq!(
        trace,
        "team: payments (service checkout)\nincident: payments/checkout\nseverity: warning\ndecided by: no route matches; the team's destinations\ndestinations:\n  payments/chat\n  not payments/pager: it does not take warning alerts\n"
    );
    let warning_body = dir.path().join("warning.json");
    std::fs::write(&warning_body, body("checkout", "warning")).expect("body");
    let preview = cli(&[
        "router",
        "preview",
        config_arg,
        "--destination",
        "payments/pager",
        "--fixture",
        warning_body.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        preview,
        "(the opened notification would not reach payments/pager: payments/pager does not take warning alerts (its `severities`))\n"
    );
}

/// One failing service is one incident: with the real router, three alerts of checkout (three
/// ways of failing) open one incident, page once and update twice, all under one PagerDuty
/// dedup key; the chat gets the opening and two updates naming the signals.
#[test]
fn one_service_failing_three_ways_is_one_incident_one_page_and_updates() {
    let (chat, pager, _dir, router) = chat_and_pager();
    let auth = format!("Bearer {TOKEN}");
    for (at, alertname) in [
        (1, "ServiceTargetsDown"),
        (2, "ServiceHighErrorRate"),
        (3, "KubeDeploymentReplicasUnavailable"),
    ] {
        let body =
            std::fs::read_to_string(fixture("01-one-service-three-instances-firing.body.json"))
                .expect("fixture")
                .replace("HighErrorRate", alertname)
                .replace(
                    "2026-11-23T02:21:59.162Z",
                    &format!("2026-11-23T02:2{at}:00Z"),
                );
        // Alertmanager's fingerprints differ with the alert name; the fixture's are one alert's.
        let mut body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        for alert in body["alerts"].as_array_mut().into_iter().flatten() {
            alert["fingerprint"] = serde_json::json!("");
        }
        let body = body.to_string();
        let (status, _) = router.post(body.as_bytes(), "application/json", Some(&auth));
        assert_eq!(status, 200);
        wait_for(
            &format!("the notification for {alertname}"),
            Duration::from_secs(10),
            || chat.received().len() == at,
        );
    }
    let kinds: Vec<String> = chat
        .received()
        .iter()
        .map(|r| r.body["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds, ["opened", "updated", "updated"]);
    let last = &chat.received()[2].body;
    let signals: Vec<&str> = last["signals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["alertname"].as_str())
        .collect();
    assert_eq!(
        signals,
        [
            "KubeDeploymentReplicasUnavailable",
            "ServiceHighErrorRate",
            "ServiceTargetsDown"
        ]
    );
    assert_eq!(
        last["firing_members"], 3,
        "three pods, however many signals name them"
    );
    wait_for("the three pager events", Duration::from_secs(10), || {
        pager.received().len() == 3
    });
    let keys: BTreeSet<String> = pager
        .received()
        .iter()
        .map(|r| r.body["dedup_key"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one page: every event updates the same PagerDuty incident"
    );
    assert!(
        pager
            .received()
            .iter()
            .all(|r| r.body["event_action"] == "trigger")
    );
    let (_, incidents) = router.get("/api/v1/incidents");
    let incidents: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
    assert_eq!(incidents["incidents"].as_array().map(Vec::len), Some(1));
}

/// Quiet hours hold a team's non-critical notifications, never a critical one. With the real
/// router and quiet hours that cover every day: a warning is committed (200) and held, with no
/// delivery planned; a critical alert reaches the chat and the pager, and the chat never gets
/// the warning (a destination gets its notifications in order, so a planned warning would have
/// arrived first).
#[test]
fn quiet_hours_hold_a_warning_and_let_a_critical_through() {
    let (chat, pager, dir, router) = chat_and_pager_with(
        "    quiet_hours:\n      - weekdays: [\"sunday:saturday\"]\n        location: Europe/Berlin\n",
    );
    let body = three_firing_of;
    let auth = format!("Bearer {TOKEN}");
    let incident = |service: &str| -> serde_json::Value {
        let (_, text) = router.get("/api/v1/incidents");
        let incidents: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        incidents["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["service"] == service)
            .cloned()
            .unwrap_or_default()
    };
    let (status, _) = router.post(
        body("checkout", "warning").as_bytes(),
        "application/json",
        Some(&auth),
    );
    assert_eq!(status, 200);
    let held = incident("checkout");
    assert_eq!(held["held"], true, "{held}");
    assert_eq!(held["unheard"], true, "{held}");
    assert_eq!(held["deliveries"], serde_json::json!([]), "{held}");

    let (status, _) = router.post(
        body("search-api", "critical").as_bytes(),
        "application/json",
        Some(&auth),
    );
    assert_eq!(status, 200);
    wait_for("the page for search-api", Duration::from_secs(10), || {
        pager.received().len() == 1
    });
    wait_for("search-api in chat", Duration::from_secs(10), || {
        !chat.received().is_empty()
    });
    let messages = chat.received();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].body.to_string().contains("search-api"),
        "{:?}",
        messages[0].body
    );
    assert_eq!(incident("checkout")["deliveries"], serde_json::json!([]));

    // `routes test` says the same without sending anything.
    let config_path = dir.path().join("router.yaml");
    let trace = |severity: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(["router", "routes", "test", "--config"])
            .arg(&config_path)
            .args(["alertname=HighErrorRate", "service=checkout"])
            .arg(format!("severity={severity}"))
            .env("TEST_ROUTER_TOKEN", TOKEN)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(
        trace("warning").ends_with("quiet hours of payments: now: held until they end\n"),
        "{}",
        trace("warning")
    );
    assert!(
        trace("critical")
            .ends_with("quiet hours of payments: now, but a critical alert is never held\n"),
        "{}",
        trace("critical")
    );
}

/// With text logs, a line break in an alert cannot forge a log line: the `log` destination's
/// notification, and every other line the router writes, stays one line per event.
#[test]
fn a_line_break_in_an_alert_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::start(
        dir.path(),
        "listen: 127.0.0.1:PORT\nauth: {bearer_token_env: TEST_ROUTER_TOKEN}\nstore: {path: ./router.db}\nteams:\n  oncall:\n    destinations:\n      - kind: log\nownership: {default_team: oncall}\n",
    );
    let mut body: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("01-one-service-three-instances-firing.body.json"))
            .expect("fixture"),
    )
    .expect("JSON");
    let forged = "FORGED 2026-12-01T00:00:00Z  INFO stackgen: all good";
    for alert in body["alerts"].as_array_mut().into_iter().flatten() {
        alert["annotations"]["summary"] =
            serde_json::Value::from(format!("checkout is down\n{forged}\r\u{2028}{forged}"));
        alert["labels"]["service"] = serde_json::Value::from(format!("checkout\n{forged}"));
    }
    let (status, _) = router.post(
        body.to_string().as_bytes(),
        "application/json",
        Some(&format!("Bearer {TOKEN}")),
    );
    assert_eq!(status, 200);
    wait_for(
        "the notification in the log",
        Duration::from_secs(10),
        || router.log().contains("checkout is down"),
    );
    let log = router.log();
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line:\n{log}");
    }
    let notification = log
        .lines()
        .find(|line| line.contains("checkout is down"))
        .expect("the notification line");
    assert!(notification.contains("\\n"), "{notification}");
    assert!(!log.contains('\u{2028}'), "{log}");
}

/// `router preview` shows where a request would go, never the secret: for every destination
/// kind, with its secret in the environment (none of its value is printed) and without it (a
/// stand-in is used, as for a rendered router.yaml away from its mounted Secrets).
#[test]
fn preview_never_prints_a_secret_of_any_destination() {
    let secrets = [
        (
            "EXAMPLE_WEBHOOK_URL",
            "https://hooks.example.test/w/SECRETWEBHOOK1",
        ),
        (
            "EXAMPLE_SLACK_URL",
            "https://hooks.slack.example/services/T0/B0/SECRETSLACK2",
        ),
        (
            "EXAMPLE_MATTERMOST_URL",
            "https://chat.example.test/hooks/SECRETMATTERMOST3",
        ),
        (
            "EXAMPLE_DISCORD_URL",
            "https://discord.example.test/api/webhooks/1/SECRETDISCORD4",
        ),
        (
            "EXAMPLE_TEAMS_URL",
            "https://teams.example.test/workflows/SECRETTEAMS5",
        ),
        (
            "EXAMPLE_CHAT_URL",
            "https://chat.googleapis.example/v1/spaces/S/messages?key=SECRETKEY6&token=SECRETTOKEN7",
        ),
        ("EXAMPLE_PAGERDUTY_KEY", "SECRETPAGERDUTYROUTINGKEY8000000"),
        (
            "EXAMPLE_OPSGENIE_KEY",
            "00000000-0000-4000-8000-5ECRE7000009",
        ),
        ("EXAMPLE_SMTP_PASSWORD", "SECRETSMTP10"),
    ];
    let fixture = fixture("01-one-service-three-instances-firing.body.json");
    // Every kind with a secret or a server (the log destination has neither), and the inline one.
    let names = super::destinations::KINDS
        .iter()
        .copied()
        .filter(|kind| *kind != "log")
        .chain(["inline"]);
    for with_secrets in [true, false] {
        for name in names.clone() {
            let mut command = Command::new(env!("CARGO_BIN_EXE_stackgen"));
            command
                .args(["router", "preview"])
                .arg(root().join("examples/destinations.yaml"))
                .args(["--destination", &format!("payments/{name}"), "--fixture"])
                .arg(&fixture);
            for (variable, value) in secrets {
                if with_secrets {
                    command.env(variable, value);
                } else {
                    command.env_remove(variable);
                }
            }
            let output = command.output().expect("preview runs");
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(output.status.success(), "payments/{name}: {shown}");
            for (_, value) in secrets {
                for part in value
                    .split(['/', '?', '&', '='])
                    .filter(|p| p.contains("SECRET") || p.contains("5ECRE7"))
                {
                    assert!(
                        !shown.contains(part),
                        "payments/{name} shows {part}:\n{shown}"
                    );
                }
            }
            // The inline URL's host shows where it goes; its path is the secret.
            assert!(
                !shown.contains("example.test/hook"),
                "payments/{name}:\n{shown}"
            );
        }
    }
}

#[test]
fn slow_and_half_sent_requests_cannot_hold_the_router() {
    use std::io::{Read, Write};
    let sink = Sink::start(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let router = Router::start(
        dir.path(),
        &config(
            &sink.url(),
            "http: {header_timeout: 1s, body_timeout: 1s, connections_per_client: 3}\n",
        ),
    );
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", router.port)).expect("connect");
        // Only a guard against a hang: each read below waits for the router's answer or close.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
    };
    let read_all = |stream: &mut std::net::TcpStream| {
        let mut answer = Vec::new();
        let ended = stream.read_to_end(&mut answer).is_ok();
        (ended, String::from_utf8_lossy(&answer).into_owned())
    };
    // Three clients' worth of half-sent headers hold the cap of this address, and a fourth is
    // refused, told why in JSON. Should the machine stall past the header deadline between the
    // three and the fourth, the router has rightly closed them already: hold the cap anew.
    let (mut half_sent, refused) = wait_until(
        "a connection refused over the cap",
        Duration::from_secs(30),
        || {
            let half_sent: Vec<_> = (0..3)
                .map(|_| {
                    let mut stream = connect();
                    stream
                        .write_all(b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                        .expect("send");
                    stream
                })
                .collect();
            let (_, answer) = read_all(&mut connect());
            answer
                .starts_with("HTTP/1.1 503")
                .then_some((half_sent, answer))
        },
    );
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let reason: serde_json::Value = serde_json::from_str(body).expect("a JSON reason");
    assert!(reason["error"].is_string(), "{refused}");
    // Each half-sent request is closed by the router once its header deadline passes.
    for stream in &mut half_sent {
        let (ended, _) = read_all(stream);
        assert!(
            ended,
            "the router closed a connection whose headers never ended"
        );
    }
    drop(half_sent);
    // Headers complete, body half-sent: answered 408 with a reason once the body deadline passes.
    let mut slow_body = connect();
    slow_body
        .write_all(
            format!("POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"version\"").as_bytes(),
        )
        .expect("send");
    let (_, answer) = read_all(&mut slow_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    // The slots came back: real webhooks are taken again.
    let accepted = wait_until("a webhook accepted again", Duration::from_secs(10), || {
        let status = router.post_fixture("01-one-service-three-instances-firing.body.json");
        (status == 200).then_some(status)
    });
    assert_eq!(accepted, 200);
    let metrics = router.get("/metrics").1;
    assert!(
        metrics.contains("stackgen_http_connections_refused_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stackgen_http_body_timeouts_total 1"),
        "{metrics}"
    );
}
