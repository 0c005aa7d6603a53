//! The spec's checks for owning Kubernetes signals: every pod belongs to at most one service, and
//! every pod label the ownership rules read reaches Prometheus under a name of its own.
//!
//! kube-state-metrics exports the selector keys and the team label on `kube_pod_labels`, and the
//! rendered ownership rules map a pod to the service whose selector it matches. Two selectors in
//! one namespace that agree on every label they share (so the pods of one are pods of the other),
//! or two label keys kube-state-metrics would write as one Prometheus label, would make that map
//! ambiguous; both are spec errors here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::selectors::{KeySetGroups, MAX_EXCLUSIONS, MAX_KEY_SETS};

use marked_yaml::Span;

use super::load::Placed;
use crate::config_check::{Checker, Obj, join, values};
use crate::labels::{DEFAULT_SERVICE_POD_LABEL, DEFAULT_TEAM_POD_LABEL, kube_state_metrics_label};

/// The keys of `ownership:` in the spec.
const OWNERSHIP_KEYS: &[&str] = &["team_label", "service_label"];

/// A service's selector as written, with where each part was written.
struct WrittenSelector {
    /// The service's entry (`services[2]`), in the file it is written in.
    field: String,
    name: String,
    namespace: String,
    span: Span,
    labels: Vec<(String, String, Span)>,
}

impl Checker {
    /// `ownership:` — the pod label by which a team owns pods (default `stackgen.io/team`), and
    /// the one naming the service of a pod that asks to be scraped (default
    /// `app.kubernetes.io/name`).
    pub(super) fn ownership_labels(&mut self, top: &Obj) -> (String, String) {
        let obj = self.sub_object(top, "ownership", OWNERSHIP_KEYS);
        let team_label = self.checked_or_default(
            obj.as_ref(),
            "team_label",
            "pod label key",
            values::check_label_key,
            DEFAULT_TEAM_POD_LABEL,
        );
        let service_label = self.checked_or_default(
            obj.as_ref(),
            "service_label",
            "pod label key",
            values::check_label_key,
            DEFAULT_SERVICE_POD_LABEL,
        );
        (team_label, service_label)
    }

    /// Every pod belongs to one service: two selectors in one namespace that select by a common
    /// label must set one of them to different values. And no two label keys the ownership rules read may reach Prometheus as
    /// the same `label_*` name.
    pub(super) fn selectors_own_pods_once(
        &mut self,
        service_nodes: &[Placed],
        stack_namespace: &str,
        team_label: &str,
    ) {
        let written: Vec<WrittenSelector> = service_nodes
            .iter()
            .filter_map(|placed| written_selector(placed, stack_namespace))
            .collect();
        // Two selectors can only share pods if they share a label with one value: the earlier
        // selectors are indexed by namespace, key and value, so each one is compared only with
        // those it has such a label in common with (a spec of many services stays linear).
        let mut by_label: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
        for (later_position, later) in written.iter().enumerate() {
            let mut candidates: Vec<usize> = later
                .labels
                .iter()
                .filter_map(|(key, value, _)| {
                    by_label.get(&(later.namespace.as_str(), key.as_str(), value.as_str()))
                })
                .flatten()
                .copied()
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            for (key, value, _) in &later.labels {
                by_label
                    .entry((later.namespace.as_str(), key.as_str(), value.as_str()))
                    .or_default()
                    .push(later_position);
            }
            let Some(earlier) = candidates.into_iter().map(|i| &written[i]).find(|earlier| {
                // The same name twice is already a duplicate service.
                earlier.name != later.name && may_share_pods(earlier, later)
            }) else {
                continue;
            };
            self.error(
                &later.span,
                &join(&later.field, "selector"),
                format!(
                    "services `{}` and `{}` in namespace `{}` can select the same pods ({} and {})",
                    earlier.name,
                    later.name,
                    later.namespace,
                    describe(earlier),
                    describe(later)
                ),
                Some(format!(
                    "a pod belongs to one service: give both selectors one label with different values (e.g. `{key}: {}` and `{key}: {}`)",
                    earlier.name,
                    later.name,
                    key = earlier.labels.first().map_or("app", |(key, _, _)| key.as_str())
                )),
            );
        }
        self.label_names_distinct(&written, team_label);
        self.exclusions_stay_few(&written);
    }

    /// Scrape jobs leave the pods of earlier services selected by other keys to them
    /// (`selectors`): bound how many sets of keys a namespace uses and how many exclusions all
    /// jobs make, so a spec's size cannot square in the rendered configuration.
    fn exclusions_stay_few(&mut self, written: &[WrittenSelector]) {
        let mut groups = KeySetGroups::default();
        let mut exclusions = 0;
        for (position, selector) in written.iter().enumerate() {
            let keys: BTreeSet<&str> = selector.labels.iter().map(|(k, _, _)| k.as_str()).collect();
            let field = join(&selector.field, "selector");
            let hint = "select a namespace's services by one label key (e.g. `app.kubernetes.io/name`): each scrape job must leave the pods of earlier services selected by other keys to them";
            exclusions += groups.count_disjoint_before(&selector.namespace, &keys, position);
            if exclusions > MAX_EXCLUSIONS {
                self.error(
                    &selector.span,
                    &field,
                    format!(
                        "more than {MAX_EXCLUSIONS} times a service's scrape job must step aside for an earlier service that selects by other label keys"
                    ),
                    Some(hint.into()),
                );
                return;
            }
            let key_sets = groups.add(&selector.namespace, keys, position);
            if key_sets > MAX_KEY_SETS {
                self.error(
                    &selector.span,
                    &field,
                    format!(
                        "the services of namespace `{}` select by more than {MAX_KEY_SETS} different sets of label keys",
                        selector.namespace
                    ),
                    Some(hint.into()),
                );
                return;
            }
        }
    }

    fn label_names_distinct(&mut self, written: &[WrittenSelector], team_label: &str) {
        let mut by_name: BTreeMap<String, String> =
            BTreeMap::from([(kube_state_metrics_label(team_label), team_label.to_string())]);
        for selector in written {
            for (key, _, span) in &selector.labels {
                let name = kube_state_metrics_label(key);
                match by_name.get(&name) {
                    Some(other) if other != key => {
                        let what = if other == team_label {
                            format!("the team label `{other}`")
                        } else {
                            format!("`{other}`")
                        };
                        self.error(
                            span,
                            &join(&join(&selector.field, "selector"), key),
                            format!(
                                "label key `{key}` and {what} are one label to kube-state-metrics (`{name}`)"
                            ),
                            Some(
                                "kube-state-metrics writes both keys as the same Prometheus label, so pods could not be told apart; select by one of them".into(),
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        by_name.insert(name, key.clone());
                    }
                }
            }
        }
    }
}

fn written_selector(placed: &Placed, stack_namespace: &str) -> Option<WrittenSelector> {
    let map = placed.node.as_mapping()?;
    let name = map.get_scalar("name")?.as_str().to_string();
    let namespace = map
        .get_scalar("namespace")
        .map_or(stack_namespace, |n| n.as_str())
        .to_string();
    let (span, labels) = match map.get_node("selector") {
        Some(selector) => {
            let labels = selector
                .as_mapping()?
                .iter()
                .filter_map(|(key, value)| {
                    let value = value.as_scalar()?;
                    Some((
                        key.as_str().to_string(),
                        value.as_str().to_string(),
                        *key.span(),
                    ))
                })
                .collect();
            (*selector.span(), labels)
        }
        // The default selector: `app.kubernetes.io/name: <service name>`.
        None => (
            *map.get_scalar("name")?.span(),
            vec![(
                "app.kubernetes.io/name".to_string(),
                name.clone(),
                *map.get_scalar("name")?.span(),
            )],
        ),
    };
    Some(WrittenSelector {
        field: placed.field.clone(),
        name,
        namespace,
        span,
        labels,
    })
}

/// Whether the two selectors select by some label in common and agree on every one of them:
/// then every pod matching the narrower one matches both (`{app: checkout}` and `{app: checkout,
/// tier: web}`). Selectors by different labels altogether (`{app: a}`, `{component: b}`) are
/// taken as disjoint; should a pod match both, the service declared first owns it.
fn may_share_pods(a: &WrittenSelector, b: &WrittenSelector) -> bool {
    let shared: Vec<(&String, &String)> = a
        .labels
        .iter()
        .filter_map(|(key, value, _)| {
            b.labels
                .iter()
                .find(|(other_key, _, _)| other_key == key)
                .map(|(_, other_value, _)| (value, other_value))
        })
        .collect();
    !shared.is_empty()
        && shared
            .iter()
            .all(|(value, other_value)| value == other_value)
}

fn describe(selector: &WrittenSelector) -> String {
    let parts: Vec<String> = selector
        .labels
        .iter()
        .map(|(key, value, _)| format!("{key}: {value}"))
        .collect();
    format!("{{{}}}", parts.join(", "))
}
