//! SSH: a grant's certificate (its holder), and what hosts fetch without signing in:
//! the CA keys to trust and the key revocation list (neither is secret).

use super::{parse_id, ApiResult, AppState, Caller, Required};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::SshKeyBody;
use firedoor_core::GrantId;
use serde::Serialize;

#[derive(Serialize)]
struct Certificates {
    certificates: Vec<firedoor_core::api::SshCertificateView>,
}

/// `POST /grants/{id}/ssh-certificate`: certifies the key the holder's device made
/// for this grant.
pub(super) async fn certificate(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(id): Path<String>,
    Required(body): Required<SshKeyBody>,
) -> ApiResult<Response> {
    let id: GrantId = parse_id(&id)?;
    let certificates = b.issue_ssh_certificate(&p, &id.to_string(), body).await?;
    Ok(super::no_store(
        Json(Certificates { certificates }).into_response(),
    ))
}

/// `GET /ssh/{integration}/ca`: the CA public keys hosts trust (`TrustedUserCAKeys`).
pub(super) async fn ca_keys(
    State(b): State<AppState>,
    Path(integration): Path<String>,
) -> ApiResult<Response> {
    let text = b.ssh_ca_keys(&integration).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /ssh/krl`: the OpenSSH key revocation list hosts load (`RevokedKeys`).
pub(super) async fn krl(State(b): State<AppState>) -> ApiResult<Response> {
    let bytes = b.ssh_krl().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}
