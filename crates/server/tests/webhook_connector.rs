//! The webhook connector against a real HTTP server the test starts: it checks the
//! Standard Webhooks signature of every call (with the current or the previous
//! secret), records the calls, and can be down. Provisioning returns credentials the
//! holder sees; a revoke while it is down makes the grant `revoke_failed`, and the
//! retry (the manual clock moved past the backoff) succeeds with the same
//! idempotency key once it is back.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Duration;
use common::*;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::GrantState;
use firedoor_core::webhooks;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_aGVsbG8tZmlyZWRvb3Itd2ViaG9vay1jb25uZWN0b3I=";
const OLD_SECRET: &str = "whsec_b2xkLWZpcmVkb29yLXdlYmhvb2stY29ubmVjdG9yIQ==";

#[derive(Default)]
struct Endpoint {
    /// (webhook-id, Idempotency-Key, body) of every call whose signature verified.
    calls: Mutex<Vec<(String, String, serde_json::Value)>>,
    /// Calls refused for a bad signature.
    forged: Mutex<u32>,
    status: AtomicU16,
    /// Verify with this secret only (the other is then "unknown" to the endpoint).
    accept: Mutex<&'static str>,
}

async fn take(
    State(e): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let key = webhooks::parse_webhook_secret(*e.accept.lock().unwrap()).unwrap();
    let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    if !webhooks::verify_standard_webhooks(
        &key,
        &h("webhook-id"),
        ts,
        &body,
        &h("webhook-signature"),
    ) {
        *e.forged.lock().unwrap() += 1;
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({})));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    e.calls
        .lock()
        .unwrap()
        .push((h("webhook-id"), h("Idempotency-Key"), v.clone()));
    let status = StatusCode::from_u16(e.status.load(Ordering::SeqCst)).unwrap();
    let answer = if v["action"] == "provision" {
        serde_json::json!({ "username": format!("tix_{}", v["user"].as_str().unwrap()),
            "secret": "tix-secret-91c2", "host": "tickets.internal", "link": "https://tickets.internal/access" })
    } else {
        serde_json::json!({})
    };
    (status, Json(answer))
}

fn policy(url: &str) -> String {
    format!(
        r#"
[integrations.tickets]
kind = "webhook"
url = "{url}"
secret_env = "FD_WC_SECRET"
previous_secret_env = "FD_WC_OLD_SECRET"

[bundles.tickets-admin]
title = "Ticket system (admin)"
resources = [{{ integration = "tickets", resource = "helpdesk", permission = "admin" }}]

[flows.tickets]
bundles = ["tickets-admin"]
requesters = {{ groups = ["oncall"] }}
approvers = {{ groups = ["sre-leads"] }}
approvals = 0
default_duration = "1h"
max_duration = "4h"
"#
    )
}

#[tokio::test]
async fn the_endpoint_provisions_signed_and_a_failed_revoke_is_retried_until_it_is_back() {
    // Edition 2021: setting the environment is safe; only this test reads these.
    std::env::set_var("FD_WC_SECRET", SECRET);
    std::env::set_var("FD_WC_OLD_SECRET", OLD_SECRET);
    let ep = Arc::new(Endpoint::default());
    ep.status.store(200, Ordering::SeqCst);
    *ep.accept.lock().unwrap() = OLD_SECRET;
    let app = Router::new()
        .route("/access", post(take))
        .with_state(ep.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/access", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let text = policy(&url);
    let p = firedoor_core::policy::parse_policy("p.toml", &text).unwrap();
    let tb = spawn_with(
        &text,
        Some(firedoor_server::connectors::from_policy(&p).unwrap()),
    )
    .await;
    let alice = tb.client("alice");

    // Provisioned: the endpoint (which still knows only the previous secret, as in
    // the middle of a rotation) verified the call; alice sees what it returned.
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "tickets-admin".into(),
                justification: Some("INC-12 queue stuck".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    let g = alice.grant(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::Active);
    {
        let calls = ep.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let (id, key, body) = &calls[0];
        assert_eq!(id, &format!("{gid}-0-provision"));
        assert_eq!(key, id, "the idempotency key is the webhook id");
        assert_eq!(body["action"], "provision");
        assert_eq!(body["user"], "alice");
        assert_eq!(body["resource"], "helpdesk");
        assert_eq!(body["permission"], "admin");
        assert_eq!(
            body["expires_at"].as_str().unwrap(),
            g.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
    }
    let creds = alice.credentials(&gid).await.unwrap();
    assert_eq!(creds.items[0].username, "tix_alice");
    assert_eq!(creds.items[0].secret, "tix-secret-91c2");
    assert_eq!(creds.items[0].host.as_deref(), Some("tickets.internal"));
    assert!(creds.items[0]
        .note
        .as_deref()
        .unwrap()
        .contains("https://tickets.internal/access"));

    // The endpoint now knows only the new secret: still verified.
    *ep.accept.lock().unwrap() = SECRET;
    // Down: the revoke fails, the grant says so, nothing is lost.
    ep.status.store(503, Ordering::SeqCst);
    alice.revoke(&gid).await.unwrap();
    let g = eventually("revoke_failed", || async {
        let g = alice.grant(&gid).await.unwrap();
        (g.state == GrantState::RevokeFailed).then_some(g)
    })
    .await;
    assert!(
        g.last_error.as_deref().unwrap().contains("HTTP 503"),
        "{:?}",
        g.last_error
    );
    assert!(!g.last_error.as_deref().unwrap().contains("127.0.0.1"));
    // Back up; the retry, due after the backoff, succeeds with the same key.
    ep.status.store(200, Ordering::SeqCst);
    tb.clock
        .set(g.next_attempt_at.unwrap() + Duration::seconds(1));
    tb.running.broker.wake_worker.notify_one();
    eventually("revoked", || async {
        let g = alice.grant(&gid).await.unwrap();
        (g.state == GrantState::Revoked).then_some(())
    })
    .await;
    let calls = ep.calls.lock().unwrap().clone();
    let deprov: Vec<_> = calls
        .iter()
        .filter(|c| c.2["action"] == "deprovision")
        .collect();
    assert!(deprov.len() >= 2, "{deprov:?}");
    assert!(deprov.iter().all(|c| c.0 == format!("{gid}-0-deprovision")));
    assert_eq!(*ep.forged.lock().unwrap(), 0);
    tb.running.stop().await;
}

/// Calls signed with a secret the endpoint does not know are refused by it: the
/// grant does not become active and says why.
#[tokio::test]
async fn an_endpoint_that_cannot_verify_the_signature_refuses_and_nothing_is_granted() {
    std::env::set_var("FD_WC2_SECRET", SECRET);
    let ep = Arc::new(Endpoint::default());
    ep.status.store(200, Ordering::SeqCst);
    *ep.accept.lock().unwrap() = OLD_SECRET;
    let app = Router::new()
        .route("/access", post(take))
        .with_state(ep.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/access", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let text = policy(&url)
        .replace("FD_WC_SECRET", "FD_WC2_SECRET")
        .replace("previous_secret_env = \"FD_WC_OLD_SECRET\"\n", "");
    let p = firedoor_core::policy::parse_policy("p.toml", &text).unwrap();
    let tb = spawn_with(
        &text,
        Some(firedoor_server::connectors::from_policy(&p).unwrap()),
    )
    .await;
    let (r, _) = tb
        .client("alice")
        .create_request(
            &CreateRequest {
                bundle: "tickets-admin".into(),
                justification: Some("INC-13".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let g = tb
        .client("alice")
        .grant(&r.grant_id.unwrap())
        .await
        .unwrap();
    assert_ne!(g.state, GrantState::Active);
    assert!(
        g.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 401"),
        "{g:?}"
    );
    assert!(
        *ep.forged.lock().unwrap() >= 1,
        "refused, and refused again on retry"
    );
    assert!(ep.calls.lock().unwrap().is_empty());
    tb.running.stop().await;
}
