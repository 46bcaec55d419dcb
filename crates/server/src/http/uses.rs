//! `/unlocks`: break-glass uses (issue 14): list (open ones first, or only open
//! ones with `?open=true`) and classify.

use super::{ApiResult, AppState, Caller, Required};
use crate::audit::Actor;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::uses::{ClassifyUse, UseList};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    open: Option<bool>,
}

pub(super) async fn list(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|_| {
        super::ApiError::new(
            firedoor_core::ErrorCode::InvalidRequest,
            "query: the only parameter is open=true|false",
        )
    })?;
    Ok(Json(UseList {
        uses: b.list_uses(&p, q.open.unwrap_or(false)).await?,
    })
    .into_response())
}

pub(super) async fn classify(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Required(body): Required<ClassifyUse>,
) -> ApiResult<Response> {
    let view = b.classify_use(&Actor::User(p), &id, body).await?;
    Ok(Json(view).into_response())
}
