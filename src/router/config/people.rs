//! `people`: how persons sign in to the incidents page and API, and what each may do.
//!
//! ```yaml
//! people:
//!   users_file: users          # name:bcrypt-hash lines (htpasswd -B), relative to this file
//!   proxy:                      # an authenticating proxy (oauth2-proxy) in front of the router
//!     trusted: [10.0.0.0/8]     # the addresses it connects from
//!     user_header: X-Forwarded-User
//!     groups_header: X-Forwarded-Groups
//!   viewers: ["group:sre"]      # who may read incidents (default: everybody who signs in)
//!   responders:                 # who may act on each team's incidents
//!     payments: [dana, "group:payments-oncall"]
//! ```
//!
//! The users file is read when the config is checked: a line that is not `name:hash` is reported
//! at that file's line.

use std::collections::BTreeMap;
use std::path::Path;

use super::teams::Teams;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::{Diagnostic, Location, did_you_mean};
use crate::router::people::{Network, People, Principal, ProxyConfig, is_name, parse_users};

pub(super) const PEOPLE_KEYS: &[&str] = &["users_file", "proxy", "viewers", "responders"];
const PROXY_KEYS: &[&str] = &["trusted", "user_header", "groups_header"];

impl Checker {
    pub(super) fn people_section(&mut self, top: &Obj, base: &Path, teams: &Teams) -> People {
        let Some(people) = self.sub_object(top, "people", PEOPLE_KEYS) else {
            return People::default();
        };
        let users = self.users_file(&people, base);
        let proxy = self.sub_object(&people, "proxy", PROXY_KEYS).map(|proxy| {
            let mut trusted = Vec::new();
            let listed = self.list(&proxy, "trusted");
            let none_listed = listed.is_empty();
            for node in listed {
                let field = proxy.path("trusted");
                let Some((text, _)) = self.string(node, &field) else {
                    continue;
                };
                match Network::parse(&text) {
                    Some(network) => trusted.push(network),
                    None => self.error(
                        node.span(),
                        &field,
                        format!("`{text}` is not an address or a network"),
                        Some("write `10.0.0.0/8`, `192.0.2.7` or `::1`".into()),
                    ),
                }
            }
            if none_listed {
                self.error(
                    proxy.span(),
                    &proxy.path("trusted"),
                    "the proxy trusts no address: nobody could sign in through it".into(),
                    Some("list the addresses the proxy connects from (its pod network)".into()),
                );
            }
            let header = |checker: &mut Checker, key: &str, default: &str| {
                checker
                    .optional_text(&proxy, key)
                    .unwrap_or_else(|| default.to_string())
                    .to_ascii_lowercase()
            };
            ProxyConfig {
                trusted,
                user_header: header(self, "user_header", "x-forwarded-user"),
                groups_header: header(self, "groups_header", "x-forwarded-groups"),
            }
        });
        let viewers = self
            .principals(&people, "viewers")
            .iter()
            .map(|p| Principal::parse(p))
            .collect();
        let mut responders = BTreeMap::new();
        let team_names: Vec<&str> = teams.keys().map(String::as_str).collect();
        let by_team = people.get("responders").and_then(|node| {
            let keys: Vec<&str> = node
                .as_mapping()
                .map(|m| m.keys().map(|k| k.as_str()).collect())
                .unwrap_or_default();
            // Every key is a team's name: an unknown one is reported below, with a suggestion.
            self.object(node, "people.responders", &keys)
        });
        if let Some(by_team) = by_team {
            for (key, _) in by_team.map.iter() {
                let team = key.as_str();
                if !teams.contains_key(team) {
                    let hint = did_you_mean(team, team_names.iter().copied()).map_or_else(
                        || "name a team of `teams`".to_string(),
                        |c| format!("did you mean `{c}`?"),
                    );
                    self.error(
                        key.span(),
                        &by_team.path(team),
                        format!("no team `{team}`"),
                        Some(hint),
                    );
                    continue;
                }
                let principals = self.principals(&by_team, team);
                responders.insert(
                    team.to_string(),
                    principals.iter().map(|p| Principal::parse(p)).collect(),
                );
            }
        }
        if users.is_empty() && proxy.is_none() {
            self.error(
                people.span(),
                "people",
                "`people` gives nobody a way to sign in".into(),
                Some("add `users_file` or `proxy`".into()),
            );
        }
        People::new(users, proxy, viewers, responders)
    }

    /// A list of people (`dana`), groups (`group:sre`) or `*` (the spec's and router.yaml's).
    pub(crate) fn principals(&mut self, obj: &Obj, key: &str) -> Vec<String> {
        let field = obj.path(key);
        let mut principals = Vec::new();
        for node in self.list(obj, key) {
            let Some((text, _)) = self.string(node, &field) else {
                continue;
            };
            if is_name(text.strip_prefix("group:").unwrap_or(&text)) {
                principals.push(text);
            } else {
                self.error(
                    node.span(),
                    &field,
                    format!("`{text}` names nobody"),
                    Some("write a user name, `group:NAME` or `*`".into()),
                );
            }
        }
        principals
    }

    fn users_file(&mut self, people: &Obj, base: &Path) -> BTreeMap<String, String> {
        let Some(node) = people.get("users_file") else {
            return BTreeMap::new();
        };
        let Some((name, location)) = self.string(node, "people.users_file") else {
            return BTreeMap::new();
        };
        let path = base.join(&name);
        let text = match crate::files::read_text(&path) {
            Ok(text) => text,
            Err(e) => {
                self.error_at(
                    location,
                    "people.users_file",
                    format!("cannot read the users file {}: {e}", path.display()),
                    Some(
                        "give a file of `name:hash` lines (`htpasswd -nB NAME` writes one)".into(),
                    ),
                );
                return BTreeMap::new();
            }
        };
        match parse_users(&text) {
            Ok(users) => users,
            Err((line, message)) => {
                self.diagnostics.push(Diagnostic {
                    file: path.display().to_string(),
                    location: Location { line, col: 1 },
                    field: "people.users_file".into(),
                    message,
                    hint: Some(
                        "each line is `name:hash`, the hash bcrypt's (`htpasswd -nB NAME`)".into(),
                    ),
                    redact: true,
                    width: None,
                });
                BTreeMap::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::router::config::parse;

    const BASE: &str =
        "teams: {payments: {destinations: [{kind: log}]}}\nownership: {default_team: payments}\n";

    #[test]
    fn people_sign_in_and_act_as_configured_and_every_mistake_is_pointed_at() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        std::fs::write(
            dir.path().join("users"),
            format!("# on call\ndana:{hash}\n"),
        )
        .expect("users file");
        let good = format!(
            "{BASE}people:\n  users_file: users\n  proxy: {{trusted: [10.0.0.0/8, \"::1\"], user_header: X-Auth-Request-User}}\n  viewers: [\"group:sre\"]\n  responders:\n    payments: [dana, \"group:payments\"]\n"
        );
        let config = parse("r.yaml", &good, dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
        let people = &config.people;
        assert!(people.enabled());
        assert_eq!(people.users.keys().collect::<Vec<_>>(), ["dana"]);
        let proxy = people.proxy.as_ref().expect("proxy");
        assert_eq!(proxy.user_header, "x-auth-request-user");
        assert_eq!(proxy.groups_header, "x-forwarded-groups");
        assert_eq!(proxy.trusted.len(), 2);
        assert_eq!(people.responders["payments"].len(), 2);

        std::fs::write(
            dir.path().join("broken"),
            format!("dana:{hash}\nerin:hunter2\n"),
        )
        .expect("users file");
        let bad = format!(
            "{BASE}people:\n  users_file: broken\n  proxy: {{trusted: [ten]}}\n  viewers: [\"group:\"]\n  responders:\n    paymnets: [dana]\n"
        );
        let problems = parse("r.yaml", &bad, dir.path()).expect_err("invalid");
        let found: Vec<(String, usize, &str)> = problems
            .iter()
            .map(|d| {
                let file = Path::new(&d.file)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (file, d.location.line, d.message.as_str())
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "broken".to_string(),
                    2,
                    "the hash of `erin` is not bcrypt (`$2y$...`, 60 characters)"
                ),
                (
                    "r.yaml".to_string(),
                    5,
                    "`ten` is not an address or a network"
                ),
                ("r.yaml".to_string(), 6, "`group:` names nobody"),
                ("r.yaml".to_string(), 8, "no team `paymnets`"),
            ]
        );
        assert!(
            problems
                .iter()
                .find(|d| d.file.ends_with("broken"))
                .is_some_and(|d| d.redact),
            "a users file's line is not echoed"
        );
        assert_eq!(
            problems.last().and_then(|d| d.hint.as_deref()),
            Some("did you mean `payments`?")
        );
        let nobody = format!("{BASE}people:\n  viewers: [\"*\"]\n");
        let problems = parse("r.yaml", &nobody, dir.path()).expect_err("invalid");
        assert_eq!(
            problems[0].message,
            "`people` gives nobody a way to sign in"
        );
    }
}
