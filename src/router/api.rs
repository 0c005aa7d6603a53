//! The HTTP surface: the Alertmanager webhook, the incidents API, health, readiness and metrics.
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
use super::engine::{EngineError, EngineHandle};
use super::metrics::{Metrics, labels};

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
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
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

async fn incidents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state.credentials, &headers) {
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
    use axum::http::Request;
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
}
