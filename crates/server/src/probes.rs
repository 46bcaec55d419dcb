//! What a load balancer and Prometheus ask a broker, outside `/api/v1` and without
//! a user's token:
//!
//! - `GET /livez`: 200 while the process serves HTTP. Nothing else is checked, so a
//!   slow store never gets a live broker restarted.
//! - `GET /readyz`: 200 `{"ready":true}` when the store answers a trivial query
//!   within [`READY_TIMEOUT`] and the broker is not shutting down; otherwise 503
//!   with what is wrong (`store_unreachable`, `store_timeout`, `shutting_down`),
//!   never an error's text.
//! - `GET /metrics`: Prometheus text format (see [`crate::metrics`]); with a
//!   metrics token configured it wants `Authorization: Bearer <token>`.
//!
//! [`wrap`] adds these routes to the API router and counts every HTTP request by
//! route template, method and status class.

use crate::service::Broker;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct ProbeState {
    broker: Arc<Broker>,
    /// SHA-256 of the metrics token, if one is required.
    metrics_token: Option<Arc<[u8; 32]>>,
}

/// The API router plus `/livez`, `/readyz`, `/metrics`, with every request counted.
pub fn wrap(api: Router, broker: Arc<Broker>, metrics_token: Option<SecretString>) -> Router {
    let state = ProbeState {
        broker,
        metrics_token: metrics_token.map(|t| Arc::new(digest(t.expose_secret()))),
    };
    let probes = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    api.merge(probes)
        .layer(axum::middleware::from_fn(count_requests))
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

async fn livez() -> Response {
    no_store(Json(json!({ "live": true })).into_response())
}

/// Why a broker is not ready, as `/readyz` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    ShuttingDown,
    StoreTimeout,
    StoreUnreachable,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::ShuttingDown => "shutting_down",
            NotReady::StoreTimeout => "store_timeout",
            NotReady::StoreUnreachable => "store_unreachable",
        }
    }
}

/// The readiness check of `/readyz` and of the `firedoor_ready` gauge.
pub async fn readiness(b: &Broker) -> Result<(), NotReady> {
    if *b.closing.borrow() {
        return Err(NotReady::ShuttingDown);
    }
    match tokio::time::timeout(READY_TIMEOUT, crate::metrics::store_ping(&b.store)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store did not answer");
            Err(NotReady::StoreUnreachable)
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "readiness: the store did not answer in time"
            );
            Err(NotReady::StoreTimeout)
        }
    }
}

async fn readyz(State(s): State<ProbeState>) -> Response {
    let resp = match readiness(&s.broker).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "ready": true }))).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ready": false,
                "code": why.as_str(),
                "message": match why {
                    NotReady::ShuttingDown => "the broker is shutting down; send new requests elsewhere",
                    NotReady::StoreTimeout => "the store did not answer within 1 s",
                    NotReady::StoreUnreachable => "the store did not answer; the broker's log has the details",
                },
            })),
        )
            .into_response(),
    };
    no_store(resp)
}

async fn metrics(State(s): State<ProbeState>, headers: HeaderMap) -> Response {
    if let Some(want) = &s.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| digest(t.trim()));
        // Both sides are hashes of fixed length: comparing them leaks nothing useful
        // about the token through timing.
        let ok = given.is_some_and(|g| {
            g.iter()
                .zip(want.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        });
        if !ok {
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "code": "unauthenticated",
                    "message": "/metrics wants Authorization: Bearer <metrics token>",
                })),
            )
                .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    let b = &s.broker;
    let now = b.now();
    let ready = readiness(b).await.is_ok();
    let store = match tokio::time::timeout(
        READY_TIMEOUT,
        crate::metrics::store_gauges(&b.store, now),
    )
    .await
    {
        Ok(Ok(g)) => Some(g),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: reading counts from the store failed");
            None
        }
        Err(_) => None,
    };
    let text = crate::metrics::render(store.as_ref(), ready, now);
    no_store(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Counts the request by route template (`/api/v1/requests/{id}`, never the path as
/// sent: ids and names stay out of metrics), method and status class.
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let resp = next.run(req).await;
    crate::metrics::metrics().http_requests.inc(&[
        route.as_str(),
        method,
        crate::metrics::status_class(resp.status().as_u16()),
    ]);
    resp
}
