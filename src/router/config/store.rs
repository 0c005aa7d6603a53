//! `store`: where the router keeps incidents and the outbox. The embedded store (a file, one
//! router) or `store.postgres`, the database several replicas share.

use std::path::{Path, PathBuf};

use super::secret::SecretSource;
use crate::config_check::{Checker, Obj};
use crate::diagnostic::Location;
use crate::router::alert::Millis;
use crate::router::store::postgres_tls::CaBundle;

const STORE_KEYS: &[&str] = &["path", "retention", "sync", "postgres"];
const POSTGRES_KEYS: &[&str] = &["url", "url_file", "url_env", "lease", "ca_file"];

/// `store`, checked.
#[derive(Debug, Clone)]
pub(super) struct StoreSection {
    pub path: PathBuf,
    pub sync_full: bool,
    pub retention: Millis,
    pub postgres: Option<PostgresConfig>,
    /// Where `store.postgres.lease` is written, for the check against `delivery.timeout`.
    pub lease_location: Location,
}

/// `store.postgres`: the database several router replicas share.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (or `key=value` settings), from a file or
    /// an environment variable: it carries a password, so never inline.
    pub url: SecretSource,
    /// How long a replica's claim on a notification keeps the others away; after a replica dies,
    /// its claims are taken over when this expires. Longer than `delivery.timeout`.
    pub lease: Millis,
    /// The PEM CA bundle that verifies the server when TLS is used (`ca_file`, relative to the
    /// config's directory), read when the config is loaded; without it, the public web PKI roots.
    pub ca: Option<CaBundle>,
}

impl Checker {
    pub(super) fn store_section(&mut self, top: &Obj, base: &Path) -> StoreSection {
        let store = self.sub_object(top, "store", STORE_KEYS);
        let path = store
            .as_ref()
            .and_then(|s| s.get("path"))
            .and_then(|n| self.string(n, "store.path"))
            .map(|(p, _)| PathBuf::from(p))
            .unwrap_or_else(|| PathBuf::from("router.db"));
        let retention = self.duration(store.as_ref(), "retention", "168h");
        let sync_full = self.sync_mode(store.as_ref());
        let postgres_obj = store
            .as_ref()
            .and_then(|s| self.sub_object(s, "postgres", POSTGRES_KEYS));
        let lease_location = postgres_obj
            .as_ref()
            .and_then(|pg| pg.get("lease"))
            .map_or_else(
                || Location::of_span(top.span()),
                |n| Location::of_span(n.span()),
            );
        let postgres = postgres_obj.and_then(|pg| self.postgres(&pg, base));
        if postgres.is_some() {
            self.embedded_keys_unused(store.as_ref());
        }
        StoreSection {
            path,
            sync_full,
            retention,
            postgres,
            lease_location,
        }
    }

    /// `store.sync`: `normal` (the default) or `full`.
    fn sync_mode(&mut self, store: Option<&Obj>) -> bool {
        let Some(node) = store.and_then(|s| s.get("sync")) else {
            return false;
        };
        match self.string(node, "store.sync").map(|(t, _)| t).as_deref() {
            Some("full") => true,
            Some("normal") | None => false,
            Some(other) => {
                self.error(
                    node.span(),
                    "store.sync",
                    format!("unknown sync mode `{other}`"),
                    Some("`normal`: survives a crash of the router; `full`: also survives power loss (slower)".into()),
                );
                false
            }
        }
    }

    fn postgres(&mut self, pg: &Obj, base: &Path) -> Option<PostgresConfig> {
        if let Some(node) = pg.get("url") {
            self.error(
                node.span(),
                "store.postgres.url",
                "the database URL is given inline; it carries a password".into(),
                Some(
                    "give `url_file` (a mounted Secret) or `url_env` (an environment variable)"
                        .into(),
                ),
            );
            if let Some(last) = self.diagnostics.last_mut() {
                last.redact = true;
            }
            return None;
        }
        let url = self.secret(pg, "url", true)?;
        let lease = self.duration(Some(pg), "lease", "30s");
        let ca = pg
            .get("ca_file")
            .and_then(|n| self.string(n, "store.postgres.ca_file"))
            .and_then(|(path, location)| self.ca_bundle(&base.join(path), location));
        Some(PostgresConfig { url, lease, ca })
    }

    fn ca_bundle(&mut self, path: &Path, location: Location) -> Option<CaBundle> {
        match CaBundle::read(path) {
            Ok(bundle) => Some(bundle),
            Err(message) => {
                self.error_at(
                    location,
                    "store.postgres.ca_file",
                    message,
                    Some("point `ca_file` (relative to this file's directory) at the PEM CA bundle of the database's provider: one or more `-----BEGIN CERTIFICATE-----` blocks".into()),
                );
                None
            }
        }
    }

    fn embedded_keys_unused(&mut self, store: Option<&Obj>) {
        for key in ["path", "sync"] {
            if let Some(node) = store.and_then(|s| s.get(key)) {
                self.error(
                    node.span(),
                    &format!("store.{key}"),
                    format!("`store.{key}` is for the embedded store, but `store.postgres` is set"),
                    Some(format!(
                        "remove `{key}`: the PostgreSQL store keeps everything in the database"
                    )),
                );
            }
        }
    }
}
