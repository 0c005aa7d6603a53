//! The router's Prometheus metrics (`GET /metrics`), named `stackgen_<subsystem>_<noun>_<unit>`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub alerts_received: Counter,
    pub webhooks: Family<Labels, Counter>,
    pub incidents_open: Gauge,
    pub incident_transitions: Family<Labels, Counter>,
    pub notifications_planned: Counter,
    /// Incident transitions that found no destination (exported as 0 from the start, so a
    /// rule's `increase()` sees the first one).
    pub incidents_unroutable: Counter,
    pub delivery_attempts: Family<Labels, Counter>,
    pub delivery_duration: Histogram,
    pub outbox_pending: Gauge,
    pub notifications_dead: Family<Labels, Counter>,
    pub members_active: Gauge,
    /// Failed reads of the outbox by the delivery loop (a full disk, a lost database).
    pub outbox_read_failures: Counter,
    /// 1 while the delivery loop cannot read the outbox.
    pub outbox_unreadable: Gauge,
    /// Connections refused because their client held its cap of open connections.
    pub connections_refused: Counter,
    /// Requests whose body did not arrive within its deadline.
    pub body_timeouts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("stackgen"),
            alerts_received: Counter::default(),
            webhooks: Family::default(),
            incidents_open: Gauge::default(),
            incident_transitions: Family::default(),
            notifications_planned: Counter::default(),
            incidents_unroutable: Counter::default(),
            delivery_attempts: Family::default(),
            delivery_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            outbox_pending: Gauge::default(),
            notifications_dead: Family::default(),
            members_active: Gauge::default(),
            outbox_read_failures: Counter::default(),
            outbox_unreadable: Gauge::default(),
            connections_refused: Counter::default(),
            body_timeouts: Counter::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "alerts_received",
            "Alerts received in Alertmanager webhooks",
            metrics.alerts_received.clone(),
        );
        registry.register(
            "webhooks",
            "Webhook requests by HTTP status answered",
            metrics.webhooks.clone(),
        );
        registry.register(
            "incidents_open",
            "Incidents open or holding a resolve",
            metrics.incidents_open.clone(),
        );
        registry.register(
            "incident_transitions",
            "Incident transitions by kind (opened, reopened, escalated, reminder, resolved)",
            metrics.incident_transitions.clone(),
        );
        registry.register(
            "notifications_planned",
            "Notifications planned (one per transition and destination)",
            metrics.notifications_planned.clone(),
        );
        registry.register(
            "incidents_unroutable",
            "Incident transitions that found no destination to notify",
            metrics.incidents_unroutable.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts by destination, team and outcome (delivered, throttled: answered 429, retry, rejected, dead)",
            metrics.delivery_attempts.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time from a notification being planned to its delivery",
            metrics.delivery_duration.clone(),
        );
        registry.register(
            "outbox_pending_notifications",
            "Notifications waiting to be delivered",
            metrics.outbox_pending.clone(),
        );
        registry.register(
            "notifications_dead",
            "Notifications given up (maximum age reached or rejected) by destination",
            metrics.notifications_dead.clone(),
        );
        registry.register(
            "members_active",
            "Member alerts of open incidents",
            metrics.members_active.clone(),
        );
        registry.register(
            "outbox_read_failures",
            "Failed reads of the outbox by the delivery loop (it backs off and retries)",
            metrics.outbox_read_failures.clone(),
        );
        registry.register(
            "outbox_unreadable",
            "1 while the delivery loop cannot read the outbox",
            metrics.outbox_unreadable.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections refused because their client already held its cap of open connections",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "http_body_timeouts",
            "Requests answered 408 because their body did not arrive within its deadline",
            metrics.body_timeouts.clone(),
        );
        metrics
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
