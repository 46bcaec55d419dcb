//! The HTTP API under `/api/v1`, one file per resource. Handlers parse at the edge,
//! call one operation of [`Broker`], and map its error to `{"code", "message"}` with a
//! stable code; who may do what is decided by the operation (through the rules in
//! `firedoor_core::access`), never here. Nothing a client sends can produce a panic
//! or leak an internal error's text.
//!
//! This file holds what every resource shares: the router, the caller extractors
//! ([`Caller`], [`Authed`]), strict JSON bodies ([`Body`], [`Required`]), the error
//! type ([`ApiError`]) and the middleware that turns every error answer into JSON.
//! The probes and `/metrics` are wrapped around the router by [`crate::probes`].

mod audit;
mod broker;
mod devices;
mod drills;
mod events;
mod grants;
mod incidents;
mod notifications;
mod oncall;
mod reports;
mod requests;
mod secrets;
mod ssh;
mod sso;
mod users;
// issue 14: uses
mod uses;

use crate::error::Error;
use crate::service::Broker;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use firedoor_core::api::ErrorBody;
use firedoor_core::policy::Principal;
use firedoor_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Body limit of an unlock-chain upload: 1000 records with a full-length reason are
/// about 1.3 MB; the app sends at most [`UNLOCKS_BATCH_BYTES`] per upload, so a
/// backlog of records with long non-ASCII reasons is split, never stuck.
pub const UNLOCKS_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Body limit of incident webhooks (an Alertmanager group of many alerts).
pub const HOOK_BODY_LIMIT: usize = 1024 * 1024;
pub use firedoor_core::breakglass::UNLOCKS_BATCH_BYTES;
/// Body limit of `PUT /secrets/{name}` (a 64 KiB value, JSON-escaped).
pub const SECRET_BODY_LIMIT: usize = 512 * 1024;

pub type AppState = Arc<Broker>;

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Rule(r) => ApiError::new(r.code, r.message),
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    ErrorCode::Internal,
                    "internal error; the broker's log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(ErrorBody {
                code: self.code.as_str().to_string(),
                message: self.message,
            }),
        )
            .into_response();
        if self.code == ErrorCode::Unauthenticated {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The signed-in caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authed(s) = Authed::from_request_parts(parts, state).await?;
        Ok(Caller(s.principal))
    }
}

/// The signed-in caller and the token they came with (sign-out, event streams).
pub struct Authed(pub crate::auth::Session);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauth = |m: &str| ApiError::new(ErrorCode::Unauthenticated, m);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauth("sign in: send Authorization: Bearer <token>"))?;
        let text = value
            .to_str()
            .map_err(|_| unauth("malformed Authorization header"))?;
        let token = text
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauth("the Authorization header must be 'Bearer <token>'"))?;
        let now = state.now();
        match crate::auth::authenticate_session(&state.store, token.trim(), now).await? {
            Some(mut s) => {
                // Who is on call now is part of who the caller is for every check.
                let version = s.directory_version;
                state
                    .with_on_call_as_of(&mut s.principal, now, version)
                    .await?;
                Ok(Authed(s))
            }
            None => Err(unauth(
                "the token is not valid, has expired or has been revoked",
            )),
        }
    }
}

/// A JSON body, strictly parsed. An empty body reads as the type's default.
pub struct Body<T>(pub T);

/// A JSON body that must be there.
pub struct Required<T>(pub T);

/// Reads and parses a JSON body; `None` if it is empty.
async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Option<T>, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "request body is larger than this endpoint accepts",
            )
        } else {
            ApiError::new(ErrorCode::InvalidRequest, "could not read the request body")
        }
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    if is_json != Some(true) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::InvalidJson
        };
        // serde's messages name the field and the expected type, never echo values
        // beyond a short excerpt; bodies with secrets are checked by their handler.
        ApiError::new(code, format!("request body: {e}"))
    })
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Body(read_json(req, state).await?.unwrap_or_default()))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Required<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state).await?.map(Required).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "this endpoint needs a JSON body (see /api/v1/openapi.json)",
            )
        })
    }
}

fn parse_id<T: std::str::FromStr>(text: &str) -> ApiResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| ApiError::new(ErrorCode::NotFound, format!("{e}")))
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(broker::health))
        .route("/openapi.json", get(broker::openapi))
        .route("/me", get(users::me))
        .route("/auth/sso/start", post(sso::start))
        .route("/auth/sso/session", post(sso::session))
        .route("/auth/sso/refresh", post(sso::refresh))
        .route("/incidents", get(incidents::list))
        .route(
            "/hooks/alertmanager/{source}",
            post(incidents::alertmanager)
                .layer(axum::extract::DefaultBodyLimit::max(HOOK_BODY_LIMIT)),
        )
        .route(
            "/hooks/opsgenie/{source}",
            post(incidents::opsgenie).layer(axum::extract::DefaultBodyLimit::max(HOOK_BODY_LIMIT)),
        )
        .route(
            "/hooks/pagerduty/{source}",
            post(incidents::pagerduty).layer(axum::extract::DefaultBodyLimit::max(HOOK_BODY_LIMIT)),
        )
        .route("/notifications/deliveries", get(notifications::deliveries))
        .route(
            "/notifications/deliveries/{id}/retry",
            post(notifications::retry),
        )
        .route("/oncall", get(oncall::schedules))
        .route("/oncall/{schedule}/overrides", post(oncall::add_override))
        .route(
            "/oncall/{schedule}/overrides/{id}",
            delete(oncall::remove_override),
        )
        .route("/bundles", get(broker::bundles))
        .route(
            "/requests",
            get(requests::list_requests).post(requests::create_request),
        )
        .route("/requests/{id}", get(requests::get_request))
        .route("/requests/{id}/approve", post(requests::approve))
        .route("/requests/{id}/deny", post(requests::deny))
        .route("/requests/{id}/cancel", post(requests::cancel))
        .route("/grants", get(grants::list_grants))
        .route("/grants/{id}", get(grants::get_grant))
        .route("/grants/{id}/credentials", get(grants::credentials))
        .route("/grants/{id}/revoke", post(grants::revoke))
        .route("/grants/{id}/extend", post(grants::extend))
        .route("/grants/{id}/ssh-certificate", post(ssh::certificate))
        .route("/ssh/krl", get(ssh::krl))
        .route("/ssh/{integration}/ca", get(ssh::ca_keys))
        .route("/audit", get(audit::audit))
        .route("/audit/sinks", get(audit::audit_sinks))
        .route("/audit/head", get(audit::audit_head))
        .route("/audit/heads/{seq}", get(audit::audit_head_at))
        .route("/events", get(events::events))
        .route("/me/token", delete(users::revoke_my_token))
        .route("/users/{name}/disable", post(users::disable_user))
        .route("/users/{name}/groups", put(users::set_user_groups))
        .route("/broker", get(broker::broker_identity))
        .route(
            "/devices",
            get(devices::list_devices).post(devices::register_device),
        )
        .route("/devices/{id}", delete(devices::revoke_device))
        .route("/devices/{id}/envelopes", get(devices::device_envelopes))
        .route(
            "/devices/{id}/unlocks",
            post(devices::upload_unlocks)
                .layer(axum::extract::DefaultBodyLimit::max(UNLOCKS_BODY_LIMIT)),
        )
        .route("/secrets", get(secrets::list_secrets))
        .route(
            "/secrets/{name}",
            put(secrets::put_secret).layer(axum::extract::DefaultBodyLimit::max(SECRET_BODY_LIMIT)),
        )
        .route("/secrets/{name}/rotate", post(secrets::rotate_secret))
        .route("/secrets/{name}/unlock", post(secrets::online_unlock))
        // issue 14: drills
        .route("/drills", get(drills::list).post(drills::start))
        .route("/drills/{id}/answers", post(drills::answer))
        .route("/devices/{id}/drills", get(drills::pending))
        .route("/readiness", get(drills::readiness))
        // issue 14: uses
        .route("/unlocks", get(uses::list))
        .route("/unlocks/{id}/classify", post(uses::classify))
        // issue 14: report
        .route(
            "/reports/verify",
            post(reports::verify).layer(axum::extract::DefaultBodyLimit::max(
                reports::REPORT_BODY_LIMIT,
            )),
        )
        .route("/reports/{kind}/{id}", get(reports::report));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(
                ErrorCode::Internal,
                "internal error; the broker's log has the details",
            )
            .into_response()
        }))
        .with_state(state)
}

/// Every error answer is `{code, message}` JSON, also those that axum's own
/// extractors produce before a handler runs (a path parameter that is not UTF-8, a
/// malformed query string): their plain text becomes the message.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = match code {
        ErrorCode::Internal => "internal error; the broker's log has the details".to_string(),
        _ if text.trim().is_empty() => status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string(),
        _ => text.trim().chars().take(300).collect(),
    };
    let mut out = ApiError::new(code, message).into_response();
    // Keep the status axum chose (e.g. 400 for a bad path) even if the code maps elsewhere.
    *out.status_mut() = status;
    out
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; the API lives under /api/v1 (see /api/v1/openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("query string: {}", e.body_text()),
        )
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

// ---------------------------------------------------------------- break glass

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
