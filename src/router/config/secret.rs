//! Secrets in router.yaml, and the `auth` section that guards the webhook endpoints.
//!
//! A secret (the inbound token, destination URLs and keys, passwords) comes from a file or an
//! environment variable (`<field>_file`, `<field>_env`); an inline value is accepted but never
//! required. It is read when the router starts ([`SecretSource::read`]), not when the file is
//! checked, and its `Debug` never shows an inline value.

use std::fmt;
use std::path::PathBuf;

use marked_yaml::Node;

use crate::config_check::{Checker, Obj};

const AUTH_KEYS: &[&str] = &[
    "bearer_token",
    "bearer_token_file",
    "bearer_token_env",
    "basic",
];
const BASIC_KEYS: &[&str] = &["username", "password", "password_file", "password_env"];

/// Where a secret comes from. Its `Debug` never shows an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    Inline(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
            SecretSource::Inline(_) => write!(f, "Inline(<redacted>)"),
        }
    }
}

impl SecretSource {
    /// Reads the secret (trailing newline removed). The error names the source, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            SecretSource::Inline(value) => Ok(value.clone()),
        }
    }
}

/// `auth`: the credentials a webhook must carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    pub bearer_token: Option<SecretSource>,
    pub basic: Option<(String, SecretSource)>,
}

impl Checker {
    /// A secret given as `field`, `field_file` or `field_env` (exactly one).
    pub(crate) fn secret(
        &mut self,
        obj: &Obj,
        field: &str,
        required: bool,
    ) -> Option<SecretSource> {
        let variants = [
            (field.to_string(), 0),
            (format!("{field}_file"), 1),
            (format!("{field}_env"), 2),
        ];
        let given: Vec<(&String, usize, &Node)> = variants
            .iter()
            .filter_map(|(k, kind)| obj.get(k).map(|n| (k, *kind, n)))
            .collect();
        match given.as_slice() {
            [] => {
                if required {
                    self.error(
                        obj.span(),
                        &obj.path(field),
                        format!("missing `{field}_file` or `{field}_env`"),
                        Some(format!(
                            "point `{field}_file` at a mounted secret or `{field}_env` at an environment variable"
                        )),
                    );
                }
                None
            }
            [(key, kind, node)] => {
                let (text, _) = self.string(node, &obj.path(key))?;
                if text.is_empty() {
                    self.error(
                        node.span(),
                        &obj.path(key),
                        format!("`{key}` is empty"),
                        None,
                    );
                    return None;
                }
                Some(match kind {
                    0 => SecretSource::Inline(text),
                    1 => SecretSource::File(PathBuf::from(text)),
                    _ => SecretSource::Env(text),
                })
            }
            [_, (key, _, node), ..] => {
                self.error(
                    node.span(),
                    &obj.path(key),
                    format!("`{field}` is given more than once"),
                    Some(format!(
                        "keep one of `{field}`, `{field}_file`, `{field}_env`"
                    )),
                );
                None
            }
        }
    }

    pub(super) fn auth(&mut self, top: &Obj) -> AuthConfig {
        let Some(auth) = self.sub_object(top, "auth", AUTH_KEYS) else {
            return AuthConfig::default();
        };
        let bearer_token = self.secret(&auth, "bearer_token", false);
        let basic = self.sub_object(&auth, "basic", BASIC_KEYS).and_then(|b| {
            let username = self.required_string(&b, "username").map(|(u, _)| u);
            let password = self.secret(&b, "password", true);
            Some((username?, password?))
        });
        if bearer_token.is_none() && basic.is_none() && auth.map.is_empty() {
            self.error(
                auth.span(),
                "auth",
                "`auth` names no credential".into(),
                Some("add `bearer_token_file`/`bearer_token_env`, or `basic`".into()),
            );
        }
        AuthConfig {
            bearer_token,
            basic,
        }
    }
}
