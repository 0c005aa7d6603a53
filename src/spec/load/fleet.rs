//! A fleet from one spec: `clusters:` instead of `cluster:` gives one stack per cluster,
//! identical except where a cluster's `overrides` say otherwise, all routed to the one router
//! that runs in `router.cluster` (the first cluster unless named).
//!
//! The expansion works on the YAML tree, before the walk: each cluster's tree is the spec's with
//! `cluster:` set to its entry and its overrides merged in, every node keeping its place in the
//! file, so a problem of a cluster points at the line that causes it. Problems of the shared part
//! are found once per cluster and reported once.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

use crate::config_check::{Checker, values};
use crate::diagnostic::did_you_mean;

const CLUSTER_ENTRY_KEYS: &[&str] = &["name", "platform", "control_plane_metrics", "overrides"];
/// What a cluster may change: how its own stack is sized and placed, not who owns what (teams,
/// services and the router are the fleet's).
const OVERRIDE_KEYS: &[&str] = &[
    "namespace",
    "prometheus",
    "alertmanager",
    "grafana",
    "exporters",
    "images",
    "alerts",
];

/// One cluster of a fleet: its spec tree and how it reaches the router.
pub(in crate::spec) struct FleetMember {
    pub(in crate::spec) root: Node,
    /// Where this cluster's Alertmanagers send webhooks: `None` runs the router here.
    pub(in crate::spec) remote_router: Option<String>,
    /// Every cluster of the fleet (for the router that serves them all).
    pub(in crate::spec) fleet: Vec<String>,
}

impl Checker {
    /// The clusters of a spec: the spec itself when it has no `clusters:`.
    pub(in crate::spec) fn fleet(&mut self, root: &Node) -> Vec<FleetMember> {
        let Some(top) = root.as_mapping() else {
            return vec![single(root)];
        };
        let router_keys = router_fleet_keys(top);
        let Some(list_node) = top.get_node("clusters") else {
            for (key, span) in router_keys {
                self.error(
                    &span,
                    &format!("router.{key}"),
                    format!("`router.{key}` is for a fleet (`clusters:`)"),
                    Some("remove it: a single cluster runs its own router".into()),
                );
            }
            return vec![single(root)];
        };
        if let Some(cluster) = top.get_node("cluster") {
            self.error(
                cluster.span(),
                "cluster",
                "both `cluster:` and `clusters:` given".into(),
                Some("a fleet lists every cluster under `clusters:`; move this one there".into()),
            );
            return Vec::new();
        }
        let Some(entries) = list_node.as_sequence().filter(|s| !s.is_empty()) else {
            self.error(
                list_node.span(),
                "clusters",
                "`clusters` must be a list of clusters".into(),
                Some("write `- {name: eu-west-1, platform: eks}` per cluster".into()),
            );
            return Vec::new();
        };
        let mut names: Vec<(String, Span)> = Vec::new();
        let mut clusters: Vec<(&MarkedMappingNode, Option<&Node>)> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let field = format!("clusters[{index}]");
            let Some(obj) = self.object(entry, &field, CLUSTER_ENTRY_KEYS) else {
                continue;
            };
            let name = obj.get("name").and_then(|n| n.as_scalar());
            match name {
                Some(name) if names.iter().any(|(n, _)| n == name.as_str()) => {
                    self.error(
                        name.span(),
                        &format!("{field}.name"),
                        format!("a second cluster named `{}`", name.as_str()),
                        Some("every cluster of a fleet needs its own name: it labels every series and alert".into()),
                    );
                    continue;
                }
                Some(name) => names.push((name.as_str().to_string(), *name.span())),
                // The cluster's own walk reports the missing name.
                None => {}
            }
            let overrides = obj.get("overrides");
            if let Some(overrides) = overrides {
                self.object(overrides, &format!("{field}.overrides"), OVERRIDE_KEYS);
            }
            clusters.push((obj.map, overrides));
        }
        let fleet: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
        let hub = self.hub(top, &names);
        let router_url = self.router_url(top, fleet.len());
        clusters
            .into_iter()
            .map(|(entry, overrides)| {
                let name = entry
                    .get_scalar("name")
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                let mut tree = top.clone();
                tree.remove("clusters");
                let mut cluster = entry.clone();
                cluster.remove("overrides");
                tree.insert(
                    MarkedScalarNode::new(*entry.span(), "cluster"),
                    Node::from(cluster),
                );
                if let Some(Node::Mapping(overrides)) = overrides {
                    merge(&mut tree, overrides);
                }
                let remote_router = match &hub {
                    Some(hub) if *hub != name => Some(router_url.clone().unwrap_or_default()),
                    _ => None,
                };
                FleetMember {
                    root: Node::from(tree),
                    remote_router,
                    fleet: fleet.clone(),
                }
            })
            .collect()
    }

    /// The cluster the router runs in: `router.cluster`, or the first.
    fn hub(&mut self, top: &MarkedMappingNode, names: &[(String, Span)]) -> Option<String> {
        let router = top.get_node("router").and_then(Node::as_mapping);
        let Some(named) = router.and_then(|r| r.get_scalar("cluster")) else {
            return names.first().map(|(n, _)| n.clone());
        };
        if names.iter().any(|(n, _)| n == named.as_str()) {
            return Some(named.as_str().to_string());
        }
        let hint = match did_you_mean(named.as_str(), names.iter().map(|(n, _)| n.as_str())) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "name one of the clusters under `clusters:`".to_string(),
        };
        self.error(
            named.span(),
            "router.cluster",
            format!("no cluster `{}` in the fleet", named.as_str()),
            Some(hint),
        );
        None
    }

    /// The URL the other clusters' Alertmanagers reach the router at: `router.url`, or its
    /// ingress. Required for a fleet of more than one cluster.
    fn router_url(&mut self, top: &MarkedMappingNode, clusters: usize) -> Option<String> {
        let router = top.get_node("router").and_then(Node::as_mapping);
        if let Some(url) = router.and_then(|r| r.get_node("url")) {
            return self.checked_string(url, "router.url", "URL", values::check_http_url);
        }
        let ingress = router
            .and_then(|r| r.get_node("ingress"))
            .and_then(Node::as_mapping);
        if let Some(host) = ingress.and_then(|i| i.get_scalar("host")) {
            let scheme = if ingress.is_some_and(|i| i.get_node("tls_secret").is_some()) {
                "https"
            } else {
                "http"
            };
            return Some(format!("{scheme}://{}", host.as_str()));
        }
        if clusters > 1 {
            let span = router.map_or(*top.span(), |r| *r.span());
            self.error(
                &span,
                "router.url",
                "the other clusters of the fleet cannot reach the router".into(),
                Some("give `router.ingress` (its host then also takes the webhooks) or `router.url: https://...`, where every cluster's Alertmanager reaches the router".into()),
            );
        }
        None
    }
}

/// The router's fleet keys written in the spec, with where.
fn router_fleet_keys(top: &MarkedMappingNode) -> Vec<(&'static str, Span)> {
    let Some(router) = top.get_node("router").and_then(Node::as_mapping) else {
        return Vec::new();
    };
    ["cluster", "url"]
        .into_iter()
        .filter_map(|key| router.get_node(key).map(|n| (key, *n.span())))
        .collect()
}

fn single(root: &Node) -> FleetMember {
    FleetMember {
        root: root.clone(),
        remote_router: None,
        fleet: Vec::new(),
    }
}

/// Merges `over` into `base`: mappings key by key, anything else replaced whole (a list of
/// tolerations is the cluster's, not the fleet's plus the cluster's).
fn merge(base: &mut MarkedMappingNode, over: &MarkedMappingNode) {
    for (key, value) in over.iter() {
        match (base.get_mut(key.as_str()), value) {
            (Some(Node::Mapping(inner)), Node::Mapping(over_inner)) => merge(inner, over_inner),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}
