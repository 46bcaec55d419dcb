//! `/auth/sso/*`: single sign-on through the OpenID Provider (see
//! [`crate::ops::sso`]). Unauthenticated: the ID token, or the refresh token with
//! its proof, is the credential.

use super::{no_store, ApiResult, AppState, Required};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::sso::{SsoRefreshRequest, SsoSessionRequest, SsoStartRequest};

/// `POST /auth/sso/start`: the IdP's endpoints and a fresh nonce.
pub(super) async fn start(
    State(b): State<AppState>,
    Required(body): Required<SsoStartRequest>,
) -> ApiResult<Response> {
    let out = b.sso_start(&body.redirect_uri).await?;
    Ok(no_store(Json(out).into_response()))
}

/// `POST /auth/sso/session`: signs in with an ID token.
pub(super) async fn session(
    State(b): State<AppState>,
    Required(body): Required<SsoSessionRequest>,
) -> ApiResult<Response> {
    let out = b.sso_session(&body.id_token, &body.session_key).await?;
    Ok(no_store(Json(out).into_response()))
}

/// `POST /auth/sso/refresh`: new tokens for a session, proved by its key.
pub(super) async fn refresh(
    State(b): State<AppState>,
    Required(body): Required<SsoRefreshRequest>,
) -> ApiResult<Response> {
    let out = b
        .sso_refresh(&body.refresh_token, &body.at, &body.proof)
        .await?;
    Ok(no_store(Json(out).into_response()))
}
