//! Reading `prometheus.scrape_jobs` and `probes:`: names unique and none of the stack's own jobs,
//! targets that are `host:port` or an absolute URL, durations Prometheus takes, and an owner for
//! every job and probe (a team, or the declared service probed) checked once the teams and
//! services of the team files are known.

use std::collections::{BTreeMap, BTreeSet};

use marked_yaml::Node;

use crate::config_check::values;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::Location;
use crate::spec::probes::{PROBE_JOB, Probe, ProbeTarget, Scheme, ScrapeJob};
use crate::spec::{Service, Team};

const SCRAPE_JOB_KEYS: &[&str] = &[
    "name", "team", "service", "targets", "path", "scheme", "interval", "timeout", "labels",
];
const PROBE_KEYS: &[&str] = &[
    "name", "url", "status", "tcp", "tls", "service", "team", "interval",
];
/// The jobs the stack scrapes itself; a job of the spec's cannot take their names.
const STACK_JOBS: &[&str] = &[
    "apiserver",
    "kubelet",
    "cadvisor",
    "kube-scheduler",
    "kube-controller-manager",
    "etcd",
    "prometheus",
    "alertmanager",
    "grafana",
    "stackgen-router",
    "node-exporter",
    "kube-state-metrics",
    "blackbox-exporter",
    "labelled-pods",
    PROBE_JOB,
];
/// Labels the stack sets on every series of a job itself.
const OWN_LABELS: &[&str] = &["cluster", "team", "service", "namespace", "job", "instance"];

impl Checker {
    /// `prometheus.scrape_jobs`; `scrape_interval` is Prometheus' own, which a job's timeout
    /// cannot exceed when it sets no interval.
    pub(in crate::spec) fn scrape_jobs(
        &mut self,
        obj: &Obj,
        scrape_interval: &str,
    ) -> Vec<ScrapeJob> {
        let field = obj.path("scrape_jobs");
        let mut jobs: Vec<ScrapeJob> = Vec::new();
        let mut names = BTreeSet::new();
        for (index, node) in self.list(obj, "scrape_jobs").into_iter().enumerate() {
            let item = format!("{field}[{index}]");
            let Some(entry) = self.object(node, &item, SCRAPE_JOB_KEYS) else {
                continue;
            };
            let Some(job) = self.scrape_job(&entry, scrape_interval) else {
                continue;
            };
            if self.job_name_free(&entry, &job.name, &mut names, "scrape job") {
                jobs.push(job);
            }
        }
        jobs
    }

    fn scrape_job(&mut self, entry: &Obj, scrape_interval: &str) -> Option<ScrapeJob> {
        let name = self
            .required(entry, "name", "add `name:`, the job's name in Prometheus")
            .and_then(|n| {
                self.checked_string(n, &entry.path("name"), "name", values::check_dns_label)
            });
        let team = self
            .required(
                entry,
                "team",
                "add `team:`, the team that owns the job's targets (their alerts reach it)",
            )
            .and_then(|n| self.string(n, &entry.path("team")));
        let service =
            self.optional_checked(entry, "service", "service name", values::check_dns_label);
        let targets = self.targets(entry);
        let path = self
            .optional_checked(entry, "path", "metrics path", values::check_http_path)
            .unwrap_or_else(|| crate::spec::defaults::METRICS_PATH.to_string());
        let scheme = match entry.get("scheme") {
            None => Some(Scheme::Http),
            Some(node) => match self.string(node, &entry.path("scheme"))?.0.as_str() {
                "http" => Some(Scheme::Http),
                "https" => Some(Scheme::Https),
                other => {
                    self.error(
                        node.span(),
                        &entry.path("scheme"),
                        format!("unknown scheme `{other}`"),
                        Some("write `http` or `https`".into()),
                    );
                    None
                }
            },
        };
        let interval = self.optional_checked(
            entry,
            "interval",
            "scrape interval",
            values::check_scrape_interval,
        );
        let timeout = self.optional_checked(entry, "timeout", "duration", values::check_duration);
        if let (Some(timeout), Some(node)) = (&timeout, entry.get("timeout")) {
            let limit = interval.as_deref().unwrap_or(scrape_interval);
            let longer =
                values::parse_duration_ms(timeout).ok() > values::parse_duration_ms(limit).ok();
            if longer {
                self.error(
                    node.span(),
                    &entry.path("timeout"),
                    format!("the timeout {timeout} is longer than the scrape interval {limit}"),
                    Some("Prometheus refuses a scrape_timeout above the job's interval: shorten it or set `interval:`".into()),
                );
            }
        }
        let labels = self.target_labels(entry);
        let name = name?;
        let (team, team_location) = team?;
        Some(ScrapeJob {
            service: service.unwrap_or_else(|| name.clone()),
            name,
            team,
            targets: targets?,
            path,
            scheme: scheme?,
            interval,
            timeout,
            labels: labels?,
            team_location,
        })
    }

    /// A scrape job's `targets`: at least one `host:port`, each once.
    fn targets(&mut self, entry: &Obj) -> Option<Vec<String>> {
        let node = self.required(entry, "targets", "add `targets: [db-1.example.com:9187]`")?;
        let field = entry.path("targets");
        let items = self.list(entry, "targets");
        if items.is_empty() {
            self.error(
                node.span(),
                &field,
                "`targets` is empty".into(),
                Some("list each target as `host:port`".into()),
            );
            return None;
        }
        let mut targets = Vec::new();
        let mut ok = true;
        for (index, item) in items.into_iter().enumerate() {
            let item_field = format!("{field}[{index}]");
            match self.checked_string(item, &item_field, "target", check_host_port) {
                Some(target) if targets.contains(&target) => {
                    self.error(
                        item.span(),
                        &item_field,
                        format!("`{target}` is listed twice"),
                        Some("list each target once".into()),
                    );
                    ok = false;
                }
                Some(target) => targets.push(target),
                None => ok = false,
            }
        }
        ok.then_some(targets)
    }

    /// A scrape job's `labels`: Prometheus label names, none the stack sets itself.
    fn target_labels(&mut self, entry: &Obj) -> Option<BTreeMap<String, String>> {
        let labels = self.string_map(entry, "labels");
        let mut ok = true;
        for name in labels.keys() {
            let node = entry
                .get("labels")
                .and_then(Node::as_mapping)
                .and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.as_str() == name)
                        .map(|(k, _)| *k.span())
                });
            let span = node.unwrap_or(*entry.span());
            let field = format!("{}.{name}", entry.path("labels"));
            let problem = if let Err(hint) = values::check_prometheus_label(name) {
                Some((format!("invalid label name `{name}`"), hint))
            } else if name.starts_with("__") {
                Some((
                    format!("`{name}` is reserved"),
                    "labels starting with `__` are Prometheus' own".to_string(),
                ))
            } else if OWN_LABELS.contains(&name.as_str()) {
                Some((
                    format!("`{name}` is set by the stack"),
                    "the job's `team` and `service` (and Prometheus' `job` and `instance`) are set from the entry itself".to_string(),
                ))
            } else {
                None
            };
            if let Some((message, hint)) = problem {
                self.error(&span, &field, message, Some(hint));
                ok = false;
            }
        }
        ok.then_some(labels)
    }

    /// Records `name` as taken; false (and an error at its `name`) when it is not free.
    fn job_name_free(
        &mut self,
        entry: &Obj,
        name: &str,
        names: &mut BTreeSet<String>,
        what: &str,
    ) -> bool {
        let span = entry.get("name").map_or(*entry.span(), |n| *n.span());
        let problem = if STACK_JOBS.contains(&name) {
            Some((
                format!("`{name}` is a job of the stack's own"),
                "choose another name: alerts tell the stack's jobs apart by theirs".to_string(),
            ))
        } else if !names.insert(name.to_string()) {
            Some((
                format!("a second {what} named `{name}`"),
                format!("give each {what} its own `name`"),
            ))
        } else {
            None
        };
        match problem {
            Some((message, hint)) => {
                self.error(&span, &entry.path("name"), message, Some(hint));
                false
            }
            None => true,
        }
    }

    /// `probes:`, their owners unresolved (see [`Checker::probe_owners`]).
    pub(in crate::spec) fn probes(&mut self, top: &Obj) -> Vec<(Probe, Option<String>)> {
        let mut probes = Vec::new();
        let mut names = BTreeSet::new();
        for (index, node) in self.list(top, "probes").into_iter().enumerate() {
            let item = format!("probes[{index}]");
            let Some(entry) = self.object(node, &item, PROBE_KEYS) else {
                continue;
            };
            let Some(probe) = self.probe(&entry) else {
                continue;
            };
            let span = entry.get("name").map_or(*entry.span(), |n| *n.span());
            if names.insert(probe.0.name.clone()) {
                probes.push(probe);
            } else {
                self.error(
                    &span,
                    &entry.path("name"),
                    format!("a second probe named `{}`", probe.0.name),
                    Some("give each probe its own `name` (its `probe` label)".into()),
                );
            }
        }
        probes
    }

    /// One probe, with the team it names (its service's team is found later).
    fn probe(&mut self, entry: &Obj) -> Option<(Probe, Option<String>)> {
        let name = self
            .required(
                entry,
                "name",
                "add `name:`, what the probe checks (`shop-front-page`)",
            )
            .and_then(|n| {
                self.checked_string(n, &entry.path("name"), "name", values::check_dns_label)
            });
        let target = self.probe_target(entry);
        let interval = self.optional_checked(
            entry,
            "interval",
            "scrape interval",
            values::check_scrape_interval,
        );
        let service = entry.get("service").and_then(|n| {
            self.checked_string(
                n,
                &entry.path("service"),
                "service name",
                values::check_dns_label,
            )
        });
        let team = entry
            .get("team")
            .and_then(|n| self.string(n, &entry.path("team")).map(|(t, _)| t));
        let owner_node = entry.get("service").or(entry.get("team"));
        if owner_node.is_none() {
            self.error(
                entry.span(),
                &entry.path("service"),
                "a probe needs an owner".into(),
                Some(
                    "add `service:` (a declared service; its team owns the probe) or `team:`"
                        .into(),
                ),
            );
            return None;
        }
        let owner_location = Location::of_span(owner_node.map_or(entry.span(), Node::span));
        let name = name?;
        Some((
            Probe {
                service: service.clone().unwrap_or_else(|| name.clone()),
                name,
                target: target?,
                team: team.clone().unwrap_or_default(),
                namespace: None,
                interval,
                owner_location,
                owner_is_service: service.is_some(),
            },
            team,
        ))
    }

    /// Exactly one of `url` (with `status`) and `tcp` (with `tls`).
    fn probe_target(&mut self, entry: &Obj) -> Option<ProbeTarget> {
        match (entry.get("url"), entry.get("tcp")) {
            (Some(_), Some(tcp)) => {
                self.error(
                    tcp.span(),
                    &entry.path("tcp"),
                    "`url` and `tcp` given together".into(),
                    Some(
                        "a probe checks one thing: keep `url` (an HTTP check) or `tcp` (a port)"
                            .into(),
                    ),
                );
                None
            }
            (None, None) => {
                self.error(
                    entry.span(),
                    &entry.path("url"),
                    "a probe needs `url` or `tcp`".into(),
                    Some(
                        "add `url: https://shop.example.com/healthz` or `tcp: db.example.com:5432`"
                            .into(),
                    ),
                );
                None
            }
            (Some(url), None) => {
                self.only_with(entry, "tls", "tcp");
                let url =
                    self.checked_string(url, &entry.path("url"), "URL", values::check_http_url);
                let status = self.status_codes(entry);
                Some(ProbeTarget::Http {
                    url: url?,
                    status: status?,
                })
            }
            (None, Some(tcp)) => {
                self.only_with(entry, "status", "url");
                let address =
                    self.checked_string(tcp, &entry.path("tcp"), "address", check_host_port);
                let tls = self.bool(Some(entry), "tls", false);
                Some(ProbeTarget::Tcp {
                    address: address?,
                    tls,
                })
            }
        }
    }

    /// An error at `key` when it is given without `needs`.
    fn only_with(&mut self, entry: &Obj, key: &str, needs: &str) {
        if let Some(node) = entry.get(key) {
            self.error(
                node.span(),
                &entry.path(key),
                format!("`{key}` goes with `{needs}`"),
                Some(format!("remove `{key}`, or probe with `{needs}:`")),
            );
        }
    }

    /// `status`: the HTTP status codes a healthy answer has (none: any 2xx).
    fn status_codes(&mut self, entry: &Obj) -> Option<Vec<u16>> {
        let field = entry.path("status");
        let mut codes = Vec::new();
        let mut ok = true;
        for (index, node) in self.list(entry, "status").into_iter().enumerate() {
            let item = format!("{field}[{index}]");
            let (text, _) = self.string(node, &item)?;
            match text.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => {
                    if !codes.contains(&code) {
                        codes.push(code);
                    }
                }
                _ => {
                    self.error(
                        node.span(),
                        &item,
                        format!("`{text}` is no HTTP status code"),
                        Some("write codes from 100 to 599, like `status: [200, 301]`".into()),
                    );
                    ok = false;
                }
            }
        }
        codes.sort_unstable();
        ok.then_some(codes)
    }

    /// Gives each probe its owner: the declared service it names (its team and namespace), else
    /// the team it names; an owner that does not exist is an error at the probe.
    pub(in crate::spec) fn probe_owners(
        &mut self,
        probes: Vec<(Probe, Option<String>)>,
        services: &[Service],
        teams: &[Team],
    ) -> Vec<Probe> {
        let mut owned = Vec::new();
        for (mut probe, team) in probes {
            let field = format!("probes.{}", probe.name);
            if probe.owner_is_service {
                let matching: Vec<&Service> = services
                    .iter()
                    .filter(|s| s.name == probe.service)
                    .collect();
                match matching.as_slice() {
                    [service] => {
                        if let Some(team) = team.as_ref().filter(|t| **t != service.team) {
                            self.error_at(
                                probe.owner_location,
                                &field,
                                format!(
                                    "service `{}` is owned by team {}, not {team}",
                                    service.name, service.team
                                ),
                                Some("drop `team:`: a probe of a service is its team's".into()),
                            );
                            continue;
                        }
                        probe.team = service.team.clone();
                        probe.namespace = Some(service.namespace.clone());
                    }
                    [] => {
                        self.error_at(
                            probe.owner_location,
                            &field,
                            format!("no service `{}`", probe.service),
                            Some("name a service of the spec or of a team file, or give `team:` instead".into()),
                        );
                        continue;
                    }
                    several => {
                        let namespaces: Vec<&str> =
                            several.iter().map(|s| s.namespace.as_str()).collect();
                        self.error_at(
                            probe.owner_location,
                            &field,
                            format!(
                                "services named `{}` are in namespaces {}",
                                probe.service,
                                namespaces.join(", ")
                            ),
                            Some("give the probe `team:` and a `service:` name of its own".into()),
                        );
                        continue;
                    }
                }
            } else if !team_exists(teams, &probe.team) {
                self.error_at(
                    probe.owner_location,
                    &field,
                    format!("no team `{}`", probe.team),
                    Some(no_team_hint(teams)),
                );
                continue;
            }
            owned.push(probe);
        }
        owned
    }

    /// A scrape job's team must exist.
    pub(in crate::spec) fn scrape_job_owners(&mut self, jobs: &[ScrapeJob], teams: &[Team]) {
        for job in jobs {
            if !team_exists(teams, &job.team) {
                self.error_at(
                    job.team_location,
                    &format!("prometheus.scrape_jobs.{}.team", job.name),
                    format!("no team `{}`", job.team),
                    Some(no_team_hint(teams)),
                );
            }
        }
    }
}

/// Whether `team` owns things here: a declared team, or, with none declared, the team that
/// then owns everything.
fn team_exists(teams: &[Team], team: &str) -> bool {
    if teams.is_empty() {
        team == crate::spec::defaults::UNDECLARED_TEAM
    } else {
        teams.iter().any(|t| t.name == team)
    }
}

fn no_team_hint(teams: &[Team]) -> String {
    if teams.is_empty() {
        format!(
            "with no team declared, team `{}` owns everything (its notifications are logged): write that, or declare the team under `teams:`",
            crate::spec::defaults::UNDECLARED_TEAM
        )
    } else {
        "name a team of the spec or of a team file".into()
    }
}

/// `host:port`: a DNS name or IP address (IPv6 in brackets) and a port from 1 to 65535.
fn check_host_port(text: &str) -> Result<(), String> {
    let hint = || "write `host:port`, like `db-1.example.com:9187` or `10.0.0.5:9100`".to_string();
    let (host, port) = text.rsplit_once(':').ok_or_else(hint)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if !port_ok || (host.contains(':') && !bracketed) || values::check_host(host).is_err() {
        return Err(hint());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_host_port;

    /// Without teams, the team that then owns everything owns a probe; another name is an
    /// error that says so.
    #[test]
    fn without_teams_the_undeclared_team_owns_probes() {
        let spec = |team: &str| {
            format!(
                "cluster: {{name: prod}}\nprobes:\n  - {{name: site, url: https://example.com/, team: {team}}}\n"
            )
        };
        let parsed = crate::spec::parse("stack.yaml", &spec("platform")).expect("valid");
        assert_eq!(parsed.probes[0].team, "platform");
        let problems = crate::spec::parse("stack.yaml", &spec("ops")).expect_err("no team ops");
        assert_eq!(problems[0].message, "no team `ops`");
        assert!(
            problems[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("team `platform` owns everything"))
        );
    }

    #[test]
    fn a_target_is_a_host_and_a_port() {
        for ok in [
            "db.example.com:9187",
            "10.0.0.5:9100",
            "[::1]:9090",
            "localhost:1",
        ] {
            assert!(check_host_port(ok).is_ok(), "{ok}");
        }
        for bad in [
            "db.example.com",
            "db:0",
            "db:70000",
            "::1:9090",
            "http://db:9187",
            "a b:1",
            ":9100",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
