//! The stackgen router: receives Alertmanager webhooks, turns per-instance alerts into one incident
//! per service, decides who owns it, and delivers notifications that survive crashes.
//!
//! Pure cores: [`alert`] (payload), [`dedup`] (incident state machine), [`routing`] (ownership and
//! routes), [`matcher`]. I/O at the edges: the store, the delivery workers and the HTTP API.

pub mod alert;
pub mod api;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod destination;
pub mod engine;
pub mod matcher;
pub mod metrics;
pub mod routing;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{info, warn};

use config::RouterConfig;
use delivery::Deliverer;
use delivery::retry::RetryPolicy;
use destination::Destination;
use store::Store;
use store::sqlite::{SqliteOptions, SqliteStore};

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

/// Builds the destinations: reads their secrets and compiles their templates.
pub fn destinations(
    config: &RouterConfig,
    base: &std::path::Path,
) -> Result<BTreeMap<String, Box<dyn Destination>>, ServeError> {
    use destination::*;
    let mut built: BTreeMap<String, Box<dyn Destination>> = BTreeMap::new();
    for (team, list) in &config.teams {
        for d in list {
            let id = format!("{team}/{}", d.name);
            let fail = |e: String| ServeError::Config(format!("{id}: {e}"));
            let secret = match &d.secret {
                Some(source) => Some(source.read().map_err(fail)?),
                None => None,
            };
            let secret = || {
                secret
                    .clone()
                    .ok_or_else(|| ServeError::Config(format!("{id}: no secret configured")))
            };
            let templates = std::sync::Arc::new(
                config::templates_for(config, d, base).map_err(|(_, e)| fail(e))?,
            );
            let option = |key: &str| d.options.get(key).cloned().filter(|v| !v.is_empty());
            let destination: Box<dyn Destination> = match d.kind.as_str() {
                "webhook" => Box::new(webhook::Webhook { url: secret()? }),
                "slack" => Box::new(slack::Slack {
                    url: secret()?,
                    templates,
                }),
                "mattermost" => Box::new(mattermost::Mattermost {
                    url: secret()?,
                    channel: option("channel"),
                    templates,
                }),
                "discord" => Box::new(discord::Discord {
                    url: secret()?,
                    templates,
                }),
                "msteams" => Box::new(msteams::MsTeams {
                    url: secret()?,
                    templates,
                }),
                "google_chat" => Box::new(google_chat::GoogleChat {
                    url: secret()?,
                    templates,
                }),
                "pagerduty" => Box::new(pagerduty::PagerDuty {
                    url: option("api_url").unwrap_or_else(|| pagerduty::DEFAULT_URL.to_string()),
                    routing_key: secret()?,
                    templates,
                }),
                "opsgenie" => Box::new(opsgenie::Opsgenie {
                    base_url: option("api_url").unwrap_or_else(|| {
                        if option("region").as_deref() == Some("eu") {
                            opsgenie::EU_URL
                        } else {
                            opsgenie::US_URL
                        }
                        .to_string()
                    }),
                    api_key: secret()?,
                    templates,
                }),
                "email" => Box::new(email::Email {
                    to: option("to")
                        .map(|t| t.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    templates,
                }),
                _ => Box::new(log::Log),
            };
            let destination: Box<dyn Destination> =
                if d.retry_statuses.is_empty() && d.reject_statuses.is_empty() {
                    destination
                } else {
                    Box::new(Reclassified {
                        inner: destination,
                        retry: d.retry_statuses.iter().copied().collect(),
                        reject: d.reject_statuses.iter().copied().collect(),
                    })
                };
            built.insert(id, destination);
        }
    }
    Ok(built)
}

/// The SMTP transport of e-mail destinations (reading the password), if an SMTP server is set.
fn mailer(config: &RouterConfig) -> Result<Option<delivery::Mailer>, ServeError> {
    let Some(smtp) = &config.smtp else {
        return Ok(None);
    };
    let password = smtp
        .password
        .as_ref()
        .map(|p| p.read())
        .transpose()
        .map_err(|e| ServeError::Config(format!("smtp.password: {e}")))?;
    delivery::Mailer::new(smtp, password, config.delivery.timeout)
        .map(Some)
        .map_err(|e| ServeError::Config(format!("smtp: {e}")))
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
pub async fn serve(config: RouterConfig, config_dir: std::path::PathBuf) -> Result<(), ServeError> {
    let running = start(config, config_dir, None).await?;
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
    config_dir: std::path::PathBuf,
    console: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Running, ServeError> {
    let config = Arc::new(config);
    let destinations = destinations(&config, &config_dir)?;
    let mailer = mailer(&config)?;
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
        credentials: Arc::new(credentials),
        body_limit: config.body_limit,
        metrics,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    info!(address = %address, store = %store_name, "stackgen router listening");
    let stop = Arc::new(Notify::new());
    let stop_server = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::app(state))
            .with_graceful_shutdown(async move { stop_server.notified().await })
            .await?;
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
        let ca_file = pg.ca_file.as_ref().map(|f| f.path.as_path());
        let mut engine_store = store::postgres::PostgresStore::lazy(&url, ca_file, claims.clone())?;
        let delivery_store = store::postgres::PostgresStore::lazy(&url, ca_file, claims)?;
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
pub mod template;

/// The notifications `fixture` (an Alertmanager webhook body) would send to `destination_id`
/// (`team/name`), encoded, without sending anything. A body of resolved alerts is shown as the
/// resolve of an incident those alerts had opened.
pub fn preview(
    config: &RouterConfig,
    config_dir: &std::path::Path,
    destination_id: &str,
    fixture: &str,
) -> Result<Vec<destination::Payload>, String> {
    let destinations = destinations(config, config_dir).map_err(|e| e.to_string())?;
    let destination = destinations.get(destination_id).ok_or_else(|| {
        format!(
            "no destination `{destination_id}`; destinations: {}",
            destinations.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let payload: alert::WebhookPayload = serde_json::from_str(fixture)
        .map_err(|e| format!("the fixture is not a webhook body: {e}"))?;
    let updates = payload.into_updates().map_err(|e| e.to_string())?;
    let now = delivery::now_ms();
    let classify = |firing: Option<bool>| -> Vec<dedup::Classified> {
        updates
            .iter()
            .cloned()
            .map(|mut u| {
                if let Some(firing) = firing {
                    u.firing = firing;
                    u.ends_at = if firing { None } else { Some(now) };
                }
                routing::classify(u, &config.ownership)
            })
            .collect()
    };
    let mut state = dedup::State::default();
    let mut intents = dedup::step(&mut state, &classify(None), now, &config.dedup).intents;
    if intents.is_empty() {
        dedup::step(
            &mut state,
            &classify(Some(true)),
            now - config.dedup.resolve_hold - 1,
            &config.dedup,
        );
        dedup::step(&mut state, &classify(Some(false)), now, &config.dedup);
        intents = dedup::tick(&mut state, now + config.dedup.resolve_hold, &config.dedup).intents;
    }
    let (team, name) = destination_id.split_once('/').unwrap_or_default();
    let only_this = vec![routing::Route {
        matchers: Vec::new(),
        destinations: vec![routing::DestinationRef {
            team: team.to_string(),
            name: name.to_string(),
        }],
        continue_matching: false,
    }];
    let mut payloads = Vec::new();
    for intent in &intents {
        let Some(incident) = state.incidents.get(&intent.incident_key) else {
            continue;
        };
        for (_, notification) in
            routing::plan(intent, incident, &only_this, &config.team_destinations())
        {
            payloads.push(
                destination
                    .encode(&notification)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(payloads)
}

/// Sends a clearly marked test notification to one destination and returns how it went.
pub async fn send_test(
    config: &RouterConfig,
    config_dir: &std::path::Path,
    destination_id: &str,
) -> Result<destination::Outcome, ServeError> {
    let destinations = destinations(config, config_dir)?;
    let destination = destinations.get(destination_id).ok_or_else(|| {
        ServeError::Config(format!(
            "no destination `{destination_id}`; destinations: {}",
            destinations.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let mailer = if destination.kind() == "email" {
        mailer(config)?
    } else {
        None
    };
    let mut notification = template::sample(dedup::IntentKind::Opened);
    notification.idempotency_key = format!("test-{}", delivery::now_ms());
    notification.episode_key = notification.idempotency_key.clone();
    notification.alertname = "StackgenTestNotification".into();
    notification.severity = "info".into();
    notification.team = destination_id
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    notification.service = "stackgen-router".into();
    notification.annotations.insert(
        "summary".into(),
        "TEST: this is a test notification from stackgen router send-test; nothing is wrong."
            .into(),
    );
    notification.annotations.insert(
        "description".into(),
        "If you read this, this destination is configured correctly.".into(),
    );
    let payload = destination
        .encode(&notification)
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(
            config.delivery.timeout.max(1) as u64,
        ))
        .build()
        .map_err(|e| ServeError::Config(format!("HTTP client: {e}")))?;
    Ok(
        delivery::send(&http, mailer.as_ref(), destination.as_ref(), payload)
            .await
            .0,
    )
}
