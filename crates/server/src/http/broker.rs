//! Broker-wide endpoints: health, the OpenAPI document, bundles, the broker's signing identity.

use super::{AppState, Caller};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::{BundleView, FlowTerms, Health};
use firedoor_core::breakglass::BrokerIdentity;

pub(super) async fn health(State(b): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time: b.now(),
    })
}

pub(super) async fn openapi(State(b): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(&b.policy),
    )
        .into_response()
}

pub(super) async fn bundles(State(b): State<AppState>, Caller(p): Caller) -> Json<Vec<BundleView>> {
    Json(
        b.policy
            .requestable_by(&p)
            .map(|(bundle, f)| BundleView {
                name: bundle.name.clone(),
                title: bundle.title.clone(),
                description: bundle.description.clone(),
                tags: bundle.tags.clone(),
                resources: bundle.resources.clone(),
                terms: FlowTerms {
                    flow: f.name.clone(),
                    approvals: f.approvals,
                    default_duration_secs: f.default_duration_secs,
                    max_duration_secs: f.max_duration_secs,
                    justification_required: f.justification_required,
                    ticket_required: f.ticket_required,
                    pending_ttl_secs: f.pending_ttl_secs,
                    break_glass: f.break_glass,
                },
            })
            .collect(),
    )
}

pub(super) async fn broker_identity(
    State(b): State<AppState>,
    Caller(_): Caller,
) -> Json<BrokerIdentity> {
    Json(b.identity())
}
