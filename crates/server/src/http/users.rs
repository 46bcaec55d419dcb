//! `/me`, `/me/token` and `/users`: the caller, sign-out, disabling users, groups.

use super::{ApiResult, AppState, Authed, Body, Caller, Empty, Required};
use crate::audit::Actor;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::Me;
use serde::{Deserialize, Serialize};

pub(super) async fn me(State(b): State<AppState>, Caller(p): Caller) -> ApiResult<Json<Me>> {
    let now = b.now();
    let oncall = b.my_on_call(&p.name, now).await?;
    Ok(Json(Me {
        name: p.name,
        groups: p.groups,
        admin: p.admin,
        time: now,
        oncall,
    }))
}

// ------------------------------------------------------------- access ends

/// `DELETE /me/token`: revokes the token this request came with (sign-out).
pub(super) async fn revoke_my_token(
    State(b): State<AppState>,
    Authed(s): Authed,
) -> ApiResult<Response> {
    b.revoke_own_token(&s).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /users/{name}/disable` (admins).
pub(super) async fn disable_user(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Body(_): Body<Empty>,
) -> ApiResult<Response> {
    let done = b.disable_user(&Actor::User(p), &name, true).await?;
    Ok(Json(done).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetGroups {
    groups: Vec<String>,
}

#[derive(Serialize)]
struct GroupsView {
    user: String,
    groups: Vec<String>,
}

/// `PUT /users/{name}/groups` (admins): replaces the user's groups.
pub(super) async fn set_user_groups(
    State(b): State<AppState>,
    Caller(p): Caller,
    Path(name): Path<String>,
    Required(body): Required<SetGroups>,
) -> ApiResult<Response> {
    let groups = b
        .set_groups(&Actor::User(p), &name, &body.groups, true)
        .await?;
    Ok(Json(GroupsView { user: name, groups }).into_response())
}
