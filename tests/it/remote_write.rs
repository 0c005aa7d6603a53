//! `prometheus.remote_write` end to end: the real Prometheus, with the rendered configuration,
//! writes to two real Prometheus servers started with `--web.enable-remote-write-receiver`.
//!
//! One receiver takes everything and demands HTTP basic auth (its web config holds a bcrypt hash
//! of the password the spec names by Secret reference), so the series reaching it prove the
//! credentials went from the mounted Secret file to the wire. The other takes only recorded
//! series (`series: [recorded]`). Both must hold the series with the `cluster` external label.

use serde_json::{Value, json};
use std::path::Path;

use super::e2e::{DEADLINE, Fleet, Server, spawn, start_prometheus};
use super::support::{free_port, render_into, tool, wait_explained};

const CLUSTER: &str = "eu-west-1";
const USER: &str = "eu-west-1";
const PASSWORD: &str = "remote-write-test-password";

/// A receiving Prometheus on a loopback port (killed by its PID when dropped), behind HTTP
/// basic auth or not.
struct Receiver {
    server: Server,
    basic_auth: bool,
}

impl Receiver {
    fn start(dir: &Path, name: &str, basic_auth: bool) -> Receiver {
        let binary = tool("prometheus", "apt-get install prometheus");
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("receiver dir");
        let config = home.join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").expect("receiver config");
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", home.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
        ];
        if basic_auth {
            let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
            let web = home.join("web.yml");
            std::fs::write(&web, format!("basic_auth_users:\n  {USER}: '{hash}'\n"))
                .expect("web config");
            args.push(format!("--web.config.file={}", web.display()));
        }
        let receiver = Receiver {
            server: spawn(name, &binary, &args, &[], &home, port),
            basic_auth,
        };
        wait_explained(
            "the receiver to be ready",
            DEADLINE,
            || receiver.get("/-/ready").is_some(),
            || receiver.log(),
        );
        receiver
    }

    fn write_url(&self) -> String {
        self.server.url("/api/v1/write")
    }

    /// A GET of `path`, signed in when the receiver demands it.
    fn request(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let request = ureq::get(&self.server.url(path));
        if self.basic_auth {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            request.header("Authorization", &format!("Basic {token}"))
        } else {
            request
        }
    }

    fn get(&self, path: &str) -> Option<String> {
        read_body(self.request(path))
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        read_body(self.request("/api/v1/query").query("query", promql))
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|answer| answer["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        self.server.log()
    }
}

fn read_body(request: ureq::RequestBuilder<ureq::typestate::WithoutBody>) -> Option<String> {
    let mut response = request.call().ok()?;
    response.body_mut().read_to_string().ok()
}

#[test]
fn the_rendered_remote_write_reaches_real_receivers_with_credentials_filters_and_the_cluster_label()
{
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let everything = Receiver::start(dir, "everything", true);
    let recorded = Receiver::start(dir, "recorded", false);
    let spec = dir.join("stack.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"cluster: {{name: {CLUSTER}}}
prometheus:
  remote_write:
    - name: central
      url: {}
      basic_auth: {{username: {USER}, password: {{secret: central-write, key: password}}}}
      headers: {{X-Scope-OrgID: platform}}
      queue: {{batch_send_deadline: 1s, max_shards: 2}}
    - name: recorded-only
      url: {}
      series: [recorded]
router: {{platform_team: payments}}
teams:
  - name: payments
    webhook: {{url: {{secret: hooks, key: payments}}}}
services:
  - {{name: checkout, team: payments, namespace: shop, selector: {{app: checkout}}, port: http}}
"#,
            everything.write_url(),
            recorded.write_url()
        ),
    )
    .expect("spec");
    let out = dir.join("out");
    render_into(&spec, &out);
    let secrets = dir.join("etc/prometheus/secrets/central-write");
    std::fs::create_dir_all(&secrets).expect("secret dir");
    std::fs::write(secrets.join("password"), PASSWORD).expect("secret");

    let checkout = Fleet::start("checkout", "shop", "payments", "http");
    let _prometheus = start_prometheus(&out, dir, &[checkout], &[], &[]);

    // Everything, with the cluster label, behind the receiver's basic auth.
    let up = format!(r#"up{{job="shop/checkout", cluster="{CLUSTER}", team="payments"}}"#);
    wait_explained(
        "the services' series at the receiver taking everything",
        DEADLINE,
        || everything.query(&up).len() == 20,
        || everything.log(),
    );
    let recorded_rule =
        format!(r#"stackgen:service_targets:count{{cluster="{CLUSTER}", service="checkout"}}"#);
    wait_explained(
        "recorded series at the receiver taking everything",
        DEADLINE,
        || !everything.query(&recorded_rule).is_empty(),
        || everything.log(),
    );

    // Only recorded series at the other: once it holds several evaluations' worth of them, the
    // scrapes they were computed from (written before each evaluation) would be there too.
    let cycles = format!("count_over_time({recorded_rule}[5m])");
    wait_explained(
        "five evaluations of a recorded series at the receiver of recorded series",
        DEADLINE,
        || {
            recorded
                .query(&cycles)
                .first()
                .and_then(|r| r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
                .is_some_and(|n| n >= 5.0)
        },
        || recorded.log(),
    );
    let raw = recorded.query(r#"{__name__=~".+", __name__!~".+:.+"}"#);
    assert!(
        raw.is_empty(),
        "the recorded-only receiver got raw series: {}",
        json!(raw.iter().take(3).collect::<Vec<_>>())
    );
    let with_cluster = recorded.query(&format!(r#"{{__name__=~".+:.+", cluster!="{CLUSTER}"}}"#));
    assert!(
        with_cluster.is_empty(),
        "every series carries the cluster label: {with_cluster:?}"
    );
}
