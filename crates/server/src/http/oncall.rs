//! `/oncall`: the policy's schedules, who is on call, overrides (admins).

use super::{ApiResult, AppState, Body, Caller, Empty, Required};
use crate::audit::Actor;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::{NewOverride, ScheduleView};
use serde::Serialize;

#[derive(Serialize)]
struct Schedules {
    schedules: Vec<ScheduleView>,
}

/// `GET /oncall`: every schedule, who is on call now and until when, and the
/// overrides running or to come.
pub(super) async fn schedules(State(b): State<AppState>, Caller(_): Caller) -> ApiResult<Response> {
    Ok(Json(Schedules {
        schedules: b.schedules().await?,
    })
    .into_response())
}

/// `POST /oncall/{schedule}/overrides` (admins).
pub(super) async fn add_override(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(schedule): Path<String>,
    Required(body): Required<NewOverride>,
) -> ApiResult<Response> {
    let o = b.add_override(&Actor::User(p), &schedule, body).await?;
    Ok((StatusCode::CREATED, Json(o)).into_response())
}

/// `DELETE /oncall/{schedule}/overrides/{id}` (admins).
pub(super) async fn remove_override(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path((schedule, id)): Path<(String, String)>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let o = b.remove_override(&Actor::User(p), &schedule, &id).await?;
    Ok(Json(o).into_response())
}
