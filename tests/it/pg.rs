//! A real PostgreSQL server for the tests (Debian package `postgresql`): `initdb` in a temporary
//! directory, `postgres` on a free loopback port with its socket in a temporary directory, as the
//! unprivileged `postgres` user when the tests run as root (PostgreSQL refuses to run as root).
//! Never the Debian service: each server is started here and stopped by its PID.
//!
//! [`shared`] is one server per test binary (each test takes a fresh database from it with
//! [`PgServer::database`]); [`PgServer::start`] is a server of the test's own, for tests that stop
//! and restart it. [`shared_tls`] / [`PgServer::start_tls`] run with `ssl = on`, a certificate
//! for `localhost`/`127.0.0.1` from a throwaway CA ([`TestCa`], made with the `openssl` CLI), and
//! a `pg_hba.conf` that takes TCP connections only over TLS (plain ones are rejected). The tests'
//! own administration goes through the Unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::support::{free_port, poll_until, wait_explained};

/// PostgreSQL's server binaries (`initdb`, `postgres`), or a panic naming the package.
fn bindir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let candidates = from_pg_config.into_iter().chain(
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin")),
    );
    for dir in candidates {
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL's initdb and postgres are not installed; install the Debian package `postgresql` (apt-get install postgresql)"
    )
}

/// Whether this process runs as root (then the server runs as the `postgres` user).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A command run as the unprivileged `postgres` user when we are root; the process gets SIGINT
/// (PostgreSQL's fast shutdown) if the thread that started it ends.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--pdeathsig=INT",
            "--",
        ]);
        command.arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A directory the server's user owns.
fn owned_temp_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if running_as_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "chown postgres {} failed (the Debian package `postgresql` creates the user)",
            dir.path().display()
        );
    }
    dir
}

/// Runs `openssl` with `args` in `dir`, or panics naming the Debian package or the failure.
fn openssl(dir: &Path, args: &[&str]) {
    let program = super::support::tool(
        "openssl",
        "apt-get install openssl (Debian package `openssl`)",
    );
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throwaway certificate authority (EC P-256, valid two days) in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("temp dir");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa { dir }
    }

    /// The CA certificate (PEM), as a provider hands it out.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for `localhost` and `127.0.0.1`; returns (cert, key) paths.
    fn issue_server_cert(&self) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions file");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        (dir.join("server.pem"), dir.join("server.key"))
    }
}

/// One PostgreSQL server; stopped (fast shutdown, then SIGKILL) by its PID when dropped.
pub struct PgServer {
    child: Option<Child>,
    pub port: u16,
    bindir: PathBuf,
    data: tempfile::TempDir,
    sockets: tempfile::TempDir,
    log: PathBuf,
    /// The CA that issued the server's certificate, for a server with `ssl = on`.
    pub ca: Option<TestCa>,
}

impl PgServer {
    /// Creates a cluster and starts its server.
    pub fn start() -> PgServer {
        PgServer::create(None)
    }

    /// Creates a cluster that takes TCP connections over TLS only (`hostssl`; `hostnossl` is
    /// rejected) with a certificate from a fresh [`TestCa`], and starts its server.
    pub fn start_tls() -> PgServer {
        PgServer::create(Some(TestCa::new("stackgen test CA")))
    }

    fn create(ca: Option<TestCa>) -> PgServer {
        let bindir = bindir();
        let data = owned_temp_dir();
        let sockets = owned_temp_dir();
        let init = as_postgres(&bindir.join("initdb"))
            .args(["-D"])
            .arg(data.path().join("pg"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        if let Some(ca) = &ca {
            let cluster = data.path().join("pg");
            let (cert, key) = ca.issue_server_cert();
            for (from, to) in [(&cert, "server.crt"), (&key, "server.key")] {
                let target = cluster.join(to);
                std::fs::copy(from, &target).expect("copy the server certificate");
                let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                std::fs::set_permissions(&target, mode).expect("chmod 0600");
                if running_as_root() {
                    std::os::unix::fs::chown(
                        &target,
                        Some(postgres_id("-u")),
                        Some(postgres_id("-g")),
                    )
                    .expect("chown to postgres");
                }
            }
            std::fs::write(
                cluster.join("pg_hba.conf"),
                "local all all trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n\
                 hostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("pg_hba.conf");
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(cluster.join("postgresql.conf"))
                .expect("postgresql.conf");
            std::io::Write::write_all(
                &mut conf,
                b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .expect("ssl settings");
        }
        let log = data.path().join("server.log");
        let mut server = PgServer {
            child: None,
            port: free_port(),
            bindir,
            data,
            sockets,
            log,
            ca,
        };
        server.run();
        server
    }

    /// Starts the server on the existing cluster and waits until it takes connections.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let child = as_postgres(&self.bindir.join("postgres"))
            .arg("-D")
            .arg(self.data.path().join("pg"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.sockets.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let admin_url = self.admin_url("postgres");
        let mut child = self.child.take();
        wait_explained(
            "postgres accepting connections",
            Duration::from_secs(30),
            || {
                if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                    panic!("postgres exited ({status}):\n{}", self.log());
                }
                postgres::Client::connect(&admin_url, postgres::NoTls).is_ok()
            },
            || self.log(),
        );
        self.child = child;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Settings for `database` through the server's Unix socket (trusted, no TLS): for the
    /// tests' own administration.
    fn admin_url(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database} connect_timeout=5",
            self.sockets.path().display(),
            self.port
        )
    }

    /// A URL for `database` on this server (TCP on 127.0.0.1).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?connect_timeout=5",
            self.port
        )
    }

    /// A fresh, empty database; returns its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin =
            postgres::Client::connect(&self.admin_url("postgres"), postgres::NoTls).expect("admin");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(&name)
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let stopped = poll_until(Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.run();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `postgres` user's id (`-u`) or group id (`-g`), from `id`.
fn postgres_id(which: &str) -> u32 {
    let output = Command::new("id")
        .args([which, "postgres"])
        .output()
        .expect("id runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the `postgres` user exists (the Debian package `postgresql` creates it)")
}

/// The server shared by this test binary, started on first use from a thread that lives as long
/// as the process (so the server gets SIGINT when the test binary exits).
pub fn shared() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    keep(&SHARED, PgServer::start)
}

/// The TLS-only server shared by this test binary (see [`PgServer::start_tls`]).
pub fn shared_tls() -> &'static PgServer {
    static SHARED: OnceLock<PgServer> = OnceLock::new();
    keep(&SHARED, PgServer::start_tls)
}

/// Starts `start()` once, from a keeper thread that lives as long as the process.
fn keep(cell: &'static OnceLock<PgServer>, start: fn() -> PgServer) -> &'static PgServer {
    cell.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-keeper".into())
            .spawn(move || {
                let _ = tx.send(start());
                loop {
                    std::thread::park();
                }
            })
            .expect("keeper thread");
        rx.recv().expect("the shared server started")
    })
}
