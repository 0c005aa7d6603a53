//! `teams`: each team and the destinations it is reached at. A destination's kind decides its
//! secret field and its own settings ([`crate::router::destination::DestinationKind`]); its
//! templates are read and compiled here, once, when the config is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use marked_yaml::Node;

use super::secret::SecretSource;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::{Location, did_you_mean};
use crate::router::dedup::Severity;
use crate::router::destination::{DestinationKind, DestinationSettings};
use crate::router::routing::DestinationId;
use crate::router::template::{PARTS, Templates};
use crate::time_interval::TimeInterval;

/// Keys every destination may have, whatever its kind.
const COMMON_KEYS: &[&str] = &[
    "kind",
    "name",
    "severities",
    "templates",
    "retry_statuses",
    "reject_statuses",
];

/// What templates see, for the hint of a template that does not render.
const TEMPLATE_VARIABLES: &str = "templates see: signals, several_signals, signal_count, signals_summary, kind, kind_label, is_resolved, is_acknowledgement, by, status, severity, severity_label, team, service, alertname, cluster, namespace, firing_members, total_members, members, more_members, summary, description, runbook_url, dashboard_url, generator_url, alertmanager_url, opened_at, at, duration, labels, annotations, incident_key";

/// One destination of a team, checked, with its templates compiled.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub id: DestinationId,
    /// The kind and its own settings.
    pub settings: DestinationSettings,
    pub secret: Option<SecretSource>,
    /// The kind's default templates, with the parts the team or the destination replaces.
    pub templates: Arc<Templates>,
    /// `severities`: the only ones it takes; `None`: every severity.
    pub severities: Option<Vec<Severity>>,
    /// Reply statuses to retry, or to reject, whatever the kind's rule says.
    pub retry_statuses: Vec<u16>,
    pub reject_statuses: Vec<u16>,
}

impl DestinationConfig {
    pub fn kind(&self) -> DestinationKind {
        self.settings.kind()
    }
}

/// A template part read from a file, and where the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TemplateFile {
    path: PathBuf,
    location: Location,
}

/// Teams by name, each with its destinations in order.
pub type Teams = BTreeMap<String, Vec<DestinationConfig>>;

impl Checker {
    pub(super) fn teams_section(
        &mut self,
        top: &Obj,
        base: &Path,
        grafana_url: Option<&str>,
        quiet: &mut BTreeMap<String, Vec<TimeInterval>>,
    ) -> Teams {
        let mut teams = BTreeMap::new();
        let Some(node) = top.get("teams") else {
            self.error(
                top.span(),
                "teams",
                "missing `teams`".into(),
                Some("declare at least one team with its destinations".into()),
            );
            return teams;
        };
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                "teams",
                "`teams` must be a mapping of team names".into(),
                None,
            );
            return teams;
        };
        for (team_name, value) in map.iter() {
            let team = team_name.as_str();
            if team.contains('/') || team.is_empty() {
                self.error(
                    team_name.span(),
                    &format!("teams.{team}"),
                    format!("team name `{team}` cannot be empty or hold a `/`"),
                    Some(
                        "destinations are named `team/destination`; name the team without `/`"
                            .into(),
                    ),
                );
                continue;
            }
            let field = format!("teams.{team}");
            let Some(obj) =
                self.object(value, &field, &["destinations", "templates", "quiet_hours"])
            else {
                continue;
            };
            let quiet_hours = self.quiet_hours(&obj);
            if !quiet_hours.is_empty() {
                quiet.insert(team.to_string(), quiet_hours);
            }
            let team_templates = self.template_files(&obj, &BTreeMap::new());
            let context = TeamContext {
                team,
                templates: &team_templates,
                base,
                grafana_url,
            };
            let mut destinations: Vec<DestinationConfig> = Vec::new();
            let nodes = self.list(&obj, "destinations");
            if nodes.is_empty() {
                self.error(
                    obj.span(),
                    &format!("{field}.destinations"),
                    format!("team `{team}` has no destination: its alerts would reach nobody"),
                    Some(
                        "add one; `- kind: log` keeps its notifications in the router's log".into(),
                    ),
                );
            }
            for (i, dnode) in nodes.into_iter().enumerate() {
                let dfield = format!("{field}.destinations[{i}]");
                if let Some(destination) = self.destination(dnode, &dfield, &context, &destinations)
                {
                    destinations.push(destination);
                }
            }
            teams.insert(team.to_string(), destinations);
        }
        teams
    }

    fn destination(
        &mut self,
        node: &Node,
        field: &str,
        team: &TeamContext,
        earlier: &[DestinationConfig],
    ) -> Option<DestinationConfig> {
        let kind = self.destination_kind(node, field)?;
        let info = kind.info();
        let mut keys: Vec<String> = COMMON_KEYS.iter().map(|k| k.to_string()).collect();
        keys.extend(info.setting_keys.iter().map(|k| k.to_string()));
        if let Some(f) = info.secret_field {
            keys.extend([f.to_string(), format!("{f}_file"), format!("{f}_env")]);
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let obj = self.object(node, field, &key_refs)?;
        let secret = info.secret_field.and_then(|f| self.secret(&obj, f, true));
        let name = obj
            .get("name")
            .and_then(|n| self.string(n, &obj.path("name")))
            .map_or_else(|| kind.name().to_string(), |(n, _)| n);
        let id = self.destination_id(&obj, team.team, &name, earlier)?;
        let settings = kind.check_settings(self, &obj);
        let files = self.template_files(&obj, team.templates);
        let templates = self.compile_templates(&id, kind, &files, team)?;
        let severities = self
            .severities(&obj)
            .or_else(|| info.default_severities.map(<[Severity]>::to_vec));
        let retry_statuses = self.statuses(&obj, "retry_statuses");
        let reject_statuses = self.statuses(&obj, "reject_statuses");
        Some(DestinationConfig {
            id,
            settings,
            secret,
            templates,
            severities,
            retry_statuses,
            reject_statuses,
        })
    }

    /// `kind:`, one of [`DestinationKind::ALL`].
    fn destination_kind(&mut self, node: &Node, field: &str) -> Option<DestinationKind> {
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                field,
                "a destination is a mapping with `kind`".into(),
                None,
            );
            return None;
        };
        let all_kinds = || {
            format!(
                "kinds: {}",
                DestinationKind::names().collect::<Vec<_>>().join(", ")
            )
        };
        let Some(kind) = map.get_scalar("kind") else {
            self.error(
                map.span(),
                &format!("{field}.kind"),
                "destination without `kind`".into(),
                Some(all_kinds()),
            );
            return None;
        };
        if let Some(known) = DestinationKind::parse(kind.as_str()) {
            return Some(known);
        }
        let hint = did_you_mean(kind.as_str(), DestinationKind::names())
            .map_or_else(all_kinds, |c| format!("did you mean `{c}`?"));
        self.error(
            kind.span(),
            &format!("{field}.kind"),
            format!("unknown destination kind `{}`", kind.as_str()),
            Some(hint),
        );
        None
    }

    /// The destination's id; a second destination of the same name in a team is refused.
    fn destination_id(
        &mut self,
        obj: &Obj,
        team: &str,
        name: &str,
        earlier: &[DestinationConfig],
    ) -> Option<DestinationId> {
        let span = obj.get("name").map_or(*obj.span(), |n| *n.span());
        if name.contains('/') {
            self.error(
                &span,
                &obj.path("name"),
                format!("destination name `{name}` cannot hold a `/`"),
                Some("routes name destinations `team/destination`".into()),
            );
            return None;
        }
        if earlier.iter().any(|d| d.id.name == name) {
            self.error(
                &span,
                &obj.path("name"),
                format!("team `{team}` has two destinations named `{name}`"),
                Some("give each destination of a team its own `name`".into()),
            );
        }
        Some(DestinationId::new(team, name))
    }

    /// `templates: {title: file, text: file, ...}` of a team or a destination.
    fn template_files(
        &mut self,
        obj: &Obj,
        inherited: &BTreeMap<String, TemplateFile>,
    ) -> BTreeMap<String, TemplateFile> {
        let mut files = inherited.clone();
        let Some(templates) = self.sub_object(obj, "templates", PARTS) else {
            return files;
        };
        for part in PARTS {
            if let Some(node) = templates.get(part)
                && let Some((path, location)) = self.string(node, &templates.path(part))
            {
                files.insert(
                    part.to_string(),
                    TemplateFile {
                        path: PathBuf::from(path),
                        location,
                    },
                );
            }
        }
        files
    }

    /// Reads the template files (relative to the config's directory) and compiles them over the
    /// kind's defaults, checked against sample notifications.
    fn compile_templates(
        &mut self,
        id: &DestinationId,
        kind: DestinationKind,
        files: &BTreeMap<String, TemplateFile>,
        team: &TeamContext,
    ) -> Option<Arc<Templates>> {
        let mut overrides = BTreeMap::new();
        let mut readable = true;
        for (part, file) in files {
            let path = team.base.join(&file.path);
            match crate::files::read_text(&path) {
                Ok(text) => {
                    overrides.insert(part.clone(), text);
                }
                Err(e) => {
                    self.template_error(
                        id,
                        file.location,
                        format!("cannot read template {}: {e}", path.display()),
                    );
                    readable = false;
                }
            }
        }
        if !readable {
            return None;
        }
        let info = kind.info();
        match Templates::new(
            info.text_flavour,
            info.mentions,
            &overrides,
            team.grafana_url.map(str::to_string),
        ) {
            Ok(templates) => Some(Arc::new(templates)),
            Err(message) => {
                let location = files
                    .values()
                    .next()
                    .map_or_else(Location::default, |f| f.location);
                self.template_error(id, location, message);
                None
            }
        }
    }

    fn template_error(&mut self, id: &DestinationId, location: Location, message: String) {
        self.error_at(
            location,
            &format!("teams.{}.{}", id.team, id.name),
            format!("destination `{id}`: {message}"),
            Some(TEMPLATE_VARIABLES.into()),
        );
    }

    /// `severities: [critical, warning, info]`, or `None` when absent (every severity).
    fn severities(&mut self, obj: &Obj) -> Option<Vec<Severity>> {
        let names = self.names_from(obj, "severities", "severity", &Severity::NAMED)?;
        Some(names.into_iter().filter_map(Severity::named).collect())
    }

    /// `retry_statuses` or `reject_statuses`: HTTP status codes.
    fn statuses(&mut self, obj: &Obj, key: &str) -> Vec<u16> {
        let field = obj.path(key);
        let nodes = self.list(obj, key);
        nodes
            .iter()
            .filter_map(|n| {
                let (text, _) = self.string(n, &field)?;
                match text.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => Some(code),
                    _ => {
                        self.error(
                            n.span(),
                            &field,
                            format!("`{text}` is not an HTTP status"),
                            Some("write codes such as 403 or 409".into()),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    /// Reports `team` at `node` unless it is one of `teams`.
    pub(super) fn known_team(
        &mut self,
        teams: &Teams,
        team: &str,
        node: Option<&Node>,
        field: &str,
    ) {
        if teams.contains_key(team) {
            return;
        }
        let hint = did_you_mean(team, teams.keys().map(String::as_str)).map_or_else(
            || {
                format!(
                    "declared teams: {}",
                    teams.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
            |c| format!("did you mean `{c}`?"),
        );
        let location = node
            .map(|n| Location::of_span(n.span()))
            .unwrap_or_default();
        self.error_at(
            location,
            field,
            format!("unknown team `{team}`"),
            Some(hint),
        );
    }
}

/// What every destination of one team is checked with.
struct TeamContext<'a> {
    team: &'a str,
    /// The team's template files, which its destinations may replace.
    templates: &'a BTreeMap<String, TemplateFile>,
    /// The config's directory: template paths are relative to it.
    base: &'a Path,
    grafana_url: Option<&'a str>,
}
