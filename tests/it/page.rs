//! The incidents page in a real headless browser (Debian's chromium, driven over WebDriver by
//! chromium-driver), as a responder uses it: the storm's incidents are listed, acknowledging one
//! from its page stops its reminders, a silence made from the page holds a matching incident's
//! notifications; screenshots at a desktop and a phone width are kept in
//! `target/test-artefacts/`, and the browser asks no host but the router.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::router::{Router, Sink, TOKEN};
use super::support::{free_port, root, tool, wait_for, wait_until};

/// chromedriver on a loopback port, and one browser session; both ended when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let chromedriver = tool("chromedriver", "apt-get install chromium-driver");
        let chromium = tool("chromium", "apt-get install chromium");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        wait_for("chromedriver ready", Duration::from_secs(20), || {
            browser.call("GET", "/status", None)["value"]["ready"] == true
        });
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", "--disable-default-apps", "--window-size=1280,900",
                             format!("--user-data-dir={}", profile.display())],
                },
                "goog:loggingPrefs": {"performance": "ALL"},
            }}})),
        );
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let answer = match method {
            "GET" => agent.get(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            _ => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        answer
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .unwrap_or(Value::Null)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn source(&self) -> String {
        self.session_call("GET", "/source", None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element a CSS selector finds, if any.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_string)
    }

    fn click(&self, css: &str) {
        let element = self
            .find(css)
            .unwrap_or_else(|| panic!("no `{css}` in\n{}", self.source()));
        self.session_call("POST", &format!("/element/{element}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self
            .find(css)
            .unwrap_or_else(|| panic!("no `{css}` in\n{}", self.source()));
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, width: u32, height: u32, path: &Path) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
        let shot = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Every URL the browser asked for since the last call.
    fn requested_urls(&self) -> Vec<String> {
        let log = self.session_call("POST", "/se/log", Some(json!({"type": "performance"})));
        log["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                m["message"]["params"]["request"]["url"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn artefacts() -> PathBuf {
    let dir = root().join("target/test-artefacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

/// The fixture's storm of checkout's three pods, as alerts of `service`.
fn storm_of(service: &str) -> Vec<u8> {
    let path = root().join(
        "tests/fixtures/alertmanager-webhook/01-one-service-three-instances-firing.body.json",
    );
    std::fs::read_to_string(path)
        .expect("fixture")
        .replace("checkout", service)
        .into_bytes()
}

/// The chat's notifications of `kind` for `service` since `after` (ms), by their time.
fn told_after(chat: &Sink, kind: &str, service: &str, after: i64) -> usize {
    chat.received()
        .iter()
        .filter(|r| r.body["kind"] == kind && r.body["service"] == service)
        .filter(|r| r.body["at"].as_i64().is_some_and(|at| at > after))
        .count()
}

#[test]
fn a_responder_acknowledges_and_silences_from_the_page_in_a_real_browser() {
    let chat = Sink::start(200);
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = bcrypt::hash("anad", 4).expect("hash");
    std::fs::write(dir.path().join("users"), format!("dana:{hash}\n")).expect("users file");
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{path: ./router.db}}\ndedup: {{reminder: 4s, stale_after: 1h}}\ndelivery: {{initial_backoff: 100ms, max_backoff: 200ms}}\nteams:\n  oncall:\n    destinations:\n      - {{name: chat, kind: webhook, url: {}}}\nownership: {{default_team: oncall}}\npeople:\n  users_file: users\n  responders:\n    oncall: [dana]\n",
        chat.url()
    );
    let router = Router::start(dir.path(), &config);
    for service in ["checkout", "search", "cart"] {
        let (status, answer) = router.post(
            &storm_of(service),
            "application/json",
            Some(&format!("Bearer {TOKEN}")),
        );
        assert_eq!(status, 200, "{answer}");
    }
    wait_for("three incidents opened", Duration::from_secs(15), || {
        ["checkout", "search", "cart"]
            .iter()
            .all(|s| told_after(&chat, "opened", s, 0) == 1)
    });

    let profile = tempfile::tempdir().expect("browser profile");
    let browser = Browser::start(profile.path());
    let origin = format!("http://127.0.0.1:{}", router.port);
    let signed_in = format!("http://dana:anad@127.0.0.1:{}", router.port);
    browser.open(&format!("{signed_in}/incidents"));
    let list = wait_until("the list", Duration::from_secs(15), || {
        let source = browser.source();
        source.contains("Open incidents").then_some(source)
    });
    for service in ["checkout", "search", "cart"] {
        assert!(list.contains(&format!("<td>{service}</td>")), "{list}");
    }
    assert!(list.contains("3 of 3") && list.contains("dana"));
    let shots = artefacts();
    browser.screenshot(1280, 900, &shots.join("incidents-desktop.png"));
    browser.screenshot(390, 844, &shots.join("incidents-phone.png"));
    browser.screenshot(1280, 900, &shots.join("incidents-desktop.png"));

    // Acknowledge checkout from its page.
    browser.click("a[href*=\"checkout\"]");
    wait_for("checkout's page", Duration::from_secs(15), || {
        browser.source().contains("Timeline")
    });
    browser.click("form[action=\"/incidents/acknowledge\"] button");
    let page = wait_until("acknowledged on the page", Duration::from_secs(15), || {
        let source = browser.source();
        source.contains("Acknowledged by dana").then_some(source)
    });
    assert!(page.contains("Unacknowledge"));
    let acknowledged = wait_until("the chat told", Duration::from_secs(15), || {
        chat.received()
            .into_iter()
            .find(|r| r.body["kind"] == "acknowledged" && r.body["service"] == "checkout")
    });
    assert_eq!(acknowledged.body["by"], "dana");
    let acked_at = acknowledged.body["at"].as_i64().expect("at");
    browser.screenshot(390, 844, &shots.join("incident-phone.png"));

    // Silence search from its page.
    browser.session_call(
        "POST",
        "/window/rect",
        Some(json!({"width": 1280, "height": 900})),
    );
    browser.open(&format!("{origin}/incidents"));
    browser.click("a[href*=\"search\"]");
    wait_for("search's page", Duration::from_secs(15), || {
        browser.source().contains("Timeline")
    });
    browser.click("details summary");
    browser.type_into("input[name=\"comment\"]", "reindexing");
    browser.click("form[action=\"/incidents/silence\"] button");
    let silences = wait_until("the silence listed", Duration::from_secs(15), || {
        let source = browser.source();
        source.contains("reindexing").then_some(source)
    });
    assert!(
        silences.contains("service=&quot;search&quot;") || silences.contains("service=\"search\""),
        "{silences}"
    );
    let silenced_at = chrono::Utc::now().timestamp_millis();

    // cart, neither acknowledged nor silenced, is reminded: by then checkout's and search's
    // reminders were due, and neither came.
    wait_for(
        "cart reminded after the silence",
        Duration::from_secs(30),
        || told_after(&chat, "reminder", "cart", silenced_at) > 0,
    );
    assert_eq!(told_after(&chat, "reminder", "checkout", acked_at), 0);
    assert_eq!(told_after(&chat, "reminder", "search", silenced_at), 0);

    // Nothing on the network but the router was asked for (the browser's own chrome:// and data:
    // URLs reach no host).
    let urls: Vec<String> = browser
        .requested_urls()
        .into_iter()
        .filter(|url| url.starts_with("http") || url.starts_with("ws"))
        .collect();
    assert!(
        urls.iter().any(|u| u.contains("/incidents/style.css")),
        "the performance log lists the requests: {urls:?}"
    );
    for url in &urls {
        assert!(
            url.starts_with(&origin) || url.starts_with(&signed_in),
            "the page asked another host: {url}"
        );
    }
}
