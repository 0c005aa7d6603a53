//! The incidents page over HTTP: the pages a viewer reads and the forms a responder posts.
//!
//! Every page and form needs a person (`people`); a browser without one is asked for HTTP Basic
//! credentials of the users file. Forms carry a token bound to the person (an HMAC of their
//! name under a key the replicas share), and a post a browser marks as from another site is
//! refused, so a forged form elsewhere cannot act in someone's name. Pages are sent with a strict
//! Content-Security-Policy (the page's own stylesheet and forms, nothing else).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::api::{ApiError, AppState, perform, person_of, same_site};
use super::edge::Peer;
use super::engine::ActionKind;
use super::page::{self, Filter, Viewer};
use super::people::Person;
use super::silence::NewSilence;

/// HMAC-SHA256 of `message` under `key`.
fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The token a person's forms carry.
pub fn form_token(key: &[u8; 32], person: &str) -> String {
    hmac(key, person.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn html(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    response
}

/// What every page and refusal is sent with.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A refusal as a short page; one without a person asks the browser to sign in.
fn refusal(error: ApiError) -> Response {
    let status = error.status();
    let mut response = (
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title></head><body><p>{}</p></body></html>\n",
            page::escape(&error.to_string())
        ),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"stackgen incidents\", charset=\"UTF-8\""),
        );
    }
    response
}

/// The person on the page, who must be a viewer.
fn viewer_of(
    state: &AppState,
    peer: Option<Peer>,
    headers: &HeaderMap,
) -> Result<Person, ApiError> {
    let person = person_of(state, peer, headers)?;
    if state.people.may_view(&person) {
        Ok(person)
    } else {
        Err(ApiError::NotAViewer(person.name))
    }
}

/// What a page needs of the person looking at it: the teams they act for, their form token.
struct Looking<'p> {
    name: &'p str,
    teams: Vec<String>,
    token: String,
}

impl<'p> Looking<'p> {
    fn of(state: &AppState, person: &'p Person) -> Looking<'p> {
        Looking {
            name: &person.name,
            teams: state
                .people
                .responders
                .keys()
                .filter(|team| state.people.may_respond(person, team))
                .cloned()
                .collect(),
            token: form_token(&state.form_key, &person.name),
        }
    }

    fn viewer<'a>(&'a self, state: &'a AppState) -> Viewer<'a> {
        Viewer {
            name: self.name,
            responds_for: &self.teams,
            form_token: &self.token,
            grafana_url: state.grafana_url.as_deref(),
        }
    }
}

pub async fn stylesheet() -> Response {
    let mut response = page::STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub async fn incidents_page(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Query(filter): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let shown = async {
        let person = viewer_of(&state, peer.map(|p| p.0), &headers)?;
        let views = state
            .engine
            .incidents()
            .await
            .map_err(ApiError::Unavailable)?;
        let filter = Filter {
            team: filter.get("team").cloned(),
            service: filter.get("service").cloned(),
            severity: filter.get("severity").cloned(),
        };
        let looking = Looking::of(&state, &person);
        let viewer = looking.viewer(&state);
        Ok::<_, ApiError>(html(page::incidents(&views, &filter, &viewer)))
    };
    shown.await.unwrap_or_else(refusal)
}

pub async fn incident_page(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let shown = async {
        let person = viewer_of(&state, peer.map(|p| p.0), &headers)?;
        let key = query.get("key").cloned().unwrap_or_default();
        let views = state
            .engine
            .incidents()
            .await
            .map_err(ApiError::Unavailable)?;
        let view = views
            .iter()
            .find(|v| v.incident.key == key)
            .ok_or_else(|| ApiError::UnknownIncident(format!("no open incident `{key}`")))?;
        let silences = state
            .engine
            .silences()
            .await
            .map_err(ApiError::Unavailable)?;
        let looking = Looking::of(&state, &person);
        let viewer = looking.viewer(&state);
        let now = super::clock::now_ms();
        Ok::<_, ApiError>(html(page::incident(view, &silences, &viewer, now)))
    };
    shown.await.unwrap_or_else(refusal)
}

pub async fn silences_page(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let shown = async {
        let person = viewer_of(&state, peer.map(|p| p.0), &headers)?;
        let silences = state
            .engine
            .silences()
            .await
            .map_err(ApiError::Unavailable)?;
        let looking = Looking::of(&state, &person);
        let viewer = looking.viewer(&state);
        Ok::<_, ApiError>(html(page::silences(
            &silences,
            &viewer,
            super::clock::now_ms(),
        )))
    };
    shown.await.unwrap_or_else(refusal)
}

/// A form's fields, once the post is from this site, by a person, with their token.
async fn form(
    state: &AppState,
    peer: Option<Peer>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Person, BTreeMap<String, String>), ApiError> {
    same_site(headers)?;
    let person = person_of(state, peer, headers)?;
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let fields: BTreeMap<String, String> =
        serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let expected = form_token(&state.form_key, &person.name);
    let given = fields.get("csrf").map(String::as_str).unwrap_or("");
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(ApiError::FormToken);
    }
    Ok((person, fields))
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn back_to(key: &str) -> String {
    let encoded: String = serde_urlencoded::to_string([("key", key)]).unwrap_or_default();
    format!("/incidents/view?{encoded}")
}

pub async fn post_action(
    State(state): State<AppState>,
    axum::extract::Path(action): axum::extract::Path<String>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let done = async {
        let (person, fields) = form(&state, peer.map(|p| p.0), &headers, body).await?;
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        match action.as_str() {
            "acknowledge" | "unacknowledge" => {
                let kind = if action == "acknowledge" {
                    ActionKind::Acknowledge
                } else {
                    ActionKind::Unacknowledge
                };
                let key = field("incident");
                perform(&state, &person, kind, key.clone()).await?;
                Ok(see_other(&back_to(&key)))
            }
            "silence" => {
                let now = super::clock::now_ms();
                let starts_at = match field("starts_at").trim() {
                    "" => now,
                    text => chrono::DateTime::parse_from_rfc3339(text)
                        .map(|t| t.timestamp_millis())
                        .map_err(|e| {
                            ApiError::BadSilence(format!("`{text}` is no RFC 3339 time: {e}"))
                        })?,
                };
                let duration = field("duration");
                let ms = crate::config_check::values::parse_duration_ms(duration.trim()).map_err(
                    |hint| ApiError::BadSilence(format!("duration `{duration}`: {hint}")),
                )?;
                let silence = NewSilence {
                    matchers: field("matchers")
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect(),
                    starts_at,
                    ends_at: starts_at.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)),
                    comment: field("comment"),
                };
                let id = format!("{:032x}", fastrand::u128(..));
                perform(
                    &state,
                    &person,
                    ActionKind::Silence { id, silence },
                    String::new(),
                )
                .await?;
                Ok(see_other("/incidents/silences"))
            }
            "unsilence" => {
                let id = field("silence");
                perform(&state, &person, ActionKind::Unsilence { id }, String::new()).await?;
                Ok(see_other("/incidents/silences"))
            }
            _ => Err(ApiError::NotFound(format!("/incidents/{action}"))),
        }
    };
    done.await.unwrap_or_else(refusal)
}
