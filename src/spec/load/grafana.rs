//! Reading `grafana.oauth` and `grafana.ini`: URLs absolute, the client secret only by Secret
//! reference, sections and keys as Grafana names them, and any setting that holds a secret
//! refused as a literal.

use std::collections::BTreeMap;

use crate::config_check::values;
use crate::config_check::{Checker, Obj};
use crate::spec::grafana::{Ini, IniValue, OAuth};

const OAUTH_KEYS: &[&str] = &[
    "name",
    "client_id",
    "client_secret",
    "auth_url",
    "token_url",
    "api_url",
    "scopes",
    "role_attribute_path",
    "allowed_groups",
    "allow_sign_up",
    "disable_login_form",
];
/// Words in a `grafana.ini` key that say its value is a secret.
const SECRET_WORDS: &[&str] = &["password", "secret", "token", "api_key", "private_key"];

impl Checker {
    /// `grafana.oauth`; `has_url`: Grafana knows its own address (an ingress), which the
    /// provider redirects back to.
    pub(in crate::spec) fn grafana_oauth(&mut self, obj: &Obj, has_url: bool) -> Option<OAuth> {
        let oauth = self.sub_object(obj, "oauth", OAUTH_KEYS)?;
        if !has_url {
            let key = obj
                .map
                .iter()
                .find(|(key, _)| key.as_str() == "oauth")
                .map_or(*oauth.span(), |(key, _)| *key.span());
            self.error(
                &key,
                &obj.path("oauth"),
                "OAuth sign-in needs Grafana's address".into(),
                Some("add `grafana.ingress: {host: ...}`: the provider redirects to https://HOST/login/generic_oauth, which is also the redirect URI to register".into()),
            );
        }
        let url = |checker: &mut Checker, key: &str, hint: &str| {
            checker.required(&oauth, key, hint).and_then(|n| {
                checker.checked_string(n, &oauth.path(key), "URL", values::check_http_url)
            })
        };
        let client_id = self.required_string(&oauth, "client_id").map(|(id, _)| id);
        let client_secret = self
            .required(
                &oauth,
                "client_secret",
                "add `client_secret: {secret: NAME, key: KEY}`",
            )
            .and_then(|n| self.secret_ref(n, &oauth.path("client_secret")));
        let auth_url = url(
            self,
            "auth_url",
            "add `auth_url:`, the provider's authorization endpoint (Keycloak: .../protocol/openid-connect/auth)",
        );
        let token_url = url(
            self,
            "token_url",
            "add `token_url:`, the provider's token endpoint (Keycloak: .../protocol/openid-connect/token)",
        );
        let api_url = oauth.get("api_url").and_then(|n| {
            self.checked_string(n, &oauth.path("api_url"), "URL", values::check_http_url)
        });
        let scopes = self.names_or(&oauth, "scopes", &["openid", "email", "profile"]);
        let allowed_groups = self.names_or(&oauth, "allowed_groups", &[]);
        let role_attribute_path = self.optional_text(&oauth, "role_attribute_path");
        Some(OAuth {
            name: self
                .optional_text(&oauth, "name")
                .unwrap_or_else(|| "SSO".to_string()),
            client_id: client_id?,
            client_secret: client_secret?,
            auth_url: auth_url?,
            token_url: token_url?,
            api_url,
            scopes,
            role_attribute_path,
            allowed_groups,
            allow_sign_up: self.bool(Some(&oauth), "allow_sign_up", true),
            disable_login_form: self.bool(Some(&oauth), "disable_login_form", false),
        })
    }

    /// A list of strings under `key`, or `default` when absent.
    fn names_or(&mut self, obj: &Obj, key: &str, default: &[&str]) -> Vec<String> {
        if obj.get(key).is_none() {
            return default.iter().map(|s| s.to_string()).collect();
        }
        let field = obj.path(key);
        self.list(obj, key)
            .into_iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let (text, _) = self.string(node, &format!("{field}[{i}]"))?;
                if text.trim().is_empty() || text.contains(char::is_whitespace) {
                    self.error(
                        node.span(),
                        &format!("{field}[{i}]"),
                        format!("`{text}` is not one word"),
                        Some("write one name per entry, without spaces".into()),
                    );
                    return None;
                }
                Some(text)
            })
            .collect()
    }

    /// `grafana.ini`: `SECTION: {KEY: VALUE}`; a value holding a secret is `{secret, key}`.
    pub(in crate::spec) fn grafana_ini(&mut self, obj: &Obj) -> Ini {
        let mut ini: Ini = BTreeMap::new();
        let Some(node) = obj.get("ini") else {
            return ini;
        };
        let field = obj.path("ini");
        let Some(sections) = node.as_mapping() else {
            self.error(
                node.span(),
                &field,
                "`grafana.ini` is a mapping of sections".into(),
                Some("write `ini: {auth.anonymous: {enabled: true}}`, as the sections of grafana.ini".into()),
            );
            return ini;
        };
        for (section, settings) in sections.iter() {
            let section_field = format!("{field}.{}", section.as_str());
            if !is_ini_name(section.as_str()) {
                self.error(
                    section.span(),
                    &section_field,
                    format!("`{}` is no grafana.ini section", section.as_str()),
                    Some("a section is written as in grafana.ini without brackets: `server`, `auth.generic_oauth`".into()),
                );
                continue;
            }
            let Some(settings) = settings.as_mapping() else {
                self.error(
                    settings.span(),
                    &section_field,
                    format!("section `{}` must be a mapping", section.as_str()),
                    Some("write `KEY: VALUE` per setting".into()),
                );
                continue;
            };
            let entries = ini.entry(section.as_str().to_string()).or_default();
            for (key, value) in settings.iter() {
                let key_field = format!("{section_field}.{}", key.as_str());
                if !is_ini_name(key.as_str()) {
                    self.error(
                        key.span(),
                        &key_field,
                        format!("`{}` is no grafana.ini key", key.as_str()),
                        Some("a key is lowercase letters, digits and '_'".into()),
                    );
                    continue;
                }
                let secret = SECRET_WORDS.iter().any(|w| key.as_str().contains(w));
                let parsed = if secret || value.as_mapping().is_some() {
                    self.secret_ref(value, &key_field).map(IniValue::Secret)
                } else {
                    self.string(value, &key_field)
                        .map(|(text, _)| IniValue::Text(text))
                };
                if let Some(parsed) = parsed {
                    entries.insert(key.as_str().to_string(), parsed);
                }
            }
        }
        ini
    }
}

/// A grafana.ini section or key name: lowercase letters, digits, `_`, `.` and `-`.
fn is_ini_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}
