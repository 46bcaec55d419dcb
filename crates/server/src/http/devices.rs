//! `/devices`: enrolment, envelopes, unlock-chain uploads.

use super::{no_store, ApiResult, AppState, Caller, Required};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::breakglass::{DeviceView, RegisterDevice, UploadUnlocks};
use serde::Serialize;

/// `GET /devices`.
#[derive(Serialize)]
struct DeviceList {
    devices: Vec<DeviceView>,
}

pub(super) async fn register_device(
    State(b): State<AppState>,
    Caller(p): Caller,
    Required(body): Required<RegisterDevice>,
) -> ApiResult<Response> {
    let view = b.register_device(&p, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(super) async fn list_devices(
    State(b): State<AppState>,
    Caller(p): Caller,
) -> ApiResult<Response> {
    Ok(Json(DeviceList {
        devices: b.list_devices(&p).await?,
    })
    .into_response())
}

pub(super) async fn revoke_device(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    b.revoke_device(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn device_envelopes(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(no_store(
        Json(b.device_envelopes(&p, &id).await?).into_response(),
    ))
}

pub(super) async fn upload_unlocks(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Required(body): Required<UploadUnlocks>,
) -> ApiResult<Response> {
    Ok(Json(b.upload_unlocks(&p, &id, body).await?).into_response())
}
