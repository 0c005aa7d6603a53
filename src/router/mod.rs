//! The stackgen router: receives Alertmanager webhooks, turns per-instance alerts into one incident
//! per service, decides who owns it, and delivers notifications that survive crashes.
//!
//! Pure cores: [`alert`] (payload), [`ownership`] (who owns an alert), [`dedup`] (incident state
//! machine), [`routing`] (routes), [`notification`], [`matcher`]. I/O at the edges: the store, the
//! delivery workers and the HTTP API. This file only starts and stops the router; [`preview`]
//! shows or sends what one destination would get.

pub mod alert;
pub mod api;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod destination;
pub mod edge;
pub mod engine;
pub mod matcher;
pub mod metrics;
pub mod notification;
pub mod ownership;
pub mod page;
mod page_routes;
pub mod people;
pub mod preview;
pub mod quiet;
pub mod routing;
pub mod silence;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{info, warn};

use config::RouterConfig;
use delivery::Deliverer;
use delivery::retry::RetryPolicy;
use store::sqlite::{SqliteOptions, SqliteStore};
use store::{Store, StoreChores};

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The key of the incidents page's form tokens: derived from the webhook's credentials, which
/// every replica shares, or random for this process without any.
fn page_form_key(credentials: &api::Credentials) -> [u8; 32] {
    use sha2::Digest as _;
    match credentials.bearer.or(credentials.basic) {
        Some(secret) => {
            let mut hasher = sha2::Sha256::new();
            hasher.update(b"stackgen incidents page forms\0");
            hasher.update(secret);
            hasher.finalize().into()
        }
        None => {
            // std's hasher keys come from the operating system's randomness.
            use std::hash::{BuildHasher, Hasher};
            let mut key = [0u8; 32];
            for chunk in key.chunks_mut(8) {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_u8(0);
                chunk.copy_from_slice(&hasher.finish().to_le_bytes());
            }
            key
        }
    }
}

fn credentials(config: &RouterConfig) -> Result<api::Credentials, ServeError> {
    let bearer = config
        .auth
        .bearer_token
        .as_ref()
        .map(|s| s.read())
        .transpose()
        .map_err(|e| ServeError::Config(format!("auth.bearer_token: {e}")))?;
    let basic = match &config.auth.basic {
        Some((user, password)) => Some((
            user.clone(),
            password
                .read()
                .map_err(|e| ServeError::Config(format!("auth.basic.password: {e}")))?,
        )),
        None => None,
    };
    Ok(api::Credentials::new(
        bearer.as_deref(),
        basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    ))
}

/// Runs the router until SIGTERM or SIGINT: stops accepting, finishes requests in flight, lets
/// deliveries in flight record their outcome, and commits what the engine holds.
pub async fn serve(config: RouterConfig) -> Result<(), ServeError> {
    let running = start(config, None).await?;
    shutdown_signal().await;
    running.stop().await
}

/// A router serving on its listener; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub address: std::net::SocketAddr,
    stop: Arc<Notify>,
    server: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops accepting, finishes requests in flight, lets deliveries in flight record their
    /// outcome, and commits what the engine holds.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.stop.notify_one();
        self.server
            .await
            .map_err(|e| ServeError::Config(format!("the router task failed: {e}")))?
    }
}

/// Starts the router on `config.listen`. With `console`, notifications to `log` destinations
/// are sent there (one line each) instead of to the log.
pub async fn start(
    config: RouterConfig,
    console: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Running, ServeError> {
    let config = Arc::new(config);
    let destinations = delivery::build_destinations(&config).map_err(ServeError::Config)?;
    let mailer = delivery::build_mailer(&config).map_err(ServeError::Config)?;
    let credentials = credentials(&config)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let wake = Arc::new(Notify::new());
    let (engine, delivery_store, store_name) =
        open_stores(config.clone(), metrics.clone(), wake.clone()).await?;
    let (handle, engine_thread) = engine.spawn()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(
            config.delivery.timeout.max(1) as u64,
        ))
        .user_agent(concat!("stackgen-router/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ServeError::Config(format!("HTTP client: {e}")))?;
    let delivery_store = Arc::new(Mutex::new(delivery_store));
    let deliverer = Arc::new(Deliverer {
        store: delivery_store.clone(),
        mailer,
        destinations,
        policy: RetryPolicy {
            initial_backoff: config.delivery.initial_backoff,
            max_backoff: config.delivery.max_backoff,
            max_age: config.delivery.max_age,
        },
        http,
        concurrency: config.delivery.concurrency,
        metrics: metrics.clone(),
        wake,
        buckets: Mutex::new(BTreeMap::new()),
        console,
    });
    let stop_delivery = Arc::new(Notify::new());
    let delivery_task = tokio::spawn(deliverer.run(stop_delivery.clone()));
    let state = api::AppState {
        engine: handle,
        ownership: Arc::new(config.ownership.clone()),
        credentials: Arc::new(credentials.clone()),
        people: Arc::new(config.people.clone()),
        form_key: page_form_key(&credentials),
        grafana_url: config.grafana_url.clone(),
        body_limit: config.body_limit,
        body_timeout: config.edge.body_timeout,
        metrics: metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    info!(address = %address, store = %store_name, "stackgen router listening");
    let stop = Arc::new(Notify::new());
    let stop_server = stop.clone();
    let server = tokio::spawn(async move {
        edge::serve(
            listener,
            api::app(state),
            config.edge,
            metrics,
            async move { stop_server.notified().await },
        )
        .await;
        info!("shutting down: finishing deliveries in flight");
        stop_delivery.notify_one();
        let _ = delivery_task.await;
        // A PostgreSQL connection is closed on a blocking thread (it runs its own small runtime).
        let _ = tokio::task::spawn_blocking(move || drop(delivery_store)).await;
        // The last handle went with the server: the engine drains its queue and stops.
        let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
        info!("stopped");
        Ok(())
    });
    Ok(Running {
        address,
        stop,
        server,
    })
}

/// Opens the engine's and the delivery workers' stores (blocking: the PostgreSQL client runs
/// its own runtime) and builds the engine for that kind of store. Returns a name for the log.
async fn open_stores(
    config: Arc<RouterConfig>,
    metrics: Arc<metrics::Metrics>,
    wake: Arc<Notify>,
) -> Result<(engine::Engine, Box<dyn Store>, String), ServeError> {
    tokio::task::spawn_blocking(move || {
        let Some(pg) = &config.postgres else {
            let options = |auto_checkpoint| SqliteOptions {
                sync_full: config.store_sync_full,
                auto_checkpoint,
            };
            let engine_store = SqliteStore::open(&config.store_path, options(false))?;
            let delivery_store = SqliteStore::open(&config.store_path, options(true))?;
            let name = config.store_path.display().to_string();
            let engine = engine::Engine::new(Box::new(engine_store), config, metrics, wake)?;
            return Ok((engine, Box::new(delivery_store) as Box<dyn Store>, name));
        };
        let url = pg
            .url
            .read()
            .map_err(|e| ServeError::Config(format!("store.postgres.url: {e}")))?;
        let claims = store::Claims {
            owner: replica_id(),
            lease: pg.lease,
        };
        info!(replica = %claims.owner, "connecting to the shared PostgreSQL store");
        let ca = pg.ca.as_ref();
        let mut engine_store = store::postgres::PostgresStore::lazy(&url, ca, claims.clone())?;
        let delivery_store = store::postgres::PostgresStore::lazy(&url, ca, claims)?;
        // Serve either way: until the database answers, webhooks get 503 and /readyz fails.
        if let Err(e) = engine_store.ping() {
            warn!(error = %e, "the database does not answer yet; webhooks get 503 until it does");
        }
        let engine = engine::Engine::shared(Box::new(engine_store), config, metrics, wake);
        Ok((
            engine,
            Box::new(delivery_store) as Box<dyn Store>,
            "postgresql (shared)".to_string(),
        ))
    })
    .await
    .map_err(|e| ServeError::Config(format!("opening the store: {e}")))?
}

/// This process among the replicas: host name, process id and a random part (a restarted
/// process never reuses the claims of the one before it).
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "router".into());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
