//! The HTTP API under `/api/v1`. Handlers parse at the edge, call [`Broker`], and map
//! errors to `{"code", "message"}` with a stable code. Nothing a client sends can
//! produce a panic or leak an internal error's text.

use crate::error::Error;
use crate::service::Broker;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use firedoor_core::api::{BundleView, ErrorBody, FlowTerms, Health, Me};
use firedoor_core::breakglass::{
    BrokerIdentity, DeviceView, OnlineUnlock, PutSecret, RegisterDevice, SecretView, UploadUnlocks,
};
use firedoor_core::lifecycle::RequestState;
use firedoor_core::policy::Principal;
use firedoor_core::{ErrorCode, GrantId, RequestId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Body limit of an unlock-chain upload: 1000 records with a full-length reason are
/// about 1.3 MB; the app sends at most [`UNLOCKS_BATCH_BYTES`] per upload, so a
/// backlog of records with long non-ASCII reasons is split, never stuck.
pub const UNLOCKS_BODY_LIMIT: usize = 2 * 1024 * 1024;
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
        match crate::auth::authenticate_session(&state.store, token.trim(), state.now()).await? {
            Some(s) => Ok(Authed(s)),
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
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/me", get(me))
        .route("/bundles", get(bundles))
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/grants", get(list_grants))
        .route("/grants/{id}", get(get_grant))
        .route("/grants/{id}/credentials", get(credentials))
        .route("/grants/{id}/revoke", post(revoke))
        .route("/grants/{id}/extend", post(extend))
        .route("/audit", get(audit))
        .route("/audit/head", get(audit_head))
        .route("/audit/heads/{seq}", get(audit_head_at))
        .route("/events", get(events))
        .route("/me/token", delete(revoke_my_token))
        .route("/users/{name}/disable", post(disable_user))
        .route("/users/{name}/groups", put(set_user_groups))
        .route("/broker", get(broker_identity))
        .route("/devices", get(list_devices).post(register_device))
        .route("/devices/{id}", delete(revoke_device))
        .route("/devices/{id}/envelopes", get(device_envelopes))
        .route(
            "/devices/{id}/unlocks",
            post(upload_unlocks).layer(axum::extract::DefaultBodyLimit::max(UNLOCKS_BODY_LIMIT)),
        )
        .route("/secrets", get(list_secrets))
        .route(
            "/secrets/{name}",
            put(put_secret).layer(axum::extract::DefaultBodyLimit::max(SECRET_BODY_LIMIT)),
        )
        .route("/secrets/{name}/rotate", post(rotate_secret))
        .route("/secrets/{name}/unlock", post(online_unlock));
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

async fn health(State(b): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time: b.now(),
    })
}

async fn openapi(State(b): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(&b.policy),
    )
        .into_response()
}

async fn me(State(b): State<AppState>, Caller(p): Caller) -> Json<Me> {
    Json(Me {
        name: p.name,
        groups: p.groups,
        admin: p.admin,
        time: b.now(),
    })
}

async fn bundles(State(b): State<AppState>, Caller(p): Caller) -> Json<Vec<BundleView>> {
    Json(
        b.policy
            .requestable_by(&p)
            .map(|(bundle, f)| BundleView {
                name: bundle.name.clone(),
                title: bundle.title.clone(),
                description: bundle.description.clone(),
                tags: bundle.tags.clone(),
                resources: bundle.resources.clone(),
                terms: FlowTerms {
                    flow: f.name.clone(),
                    approvals: f.approvals,
                    default_duration_secs: f.default_duration_secs,
                    max_duration_secs: f.max_duration_secs,
                    justification_required: f.justification_required,
                    ticket_required: f.ticket_required,
                    pending_ttl_secs: f.pending_ttl_secs,
                    break_glass: f.break_glass,
                },
            })
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    scope: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("query string: {}", e.body_text()),
        )
    })
}

async fn list_requests(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<RequestQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("'{s}' is not a request state"),
            )
        })?),
    };
    let list = b
        .list_requests(
            &p,
            q.scope.as_deref().unwrap_or("mine"),
            state,
            q.limit.unwrap_or(200),
        )
        .await?;
    Ok(Json(list).into_response())
}

async fn create_request(
    State(b): State<AppState>,
    Caller(p): Caller,
    headers: HeaderMap,
    Body(body): Body<firedoor_core::api::CreateRequest>,
) -> ApiResult<Response> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    if body.bundle.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "name the bundle to request: {\"bundle\": \"...\"}",
        ));
    }
    let (view, created) = b.create_request(&p, body, key).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn get_request(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.get_request(&p, &id.to_string()).await?).into_response())
}

async fn approve(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(body): Body<firedoor_core::api::ApproveBody>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.approve(&p, &id.to_string(), body).await?).into_response())
}

async fn deny(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(body): Body<firedoor_core::api::DenyBody>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.deny(&p, &id.to_string(), body).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn cancel(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.cancel(&p, &id.to_string()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantQuery {
    scope: Option<String>,
    /// `live` (default: all states).
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_grants(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let live = match q.state.as_deref() {
        None => false,
        Some("live") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("state '{other}': only 'live' filters grants"),
            ))
        }
    };
    let list = b
        .list_grants(
            &p,
            q.scope.as_deref().unwrap_or("mine"),
            live,
            q.limit.unwrap_or(200),
        )
        .await?;
    Ok(Json(list).into_response())
}

async fn get_grant(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.get_grant(&p, &id.to_string()).await?).into_response())
}

async fn credentials(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    let creds = b.credentials(&p, &id.to_string()).await?;
    let mut resp = Json(creds).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

async fn revoke(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.revoke(&p, &id.to_string()).await?).into_response())
}

async fn extend(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(body): Body<firedoor_core::api::ExtendBody>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.extend(&p, &id.to_string(), body).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    if !p.admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the audit log is for admins",
        ));
    }
    let q = query(q)?;
    let records = crate::audit::records(
        &b.store,
        q.after.unwrap_or(0).max(0),
        q.limit.unwrap_or(500).clamp(1, 5000),
    )
    .await?;
    Ok(Json(records).into_response())
}

/// Server-sent events for the caller, resumable with `Last-Event-ID`. The stream
/// ends within about [`crate::access::STREAM_RECHECK`] of its token being revoked or
/// expiring, or its user being disabled (see [`crate::access::watch_store`]); a user has at most
/// [`crate::access::MAX_STREAMS_PER_USER`] streams open.
async fn events(
    State(b): State<AppState>,
    Authed(session): Authed,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = session.principal;
    let token_hash = session.token_hash;
    let mut cursor: i64 = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "Last-Event-ID must be a non-negative integer",
                )
            })?,
    };
    let slot = b.access.open_stream(&p.name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TooManyStreams,
            format!(
                "{} event streams are already open for {}; close one first",
                crate::access::MAX_STREAMS_PER_USER,
                p.name
            ),
        )
    })?;
    // Resuming below what was pruned: say so first (the client reloads its state),
    // then carry on after the gap.
    let pruned = b.store.events().pruned_through().await?;
    let resync = (cursor > 0 && cursor < pruned).then(|| {
        cursor = pruned;
        firedoor_core::api::EventView {
            id: pruned,
            kind: firedoor_core::api::RESYNC_EVENT.into(),
            at: b.now(),
            request_id: None,
            grant_id: None,
            bundle: None,
            actor: None,
            message: "events after your last one were pruned (kept for a limited time): reload your state".into(),
        }
    });
    let mut changes = b.events.subscribe();
    let mut closing = b.closing.subscribe();
    let mut access_epoch = b.access.subscribe();
    let mut recheck = tokio::time::interval(crate::access::STREAM_SAFETY_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let user = p.name;
    let counted = crate::metrics::SseClient::connect();
    let stream = async_stream::stream! {
        let _slot = slot;
        let _counted = counted;
        if let Some(e) = resync {
            let data = serde_json::to_string(&e).unwrap_or_default();
            yield Ok::<Event, Infallible>(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data));
        }
        loop {
            changes.mark_unchanged();
            match b.events_after(&user, cursor, 200).await {
                Ok(batch) => {
                    let n = batch.len();
                    for e in batch {
                        cursor = e.id;
                        let data = serde_json::to_string(&e).unwrap_or_default();
                        yield Ok::<Event, Infallible>(Event::default().id(e.id.to_string()).event(e.kind.clone()).data(data));
                    }
                    if n == 200 {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading events");
                    return;
                }
            }
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return } else { break },
                    _ = closing.wait_for(|c| *c) => return,
                    _ = access_epoch.changed() => {}
                    _ = recheck.tick() => {}
                }
                // Who may authenticate changed (here, by the CLI, on another replica,
                // by the clock), or the safety tick: revoked, expired, or the user
                // disabled ends the stream.
                match crate::auth::token_hash_valid(&b.store, &token_hash, b.now()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "re-checking a stream's token");
                        return;
                    }
                }
            }
        }
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ---------------------------------------------------------------- break glass

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

async fn broker_identity(State(b): State<AppState>, Caller(_): Caller) -> Json<BrokerIdentity> {
    Json(b.identity())
}

/// `GET /devices`.
#[derive(Serialize)]
struct DeviceList {
    devices: Vec<DeviceView>,
}

/// `GET /secrets`.
#[derive(Serialize)]
struct SecretList {
    secrets: Vec<SecretView>,
}

async fn register_device(
    State(b): State<AppState>,
    Caller(p): Caller,
    Required(body): Required<RegisterDevice>,
) -> ApiResult<Response> {
    let view = b.register_device(&p, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_devices(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Response> {
    Ok(Json(DeviceList {
        devices: b.list_devices(&p).await?,
    })
    .into_response())
}

async fn revoke_device(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    b.revoke_device(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn device_envelopes(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(no_store(
        Json(b.device_envelopes(&p, &id).await?).into_response(),
    ))
}

async fn upload_unlocks(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Required(body): Required<UploadUnlocks>,
) -> ApiResult<Response> {
    Ok(Json(b.upload_unlocks(&p, &id, body).await?).into_response())
}

async fn list_secrets(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Response> {
    Ok(Json(SecretList {
        secrets: b.list_secrets(&p).await?,
    })
    .into_response())
}

fn admins_only(p: &Principal, what: &str) -> ApiResult<()> {
    if p.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("only admins may {what}"),
        ))
    }
}

async fn put_secret(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    body: Result<Required<PutSecret>, ApiError>,
) -> ApiResult<Response> {
    admins_only(&p, "store break-glass secrets")?;
    // A body that does not parse may hold the value: never echo serde's excerpt.
    let Required(body) = body.map_err(|e| match e.code {
        ErrorCode::InvalidJson | ErrorCode::InvalidRequest => ApiError::new(
            e.code,
            "send {\"value\": \"...\"}: the body must be a JSON object with a string field value",
        ),
        _ => e,
    })?;
    let value = zeroize::Zeroizing::new(body.value);
    let view = b
        .put_secret(&crate::audit::Actor::User(p.name.clone()), &name, &value)
        .await?;
    Ok(Json(view).into_response())
}

async fn rotate_secret(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    admins_only(&p, "rotate break-glass secrets")?;
    let view = b
        .rotate_secret_now(&crate::audit::Actor::User(p.name.clone()), &name)
        .await?;
    Ok(Json(view).into_response())
}

async fn online_unlock(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Required(body): Required<OnlineUnlock>,
) -> ApiResult<Response> {
    let unlocked = b.online_unlock(&p, &name, body).await?;
    Ok(no_store(Json(unlocked).into_response()))
}

// ------------------------------------------------------------- access ends

/// `DELETE /me/token`: revokes the token this request came with (sign-out).
async fn revoke_my_token(State(b): State<AppState>, Authed(s): Authed) -> ApiResult<Response> {
    b.revoke_own_token(&s).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/disable` (admins).
async fn disable_user(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    admins_only(&p, "disable users")?;
    let done = b
        .disable_user(&crate::audit::Actor::User(p.name.clone()), &name, true)
        .await?;
    Ok(Json(done).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetGroups {
    groups: Vec<String>,
}

#[derive(Serialize)]
struct GroupsView {
    user: String,
    groups: Vec<String>,
}

/// `PUT /users/{name}/groups` (admins): replaces the user's groups.
async fn set_user_groups(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Required(body): Required<SetGroups>,
) -> ApiResult<Response> {
    admins_only(&p, "change a user's groups")?;
    let groups = b
        .set_groups(
            &crate::audit::Actor::User(p.name.clone()),
            &name,
            &body.groups,
        )
        .await?;
    b.withdraw_ineligible_envelopes().await?;
    b.wake_worker.notify_one();
    Ok(Json(GroupsView { user: name, groups }).into_response())
}

// ---------------------------------------------------------------- audit heads

/// `GET /audit/head`: the broker's signed audit head, for any signed-in user (it
/// reveals the number of records and a hash, no content). Clients keep the latest
/// one and check that later heads extend it.
async fn audit_head(
    State(b): State<AppState>,
    Caller(_): Caller,
) -> ApiResult<Json<firedoor_core::audit::SignedHead>> {
    crate::audit::head(&b.store, b.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the audit log is empty"))
}

/// `GET /audit/heads/{seq}`: the signed head as it was at record `seq`.
async fn audit_head_at(
    State(b): State<AppState>,
    Caller(_): Caller,
    Path(seq): Path<String>,
) -> ApiResult<Json<firedoor_core::audit::SignedHead>> {
    let seq: i64 = seq.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "seq must be a positive integer (an audit record's sequence number)",
        )
    })?;
    crate::audit::head_at(&b.store, seq, b.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no audit record {seq}")))
}
