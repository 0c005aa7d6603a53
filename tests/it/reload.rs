//! Reload, not restart: a team's rule change reaches the running Prometheus, and a new team's
//! route the running Alertmanager, through the rendered `config-reloader` sidecar, while the
//! rendered StatefulSets stay byte for byte the same (so no pod would roll). The mounted
//! ConfigMaps are directories laid out as the kubelet lays them out, and updated as it updates
//! them: the new version written beside the old, then the `..data` link swapped atomically.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use yaml_rust2::Yaml;

use super::destinations::Killed;
use super::e2e::{
    ALERTMANAGER_PKG, DEADLINE, Server, container_args, get_ok, load_yaml, relocate_paths,
    save_yaml, spawn, start_prometheus,
};
use super::support::{free_port, root, run_ok, tool, wait_explained};

const SPEC: &str = "tests/fixtures/teams/stack.yaml";

/// A directory as the kubelet writes a ConfigMap volume: each version's files in `..vN`,
/// `..data` linking to the current one, every visible name a link through `..data`.
struct ConfigMapVolume {
    dir: PathBuf,
    version: usize,
}

impl ConfigMapVolume {
    fn new(dir: &Path, files: &[(String, String)]) -> ConfigMapVolume {
        fs::create_dir_all(dir).expect("volume dir");
        let mut volume = ConfigMapVolume {
            dir: dir.to_path_buf(),
            version: 0,
        };
        volume.update(files);
        volume
    }

    /// Writes the next version and swaps `..data` to it in one rename, then links new names.
    fn update(&mut self, files: &[(String, String)]) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let data = self.dir.join(&version);
        fs::create_dir_all(&data).expect("version dir");
        for (name, text) in files {
            fs::write(data.join(name), text).expect("write");
        }
        let swap = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &swap).expect("link");
        fs::rename(&swap, self.dir.join("..data")).expect("swap");
        for (name, _) in files {
            let visible = self.dir.join(name);
            if fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &visible).expect("link");
            }
        }
    }
}

/// The files of a rendered directory, by name.
fn files_of(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .expect("rendered dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().into_string().expect("UTF-8 name");
            (
                name,
                fs::read_to_string(entry.path()).expect("rendered file"),
            )
        })
        .collect();
    files.sort();
    files
}

/// Renders `spec` into `out`.
fn render(spec: &Path, out: &Path) {
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_stackgen"))
            .args(["render", &spec.display().to_string(), "--out"])
            .arg(out),
    );
}

/// Copies the team-files fixture into `to`, to be changed there.
fn copy_fixture(to: &Path) -> PathBuf {
    copy_tree(&root().join("tests/fixtures/teams"), to);
    to.join("stack.yaml")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The rendered `config-reloader` sidecar of `workload`, run here: its watched paths mapped by
/// `paths` (every one must be), its reload URL pointed at `target`, looking every 100 ms.
fn start_reloader(workload: &Path, paths: &[(&str, &Path)], target: &Server, log: &Path) -> Killed {
    let document = load_yaml(workload);
    let containers = document["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers");
    let reloader = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("config-reloader"))
        .expect("a config-reloader sidecar");
    let out = workload.parent().and_then(Path::parent).expect("out dir");
    let router = load_yaml(&out.join("router/deployment.yaml"));
    assert_eq!(
        reloader["image"], router["spec"]["template"]["spec"]["containers"][0]["image"],
        "the reloader is the stackgen binary, in the router's image"
    );
    let mut args: Vec<String> = reloader["args"]
        .as_vec()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .map(|arg| match arg.split_once('=') {
            Some(("--watch", path)) => {
                let (_, local) = paths
                    .iter()
                    .find(|(rendered, _)| *rendered == path)
                    .unwrap_or_else(|| panic!("the test does not map the watched path {path}"));
                format!("--watch={}", local.display())
            }
            Some(("--reload-url", url)) => {
                let path = url.splitn(4, '/').nth(3).expect("a path");
                format!("--reload-url={}", target.url(&format!("/{path}")))
            }
            _ => arg.to_string(),
        })
        .collect();
    args.push("--interval=100ms".into());
    let child = Command::new(env!("CARGO_BIN_EXE_stackgen"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).expect("log"))
        .spawn()
        .expect("the reloader starts");
    Killed(child)
}

/// One sample of `metric` from `server`'s /metrics.
fn sample(server: &Server, metric: &str) -> Option<f64> {
    let text = ureq::get(&server.url("/metrics"))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `loaded` holds, then checks that `server` is the process that started at
/// `started` and that its last reload succeeded (`reload_metric` is 1).
fn reloaded_in_place(
    server: &Server,
    started: f64,
    reload_metric: &str,
    reloader_log: &Path,
    what: &str,
    loaded: impl FnMut() -> bool,
) {
    wait_explained(what, DEADLINE, loaded, || {
        format!(
            "{}\nreloader: {}",
            server.log(),
            fs::read_to_string(reloader_log).unwrap_or_default()
        )
    });
    assert_eq!(
        sample(server, "process_start_time_seconds"),
        Some(started),
        "the same process"
    );
    assert_eq!(sample(server, reload_metric), Some(1.0), "{reload_metric}");
}

fn assert_same_workloads(a: &Path, b: &Path) {
    for workload in [
        "prometheus/statefulset.yaml",
        "alertmanager/statefulset.yaml",
    ] {
        assert_eq!(
            fs::read_to_string(a.join(workload)).expect("rendered"),
            fs::read_to_string(b.join(workload)).expect("rendered"),
            "{workload} changed with configuration: its pods would roll"
        );
    }
}

#[test]
fn a_changed_team_rule_reaches_the_running_prometheus_without_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    render(&root().join(SPEC), &v1);
    let changed = copy_fixture(&tmp.path().join("spec-v2"));
    let rules = changed.with_file_name("teams/rules/payments.yaml");
    let mut text = fs::read_to_string(&rules).expect("team rules");
    text.push_str(
        "      - alert: CheckoutRefundsStuck
        expr: sum by (cluster, namespace, service) (checkout_refunds_pending) > 100
        for: 30m
        labels:
          severity: warning
        annotations:
          summary: Refunds are piling up.
          description: More than 100 refunds have waited for half an hour.
          runbook_url: https://github.com/stackgen/stackgen/blob/main/docs/runbooks.md#checkoutrefundsstuck
",
    );
    fs::write(&rules, text).expect("change the team's rules");
    render(&changed, &v2);
    assert_same_workloads(&v1, &v2);

    // Prometheus reads its rules from a ConfigMap volume holding v1's.
    let rules_dir = v1.join("prometheus/rules");
    let v1_rules = files_of(&rules_dir);
    fs::remove_dir_all(&rules_dir).expect("rendered rules");
    let mut volume = ConfigMapVolume::new(&rules_dir, &v1_rules);
    let run = tmp.path().join("run");
    fs::create_dir_all(&run).expect("run dir");
    let prometheus = start_prometheus(&v1, &run, &[], &[], &[]);
    let config_dir = tmp.path().join("config");
    fs::create_dir_all(&config_dir).expect("config dir");
    let reloader_log = tmp.path().join("reloader.log");
    let _reloader = start_reloader(
        &v1.join("prometheus/statefulset.yaml"),
        &[
            ("/etc/prometheus", &config_dir),
            ("/etc/prometheus/rules", &rules_dir),
        ],
        &prometheus,
        &reloader_log,
    );
    let started = sample(&prometheus, "process_start_time_seconds").expect("start time");
    let alerts = |server: &Server| -> Vec<String> {
        let rules = server.get_json("/api/v1/rules");
        rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(alerts(&prometheus).contains(&"CheckoutPaymentFailuresHigh".to_string()));
    assert!(!alerts(&prometheus).contains(&"CheckoutRefundsStuck".to_string()));

    volume.update(&files_of(&v2.join("prometheus/rules")));
    reloaded_in_place(
        &prometheus,
        started,
        "prometheus_config_last_reload_successful",
        &reloader_log,
        "the changed rule file to be loaded",
        || alerts(&prometheus).contains(&"CheckoutRefundsStuck".to_string()),
    );
    let rule = prometheus.get_json("/api/v1/rules");
    let labelled = rule["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["name"] == "CheckoutRefundsStuck")
        .map(|r| r["labels"]["team"].clone());
    assert_eq!(
        labelled,
        Some(Value::from("payments")),
        "labelled with its team"
    );
}

#[test]
fn a_new_teams_route_reaches_the_running_alertmanager_without_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (v1, v2) = (tmp.path().join("v1"), tmp.path().join("v2"));
    render(&root().join(SPEC), &v1);
    let changed = copy_fixture(&tmp.path().join("spec-v2"));
    fs::write(
        changed.with_file_name("teams/billing.yaml"),
        "team: billing\nslack: {url: {secret: billing-alerting, key: slack-url}}\nservices:\n  - name: invoices\n    namespace: billing\n    port: 8080\n",
    )
    .expect("a new team file");
    render(&changed, &v2);
    assert_same_workloads(&v1, &v2);

    let run = tmp.path().join("run");
    let token = run.join("etc/alertmanager/secrets/router/token");
    fs::create_dir_all(token.parent().expect("dir")).expect("secrets dir");
    fs::write(&token, "token").expect("token");
    let config_dir = tmp.path().join("config");
    let config_files = |out: &Path| -> Vec<(String, String)> {
        let mut config = load_yaml(&out.join("alertmanager/alertmanager.yml"));
        relocate_paths(&mut config, &run);
        let relocated = run.join("relocated.yml");
        save_yaml(&relocated, &config);
        let text = fs::read_to_string(&relocated)
            .expect("relocated")
            .replace("/etc/alertmanager/", &format!("{}/", config_dir.display()));
        let mut files = vec![("alertmanager.yml".to_string(), text)];
        if let Ok(templates) = fs::read_to_string(out.join("alertmanager/stackgen.tmpl")) {
            files.push(("stackgen.tmpl".to_string(), templates));
        }
        files
    };
    let mut volume = ConfigMapVolume::new(&config_dir, &config_files(&v1));

    let port = free_port();
    // One replica here: the rendered peers' addresses are the cluster's.
    let mut args: Vec<String> = container_args(&v1.join("alertmanager/statefulset.yaml"))
        .into_iter()
        .filter(|arg| !arg.starts_with("--cluster."))
        .map(|arg| match arg.split_once('=') {
            Some(("--config.file", _)) => {
                format!(
                    "--config.file={}",
                    config_dir.join("alertmanager.yml").display()
                )
            }
            Some(("--storage.path", _)) => {
                format!("--storage.path={}", run.join("data").display())
            }
            Some(("--web.listen-address", _)) => format!("--web.listen-address=127.0.0.1:{port}"),
            _ => arg,
        })
        .collect();
    args.push("--cluster.listen-address=".into());
    let alertmanager = spawn(
        "alertmanager",
        &tool("prometheus-alertmanager", ALERTMANAGER_PKG),
        &args,
        &[],
        &run,
        port,
    );
    wait_explained(
        "alertmanager to be ready",
        DEADLINE,
        || get_ok(&alertmanager.url("/-/ready")),
        || alertmanager.log(),
    );
    let reloader_log = tmp.path().join("reloader.log");
    let _reloader = start_reloader(
        &v1.join("alertmanager/statefulset.yaml"),
        &[("/etc/alertmanager", &config_dir)],
        &alertmanager,
        &reloader_log,
    );
    let started = sample(&alertmanager, "process_start_time_seconds").expect("start time");
    let routes_billing = |server: &Server| {
        server.get_json("/api/v2/status")["config"]["original"]
            .as_str()
            .is_some_and(|config| config.contains("billing"))
    };
    assert!(!routes_billing(&alertmanager), "v1 has no team billing");

    volume.update(&config_files(&v2));
    reloaded_in_place(
        &alertmanager,
        started,
        "alertmanager_config_last_reload_successful",
        &reloader_log,
        "the new route to be loaded",
        || routes_billing(&alertmanager),
    );
}
