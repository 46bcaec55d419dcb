//! `/notifications/deliveries`: outbound notifications to chat and webhooks, their
//! state and dead letters, and sending a dead one again (admins).

use super::{query, ApiResult, AppState, Body, Caller, Empty};
use crate::audit::Actor;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /notifications/deliveries?state=dead`: newest first.
pub(super) async fn deliveries(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let list = b
        .deliveries(&Actor::User(p), q.state.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(list).into_response())
}

/// `POST /notifications/deliveries/{id}/retry`: a dead delivery goes out again.
pub(super) async fn retry(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    Ok(Json(b.retry_delivery(&Actor::User(p), &id).await?).into_response())
}
