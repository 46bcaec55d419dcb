//! issue 14: `/drills` (start, list, a device's pending drills and its answers) and
//! `/readiness`.

use super::{ApiResult, AppState, Caller, Required};
use crate::audit::Actor;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::drill::{DrillAnswer, DrillView, StartDrill};
use serde::Serialize;

/// `GET /drills`, `POST /drills`.
#[derive(Serialize)]
struct DrillList {
    drills: Vec<DrillView>,
}

pub(super) async fn start(
    State(b): State<AppState>,
    Caller(p): Caller,
    Required(body): Required<StartDrill>,
) -> ApiResult<Response> {
    let drills = b.start_drill(&Actor::User(p), &body.secret).await?;
    Ok((StatusCode::CREATED, Json(DrillList { drills })).into_response())
}

pub(super) async fn list(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Response> {
    Ok(Json(DrillList {
        drills: b.list_drills(&Actor::User(p)).await?,
    })
    .into_response())
}

pub(super) async fn pending(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(b.pending_drills(&p, &id).await?).into_response())
}

pub(super) async fn answer(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Required(body): Required<DrillAnswer>,
) -> ApiResult<Response> {
    Ok(Json(b.answer_drill(&p, &id, body).await?).into_response())
}

pub(super) async fn readiness(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Response> {
    Ok(Json(b.readiness(&Actor::User(p)).await?).into_response())
}
