//! Who gets what: `dedup` (how alerts make incidents), `ownership` (which team owns an incident),
//! `routes` (which destinations it goes to) and `heartbeat` (the always-firing alert whose
//! silence means the pipeline is broken).

use std::collections::BTreeMap;

use super::teams::Teams;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::did_you_mean;
use crate::labels::PER_INSTANCE_LABELS;
use crate::router::dedup::HeartbeatSettings;
use crate::router::matcher::Matcher;
use crate::router::ownership::{IncidentKey, Ownership, OwnershipRule};
use crate::router::routing::{DestinationId, Route};

pub(super) const DEDUP_KEYS: &[&str] = &[
    "key",
    "service_labels",
    "instance_labels",
    "resolve_hold",
    "stale_after",
    "reminder",
];
const HEARTBEAT_KEYS: &[&str] = &["alertname", "timeout", "team", "clusters"];
const OWNERSHIP_KEYS: &[&str] = &["services", "namespaces", "rules", "default_team"];
const RULE_KEYS: &[&str] = &["matchers", "team"];
const ROUTE_KEYS: &[&str] = &["matchers", "destinations", "continue"];

impl Checker {
    /// `dedup` and `ownership` together: the incident key and the service labels are `dedup`'s,
    /// the map from services to teams is `ownership`'s.
    pub(super) fn ownership_section(
        &mut self,
        top: &Obj,
        dedup: Option<&Obj>,
        teams: &Teams,
    ) -> Ownership {
        let d = dedup;
        let mut ownership = Ownership {
            key: self.incident_key(d),
            service_labels: self.string_list(d, "service_labels", &["service", "job"]),
            instance_labels: self
                .string_list(d, "instance_labels", PER_INSTANCE_LABELS)
                .into(),
            known_teams: teams.keys().cloned().collect(),
            ..Ownership::default()
        };
        let Some(obj) = self.sub_object(top, "ownership", OWNERSHIP_KEYS) else {
            self.no_default_team(top.span());
            return ownership;
        };
        ownership.services = self.team_map(
            &obj,
            "services",
            "`namespace/service` (or `service`)",
            teams,
        );
        ownership.namespaces = self.team_map(&obj, "namespaces", "a namespace", teams);
        for (i, node) in self.list(&obj, "rules").into_iter().enumerate() {
            let field = format!("ownership.rules[{i}]");
            let Some(rule) = self.object(node, &field, RULE_KEYS) else {
                continue;
            };
            let matchers = self.matchers(&rule);
            if let Some((team, _)) = self.required_string(&rule, "team") {
                self.known_team(teams, &team, rule.get("team"), &rule.path("team"));
                ownership.rules.push(OwnershipRule { matchers, team });
            }
        }
        if let Some(node) = obj.get("default_team")
            && let Some((team, _)) = self.string(node, "ownership.default_team")
        {
            self.known_team(teams, &team, Some(node), "ownership.default_team");
            ownership.default_team = Some(team);
        }
        if obj.get("default_team").is_none() {
            self.no_default_team(obj.span());
        }
        ownership
    }

    /// `dedup.key`: `service` (the default: one incident per failing service) or a list of
    /// labels whose values make the key.
    fn incident_key(&mut self, dedup: Option<&Obj>) -> IncidentKey {
        let Some(node) = dedup.and_then(|d| d.get("key")) else {
            return IncidentKey::PerService;
        };
        if let Some(scalar) = node.as_scalar() {
            if scalar.as_str() == "service" {
                return IncidentKey::PerService;
            }
            self.error(
                node.span(),
                "dedup.key",
                format!("unknown incident key `{}`", scalar.as_str()),
                Some("`service` (one incident per failing service) or a list of labels, e.g. [team, service, alertname]".into()),
            );
            return IncidentKey::PerService;
        }
        IncidentKey::Labels(self.string_list(dedup, "key", &[]))
    }

    /// Without a default team, an alert of no known team (no service, no owner rule) would reach
    /// no destination.
    fn no_default_team(&mut self, span: &marked_yaml::Span) {
        self.error(
            span,
            "ownership.default_team",
            "no `ownership.default_team`: an alert of no known team would reach no destination"
                .into(),
            Some("set `ownership: {default_team: TEAM}`, the team that owns the cluster".into()),
        );
    }

    /// A mapping under `ownership.<key>` from names to declared teams; `what` says what it maps,
    /// for the error when it is not a mapping.
    fn team_map(
        &mut self,
        obj: &Obj,
        key: &str,
        what: &str,
        teams: &Teams,
    ) -> BTreeMap<String, String> {
        let mut owners = BTreeMap::new();
        let Some(node) = obj.get(key) else {
            return owners;
        };
        let Some(map) = node.as_mapping() else {
            self.error(
                node.span(),
                &format!("ownership.{key}"),
                format!("`{key}` maps {what} to a team"),
                None,
            );
            return owners;
        };
        for (name, team) in map.iter() {
            let field = format!("ownership.{key}.{}", name.as_str());
            if let Some((team, _)) = self.string(team, &field) {
                self.known_team(teams, &team, map.get_node(name.as_str()), &field);
                owners.insert(name.as_str().to_string(), team);
            }
        }
        owners
    }

    /// `heartbeat`, if set: its alert name, how long it may be silent, and the team told.
    pub(super) fn heartbeat_section(
        &mut self,
        top: &Obj,
        teams: &Teams,
    ) -> Option<HeartbeatSettings> {
        let h = self.sub_object(top, "heartbeat", HEARTBEAT_KEYS)?;
        let alertname = h
            .get("alertname")
            .and_then(|n| self.string(n, "heartbeat.alertname"))
            .map_or_else(|| "Watchdog".to_string(), |(t, _)| t);
        let timeout = self.duration(Some(&h), "timeout", "5m");
        let (team, _) = self.required_string(&h, "team")?;
        self.known_team(teams, &team, h.get("team"), "heartbeat.team");
        let mut clusters: Vec<String> = Vec::new();
        for (i, node) in self.list(&h, "clusters").into_iter().enumerate() {
            let field = format!("heartbeat.clusters[{i}]");
            if let Some((cluster, _)) = self.string(node, &field) {
                if clusters.contains(&cluster) {
                    self.error(
                        node.span(),
                        &field,
                        format!("cluster `{cluster}` is listed twice"),
                        Some("list each cluster of the fleet once".into()),
                    );
                } else {
                    clusters.push(cluster);
                }
            }
        }
        Some(HeartbeatSettings {
            alertname,
            timeout,
            team,
            clusters,
        })
    }

    pub(super) fn routes_section(&mut self, top: &Obj, teams: &Teams) -> Vec<Route> {
        let mut routes = Vec::new();
        for (i, node) in self.list(top, "routes").into_iter().enumerate() {
            let field = format!("routes[{i}]");
            let Some(route) = self.object(node, &field, ROUTE_KEYS) else {
                continue;
            };
            let matchers = self.matchers(&route);
            let nodes = self.list(&route, "destinations");
            if nodes.is_empty() {
                self.error(
                    route.span(),
                    &route.path("destinations"),
                    format!("{field} sends the alerts it matches to no destination"),
                    Some(
                        "name at least one `team/destination`; an alert must reach somebody".into(),
                    ),
                );
            }
            let destinations = nodes
                .into_iter()
                .enumerate()
                .filter_map(|(j, dnode)| {
                    self.route_destination(dnode, &format!("{field}.destinations[{j}]"), teams)
                })
                .collect();
            let continue_matching = self.bool(Some(&route), "continue", false);
            routes.push(Route {
                matchers,
                destinations,
                continue_matching,
            });
        }
        routes
    }

    /// One `team/name` of a route; it must name a declared destination.
    pub(super) fn route_destination(
        &mut self,
        node: &marked_yaml::Node,
        field: &str,
        teams: &Teams,
    ) -> Option<DestinationId> {
        let (text, _) = self.string(node, field)?;
        let Some(id) = DestinationId::parse(&text) else {
            self.error(
                node.span(),
                field,
                format!("destination `{text}` is not `team/name`"),
                Some("name a destination as team/destination, e.g. payments/chat".into()),
            );
            return None;
        };
        let exists = teams
            .get(&id.team)
            .is_some_and(|ds| ds.iter().any(|d| d.id == id));
        if exists {
            return Some(id);
        }
        let all: Vec<String> = teams.values().flatten().map(|d| d.id.to_string()).collect();
        let hint = did_you_mean(&text, all.iter().map(String::as_str)).map_or_else(
            || format!("declared destinations: {}", all.join(", ")),
            |c| format!("did you mean `{c}`?"),
        );
        self.error(
            node.span(),
            field,
            format!("unknown destination `{text}`"),
            Some(hint),
        );
        None
    }

    /// `matchers: [...]` in Alertmanager's syntax; one that does not parse is reported.
    pub(crate) fn matchers(&mut self, obj: &Obj) -> Vec<Matcher> {
        let mut matchers = Vec::new();
        for (i, node) in self.list(obj, "matchers").into_iter().enumerate() {
            let field = format!("{}[{i}]", obj.path("matchers"));
            let Some((text, _)) = self.string(node, &field) else {
                continue;
            };
            match Matcher::parse(&text) {
                Ok(m) => matchers.push(m),
                Err(hint) => self.error(
                    node.span(),
                    &field,
                    format!("invalid matcher `{text}`"),
                    Some(hint),
                ),
            }
        }
        matchers
    }
}
