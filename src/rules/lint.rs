//! `stackgen rules lint`: every problem of a set of rule files, each with file:line:col and a hint.
//!
//! Checks: structure, PromQL that parses (with the position inside the expression), `severity`,
//! `summary`, `description`, `runbook_url` and `for`, duplicate alert names within a team, the
//! `team` label routing depends on, the service-level shape (no per-instance labels left in the
//! result unless marked on purpose) and, given expositions, metric names that exist.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::Expr;
use serde::Serialize;

use super::file::{self, PER_INSTANCE_MARKER, Rule, RuleFile};
use super::promql::{self, LabelSet, RecordedLabels};
use crate::config_check::values::check_duration;
use crate::diagnostic::{Diagnostic, Level, Location};

pub const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// What the linter knows besides the files.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// The team the files belong to (as `stackgen render` would label them).
    pub team: Option<String>,
    /// Metric names that exist (from `--metrics` expositions); `None` skips the check.
    pub known_metrics: Option<BTreeSet<String>>,
}

/// One problem, with how bad it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub diagnostic: Diagnostic,
}

/// The JSON form of a finding (`--format json`).
#[derive(Debug, Serialize)]
pub struct FindingJson<'a> {
    pub file: &'a str,
    pub line: usize,
    pub col: usize,
    pub level: Level,
    pub field: &'a str,
    pub message: &'a str,
    pub hint: Option<&'a str>,
}

impl Finding {
    pub fn to_json(&self) -> FindingJson<'_> {
        let d = &self.diagnostic;
        FindingJson {
            file: &d.file,
            line: d.location.line,
            col: d.location.col,
            level: self.level,
            field: &d.field,
            message: &d.message,
            hint: d.hint.as_deref(),
        }
    }
}

struct Collector<'a> {
    file: &'a str,
    findings: Vec<Finding>,
}

impl Collector<'_> {
    fn push(
        &mut self,
        level: Level,
        location: Location,
        field: String,
        message: String,
        hint: Option<String>,
    ) {
        self.push_span(level, location, None, field, message, hint);
    }

    fn push_span(
        &mut self,
        level: Level,
        location: Location,
        width: Option<usize>,
        field: String,
        message: String,
        hint: Option<String>,
    ) {
        self.findings.push(Finding {
            level,
            diagnostic: Diagnostic {
                file: self.file.to_string(),
                location,
                field,
                message,
                hint,
                redact: false,
                width,
            },
        });
    }
}

/// Lints `files` (display name, contents) together; findings are sorted by file and position.
pub fn lint(files: &[(String, String)], options: &LintOptions) -> Vec<Finding> {
    let mut all = Vec::new();
    let mut parsed = Vec::new();
    for (name, source) in files {
        let (rule_file, problems) = file::parse(name, source);
        all.extend(problems.into_iter().map(|diagnostic| Finding {
            level: Level::Error,
            diagnostic,
        }));
        parsed.push((name.as_str(), rule_file));
    }
    // Recording rules of the linted files produce series too.
    let recorded = recorded_labels(&parsed);
    let mut seen_alerts: BTreeMap<(String, String), (String, Location)> = BTreeMap::new();
    for (name, rule_file) in &parsed {
        let mut out = Collector {
            file: name,
            findings: Vec::new(),
        };
        unique_group_names(rule_file, &mut out);
        for (gi, group) in rule_file.groups.iter().enumerate() {
            for (ri, rule) in group.rules.iter().enumerate() {
                let field = format!("groups[{gi}].rules[{ri}]");
                lint_rule(rule, &field, options, &recorded, &mut out);
                if rule.is_alert {
                    let team = rule
                        .labels
                        .get("team")
                        .map(|t| t.value.clone())
                        .or_else(|| options.team.clone())
                        .unwrap_or_default();
                    let key = (team.clone(), rule.name.value.clone());
                    if let Some((first_file, first)) = seen_alerts.get(&key) {
                        let owner = if team.is_empty() {
                            "these files".to_string()
                        } else {
                            format!("team `{team}`")
                        };
                        out.push(
                            Level::Error,
                            rule.name.location,
                            format!("{field}.alert"),
                            format!("duplicate alert `{}` in {owner}", rule.name.value),
                            Some(format!(
                                "first defined at {first_file}:{}:{}; give each alert its own name",
                                first.line, first.col
                            )),
                        );
                    } else {
                        seen_alerts.insert(key, (name.to_string(), rule.name.location));
                    }
                }
            }
        }
        all.extend(out.findings);
    }
    all.sort_by(|a, b| {
        (&a.diagnostic.file, a.diagnostic.location)
            .cmp(&(&b.diagnostic.file, b.diagnostic.location))
    });
    all
}

/// Prometheus refuses a file that names two groups alike.
fn unique_group_names(rule_file: &file::RuleFile, out: &mut Collector) {
    let mut seen: BTreeMap<&str, Location> = BTreeMap::new();
    for (gi, group) in rule_file.groups.iter().enumerate() {
        if group.name.is_empty() {
            continue;
        }
        match seen.get(group.name.as_str()) {
            Some(first) => out.push(
                Level::Error,
                group.location,
                format!("groups[{gi}].name"),
                format!("group `{}` is named twice in this file", group.name),
                Some(format!(
                    "the first is on line {}; give each group its own name",
                    first.line
                )),
            ),
            None => {
                seen.insert(&group.name, group.location);
            }
        }
    }
}

/// The labels of the series the linted files' recording rules record: from each rule's expression
/// and static labels, a series recorded from another resolved over a few passes.
fn recorded_labels(parsed: &[(&str, RuleFile)]) -> RecordedLabels {
    let rules: Vec<(&Rule, Option<Expr>)> = parsed
        .iter()
        .flat_map(|(_, f)| f.groups.iter().flat_map(|g| g.rules.iter()))
        .filter(|r| !r.is_alert)
        .map(|r| (r, r.expr.as_ref().and_then(|e| promql::parse(&e.text).ok())))
        .collect();
    let mut recorded = RecordedLabels::new();
    for _ in 0..4 {
        let mut next = RecordedLabels::new();
        for (rule, ast) in &rules {
            let labels = ast
                .as_ref()
                .map_or(LabelSet::AllExcept(BTreeSet::new()), |ast| {
                    promql::output_labels_given(ast, &recorded)
                })
                .with(rule.labels.keys().cloned());
            let merged = match next.remove(&rule.name.value) {
                Some(earlier) => earlier.union(labels),
                None => labels,
            };
            next.insert(rule.name.value.clone(), merged);
        }
        if next == recorded {
            break;
        }
        recorded = next;
    }
    recorded
}

/// Lints one rule: the checks every rule gets, then those of alerts.
fn lint_rule(
    rule: &Rule,
    field: &str,
    options: &LintOptions,
    recorded: &RecordedLabels,
    out: &mut Collector,
) {
    let mut check = RuleCheck {
        rule,
        field,
        kind: if rule.is_alert {
            "alert"
        } else {
            "recording rule"
        },
        name: &rule.name.value,
        out,
    };
    let parsed = check.expression();
    check.label_names();
    check.templates();
    check.for_duration();
    if !rule.is_alert {
        check.recording_rule();
    }
    check.team_label(options.team.as_deref());
    if let (Some(ast), Some(known)) = (&parsed, &options.known_metrics) {
        check.metrics_exist(ast, known, recorded);
    }
    if !rule.is_alert {
        return;
    }
    check.severity();
    check.annotations();
    check.for_present();
    if options.team.is_none() {
        check.team_present();
    }
    if let Some(ast) = &parsed
        && !rule.per_instance_on_purpose
    {
        check.service_level(ast, recorded);
    }
}

/// One rule being linted, and where its findings go.
struct RuleCheck<'r, 'c> {
    rule: &'r Rule,
    field: &'r str,
    /// `alert` or `recording rule`, for messages.
    kind: &'static str,
    name: &'r str,
    out: &'r mut Collector<'c>,
}

impl RuleCheck<'_, '_> {
    /// The expression, parsed; a parse error is reported at its place inside the expression.
    fn expression(&mut self) -> Option<Expr> {
        let (rule, field, kind, name) = (self.rule, self.field, self.kind, self.name);
        let expr = rule.expr.as_ref()?;
        match promql::parse(&expr.text) {
            Ok(ast) => Some(ast),
            Err(e) => {
                self.out.push_span(
                    Level::Error,
                    expr.location_of(e.offset),
                    Some(e.width),
                    format!("{field}.expr"),
                    format!("{kind} `{name}`: PromQL does not parse: {}", e.message),
                    Some(
                        "check the expression with the Prometheus UI or `promtool check rules`"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn label_names(&mut self) {
        let field = self.field;
        for (key, value) in &self.rule.labels {
            if !is_label_name(key) {
                self.out.push(
                    Level::Error,
                    value.location,
                    format!("{field}.labels.{key}"),
                    format!("invalid label name `{key}`"),
                    Some(
                        "label names use letters, digits and '_' and do not start with a digit"
                            .into(),
                    ),
                );
            }
        }
    }

    /// Label and annotation values are Go templates that Prometheus parses when it loads the
    /// file: one that does not parse fails the whole file.
    fn templates(&mut self) {
        let (rule, field, kind, name) = (self.rule, self.field, self.kind, self.name);
        let parts = [("labels", &rule.labels), ("annotations", &rule.annotations)];
        for (part, values) in parts {
            for (key, value) in values {
                if let Err(e) = super::template::check(&value.value) {
                    self.out.push(
                        Level::Error,
                        value.location,
                        format!("{field}.{part}.{key}"),
                        format!("{kind} `{name}`: the template in `{key}` does not parse: {}", e.message),
                        Some("Prometheus refuses the whole rule file; close every `{{ ... }}` and use its template functions (humanize, printf, ...)".into()),
                    );
                }
            }
        }
    }

    /// A recording rule's name is the metric it records, and it has no `for`.
    fn recording_rule(&mut self) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        if !is_metric_name(name) {
            self.out.push(
                Level::Error,
                rule.name.location,
                format!("{field}.record"),
                format!("invalid recording rule name `{name}`"),
                Some("a recording rule records a metric: letters, digits, '_' and ':', e.g. `job:http_requests:rate5m`".into()),
            );
        }
        if let Some(duration) = &rule.for_duration {
            self.out.push(
                Level::Error,
                duration.location,
                format!("{field}.for"),
                format!("recording rule `{name}` has a `for`"),
                Some("only alerts wait with `for`; remove it".into()),
            );
        }
    }

    fn for_duration(&mut self) {
        if let Some(duration) = &self.rule.for_duration
            && let Err(hint) = check_duration(&duration.value)
        {
            self.out.push(
                Level::Error,
                duration.location,
                format!("{}.for", self.field),
                format!("invalid `for` duration `{}`", duration.value),
                Some(hint),
            );
        }
    }

    /// A `team` label naming another team than the file's.
    fn team_label(&mut self, team: Option<&str>) {
        let (field, kind, name) = (self.field, self.kind, self.name);
        if let (Some(team_label), Some(team)) = (self.rule.labels.get("team"), team)
            && team_label.value != team
        {
            self.out.push(
                Level::Error,
                team_label.location,
                format!("{field}.labels.team"),
                format!(
                    "{kind} `{name}` sets team `{}`, but the file belongs to team `{team}`",
                    team_label.value
                ),
                Some(
                    "remove the label: stackgen adds the owning team to every rule of a team's file"
                        .into(),
                ),
            );
        }
    }

    /// Every metric the expression reads is in the given expositions (or recorded here).
    fn metrics_exist(&mut self, ast: &Expr, known: &BTreeSet<String>, recorded: &RecordedLabels) {
        let (rule, field, kind, name) = (self.rule, self.field, self.kind, self.name);
        let expr = rule.expr.as_ref();
        for metric in promql::metric_names(ast) {
            let exists = known.contains(&metric)
                || recorded.contains_key(&metric)
                || super::defaults::recorded_by_the_stack(&metric)
                || super::exposition::SYNTHETIC.contains(&metric.as_str());
            if exists {
                continue;
            }
            let location = expr.map_or(rule.location, |e| {
                e.location_of(promql::find_word(&e.text, &metric).unwrap_or(0))
            });
            let close = crate::diagnostic::did_you_mean(&metric, known.iter().map(String::as_str));
            let hint = close.map_or_else(
                || "no exposition given with --metrics has it; check the name".to_string(),
                |c| format!("did you mean `{c}`?"),
            );
            self.out.push_span(Level::Warning, location, Some(metric.chars().count()), format!("{field}.expr"), format!("{kind} `{name}` reads metric `{metric}`, which no given exposition has (the {kind} would never match)"), Some(hint));
        }
    }

    fn severity(&mut self) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        match rule.labels.get("severity") {
            None => self.out.push(
                Level::Error,
                rule.location,
                format!("{field}.labels.severity"),
                format!("alert `{name}` has no `severity` label"),
                Some("add `labels: {severity: critical|warning|info}`".into()),
            ),
            Some(s) if !SEVERITIES.contains(&s.value.as_str()) => {
                let hint = crate::diagnostic::did_you_mean(&s.value, SEVERITIES.iter().copied())
                    .map_or_else(
                        || "use critical, warning or info".to_string(),
                        |c| format!("did you mean `{c}`? (critical, warning or info)"),
                    );
                self.out.push(
                    Level::Error,
                    s.location,
                    format!("{field}.labels.severity"),
                    format!("alert `{name}` has invalid severity `{}`", s.value),
                    Some(hint),
                );
            }
            Some(_) => {}
        }
    }

    fn annotations(&mut self) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        for (annotation, level) in [
            ("summary", Level::Error),
            ("runbook_url", Level::Error),
            ("description", Level::Warning),
        ] {
            if !rule.annotations.contains_key(annotation) {
                self.out.push(
                    level,
                    rule.location,
                    format!("{field}.annotations.{annotation}"),
                    format!("alert `{name}` has no `{annotation}` annotation"),
                    Some(format!(
                        "add `annotations: {{{annotation}: ...}}`; notifications show it"
                    )),
                );
            }
        }
    }

    /// A `for` duration, except on info alerts.
    fn for_present(&mut self) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        let is_info = rule
            .labels
            .get("severity")
            .is_some_and(|s| s.value == "info");
        if rule.for_duration.is_none() && !is_info {
            self.out.push(
                Level::Error,
                rule.location,
                format!("{field}.for"),
                format!("alert `{name}` has no `for` duration"),
                Some("add `for: 5m` (or longer) so one bad scrape does not page anybody".into()),
            );
        }
    }

    /// A `team` label, when the file belongs to no team.
    fn team_present(&mut self) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        if !rule.labels.contains_key("team") {
            self.out.push(Level::Warning, rule.location, format!("{field}.labels.team"), format!("alert `{name}` has no `team` label, so it cannot be routed to its owner"), Some("list the file under the team's `rule_files` in stack.yaml (stackgen adds the label), or lint with --team NAME".into()));
        }
    }

    /// The alert is about a service: its result keeps no per-instance label.
    fn service_level(&mut self, ast: &Expr, recorded: &RecordedLabels) {
        let (rule, field, name) = (self.rule, self.field, self.name);
        let labels = promql::output_labels_given(ast, recorded);
        let per_instance = labels.per_instance_labels();
        if per_instance.is_empty() {
            return;
        }
        let mut by: Vec<String> = labels
            .known()
            .into_iter()
            .filter(|l| !crate::labels::PER_INSTANCE_LABELS.contains(&l.as_str()))
            .collect();
        if by.is_empty() {
            by = vec!["cluster".into(), "namespace".into(), "service".into()];
        }
        let location = rule.expr.as_ref().map_or(rule.location, |e| e.location);
        let keeps = match labels {
            promql::LabelSet::AllExcept(_) => {
                "every label of its input series, per-instance ones included".to_string()
            }
            promql::LabelSet::Only(_) => per_instance
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        self.out.push(
            Level::Warning,
            location,
            format!("{field}.expr"),
            format!("alert `{name}` fires per instance: its result keeps {keeps}"),
            Some(format!("alert on the service: aggregate with `max by ({}) (...)` or `sum by ({}) (...)`; if per-instance is intended, add a `# {PER_INSTANCE_MARKER}` comment above the rule", by.join(", "), by.join(", "))),
        );
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_one(src: &str, options: &LintOptions) -> Vec<(Level, String)> {
        lint(&[("r.yaml".into(), src.into())], options)
            .into_iter()
            .map(|f| (f.level, f.diagnostic.message))
            .collect()
    }

    const GOOD: &str = "groups:\n  - name: g\n    rules:\n      - alert: SvcDown\n        expr: max by (cluster, namespace, service) (up == 0)\n        for: 5m\n        labels: {severity: critical}\n        annotations: {summary: s, description: d, runbook_url: u}\n";

    #[test]
    fn a_service_level_alert_is_clean() {
        let options = LintOptions {
            team: Some("web".into()),
            known_metrics: None,
        };
        assert_eq!(lint_one(GOOD, &options), vec![]);
    }

    #[test]
    fn an_alert_on_a_series_recorded_per_service_is_service_level() {
        let options = LintOptions {
            team: Some("web".into()),
            known_metrics: None,
        };
        let recorded = |by: &str| {
            GOOD.replace(
                "max by (cluster, namespace, service) (up == 0)",
                "web:errors:ratio > 0.05",
            )
            .replace(
                "    rules:\n",
                &format!("    rules:\n      - record: web:requests:rate5m\n        expr: sum by ({by}) (rate(x_total[5m]))\n      - record: web:errors:ratio\n        expr: web:errors:rate5m / web:requests:rate5m\n      - record: web:errors:rate5m\n        expr: sum by ({by}) (rate(x_total{{code=\"500\"}}[5m]))\n"),
            )
        };
        // Recorded from one another, in any order.
        assert_eq!(
            lint_one(&recorded("cluster, namespace, service"), &options),
            vec![]
        );
        let per_pod = lint_one(&recorded("cluster, namespace, service, pod"), &options);
        assert_eq!(per_pod.len(), 1, "{per_pod:?}");
        assert!(per_pod[0].1.contains("keeps `pod`"), "{per_pod:?}");
    }

    #[test]
    fn per_instance_alert_is_a_warning_unless_marked() {
        let options = LintOptions {
            team: Some("web".into()),
            known_metrics: None,
        };
        let src = GOOD.replace("max by (cluster, namespace, service) (up == 0)", "up == 0");
        let found = lint_one(&src, &options);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, Level::Warning);
        assert!(found[0].1.contains("fires per instance"));
        let marked = src.replace(
            "      - alert: SvcDown",
            "      # stackgen:per-instance\n      - alert: SvcDown",
        );
        assert_eq!(lint_one(&marked, &options), vec![]);
    }

    #[test]
    fn unknown_metrics_are_reported_with_a_suggestion() {
        let options = LintOptions {
            team: Some("web".into()),
            known_metrics: Some(["http_requests_total".to_string()].into()),
        };
        let src = GOOD.replace("(up == 0)", "(rate(http_request_total[5m]) > 1)");
        let found = lint(&[("r.yaml".into(), src)], &options);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].diagnostic.hint.as_deref(),
            Some("did you mean `http_requests_total`?")
        );
        // The stack's own request series are there though no exposition has them; a typo in
        // one is not.
        let stack_series = GOOD.replace(
            "(up == 0)",
            "(stackgen:service_errors:rate5m / stackgen:slo_requests:rate5m > 1)",
        );
        assert_eq!(lint(&[("r.yaml".into(), stack_series)], &options), vec![]);
        let typo = GOOD.replace("(up == 0)", "(stackgen:service_error:rate5m > 1)");
        assert_eq!(lint(&[("r.yaml".into(), typo)], &options).len(), 1);
    }
}
