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

/// The notifications `fixture` (an Alertmanager webhook body) would send to `destination_id`
/// (`team/name`), encoded, without sending anything. A body of resolved alerts is shown as the
/// resolve of an incident those alerts had opened.
pub fn preview(
    config: &RouterConfig,
    destination_id: &DestinationId,
    fixture: &str,
) -> Result<Vec<destination::Payload>, String> {
    let destinations = delivery::build_destinations(config)?;
    let destination = find(&destinations, destination_id)?;
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
    let only_this = vec![routing::Route {
        matchers: Vec::new(),
        destinations: vec![destination_id.clone()],
        continue_matching: false,
    }];
    let mut payloads = Vec::new();
    for intent in &intents {
        let Some(incident) = state.incidents.get(&intent.incident_key) else {
            continue;
        };
        for (_, notification) in
            routing::plan(intent, incident, &only_this, &config.team_destinations)
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
