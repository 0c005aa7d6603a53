//! The HTTP surface: the Alertmanager webhook, the incidents API, health, readiness and metrics.
//!
//! Reading incidents takes the webhook's credentials or a viewer (`people`); acting on one
//! (acknowledge, unacknowledge) takes a person who responds for its team, in a JSON request from
//! no other site: a cross-site form can send no JSON, and a request a browser marks cross-site
//! (`Sec-Fetch-Site`, or without it an `Origin` other than the router's own) is refused.
//!
//! [`app`] builds the router without a socket (tests call it directly); every failure becomes a
//! JSON `{"error": ...}` with the right status in one place ([`ApiError`]). Alertmanager retries
//! 5xx and gives up on 4xx, so only retryable failures (the store) are 5xx.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::alert::WebhookPayload;
use super::dedup::ActionError;
use super::edge::Peer;
use super::engine::{Action, ActionKind, EngineError, EngineHandle};
use super::metrics::{Metrics, labels};
use super::people::{AuthError, People, Person};
use super::silence::{NewSilence, SilenceError};
use super::{page, page_routes};

/// Inbound credentials, resolved from their files or environment variables at start.
#[derive(Clone, Default)]
pub struct Credentials {
    /// SHA-256 of the bearer token.
    pub bearer: Option<[u8; 32]>,
    /// SHA-256 of `user:password`.
    pub basic: Option<[u8; 32]>,
}

impl Credentials {
    pub fn new(bearer: Option<&str>, basic: Option<(&str, &str)>) -> Self {
        Credentials {
            bearer: bearer.map(|t| digest(t.as_bytes())),
            basic: basic.map(|(u, p)| digest(format!("{u}:{p}").as_bytes())),
        }
    }

    fn required(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time comparison of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    /// Ownership, to classify alerts here (in parallel) rather than in the engine's one thread.
    pub ownership: Arc<super::ownership::Ownership>,
    pub credentials: Arc<Credentials>,
    /// Who signs in to read incidents and act on them.
    pub people: Arc<People>,
    /// The key the incidents page's form tokens are made with (the same on every replica).
    pub form_key: [u8; 32],
    /// Where Grafana is, for the page's dashboard links.
    pub grafana_url: Option<String>,
    pub body_limit: usize,
    /// How long a request's body may take to arrive, once its headers have.
    pub body_timeout: std::time::Duration,
    pub metrics: Arc<Metrics>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/alertmanager", post(ingest))
        .route("/api/v1/heartbeat", post(ingest))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{action}", post(incident_action))
        .route("/api/v1/silences", get(silences).post(create_silence))
        .route("/api/v1/silences/expire", post(expire_silence))
        .route("/incidents", get(page_routes::incidents_page))
        .route("/incidents/view", get(page_routes::incident_page))
        .route("/incidents/silences", get(page_routes::silences_page))
        .route(page::STYLE_PATH, get(page_routes::stylesheet))
        .route("/incidents/{action}", post(page_routes::post_action))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|uri: axum::http::Uri| async move { ApiError::NotFound(uri.path().to_string()) })
        .with_state(state)
}

/// Why a request was refused. Each becomes a response in one place ([`IntoResponse`]): its
/// status and `{"error": "<reason>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing credentials")]
    MissingCredentials,
    #[error("bad credentials")]
    BadCredentials,
    #[error("content type must be application/json, got {0:?}")]
    NotJson(String),
    #[error("body larger than the limit of {0} bytes")]
    TooLarge(usize),
    #[error("malformed body: {0}")]
    MalformedBody(String),
    #[error("the body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("method not allowed here")]
    MethodNotAllowed,
    #[error("malformed JSON: {0}")]
    MalformedJson(serde_json::Error),
    #[error("not an Alertmanager webhook: {0}")]
    NotAWebhook(serde_json::Error),
    /// A webhook body that parses but can never be valid (wrong version, status or time).
    #[error("{0}")]
    InvalidWebhook(String),
    /// The store cannot take the alerts now: Alertmanager retries.
    #[error("{0}")]
    Unavailable(EngineError),
    #[error("the store is unavailable: {0}")]
    NotReady(EngineError),
    #[error("{0}")]
    NoPerson(AuthError),
    #[error("nobody can sign in: actions need `people` in the router's config")]
    NoPeople,
    #[error("{0} may not read incidents")]
    NotAViewer(String),
    /// A request a browser sent from another site (a forged form or script).
    #[error("cross-site request refused")]
    CrossSite,
    /// A form whose token is not the person's (forged, or served to someone else).
    #[error("this form was not served to you: reload the page")]
    FormToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    UnknownIncident(String),
    #[error("{0}")]
    NotOpen(String),
    /// A silence that cannot be.
    #[error("{0}")]
    BadSilence(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials | ApiError::BadCredentials | ApiError::NoPerson(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::NoPeople
            | ApiError::NotAViewer(_)
            | ApiError::CrossSite
            | ApiError::FormToken
            | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownIncident(_) => StatusCode::NOT_FOUND,
            ApiError::NotOpen(_) => StatusCode::CONFLICT,
            ApiError::BadSilence(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotJson(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MalformedJson(_) | ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAWebhook(_) | ApiError::InvalidWebhook(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            (status, axum::Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"stackgen-router\""),
            );
        }
        response
    }
}

/// A body that could not be read: over the limit (413), or not a valid HTTP body at all, such as
/// broken chunked encoding (400).
fn body_error(error: axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if current
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return ApiError::TooLarge(limit);
        }
        source = current.source();
    }
    ApiError::MalformedBody(error.to_string())
}

fn authorize(credentials: &Credentials, headers: &HeaderMap) -> Result<(), ApiError> {
    if !credentials.required() {
        return Ok(());
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let ok = match (
        scheme.to_ascii_lowercase().as_str(),
        &credentials.bearer,
        &credentials.basic,
    ) {
        ("bearer", Some(expected), _) => same(&digest(rest.trim().as_bytes()), expected),
        ("basic", _, Some(expected)) => base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .is_ok_and(|decoded| same(&digest(&decoded), expected)),
        _ => false,
    };
    if ok {
        Ok(())
    } else if value.is_empty() {
        Err(ApiError::MissingCredentials)
    } else {
        Err(ApiError::BadCredentials)
    }
}

async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = accept(&state, &headers, body).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status(),
    };
    state
        .metrics
        .webhooks
        .get_or_create(&labels(&[("code", status.as_str())]))
        .inc();
    match result {
        Ok(count) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "accepted", "alerts": count })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn accept(state: &AppState, headers: &HeaderMap, body: Body) -> Result<usize, ApiError> {
    authorize(&state.credentials, headers)?;
    let bytes = json_body(state, headers, body).await?;
    let payload: WebhookPayload =
        serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::NotAWebhook(e),
            _ => ApiError::MalformedJson(e),
        })?;
    let updates = payload
        .into_updates()
        .map_err(|e| ApiError::InvalidWebhook(e.to_string()))?;
    let alerts = updates
        .into_iter()
        .map(|u| super::ownership::classify(u, &state.ownership))
        .collect();
    state
        .engine
        .ingest(alerts)
        .await
        .map_err(ApiError::Unavailable)
}

/// A JSON body within the size limit and the body deadline.
async fn json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::NotJson(content_type.to_string()));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit) {
        return Err(ApiError::TooLarge(state.body_limit));
    }
    let bytes: Bytes = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.body_limit),
    )
    .await
    .map_err(|_| {
        state.metrics.body_timeouts.inc();
        ApiError::BodyTimeout(state.body_timeout.as_secs())
    })?
    .map_err(|error| body_error(error, state.body_limit))?;
    Ok(bytes)
}

/// The person a request comes from (see [`People::identify`]).
pub(super) fn person_of(
    state: &AppState,
    peer: Option<Peer>,
    headers: &HeaderMap,
) -> Result<Person, ApiError> {
    if !state.people.enabled() {
        return Err(ApiError::NoPeople);
    }
    let basic = basic_credentials(headers);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // A request that came through no listener (a test calling the app) has no trusted address.
    let address = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Peer(ip)| ip);
    state
        .people
        .identify(
            address,
            header,
            basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        )
        .map_err(ApiError::NoPerson)
}

/// The decoded `user:password` of an HTTP Basic `Authorization`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Refuses what a browser says came from another site: with `Sec-Fetch-Site` (every current
/// browser sends it), anything but `same-origin` or `none`; without it, an `Origin` whose host is
/// not the request's `Host`.
pub(super) fn same_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(ApiError::CrossSite),
        };
    }
    if let Some(origin) = text(header::ORIGIN) {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if text(header::HOST) != Some(origin_host) {
            return Err(ApiError::CrossSite);
        }
    }
    Ok(())
}

/// `{"incident": KEY}`, the body of an action.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionRequest {
    incident: String,
}

/// `POST /api/v1/incidents/{action}`: `acknowledge` or `unacknowledge`.
async fn incident_action(
    State(state): State<AppState>,
    axum::extract::Path(action): axum::extract::Path<String>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let kind = match action.as_str() {
        "acknowledge" => ActionKind::Acknowledge,
        "unacknowledge" => ActionKind::Unacknowledge,
        _ => return ApiError::NotFound(format!("/api/v1/incidents/{action}")).into_response(),
    };
    act(&state, kind, peer.map(|p| p.0), &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn act(
    state: &AppState,
    kind: ActionKind,
    peer: Option<Peer>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (person, bytes) = action_request(state, peer, headers, body).await?;
    let request: ActionRequest = serde_json::from_slice(&bytes).map_err(ApiError::MalformedJson)?;
    let key = request.incident;
    perform(state, &person, kind, key.clone()).await?;
    Ok(axum::Json(json!({"incident": key, "by": person.name})).into_response())
}

/// The person and the JSON body of an action: from this site only, signed in.
async fn action_request(
    state: &AppState,
    peer: Option<Peer>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Person, Bytes), ApiError> {
    same_site(headers)?;
    let person = person_of(state, peer, headers)?;
    let bytes = json_body(state, headers, body).await?;
    Ok((person, bytes))
}

/// Has the engine do `kind` as `person` (on the incident `key`, if it is about one).
pub(super) async fn perform(
    state: &AppState,
    person: &Person,
    kind: ActionKind,
    key: String,
) -> Result<(), ApiError> {
    let teams = state
        .people
        .responders
        .keys()
        .filter(|team| state.people.may_respond(person, team))
        .cloned()
        .collect();
    let action = Action {
        kind,
        key,
        by: person.name.clone(),
        teams,
    };
    match state.engine.act(action).await {
        Ok(()) => Ok(()),
        Err(EngineError::Forbidden { by, team }) => Err(ApiError::Forbidden(format!(
            "{by} is no responder of team {team}"
        ))),
        Err(EngineError::Refused(ActionError::Unknown(key))) => {
            Err(ApiError::UnknownIncident(format!("no incident `{key}`")))
        }
        Err(EngineError::Refused(e @ ActionError::NotOpen(_))) => {
            Err(ApiError::NotOpen(e.to_string()))
        }
        Err(EngineError::Silence(SilenceError::Unknown(id))) => {
            Err(ApiError::UnknownIncident(format!("no silence `{id}`")))
        }
        Err(EngineError::Silence(e)) => Err(ApiError::BadSilence(e.to_string())),
        Err(e) => Err(ApiError::Unavailable(e)),
    }
}

/// `POST /api/v1/silences`: matchers, when it starts (default now) and ends (or for how long),
/// and why.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceRequest {
    matchers: Vec<String>,
    /// RFC 3339; default: now.
    starts_at: Option<String>,
    /// RFC 3339; or `duration`.
    ends_at: Option<String>,
    /// A Prometheus duration from the start (`2h`).
    duration: Option<String>,
    comment: String,
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn millis_of(text: &str, field: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| ApiError::BadSilence(format!("{field} `{text}` is no RFC 3339 time: {e}")))
}

impl SilenceRequest {
    fn into_new(self, now: i64) -> Result<NewSilence, ApiError> {
        let starts_at = match &self.starts_at {
            Some(text) => millis_of(text, "starts_at")?,
            None => now,
        };
        let ends_at = match (&self.ends_at, &self.duration) {
            (Some(text), None) => millis_of(text, "ends_at")?,
            (None, Some(text)) => {
                let ms = crate::config_check::values::parse_duration_ms(text)
                    .map_err(|hint| ApiError::BadSilence(format!("duration `{text}`: {hint}")))?;
                starts_at.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
            }
            _ => {
                return Err(ApiError::BadSilence(
                    "give either ends_at or duration".into(),
                ));
            }
        };
        Ok(NewSilence {
            matchers: self.matchers,
            starts_at,
            ends_at,
            comment: self.comment,
        })
    }
}

async fn create_silence(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let created = async {
        let (person, bytes) = action_request(&state, peer.map(|p| p.0), &headers, body).await?;
        let request: SilenceRequest =
            serde_json::from_slice(&bytes).map_err(ApiError::MalformedJson)?;
        let silence = request.into_new(super::clock::now_ms())?;
        let id = format!("{:032x}", fastrand::u128(..));
        let kind = ActionKind::Silence {
            id: id.clone(),
            silence,
        };
        perform(&state, &person, kind, String::new()).await?;
        Ok::<_, ApiError>(axum::Json(json!({"silence": id, "by": person.name})).into_response())
    };
    created.await.unwrap_or_else(IntoResponse::into_response)
}

/// `{"silence": ID}`: the silence to end now.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireRequest {
    silence: String,
}

async fn expire_silence(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let expired = async {
        let (person, bytes) = action_request(&state, peer.map(|p| p.0), &headers, body).await?;
        let request: ExpireRequest =
            serde_json::from_slice(&bytes).map_err(ApiError::MalformedJson)?;
        let kind = ActionKind::Unsilence {
            id: request.silence.clone(),
        };
        perform(&state, &person, kind, String::new()).await?;
        Ok::<_, ApiError>(
            axum::Json(json!({"silence": request.silence, "by": person.name})).into_response(),
        )
    };
    expired.await.unwrap_or_else(IntoResponse::into_response)
}

/// Reads are for the webhook's credentials or a viewer.
fn authorize_read(
    state: &AppState,
    peer: Option<Peer>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Err(refused) = authorize(&state.credentials, headers) else {
        return Ok(());
    };
    // Not the webhook's credentials: a person who may view, if people sign in at all.
    if !state.people.enabled() {
        return Err(refused);
    }
    let person = person_of(state, peer, headers)?;
    if state.people.may_view(&person) {
        Ok(())
    } else {
        Err(ApiError::NotAViewer(person.name))
    }
}

async fn silences(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize_read(&state, peer.map(|p| p.0), &headers) {
        return e.into_response();
    }
    match state.engine.silences().await {
        Ok(silences) => axum::Json(json!({ "silences": silences })).into_response(),
        Err(e) => ApiError::Unavailable(e).into_response(),
    }
}

async fn incidents(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize_read(&state, peer.map(|p| p.0), &headers) {
        return e.into_response();
    }
    match state.engine.incidents().await {
        Ok(views) => axum::Json(json!({ "incidents": views })).into_response(),
        Err(e) => ApiError::Unavailable(e).into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => ApiError::NotReady(e).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::router::engine::Engine;
    use crate::router::store::failing::FailingStore;

    #[tokio::test]
    async fn an_unavailable_store_answers_503_so_alertmanager_retries() {
        let config = crate::router::config::parse(
            "r.yaml",
            "auth: {bearer_token: t}\nteams:\n  a:\n    destinations:\n      - kind: log\nownership: {default_team: a}\n",
            std::path::Path::new("."),
        )
        .expect("valid config");
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(
            Box::new(FailingStore),
            Arc::new(config),
            metrics.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .expect("engine");
        let (handle, _thread) = engine.spawn().expect("spawn");
        let app = app(AppState {
            engine: handle,
            ownership: Arc::new(Default::default()),
            credentials: Arc::new(Credentials::new(Some("t"), None)),
            people: Arc::new(People::default()),
            form_key: [7; 32],
            grafana_url: None,
            body_limit: 1 << 20,
            body_timeout: std::time::Duration::from_secs(15),
            metrics,
        });
        let body = include_str!(
            "../../tests/fixtures/alertmanager-webhook/01-one-service-three-instances-firing.body.json"
        );
        let request = Request::post("/api/v1/alertmanager")
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer t")
            .body(Body::from(body))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready = app
            .oneshot(
                Request::get("/readyz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// A router on an embedded store whose team `payments-team` has the responder dana (users
    /// file) and whose proxy at 10.1.0.0/16 names people; vic (group sre) only views. Checkout's
    /// storm is stored; the incident's key is returned.
    async fn router_with_people(dir: &std::path::Path) -> (Router, String) {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        std::fs::write(dir.join("users"), format!("dana:{hash}\n")).expect("users file");
        let text = format!(
            "auth: {{bearer_token: t}}\nstore: {{path: {}}}\nteams:\n  payments-team:\n    destinations:\n      - kind: log\nownership: {{default_team: payments-team}}\npeople:\n  users_file: users\n  proxy: {{trusted: [10.1.0.0/16]}}\n  viewers: [\"group:sre\"]\n  responders:\n    payments-team: [dana]\n",
            dir.join("router.db").display()
        );
        let config = crate::router::config::parse("r.yaml", &text, dir).expect("valid config");
        let store = crate::router::store::sqlite::SqliteStore::open(
            &config.store_path,
            crate::router::store::sqlite::SqliteOptions {
                sync_full: false,
                auto_checkpoint: true,
            },
        )
        .expect("store");
        let metrics = Arc::new(Metrics::new());
        let people = Arc::new(config.people.clone());
        let ownership = Arc::new(config.ownership.clone());
        let engine = Engine::new(
            Box::new(store),
            Arc::new(config),
            metrics.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .expect("engine");
        let (handle, _thread) = engine.spawn().expect("spawn");
        let app = app(AppState {
            engine: handle,
            ownership,
            credentials: Arc::new(Credentials::new(Some("t"), None)),
            people,
            form_key: [7; 32],
            grafana_url: None,
            body_limit: 1 << 20,
            body_timeout: std::time::Duration::from_secs(15),
            metrics,
        });
        let body = include_str!(
            "../../tests/fixtures/alertmanager-webhook/01-one-service-three-instances-firing.body.json"
        );
        let stored = app
            .clone()
            .oneshot(
                Request::post("/api/v1/alertmanager")
                    .header("Content-Type", "application/json")
                    .header("Authorization", "Bearer t")
                    .body(Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(stored.status(), StatusCode::OK);
        let (_, listed) = send(
            &app,
            Request::get("/api/v1/incidents").header("Authorization", "Bearer t"),
        )
        .await;
        let key = listed["incidents"][0]["key"]
            .as_str()
            .expect("an incident")
            .to_string();
        (app, key)
    }

    async fn send(
        app: &Router,
        request: axum::http::request::Builder,
    ) -> (StatusCode, serde_json::Value) {
        let request = request.body(Body::empty()).expect("request");
        send_request(app, request).await
    }

    async fn send_request(app: &Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// An acknowledgement of `key` from `peer`, with `headers`, as JSON unless one says otherwise.
    fn ack_request(key: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::post("/api/v1/incidents/acknowledge");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder
            .body(Body::from(json!({ "incident": key }).to_string()))
            .expect("request");
        request
            .extensions_mut()
            .insert(Peer(peer.parse().expect("address")));
        request
    }

    #[tokio::test]
    async fn only_a_responder_of_the_team_acknowledges_and_no_other_site_can_make_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, key) = router_with_people(dir.path()).await;
        let proxy = "10.1.0.5";
        let dana_via_proxy = ("X-Forwarded-User", "dana");
        let basic = |user: &str, password: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        };
        // Forged: a cross-site form (no JSON), a script from another site, another Origin.
        for (headers, status) in [
            (
                vec![
                    dana_via_proxy,
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                vec![dana_via_proxy, ("Sec-Fetch-Site", "cross-site")],
                StatusCode::FORBIDDEN,
            ),
            (
                vec![
                    dana_via_proxy,
                    ("Host", "router.example"),
                    ("Origin", "https://evil.example"),
                ],
                StatusCode::FORBIDDEN,
            ),
        ] {
            let (got, reason) = send_request(&app, ack_request(&key, proxy, &headers)).await;
            assert_eq!(got, status, "{headers:?}: {reason}");
            assert!(reason["error"].is_string());
        }
        // Nobody, a wrong password, a proxy header from elsewhere, a viewer.
        let vic = [("X-Forwarded-User", "vic"), ("X-Forwarded-Groups", "sre")];
        let wrong = basic("dana", "guess");
        for (peer, headers, status) in [
            ("192.0.2.7", vec![], StatusCode::UNAUTHORIZED),
            (
                "192.0.2.7",
                vec![("Authorization", wrong.as_str())],
                StatusCode::UNAUTHORIZED,
            ),
            ("192.0.2.7", vec![dana_via_proxy], StatusCode::UNAUTHORIZED),
            (proxy, vic.to_vec(), StatusCode::FORBIDDEN),
        ] {
            let (got, reason) = send_request(&app, ack_request(&key, peer, &headers)).await;
            assert_eq!(got, status, "{peer} {headers:?}: {reason}");
        }
        let viewer = Request::get("/api/v1/incidents")
            .header("X-Forwarded-User", "vic")
            .header("X-Forwarded-Groups", "sre");
        let mut viewer = viewer.body(Body::empty()).expect("request");
        viewer
            .extensions_mut()
            .insert(Peer(proxy.parse().expect("address")));
        let (status, listed) = send_request(&app, viewer).await;
        assert_eq!(status, StatusCode::OK, "a viewer reads");
        assert!(listed["incidents"][0].get("acknowledged").is_none());
        // dana, with the users file's password from anywhere, or named by the proxy.
        let good = basic("dana", "s3cret");
        let (status, answer) = send_request(
            &app,
            ack_request(
                &key,
                "192.0.2.7",
                &[
                    ("Authorization", good.as_str()),
                    ("Origin", "http://router.example"),
                    ("Host", "router.example"),
                ],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, json!({"incident": key, "by": "dana"}));
        let (_, listed) = send(
            &app,
            Request::get("/api/v1/incidents").header("Authorization", "Bearer t"),
        )
        .await;
        assert_eq!(listed["incidents"][0]["acknowledged"]["by"], "dana");
        let (status, _) = send_request(
            &app,
            ack_request("payments-team/nothing/A", proxy, &[dana_via_proxy]),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// A JSON POST to `path` from `peer`, named `user` by the proxy.
    fn proxied_post(path: &str, peer: &str, user: &str, body: serde_json::Value) -> Request<Body> {
        let mut request = Request::post(path)
            .header("Content-Type", "application/json")
            .header("X-Forwarded-User", user)
            .body(Body::from(body.to_string()))
            .expect("request");
        request
            .extensions_mut()
            .insert(Peer(peer.parse().expect("address")));
        request
    }

    #[tokio::test]
    async fn a_responder_silences_their_own_team_and_ends_the_silence() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, _) = router_with_people(dir.path()).await;
        let proxy = "10.1.0.5";
        let silence = |matchers: &[&str]| json!({"matchers": matchers, "duration": "2h", "comment": "database upgrade"});
        let mine = silence(&[r#"team="payments-team""#, r#"service="checkout""#]);
        for (user, body, status) in [
            ("vic", mine.clone(), StatusCode::FORBIDDEN),
            (
                "dana",
                silence(&[r#"service="checkout""#]),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "dana",
                silence(&[r#"team="search""#]),
                StatusCode::FORBIDDEN,
            ),
            (
                "dana",
                json!({"matchers": [r#"team="payments-team""#], "comment": "no end"}),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (got, reason) = send_request(
                &app,
                proxied_post("/api/v1/silences", proxy, user, body.clone()),
            )
            .await;
            assert_eq!(got, status, "{user} {body}: {reason}");
            assert!(reason["error"].is_string());
        }
        let (status, created) =
            send_request(&app, proxied_post("/api/v1/silences", proxy, "dana", mine)).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let id = created["silence"].as_str().expect("an id").to_string();
        let (_, listed) = send(
            &app,
            Request::get("/api/v1/silences").header("Authorization", "Bearer t"),
        )
        .await;
        let stored = &listed["silences"][0];
        assert_eq!(stored["id"], id.as_str());
        assert_eq!(stored["created_by"], "dana");
        assert_eq!(stored["comment"], "database upgrade");
        let hours = (stored["ends_at"].as_i64().unwrap_or(0)
            - stored["starts_at"].as_i64().unwrap_or(0))
            / 3_600_000;
        assert_eq!(hours, 2);
        let expire = |id: &str| {
            proxied_post(
                "/api/v1/silences/expire",
                proxy,
                "dana",
                json!({"silence": id}),
            )
        };
        let (status, _) = send_request(&app, expire(&id)).await;
        assert_eq!(status, StatusCode::OK);
        let (_, listed) = send(
            &app,
            Request::get("/api/v1/silences").header("Authorization", "Bearer t"),
        )
        .await;
        assert_eq!(listed["silences"][0]["expired_by"], "dana");
        let (status, _) = send_request(&app, expire("nothing")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// A request from the proxy naming `user`.
    fn proxied(builder: axum::http::request::Builder, user: &str, body: Body) -> Request<Body> {
        let mut request = builder
            .header("X-Forwarded-User", user)
            .body(body)
            .expect("request");
        request
            .extensions_mut()
            .insert(Peer("10.1.0.5".parse().expect("address")));
        request
    }

    async fn page(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .expect("body");
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_page_shows_a_viewer_the_incidents_and_takes_a_responders_form_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, key) = router_with_people(dir.path()).await;
        // Nobody: the browser is asked to sign in.
        let (status, headers, _) = page(
            &app,
            Request::get("/incidents")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap_or("")
                .starts_with("Basic ")
        );
        // A viewer reads, under a policy that allows nothing but the page's own.
        let (status, _, body) = page(
            &app,
            proxied(Request::get("/incidents"), "vic", Body::empty()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "vic has no group sre here: {body}"
        );
        let viewer = |builder| {
            let mut request = proxied(builder, "vic", Body::empty());
            request
                .headers_mut()
                .insert("x-forwarded-groups", HeaderValue::from_static("sre"));
            request
        };
        let (status, headers_ok, body) = page(&app, viewer(Request::get("/incidents"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers_ok[header::CONTENT_SECURITY_POLICY],
            page::CONTENT_SECURITY_POLICY
        );
        assert!(
            body.contains("checkout") && body.contains("3 of 3"),
            "{body}"
        );
        assert!(
            !body.contains("<form method=\"post\""),
            "a viewer gets no button"
        );
        let view = format!("/incidents/view?key={}", page_query(&key));
        let (status, _, body) = page(&app, viewer(Request::get(view.as_str()))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains("Acknowledge</button>"));
        // The responder's page has the form; its token is theirs.
        let (_, _, body) = page(
            &app,
            proxied(Request::get(view.as_str()), "dana", Body::empty()),
        )
        .await;
        assert!(body.contains("Acknowledge</button>"), "{body}");
        let token = page_routes::form_token(&[7; 32], "dana");
        assert!(body.contains(&token));
        let form = |user: &str, token: &str, extra: &[(&str, &str)]| {
            let body = format!("incident={}&csrf={token}", page_query(&key));
            let mut builder = Request::post("/incidents/acknowledge")
                .header("Content-Type", "application/x-www-form-urlencoded");
            for (name, value) in extra {
                builder = builder.header(*name, *value);
            }
            proxied(builder, user, Body::from(body))
        };
        let vic_token = page_routes::form_token(&[7; 32], "vic");
        for (request, status) in [
            (form("dana", "forged", &[]), StatusCode::FORBIDDEN),
            (form("dana", &vic_token, &[]), StatusCode::FORBIDDEN),
            (
                form("dana", &token, &[("Sec-Fetch-Site", "cross-site")]),
                StatusCode::FORBIDDEN,
            ),
            (form("vic", &vic_token, &[]), StatusCode::FORBIDDEN),
        ] {
            let (got, _, body) = page(&app, request).await;
            assert_eq!(got, status, "{body}");
        }
        let (status, headers, _) = page(
            &app,
            form("dana", &token, &[("Sec-Fetch-Site", "same-origin")]),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            headers[header::LOCATION]
                .to_str()
                .unwrap_or("")
                .starts_with("/incidents/view?key=")
        );
        let (_, _, body) = page(
            &app,
            proxied(Request::get(view.as_str()), "dana", Body::empty()),
        )
        .await;
        assert!(body.contains("Acknowledged by dana"), "{body}");
        assert!(body.contains("Unacknowledge</button>"));
        let (status, headers, css) = page(
            &app,
            Request::get(page::STYLE_PATH)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(css.contains("@media"));
    }

    fn page_query(text: &str) -> String {
        serde_urlencoded::to_string([("k", text)])
            .unwrap_or_default()
            .trim_start_matches("k=")
            .to_string()
    }
}
