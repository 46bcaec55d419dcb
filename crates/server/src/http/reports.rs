//! `/reports`: the record after an incident (admins): the timeline of an incident,
//! a grant or a break-glass unlock as JSON, Markdown or a self-contained HTML page,
//! and the check of a JSON report against the audit log.

use super::{query, ApiError, ApiResult, AppState, Caller, Required};
use crate::audit::Actor;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::report::{to_html, to_markdown, Report, ReportKind};
use firedoor_core::ErrorCode;
use serde::Deserialize;

/// Body limit of `POST /reports/verify` (a report carries its audit records).
pub const REPORT_BODY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    format: Option<String>,
}

/// `GET /reports/{kind}/{id}?format=json|md|html`.
pub(super) async fn report(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path((kind, id)): Path<(String, String)>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let kind = ReportKind::parse(&kind).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "reports are on an incident, a grant or an unlock: /reports/incident/{id}, /reports/grant/{id}, /reports/unlock/{audit seq}",
        )
    })?;
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "md" | "html") {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "format must be json, md or html",
        ));
    }
    let r = b.report(&Actor::User(p), kind, &id).await?;
    Ok(match format {
        "md" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            to_markdown(&r),
        )
            .into_response(),
        "html" => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            to_html(&r),
        )
            .into_response(),
        _ => Json(r).into_response(),
    })
}

/// `POST /reports/verify` with a JSON report: `{"valid": true, ...}` or
/// `{"valid": false, "problem": "line 3 (audit record 17): ..."}`.
pub(super) async fn verify(
    State(b): State<AppState>,
    Caller(p): Caller,
    Required(report): Required<Report>,
) -> ApiResult<Response> {
    let out = b.verify_report(&Actor::User(p), &report).await?;
    Ok(Json(match out {
        Ok(v) => serde_json::json!({
            "valid": true,
            "lines": v.lines,
            "log_records": v.log_records,
            "head_seq": v.head_seq,
        }),
        Err(problem) => serde_json::json!({ "valid": false, "problem": problem.0 }),
    })
    .into_response())
}
