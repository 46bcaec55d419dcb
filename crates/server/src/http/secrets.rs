//! `/secrets`: break-glass secrets (list, store, rotate, online unlock).

use super::{no_store, ApiError, ApiResult, AppState, Body, Caller, Empty, Required};
use crate::audit::Actor;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::breakglass::{OnlineUnlock, PutSecret, SecretView};
use firedoor_core::ErrorCode;
use serde::Serialize;

/// `GET /secrets`.
#[derive(Serialize)]
struct SecretList {
    secrets: Vec<SecretView>,
}

pub(super) async fn list_secrets(
    State(b): State<AppState>,
    Caller(p): Caller,
) -> ApiResult<Response> {
    Ok(Json(SecretList {
        secrets: b.list_secrets(&p).await?,
    })
    .into_response())
}

pub(super) async fn put_secret(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    body: Result<Required<PutSecret>, ApiError>,
) -> ApiResult<Response> {
    // A body that does not parse may hold the value: never echo serde's excerpt.
    let Required(body) = body.map_err(|e| match e.code {
        ErrorCode::InvalidJson | ErrorCode::InvalidRequest => ApiError::new(
            e.code,
            "send {\"value\": \"...\"}: the body must be a JSON object with a string field value",
        ),
        _ => e,
    })?;
    let value = zeroize::Zeroizing::new(body.value);
    let view = b.put_secret(&Actor::User(p), &name, &value).await?;
    Ok(Json(view).into_response())
}

pub(super) async fn rotate_secret(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let view = b.rotate_secret_now(&Actor::User(p), &name).await?;
    Ok(Json(view).into_response())
}

pub(super) async fn online_unlock(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Required(body): Required<OnlineUnlock>,
) -> ApiResult<Response> {
    let unlocked = b.online_unlock(&p, &name, body).await?;
    Ok(no_store(Json(unlocked).into_response()))
}
