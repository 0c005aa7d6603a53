//! The 1-click marketplace listing (`marketplace/stackgen-monitoring/`): its manifests are exactly
//! what `stackgen render` makes of its spec and pass the real validators; its scripts pass
//! shellcheck; and each script, run against a recording stand-in for `kubectl` (no cluster can run
//! here), makes exactly the expected calls, keeps what it must keep and stops loudly on a failure.
//!
//! The scripts run from a copy of the listing folder, from another directory, with a `PATH` that
//! holds only the stand-in and the few POSIX tools they use: a script that needed anything else
//! (a download tool, helm, git) would fail here.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use super::support::{
    GOLDEN_CASES, blessing, dir_differences, files_under, render_to_temp, root, run_ok, stackgen,
    stderr, stdout, tool,
};
use super::validators::{
    check_amtool, check_kustomize_and_kubernetes_validate, check_promtool, check_router_config,
    manifests,
};

const LISTING: &str = "marketplace/stackgen-monitoring";
const SCRIPTS: &[&str] = &["deploy.sh", "upgrade.sh", "uninstall.sh", "common.sh"];
const NS: &str = "stackgen-monitoring";
const MANAGER: &str = "--field-manager=stackgen-marketplace";

// The exact output formats and kinds the scripts pass to kubectl.
const NODE_LINES: &str = r#"jsonpath={range .items[*]}{.status.allocatable.cpu}{"\t"}{.status.allocatable.memory}{"\n"}{end}"#;
const WORKLOAD_LINES: &str = r#"jsonpath={range .items[*]}{.kind}{"\t"}{.metadata.name}{"\t"}{.metadata.labels.app\.kubernetes\.io/part-of}{"\n"}{end}"#;
const OBJECT_LINES: &str = r#"jsonpath={range .items[*]}{.apiVersion}{"\t"}{.kind}{"\t"}{.metadata.namespace}{"\t"}{.metadata.name}{"\n"}{end}"#;
const LIVE_OBJECT_LINES: &str = r#"jsonpath={range .items[*]}{.apiVersion}{"\t"}{.kind}{"\t"}{.metadata.namespace}{"\t"}{.metadata.name}{"\t"}{.metadata.managedFields[*].manager}{"\n"}{end}"#;
const OWNED_KINDS: &str = "deployments.apps,statefulsets.apps,daemonsets.apps,services,configmaps,serviceaccounts,networkpolicies.networking.k8s.io,poddisruptionbudgets.policy,ingresses.networking.k8s.io,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io";

/// The listing's workloads, in the order `kubectl apply -k` reports them.
const WORKLOADS: &[&str] = &[
    "deployment.apps/grafana",
    "deployment.apps/kube-state-metrics",
    "deployment.apps/stackgen-router",
    "statefulset.apps/alertmanager",
    "statefulset.apps/prometheus",
    "daemonset.apps/node-exporter",
];

/// Two small nodes (2 vCPU, about 3Gi allocatable each), as `kubectl get nodes` reports them.
const TWO_SMALL_NODES: &str = "1900m\t2965Mi\n1900m\t3036084Ki\n";

/// The POSIX tools the scripts may use besides kubectl, and the Debian package of each.
const SCRIPT_TOOLS: &[(&str, &str)] = &[
    ("dirname", "apt-get install coreutils"),
    ("od", "apt-get install coreutils"),
    ("tr", "apt-get install coreutils"),
    ("cat", "apt-get install coreutils"),
    ("awk", "apt-get install mawk"),
];

/// The recording stand-in for kubectl. It appends each call (argv, and standard input for
/// `-f -`) to calls.jsonl and answers from scenario.json: `nodes`, `applied` and `live` are the
/// outputs of `get nodes`, `apply -k` and the listing of owned objects; `installed` makes the
/// namespace exist; `workloads` are what already runs in it (as `get deployments,...` lines);
/// Secrets exist once created (or listed in `secrets`); a `failures` entry whose
/// `when` words all appear in a call makes that call fail with its `stderr`. Any call it does not
/// know fails with status 3.
const STANDIN: &str = r#"#!{python}
import json, os, sys

state = os.environ["KUBECTL_STANDIN"]
args = sys.argv[1:]
call = {"argv": args}
if "-f" in args and args[args.index("-f") + 1:][:1] == ["-"]:
    call["stdin"] = sys.stdin.read()
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(call) + "\n")
with open(os.path.join(state, "scenario.json")) as f:
    scenario = json.load(f)

for failure in scenario.get("failures", []):
    if all(word in args for word in failure["when"]):
        sys.stderr.write(failure["stderr"] + "\n")
        sys.exit(1)

secrets_file = os.path.join(state, "secrets")
secrets = list(scenario.get("secrets", []))
if os.path.exists(secrets_file):
    secrets += open(secrets_file).read().split()

def after(word):
    return args[args.index(word) + 1]

if args[:2] == ["get", "nodes"]:
    sys.stdout.write(scenario["nodes"])
elif "get" in args and "deployments,statefulsets,daemonsets" in args:
    sys.stdout.write(scenario.get("workloads", ""))
elif "get" in args and "secret" in args:
    if after("secret") in secrets:
        print("secret/" + after("secret"))
elif args == ["create", "-f", "-"]:
    name = [line.split(":", 1)[1].strip() for line in call["stdin"].splitlines() if line.startswith("  name:")][0]
    with open(secrets_file, "a") as f:
        f.write(name + "\n")
    print("secret/" + name + " created")
elif args[:2] == ["get", "namespace"]:
    if scenario.get("installed"):
        print("namespace/" + after("namespace"))
elif "apply" in args and "-k" in args:
    sys.stdout.write(scenario["applied"])
elif "apply" in args and "-f" in args:
    print("namespace/stackgen-monitoring serverside-applied")
elif "get" in args and "--all-namespaces" in args:
    sys.stdout.write(scenario["live"])
elif "rollout" in args:
    print(after("status") + " successfully rolled out")
elif "delete" in args:
    for word in args[args.index("delete") + 1:]:
        if not word.startswith("-"):
            print(word + " deleted")
else:
    sys.stderr.write("kubectl stand-in: unexpected call %r\n" % args)
    sys.exit(3)
"#;

fn listing_dir() -> PathBuf {
    root().join(LISTING)
}

/// One kubectl call as the stand-in recorded it.
#[derive(Debug)]
struct Call {
    argv: Vec<String>,
    stdin: Option<String>,
}

/// A copy of the listing, the stand-in's state and a `PATH` of the stand-in and SCRIPT_TOOLS.
struct Sandbox {
    _tmp: tempfile::TempDir,
    listing: PathBuf,
    state: PathBuf,
    bin: PathBuf,
    elsewhere: PathBuf,
}

impl Sandbox {
    fn new(scenario: Value) -> Sandbox {
        let tmp = tempfile::tempdir().expect("temp dir");
        let listing = tmp.path().join("listing");
        for file in files_under(&listing_dir()) {
            let target = listing.join(&file);
            fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            fs::copy(listing_dir().join(&file), &target).expect("copy listing file");
        }
        let state = tmp.path().join("state");
        let bin = tmp.path().join("bin");
        let elsewhere = tmp.path().join("elsewhere");
        for dir in [&state, &bin, &elsewhere] {
            fs::create_dir(dir).expect("mkdir");
        }
        let standin = bin.join("kubectl");
        fs::write(&standin, STANDIN.replace("{python}", &python())).expect("write stand-in");
        fs::set_permissions(&standin, fs::Permissions::from_mode(0o755)).expect("chmod");
        for (name, package) in SCRIPT_TOOLS {
            symlink(tool(name, package), bin.join(name)).expect("link tool");
        }
        let sandbox = Sandbox {
            _tmp: tmp,
            listing,
            state,
            bin,
            elsewhere,
        };
        sandbox.set_scenario(scenario);
        sandbox
    }

    fn set_scenario(&self, scenario: Value) {
        fs::write(self.state.join("scenario.json"), scenario.to_string()).expect("scenario");
    }

    fn manifests(&self) -> String {
        self.listing.join("manifests").display().to_string()
    }

    /// Runs a script of the copied listing from another directory and returns its output and the
    /// kubectl calls it made.
    fn run(&self, script: &str, args: &[&str]) -> (Output, Vec<Call>) {
        self.run_with(script, args, &[])
    }

    /// `run`, with more environment variables.
    fn run_with(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Vec<Call>) {
        let log = self.state.join("calls.jsonl");
        fs::write(&log, "").expect("clear call log");
        let output = Command::new(self.listing.join(script))
            .args(args)
            .current_dir(&self.elsewhere)
            .env_clear()
            .env("PATH", &self.bin)
            .env("KUBECTL_STANDIN", &self.state)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{script} did not start: {e}"));
        let calls = fs::read_to_string(&log)
            .expect("call log")
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).expect("call log line");
                Call {
                    argv: value["argv"]
                        .as_array()
                        .expect("argv")
                        .iter()
                        .map(|a| a.as_str().expect("string argument").to_string())
                        .collect(),
                    stdin: value["stdin"].as_str().map(str::to_string),
                }
            })
            .collect();
        (output, calls)
    }
}

/// The real python3 binary (not a shim that needs PATH), for the stand-in's first line.
fn python() -> String {
    let python = tool("python3", "apt-get install python3");
    let output = run_ok(Command::new(python).args(["-c", "import sys; print(sys.executable)"]));
    stdout(&output).trim().to_string()
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn argvs(calls: &[Call]) -> Vec<Vec<String>> {
    calls.iter().map(|c| c.argv.clone()).collect()
}

/// Every object `kubectl kustomize` builds from the listing, as `kubectl apply -o OBJECT_LINES`
/// prints it.
fn applied_lines() -> String {
    let kubectl = tool(
        "kubectl",
        "the kubectl package (Google Cloud CLI packaging, preinstalled on the build image)",
    );
    let built = run_ok(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(listing_dir().join("manifests")),
    );
    let docs = YamlLoader::load_from_str(&stdout(&built)).expect("kustomize output parses");
    docs.iter()
        .map(|d| {
            format!(
                "{}\t{}\t{}\t{}\n",
                d["apiVersion"].as_str().expect("apiVersion"),
                d["kind"].as_str().expect("kind"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect()
}

fn scenario(nodes: &str, installed: bool) -> Value {
    json!({"nodes": nodes, "applied": applied_lines(), "installed": installed, "live": ""})
}

fn apply_all(sandbox: &Sandbox) -> Vec<String> {
    argv(&[
        "apply",
        "--server-side",
        MANAGER,
        "-k",
        &sandbox.manifests(),
        "-o",
        OBJECT_LINES,
    ])
}

fn get_secret(name: &str) -> Vec<String> {
    argv(&[
        "-n",
        NS,
        "get",
        "secret",
        name,
        "--ignore-not-found",
        "-o",
        "name",
    ])
}

fn check_namespace() -> Vec<String> {
    argv(&[
        "-n",
        NS,
        "get",
        "deployments,statefulsets,daemonsets",
        "-o",
        WORKLOAD_LINES,
    ])
}

fn rollouts() -> Vec<Vec<String>> {
    WORKLOADS
        .iter()
        .map(|w| argv(&["-n", NS, "rollout", "status", w, "--timeout=10m"]))
        .collect()
}

fn list_owned() -> Vec<String> {
    argv(&[
        "get",
        OWNED_KINDS,
        "--all-namespaces",
        "-l",
        "app.kubernetes.io/part-of=stackgen",
        "-o",
        LIVE_OBJECT_LINES,
    ])
}

/// The calls of a deploy; `first_run` adds the creation of the two generated Secrets.
fn deploy_calls(sandbox: &Sandbox, first_run: bool) -> Vec<Vec<String>> {
    let namespace_file = format!("{}/namespace.yaml", sandbox.manifests());
    let mut calls = vec![
        argv(&["get", "nodes", "-o", NODE_LINES]),
        check_namespace(),
        argv(&["apply", "--server-side", MANAGER, "-f", &namespace_file]),
    ];
    for secret in ["grafana-admin", "stackgen-router-auth"] {
        calls.push(get_secret(secret));
        if first_run {
            calls.push(argv(&["create", "-f", "-"]));
        }
    }
    calls.push(apply_all(sandbox));
    calls.extend(rollouts());
    calls
}

fn yaml(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .expect("YAML parses")
        .into_iter()
        .next()
        .expect("one document")
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn listing_manifests_are_what_stackgen_renders_from_its_spec() {
    let spec = format!("{LISTING}/stack.yaml");
    let committed = listing_dir().join("manifests");
    if blessing() {
        let output = stackgen(&["render", &spec, "--out", &format!("{LISTING}/manifests")]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let (_tmp, rendered) = render_to_temp(&spec);
    let differences = dir_differences(
        (&format!("{LISTING}/manifests"), &committed),
        ("the fresh render", &rendered),
    );
    assert!(
        differences.is_empty(),
        "{LISTING}/manifests is not what `stackgen render {spec}` writes:\n  {}\n\
         regenerate it with: cargo run -- render {spec} --out {LISTING}/manifests \
         (or STACKGEN_BLESS=1 cargo test --test it marketplace), then review the diff",
        differences.join("\n  ")
    );
}

#[test]
fn listing_manifests_pass_kustomize_and_kubernetes_validate() {
    let built = check_kustomize_and_kubernetes_validate(LISTING, &listing_dir().join("manifests"));
    let docs = YamlLoader::load_from_str(&built).expect("kustomize output parses");
    assert!(
        docs.iter().any(|d| d["kind"].as_str() == Some("Namespace")
            && d["metadata"]["name"].as_str() == Some(NS))
    );
}

#[test]
fn listing_configs_pass_promtool_amtool_and_router_check_config() {
    let dir = listing_dir().join("manifests");
    check_promtool(LISTING, &dir);
    check_amtool(LISTING, &dir, &format!("{LISTING}/stack.yaml"));
    check_router_config(LISTING, &dir);
}

#[test]
fn scripts_are_executable_and_pass_shellcheck() {
    let shellcheck = tool("shellcheck", "apt-get install shellcheck");
    for script in ["deploy.sh", "upgrade.sh", "uninstall.sh"] {
        let mode = fs::metadata(listing_dir().join(script))
            .expect("script exists")
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
        let text = fs::read_to_string(listing_dir().join(script)).expect("script");
        assert!(
            text.starts_with("#!/bin/sh\n") && text.contains("\nset -eu\n"),
            "{script}: a POSIX sh script with `set -eu`"
        );
    }
    let output = Command::new(shellcheck)
        .args(["--shell=sh", "--external-sources", "--severity=style"])
        .args(SCRIPTS)
        .current_dir(listing_dir())
        .output()
        .expect("shellcheck runs");
    assert!(
        output.status.success(),
        "shellcheck:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
}

#[test]
fn deploy_creates_the_secrets_once_and_a_second_run_changes_nothing() {
    let sandbox = Sandbox::new(scenario(TWO_SMALL_NODES, false));

    let (first, calls) = sandbox.run("deploy.sh", &[]);
    assert!(first.status.success(), "deploy.sh: {}", stderr(&first));
    assert_eq!(argvs(&calls), deploy_calls(&sandbox, true));

    // The generated Secrets go through standard input, never the command line or the output.
    let created: Vec<Yaml> = calls
        .iter()
        .filter_map(|c| c.stdin.as_deref())
        .map(yaml)
        .collect();
    assert_eq!(created.len(), 2);
    let grafana = &created[0];
    assert_eq!(grafana["kind"].as_str(), Some("Secret"));
    assert_eq!(grafana["metadata"]["name"].as_str(), Some("grafana-admin"));
    assert_eq!(grafana["metadata"]["namespace"].as_str(), Some(NS));
    assert_eq!(grafana["stringData"]["admin-user"].as_str(), Some("admin"));
    let password = grafana["stringData"]["admin-password"]
        .as_str()
        .expect("admin-password");
    assert!(is_hex(password, 48), "password: 24 random bytes as hex");
    let router = &created[1];
    assert_eq!(
        router["metadata"]["name"].as_str(),
        Some("stackgen-router-auth")
    );
    let token = router["stringData"]["token"].as_str().expect("token");
    assert!(is_hex(token, 64), "token: 32 random bytes as hex");
    for secret in [password, token] {
        assert!(!stdout(&first).contains(secret) && !stderr(&first).contains(secret));
    }
    let said = stdout(&first);
    for line in [
        "kubectl -n stackgen-monitoring port-forward svc/grafana 3000:3000",
        "kubectl -n stackgen-monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d; echo",
        "kubectl -n stackgen-monitoring port-forward svc/prometheus 9090:9090",
        "kubectl -n stackgen-monitoring port-forward svc/alertmanager 9093:9093",
        "kubectl -n stackgen-monitoring logs deploy/stackgen-router -f",
    ] {
        assert!(
            said.contains(line),
            "deploy.sh does not print `{line}`:\n{said}"
        );
    }

    let (second, calls) = sandbox.run("deploy.sh", &[]);
    assert!(second.status.success(), "deploy.sh: {}", stderr(&second));
    assert_eq!(argvs(&calls), deploy_calls(&sandbox, false));
    assert!(calls.iter().all(|c| c.stdin.is_none()));

    // Another install gets other random values.
    let other = Sandbox::new(scenario(TWO_SMALL_NODES, false));
    let (output, calls) = other.run("deploy.sh", &[]);
    assert!(output.status.success());
    let other_password =
        yaml(calls[4].stdin.as_deref().expect("created"))["stringData"]["admin-password"]
            .as_str()
            .expect("admin-password")
            .to_string();
    assert_ne!(other_password, password);
}

#[test]
fn deploy_refuses_a_cluster_below_the_minimum() {
    for (nodes, what) in [
        ("4\t16Gi\n", "one node"),
        ("900m\t8Gi\n1\t8Gi\n", "too little CPU"),
        ("2\t1Gi\n2\t1048576Ki\n", "too little memory"),
        ("", "no nodes"),
    ] {
        let sandbox = Sandbox::new(scenario(nodes, false));
        let (output, calls) = sandbox.run("deploy.sh", &[]);
        assert_eq!(output.status.code(), Some(1), "{what}");
        assert_eq!(
            argvs(&calls),
            [argv(&["get", "nodes", "-o", NODE_LINES])],
            "{what}: nothing is applied"
        );
        let said = stderr(&output);
        assert!(
            said.contains("deploy.sh: error: the cluster is too small")
                && said.contains("needs at least 2 nodes with 2000m CPU and 4096Mi memory")
                && said.contains("deploy.sh: next step: add nodes or use larger ones"),
            "{what}:\n{said}"
        );
    }
}

/// A namespace where another stack already runs (kube-prometheus-stack's Grafana, an unlabelled
/// DaemonSet) is refused before anything is applied; one holding only the listing's own
/// workloads (a second run) is not.
#[test]
fn deploy_refuses_a_namespace_another_stack_uses() {
    let mut taken = scenario(TWO_SMALL_NODES, true);
    taken["workloads"] = json!(
        "Deployment\tgrafana\tkube-prometheus-stack\nStatefulSet\tprometheus\tstackgen\nDaemonSet\tlog-shipper\t\n"
    );
    let sandbox = Sandbox::new(taken);
    let (output, calls) = sandbox.run("deploy.sh", &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        argvs(&calls),
        [argv(&["get", "nodes", "-o", NODE_LINES]), check_namespace()],
        "nothing is applied"
    );
    let said = stderr(&output);
    assert!(
        said.contains("deploy.sh: error: namespace stackgen-monitoring already runs workloads that are not stackgen-monitoring's: deployment/grafana, daemonset/log-shipper")
            && said.contains("deploy.sh: next step: install stackgen-monitoring into a cluster whose stackgen-monitoring namespace is free"),
        "{said}"
    );
    let mut ours = scenario(TWO_SMALL_NODES, true);
    ours["workloads"] = json!("StatefulSet\tprometheus\tstackgen\nDeployment\tgrafana\tstackgen\n");
    let sandbox = Sandbox::new(ours);
    let (output, _) = sandbox.run("deploy.sh", &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn deploy_stops_at_the_first_failing_kubectl_call_and_says_what_to_do() {
    let sandbox = Sandbox::new(scenario(TWO_SMALL_NODES, false));
    let cases = [
        (
            vec!["get", "nodes"],
            "The connection to the server 10.0.0.1:443 was refused - did you specify the right host or port?",
            1,
            "deploy.sh: error: reaching the cluster (kubectl get nodes) failed (exit status 1)",
            "deploy.sh: next step: make kubectl point at your cluster",
        ),
        (
            vec!["create"],
            "Error from server (Forbidden): secrets is forbidden: User \"dev\" cannot create resource \"secrets\"",
            5,
            "deploy.sh: error: creating the generated Secrets failed (exit status 1)",
            "deploy.sh: next step: check that you may read and create Secrets in stackgen-monitoring",
        ),
        (
            vec!["apply", "-k"],
            "error: You must be logged in to the server (Unauthorized)",
            8,
            "deploy.sh: error: applying the manifests in",
            "deploy.sh: next step: read kubectl's message above",
        ),
        (
            vec!["rollout", "statefulset.apps/prometheus"],
            "error: timed out waiting for the condition",
            13,
            "deploy.sh: error: waiting for the rollout of statefulset.apps/prometheus failed (exit status 1)",
            "deploy.sh: next step: see why: kubectl -n stackgen-monitoring describe statefulset.apps/prometheus",
        ),
    ];
    for (when, message, calls_made, error, next) in cases {
        fs::write(sandbox.state.join("secrets"), "").expect("no Secrets yet");
        let mut failing = scenario(TWO_SMALL_NODES, false);
        failing["failures"] = json!([{"when": when, "stderr": message}]);
        sandbox.set_scenario(failing);
        let (output, calls) = sandbox.run("deploy.sh", &[]);
        assert_eq!(output.status.code(), Some(1), "{when:?}");
        let expected = deploy_calls(&sandbox, true);
        assert_eq!(
            argvs(&calls),
            expected[..calls_made],
            "{when:?}: no call after the failing one"
        );
        let said = stderr(&output);
        for part in [message, error, next] {
            assert!(
                said.contains(part),
                "{when:?}: `{part}` missing in:\n{said}"
            );
        }
        assert!(!stdout(&output).contains("is ready"), "{when:?}");
    }
}

#[test]
fn scripts_honour_kubectl_and_rollout_timeout_and_need_kubectl() {
    let sandbox = Sandbox::new(scenario(TWO_SMALL_NODES, false));
    let elsewhere = sandbox.elsewhere.join("kubectl-1.31");
    fs::rename(sandbox.bin.join("kubectl"), &elsewhere).expect("move the stand-in off PATH");

    let (output, calls) = sandbox.run("deploy.sh", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(calls.is_empty());
    let said = stderr(&output);
    assert!(
        said.contains("deploy.sh: error: kubectl not found")
            && said.contains("deploy.sh: next step: install kubectl"),
        "{said}"
    );

    let kubectl = elsewhere.display().to_string();
    let (output, calls) = sandbox.run_with(
        "deploy.sh",
        &[],
        &[("KUBECTL", &kubectl), ("ROLLOUT_TIMEOUT", "25m")],
    );
    assert!(output.status.success(), "deploy.sh: {}", stderr(&output));
    let expected: Vec<Vec<String>> = deploy_calls(&sandbox, true)
        .into_iter()
        .map(|call| {
            call.into_iter()
                .map(|word| word.replace("--timeout=10m", "--timeout=25m"))
                .collect()
        })
        .collect();
    assert_eq!(argvs(&calls), expected);
}

/// Objects live in the cluster: the applied ones (as the listing applied them) and others.
fn live(applied: &str, others: &[&str]) -> String {
    let mut lines: String = applied
        .lines()
        .filter(|l| !l.contains("\tNamespace\t") && !l.contains("\tPersistentVolumeClaim\t"))
        .map(|l| format!("{l}\tstackgen-marketplace\n"))
        .collect();
    for other in others {
        lines.push_str(other);
        lines.push('\n');
    }
    lines
}

#[test]
fn upgrade_applies_waits_then_prunes_only_what_the_listing_applied_and_no_longer_has() {
    let mut state = scenario(TWO_SMALL_NODES, true);
    state["secrets"] = json!(["grafana-admin", "stackgen-router-auth"]);
    state["live"] = json!(live(
        state["applied"].as_str().expect("applied"),
        &[
            "apps/v1\tDeployment\tstackgen-monitoring\told-exporter\tstackgen-marketplace kube-controller-manager",
            "rbac.authorization.k8s.io/v1\tRole\tpayments\tstackgen-prometheus\tstackgen-marketplace",
            "rbac.authorization.k8s.io/v1\tClusterRole\t\tstackgen-old-stackgen-monitoring\tstackgen-marketplace",
            // Another stackgen stack, applied by other means: never ours to prune.
            "rbac.authorization.k8s.io/v1\tClusterRole\t\tstackgen-prometheus-monitoring\tkubectl-client-side-apply",
            "apps/v1\tDeployment\tmonitoring\tgrafana\tkubectl-client-side-apply",
            // Whatever the server answers, data volumes and Secrets are never pruned.
            "v1\tPersistentVolumeClaim\tstackgen-monitoring\tdata-prometheus-2\tstackgen-marketplace",
            "v1\tSecret\tstackgen-monitoring\tgrafana-admin\tstackgen-marketplace",
        ],
    ));
    let sandbox = Sandbox::new(state);
    let (output, calls) = sandbox.run("upgrade.sh", &[]);
    assert!(output.status.success(), "upgrade.sh: {}", stderr(&output));
    let mut expected = vec![
        argv(&["get", "namespace", NS, "--ignore-not-found", "-o", "name"]),
        get_secret("grafana-admin"),
        get_secret("stackgen-router-auth"),
        apply_all(&sandbox),
    ];
    expected.extend(rollouts());
    expected.extend([
        list_owned(),
        argv(&[
            "-n",
            NS,
            "delete",
            "deployment.apps/old-exporter",
            "--ignore-not-found",
        ]),
        argv(&[
            "-n",
            "payments",
            "delete",
            "role.rbac.authorization.k8s.io/stackgen-prometheus",
            "--ignore-not-found",
        ]),
        argv(&[
            "delete",
            "clusterrole.rbac.authorization.k8s.io/stackgen-old-stackgen-monitoring",
            "--ignore-not-found",
        ]),
    ]);
    assert_eq!(argvs(&calls), expected);
    assert!(stdout(&output).contains("is ready in namespace stackgen-monitoring"));
}

#[test]
fn upgrade_without_an_install_points_to_deploy() {
    let sandbox = Sandbox::new(scenario(TWO_SMALL_NODES, false));
    let (output, calls) = sandbox.run("upgrade.sh", &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(calls.len(), 1);
    let said = stderr(&output);
    assert!(
        said.contains("upgrade.sh: error: stackgen-monitoring is not installed in this cluster")
            && said.contains("upgrade.sh: next step: install it with deploy.sh"),
        "{said}"
    );
}

#[test]
fn upgrade_does_not_prune_when_a_rollout_fails() {
    let mut state = scenario(TWO_SMALL_NODES, true);
    state["secrets"] = json!(["grafana-admin", "stackgen-router-auth"]);
    state["failures"] = json!([{"when": ["rollout", "deployment.apps/stackgen-router"],
        "stderr": "error: deployment \"stackgen-router\" exceeded its progress deadline"}]);
    let sandbox = Sandbox::new(state);
    let (output, calls) = sandbox.run("upgrade.sh", &[]);
    assert_eq!(output.status.code(), Some(1));
    let last = calls.last().expect("calls");
    assert_eq!(
        last.argv[..5],
        argv(&["-n", NS, "rollout", "status", WORKLOADS[2]])
    );
    assert!(
        calls
            .iter()
            .all(|c| !c.argv.contains(&"delete".to_string()))
    );
    assert!(stderr(&output).contains(
        "upgrade.sh: error: waiting for the rollout of deployment.apps/stackgen-router failed"
    ));
}

/// What uninstall finds: ours in three namespaces (one of them none), another stack's, and a
/// volume claim the server should not have listed.
const UNINSTALL_LIVE: &str = "apps/v1\tDeployment\tstackgen-monitoring\tgrafana\tstackgen-marketplace\n\
apps/v1\tStatefulSet\tstackgen-monitoring\tprometheus\tstackgen-marketplace kube-controller-manager\n\
v1\tConfigMap\tstackgen-monitoring\tprometheus-config\tstackgen-marketplace\n\
rbac.authorization.k8s.io/v1\tRole\tdefault\tstackgen-prometheus\tstackgen-marketplace\n\
rbac.authorization.k8s.io/v1\tClusterRole\t\tstackgen-prometheus-stackgen-monitoring\tstackgen-marketplace\n\
rbac.authorization.k8s.io/v1\tClusterRoleBinding\t\tstackgen-prometheus-stackgen-monitoring\tkubectl-edit stackgen-marketplace\n\
rbac.authorization.k8s.io/v1\tClusterRole\t\tstackgen-prometheus-monitoring\tkubectl-client-side-apply\n\
apps/v1\tDeployment\tmonitoring\tgrafana\tkubectl-client-side-apply\n\
v1\tPersistentVolumeClaim\tstackgen-monitoring\tgrafana-data\tstackgen-marketplace\n";

fn uninstall_deletes() -> Vec<Vec<String>> {
    vec![
        list_owned(),
        argv(&[
            "-n",
            NS,
            "delete",
            "deployment.apps/grafana",
            "statefulset.apps/prometheus",
            "configmap/prometheus-config",
            "--ignore-not-found",
        ]),
        argv(&[
            "-n",
            "default",
            "delete",
            "role.rbac.authorization.k8s.io/stackgen-prometheus",
            "--ignore-not-found",
        ]),
        argv(&[
            "delete",
            "clusterrole.rbac.authorization.k8s.io/stackgen-prometheus-stackgen-monitoring",
            "clusterrolebinding.rbac.authorization.k8s.io/stackgen-prometheus-stackgen-monitoring",
            "--ignore-not-found",
        ]),
    ]
}

#[test]
fn uninstall_removes_every_object_the_listing_applied_and_keeps_the_volumes() {
    let sandbox = Sandbox::new(json!({"live": UNINSTALL_LIVE}));
    let (output, calls) = sandbox.run("uninstall.sh", &[]);
    assert!(output.status.success(), "uninstall.sh: {}", stderr(&output));
    assert_eq!(argvs(&calls), uninstall_deletes());
    let said = stdout(&output);
    assert!(
        said.contains("Kept: namespace stackgen-monitoring with the data volumes and Secrets")
            && said.contains("uninstall.sh --delete-volumes"),
        "{said}"
    );
}

#[test]
fn uninstall_with_delete_volumes_also_deletes_the_namespace() {
    let sandbox = Sandbox::new(json!({"live": UNINSTALL_LIVE}));
    let (output, calls) = sandbox.run("uninstall.sh", &["--delete-volumes"]);
    assert!(output.status.success(), "uninstall.sh: {}", stderr(&output));
    let mut expected = uninstall_deletes();
    expected.push(argv(&[
        "delete",
        "namespace",
        NS,
        "--ignore-not-found",
        "--timeout=5m",
    ]));
    assert_eq!(argvs(&calls), expected);

    // Nothing installed: nothing to delete but the (absent) namespace, and no error.
    sandbox.set_scenario(json!({"live": ""}));
    let (output, calls) = sandbox.run("uninstall.sh", &["--delete-volumes"]);
    assert!(output.status.success(), "uninstall.sh: {}", stderr(&output));
    assert_eq!(argvs(&calls), [list_owned(), expected[4].clone()]);
}

#[test]
fn uninstall_stops_at_a_failing_delete_and_rejects_unknown_flags() {
    let sandbox = Sandbox::new(json!({"live": UNINSTALL_LIVE, "failures": [
        {"when": ["delete", "default"], "stderr": "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"stackgen-prometheus\" is forbidden"}
    ]}));
    let (output, calls) = sandbox.run("uninstall.sh", &["--delete-volumes"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(argvs(&calls), uninstall_deletes()[..3]);
    let said = stderr(&output);
    assert!(
        said.contains("is forbidden")
            && said.contains(
                "uninstall.sh: error: deleting the objects in namespace default failed (exit status 1)"
            )
            && said.contains("uninstall.sh: next step: read kubectl's message above, then re-run uninstall.sh"),
        "{said}"
    );

    let (output, calls) = sandbox.run("uninstall.sh", &["--delete-volume"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(calls.is_empty());
    assert!(stderr(&output).contains("usage: uninstall.sh [--delete-volumes]"));
}

/// `NAME=value` assignments of common.sh.
fn script_setting(name: &str) -> String {
    let text = fs::read_to_string(listing_dir().join("common.sh")).expect("common.sh");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("common.sh sets no {name}"))
        .to_string()
}

/// `plural.group` of a kind, as kubectl names resources (`networkpolicies.networking.k8s.io`).
fn resource_name(api_version: &str, kind: &str) -> String {
    let lower = kind.to_lowercase();
    let plural = if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    match api_version.split_once('/') {
        Some((group, _)) => format!("{plural}.{group}"),
        None => plural,
    }
}

fn rendered_docs(dir: &Path) -> Vec<Yaml> {
    manifests(dir)
        .iter()
        .flat_map(|file| {
            YamlLoader::load_from_str(&fs::read_to_string(file).expect("manifest"))
                .expect("manifest parses")
        })
        .collect()
}

#[test]
fn scripts_agree_with_the_spec_and_cover_every_kind_the_renderer_makes() {
    let spec = stackgen::spec::load(&listing_dir().join("stack.yaml")).expect("listing spec");
    assert_eq!(script_setting("NAMESPACE"), spec.namespace);
    assert_eq!(script_setting("GRAFANA_SECRET"), spec.grafana.admin_secret);
    assert_eq!(script_setting("ROUTER_SECRET"), spec.router.auth_secret);
    assert_eq!(script_setting("PART_OF"), "stackgen");
    assert_eq!(script_setting("OWNED_KINDS"), OWNED_KINDS);

    // Every kind of every rendered case is pruned and uninstalled, or deliberately kept.
    let owned: Vec<&str> = OWNED_KINDS.split(',').collect();
    let mut dirs = vec![listing_dir().join("manifests")];
    dirs.extend(
        GOLDEN_CASES
            .iter()
            .map(|(case, _)| root().join("tests/golden").join(case)),
    );
    assert!(
        owned.contains(&"configmaps"),
        "config files become ConfigMaps"
    );
    for dir in dirs {
        for doc in rendered_docs(&dir) {
            let kind = doc["kind"].as_str().expect("kind");
            let resource = resource_name(doc["apiVersion"].as_str().expect("apiVersion"), kind);
            assert!(
                owned.contains(&resource.as_str())
                    || ["Namespace", "PersistentVolumeClaim"].contains(&kind),
                "{}: {kind} ({resource}) is neither in OWNED_KINDS nor kept on purpose",
                dir.display()
            );
        }
    }
    assert_eq!(
        resource_name("policy/v1", "PodDisruptionBudget"),
        "poddisruptionbudgets.policy"
    );
    assert_eq!(
        resource_name("networking.k8s.io/v1", "Ingress"),
        "ingresses.networking.k8s.io"
    );
}

/// A CPU quantity in millicores or a memory quantity in MiB.
fn quantity(text: &str, memory: bool) -> f64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().expect("quantity number");
    match (memory, unit) {
        (false, "m") => n,
        (false, "") => n * 1000.0,
        (true, "Ki") => n / 1024.0,
        (true, "Mi") => n,
        (true, "Gi") => n * 1024.0,
        _ => panic!("unexpected quantity {text}"),
    }
}

#[test]
fn the_minimum_cluster_fits_the_stack_and_the_readme_states_both() {
    let min_nodes: f64 = script_setting("MIN_NODES").parse().expect("MIN_NODES");
    let min_cpu: f64 = script_setting("MIN_CPU_MILLICORES")
        .parse()
        .expect("MIN_CPU_MILLICORES");
    let min_memory: f64 = script_setting("MIN_MEMORY_MIB")
        .parse()
        .expect("MIN_MEMORY_MIB");
    let (mut cpu, mut memory, mut storage_gib) = (0.0, 0.0, 0.0);
    for doc in rendered_docs(&listing_dir().join("manifests")) {
        let kind = doc["kind"].as_str().expect("kind");
        let pods = match kind {
            "Deployment" | "StatefulSet" => doc["spec"]["replicas"].as_i64().unwrap_or(1) as f64,
            "DaemonSet" => min_nodes,
            "PersistentVolumeClaim" => {
                let size = doc["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .expect("size");
                storage_gib += quantity(size, true) / 1024.0;
                continue;
            }
            _ => continue,
        };
        let pod = &doc["spec"]["template"]["spec"];
        for container in pod["containers"].as_vec().expect("containers") {
            let requests = &container["resources"]["requests"];
            cpu += pods * quantity(requests["cpu"].as_str().expect("cpu request"), false);
            memory += pods * quantity(requests["memory"].as_str().expect("memory"), true);
        }
        if let Some(claims) = doc["spec"]["volumeClaimTemplates"].as_vec() {
            for claim in claims {
                let size = claim["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .expect("size");
                storage_gib += pods * quantity(size, true) / 1024.0;
            }
        }
    }
    assert!(
        cpu <= min_cpu && memory <= min_memory,
        "the stack requests {cpu}m CPU and {memory}Mi memory, more than the minimum cluster"
    );
    let readme = fs::read_to_string(listing_dir().join("README.md")).expect("README");
    for stated in [
        format!("| {min_nodes} | {min_cpu}m | {min_memory}Mi |"),
        format!("The stack requests {cpu}m CPU and {memory}Mi memory"),
        format!("claims {storage_gib}Gi"),
    ] {
        assert!(
            readme.contains(&stated),
            "README.md does not say `{stated}`"
        );
    }
}

#[test]
fn readme_lists_exactly_the_images_of_the_listing() {
    let mut images: Vec<String> = rendered_docs(&listing_dir().join("manifests"))
        .iter()
        .filter_map(|d| d["spec"]["template"]["spec"]["containers"].as_vec())
        .flatten()
        .map(|c| c["image"].as_str().expect("image").to_string())
        .collect();
    images.sort();
    images.dedup();
    for image in &images {
        let (_, tag) = image.rsplit_once(':').expect("a tag");
        assert!(
            tag != "latest" && !tag.contains('/'),
            "{image} is not pinned"
        );
    }
    let readme = fs::read_to_string(listing_dir().join("README.md")).expect("README");
    let section = readme
        .split("## Software included")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Software included section");
    let mut listed: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('`'))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, images, "README.md's table of software and versions");
}
