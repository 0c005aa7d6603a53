//! What one destination would get, without running the router: `router preview` encodes the
//! notifications a webhook body would make, `router send-test` sends one marked test message.

use super::config::RouterConfig;
use super::dedup::{self, IntentKind, Severity};
use super::delivery::{self, Destinations};
use super::destination::{self, Destination};
use super::routing::{self, DestinationId};
use super::{ServeError, alert, clock, ownership, template};

/// The destination `id` names, or an error listing the configured ones.
fn find<'d>(
    destinations: &'d Destinations,
    id: &DestinationId,
) -> Result<&'d dyn Destination, String> {
    destinations.get(id).map(|d| d.as_ref()).ok_or_else(|| {
        format!(
            "no destination `{id}`; destinations: {}",
            destinations
                .keys()
                .map(DestinationId::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// One notification of a preview: what the destination would be sent, or why it would get
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previewed {
    Sent(destination::Payload),
    NotSent { kind: IntentKind, reason: String },
}

/// The notifications `fixture` (an Alertmanager webhook body) would send to `destination_id`
/// (`team/name`), encoded, without sending anything, routed as the router routes them. A body of
/// resolved alerts is shown as the resolve of an incident those alerts had opened.
pub fn preview(
    config: &RouterConfig,
    destination_id: &DestinationId,
    fixture: &str,
) -> Result<Vec<Previewed>, String> {
    let Some(configured) = config.destinations().find(|d| d.id == *destination_id) else {
        let destinations = config
            .destinations()
            .map(|d| d.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "no destination `{destination_id}`; destinations: {destinations}"
        ));
    };
    // The real secret when it can be read (so the request is the real one), a stand-in when it
    // cannot (a rendered router.yaml away from its mounted Secrets); either way it is redacted
    // from what is shown.
    let secret = configured.secret.as_ref().map(|source| {
        source
            .read()
            .unwrap_or_else(|_| stand_in_secret(configured.kind()))
    });
    let destination = delivery::build_destination(configured, secret.clone())?;
    let destination = destination.as_ref();
    let payload: alert::WebhookPayload = serde_json::from_str(fixture)
        .map_err(|e| format!("the fixture is not a webhook body: {e}"))?;
    let updates = payload.into_updates().map_err(|e| e.to_string())?;
    let now = clock::now_ms();
    let classify = |firing: Option<bool>| -> Vec<dedup::Classified> {
        updates
            .iter()
            .cloned()
            .map(|mut u| {
                if let Some(firing) = firing {
                    u.firing = firing;
                    u.ends_at = if firing { None } else { Some(now) };
                }
                ownership::classify(u, &config.ownership)
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
    let mut previews = Vec::new();
    for intent in &intents {
        let Some(incident) = state.incidents.get(&intent.incident_key) else {
            continue;
        };
        let planned = routing::plan(intent, incident, &config.routing);
        match planned.into_iter().find(|(id, _)| id == destination_id) {
            Some((_, notification)) => previews.push(Previewed::Sent(redact(
                destination
                    .encode(&notification)
                    .map_err(|e| e.to_string())?,
                secret.as_deref(),
            ))),
            None => previews.push(Previewed::NotSent {
                kind: intent.kind,
                reason: why_not(incident, destination_id, &config.routing),
            }),
        }
    }
    Ok(previews)
}

/// A secret of the right shape for a destination whose real secret is not here.
fn stand_in_secret(kind: destination::DestinationKind) -> String {
    match kind.info().secret_field {
        Some("url") => format!("https://{}.invalid/secret", kind.name().replace('_', "-")),
        _ => "SECRET0000000000000000000000000000".to_string(),
    }
}

/// What a secret is shown as: a URL by its scheme and host (where the request goes), anything
/// else not at all.
fn redacted(secret: &str) -> String {
    match secret.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/<redacted>")
        }
        None => "<redacted>".to_string(),
    }
}

/// `payload` with every occurrence of `secret` (in the URL, a header, the body) redacted.
fn redact(payload: destination::Payload, secret: Option<&str>) -> destination::Payload {
    use destination::Payload;
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return payload;
    };
    let shown = redacted(secret);
    let hide = |text: &str| text.replace(secret, &shown);
    match payload {
        Payload::Http {
            method,
            url,
            headers,
            body,
        } => Payload::Http {
            method,
            url: hide(&url),
            headers: headers
                .into_iter()
                .map(|(name, value)| (name, hide(&value)))
                .collect(),
            body: match String::from_utf8(body) {
                Ok(text) => hide(&text).into_bytes(),
                Err(raw) => raw.into_bytes(),
            },
        },
        other => other,
    }
}

/// Why an incident's notifications do not reach `destination`, in the routing's words.
fn why_not(
    incident: &dedup::Incident,
    destination: &DestinationId,
    table: &routing::RoutingTable,
) -> String {
    let severity = incident.severity.max(incident.notified_severity);
    let decision = routing::decide(&incident.labels, &incident.team, severity, table);
    if decision.not_for_this_severity.contains(destination) {
        return format!("{destination} does not take {severity} alerts (its `severities`)");
    }
    let went = decision
        .destinations
        .iter()
        .map(DestinationId::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match decision.matched_routes.as_slice() {
        [] => format!(
            "the incident belongs to team {} and no route matches it; it goes to {went}",
            incident.team
        ),
        routes => format!(
            "routes[{}] decide; it goes to {went}",
            routes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("], routes[")
        ),
    }
}

/// What the router does with an alert of these labels (`router routes test`): its team and
/// incident, which route decided (or the team's destinations), and where it goes, as text.
pub fn trace(config: &RouterConfig, labels: alert::Labels, now: alert::Millis) -> String {
    let update = alert::AlertUpdate {
        fingerprint: alert::label_fingerprint(&labels),
        labels,
        annotations: alert::Labels::new(),
        firing: true,
        starts_at: 0,
        ends_at: None,
        generator_url: String::new(),
        alertmanager_url: String::new(),
    };
    let severity = Severity::of(&update.labels);
    let classified = ownership::classify(update, &config.ownership);
    let labels = classified.incident_labels();
    let decision = routing::decide(&labels, &classified.team, severity, &config.routing);
    let mut out = String::new();
    let service = if classified.service.is_empty() {
        "no service".to_string()
    } else {
        format!("service {}", classified.service)
    };
    out.push_str(&format!("team: {} ({service})\n", classified.team));
    out.push_str(&format!("incident: {}\n", classified.key));
    out.push_str(&format!("severity: {severity}\n"));
    match decision.matched_routes.as_slice() {
        [] => out.push_str("decided by: no route matches; the team's destinations\n"),
        routes => {
            let names: Vec<String> = routes.iter().map(|i| format!("routes[{i}]")).collect();
            out.push_str(&format!("decided by: {}\n", names.join(", ")));
        }
    }
    out.push_str("destinations:\n");
    if decision.destinations.is_empty() {
        out.push_str("  (none)\n");
    }
    for destination in &decision.destinations {
        out.push_str(&format!("  {destination}\n"));
    }
    for destination in &decision.not_for_this_severity {
        out.push_str(&format!(
            "  not {destination}: it does not take {severity} alerts\n"
        ));
    }
    if config.routing.quiet_hours.contains_key(&classified.team) {
        let line = match (
            config.routing.quiet(&classified.team, now),
            severity >= Severity::Critical,
        ) {
            (false, _) => "not now".to_string(),
            (true, true) => "now, but a critical alert is never held".to_string(),
            (true, false) => "now: held until they end".to_string(),
        };
        out.push_str(&format!("quiet hours of {}: {line}\n", classified.team));
    }
    out
}

/// Sends a clearly marked test notification to one destination and returns how it went.
pub async fn send_test(
    config: &RouterConfig,
    destination_id: &DestinationId,
) -> Result<destination::Outcome, ServeError> {
    let destinations = delivery::build_destinations(config).map_err(ServeError::Config)?;
    let destination = find(&destinations, destination_id).map_err(ServeError::Config)?;
    let mailer = if destination.kind() == destination::DestinationKind::Email {
        delivery::build_mailer(config).map_err(ServeError::Config)?
    } else {
        None
    };
    let mut notification = template::sample(IntentKind::Opened);
    notification.idempotency_key = format!("test-{}", clock::now_ms());
    notification.episode_key = notification.idempotency_key.clone();
    notification.alertname = "StackgenTestNotification".into();
    notification.severity = Severity::Info;
    notification.team = destination_id.team.clone();
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
    Ok(delivery::send(&http, mailer.as_ref(), destination, payload)
        .await
        .0)
}
