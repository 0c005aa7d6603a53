//! The router's PostgreSQL store over TLS, against a real server that takes TCP connections only
//! over TLS (`pg.rs`, certificate from a throwaway CA): a router process verifying the server
//! against the CA file takes a webhook and notifies the sink; without a CA file (the test CA is no
//! public root) or with another CA the connection fails with a certificate-trust error naming
//! the roots used; `sslmode=disable` is refused with PostgreSQL's own message; and check-config
//! reports a missing or non-PEM `ca_file` at its key. No error shows the URL's password.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stackgen::router::store::Claims;
use stackgen::router::store::postgres::PostgresStore;
use stackgen::router::store::postgres_tls::CaBundle;

use super::pg::{self, TestCa};
use super::router::{Router, Sink};
use super::support::{stderr, stdout, wait_for};

/// A password that must never show in an error (the server trusts loopback TLS anyway).
const PASSWORD: &str = "hunter2-never-shown";

/// A URL for a fresh database on the TLS-only server, with a password and `sslmode`.
fn url_with(sslmode: &str) -> String {
    let url = pg::shared_tls().database();
    let url = url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    format!("{url}&sslmode={sslmode}")
}

/// Connects a store; returns the error text (panics if it connected).
fn connect_error(url: &str, ca_file: Option<&Path>) -> String {
    let claims = Claims {
        owner: "test".into(),
        lease: 1_000,
    };
    let ca = ca_file.map(|path| CaBundle::read(path).expect("a readable CA bundle"));
    match PostgresStore::connect(url, ca.as_ref(), claims) {
        Ok(_) => panic!("connected, but must not"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
            text
        }
    }
}

/// The CA certificate of the TLS-only server.
fn test_ca() -> PathBuf {
    pg::shared_tls()
        .ca
        .as_ref()
        .map(|ca| ca.cert())
        .expect("the TLS server has a CA")
}

#[test]
fn a_router_over_tls_verified_by_its_ca_file_delivers_a_webhook() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(test_ca(), dir.path().join("db-ca.pem")).expect("copy CA");
    std::fs::write(dir.path().join("db-url"), url_with("require")).expect("url file");
    let hook = Sink::start(200);
    let config = format!(
        "listen: 127.0.0.1:PORT\nauth: {{bearer_token_env: TEST_ROUTER_TOKEN}}\nstore: {{postgres: {{url_file: ./db-url, ca_file: db-ca.pem}}}}\nteams:\n  oncall:\n    destinations:\n      - name: hook\n        kind: webhook\n        url: {}\nownership: {{default_team: oncall}}\n",
        hook.url()
    );
    let router = Router::start(dir.path(), &config);
    assert_eq!(
        router.post_fixture("01-one-service-three-instances-firing.body.json"),
        200,
        "{}",
        router.log()
    );
    wait_for(
        "the notification at the sink",
        Duration::from_secs(20),
        || hook.received().iter().any(|r| r.answered == 200),
    );
    let received = hook.received();
    assert_eq!(received[0].body["kind"], "opened", "{:?}", received[0].body);
    assert!(
        router.log().contains("postgresql (shared)"),
        "{}",
        router.log()
    );
}

#[test]
fn without_a_ca_file_the_test_ca_is_not_trusted() {
    let e = connect_error(&url_with("require"), None);
    assert!(
        e.contains(
            "TLS: the server certificate is not trusted (checked against the public web PKI roots; \
             set store.postgres.ca_file to the database provider's CA bundle)"
        ),
        "{e}"
    );
    assert!(
        e.starts_with("store: connecting to PostgreSQL at 127.0.0.1:"),
        "{e}"
    );
    // `prefer` (the default) uses the TLS the server offers, and verifies it all the same.
    let e = connect_error(&url_with("prefer"), None);
    assert!(e.contains("the server certificate is not trusted"), "{e}");
}

#[test]
fn a_ca_file_of_another_ca_is_not_trusted() {
    let other = TestCa::new("another CA");
    let e = connect_error(&url_with("require"), Some(&other.cert()));
    assert!(
        e.contains(&format!(
            "TLS: the server certificate is not trusted (store.postgres.ca_file: {})",
            other.cert().display()
        )),
        "{e}"
    );
}

#[test]
fn a_plain_connection_to_the_tls_only_server_is_refused_with_postgresql_s_message() {
    let e = connect_error(&url_with("disable"), Some(&test_ca()));
    assert!(
        e.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"postgres\""),
        "{e}"
    );
    assert!(e.contains("no encryption"), "{e}");
    assert!(e.ends_with("(28000)"), "{e}");
}

/// `router check-config` in `dir` on a router.yaml naming `ca_file: db-ca.pem`.
fn check_config(dir: &Path) -> (bool, String, String) {
    std::fs::write(
        dir.join("router.yaml"),
        "store:\n  postgres:\n    url_env: DATABASE_URL\n    ca_file: db-ca.pem\nteams: {a: {destinations: [{kind: log}]}}\nownership: {default_team: a}\n",
    )
    .expect("router.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_stackgen"))
        .args(["router", "check-config", "router.yaml"])
        .current_dir(dir)
        .output()
        .expect("stackgen runs");
    (output.status.success(), stdout(&output), stderr(&output))
}

#[test]
fn check_config_reports_a_missing_or_non_pem_ca_file_at_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    let hint = "  = field: store.postgres.ca_file\n  = hint: point `ca_file` (relative to this file's directory) at the PEM CA bundle of the database's provider: one or more `-----BEGIN CERTIFICATE-----` blocks\n\n1 problem found\n";
    let (ok, _, err) = check_config(dir.path());
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "error: cannot read the CA file db-ca.pem: No such file or directory (os error 2)\n --> router.yaml:4:14\n  |\n4 |     ca_file: db-ca.pem\n  |              ^^^^^^^^^\n{hint}"
        )
    );
    std::fs::write(dir.path().join("db-ca.pem"), "postgres://u:p@db/x\n").expect("write");
    let (ok, _, err) = check_config(dir.path());
    assert!(!ok);
    assert_eq!(
        err,
        format!(
            "error: db-ca.pem holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` block)\n --> router.yaml:4:14\n  |\n4 |     ca_file: db-ca.pem\n  |              ^^^^^^^^^\n{hint}"
        )
    );
    std::fs::copy(test_ca(), dir.path().join("db-ca.pem")).expect("copy CA");
    let (ok, out, err) = check_config(dir.path());
    assert!(ok, "{out}{err}");
}
