//! TLS to the shared PostgreSQL store (rustls with the ring provider).
//!
//! The database URL's `sslmode` decides whether TLS is used, as tokio-postgres implements it:
//! `disable` never, `prefer` (the default) when the server offers it, `require` always. Whenever
//! TLS is used, the server certificate is verified, chain and host name: against the CA bundle of
//! `store.postgres.ca_file` when it is given (the PEM bundle a managed database provider hands
//! out), otherwise against the public web PKI roots. There is no way to skip verification.
//!
//! Connection errors are described by the step that failed ([`PgTls::describe`]); they never
//! contain the URL, so never its password.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A PEM CA bundle, read and parsed once (when the config is loaded), and where it came from.
#[derive(Debug, Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub roots: RootCertStore,
}

impl CaBundle {
    /// Reads a PEM CA bundle into a root store; the error says what is wrong with the file.
    pub fn read(path: &Path) -> Result<CaBundle, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let mut roots = RootCertStore::empty();
        for (index, certificate) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
            let certificate = certificate.map_err(|e| {
                format!(
                    "{} is not a PEM certificate bundle (certificate {}: {e})",
                    path.display(),
                    index + 1
                )
            })?;
            roots.add(certificate).map_err(|e| {
                format!(
                    "certificate {} in {} is not a usable CA certificate: {e}",
                    index + 1,
                    path.display()
                )
            })?;
        }
        if roots.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` block)",
                path.display()
            ));
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            roots,
        })
    }
}

/// The TLS side of the store's connections: a connector that verifies the server against the
/// configured roots, and where those roots came from (for error messages).
#[derive(Clone)]
pub struct PgTls {
    connector: MakeRustlsConnect,
    ca_file: Option<PathBuf>,
}

impl PgTls {
    /// Verifies servers against `ca` (the bundle of `store.postgres.ca_file`), or the public web
    /// PKI roots without one.
    pub fn new(ca: Option<&CaBundle>) -> Result<Self, String> {
        let roots = match ca {
            Some(bundle) => bundle.roots.clone(),
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(PgTls {
            connector: MakeRustlsConnect::new(config),
            ca_file: ca.map(|bundle| bundle.path.clone()),
        })
    }

    /// The connector for `postgres::Config::connect`.
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// Describes a failed connection by the step that failed: the server's own message (e.g. a
    /// `pg_hba.conf` refusal), a TLS verification problem with the roots it was checked against,
    /// or the client's description of anything else.
    pub fn describe(&self, e: &postgres::Error) -> String {
        if e.as_db_error().is_some() {
            return super::describe_postgres_error(e);
        }
        let Some(tls) = rustls_error(e) else {
            return e.to_string();
        };
        let roots = match &self.ca_file {
            Some(path) => format!("store.postgres.ca_file: {}", path.display()),
            None => "checked against the public web PKI roots; set store.postgres.ca_file to the \
                     database provider's CA bundle"
                .to_string(),
        };
        match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                format!("TLS: the server certificate is not trusted ({roots})")
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "TLS: the server certificate is not valid for the host name in the URL ({tls})"
            ),
            rustls::Error::InvalidCertificate(_) => {
                format!("TLS: the server certificate is rejected: {tls} ({roots})")
            }
            other => format!("TLS: {other}"),
        }
    }
}

/// The rustls error under a failed TLS handshake (tokio-rustls wraps it in an `io::Error`).
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    std::error::Error::source(e)?
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_pem_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = CaBundle::read(&path).expect_err("no certificate");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        assert!(e.contains("ca.pem"), "{e}");
        let missing = CaBundle::read(&dir.path().join("absent.pem")).expect_err("missing");
        assert!(missing.starts_with("cannot read the CA file"), "{missing}");
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&path, bad).expect("write");
        let e = CaBundle::read(&path).expect_err("not a certificate");
        assert!(e.contains("not a usable CA certificate"), "{e}");
    }

    #[test]
    fn without_a_ca_file_the_public_roots_are_used() {
        assert!(PgTls::new(None).is_ok());
    }
}
