//! `/audit`: the log (admins), its sinks' delivery (admins) and its signed heads
//! (everyone signed in).

use super::{query, ApiError, ApiResult, AppState, Caller};
use crate::audit::Actor;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::ErrorCode;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn audit(
    State(b): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let records = b
        .audit_records(
            &Actor::User(p),
            q.after.unwrap_or(0),
            q.limit.unwrap_or(500),
        )
        .await?;
    Ok(Json(records).into_response())
}

/// `GET /audit/sinks`: where the audit stream goes (the policy's
/// `[audit_sinks.*]`), how far each receiver has taken it, and its last failure.
pub(super) async fn audit_sinks(
    State(b): State<AppState>,
    Caller(p): Caller,
) -> ApiResult<Response> {
    let sinks = b.audit_sinks(&Actor::User(p)).await?;
    Ok(Json(serde_json::json!({ "sinks": sinks })).into_response())
}

// ---------------------------------------------------------------- audit heads

/// `GET /audit/head`: the broker's signed audit head, for any signed-in user (it
/// reveals the number of records and a hash, no content). Clients keep the latest
/// one and check that later heads extend it.
pub(super) async fn audit_head(
    State(b): State<AppState>,
    Caller(_): Caller,
) -> ApiResult<Json<firedoor_core::audit::SignedHead>> {
    crate::audit::head(&b.store, b.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the audit log is empty"))
}

/// `GET /audit/heads/{seq}`: the signed head as it was at record `seq` (the last
/// record of a commit).
pub(super) async fn audit_head_at(
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
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no signed head at audit record {seq}: there is no such record, or it is \
                     not the last of its commit (only those are signed, and every head the \
                     broker serves is one)"
                ),
            )
        })
}
