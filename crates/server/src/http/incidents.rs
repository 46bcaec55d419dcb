//! `/incidents` (signed-in users) and `/hooks/{alertmanager,pagerduty}/{source}`:
//! incident webhooks, authenticated by their source's own scheme (not a user token).

use super::{ApiResult, AppState, Caller};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::IncidentView;
use serde::Serialize;

#[derive(Serialize)]
struct Incidents {
    incidents: Vec<IncidentView>,
}

/// `GET /incidents`: open incidents first, then recent resolved ones; `responder`
/// says whether the caller may request what each opens.
pub(super) async fn list(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Response> {
    Ok(Json(Incidents {
        incidents: b.incidents(&p).await?,
    })
    .into_response())
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /hooks/alertmanager/{source}`.
pub(super) async fn alertmanager(
    State(b): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let r = b
        .receive_alertmanager(&source, header(&headers, "authorization"), &body)
        .await?;
    Ok(Json(r).into_response())
}

/// `POST /hooks/pagerduty/{source}`.
pub(super) async fn pagerduty(
    State(b): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let r = b
        .receive_pagerduty(&source, header(&headers, "x-pagerduty-signature"), &body)
        .await?;
    Ok(Json(r).into_response())
}

/// `POST /hooks/opsgenie/{source}`.
pub(super) async fn opsgenie(
    State(b): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let r = b
        .receive_opsgenie(
            &source,
            header(&headers, "x-firedoor-token"),
            header(&headers, "authorization"),
            &body,
        )
        .await?;
    Ok(Json(r).into_response())
}
