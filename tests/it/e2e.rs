//! End to end with the real software, exactly as stackgen renders it: the real Prometheus
//! evaluates the rendered rules over test services of many loopback instances, the real
//! Alertmanager (alone, or as a clustered HA pair) groups and routes with the rendered config,
//! and the router deduplicates and delivers to stubs of the chat and pager services and to a real
//! SMTP server.
//!
//! Only what must change to run on loopback is rewritten: target discovery, addresses, file paths,
//! and timings (seconds instead of minutes). Debian's Prometheus has no Kubernetes service
//! discovery, so every `kubernetes_sd_configs` becomes `file_sd_configs` whose target groups carry
//! the `__meta_kubernetes_*` labels a cluster would supply: the rendered relabelling runs for real
//! (it must drop a sidecar's port and a pod that is not running) and gives the series their
//! `service` and `team` labels as it will in a cluster.
//!
//! Every scenario waits on outcomes with deadlines and then asserts the exact list of
//! notifications at every destination of every team.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use super::destinations::{Killed, SmtpServer, start_smtp};
use super::http_stub::{HttpStub, Reply};
use super::kube_state::{ClusterState, Deployment, KubeStateMetrics};
use super::router::{Router, Sink, TOKEN};
use super::support::{free_port, render_to_temp, tool, wait_explained};

const PROMETHEUS_PKG: &str = "apt-get install prometheus";
pub(super) const ALERTMANAGER_PKG: &str = "apt-get install prometheus-alertmanager";
const SPEC: &str = "tests/fixtures/specs/e2e.yaml";
/// The longest any one outcome may take (a transition takes a few seconds).
pub(super) const DEADLINE: Duration = Duration::from_secs(60);
/// How many instances each test service runs.
const INSTANCES: usize = 20;
const PAGERDUTY_ROUTING_KEY: &str = "R0UTINGKEYE2E0000000000000000000";
const OPSGENIE_API_KEY: &str = "00000000-1111-2222-3333-444444444444";

/// What a test service's instances answer on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// `e2e_healthy 1`.
    Healthy = 0,
    /// Scraped fine, but `e2e_healthy 0`: the team's per-pod alert fires for every instance.
    Unhealthy = 1,
    /// 503 on every scrape: `up` is 0, the default service-level rules see a failing target.
    Down = 2,
}

/// A test service: instances on loopback ports whose health the test switches together.
pub(super) struct Fleet {
    service: &'static str,
    namespace: &'static str,
    team: &'static str,
    /// The container port name the service's scrape job keeps.
    port_name: &'static str,
    ports: Vec<u16>,
    health: Arc<AtomicU8>,
    /// The instances' servers, serving until the fleet is dropped.
    _instances: Vec<HttpStub>,
}

impl Fleet {
    pub(super) fn start(
        service: &'static str,
        namespace: &'static str,
        team: &'static str,
        port_name: &'static str,
    ) -> Fleet {
        let health = Arc::new(AtomicU8::new(Health::Healthy as u8));
        let instances: Vec<HttpStub> = (0..INSTANCES)
            .map(|_| {
                let health = health.clone();
                HttpStub::start(move |_| scrape(&health))
            })
            .collect();
        let ports = instances.iter().map(|instance| instance.port).collect();
        Fleet {
            service,
            namespace,
            team,
            port_name,
            ports,
            health,
            _instances: instances,
        }
    }

    fn set(&self, health: Health) {
        self.health.store(health as u8, Ordering::SeqCst);
    }

    fn job_name(&self) -> String {
        format!("{}/{}", self.namespace, self.service)
    }

    /// The target groups Kubernetes pod discovery would give the service's scrape job: one per
    /// container port of every pod. Besides the metrics port, every pod has a sidecar port, and
    /// one more pod is still pending: the rendered relabelling must drop both.
    fn target_groups(&self) -> Value {
        let group = |pod: String, node: usize, port_name: &str, port: u16, phase: &str| {
            json!({
                "targets": [format!("127.0.0.1:{port}")],
                "labels": {
                    "__meta_kubernetes_namespace": self.namespace,
                    "__meta_kubernetes_pod_name": pod,
                    "__meta_kubernetes_pod_node_name": format!("node-{node}"),
                    "__meta_kubernetes_pod_phase": phase,
                    "__meta_kubernetes_pod_ready": if phase == "Running" { "true" } else { "false" },
                    "__meta_kubernetes_pod_label_app": self.service,
                    "__meta_kubernetes_pod_container_name": self.service,
                    "__meta_kubernetes_pod_container_port_name": port_name,
                    "__meta_kubernetes_pod_container_port_number": port.to_string(),
                    "__meta_kubernetes_pod_container_port_protocol": "TCP",
                }
            })
        };
        let mut groups = Vec::new();
        for (index, port) in self.ports.iter().enumerate() {
            let pod = format!("{}-5d8f7c9b4-{index:02}", self.service);
            groups.push(group(
                pod.clone(),
                index % 3,
                self.port_name,
                *port,
                "Running",
            ));
            groups.push(group(pod, index % 3, "sidecar-admin", 9, "Running"));
        }
        let pending = format!("{}-5d8f7c9b4-pending", self.service);
        groups.push(group(pending, 0, self.port_name, 9, "Pending"));
        Value::Array(groups)
    }
}

/// Answers a scrape as the instances' shared `health` says.
fn scrape(health: &AtomicU8) -> Reply {
    let health = health.load(Ordering::SeqCst);
    if health == Health::Down as u8 {
        return Reply::new(503, "");
    }
    let value = u8::from(health == Health::Healthy as u8);
    let body = format!(
        "# HELP e2e_healthy Whether the instance passes its own health check.\n# TYPE e2e_healthy gauge\ne2e_healthy {value}\n"
    );
    Reply::new(200, body).header("Content-Type", "text/plain; version=0.0.4")
}

/// A real Prometheus or Alertmanager process on a loopback port, killed by its PID when dropped.
pub(super) struct Server {
    name: String,
    port: u16,
    log: PathBuf,
    _process: Killed,
}

impl Server {
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn get_json(&self, path: &str) -> Value {
        get_json(&self.url(path))
    }

    /// The series of an instant query to this Prometheus.
    pub(super) fn query(&self, expr: &str) -> Vec<Value> {
        super::support::query(&self.url(""), expr)
    }

    pub(super) fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn get_json(url: &str) -> Value {
    ureq::get(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .ok()
        .and_then(|mut response| response.body_mut().read_to_string().ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

pub(super) fn get_ok(url: &str) -> bool {
    ureq::get(url)
        .call()
        .is_ok_and(|response| response.status() == 200)
}

/// The stand-ins for the SaaS destinations, by `team/destination`.
struct Stubs {
    slack: Sink,
    pagerduty: Sink,
    msteams: Sink,
    opsgenie: Sink,
    webhook: Sink,
}

impl Stubs {
    fn start() -> Stubs {
        Stubs {
            slack: Sink::start(200),
            pagerduty: Sink::start(202),
            msteams: Sink::start(202),
            opsgenie: Sink::start(202),
            webhook: Sink::start(200),
        }
    }

    fn all(&self) -> [(&'static str, &Sink); 5] {
        [
            ("payments/slack", &self.slack),
            ("payments/pagerduty", &self.pagerduty),
            ("search/msteams", &self.msteams),
            ("search/opsgenie", &self.opsgenie),
            ("platform/webhook", &self.webhook),
        ]
    }

    /// Makes every stub answer `status` (and, for the pagers, their 202 once healthy).
    fn answer(&self, healthy: bool) {
        for (name, sink) in self.all() {
            let status = match (healthy, name) {
                (false, _) => 503,
                (true, "payments/slack" | "platform/webhook") => 200,
                (true, _) => 202,
            };
            sink.status.store(status, Ordering::SeqCst);
        }
    }
}

/// The alert names the scenarios make fire.
const ALERTNAMES: &[&str] = &[
    "CheckoutPodUnhealthy",
    "SearchApiPodUnhealthy",
    "ServiceTargetsDown",
];

/// `opened:<alertname>` or `resolved:<alertname>` for one request a stub accepted.
fn describe(
    destination: &str,
    request_line: &str,
    body: &Value,
    keys: &BTreeMap<String, String>,
) -> String {
    let text = body.to_string();
    let named = ALERTNAMES
        .iter()
        .find(|name| text.contains(*name))
        .map(|name| name.to_string());
    match destination {
        // PagerDuty resolves and Opsgenie closes by key only: name them by what the key opened.
        "payments/pagerduty" => {
            let key = body["dedup_key"].as_str().unwrap_or_default();
            match body["event_action"].as_str() {
                Some("trigger") => format!("opened:{}", named.unwrap_or_default()),
                Some("resolve") => {
                    format!("resolved:{}", keys.get(key).cloned().unwrap_or_default())
                }
                other => format!("unexpected event_action {other:?}"),
            }
        }
        "search/opsgenie" => {
            if request_line.ends_with("/close?identifierType=alias") {
                let alias = request_line
                    .trim_start_matches("POST /v2/alerts/")
                    .trim_end_matches("/close?identifierType=alias");
                format!("resolved:{}", keys.get(alias).cloned().unwrap_or_default())
            } else {
                format!("opened:{}", named.unwrap_or_default())
            }
        }
        "platform/webhook" => format!(
            "{}:{}",
            body["kind"].as_str().unwrap_or_default(),
            named.unwrap_or_default()
        ),
        _ => {
            let transition = if text.contains("RESOLVED") {
                "resolved"
            } else {
                "opened"
            };
            format!("{transition}:{}", named.unwrap_or_default())
        }
    }
}

/// Everything one scenario runs: the rendered stack, started on loopback.
struct Pipeline {
    prometheus: Server,
    alertmanagers: Vec<Server>,
    router: Router,
    router_port: u16,
    router_dir: PathBuf,
    stubs: Stubs,
    fleets: Vec<Fleet>,
    /// kube-state-metrics' stand-in; serves no objects until a scenario sets some.
    kube_state: KubeStateMetrics,
    maildir: PathBuf,
    _smtp: SmtpServer,
    /// Removed last, after every process above is killed.
    _tmp: tempfile::TempDir,
}

impl Pipeline {
    /// Renders the e2e spec and starts everything, with `alertmanagers` clustered Alertmanagers.
    fn start(alertmanagers: usize) -> Pipeline {
        let (tmp, out) = render_to_temp(SPEC);
        let dir = tmp.path().to_path_buf();
        let fleets = vec![
            Fleet::start("checkout", "shop", "payments", "http-metrics"),
            Fleet::start("search-api", "search", "search", "metrics"),
        ];
        let stubs = Stubs::start();
        let maildir = dir.join("mail");
        let smtp = start_smtp(&maildir);
        write_secrets(&dir, &stubs);
        let (router, router_port, router_dir) = start_router(&out, &dir, &stubs, smtp.port);
        let alertmanagers = start_alertmanagers(&out, &dir, alertmanagers, router_port);
        let kube_state = KubeStateMetrics::start(&out, ClusterState::default());
        let prometheus = start_prometheus(
            &out,
            &dir,
            &fleets,
            &[("kube-state-metrics", kube_state.target_groups())],
            &alertmanagers,
        );
        let pipeline = Pipeline {
            prometheus,
            alertmanagers,
            router,
            router_port,
            router_dir,
            stubs,
            fleets,
            kube_state,
            maildir,
            _smtp: smtp,
            _tmp: tmp,
        };
        pipeline.wait_for("every instance to be scraped, and nothing else", || {
            pipeline
                .fleets
                .iter()
                .all(|fleet| pipeline.targets_up(fleet) == INSTANCES)
        });
        pipeline
    }

    fn fleet(&self, service: &str) -> &Fleet {
        self.fleets
            .iter()
            .find(|fleet| fleet.service == service)
            .expect("a test service")
    }

    /// Instances of `fleet` that Prometheus scrapes successfully, with the labels the rendered
    /// relabelling must give them. Panics on a target that should have been dropped.
    fn targets_up(&self, fleet: &Fleet) -> usize {
        let targets = self.prometheus.get_json("/api/v1/targets?state=active");
        let active: Vec<&Value> = targets["data"]["activeTargets"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|t| t["scrapePool"] == fleet.job_name().as_str())
                    .collect()
            })
            .unwrap_or_default();
        for target in &active {
            let labels = &target["labels"];
            assert_eq!(labels["service"], fleet.service, "{target}");
            assert_eq!(labels["team"], fleet.team, "{target}");
            assert_eq!(labels["namespace"], fleet.namespace, "{target}");
            assert_eq!(labels["cluster"], "e2e", "{target}");
            assert!(
                labels["pod"]
                    .as_str()
                    .is_some_and(|pod| !pod.ends_with("-pending")),
                "a pod that is not running was kept: {target}"
            );
        }
        assert!(
            active.len() <= INSTANCES,
            "a sidecar port or pending pod was kept: {active:?}"
        );
        active.iter().filter(|t| t["health"] == "up").count()
    }

    /// The alerting rule `name` as Prometheus reports it (state, health, last evaluation).
    fn rule(&self, name: &str) -> Value {
        let rules = self.prometheus.get_json("/api/v1/rules?type=alert");
        rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .find(|rule| rule["name"] == name)
            .unwrap_or(Value::Null)
    }

    /// Active alerts in one Alertmanager named `alertname`.
    fn alerts_in(&self, alertmanager: &Server, alertname: &str) -> usize {
        alertmanager
            .get_json(&format!("/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=alertname%3D%22{alertname}%22"))
            .as_array()
            .map_or(0, Vec::len)
    }

    /// The router's incidents named `alertname`: (status, members).
    fn incidents(&self, alertname: &str) -> Vec<(String, usize)> {
        let listed = get_json(&format!(
            "http://127.0.0.1:{}/api/v1/incidents",
            self.router_port
        ));
        listed["incidents"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|incident| incident["alertname"] == alertname)
                    .map(|incident| {
                        (
                            incident["status"]["state"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            incident["members"].as_array().map_or(0, Vec::len),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notifications the router still has to deliver.
    fn pending(&self) -> Option<u64> {
        let (status, text) = self.router.get("/metrics");
        (status == 200).then_some(())?;
        text.lines()
            .find_map(|line| line.strip_prefix("stackgen_outbox_pending_notifications "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    }

    /// Every notification each destination accepted, in order of arrival.
    fn delivered(&self) -> BTreeMap<String, Vec<String>> {
        let mut all = BTreeMap::new();
        for (destination, sink) in self.stubs.all() {
            let accepted: Vec<_> = sink
                .received()
                .into_iter()
                .filter(|r| r.answered < 300)
                .collect();
            // What each pager key opened, so resolves (which carry only the key) can be named.
            let mut keys = BTreeMap::new();
            for r in &accepted {
                let name = ALERTNAMES.iter().find(|n| r.body.to_string().contains(*n));
                for key in [&r.body["dedup_key"], &r.body["alias"]] {
                    if let (Some(key), Some(name)) = (key.as_str(), name) {
                        keys.insert(key.to_string(), name.to_string());
                    }
                }
            }
            let described = accepted
                .iter()
                .map(|r| describe(destination, &r.request_line, &r.body, &keys))
                .collect();
            all.insert(destination.to_string(), described);
        }
        all.insert("payments/email".to_string(), self.emails());
        all
    }

    /// The e-mails the SMTP server received, oldest first, as they arrived.
    fn mails(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|file| std::fs::read_to_string(file).unwrap_or_default())
            .collect()
    }

    /// The e-mails the SMTP server received, oldest first, as `opened:`/`resolved:` + alertname.
    fn emails(&self) -> Vec<String> {
        self.mails()
            .iter()
            .map(|message| {
                let subject = message
                    .lines()
                    .find_map(|line| line.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_string();
                let name = ALERTNAMES
                    .iter()
                    .find(|n| subject.contains(*n))
                    .copied()
                    .unwrap_or_default();
                let transition = if subject.starts_with("[RESOLVED]") {
                    "resolved"
                } else {
                    "opened"
                };
                format!("{transition}:{name}")
            })
            .collect()
    }

    /// Polls `check` until it holds; on timeout, fails with what every part has logged.
    fn wait_for(&self, what: &str, check: impl FnMut() -> bool) {
        wait_explained(what, DEADLINE, check, || self.diagnostics());
    }

    fn diagnostics(&self) -> String {
        let mut text = format!("delivered: {:#?}\n", self.delivered());
        text.push_str(&format!("--- router log\n{}\n", self.router.log()));
        for server in std::iter::once(&self.prometheus).chain(&self.alertmanagers) {
            text.push_str(&format!(
                "--- {} log (last lines)\n{}\n",
                server.name,
                server.log()
            ));
        }
        text
    }

    /// Waits until every destination of team payments (Slack, PagerDuty, e-mail) has accepted
    /// exactly `payments`, every one of team search (Teams, Opsgenie) exactly `search`, and the
    /// platform team's webhook nothing; then until the router has nothing left to deliver, and
    /// checks again: nothing arrived late.
    fn expect_delivered(&self, payments: &[&str], search: &[&str]) {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let expected: BTreeMap<String, Vec<String>> = [
            ("payments/slack", list(payments)),
            ("payments/pagerduty", list(payments)),
            ("payments/email", list(payments)),
            ("search/msteams", list(search)),
            ("search/opsgenie", list(search)),
            ("platform/webhook", Vec::new()),
        ]
        .into_iter()
        .map(|(destination, items)| (destination.to_string(), items))
        .collect();
        self.wait_for(
            &format!("exactly these notifications: {expected:#?}"),
            || self.delivered() == expected,
        );
        self.wait_for("the router to have nothing left to deliver", || {
            self.pending() == Some(0)
        });
        assert_eq!(self.delivered(), expected, "a notification arrived late");
    }

    /// Kills the router with SIGKILL and starts it again on the same port and store.
    fn restart_router(&mut self) {
        self.router.kill();
        self.router = Router::start_with(&self.router_dir, self.router_port);
    }
}

/// The base URL of a stub.
fn stub_base(sink: &Sink) -> String {
    format!("http://127.0.0.1:{}", sink.port)
}

/// Writes the Secrets as Kubernetes would mount them, under `dir/etc`.
fn write_secrets(dir: &Path, stubs: &Stubs) {
    let secrets = [
        ("stackgen/auth/token", TOKEN.to_string()),
        ("alertmanager/secrets/router/token", TOKEN.to_string()),
        (
            "stackgen/secrets/payments-alerting/slack-url",
            format!("{}/services/T000/B000/XXXX", stub_base(&stubs.slack)),
        ),
        (
            "stackgen/secrets/payments-alerting/pagerduty-routing-key",
            PAGERDUTY_ROUTING_KEY.to_string(),
        ),
        (
            "stackgen/secrets/search-alerting/teams-url",
            format!(
                "{}/workflows/e2e/triggers/manual/paths/invoke",
                stub_base(&stubs.msteams)
            ),
        ),
        (
            "stackgen/secrets/search-alerting/opsgenie-api-key",
            OPSGENIE_API_KEY.to_string(),
        ),
        (
            "stackgen/secrets/platform-alerting/webhook-url",
            format!("{}/hook", stub_base(&stubs.webhook)),
        ),
        (
            "serviceaccount/token",
            "e2e-serviceaccount-token".to_string(),
        ),
        ("serviceaccount/ca.crt", String::new()),
    ];
    for (path, value) in secrets {
        let file = dir.join("etc").join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("secret dir");
        std::fs::write(&file, value).expect("write secret");
    }
}

/// The router with its rendered configuration, its Secrets and SaaS endpoints on loopback;
/// returns it with its port and directory.
fn start_router(out: &Path, dir: &Path, stubs: &Stubs, smtp_port: u16) -> (Router, u16, PathBuf) {
    let router_port = free_port();
    let router_dir = dir.join("router");
    std::fs::create_dir_all(&router_dir).expect("router dir");
    let mut config = load_yaml(&out.join("router/router.yaml"));
    relocate_paths(&mut config, dir);
    set(
        &mut config,
        &["listen"],
        &format!("127.0.0.1:{router_port}"),
    );
    set(&mut config, &["dedup", "resolve_hold"], "1s");
    set(&mut config, &["delivery", "initial_backoff"], "100ms");
    set(&mut config, &["delivery", "max_backoff"], "500ms");
    set(&mut config, &["smtp", "host"], "127.0.0.1");
    set(&mut config, &["smtp", "tls"], "none");
    map_at(&mut config, &["smtp"]).insert(key("port"), Yaml::Integer(i64::from(smtp_port)));
    for team in ["payments", "search", "platform"] {
        let Yaml::Array(list) = map_at(&mut config, &["teams", team])
            .get_mut(&key("destinations"))
            .expect("destinations")
        else {
            panic!("destinations of {team} are not a list")
        };
        for destination in list {
            let Yaml::Hash(d) = destination else { continue };
            let api_url = match d.get(&key("kind")).and_then(Yaml::as_str) {
                Some("pagerduty") => format!("{}/v2/enqueue", stub_base(&stubs.pagerduty)),
                Some("opsgenie") => stub_base(&stubs.opsgenie),
                _ => continue,
            };
            d.insert(key("api_url"), Yaml::String(api_url));
        }
    }
    save_yaml(&router_dir.join("router.yaml"), &config);
    let router = Router::start_with(&router_dir, router_port);

    (router, router_port, router_dir)
}

/// `count` Alertmanagers (clustered when more than one) with the rendered configuration and
/// container args, sending to the router on `router_port`; ready (and seeing their peers).
pub(super) fn start_alertmanagers(
    out: &Path,
    dir: &Path,
    count: usize,
    router_port: u16,
) -> Vec<Server> {
    let alertmanager_bin = tool("prometheus-alertmanager", ALERTMANAGER_PKG);
    let mut config = load_yaml(&out.join("alertmanager/alertmanager.yml"));
    relocate_paths(&mut config, dir);
    rewrite_strings(&mut config, &|text| {
        text.replace(
            "http://stackgen-router.monitoring.svc:8080",
            &format!("http://127.0.0.1:{router_port}"),
        )
    });
    let templates = out.join("alertmanager/stackgen.tmpl");
    rewrite_strings(&mut config, &|text| match text {
        "/etc/alertmanager/stackgen.tmpl" => templates.display().to_string(),
        other => other.to_string(),
    });
    set(&mut config, &["route", "group_wait"], "1s");
    set(&mut config, &["route", "group_interval"], "1s");
    let am_config = dir.join("alertmanager.yml");
    save_yaml(&am_config, &config);
    let rendered_args = container_args(&out.join("alertmanager/statefulset.yaml"));
    let web_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let mut started = Vec::new();
    for index in 0..count {
        let mut args: Vec<String> = rendered_args
            .iter()
            .filter(|arg| !arg.starts_with("--cluster."))
            .map(|arg| match arg.split_once('=') {
                Some(("--config.file", _)) => format!("--config.file={}", am_config.display()),
                Some(("--storage.path", _)) => {
                    format!(
                        "--storage.path={}",
                        dir.join(format!("alertmanager-{index}")).display()
                    )
                }
                Some(("--web.listen-address", _)) => {
                    format!("--web.listen-address=127.0.0.1:{}", web_ports[index])
                }
                _ => arg.clone(),
            })
            .collect();
        if count == 1 {
            args.push("--cluster.listen-address=".into());
        } else {
            let own = cluster_ports[index];
            args.push(format!("--cluster.listen-address=127.0.0.1:{own}"));
            args.push(format!("--cluster.advertise-address=127.0.0.1:{own}"));
            args.extend(
                cluster_ports
                    .iter()
                    .map(|p| format!("--cluster.peer=127.0.0.1:{p}")),
            );
            // Seconds, not the default 15 s: how long a replica waits for its peers'
            // notification log before sending itself.
            args.push("--cluster.peer-timeout=1s".into());
        }
        started.push(spawn(
            &format!("alertmanager-{index}"),
            &alertmanager_bin,
            &args,
            &[],
            dir,
            web_ports[index],
        ));
    }
    for server in &started {
        wait_explained(
            &format!("{} to be ready", server.name),
            DEADLINE,
            || get_ok(&server.url("/-/ready")),
            || server.log(),
        );
    }
    if count > 1 {
        for server in &started {
            wait_explained(
                &format!("{} to see all {count} peers", server.name),
                DEADLINE,
                || {
                    let status = server.get_json("/api/v2/status");
                    status["cluster"]["status"] == "ready"
                        && status["cluster"]["peers"].as_array().map_or(0, Vec::len) == count
                },
                || server.log(),
            );
        }
    }

    started
}

/// Prometheus with the rendered configuration, rules and container args, discovering the test
/// services, the `exporters` (job name, target groups) and the Alertmanagers through files; ready.
pub(super) fn start_prometheus(
    out: &Path,
    dir: &Path,
    fleets: &[Fleet],
    exporters: &[(&str, Value)],
    alertmanagers: &[Server],
) -> Server {
    let prometheus_bin = tool("prometheus", PROMETHEUS_PKG);
    let sd = dir.join("sd");
    std::fs::create_dir_all(&sd).expect("sd dir");
    let mut config = load_yaml(&out.join("prometheus/prometheus.yml"));
    relocate_paths(&mut config, dir);
    set(&mut config, &["global", "scrape_interval"], "1s");
    set(&mut config, &["global", "evaluation_interval"], "1s");
    let rules = out.join("prometheus/rules/*.yaml").display().to_string();
    map_at(&mut config, &[]).insert(key("rule_files"), Yaml::Array(vec![Yaml::String(rules)]));
    let alertmanager_groups: Vec<Value> = alertmanagers
        .iter()
        .enumerate()
        .map(|(index, alertmanager)| {
            json!({
                "targets": [format!("127.0.0.1:{}", alertmanager.port)],
                "labels": {
                    "__meta_kubernetes_namespace": "monitoring",
                    "__meta_kubernetes_service_name": "alertmanager-headless",
                    "__meta_kubernetes_endpoint_port_name": "web",
                    "__meta_kubernetes_pod_name": format!("alertmanager-{index}"),
                }
            })
        })
        .collect();
    let Yaml::Array(managers) = map_at(&mut config, &["alerting"])
        .get_mut(&key("alertmanagers"))
        .expect("alertmanagers")
    else {
        panic!("alerting.alertmanagers is not a list")
    };
    for manager in managers.iter_mut() {
        use_file_sd(
            manager,
            &sd.join("alertmanagers.json"),
            &Value::Array(alertmanager_groups.clone()),
        );
    }
    let Yaml::Array(jobs) = map_at(&mut config, &[])
        .get_mut(&key("scrape_configs"))
        .expect("scrape_configs")
    else {
        panic!("scrape_configs is not a list")
    };
    for (index, job) in jobs.iter_mut().enumerate() {
        // The spec's own static targets (scrape jobs, probes) are scraped where they are.
        if !job["static_configs"].is_badvalue() {
            continue;
        }
        let name = job["job_name"].as_str().unwrap_or_default().to_string();
        let groups = fleets
            .iter()
            .find(|fleet| fleet.job_name() == name)
            .map(Fleet::target_groups)
            .or_else(|| {
                exporters
                    .iter()
                    .find(|(job, _)| *job == name)
                    .map(|(_, groups)| groups.clone())
            })
            .unwrap_or(Value::Array(Vec::new()));
        use_file_sd(job, &sd.join(format!("job-{index}.json")), &groups);
    }
    let prometheus_config = dir.join("prometheus.yml");
    save_yaml(&prometheus_config, &config);
    let port = free_port();
    let mut args: Vec<String> = container_args(&out.join("prometheus/statefulset.yaml"))
        .into_iter()
        .map(|arg| match arg.split_once('=') {
            Some(("--config.file", _)) => {
                format!("--config.file={}", prometheus_config.display())
            }
            Some(("--storage.tsdb.path", _)) => {
                format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                )
            }
            _ => arg,
        })
        .collect();
    args.push(format!("--web.listen-address=127.0.0.1:{port}"));
    // The rendered image (Prometheus 3) expands `${POD_NAME}` in external labels by default;
    // Debian's 2.42 needs the feature flag.
    args.push("--enable-feature=expand-external-labels".into());
    let prometheus = spawn(
        "prometheus",
        &prometheus_bin,
        &args,
        &[("POD_NAME", "prometheus-0")],
        dir,
        port,
    );
    wait_explained(
        "prometheus to be ready",
        DEADLINE,
        || get_ok(&prometheus.url("/-/ready")),
        || prometheus.log(),
    );

    prometheus
}

pub(super) fn spawn(
    name: &str,
    binary: &Path,
    args: &[String],
    env: &[(&str, &str)],
    dir: &Path,
    port: u16,
) -> Server {
    let log = dir.join(format!("{name}.log"));
    let process = Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
    Server {
        name: name.to_string(),
        port,
        log,
        _process: Killed(process),
    }
}

pub(super) fn key(name: &str) -> Yaml {
    Yaml::String(name.to_string())
}

pub(super) fn load_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).expect("rendered file");
    YamlLoader::load_from_str(&text)
        .expect("rendered YAML parses")
        .into_iter()
        .next()
        .expect("one document")
}

pub(super) fn save_yaml(path: &Path, document: &Yaml) {
    let mut text = String::new();
    YamlEmitter::new(&mut text)
        .dump(document)
        .expect("emit YAML");
    std::fs::write(path, text + "\n").expect("write config");
}

/// The mapping at `path` (the root for an empty path).
pub(super) fn map_at<'a>(document: &'a mut Yaml, path: &[&str]) -> &'a mut Hash {
    let mut node = document;
    for step in path {
        let Yaml::Hash(map) = node else {
            panic!("{path:?}: not a mapping at {step}")
        };
        node = map
            .get_mut(&key(step))
            .unwrap_or_else(|| panic!("{path:?}: no {step}"));
    }
    match node {
        Yaml::Hash(map) => map,
        _ => panic!("{path:?} is not a mapping"),
    }
}

fn set(document: &mut Yaml, path: &[&str], value: &str) {
    let (last, parent) = path.split_last().expect("a path");
    map_at(document, parent).insert(key(last), Yaml::String(value.to_string()));
}

pub(super) fn rewrite_strings(node: &mut Yaml, rewrite: &dyn Fn(&str) -> String) {
    match node {
        Yaml::String(text) => *text = rewrite(text),
        Yaml::Array(list) => list
            .iter_mut()
            .for_each(|item| rewrite_strings(item, rewrite)),
        Yaml::Hash(map) => map
            .iter_mut()
            .for_each(|(_, value)| rewrite_strings(value, rewrite)),
        _ => {}
    }
}

/// Points the in-cluster paths (mounted Secrets, the service account, the data volume) at the
/// same files under `dir`.
pub(super) fn relocate_paths(document: &mut Yaml, dir: &Path) {
    let etc = dir.join("etc");
    let var = dir.join("var");
    rewrite_strings(document, &|text| {
        for (from, to) in [
            ("/etc/stackgen/", etc.join("stackgen")),
            (
                "/etc/alertmanager/secrets/",
                etc.join("alertmanager/secrets"),
            ),
            (
                "/var/run/secrets/kubernetes.io/serviceaccount/",
                etc.join("serviceaccount"),
            ),
            ("/var/lib/stackgen/", var.clone()),
            ("/etc/prometheus/secrets/", etc.join("prometheus/secrets")),
        ] {
            if let Some(rest) = text.strip_prefix(from) {
                return to.join(rest).display().to_string();
            }
        }
        text.to_string()
    });
    std::fs::create_dir_all(&var).expect("state dir");
}

/// Replaces a job's `kubernetes_sd_configs` with one `file_sd_configs` file holding `groups`.
pub(super) fn use_file_sd(job: &mut Yaml, file: &Path, groups: &Value) {
    let Yaml::Hash(map) = job else {
        panic!("a job is not a mapping")
    };
    assert!(
        map.remove(&key("kubernetes_sd_configs")).is_some(),
        "every rendered job discovers through the Kubernetes API"
    );
    std::fs::write(file, serde_json::to_vec_pretty(groups).expect("json")).expect("write sd file");
    let mut sd = Hash::new();
    sd.insert(
        key("files"),
        Yaml::Array(vec![Yaml::String(file.display().to_string())]),
    );
    map.insert(key("file_sd_configs"), Yaml::Array(vec![Yaml::Hash(sd)]));
}

/// The `args` of the first container of a rendered workload.
pub(super) fn container_args(workload: &Path) -> Vec<String> {
    let document = load_yaml(workload);
    document["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_vec()
        .expect("rendered args")
        .iter()
        .filter_map(|arg| arg.as_str().map(str::to_string))
        .collect()
}

const NOTHING: &[&str] = &[];
const CHECKOUT_OPENED: &[&str] = &["opened:CheckoutPodUnhealthy"];
const CHECKOUT_OPENED_RESOLVED: &[&str] = &[
    "opened:CheckoutPodUnhealthy",
    "resolved:CheckoutPodUnhealthy",
];
const SEARCH_OPENED_RESOLVED: &[&str] = &[
    "opened:SearchApiPodUnhealthy",
    "resolved:SearchApiPodUnhealthy",
];

#[test]
fn a_storm_of_twenty_failing_pods_is_one_incident_for_the_owning_team_only() {
    let pipeline = Pipeline::start(1);
    pipeline.fleet("checkout").set(Health::Unhealthy);
    pipeline.wait_for("all 20 pods in one incident", || {
        pipeline.incidents("CheckoutPodUnhealthy") == [("open".to_string(), INSTANCES)]
    });
    pipeline.expect_delivered(CHECKOUT_OPENED, NOTHING);
    assert_eq!(
        pipeline.alerts_in(&pipeline.alertmanagers[0], "CheckoutPodUnhealthy"),
        INSTANCES
    );

    pipeline.fleet("checkout").set(Health::Healthy);
    pipeline.expect_delivered(CHECKOUT_OPENED_RESOLVED, NOTHING);
}

#[test]
fn two_services_of_two_teams_failing_at_once_reach_only_their_owners() {
    let pipeline = Pipeline::start(1);
    pipeline.fleet("checkout").set(Health::Unhealthy);
    pipeline.fleet("search-api").set(Health::Unhealthy);
    pipeline.wait_for("one incident per service, each with all its pods", || {
        pipeline.incidents("CheckoutPodUnhealthy") == [("open".to_string(), INSTANCES)]
            && pipeline.incidents("SearchApiPodUnhealthy") == [("open".to_string(), INSTANCES)]
    });
    pipeline.fleet("checkout").set(Health::Healthy);
    pipeline.fleet("search-api").set(Health::Healthy);
    pipeline.expect_delivered(CHECKOUT_OPENED_RESOLVED, SEARCH_OPENED_RESOLVED);
}

#[test]
fn an_alertmanager_ha_pair_still_gives_one_notification_per_transition() {
    let pipeline = Pipeline::start(2);
    pipeline.fleet("checkout").set(Health::Unhealthy);
    // Prometheus sends every alert to both replicas, and both may notify the router.
    pipeline.wait_for("both Alertmanagers to hold all 20 alerts", || {
        pipeline
            .alertmanagers
            .iter()
            .all(|am| pipeline.alerts_in(am, "CheckoutPodUnhealthy") == INSTANCES)
    });
    pipeline.expect_delivered(CHECKOUT_OPENED, NOTHING);
    pipeline.fleet("checkout").set(Health::Healthy);
    pipeline.expect_delivered(CHECKOUT_OPENED_RESOLVED, NOTHING);
}

#[test]
fn a_router_killed_with_pending_notifications_loses_nothing_and_pages_once() {
    let mut pipeline = Pipeline::start(1);
    pipeline.stubs.answer(false);
    pipeline.fleet("checkout").set(Health::Unhealthy);
    // The e-mail goes out (the SMTP server is up) and is recorded; the others keep failing.
    pipeline.wait_for(
        "the e-mail sent and the chat and pager deliveries failing",
        || {
            pipeline.emails() == ["opened:CheckoutPodUnhealthy"]
                && pipeline.pending() == Some(2)
                && [&pipeline.stubs.slack, &pipeline.stubs.pagerduty]
                    .iter()
                    .all(|sink| sink.received().len() >= 2)
        },
    );
    pipeline.restart_router();
    pipeline.stubs.answer(true);
    pipeline.expect_delivered(CHECKOUT_OPENED, NOTHING);
    pipeline.fleet("checkout").set(Health::Healthy);
    pipeline.expect_delivered(CHECKOUT_OPENED_RESOLVED, NOTHING);
    // Every attempt at the pager, failed or not, before and after the crash, used one key.
    let keys: std::collections::BTreeSet<String> = pipeline
        .stubs
        .pagerduty
        .received()
        .iter()
        .filter_map(|r| r.body["dedup_key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "one PagerDuty dedup key per incident: {keys:?}"
    );
}

#[test]
fn a_destination_down_for_a_while_gets_every_notification_in_order() {
    let pipeline = Pipeline::start(1);
    pipeline.stubs.slack.status.store(503, Ordering::SeqCst);
    pipeline.fleet("checkout").set(Health::Unhealthy);
    pipeline.wait_for("the others notified while Slack answers 503", || {
        pipeline.delivered()["payments/pagerduty"] == CHECKOUT_OPENED
            && pipeline.stubs.slack.received().len() >= 3
    });
    pipeline.fleet("checkout").set(Health::Healthy);
    pipeline.wait_for(
        "the resolve delivered elsewhere, Slack still failing",
        || {
            pipeline.delivered()["payments/pagerduty"] == CHECKOUT_OPENED_RESOLVED
                && pipeline.pending() == Some(2)
        },
    );
    pipeline.stubs.slack.status.store(200, Ordering::SeqCst);
    pipeline.expect_delivered(CHECKOUT_OPENED_RESOLVED, NOTHING);
    let failed = pipeline
        .stubs
        .slack
        .received()
        .iter()
        .filter(|r| r.answered == 503)
        .count();
    assert!(failed >= 3, "Slack answered 503 {failed} times");
}

#[test]
fn a_default_service_rule_fires_for_failing_targets_and_stays_silent_while_healthy() {
    let pipeline = Pipeline::start(1);
    // Three evaluations of the default service rules over healthy targets: nothing fires.
    let mut evaluations = std::collections::BTreeSet::new();
    pipeline.wait_for(
        "three evaluations of ServiceTargetsDown over healthy targets",
        || {
            let rule = pipeline.rule("ServiceTargetsDown");
            assert_eq!(rule["health"], "ok", "{rule}");
            assert_eq!(rule["state"], "inactive", "{rule}");
            evaluations.insert(rule["lastEvaluation"].to_string());
            evaluations.len() > 3
        },
    );
    assert_eq!(
        pipeline.alerts_in(&pipeline.alertmanagers[0], "ServiceTargetsDown"),
        0
    );

    pipeline.fleet("checkout").set(Health::Down);
    pipeline.wait_for("ServiceTargetsDown to fire for checkout", || {
        pipeline.incidents("ServiceTargetsDown") == [("open".to_string(), 1)]
    });
    pipeline.fleet("checkout").set(Health::Healthy);
    let both = &["opened:ServiceTargetsDown", "resolved:ServiceTargetsDown"];
    pipeline.expect_delivered(both, NOTHING);
}

/// The rendered inhibition, in the real Alertmanager: a critical alert silences warnings only of
/// its own (non-empty) namespace and service, or of its own node; an alert that carries none of
/// those labels (a control-plane alert) silences nothing.
#[test]
fn a_critical_alert_inhibits_only_the_warnings_of_its_own_service_or_node() {
    let (tmp, out) = render_to_temp(SPEC);
    let alertmanager = start_alertmanagers(&out, tmp.path(), 1, free_port()).remove(0);
    let starts = chrono::Utc::now();
    let alert = |labels: &[(&str, &str)]| {
        let mut all: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        all.insert("cluster".into(), json!("e2e"));
        json!({
            "labels": all,
            "startsAt": starts.to_rfc3339(),
            "endsAt": (starts + chrono::Duration::hours(1)).to_rfc3339(),
        })
    };
    // (alert, whether a critical alert above it must inhibit it); sources first.
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "control plane (critical)",
            alert(&[("alertname", "KubeSchedulerDown"), ("severity", "critical")]),
            false,
        ),
        (
            "node n1 (critical)",
            alert(&[
                ("alertname", "NodeFilesystemAlmostFull"),
                ("severity", "critical"),
                ("node", "n1"),
            ]),
            false,
        ),
        (
            "checkout (critical)",
            alert(&[
                ("alertname", "ServiceTargetsDown"),
                ("severity", "critical"),
                ("namespace", "shop"),
                ("service", "checkout"),
            ]),
            false,
        ),
        (
            "node n2",
            alert(&[
                ("alertname", "KubeNodePressure"),
                ("severity", "warning"),
                ("node", "n2"),
            ]),
            false,
        ),
        (
            "node n2, filling",
            alert(&[
                ("alertname", "NodeFilesystemFillingUp"),
                ("severity", "warning"),
                ("node", "n2"),
            ]),
            false,
        ),
        (
            "search-api",
            alert(&[
                ("alertname", "ServiceHighLatency"),
                ("severity", "warning"),
                ("namespace", "search"),
                ("service", "search-api"),
            ]),
            false,
        ),
        (
            "a workload of shop",
            alert(&[
                ("alertname", "KubeDeploymentReplicasUnavailable"),
                ("severity", "warning"),
                ("namespace", "shop"),
                ("deployment", "cart"),
            ]),
            false,
        ),
        (
            "node n1, filling",
            alert(&[
                ("alertname", "NodeFilesystemFillingUp"),
                ("severity", "warning"),
                ("node", "n1"),
            ]),
            true,
        ),
        (
            "checkout",
            alert(&[
                ("alertname", "ServiceHighLatency"),
                ("severity", "warning"),
                ("namespace", "shop"),
                ("service", "checkout"),
            ]),
            true,
        ),
    ];
    let body = Value::Array(cases.iter().map(|(_, alert, _)| alert.clone()).collect());
    let posted = ureq::post(&alertmanager.url("/api/v2/alerts"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes());
    assert!(
        posted.is_ok(),
        "posting alerts: {posted:?}\n{}",
        alertmanager.log()
    );
    let inhibited = |alerts: &Value, labels: &Value| {
        alerts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"] == labels["labels"])
            .map(|a| {
                a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|by| !by.is_empty())
            })
    };
    // Wait until every alert is in and the two that must be inhibited are: the sources, posted
    // first in the same body, have been taken into account by then.
    let mut alerts = Value::Null;
    wait_explained(
        "the alerts in Alertmanager, the expected two inhibited",
        DEADLINE,
        || {
            alerts = alertmanager.get_json("/api/v2/alerts");
            cases
                .iter()
                .all(|(_, alert, expected)| match inhibited(&alerts, alert) {
                    Some(state) => !expected || state,
                    None => false,
                })
        },
        || alertmanager.log(),
    );
    for (what, alert, expected) in &cases {
        assert_eq!(
            inhibited(&alerts, alert),
            Some(*expected),
            "{what}: inhibited should be {expected}\n{alerts:#}"
        );
    }
}

/// kube-state-metrics' view of the Kubernetes scenario's cluster, all healthy: checkout (in
/// payments' namespace `shop`, selected by service checkout of payments with `app: checkout`)
/// and ledger, which no service selects, in payments' namespace `ledger`; two Ready nodes.
fn healthy_cluster() -> ClusterState {
    let deployment = |namespace, name| Deployment {
        namespace,
        name,
        pod_labels: BTreeMap::from([("app", name), ("pod-template-hash", "5d8f7c9b4")]),
        replicas: 3,
        available: 3,
        restarts: 0,
    };
    ClusterState {
        deployments: vec![
            deployment("shop", "checkout"),
            deployment("ledger", "ledger"),
        ],
        nodes: BTreeMap::from([("node-0", true), ("node-1", true)]),
    }
}

/// A request a stub accepted, as text.
fn accepted(sink: &Sink) -> Vec<String> {
    sink.received()
        .into_iter()
        .filter(|r| r.answered < 300)
        .map(|r| r.body.to_string())
        .collect()
}

impl Pipeline {
    /// The router's open incidents: (team, service, key, alert names of its members).
    fn open_incidents(&self) -> Vec<(String, String, String, BTreeSet<String>)> {
        let listed = get_json(&format!(
            "http://127.0.0.1:{}/api/v1/incidents",
            self.router_port
        ));
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        listed["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|incident| incident["status"]["state"] == "open")
            .map(|incident| {
                let signals = incident["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|member| text(&member["alertname"]))
                    .collect();
                (
                    text(&incident["team"]),
                    text(&incident["service"]),
                    text(&incident["key"]),
                    signals,
                )
            })
            .collect()
    }

    /// How many series `query` returns in Prometheus now.
    fn series(&self, query: &str) -> usize {
        self.prometheus.query(query).len()
    }
}

#[test]
fn kubernetes_signals_reach_the_team_that_owns_the_workload_as_one_incident_per_service() {
    let pipeline = Pipeline::start(1);
    pipeline
        .kube_state
        .update(|cluster| *cluster = healthy_cluster());
    pipeline.wait_for("the ownership rules to give checkout its service and team", || {
        pipeline.series(
            r#"stackgen:workload_owner:info{namespace="shop", workload="checkout", service="checkout", team="payments"}"#,
        ) == 1
    });

    // checkout fails three ways at once: its pods stop answering, no replica is available, and
    // its containers restart.
    pipeline.fleet("checkout").set(Health::Down);
    pipeline.kube_state.update(|cluster| {
        let checkout = &mut cluster.deployments[0];
        checkout.available = 0;
        checkout.restarts = 12;
    });
    pipeline.wait_for(
        "one incident for checkout holding both critical signals",
        || {
            let open = pipeline.open_incidents();
            open.len() == 1
                && open[0].0 == "payments"
                && open[0].1 == "checkout"
                && ["ServiceTargetsDown", "KubeWorkloadUnavailable"]
                    .iter()
                    .all(|signal| open[0].3.contains(*signal))
        },
    );
    pipeline.wait_for("the router to have nothing left to deliver", || {
        pipeline.pending() == Some(0)
    });
    let pages: Vec<Value> = pipeline
        .stubs
        .pagerduty
        .received()
        .into_iter()
        .filter(|r| r.answered < 300)
        .map(|r| r.body)
        .collect();
    let page_keys: BTreeSet<&str> = pages
        .iter()
        .filter_map(|page| page["dedup_key"].as_str())
        .collect();
    assert!(
        !pages.is_empty() && page_keys.len() == 1,
        "one page (later signals update it under the same key): {pages:#?}"
    );
    assert!(
        pages.iter().all(|page| page["event_action"] == "trigger"),
        "{pages:#?}"
    );
    let chat = accepted(&pipeline.stubs.slack);
    assert!(
        !chat.is_empty() && chat.iter().all(|message| message.contains("checkout")),
        "{chat:#?}"
    );
    for sink in [
        &pipeline.stubs.msteams,
        &pipeline.stubs.opsgenie,
        &pipeline.stubs.webhook,
    ] {
        assert_eq!(
            accepted(sink),
            Vec::<String>::new(),
            "only payments is told"
        );
    }

    // ledger, which no service selects, runs short of a replica in payments' namespace: a
    // warning, for payments' chat and e-mail, not its pager.
    let pages_before = pages.len();
    let chat_before = chat.len();
    pipeline
        .kube_state
        .update(|cluster| cluster.deployments[1].available = 2);
    pipeline.wait_for("ledger's warning in chat and e-mail", || {
        accepted(&pipeline.stubs.slack)[chat_before..]
            .iter()
            .any(|message| message.contains("ledger"))
            && pipeline
                .mails()
                .iter()
                .any(|mail| mail.contains("KubeDeploymentReplicasUnavailable"))
    });
    pipeline.wait_for("the router to have nothing left to deliver", || {
        pipeline.pending() == Some(0)
    });
    let ledger: Vec<_> = pipeline
        .open_incidents()
        .into_iter()
        .filter(|(_, _, key, _)| key.contains("workload=ledger"))
        .collect();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].0, "payments", "{ledger:?}");
    // Pages since then can only be updates of checkout's open incident (a member of its signals
    // changing), under its one key: none is about ledger.
    let checkout_key = page_keys.iter().next().copied().unwrap_or_default();
    let pages_now = accepted(&pipeline.stubs.pagerduty);
    let later = &pages_now[pages_before.min(pages_now.len())..];
    assert!(
        later
            .iter()
            .all(|page| !page.contains("ledger") && page.contains(checkout_key)),
        "a warning never pages: {later:#?}"
    );
    assert_eq!(accepted(&pipeline.stubs.webhook), Vec::<String>::new());

    // A node stops being Ready: an alert of no service, for the platform team only.
    let chat_before = accepted(&pipeline.stubs.slack).len();
    let mails_before = pipeline.mails().len();
    pipeline.kube_state.update(|cluster| {
        cluster
            .nodes
            .insert("node-1", false)
            .map(|_| ())
            .unwrap_or(())
    });
    pipeline.wait_for("the platform team to hear of node-1", || {
        accepted(&pipeline.stubs.webhook)
            .iter()
            .any(|message| message.contains("KubeNodeNotReady") && message.contains("node-1"))
    });
    pipeline.wait_for("the router to have nothing left to deliver", || {
        pipeline.pending() == Some(0)
    });
    assert_eq!(accepted(&pipeline.stubs.slack).len(), chat_before);
    assert_eq!(pipeline.mails().len(), mails_before);
    // As above, only updates of checkout's open incident may have paged since: none of node-1.
    let pages_now = accepted(&pipeline.stubs.pagerduty);
    let later = &pages_now[pages_before.min(pages_now.len())..];
    assert!(
        later
            .iter()
            .all(|page| !page.contains("node-1") && page.contains(checkout_key)),
        "a node of the platform team pages nobody of payments: {later:#?}"
    );
    for sink in [&pipeline.stubs.msteams, &pipeline.stubs.opsgenie] {
        assert_eq!(accepted(sink), Vec::<String>::new());
    }
}
