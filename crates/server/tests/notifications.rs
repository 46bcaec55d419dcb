//! Notifications outside the app: a request reaches a Slack-compatible incoming
//! webhook as Block Kit and a generic webhook signed per Standard Webhooks; a
//! failing receiver is retried with backoff (the manual clock moved, never slept
//! through), then dead-lettered, listed for admins and sent again. The receivers
//! are small HTTP servers started by the test (Slack itself cannot be reached from
//! here; the shapes are those its documentation gives). Runs on SQLite and, with
//! FIREDOOR_TEST_STORE=postgres, on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Duration;
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::CreateRequest;
use firedoor_core::webhooks;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What a receiver got: (path, headers, body).
type Hits = Vec<(String, HeaderMap, String)>;

#[derive(Default)]
struct Receiver {
    hits: Mutex<Hits>,
    /// The status it answers (200 unless a test says otherwise).
    status: AtomicU16,
}

impl Receiver {
    fn hits(&self, path: &str) -> Vec<(HeaderMap, String)> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.0 == path)
            .map(|h| (h.1.clone(), h.2.clone()))
            .collect()
    }
}

async fn take(
    State(r): State<Arc<Receiver>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    r.hits
        .lock()
        .unwrap()
        .push((uri.path().to_string(), headers, body));
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

/// A receiver on a loopback port; its URL.
async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    r.status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route("/services/T000/B000/XXXXSLACKTOKEN", post(take))
        .route("/hook", post(take))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}"))
}

/// The policy with a chat channel (URL in `slack_env`) and a signed webhook.
fn policy(base: &str, slack_env: &str, secret_env: &str) -> String {
    format!(
        r#"
[integrations.demo]
kind = "demo"

[bundles.prod-db]
title = "Prod database"
resources = [{{ integration = "demo", resource = "prod", permission = "write" }}]

[flows.prod]
bundles = ["prod-db"]
requesters = {{ groups = ["oncall"] }}
approvers = {{ users = ["bob"] }}
approvals = 1
default_duration = "1h"
max_duration = "4h"
pending_ttl = "4h"

[notifications.chat]
kind = "slack"
url_env = "{slack_env}"
events = ["request_awaiting_approval", "request_approved"]

[notifications.hooks]
kind = "webhook"
url = "{base}/hook"
secret_env = "{secret_env}"
events = ["request_awaiting_approval"]
"#
    )
}

fn prod() -> CreateRequest {
    CreateRequest {
        bundle: "prod-db".into(),
        justification: Some("INC-7 replication lag".into()),
        ticket: Some("OPS-12".into()),
        ..Default::default()
    }
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name).unwrap().to_str().unwrap().to_string()
}

/// A request waiting for bob reaches chat as a Block Kit message that says who asks
/// for what, why, the ticket, who was asked and links to the request in the app;
/// and the webhook gets the event as JSON with a Standard Webhooks signature a
/// receiver verifies. Only the events a channel names go to it.
#[tokio::test]
async fn a_request_reaches_chat_as_block_kit_and_a_webhook_signed() {
    let (rx, base) = receiver().await;
    std::env::set_var(
        "FD_N1_SLACK",
        format!("{base}/services/T000/B000/XXXXSLACKTOKEN"),
    );
    std::env::set_var("FD_N1_SECRET", SECRET);
    let tb = spawn_with(&policy(&base, "FD_N1_SLACK", "FD_N1_SECRET"), None).await;
    let (r, _) = tb
        .client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();

    let chat = eventually("chat gets the request", || async {
        let h = rx.hits("/services/T000/B000/XXXXSLACKTOKEN");
        (!h.is_empty()).then_some(h)
    })
    .await;
    let msg: serde_json::Value = serde_json::from_str(&chat[0].1).unwrap();
    assert!(msg["text"]
        .as_str()
        .unwrap()
        .starts_with("alice requests Prod database for 1h"));
    let text = msg["blocks"].to_string();
    for want in ["INC-7 replication lag", "OPS-12", "Told in Firedoor: bob"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let button = msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    // Approvers were told: the button opens the request among their approvals.
    assert_eq!(
        button["elements"][0]["url"],
        format!("firedoor://approve/{}", r.id)
    );

    let hook = eventually("the webhook gets it", || async {
        let h = rx.hits("/hook");
        (!h.is_empty()).then_some(h)
    })
    .await;
    let (h, body) = &hook[0];
    let id = header(h, "webhook-id");
    let ts: i64 = header(h, "webhook-timestamp").parse().unwrap();
    let sig = header(h, "webhook-signature");
    assert!(id.starts_with("msg_"));
    assert_eq!(ts, tb.running.broker.now().timestamp());
    let key = webhooks::parse_webhook_secret(SECRET).unwrap();
    assert!(webhooks::verify_standard_webhooks(
        &key,
        &id,
        ts,
        body.as_bytes(),
        &sig
    ));
    let other = webhooks::parse_webhook_secret("whsec_3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    assert!(
        !webhooks::verify_standard_webhooks(&other, &id, ts, body.as_bytes(), &sig),
        "another secret does not verify"
    );
    assert!(!webhooks::verify_standard_webhooks(
        &key,
        &id,
        ts,
        body.replace("INC-7", "INC-8").as_bytes(),
        &sig
    ));
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "request_awaiting_approval");
    assert_eq!(event["data"]["request"]["requester"], "alice");
    assert_eq!(event["data"]["request"]["ticket"], "OPS-12");
    assert_eq!(event["data"]["recipients"], serde_json::json!(["bob"]));
    assert_eq!(
        event["data"]["app_link"],
        format!("firedoor://approve/{}", r.id),
        "the webhook payload carries the app's link too"
    );

    // The approval goes to chat only.
    tb.client("bob").approve(&r.id, None).await.unwrap();
    eventually("chat gets the approval", || async {
        (rx.hits("/services/T000/B000/XXXXSLACKTOKEN").len() == 2).then_some(())
    })
    .await;
    let all = tb.client("carol").deliveries(None).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|d| d.state == "delivered"), "{all:?}");
    assert_eq!(
        rx.hits("/hook").len(),
        1,
        "the webhook takes only what it names"
    );
    let e = tb.client("dave").deliveries(None).await.unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 403, .. }), "{e}");
    tb.running.stop().await;
}

/// A receiver that answers 500 is tried again after 30 s, 1 min, 2 min, … (the
/// clock moved to each), never sooner; after eight attempts the delivery is dead,
/// audited and listed for admins, with a readable error and no secret. Once the
/// receiver is back an admin sends it again: it arrives once, with the id it had
/// all along (the receiver's dedupe key).
#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_then_dead_lettered_and_sent_again() {
    let (rx, base) = receiver().await;
    std::env::set_var("FD_N2_SLACK", format!("{base}/nothing-here"));
    std::env::set_var("FD_N2_SECRET", SECRET);
    let tb = spawn_with(&policy(&base, "FD_N2_SLACK", "FD_N2_SECRET"), None).await;
    rx.status.store(500, Ordering::SeqCst);
    let carol = tb.client("carol");
    tb.client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();

    let hook = |n: usize| {
        let rx = rx.clone();
        async move { (rx.hits("/hook").len() >= n).then_some(()) }
    };
    eventually("first attempt", || hook(1)).await;
    let d = eventually("recorded", || async {
        let d = carol.deliveries(Some("pending")).await.unwrap();
        d.into_iter()
            .find(|d| d.channel == "hooks" && d.attempts == 1)
    })
    .await;
    assert_eq!(
        d.last_error.as_deref(),
        Some("the receiver answered HTTP 500")
    );
    assert_eq!(d.last_status, Some(500));
    assert_eq!(
        d.next_attempt_at,
        tb.running.broker.now() + Duration::seconds(30)
    );
    // Not before its time.
    tb.advance(Duration::seconds(29));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.hits("/hook").len(), 1);

    let mut waits = vec![];
    for attempt in 2..=8usize {
        let d = eventually("the attempt is recorded", || async {
            carol
                .deliveries(Some("pending"))
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.channel == "hooks" && d.attempts == attempt as i64 - 1)
        })
        .await;
        waits.push((d.next_attempt_at - d.updated_at).num_seconds());
        tb.clock.set(d.next_attempt_at);
        tb.running.broker.wake_worker.notify_one();
        eventually(&format!("attempt {attempt}"), || hook(attempt)).await;
    }
    assert_eq!(waits, vec![30, 60, 120, 240, 480, 960, 1920]);
    let dead = eventually("dead-lettered", || async {
        let d = carol.deliveries(Some("dead")).await.unwrap();
        d.into_iter().find(|d| d.channel == "hooks")
    })
    .await;
    assert_eq!(dead.attempts, 8);
    let ids: Vec<String> = rx
        .hits("/hook")
        .iter()
        .map(|(h, _)| header(h, "webhook-id"))
        .collect();
    assert!(
        ids.iter().all(|i| *i == dead.id),
        "one id for every attempt"
    );
    let listed = serde_json::to_string(&carol.deliveries(None).await.unwrap()).unwrap();
    assert!(!listed.contains("MfKQ9r8G") && !listed.contains("nothing-here"));
    let audit = carol.audit(0, 1000).await.unwrap();
    let rec = audit
        .iter()
        .find(|r| r.action == "notification_dead_lettered" && r.subject == dead.id)
        .expect("audited");
    assert!(rec.details.contains("HTTP 500"), "{}", rec.details);

    // Slack answered 404 (no such webhook): no use retrying, dead at once.
    let chat = carol
        .deliveries(Some("dead"))
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.channel == "chat")
        .expect("the chat delivery is dead too");
    assert_eq!((chat.attempts, chat.last_status), (1, Some(404)));

    // Back up: an admin sends it again; it arrives once more, signed, same id.
    rx.status.store(200, Ordering::SeqCst);
    let e = tb
        .client("dave")
        .retry_delivery(&dead.id)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 403, .. }));
    let again = carol.retry_delivery(&dead.id).await.unwrap();
    assert_eq!((again.state.as_str(), again.attempts), ("pending", 0));
    eventually("sent again", || hook(9)).await;
    let done = eventually("delivered", || async {
        let d = carol.deliveries(Some("delivered")).await.unwrap();
        d.into_iter().find(|d| d.id == dead.id)
    })
    .await;
    assert_eq!(done.attempts, 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.hits("/hook").len(), 9, "delivered once");
    let e = carol.retry_delivery(&dead.id).await.unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 409, .. }), "{e}");
    assert!(carol
        .audit(0, 1000)
        .await
        .unwrap()
        .iter()
        .any(|r| r.action == "notification_retried" && r.actor == "carol"));
    tb.running.stop().await;
}

/// Nobody listening, or no URL configured: the error says so in words, without the
/// URL (a Slack webhook URL is a credential).
#[tokio::test]
async fn delivery_errors_are_readable_and_never_show_the_url() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    std::env::set_var(
        "FD_N3_SLACK",
        format!("{base}/services/T000/B000/XXXXSLACKTOKEN"),
    );
    // FD_N3_SECRET is not set.
    let tb = spawn_with(&policy(&base, "FD_N3_SLACK", "FD_N3_SECRET"), None).await;
    tb.client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();
    let carol = tb.client("carol");
    let (chat, hook) = eventually("both attempted", || async {
        let d = carol.deliveries(Some("pending")).await.unwrap();
        let chat = d.iter().find(|d| d.channel == "chat" && d.attempts == 1)?;
        let hook = d.iter().find(|d| d.channel == "hooks" && d.attempts == 1)?;
        Some((chat.clone(), hook.clone()))
    })
    .await;
    let err = chat.last_error.unwrap();
    assert!(
        err.starts_with("could not connect to the receiver"),
        "{err}"
    );
    assert!(
        !err.contains("SLACKTOKEN") && !err.contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(
        hook.last_error.as_deref(),
        Some("FD_N3_SECRET is not set: the webhook cannot be signed")
    );
    tb.running.stop().await;
}
