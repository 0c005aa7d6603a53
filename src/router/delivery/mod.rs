//! Delivery: workers take due outbox entries, send them, and record the outcome. A notification
//! stays pending until its outcome is recorded, so a crash at any point loses nothing; at most the
//! one in flight is sent again after a restart, with the same idempotency key.

pub mod rate;
pub mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tracing::{info, warn};

use super::alert::Millis;
use super::clock::now_ms;
use super::config::{RouterConfig, SmtpConfig};
use super::destination::{Destination, Limit, Outcome, Parts, Payload, Reclassified, Reply};
use super::metrics::{Metrics, labels};
use super::notification::Notification;
use super::routing::DestinationId;
use super::store::{OutboxEntry, Recorded, Store, StoreError};
use retry::{Decision, RetryPolicy};

/// Shared by the delivery loop and its in-flight sends.
pub struct Deliverer {
    pub store: Arc<Mutex<Box<dyn Store>>>,
    /// The SMTP server of e-mail destinations, when configured.
    pub mailer: Option<Mailer>,
    pub destinations: Destinations,
    pub policy: RetryPolicy,
    pub http: reqwest::Client,
    pub concurrency: usize,
    pub metrics: Arc<Metrics>,
    /// Woken when new entries are committed.
    pub wake: Arc<Notify>,
    /// Token buckets of rate-limited destinations.
    pub buckets: Mutex<BTreeMap<DestinationId, rate::Bucket>>,
    /// Where `log` destinations print instead of the log (`stackgen demo`).
    pub console: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// Every configured destination, ready to encode.
pub type Destinations = BTreeMap<DestinationId, Box<dyn Destination>>;

/// Builds every destination of `config`: reads its secret (its templates were compiled when the
/// config was loaded). The error names the destination, never the secret.
pub fn build_destinations(config: &RouterConfig) -> Result<Destinations, String> {
    let mut built = Destinations::new();
    for d in config.destinations() {
        let secret = d
            .secret
            .as_ref()
            .map(|source| source.read())
            .transpose()
            .map_err(|e| format!("{}: {e}", d.id))?;
        built.insert(d.id.clone(), build_destination(d, secret)?);
    }
    Ok(built)
}

/// One destination, with `secret` as its secret (the one read from its source, or a stand-in).
pub fn build_destination(
    d: &crate::router::config::DestinationConfig,
    secret: Option<String>,
) -> Result<Box<dyn Destination>, String> {
    let parts = Parts {
        secret,
        templates: d.templates.clone(),
    };
    let destination = d
        .settings
        .build(parts)
        .map_err(|e| format!("{}: {e}", d.id))?;
    Ok(
        if d.retry_statuses.is_empty() && d.reject_statuses.is_empty() {
            destination
        } else {
            Box::new(Reclassified {
                inner: destination,
                retry: d.retry_statuses.iter().copied().collect(),
                reject: d.reject_statuses.iter().copied().collect(),
            })
        },
    )
}

/// The SMTP transport of e-mail destinations (reading the password), if an SMTP server is set.
pub fn build_mailer(config: &RouterConfig) -> Result<Option<Mailer>, String> {
    let Some(smtp) = &config.smtp else {
        return Ok(None);
    };
    let password = smtp
        .password
        .as_ref()
        .map(|p| p.read())
        .transpose()
        .map_err(|e| format!("smtp.password: {e}"))?;
    Mailer::new(smtp, password, config.delivery.timeout)
        .map(Some)
        .map_err(|e| format!("smtp: {e}"))
}

/// A destination with at least this many notifications waiting behind its rate limit gets them
/// as one digest message.
pub const DIGEST_AFTER: usize = 3;
/// The most notifications one digest stands for.
pub const DIGEST_MAX: usize = 50;

/// How a notification is listed in a digest.
pub fn digest_line(n: &Notification) -> String {
    let service = if n.service.is_empty() {
        "-"
    } else {
        &n.service
    };
    format!(
        "[{}] {}: {} on {} ({} of {} firing)",
        n.severity.as_str().to_uppercase(),
        n.kind.as_str(),
        n.alertname,
        service,
        n.firing_members,
        n.total_members
    )
}

fn with_store<T>(
    store: &Arc<Mutex<Box<dyn Store>>>,
    f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut guard = store
        .lock()
        .map_err(|_| StoreError::Io("store lock poisoned".into()))?;
    f(guard.as_mut())
}

/// Whether the delivery loop can read the outbox. While it cannot (a full disk, a lost
/// database), the loop backs off (100 ms doubling to 5 s) instead of spinning, and the
/// condition is logged once when it starts and once when it ends, not on every try.
#[derive(Debug, Default)]
struct OutboxHealth {
    failures: u32,
}

impl OutboxHealth {
    const FIRST_BACKOFF: Millis = 100;
    const MAX_BACKOFF: Millis = 5_000;

    fn failed(&mut self, error: &str, metrics: &Metrics) {
        if self.failures == 0 {
            warn!(error = %error, "delivery: the outbox cannot be read; retrying with backoff until it can (nothing is lost)");
            metrics.outbox_unreadable.set(1);
        }
        self.failures = self.failures.saturating_add(1);
        metrics.outbox_read_failures.inc();
    }

    fn readable(&mut self, metrics: &Metrics) {
        if self.failures > 0 {
            info!(
                failures = self.failures,
                "delivery: the outbox can be read again"
            );
            metrics.outbox_unreadable.set(0);
        }
        self.failures = 0;
    }

    /// How long to wait before the next read while reads fail.
    fn backoff(&self) -> Option<Millis> {
        (self.failures > 0).then(|| {
            let doublings = (self.failures - 1).min(6);
            (Self::FIRST_BACKOFF << doublings).min(Self::MAX_BACKOFF)
        })
    }
}

impl Deliverer {
    /// Runs until `stop` is notified, then waits for sends in flight.
    pub async fn run(self: Arc<Self>, stop: Arc<Notify>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        // The entry in flight per destination (one at a time keeps each destination's order).
        let in_flight: Arc<Mutex<BTreeMap<DestinationId, String>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let mut last_maintenance = 0;
        let mut outbox = OutboxHealth::default();
        loop {
            let now = now_ms();
            if now - last_maintenance >= 1_000 {
                last_maintenance = now;
                let store = self.store.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || with_store(&store, |s| s.maintain())).await
                {
                    warn!(error = %e, "store maintenance failed");
                }
            }
            let exclude: BTreeSet<String> = in_flight
                .lock()
                .map(|busy| busy.values().cloned().collect())
                .unwrap_or_default();
            let store = self.store.clone();
            let limit = self.concurrency * 4;
            let due = tokio::task::spawn_blocking(move || {
                with_store(&store, |s| s.due(now, limit, &exclude))
            })
            .await;
            let due = match due {
                Ok(Ok(due)) => {
                    outbox.readable(&self.metrics);
                    due
                }
                Ok(Err(e)) => {
                    outbox.failed(&e.to_string(), &self.metrics);
                    Vec::new()
                }
                Err(e) => {
                    outbox.failed(&e.to_string(), &self.metrics);
                    Vec::new()
                }
            };
            let mut dispatched = 0;
            let mut limited_wait: Option<Millis> = None;
            for entry in due {
                // One notification in flight per destination keeps its order.
                let busy = in_flight
                    .lock()
                    .map(|busy| busy.contains_key(&entry.destination))
                    .unwrap_or(false);
                if busy {
                    continue;
                }
                if let Some(limit) = self.rate_limit(&entry.destination)
                    && let Ok(mut buckets) = self.buckets.lock()
                {
                    let bucket = buckets
                        .entry(entry.destination.clone())
                        .or_insert_with(|| rate::Bucket::new(limit, now));
                    if !bucket.take(now) {
                        let wait = bucket.wait(now);
                        limited_wait = Some(limited_wait.map_or(wait, |w| w.min(wait)));
                        continue;
                    }
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                dispatched += 1;
                let destination = entry.destination.clone();
                if let Ok(mut busy) = in_flight.lock() {
                    busy.insert(destination.clone(), entry.id.clone());
                }
                let this = self.clone();
                let in_flight = in_flight.clone();
                tokio::spawn(async move {
                    this.attempt_with_backlog(entry).await;
                    if let Ok(mut busy) = in_flight.lock() {
                        busy.remove(&destination);
                    }
                    drop(permit);
                });
            }
            if dispatched > 0 {
                continue;
            }
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || with_store(&store, |s| s.next_due()))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let wait = match outbox.backoff() {
                Some(backoff) => backoff,
                None => next
                    .map_or(1_000, |t| (t - now_ms()).clamp(10, 1_000))
                    .min(limited_wait.unwrap_or(1_000).max(10)),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = stop.notified() => break,
            }
        }
        // Let sends in flight finish (their outcomes are recorded) before returning.
        let _ = permits.acquire_many(self.concurrency as u32).await;
    }

    /// Sends `entry`, or, when its rate-limited destination has a backlog, one digest standing
    /// for the whole backlog (in order).
    async fn attempt_with_backlog(&self, entry: OutboxEntry) {
        let coalesce = self
            .destinations
            .get(&entry.destination)
            .is_some_and(|d| d.kind().info().coalesce);
        if coalesce && self.rate_limit(&entry.destination).is_some() {
            let store = self.store.clone();
            let destination = entry.destination.clone();
            let backlog = tokio::task::spawn_blocking(move || {
                with_store(&store, |s| s.pending_for(&destination, DIGEST_MAX))
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
            if backlog.len() >= DIGEST_AFTER
                && backlog.first().is_some_and(|first| first.id == entry.id)
            {
                return self.attempt_digest(backlog).await;
            }
        }
        self.attempt(entry).await;
    }

    /// Sends one digest for `entries` (all of one destination) and records its outcome for each.
    async fn attempt_digest(&self, entries: Vec<OutboxEntry>) {
        let Some(first) = entries.first() else { return };
        let mut digest = first.notification.clone();
        digest.digest = entries
            .iter()
            .map(|e| digest_line(&e.notification))
            .collect();
        digest.idempotency_key = format!("digest-{}", first.id);
        let digest_entry = OutboxEntry {
            notification: digest,
            ..first.clone()
        };
        let (outcome, recorded) = self.deliver(&digest_entry).await;
        info!(destination = %first.destination, notifications = entries.len(), outcome = ?outcome, "sent a digest (rate limit reached)");
        // The head last: until it is recorded, the others stay behind it and cannot be sent alone.
        for entry in entries.iter().rev() {
            self.record(entry, recorded.clone()).await;
        }
    }

    /// The documented rate limit of a destination's kind, if it has one.
    fn rate_limit(&self, destination: &DestinationId) -> Option<Limit> {
        self.destinations
            .get(destination)
            .and_then(|d| d.kind().info().rate_limit)
    }

    async fn attempt(&self, entry: OutboxEntry) {
        let (_, recorded) = self.deliver(&entry).await;
        self.record(&entry, recorded).await;
    }

    /// Encodes and sends one entry; decides what to record.
    async fn deliver(&self, entry: &OutboxEntry) -> (Outcome, Recorded) {
        let outcome = self.attempt_once(entry).await;
        let now = now_ms();
        let recorded = self.decide(entry, &outcome, now);
        self.report(entry, &outcome, &recorded, now);
        (outcome, recorded)
    }

    /// One attempt: encode, then print it to the console or send it.
    async fn attempt_once(&self, entry: &OutboxEntry) -> Outcome {
        let Some(destination) = self.destinations.get(&entry.destination) else {
            return Outcome::Rejected {
                reason: format!("destination {} is no longer configured", entry.destination),
            };
        };
        match destination.encode(&entry.notification) {
            Err(e) => Outcome::Rejected {
                reason: format!("encoding failed: {e}"),
            },
            Ok(Payload::Log { line }) if self.console.is_some() => {
                let printed = self.console.as_ref().is_some_and(|c| c.send(line).is_ok());
                if printed {
                    Outcome::Delivered
                } else {
                    Outcome::Retry {
                        after: None,
                        reason: "the console is closed".into(),
                    }
                }
            }
            Ok(payload) => {
                let (outcome, cooldown) = send(
                    &self.http,
                    self.mailer.as_ref(),
                    destination.as_ref(),
                    payload,
                )
                .await;
                if let (Some(pause), Some(limit)) = (cooldown, destination.kind().info().rate_limit)
                    && let Ok(mut buckets) = self.buckets.lock()
                {
                    let now = now_ms();
                    buckets
                        .entry(entry.destination.clone())
                        .or_insert_with(|| rate::Bucket::new(limit, now))
                        .pause_until(now + pause);
                }
                outcome
            }
        }
    }

    /// What to record for an attempt's outcome: delivered, the next attempt (the retry policy's
    /// decision), or dead.
    fn decide(&self, entry: &OutboxEntry, outcome: &Outcome, now: Millis) -> Recorded {
        let attempts = entry.attempts + 1;
        match outcome {
            Outcome::Delivered => {
                self.metrics
                    .delivery_duration
                    .observe(((now - entry.created_at).max(0) as f64) / 1000.0);
                Recorded::Delivered { at: now }
            }
            Outcome::Rejected { reason } => Recorded::Dead {
                error: reason.clone(),
            },
            Outcome::Retry { after, reason } => {
                match self
                    .policy
                    .next(attempts, now, entry.created_at, *after, fastrand::f64())
                {
                    Decision::RetryAt(at) => Recorded::RetryAt {
                        at,
                        error: reason.clone(),
                    },
                    Decision::GiveUp => Recorded::Dead {
                        error: format!("gave up after {attempts} attempts: {reason}"),
                    },
                }
            }
        }
    }

    /// Counts the attempt and logs it.
    fn report(&self, entry: &OutboxEntry, outcome: &Outcome, recorded: &Recorded, now: Millis) {
        let destination_id = entry.destination.to_string();
        let attempts = entry.attempts + 1;
        let label = match recorded {
            Recorded::Delivered { .. } => "delivered",
            // The destination asked to slow down: not a failure, the message is on its way.
            Recorded::RetryAt { .. } if outcome.is_rate_limited() => "throttled",
            Recorded::RetryAt { .. } => "retry",
            Recorded::Dead { .. } if matches!(outcome, Outcome::Rejected { .. }) => "rejected",
            Recorded::Dead { .. } => "dead",
        };
        self.metrics
            .delivery_attempts
            .get_or_create(&labels(&[
                ("destination", &destination_id),
                ("team", &entry.destination.team),
                ("outcome", label),
            ]))
            .inc();
        match recorded {
            Recorded::Delivered { .. } => {
                info!(id = %entry.id, destination = %entry.destination, kind = entry.notification.kind.as_str(), incident = %entry.notification.incident_key, "notification delivered")
            }
            Recorded::RetryAt { at, error } => {
                warn!(id = %entry.id, destination = %entry.destination, attempts, retry_in_ms = at - now, error = %error, "delivery failed, will retry")
            }
            Recorded::Dead { error } => {
                self.metrics
                    .notifications_dead
                    .get_or_create(&labels(&[
                        ("destination", &destination_id),
                        ("team", &entry.destination.team),
                    ]))
                    .inc();
                warn!(id = %entry.id, destination = %entry.destination, attempts, error = %error, "notification is dead: not delivered and not retried")
            }
        }
    }

    /// Stores an attempt's outcome for an entry.
    async fn record(&self, entry: &OutboxEntry, recorded: Recorded) {
        let store = self.store.clone();
        let id = entry.id.clone();
        let result =
            tokio::task::spawn_blocking(move || with_store(&store, |s| s.record(&id, &recorded)))
                .await;
        if !matches!(result, Ok(Ok(()))) {
            // Not recorded: the entry stays pending and is sent again (same idempotency key).
            warn!(id = %entry.id, "recording the delivery outcome failed; it will be retried");
        }
    }
}

/// Sends one encoded notification and classifies the reply. Shared by the delivery workers and
/// `stackgen router send-test`.
pub async fn send(
    http: &reqwest::Client,
    mailer: Option<&Mailer>,
    destination: &dyn Destination,
    payload: Payload,
) -> (Outcome, Option<Millis>) {
    match payload {
        Payload::Log { line } => {
            info!(target: "stackgen::notification", "{line}");
            (Outcome::Delivered, None)
        }
        Payload::Email(message) => match mailer {
            None => (
                Outcome::Rejected {
                    reason: "no SMTP server is configured".into(),
                },
                None,
            ),
            Some(mailer) => (mailer.send(message).await, None),
        },
        Payload::Http {
            method,
            url,
            headers,
            body,
        } => {
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
            let mut request = http.request(method, &url).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Err(e) => (
                    Outcome::Retry {
                        after: None,
                        reason: format!("request failed: {}", without_url(&e)),
                    },
                    None,
                ),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let retry_after = header("retry-after")
                        .as_deref()
                        .and_then(|value| parse_retry_after(value, now_ms()));
                    let cooldown = destination.cooldown(&header);
                    let body = response.text().await.unwrap_or_default();
                    (
                        destination.classify(&Reply {
                            status,
                            retry_after,
                            body,
                        }),
                        cooldown,
                    )
                }
            }
        }
    }
}

/// Sends e-mail through one SMTP server.
pub struct Mailer {
    pub transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    pub from: lettre::message::Mailbox,
}

impl Mailer {
    /// A transport for `smtp` (STARTTLS, implicit TLS or plain), with credentials if given.
    pub fn new(
        smtp: &SmtpConfig,
        password: Option<String>,
        timeout: Millis,
    ) -> Result<Self, String> {
        use lettre::AsyncSmtpTransport;
        let builder = match smtp.server.tls.as_str() {
            "tls" => AsyncSmtpTransport::<lettre::Tokio1Executor>::relay(&smtp.server.host)
                .map_err(|e| e.to_string())?,
            "starttls" => {
                AsyncSmtpTransport::<lettre::Tokio1Executor>::starttls_relay(&smtp.server.host)
                    .map_err(|e| e.to_string())?
            }
            _ => AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&smtp.server.host),
        };
        let mut builder = builder
            .port(smtp.server.port)
            .timeout(Some(Duration::from_millis(timeout.max(1) as u64)));
        if let (Some(user), Some(password)) = (&smtp.server.username, password) {
            builder = builder.credentials(
                lettre::transport::smtp::authentication::Credentials::new(user.clone(), password),
            );
        }
        let from = smtp
            .server
            .from
            .parse()
            .map_err(|e| format!("smtp.from: {e}"))?;
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    async fn send(&self, m: super::destination::EmailMessage) -> Outcome {
        use lettre::AsyncTransport;
        use lettre::message::{Message, MultiPart};
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(m.subject)
            .message_id(Some(format!("<{}>", m.message_id)));
        for to in &m.to {
            match to.parse() {
                Ok(mailbox) => builder = builder.to(mailbox),
                Err(e) => {
                    return Outcome::Rejected {
                        reason: format!("bad recipient {to}: {e}"),
                    };
                }
            }
        }
        if let Some(root) = m.thread_root {
            builder = builder
                .in_reply_to(format!("<{root}>"))
                .references(format!("<{root}>"));
        }
        let message = match builder.multipart(MultiPart::alternative_plain_html(m.text, m.html)) {
            Ok(message) => message,
            Err(e) => {
                return Outcome::Rejected {
                    reason: format!("building the message: {e}"),
                };
            }
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Delivered,
            Err(e) if e.is_permanent() => Outcome::Rejected {
                reason: format!("SMTP: {e}"),
            },
            Err(e) => Outcome::Retry {
                after: None,
                reason: format!("SMTP: {e}"),
            },
        }
    }
}

/// A request error without its URL (webhook URLs often carry secrets).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut innermost = String::new();
    while let Some(s) = source {
        innermost = s.to_string();
        source = s.source();
    }
    if innermost.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {innermost}")
    }
}

/// `Retry-After` as seconds or an HTTP date, in milliseconds from `now`.
pub fn parse_retry_after(value: &str, now: Millis) -> Option<Millis> {
    if let Ok(seconds) = value.trim().parse::<f64>() {
        return (seconds >= 0.0).then_some((seconds * 1000.0) as Millis);
    }
    chrono::DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| (t.timestamp_millis() - now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_outbox_is_retried_with_backoff_and_counted_not_spun_on() {
        let metrics = Metrics::new();
        let mut outbox = OutboxHealth::default();
        assert_eq!(outbox.backoff(), None);
        let mut waits = Vec::new();
        for _ in 0..9 {
            outbox.failed("database or disk is full", &metrics);
            waits.push(outbox.backoff().expect("backs off"));
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]
        );
        let text = metrics.render();
        assert!(
            text.contains("stackgen_outbox_read_failures_total 9"),
            "{text}"
        );
        assert!(text.contains("stackgen_outbox_unreadable 1"), "{text}");
        outbox.readable(&metrics);
        assert_eq!(outbox.backoff(), None);
        assert!(metrics.render().contains("stackgen_outbox_unreadable 0"));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        // Wed, 21 Oct 2015 07:28:00 GMT
        let date = 1_445_412_480_000;
        assert_eq!(parse_retry_after("30", date), Some(30_000));
        assert_eq!(parse_retry_after("1.5", date), Some(1_500));
        assert_eq!(parse_retry_after("-1", date), None);
        let header = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(parse_retry_after(header, date - 90_500), Some(90_500));
        assert_eq!(parse_retry_after(header, date), Some(0));
        assert_eq!(
            parse_retry_after(header, date + 5_000),
            Some(0),
            "a past date"
        );
        assert_eq!(parse_retry_after("soon", date), None);
    }
}
