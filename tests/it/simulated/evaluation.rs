//! From simulated cluster states to the rendered rules' verdict.
//!
//! 1. [`record`] runs a scenario step by step (one step per scrape interval) and keeps what every
//!    discovered target serves, interned into one [`Universe`] shared by all scenarios.
//! 2. [`Relabelling::capture`] asks the real Prometheus, with the rendered scrape configuration,
//!    what those targets and series become: every target is offered through `file_sd` with the
//!    `__meta_kubernetes_*` labels discovery would give it, every series is served once with its
//!    own id as value, and the ids that come back (or do not) say which labels each series ends
//!    up with, or that the rendered relabelling drops it.
//! 3. [`promtool_test`] writes the scenario as the series Prometheus would have stored (stale
//!    markers where a target or series goes away) and checks with `promtool test rules`, against
//!    the rendered rules, which alerts fire at each checked moment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use yaml_rust2::Yaml;

use super::cluster::{Cluster, STEP_SECONDS, Sample, Source, Target};
use crate::e2e::{Server, container_args, key, load_yaml, map_at, save_yaml, spawn, use_file_sd};
use crate::http_stub::{HttpStub, Reply};
use crate::support::{free_port, tool, wait_explained};

/// Served values are series ids from here up, clear of `up`'s 0 and 1.
const ID_BASE: f64 = 1_000_000.0;

/// Which of a target's endpoints a series comes from: a node serves the kubelet's own metrics
/// and cAdvisor's on two paths; a pod serves one exposition whatever the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Endpoint {
    Any,
    Kubelet,
    Cadvisor,
}

impl Endpoint {
    fn of(source: Source, path: &str) -> Endpoint {
        match source {
            Source::Node(_) if path.ends_with("/cadvisor") => Endpoint::Cadvisor,
            Source::Node(_) => Endpoint::Kubelet,
            _ => Endpoint::Any,
        }
    }

    fn paths(source: Source) -> &'static [&'static str] {
        match source {
            Source::Node(_) => &["/metrics", "/metrics/cadvisor"],
            _ => &["/metrics"],
        }
    }
}

/// A served series: its target, endpoint, name and labels.
struct SeriesInfo {
    target: usize,
    endpoint: Endpoint,
    text: String,
}

/// Every target and series any scenario showed, interned.
#[derive(Default)]
pub(super) struct Universe {
    target_ids: HashMap<String, usize>,
    targets: Vec<Target>,
    series_ids: HashMap<(usize, Endpoint, u64), usize>,
    series: Vec<SeriesInfo>,
}

#[derive(Clone)]
/// One scrape interval of a scenario: the targets discovered (and whether each answers) and
/// the value of every series they serve.
struct Step {
    targets: Vec<(usize, bool)>,
    samples: Vec<(usize, f64)>,
}

/// A scenario's recorded steps.
pub(super) struct Timeline {
    steps: Vec<Step>,
}

/// Runs `script` over `minutes` of simulated time from `cluster` (whose clock says where the
/// timeline starts) and records each step into `universe`, after the steps of `before`.
pub(super) fn record(
    universe: &mut Universe,
    mut cluster: Cluster,
    before: Option<&Timeline>,
    minutes: f64,
    script: &dyn Fn(&mut Cluster, f64),
) -> (Timeline, Cluster) {
    let mut recorded: Vec<Step> = before.map(|t| t.steps.clone()).unwrap_or_default();
    let first = recorded.len();
    let last = (minutes * 60.0 / STEP_SECONDS) as usize;
    for step in first..=last {
        let minute = step as f64 * STEP_SECONDS / 60.0;
        script(&mut cluster, minute);
        let mut targets = Vec::new();
        let mut samples = Vec::new();
        let mut scraped = BTreeSet::new();
        for target in cluster.targets() {
            let identity = target.identity();
            let next = universe.targets.len();
            let id = *universe.target_ids.entry(identity).or_insert(next);
            if id == next {
                universe.targets.push(target.clone());
            }
            targets.push((id, target.answers));
            if !target.answers || !scraped.insert(id) {
                continue;
            }
            for path in Endpoint::paths(target.source) {
                let endpoint = Endpoint::of(target.source, path);
                for sample in cluster.scrape(target.source, path) {
                    let key = (id, endpoint, series_hash(&sample));
                    let next = universe.series.len();
                    let series = *universe.series_ids.entry(key).or_insert(next);
                    if series == next {
                        universe.series.push(SeriesInfo {
                            target: id,
                            endpoint,
                            text: series_text(&sample),
                        });
                    }
                    samples.push((series, sample.value));
                }
            }
        }
        recorded.push(Step { targets, samples });
        cluster.advance(STEP_SECONDS);
    }
    (Timeline { steps: recorded }, cluster)
}

/// Identifies a sample's series (name and labels) without writing it out.
fn series_hash(sample: &Sample) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sample.name.hash(&mut hasher);
    sample.labels.hash(&mut hasher);
    hasher.finish()
}

/// `name{label="value",...}` with PromQL quoting.
fn series_text(sample: &Sample) -> String {
    let mut text = format!("{}{{", sample.name);
    for (index, (name, value)) in sample.labels.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(text, "{name}={}", stackgen::rules::promql::quote(value));
    }
    text.push('}');
    text
}

/// What the rendered relabelling made of the universe's targets and series.
pub(super) struct Relabelling {
    /// Per target: every job that keeps it, with the endpoint it scrapes and its `up` series.
    jobs_of_target: HashMap<usize, Vec<(String, Endpoint, String)>>,
    /// Per series: the series it became, once per job that scrapes it.
    kept: HashMap<usize, Vec<String>>,
}

impl Relabelling {
    /// The metric names Prometheus stores from the simulated targets (`up` included).
    pub(super) fn stored_names(&self) -> BTreeSet<String> {
        self.kept
            .values()
            .flatten()
            .map(|text| text.split('{').next().unwrap_or_default().to_string())
            .chain(["up".to_string()])
            .collect()
    }

    /// Runs the real Prometheus with the rendered configuration under `out`, offering every
    /// target of `universe` as Kubernetes discovery would, and reads back what was stored.
    pub(super) fn capture(out: &Path, dir: &Path, universe: Universe) -> Relabelling {
        let universe = Arc::new(universe);
        let served = universe.clone();
        let server = HttpStub::start(move |request| {
            let Some((target, endpoint)) = served.addressed(&request.uri) else {
                return Reply::new(404, "no such target");
            };
            let mut body = String::new();
            for (id, series) in served.series.iter().enumerate() {
                if series.target == target && series.endpoint == endpoint {
                    let _ = writeln!(body, "{} {}", series.text, ID_BASE + id as f64);
                }
            }
            Reply::new(200, body).header("Content-Type", "text/plain; version=0.0.4")
        });
        let prometheus = start_prometheus(out, dir, &universe, server.port, "1s", None);
        let get = |path: &str| get_json(&prometheus, path);
        let targets = std::cell::RefCell::new(Value::Null);
        wait_explained(
            "Prometheus to scrape every simulated target once",
            Duration::from_secs(120),
            || {
                let listed = get("/api/v1/targets");
                let done = listed["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|list| {
                        !list.is_empty() && list.iter().all(|t| t["health"] == "up")
                    });
                *targets.borrow_mut() = listed;
                done
            },
            || format!("{:#}\n{}", targets.borrow(), prometheus.log()),
        );
        let targets = targets.into_inner();
        let mut jobs_of_target: HashMap<usize, Vec<(String, Endpoint, String)>> = HashMap::new();
        for active in targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(id) = active["discoveredLabels"]["__param_sim_target"]
                .as_str()
                .and_then(|id| id.parse::<usize>().ok())
            else {
                continue;
            };
            let job = active["scrapePool"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let url = active["scrapeUrl"].as_str().unwrap_or_default();
            let path = url.split('?').next().unwrap_or_default();
            let path = path
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_default();
            let labels = labels_text("up", &active["labels"]);
            jobs_of_target.entry(id).or_default().push((
                job,
                Endpoint::of(universe.targets[id].source, &path),
                labels,
            ));
        }
        let stored = get("/api/v1/query?query=%7B__name__%21%3D%22%22%7D");
        let mut kept: HashMap<usize, Vec<String>> = HashMap::new();
        for series in stored["data"]["result"].as_array().into_iter().flatten() {
            let name = series["metric"]["__name__"].as_str().unwrap_or_default();
            if name == "up" || name.starts_with("scrape_") {
                continue;
            }
            let value: f64 = series["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            let id = value - ID_BASE;
            assert!(
                id >= 0.0 && id.fract() == 0.0 && (id as usize) < universe.series.len(),
                "a stored series carries no served id: {series}"
            );
            kept.entry(id as usize)
                .or_default()
                .push(labels_text(name, &series["metric"]));
        }
        drop(prometheus);
        Relabelling {
            jobs_of_target,
            kept,
        }
    }
}

impl Universe {
    /// The target and endpoint a scrape of the stub is for (`?sim_target=ID` and its path).
    fn addressed(&self, uri: &axum::http::Uri) -> Option<(usize, Endpoint)> {
        let target = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("sim_target="))
            .and_then(|id| id.parse::<usize>().ok())
            .filter(|id| *id < self.targets.len())?;
        Some((
            target,
            Endpoint::of(self.targets[target].source, uri.path()),
        ))
    }
}

/// Starts the real Prometheus with the rendered configuration under `out`, every job
/// discovering the universe's targets (served on `port`) through `file_sd` as Kubernetes would
/// offer them, scraping and evaluating every `interval`, evaluating the rule files in `rules`
/// (none without). Returns once it is ready.
pub(super) fn start_prometheus(
    out: &Path,
    dir: &Path,
    universe: &Universe,
    port: u16,
    interval: &str,
    rules: Option<&Path>,
) -> Server {
    let mut config = load_yaml(&out.join("prometheus/prometheus.yml"));
    let root = map_at(&mut config, &[]);
    root.remove(&key("alerting"));
    match rules {
        Some(rules) => root.insert(
            key("rule_files"),
            Yaml::Array(vec![Yaml::String(
                rules.join("*.yaml").display().to_string(),
            )]),
        ),
        None => root.remove(&key("rule_files")),
    };
    let global = map_at(&mut config, &["global"]);
    global.remove(&key("external_labels"));
    global.insert(key("scrape_interval"), Yaml::String(interval.into()));
    global.insert(key("evaluation_interval"), Yaml::String(interval.into()));
    let sd = dir.join("sd");
    std::fs::create_dir_all(&sd).expect("sd dir");
    let Yaml::Array(jobs) = map_at(&mut config, &[])
        .get_mut(&key("scrape_configs"))
        .expect("scrape_configs")
    else {
        panic!("scrape_configs is not a list")
    };
    let mut offered = 0;
    for (index, job) in jobs.iter_mut().enumerate() {
        let groups = discovered(job, universe, port);
        offered += groups.len();
        if let Yaml::Hash(map) = job {
            for plain in ["scheme", "authorization", "tls_config"] {
                map.remove(&key(plain));
            }
            // Every job at the one interval (a rendered job may set its own).
            map.remove(&key("scrape_interval"));
        }
        use_file_sd(
            job,
            &sd.join(format!("job-{index}.json")),
            &Value::Array(groups),
        );
    }
    assert!(
        offered > 0,
        "no job of the rendered configuration discovers a simulated target"
    );
    let config_file = dir.join("prometheus.yml");
    save_yaml(&config_file, &config);
    let listen = free_port();
    let args: Vec<String> = container_args(&out.join("prometheus/statefulset.yaml"))
        .into_iter()
        .filter(|arg| !arg.starts_with("--config.file") && !arg.starts_with("--storage"))
        .chain([
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{listen}"),
        ])
        .collect();
    let prometheus = spawn(
        "prometheus",
        &tool("prometheus", "apt-get install prometheus"),
        &args,
        &[],
        dir,
        listen,
    );
    wait_explained(
        "Prometheus to be ready",
        Duration::from_secs(120),
        || ready(&prometheus),
        || prometheus.log(),
    );
    prometheus
}

fn ready(prometheus: &Server) -> bool {
    ureq::get(&prometheus.url("/-/ready"))
        .call()
        .is_ok_and(|response| response.status() == 200)
}

/// A JSON answer of Prometheus' API (up to 1 GiB), or null.
pub(super) fn get_json(prometheus: &Server, path: &str) -> Value {
    ureq::get(&prometheus.url(path))
        .call()
        .ok()
        .and_then(|mut response| {
            response
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .ok()
        })
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

/// Serves the universe's targets in a steady state: every series at its value in the
/// timeline's first step, moving on, in real time, at the rate it moved to the second (a
/// counter keeps counting, a gauge keeps its trend).
pub(super) fn serve_steady(universe: Arc<Universe>, timeline: &Timeline) -> HttpStub {
    let [first, second, ..] = timeline.steps.as_slice() else {
        panic!("a steady state needs two recorded steps")
    };
    let mut start = vec![f64::NAN; universe.series.len()];
    for (id, value) in &first.samples {
        start[*id] = *value;
    }
    let mut slope = vec![0.0; universe.series.len()];
    for (id, value) in &second.samples {
        if start[*id].is_nan() {
            start[*id] = *value;
        } else {
            slope[*id] = (value - start[*id]) / STEP_SECONDS;
        }
    }
    let mut by_endpoint: HashMap<(usize, Endpoint), Vec<usize>> = HashMap::new();
    for (id, series) in universe.series.iter().enumerate() {
        by_endpoint
            .entry((series.target, series.endpoint))
            .or_default()
            .push(id);
    }
    let began = std::time::Instant::now();
    HttpStub::start(move |request| {
        let Some(address) = universe.addressed(&request.uri) else {
            return Reply::new(404, "no such target");
        };
        let elapsed = began.elapsed().as_secs_f64();
        let mut body = String::new();
        for id in by_endpoint.get(&address).into_iter().flatten() {
            let value = start[*id] + slope[*id] * elapsed;
            let _ = writeln!(body, "{} {value}", universe.series[*id].text);
        }
        Reply::new(200, body).header("Content-Type", "text/plain; version=0.0.4")
    })
}

/// `name{...}` of a label object from Prometheus' API, without `__name__`.
fn labels_text(name: &str, labels: &Value) -> String {
    let mut text = format!("{name}{{");
    let mut first = true;
    for (label, value) in labels.as_object().into_iter().flatten() {
        if label == "__name__" {
            continue;
        }
        if !first {
            text.push(',');
        }
        first = false;
        let _ = write!(
            text,
            "{label}={}",
            stackgen::rules::promql::quote(value.as_str().unwrap_or_default())
        );
    }
    text.push('}');
    text
}

/// The target groups Kubernetes discovery would give `job`: the universe's targets of its role,
/// in its namespaces, matching its selectors.
fn discovered(job: &Yaml, universe: &Universe, port: u16) -> Vec<Value> {
    let mut groups = Vec::new();
    for sd in job["kubernetes_sd_configs"].as_vec().into_iter().flatten() {
        let role = sd["role"].as_str().unwrap_or_default();
        let namespaces: Vec<&str> = sd["namespaces"]["names"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        let selectors: Vec<&str> = sd["selectors"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter(|s| s["role"].as_str() == Some(role))
            .filter_map(|s| s["label"].as_str())
            .collect();
        for (id, target) in universe.targets.iter().enumerate() {
            let role_matches = target.role == role;
            let namespace_matches = namespaces.is_empty()
                || target
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces.contains(&ns));
            let selected = selectors
                .iter()
                .all(|selector| label_selector_matches(selector, &target.pod_labels));
            if role_matches && namespace_matches && selected {
                let mut labels = serde_json::Map::new();
                for (key, value) in &target.meta {
                    labels.insert(key.clone(), json!(value));
                }
                labels.insert("__param_sim_target".into(), json!(id.to_string()));
                groups.push(json!({
                    "targets": [format!("127.0.0.1:{port}")],
                    "labels": labels,
                }));
            }
        }
    }
    groups
}

/// Whether a Kubernetes label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`) matches.
fn label_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect()
            };
            if let Some((key, rest)) = term.split_once(" notin ") {
                !labels
                    .get(key.trim())
                    .is_some_and(|v| set(rest).contains(v))
            } else if let Some((key, rest)) = term.split_once(" in ") {
                labels
                    .get(key.trim())
                    .is_some_and(|v| set(rest).contains(v))
            } else if let Some((key, value)) = term.split_once("!=") {
                labels.get(key.trim()).map(String::as_str) != Some(value.trim())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                labels.get(key.trim()).map(String::as_str) == Some(value.trim())
            } else if let Some(key) = term.strip_prefix('!') {
                !labels.contains_key(key.trim())
            } else {
                labels.contains_key(term)
            }
        })
}

/// An alert a check expects to fire: its name, the labels that say what it is about and whom
/// it is for (`namespace`, `service`, `team`; absent ones must be absent), how many of it, and
/// the team the router gives it.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub(super) alert: &'static str,
    pub(super) labels: Vec<(&'static str, &'static str)>,
    pub(super) count: u32,
    pub(super) reaches: &'static str,
}

/// The alerts firing at one moment.
pub(super) type Firing = Vec<Expected>;

/// The labels of the firing alerts the checks compare.
pub(super) const COMPARED: &[&str] = &["alertname", "namespace", "service", "team"];

/// The series Prometheus would have stored for `timeline`: each in promtool's notation.
fn stored_series(
    timeline: &Timeline,
    relabelling: &Relabelling,
) -> BTreeMap<String, Vec<Option<f64>>> {
    let steps = timeline.steps.len();
    let mut stored: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut put = |series: &str, step: usize, value: f64| {
        stored
            .entry(series.to_string())
            .or_insert_with(|| vec![None; steps])[step] = Some(value);
    };
    for (index, step) in timeline.steps.iter().enumerate() {
        for (target, answers) in &step.targets {
            for (_, _, up) in relabelling.jobs_of_target.get(target).into_iter().flatten() {
                put(up, index, f64::from(u8::from(*answers)));
            }
        }
        for (series, value) in &step.samples {
            for text in relabelling.kept.get(series).into_iter().flatten() {
                put(text, index, *value);
            }
        }
    }
    stored
}

/// promtool's notation for a series' values: runs of equal steps as `a+bxn`, gaps as `_xn`,
/// and `stale` where a series stops.
fn notation(values: &[Option<f64>]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    let mut present_before = false;
    while index < values.len() {
        match values[index] {
            None => {
                let mut end = index;
                while end < values.len() && values[end].is_none() {
                    end += 1;
                }
                let mut missing = end - index;
                if present_before {
                    parts.push("stale".into());
                    missing -= 1;
                }
                if missing > 0 {
                    parts.push(format!("_x{missing}"));
                }
                present_before = false;
                index = end;
            }
            Some(first) => {
                let delta = match values.get(index + 1) {
                    Some(Some(next)) => next - first,
                    _ => 0.0,
                };
                let mut end = index + 1;
                while end < values.len() {
                    match (values[end - 1], values[end]) {
                        (Some(previous), Some(current))
                            if ((current - previous) - delta).abs()
                                <= 1e-9 * current.abs().max(1.0) =>
                        {
                            end += 1;
                        }
                        _ => break,
                    }
                }
                let repeats = end - index - 1;
                parts.push(match (repeats, delta == 0.0) {
                    (0, _) => format!("{first}"),
                    (_, true) => format!("{first}x{repeats}"),
                    (_, false) => format!("{first}{delta:+}x{repeats}"),
                });
                present_before = true;
                index = end;
            }
        }
    }
    parts.join(" ")
}

/// Checks `timeline` against the rendered rules under `out` with promtool: at each checked
/// minute, exactly the `firing` alerts fire. Panics with promtool's account otherwise.
pub(super) fn promtool_test(
    name: &str,
    out: &Path,
    dir: &Path,
    timeline: &Timeline,
    relabelling: &Relabelling,
    checks: &[(f64, Firing)],
) {
    let stored = stored_series(timeline, relabelling);
    let input: Vec<Value> = stored
        .iter()
        .map(|(series, values)| json!({"series": series, "values": notation(values)}))
        .collect();
    let query = format!(
        r#"count by ({}) (ALERTS{{alertstate="firing"}})"#,
        COMPARED.join(", ")
    );
    let tests: Vec<Value> = checks
        .iter()
        .map(|(minute, firing)| {
            let samples: Vec<Value> = firing
                .iter()
                .map(|expected| {
                    let mut labels = format!("{{alertname=\"{}\"", expected.alert);
                    for (name, value) in &expected.labels {
                        let _ = write!(labels, ",{name}=\"{value}\"");
                    }
                    labels.push('}');
                    json!({"labels": labels, "value": expected.count})
                })
                .collect();
            json!({
                "expr": query,
                "eval_time": format!("{}s", (minute * 60.0).round() as u64),
                "exp_samples": samples,
            })
        })
        .collect();
    let mut rule_files: Vec<String> = std::fs::read_dir(out.join("prometheus/rules"))
        .expect("rendered rules")
        .filter_map(Result::ok)
        .map(|entry| entry.path().display().to_string())
        .collect();
    rule_files.sort();
    let file = dir.join(format!("{name}_test.yaml"));
    let test = json!({
        "rule_files": rule_files,
        "evaluation_interval": format!("{}s", STEP_SECONDS as u64),
        "tests": [{
            "name": name,
            "interval": format!("{}s", STEP_SECONDS as u64),
            "input_series": input,
            "promql_expr_test": tests,
        }],
    });
    std::fs::write(&file, serde_json::to_vec_pretty(&test).expect("json")).expect("write test");
    let output = Command::new(tool("promtool", "apt-get install prometheus"))
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "scenario {name}: the rendered rules do not fire as expected ({}):\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
