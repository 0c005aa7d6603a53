//! `escalation`: each team's escalation policy, the ordered steps an incident nobody
//! acknowledges goes through.
//!
//! ```yaml
//! escalation:
//!   payments:
//!     - {after: 0s, destinations: [payments/chat]}     # at once
//!     - {after: 10m, destinations: [payments/pager]}   # 10 minutes without acknowledgement
//!     - {after: 30m, destinations: [platform/pager]}   # another team's pager
//! ```
//!
//! A team with a policy is told through its steps only (routes do not apply to it): the first
//! step, at `0s`, gets the incident when it opens; each later step when it comes due while
//! nobody acknowledged the incident, and every notification after that. Each destination still
//! takes only its severities.

use std::collections::BTreeMap;

use super::teams::Teams;
use crate::config_check::{Checker, Obj, values};
use crate::diagnostic::did_you_mean;
use crate::router::alert::Millis;
use crate::router::routing::DestinationId;

const STEP_KEYS: &[&str] = &["after", "destinations"];

/// The policies as read: by team, each step's delay and destinations.
pub(super) type Policies = BTreeMap<String, Vec<(Millis, Vec<DestinationId>)>>;

impl Checker {
    pub(super) fn escalation_section(&mut self, top: &Obj, teams: &Teams) -> Policies {
        let mut policies = Policies::new();
        let Some(node) = top.get("escalation") else {
            return policies;
        };
        let keys: Vec<&str> = node
            .as_mapping()
            .map(|m| m.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        // Every key is a team's name: an unknown one is reported below, with a suggestion.
        let Some(by_team) = self.object(node, "escalation", &keys) else {
            return policies;
        };
        for (key, _) in by_team.map.iter() {
            let team = key.as_str();
            let field = by_team.path(team);
            if !teams.contains_key(team) {
                let hint = did_you_mean(team, teams.keys().map(String::as_str)).map_or_else(
                    || "name a team of `teams`".to_string(),
                    |c| format!("did you mean `{c}`?"),
                );
                self.error(key.span(), &field, format!("no team `{team}`"), Some(hint));
                continue;
            }
            let mut steps: Vec<(Millis, Vec<DestinationId>)> = Vec::new();
            let nodes = self.list(&by_team, team);
            if nodes.is_empty() {
                self.error(
                    key.span(),
                    &field,
                    format!("the escalation policy of `{team}` has no step"),
                    Some("start with `- {after: 0s, destinations: [team/chat]}`".into()),
                );
            }
            for (i, step_node) in nodes.into_iter().enumerate() {
                let step_field = format!("{field}[{i}]");
                let Some(step) = self.object(step_node, &step_field, STEP_KEYS) else {
                    continue;
                };
                let Some((text, location)) = self.required_string(&step, "after") else {
                    continue;
                };
                let Ok(after) = values::parse_duration_ms(&text) else {
                    self.error_at(
                        location,
                        &step.path("after"),
                        format!("`{text}` is not a duration"),
                        Some("write 0s, 10m, 1h30m".into()),
                    );
                    continue;
                };
                let after = after as Millis;
                if i == 0 && after != 0 {
                    self.error_at(
                        location,
                        &step.path("after"),
                        format!("the first step comes after {text}: nobody is told when an incident opens"),
                        Some("make the first step `after: 0s`".into()),
                    );
                }
                if let Some((before, _)) = steps.last()
                    && after <= *before
                {
                    self.error_at(
                        location,
                        &step.path("after"),
                        format!("step {i} comes no later than the step before it"),
                        Some(
                            "list the steps in the order they come, each later than the last"
                                .into(),
                        ),
                    );
                }
                let mut destinations = Vec::new();
                let dnodes = self.list(&step, "destinations");
                if dnodes.is_empty() {
                    self.error(
                        step.span(),
                        &step.path("destinations"),
                        format!("{step_field} tells nobody"),
                        Some("name at least one `team/destination`".into()),
                    );
                }
                for (j, dnode) in dnodes.into_iter().enumerate() {
                    let dfield = format!("{}[{j}]", step.path("destinations"));
                    if let Some(id) = self.route_destination(dnode, &dfield, teams) {
                        destinations.push(id);
                    }
                }
                steps.push((after, destinations));
            }
            policies.insert(team.to_string(), steps);
        }
        policies
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::router::config::parse;
    use crate::router::routing::DestinationId;

    const BASE: &str = "teams:\n  payments:\n    destinations: [{name: chat, kind: log}, {name: pager, kind: log}]\n  platform:\n    destinations: [{name: pager, kind: log}]\nownership: {default_team: payments}\n";

    #[test]
    fn a_policy_is_read_in_order_and_every_mistake_in_it_is_pointed_at() {
        let good = format!(
            "{BASE}escalation:\n  payments:\n    - {{after: 0s, destinations: [payments/chat]}}\n    - {{after: 10m, destinations: [payments/pager]}}\n    - {{after: 30m, destinations: [platform/pager]}}\n"
        );
        let config = parse("r.yaml", &good, Path::new(".")).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(config.dedup.escalation["payments"], [0, 600_000, 1_800_000]);
        let steps = &config.routing.escalation["payments"];
        assert_eq!(
            steps[2].destinations,
            [DestinationId::new("platform", "pager")]
        );
        let bad = format!(
            "{BASE}escalation:\n  payments:\n    - {{after: 5m, destinations: [payments/chat]}}\n    - {{after: 5m, destinations: [payments/pagr]}}\n    - {{after: soon, destinations: []}}\n  paymnts: []\n"
        );
        let problems = parse("r.yaml", &bad, Path::new(".")).expect_err("invalid");
        let messages: Vec<(usize, &str)> = problems
            .iter()
            .map(|d| (d.location.line, d.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (
                    9,
                    "the first step comes after 5m: nobody is told when an incident opens"
                ),
                (10, "step 1 comes no later than the step before it"),
                (10, "unknown destination `payments/pagr`"),
                (11, "`soon` is not a duration"),
                (12, "no team `paymnts`"),
            ]
        );
        assert_eq!(
            problems[2].hint.as_deref(),
            Some("did you mean `payments/pager`?")
        );
    }
}
