//! `/requests`: create, list, read, approve, deny, cancel.

use super::{parse_id, query, ApiError, ApiResult, AppState, Body, Caller, Empty};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::lifecycle::RequestState;
use firedoor_core::{ErrorCode, RequestId};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestQuery {
    scope: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list_requests(
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

pub(super) async fn create_request(
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

pub(super) async fn get_request(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.get_request(&p, &id.to_string()).await?).into_response())
}

/// The `X-Firedoor-Client` header: one of the fixed channel names, or absent (an
/// older client). Anything else is refused, so the audit only holds known names.
fn client_channel(
    headers: &axum::http::HeaderMap,
) -> ApiResult<Option<firedoor_core::api::ClientChannel>> {
    use firedoor_core::api::{ClientChannel, CLIENT_CHANNEL_HEADER};
    let Some(v) = headers.get(CLIENT_CHANNEL_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(ClientChannel::parse)
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = ClientChannel::ALL.iter().map(|c| c.as_str()).collect();
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "{CLIENT_CHANNEL_HEADER} must be one of: {}",
                    names.join(", ")
                ),
            )
        })
}

pub(super) async fn approve(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body<firedoor_core::api::ApproveBody>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    let channel = client_channel(&headers)?;
    Ok(Json(b.approve_via(&p, &id.to_string(), body, channel).await?).into_response())
}

pub(super) async fn deny(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Body(body): Body<firedoor_core::api::DenyBody>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    let channel = client_channel(&headers)?;
    Ok(Json(b.deny_via(&p, &id.to_string(), body, channel).await?).into_response())
}

pub(super) async fn cancel(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let id: RequestId = parse_id(&id)?;
    Ok(Json(b.cancel(&p, &id.to_string()).await?).into_response())
}
