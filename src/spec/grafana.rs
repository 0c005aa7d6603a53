//! Grafana's sign-in and settings: `grafana.oauth` (generic OAuth 2.0 / OpenID Connect, the
//! client secret by Secret reference) and `grafana.ini` (any `grafana.ini` setting, by section
//! and key, a secret one by reference).
//!
//! The model only; `load` reads it, the Grafana renderer turns it into Grafana's `GF_*`
//! environment variables.

use std::collections::BTreeMap;

use serde::Serialize;

use super::SecretRef;

/// `grafana.oauth`: sign-in through an OAuth 2.0 / OpenID Connect provider (Keycloak, Dex, Okta,
/// Azure AD, Google, GitLab...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OAuth {
    /// The sign-in button's label (`Sign in with NAME`).
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    pub auth_url: String,
    pub token_url: String,
    /// The userinfo endpoint; `None`: the ID token's claims are read.
    pub api_url: Option<String>,
    pub scopes: Vec<String>,
    /// A JMESPath over the user's claims giving `Admin`, `Editor` or `Viewer`.
    pub role_attribute_path: Option<String>,
    /// Only members of these groups (the `groups` claim) may sign in; empty: anyone the provider
    /// signs in.
    pub allowed_groups: Vec<String>,
    /// Whether a first sign-in creates the user in Grafana.
    pub allow_sign_up: bool,
    /// Hides the user name and password form (the admin account stays for emergencies).
    pub disable_login_form: bool,
}

/// A `grafana.ini` value: written as is, or read from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum IniValue {
    Text(String),
    Secret(SecretRef),
}

/// `grafana.ini`: settings by section (`auth.anonymous`) and key (`enabled`).
pub type Ini = BTreeMap<String, BTreeMap<String, IniValue>>;

/// The environment variable Grafana reads for `key` of `section` (`GF_AUTH_ANONYMOUS_ENABLED`).
pub fn environment_name(section: &str, key: &str) -> String {
    let upper = |text: &str| text.to_ascii_uppercase().replace(['.', '-'], "_");
    format!("GF_{}_{}", upper(section), upper(key))
}
