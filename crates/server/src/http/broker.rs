//! Broker-wide endpoints: health, the OpenAPI document, bundles, the broker's signing identity.

use super::{AppState, Caller};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use firedoor_core::api::{AlertAudience, BundleView, FlowTerms, Health};
use firedoor_core::breakglass::BrokerIdentity;
use firedoor_core::policy::Flow;

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
                    alerts: f.break_glass.then(|| alert_audience(f)),
                },
            })
            .collect(),
    )
}

/// Who a break-glass request of `flow` alerts: what `notify::Audience::BreakGlassTaken`
/// sends the event to (the flow's approvers at every stage, and every admin).
fn alert_audience(flow: &Flow) -> AlertAudience {
    let mut a = AlertAudience {
        admins: true,
        ..AlertAudience::default()
    };
    for aud in std::iter::once(&flow.approvers).chain(flow.escalation.iter().map(|e| &e.approvers))
    {
        for (from, to) in [
            (&aud.users, &mut a.users),
            (&aud.groups, &mut a.groups),
            (&aud.oncall, &mut a.oncall),
        ] {
            for x in from {
                if !to.contains(x) {
                    to.push(x.clone());
                }
            }
        }
    }
    a
}

pub(super) async fn broker_identity(
    State(b): State<AppState>,
    Caller(_): Caller,
) -> Json<BrokerIdentity> {
    Json(b.identity())
}
