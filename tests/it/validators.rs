//! The golden output of every case passes the real validators: promtool (config and rules),
//! amtool (config and the route of every team), kubectl kustomize and kubernetes-validate --strict.
//!
//! Debian's promtool has no Kubernetes service discovery, so the config check runs on a copy in
//! which each `kubernetes_sd_configs` list becomes an empty `static_configs` (relabelling still
//! parses and compiles) and in-cluster file paths point at temporary files. stackgen checks the
//! `kubernetes_sd_configs` blocks itself (`render::k8s_sd`), on the original.
//!
//! Each check is a function over a rendered directory, so other rendered stacks (the marketplace
//! listing) go through the same validators.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use super::support::{GOLDEN_CASES, render_to_temp, root, run_ok, stdout, tool};

const PROMETHEUS_PKG: &str = "apt-get install prometheus";
const ALERTMANAGER_PKG: &str = "apt-get install prometheus-alertmanager";
const KUBECTL_PKG: &str =
    "the kubectl package (Google Cloud CLI packaging, preinstalled on the build image)";
const KUBERNETES_VALIDATE_PKG: &str = "pip install kubernetes-validate";

fn golden_dir(case: &str) -> PathBuf {
    root().join("tests/golden").join(case)
}

fn yaml_key(key: &str) -> Yaml {
    Yaml::String(key.to_string())
}

/// Rewrites a parsed prometheus.yml so Debian's promtool can check it fully (see module docs).
fn promtool_ready(config: &mut Yaml, token_file: &Path, rules_glob: &Path) {
    fn rewrite_entry(entry: &mut Yaml, token_file: &Path) {
        let Yaml::Hash(map) = entry else { return };
        if map.remove(&yaml_key("kubernetes_sd_configs")).is_some() {
            let mut group = Hash::new();
            group.insert(yaml_key("targets"), Yaml::Array(Vec::new()));
            map.insert(
                yaml_key("static_configs"),
                Yaml::Array(vec![Yaml::Hash(group)]),
            );
        }
        if let Some(Yaml::Hash(auth)) = map.get_mut(&yaml_key("authorization"))
            && auth.contains_key(&yaml_key("credentials_file"))
        {
            auth.insert(
                yaml_key("credentials_file"),
                yaml_key(&token_file.display().to_string()),
            );
        }
        if let Some(Yaml::Hash(tls)) = map.get_mut(&yaml_key("tls_config"))
            && tls.contains_key(&yaml_key("ca_file"))
        {
            tls.insert(
                yaml_key("ca_file"),
                yaml_key(&token_file.display().to_string()),
            );
        }
    }
    let Yaml::Hash(root_map) = config else {
        panic!("prometheus.yml is not a mapping")
    };
    if let Some(Yaml::Array(jobs)) = root_map.get_mut(&yaml_key("scrape_configs")) {
        jobs.iter_mut().for_each(|j| rewrite_entry(j, token_file));
    }
    if let Some(Yaml::Hash(alerting)) = root_map.get_mut(&yaml_key("alerting"))
        && let Some(Yaml::Array(managers)) = alerting.get_mut(&yaml_key("alertmanagers"))
    {
        managers
            .iter_mut()
            .for_each(|m| rewrite_entry(m, token_file));
    }
    root_map.insert(
        yaml_key("rule_files"),
        Yaml::Array(vec![yaml_key(&rules_glob.display().to_string())]),
    );
}

#[test]
fn promtool_accepts_config_and_rules() {
    for (case, _) in GOLDEN_CASES {
        check_promtool(case, &golden_dir(case));
    }
    // Services of every metrics convention, most with objectives: their rules are no duplicates.
    let (_tmp, out) = render_to_temp("tests/fixtures/conventions/stack.yaml");
    check_promtool("conventions", &out);
}

/// `promtool check config` on a checkable copy of `dir`'s prometheus.yml (every rule file found)
/// and `promtool check rules --lint-fatal` on its rule files.
pub fn check_promtool(case: &str, dir: &Path) {
    let promtool = tool("promtool", PROMETHEUS_PKG);
    let tmp = tempfile::tempdir().expect("temp dir");
    let token = tmp.path().join("token");
    fs::write(&token, "test-token").expect("token file");
    let rules_dir = tmp.path().join("rules");
    fs::create_dir(&rules_dir).expect("rules dir");
    let mut rule_files = Vec::new();
    for entry in fs::read_dir(dir.join("prometheus/rules")).expect("rules") {
        let path = entry.expect("entry").path();
        fs::copy(&path, rules_dir.join(path.file_name().expect("name"))).expect("copy rule file");
        rule_files.push(path);
    }
    rule_files.sort();

    let text = fs::read_to_string(dir.join("prometheus/prometheus.yml")).expect("prometheus.yml");
    let mut docs = YamlLoader::load_from_str(&text).expect("prometheus.yml parses");
    promtool_ready(&mut docs[0], &token, &rules_dir.join("*.yaml"));
    let mut copy = String::new();
    YamlEmitter::new(&mut copy).dump(&docs[0]).expect("emit");
    let copy_path = tmp.path().join("prometheus.yml");
    fs::write(&copy_path, copy).expect("write copy");

    let output = run_ok(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(&copy_path),
    );
    let said = stdout(&output);
    assert!(
        said.contains(&format!("{} rule files found", rule_files.len())),
        "{case}: promtool did not check every rule file:\n{said}"
    );
    run_ok(
        Command::new(&promtool)
            .args(["check", "rules", "--lint-fatal"])
            .args(&rule_files),
    );
}

#[test]
fn promtool_copy_keeps_every_job_and_relabel_rule() {
    // The rewrite must only swap discovery: job names and relabel rules stay as rendered.
    let text = fs::read_to_string(golden_dir("stack").join("prometheus/prometheus.yml"))
        .expect("prometheus.yml");
    let original = YamlLoader::load_from_str(&text).expect("parses");
    let mut copy = original.clone();
    promtool_ready(
        &mut copy[0],
        Path::new("/tmp/token"),
        Path::new("/tmp/rules/*.yaml"),
    );
    let jobs = |d: &Yaml| d["scrape_configs"].as_vec().expect("jobs").clone();
    assert_eq!(jobs(&original[0]).len(), jobs(&copy[0]).len());
    for (a, b) in jobs(&original[0]).iter().zip(jobs(&copy[0]).iter()) {
        assert_eq!(a["job_name"], b["job_name"]);
        assert_eq!(a["relabel_configs"], b["relabel_configs"]);
        assert!(b["kubernetes_sd_configs"].is_badvalue());
    }
}

#[test]
fn amtool_accepts_config_and_routes_every_team_to_the_router() {
    for (case, spec_path) in GOLDEN_CASES {
        check_amtool(case, &golden_dir(case), spec_path);
    }
}

/// `amtool check-config` on `dir`'s alertmanager.yml, and every team of the spec at `spec_path`
/// (relative to the root), cluster-wide alerts and the Watchdog routed to the router.
pub fn check_amtool(case: &str, dir: &Path, spec_path: &str) {
    let amtool = tool("amtool", ALERTMANAGER_PKG);
    // The templates where this output has them, so amtool parses them too.
    let rendered = fs::read_to_string(dir.join("alertmanager/alertmanager.yml")).expect("config");
    let templates = dir.join("alertmanager/stackgen.tmpl");
    let checked = tempfile::tempdir().expect("temp dir");
    let config = checked.path().join("alertmanager.yml");
    fs::write(
        &config,
        rendered.replace(
            "/etc/alertmanager/stackgen.tmpl",
            &templates.display().to_string(),
        ),
    )
    .expect("write config");
    let checked_config = run_ok(Command::new(&amtool).arg("check-config").arg(&config));
    if rendered.contains("/etc/alertmanager/stackgen.tmpl") {
        assert!(
            String::from_utf8_lossy(&checked_config.stdout).contains(" - 1 templates"),
            "{case}: amtool did not load stackgen.tmpl"
        );
    }
    let spec = stackgen::spec::load(&root().join(spec_path))
        .unwrap_or_else(|e| panic!("{case}: spec {spec_path} loads: {e}"));
    let route = |receiver: &str, labels: &[String]| {
        run_ok(
            Command::new(&amtool)
                .args(["config", "routes", "test"])
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--verify.receivers={receiver}"))
                .args(labels),
        );
    };
    for team in &spec.teams {
        route(
            "stackgen-router",
            &[
                "alertname=ServiceTargetsDown".into(),
                format!("team={}", team.name),
                "service=checkout".into(),
                "severity=critical".into(),
            ],
        );
        // A team's rule named like the router's health alerts stays on the router's path.
        route(
            "stackgen-router",
            &[
                "alertname=StackgenRouterDown".into(),
                format!("team={}", team.name),
                "severity=critical".into(),
            ],
        );
    }
    route(
        "stackgen-router",
        &[
            "alertname=KubeNodeNotReady".into(),
            "severity=warning".into(),
        ],
    );
    route(
        "stackgen-router-heartbeat",
        &["alertname=Watchdog".into(), "severity=info".into()],
    );
}

/// The manifest files the kustomization lists (everything else is config rendered into ConfigMaps).
pub fn manifests(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization");
    let docs = YamlLoader::load_from_str(&text).expect("kustomization parses");
    docs[0]["resources"]
        .as_vec()
        .expect("resources")
        .iter()
        .map(|r| dir.join(r.as_str().expect("path")))
        .collect()
}

#[test]
fn kustomize_builds_and_every_manifest_passes_kubernetes_validate_strict() {
    for (case, _) in GOLDEN_CASES {
        check_kustomize_and_kubernetes_validate(case, &golden_dir(case));
    }
}

/// `kubectl kustomize` builds `dir` (generating every config ConfigMap, every object labelled
/// `app.kubernetes.io/part-of: stackgen`), and `kubernetes-validate --strict` accepts each listed
/// manifest and the built stream. Returns the built stream.
pub fn check_kustomize_and_kubernetes_validate(case: &str, dir: &Path) -> String {
    let kubectl = tool("kubectl", KUBECTL_PKG);
    let validate = tool("kubernetes-validate", KUBERNETES_VALIDATE_PKG);
    let built = run_ok(Command::new(&kubectl).arg("kustomize").arg(dir));
    let docs = YamlLoader::load_from_str(&stdout(&built)).expect("kustomize output parses");
    for name in [
        "prometheus-config",
        "prometheus-rules",
        "alertmanager-config",
        "grafana-dashboards",
        "stackgen-router-config",
    ] {
        // A fleet's cluster whose router runs in another cluster has none of its own.
        if name == "stackgen-router-config" && !dir.join("router").exists() {
            continue;
        }
        assert!(
            docs.iter().any(|d| d["kind"].as_str() == Some("ConfigMap")
                && d["metadata"]["name"].as_str() == Some(name)),
            "{case}: kustomize did not generate ConfigMap {name}"
        );
    }
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(),
            Some("stackgen"),
            "{case}: {:?}/{:?} lacks the part-of label",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }

    run_ok(
        Command::new(&validate)
            .args(["-k", "1.31.0", "--strict", "--quiet"])
            .args(manifests(dir)),
    );
    let mut child = Command::new(&validate)
        .args(["-k", "1.31.0", "--strict", "--quiet", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubernetes-validate starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&built.stdout)
        .expect("write stdin");
    let output = child.wait_with_output().expect("kubernetes-validate ends");
    assert!(
        output.status.success(),
        "{case}: kustomize output fails kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&built)
}

#[test]
fn rendered_router_yaml_passes_router_check_config() {
    for (case, _) in GOLDEN_CASES {
        check_router_config(case, &golden_dir(case));
    }
}

/// `stackgen router check-config` accepts `dir`'s router/router.yaml. The database's CA bundle
/// (`store.postgres.ca_file`, a Secret mounted in the cluster) is stood in for by a throwaway CA
/// certificate and the users file by one user, since check-config reads them.
pub fn check_router_config(case: &str, dir: &Path) {
    let mut config = dir.join("router/router.yaml");
    let text = std::fs::read_to_string(&config).expect("router.yaml");
    let scratch = tempfile::tempdir().expect("temp dir");
    if let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("ca_file: "))
    {
        let ca = super::pg::TestCa::new("stand-in CA");
        let stand_in = scratch.path().join("ca.pem");
        std::fs::copy(ca.cert(), &stand_in).expect("copy the CA certificate");
        let mounted = line.trim_start().trim_start_matches("ca_file: ");
        let local = text.replace(mounted, stand_in.to_str().expect("utf-8"));
        config = scratch.path().join("router.yaml");
        std::fs::write(&config, local).expect("router.yaml copy");
    }
    // The users file (`people.users_file`, a mounted Secret) is stood in for by one user.
    let text = std::fs::read_to_string(&config).expect("router.yaml");
    if let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("users_file: "))
    {
        let stand_in = scratch.path().join("users");
        let hash = bcrypt::hash("stand-in", 4).expect("hash");
        std::fs::write(&stand_in, format!("dana:{hash}\n")).expect("users file");
        let mounted = line.trim_start().trim_start_matches("users_file: ");
        let local = text.replace(mounted, stand_in.to_str().expect("utf-8"));
        config = scratch.path().join("router.yaml");
        std::fs::write(&config, local).expect("router.yaml copy");
    }
    let output =
        super::support::stackgen(&["router", "check-config", config.to_str().expect("utf-8")]);
    assert!(
        output.status.success(),
        "{case}: {}",
        super::support::stderr(&output)
    );
}
