//! `/grants`: list, read, credentials, revoke, extend.

use super::{no_store, parse_id, query, ApiError, ApiResult, AppState, Body, Caller, Empty};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::{ErrorCode, GrantId};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantQuery {
    scope: Option<String>,
    /// `live` (default: all states).
    state: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list_grants(
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

pub(super) async fn get_grant(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.get_grant(&p, &id.to_string()).await?).into_response())
}

pub(super) async fn credentials(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    let creds = b.credentials(&p, &id.to_string()).await?;
    Ok(no_store(Json(creds).into_response()))
}

pub(super) async fn revoke(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.revoke(&p, &id.to_string()).await?).into_response())
}

pub(super) async fn extend(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(body): Body<firedoor_core::api::ExtendBody>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    Ok(Json(b.extend(&p, &id.to_string(), body).await?).into_response())
}
