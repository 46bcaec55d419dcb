//! The broker over real HTTP on a real SQLite file, driven with the typed client.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{eventually, spawn};
use firedoor_core::api::{CreateRequest, ExtendBody};
use firedoor_core::lifecycle::{GrantState, RequestState};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::Arc;

fn req(bundle: &str) -> CreateRequest {
    CreateRequest {
        bundle: bundle.into(),
        duration_secs: None,
        justification: Some("INC-4242 checkout errors".into()),
        ticket: Some("OPS-1".into()),
        incident: None,
        on_behalf_of: None,
    }
}

#[tokio::test]
async fn request_approve_use_revoke() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let bob = tb.client("bob");

    let bundles = alice.bundles().await.unwrap();
    let read = bundles
        .iter()
        .find(|b| b.name == "prod-db-read")
        .expect("alice may request prod read");
    assert_eq!(read.terms.approvals, 1);
    assert!(read.terms.justification_required);
    assert!(
        tb.client("dave").bundles().await.unwrap().is_empty(),
        "dave is in no group: nothing to request"
    );

    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.duration_secs, 3600, "the flow's default duration");

    let e = alice.approve(&r.id, None).await.unwrap_err();
    assert_eq!(e.code(), Some("self_approval"), "{e}");
    assert_eq!(e.status(), Some(403));

    let e = tb.client("dave").approve(&r.id, None).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "dave may not even see it: {e}");

    let inbox = bob.requests("awaiting_me").await.unwrap();
    assert_eq!(inbox.len(), 1, "bob's inbox has the request");
    assert!(
        alice.requests("awaiting_me").await.unwrap().is_empty(),
        "not in the requester's own inbox"
    );

    let approved = bob.approve(&r.id, Some("go")).await.unwrap();
    assert_eq!(
        approved.state,
        RequestState::Active,
        "one approval suffices and provisioning is inline"
    );
    assert_eq!(approved.decisions.len(), 1);
    assert_eq!(approved.decisions[0].by, "bob");
    let gid = approved.grant_id.expect("a grant");

    let g = alice.grant(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::Active);
    assert_eq!(
        g.activated_at,
        Some(common::t0()),
        "the clock starts at activation"
    );
    assert_eq!(g.expires_at, common::t0() + Duration::hours(1));

    let creds = alice.credentials(&gid).await.unwrap();
    assert_eq!(creds.items.len(), 1);
    assert!(
        tb.demo.live().contains(&creds.items[0].username),
        "demo connector provisioned it"
    );
    assert!(
        !format!("{creds:?}").contains(&creds.items[0].secret),
        "Debug never shows a secret"
    );
    let e = bob.credentials(&gid).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some("forbidden"),
        "only the holder sees credentials: {e}"
    );

    let revoked = alice.revoke(&gid).await.unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    assert_eq!(revoked.ended_by.as_deref(), Some("alice"));
    assert!(tb.demo.live().is_empty(), "access removed in the target");
    assert_eq!(
        alice.request(&r.id).await.unwrap().state,
        RequestState::Revoked
    );
    let e = alice.credentials(&gid).await.unwrap_err();
    assert_eq!(e.code(), Some("no_credentials"));
    let e = alice.revoke(&gid).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some("conflict"),
        "revoking twice is a wrong state: {e}"
    );

    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for must in [
        "request_created",
        "approval_recorded",
        "request_approved",
        "grant_activated",
        "credentials_viewed",
        "grant_revoke_requested",
        "grant_revoked",
    ] {
        assert!(actions.contains(&must), "audit has {must}: {actions:?}");
    }
    let e = alice.audit(0, 10).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "audit is for admins");
    let verified = firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap();
    assert!(verified.is_ok(), "chain verifies: {verified:?}");
}

#[tokio::test]
async fn m_of_n_needs_distinct_approvers() {
    let tb = spawn().await;
    let (r, _) = tb
        .client("alice")
        .create_request(&req("prod-db-write"), None)
        .await
        .unwrap();
    let after_bob = tb.client("bob").approve(&r.id, None).await.unwrap();
    assert_eq!(after_bob.state, RequestState::Pending, "1 of 2");
    let e = tb.client("bob").approve(&r.id, None).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some("conflict"),
        "bob twice still counts once: {e}"
    );
    // Lists carry each request's own decisions (read with the list, not per row).
    let (other, _) = tb
        .client("alice")
        .create_request(&req("prod-db-write"), None)
        .await
        .unwrap();
    for (who, scope) in [
        ("alice", "mine"),
        ("carol", "awaiting_me"),
        ("carol", "all"),
    ] {
        let list = tb.client(who).requests(scope).await.unwrap();
        let by = |id| {
            list.iter().find(|x| x.id == id).map(|x| {
                x.decisions
                    .iter()
                    .map(|d| d.by.as_str())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(by(r.id), Some(vec!["bob"]), "{who} {scope}");
        assert_eq!(by(other.id), Some(vec![]), "{who} {scope}");
    }
    let done = tb.client("carol").approve(&r.id, None).await.unwrap();
    assert_eq!(done.state, RequestState::Active);
    assert_eq!(done.decisions.len(), 2);
}

/// Lists are read from the store a page at a time. What the caller may see comes
/// back, however many newer rows they may not see lie in front of it (more than a
/// page), and `state=live` and `limit` are applied before a page is cut.
#[tokio::test]
async fn lists_find_what_the_caller_may_see_behind_more_than_a_page_they_may_not() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let bob = tb.token("bob").to_string();
    let carol = tb.token("carol").to_string();
    // Two prod-read requests, approved by bob (an approver of that flow): the
    // oldest requests and the grants that end first.
    let mut read = Vec::new();
    for _ in 0..2 {
        let (r, _) = alice
            .create_request(&req("prod-db-read"), None)
            .await
            .unwrap();
        let v = tb.client("bob").approve(&r.id, None).await.unwrap();
        assert_eq!(v.state, RequestState::Active);
        read.push((r.id.to_string(), v.grant_id.unwrap().to_string()));
    }
    // Then 130 staging requests (a flow with no approvers: bob may see none of
    // them), newer, each an active grant that ends later.
    tb.advance(Duration::seconds(1));
    let mut staging = Vec::new();
    for _ in 0..130 {
        let (r, _) = alice
            .create_request(&req("staging-shell"), None)
            .await
            .unwrap();
        assert_eq!(r.state, RequestState::Active);
        staging.push(r.grant_id.unwrap());
    }
    let ids = |v: &Value, key: &str| {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[key].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut want_requests: Vec<String> = read.iter().map(|(r, _)| r.clone()).collect();
    want_requests.sort();
    let mut want_grants: Vec<String> = read.iter().map(|(_, g)| g.clone()).collect();
    want_grants.sort();
    for limit in [2, 50] {
        let v = get_ok(&tb, &format!("/requests?scope=all&limit={limit}"), &bob).await;
        assert_eq!(ids(&v, "id"), want_requests, "bob, limit {limit}");
        for live in ["", "&state=live"] {
            let v = get_ok(&tb, &format!("/grants?scope=all&limit={limit}{live}"), &bob).await;
            assert_eq!(ids(&v, "id"), want_grants, "bob, limit {limit}{live}");
        }
    }
    // An admin sees every request, in more than one page.
    let v = get_ok(&tb, "/requests?scope=all&limit=1000", &carol).await;
    assert_eq!(v.as_array().unwrap().len(), 132);
    // The holder's live grants: the limit counts live ones only, latest end first;
    // an ended grant leaves the live list but stays in the full one.
    alice.revoke(&staging[129]).await.unwrap();
    let alice_token = tb.token("alice").to_string();
    let v = get_ok(&tb, "/grants?scope=mine&state=live&limit=3", &alice_token).await;
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .all(|g| g["state"] == "active" && g["bundle"] == "staging-shell"),
        "{v}"
    );
    assert!(list
        .iter()
        .all(|g| g["id"] != staging[129].to_string().as_str()));
    let v = get_ok(
        &tb,
        "/grants?scope=mine&state=live&limit=1000",
        &alice_token,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 131);
    let v = get_ok(&tb, "/grants?scope=mine&limit=1000", &alice_token).await;
    assert_eq!(v.as_array().unwrap().len(), 132);
    // alice approves no flow and dave nothing at all: everything they may see is
    // their own.
    let dave = tb.token("dave").to_string();
    for list in ["requests", "grants"] {
        let mine = get_ok(&tb, &format!("/{list}?scope=mine&limit=1000"), &alice_token).await;
        let all = get_ok(&tb, &format!("/{list}?scope=all&limit=1000"), &alice_token).await;
        assert_eq!(ids(&all, "id"), ids(&mine, "id"), "alice's {list}");
        assert_eq!(ids(&all, "id").len(), 132, "alice's {list}");
        let all = get_ok(&tb, &format!("/{list}?scope=all"), &dave).await;
        assert_eq!(all, serde_json::json!([]), "dave's {list}");
    }
}

#[tokio::test]
async fn racing_approvers_cannot_corrupt_state() {
    let tb = spawn().await;
    for _ in 0..5 {
        let (r, _) = tb
            .client("alice")
            .create_request(&req("prod-db-read"), None)
            .await
            .unwrap();
        let (bob, carol, erin) = (tb.client("bob"), tb.client("carol"), tb.client("erin"));
        let (a, b, c) = tokio::join!(
            bob.approve(&r.id, None),
            carol.approve(&r.id, None),
            erin.deny(&r.id, Some("no"))
        );
        let wins = [a.is_ok(), b.is_ok(), c.is_ok()]
            .iter()
            .filter(|x| **x)
            .count();
        assert_eq!(wins, 1, "exactly one decision wins: {a:?} {b:?} {c:?}");
        let fin = tb.client("alice").request(&r.id).await.unwrap();
        let grants = tb.client("alice").grants("mine", false).await.unwrap();
        let for_r = grants.iter().filter(|g| g.request_id == r.id).count();
        if c.is_ok() {
            assert_eq!(fin.state, RequestState::Denied);
            assert_eq!(for_r, 0, "a denied request has no grant");
        } else {
            assert_eq!(fin.state, RequestState::Active);
            assert_eq!(for_r, 1, "exactly one grant");
        }
    }
    assert!(firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap()
        .is_ok());
}

#[tokio::test]
async fn grants_expire_on_time_without_sleeping() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                duration_secs: Some(600),
                ..req("prod-db-read")
            },
            None,
        )
        .await
        .unwrap();
    let r = tb.client("bob").approve(&r.id, None).await.unwrap();
    let gid = r.grant_id.unwrap();
    let mut events = alice.events(None).await.unwrap();

    tb.advance(Duration::seconds(301));
    let ev = loop {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("an expiring notice arrives")
            .unwrap()
            .unwrap();
        if e.kind == "grant_expiring" {
            break e;
        }
    };
    assert_eq!(ev.grant_id, Some(gid));
    assert_eq!(
        alice.grant(&gid).await.unwrap().state,
        GrantState::Active,
        "not yet due"
    );

    tb.advance(Duration::seconds(300));
    let g = eventually("expiry", || async {
        let g = alice.grant(&gid).await.ok()?;
        (g.state == GrantState::Expired).then_some(g)
    })
    .await;
    assert_eq!(g.end_reason.as_deref(), Some("expired"));
    assert!(tb.demo.live().is_empty(), "expired access is removed");
    assert_eq!(
        alice.request(&r.id).await.unwrap().state,
        RequestState::Expired
    );
}

#[tokio::test]
async fn pending_requests_time_out() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    tb.advance(Duration::minutes(31));
    eventually("time out", || async {
        (alice.request(&r.id).await.ok()?.state == RequestState::TimedOut).then_some(())
    })
    .await;
    let e = tb.client("bob").approve(&r.id, None).await.unwrap_err();
    assert_eq!(e.code(), Some("already_decided"));
}

#[tokio::test]
async fn cancel_and_deny() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let e = tb.client("bob").cancel(&r.id).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "only the requester cancels");
    assert_eq!(
        alice.cancel(&r.id).await.unwrap().state,
        RequestState::Cancelled
    );
    let e = tb.client("bob").approve(&r.id, None).await.unwrap_err();
    assert_eq!(e.code(), Some("already_decided"));

    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let d = tb
        .client("bob")
        .deny(&r.id, Some("use the replica"))
        .await
        .unwrap();
    assert_eq!(d.state, RequestState::Denied);
    assert_eq!(d.decisions[0].comment.as_deref(), Some("use the replica"));
    let e = alice.cancel(&r.id).await.unwrap_err();
    assert_eq!(e.code(), Some("already_decided"));
}

#[tokio::test]
async fn extensions_within_the_flow_maximum() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    // Automatic flow: extension applies at once.
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "staging-shell".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Active, "automatic flow");
    let gid = r.grant_id.unwrap();
    let x = alice
        .extend(
            &gid,
            &ExtendBody {
                duration_secs: Some(6 * 3600),
                justification: None,
            },
        )
        .await
        .unwrap();
    assert!(x.request.is_none());
    assert_eq!(x.grant.expires_at, common::t0() + Duration::hours(8));
    let e = alice
        .extend(
            &gid,
            &ExtendBody {
                duration_secs: Some(1),
                justification: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_duration"), "8h is the maximum: {e}");
    let e = tb
        .client("bob")
        .extend(&gid, &ExtendBody::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some("not_found"),
        "bob cannot see alice's staging grant: {e}"
    );

    // Approval flow: extension is a new request that must be approved.
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let gid = tb
        .client("bob")
        .approve(&r.id, None)
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let x = alice
        .extend(
            &gid,
            &ExtendBody {
                duration_secs: Some(1800),
                justification: Some("still debugging".into()),
            },
        )
        .await
        .unwrap();
    let ext = x.request.expect("needs approval");
    assert_eq!(
        x.grant.expires_at,
        common::t0() + Duration::hours(1),
        "unchanged until approved"
    );
    let e = alice.approve(&ext.id, None).await.unwrap_err();
    assert_eq!(e.code(), Some("self_approval"));
    tb.client("bob").approve(&ext.id, None).await.unwrap();
    let g = alice.grant(&gid).await.unwrap();
    assert_eq!(g.expires_at, common::t0() + Duration::minutes(90));
}

#[tokio::test]
async fn live_events_filtered_and_resumable() {
    let tb = spawn().await;
    let bob = tb.client("bob");
    let mut bob_events = bob.events(None).await.unwrap();
    let mut dave_events = tb.client("dave").events(None).await.unwrap();
    let (r, _) = tb
        .client("alice")
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let e1 = tokio::time::timeout(std::time::Duration::from_secs(5), bob_events.next())
        .await
        .expect("event within a second or so")
        .unwrap()
        .unwrap();
    assert_eq!(e1.kind, "request_awaiting_approval");
    assert_eq!(e1.request_id, Some(r.id));
    assert_eq!(e1.actor.as_deref(), Some("alice"));

    let mut alice_events = tb.client("alice").events(None).await.unwrap();
    bob.approve(&r.id, None).await.unwrap();
    let kinds: Vec<String> = {
        let mut k = Vec::new();
        while k.len() < 2 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(5), alice_events.next())
                .await
                .expect("alice hears back")
                .unwrap()
                .unwrap();
            k.push(e.kind);
        }
        k
    };
    assert_eq!(kinds, vec!["request_approved", "grant_active"]);

    // Resuming after the first event skips it and delivers what followed.
    let mut resumed = bob.events(Some(e1.id)).await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.id > e1.id);
    assert_eq!(next.kind, "request_approved");

    let none =
        tokio::time::timeout(std::time::Duration::from_millis(300), dave_events.next()).await;
    assert!(none.is_err(), "dave sees nothing of it");
}

#[tokio::test]
async fn idempotency_keys_replay_once() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let (a, c1) = alice
        .create_request(&req("prod-db-read"), Some("outbox-1"))
        .await
        .unwrap();
    let (b, c2) = alice
        .create_request(&req("prod-db-read"), Some("outbox-1"))
        .await
        .unwrap();
    assert_eq!(c1, firedoor_client::Created::New);
    assert_eq!(c2, firedoor_client::Created::Replayed);
    assert_eq!(a.id, b.id, "a replay returns the first request");
    assert_eq!(
        alice.requests("mine").await.unwrap().len(),
        1,
        "created exactly once"
    );
    let other = CreateRequest {
        duration_secs: Some(60),
        ..req("prod-db-read")
    };
    let e = alice
        .create_request(&other, Some("outbox-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("idempotency_key_reused"));
    assert_eq!(e.status(), Some(409));
    // Keys are per user.
    let (c, _) = tb
        .client("bob")
        .create_request(&req("prod-db-read"), Some("outbox-1"))
        .await
        .unwrap();
    assert_ne!(c.id, a.id);
}

async fn raw(
    tb: &common::TestBroker,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    ctype: Option<&str>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut r = http.request(method.parse().unwrap(), tb.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(ct) = ctype {
        r = r.header("content-type", ct);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {text}"));
    assert!(
        status.as_u16() < 500,
        "{method} {path} must not be a server error: {status} {v}"
    );
    (status, v)
}

/// (method, path, token, body, content type, expected status, expected code)
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

/// `GET path` as the holder of `token`, which must succeed: its JSON body.
async fn get_ok(tb: &common::TestBroker, path: &str, token: &str) -> Value {
    let (st, v) = raw(tb, "GET", path, Some(token), None, None).await;
    assert!(st.is_success(), "GET {path}: {st} {v}");
    v
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    let tb = spawn().await;
    let alice = tb.token("alice").to_string();
    let a = Some(alice.as_str());
    let json_ct = Some("application/json");
    let cases: Vec<Case> = vec![
        ("GET", "/me", None, None, None, 401, "unauthenticated"),
        (
            "GET",
            "/me",
            Some("fdt_not-a-real-token"),
            None,
            None,
            401,
            "unauthenticated",
        ),
        (
            "GET",
            "/me",
            Some("garbage"),
            None,
            None,
            401,
            "unauthenticated",
        ),
        (
            "POST",
            "/requests",
            a,
            Some("{not json"),
            json_ct,
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read","justification":"x","sudo":true}"#),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read","justification":"x","duration_secs":-60}"#),
            json_ct,
            400,
            "invalid_duration",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read","justification":"x","duration_secs":0}"#),
            json_ct,
            400,
            "invalid_duration",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(
                r#"{"bundle":"prod-db-read","justification":"x","duration_secs":9223372036854775807}"#,
            ),
            json_ct,
            400,
            "invalid_duration",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read","justification":"x","duration_secs":1e30}"#),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read","justification":"x","duration_secs":"1h"}"#),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read"}"#),
            json_ct,
            400,
            "justification_required",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-write","justification":"x"}"#),
            json_ct,
            400,
            "ticket_required",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"no-such-bundle"}"#),
            json_ct,
            404,
            "not_found",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{}"#),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"[1,2]"#),
            json_ct,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/requests",
            a,
            Some(r#"{"bundle":"prod-db-read"}"#),
            Some("text/plain"),
            415,
            "unsupported_media_type",
        ),
        (
            "GET",
            "/requests/req_00000000000000000000000000000000",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/requests/../../etc/passwd",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/requests/not-an-id",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/requests/req_00000000000000000000000000000000/approve",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/grants/grt_00000000000000000000000000000000",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/grants/req_00000000000000000000000000000000",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/grants/grt_00000000000000000000000000000000/revoke",
            a,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/requests?scope=everything",
            a,
            None,
            None,
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/requests?state=happy",
            a,
            None,
            None,
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/requests?limit=lots",
            a,
            None,
            None,
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/grants?state=active",
            a,
            None,
            None,
            400,
            "invalid_request",
        ),
        (
            "DELETE",
            "/requests",
            a,
            None,
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/nope", a, None, None, 404, "not_found"),
        ("GET", "/audit", a, None, None, 403, "forbidden"),
    ];
    for (method, path, token, body, ct, status, code) in cases {
        let (s, v) = raw(&tb, method, path, token, body, ct).await;
        assert_eq!(s.as_u16(), status, "{method} {path} {body:?}: {v}");
        assert_eq!(v["code"], code, "{method} {path} {body:?}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a message says what is wrong: {v}"
        );
    }

    // Too large a body.
    let big = format!(
        r#"{{"bundle":"prod-db-read","justification":"{}"}}"#,
        "x".repeat(100_000)
    );
    let (s, v) = raw(&tb, "POST", "/requests", a, Some(&big), json_ct).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );

    // A justification over the limit but under the body limit.
    let long = format!(
        r#"{{"bundle":"prod-db-read","justification":"{}"}}"#,
        "y".repeat(5000)
    );
    let (s, v) = raw(&tb, "POST", "/requests", a, Some(&long), json_ct).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    // Not eligible for a bundle.
    let (s, v) = raw(
        &tb,
        "POST",
        "/requests",
        Some(tb.token("carol")),
        Some(r#"{"bundle":"prod-db-read","justification":"x"}"#),
        json_ct,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("not_eligible")),
        "{v}"
    );

    // Deny by someone who is not an approver.
    let (r, _) = tb
        .client("alice")
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let (s, v) = raw(
        &tb,
        "POST",
        &format!("/requests/{}/deny", r.id),
        Some(tb.token("alice")),
        Some("{}"),
        json_ct,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("self_approval")),
        "{v}"
    );
    let (s, v) = raw(
        &tb,
        "POST",
        &format!("/requests/{}/approve", r.id),
        Some(tb.token("bob")),
        Some(r#"{"lgtm":1}"#),
        json_ct,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (400, Some("invalid_request")),
        "unknown fields: {v}"
    );
    assert_eq!(
        tb.client("alice").request(&r.id).await.unwrap().state,
        RequestState::Pending,
        "nothing changed"
    );

    // An extension of someone else's grant, and of a grant that is not active.
    let bob = tb.client("bob");
    let g = bob.approve(&r.id, None).await.unwrap().grant_id.unwrap();
    let (s, v) = raw(
        &tb,
        "POST",
        &format!("/grants/{g}/extend"),
        Some(tb.token("bob")),
        Some(r#"{"duration_secs":60}"#),
        json_ct,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    bob.revoke(&g).await.unwrap();
    let (s, v) = raw(
        &tb,
        "POST",
        &format!("/grants/{g}/extend"),
        a,
        Some(r#"{"duration_secs":60}"#),
        json_ct,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let tb = spawn().await;
    let (s, doc) = raw(&tb, "GET", "/openapi.json", None, None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 16, "all endpoints listed: {}", paths.len());
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            if path == "/events" || path == "/me/token" || path.starts_with("/ssh/") {
                // A stream / sign-out / what SSH hosts fetch (a KRL, key lines):
                // covered by their own tests (tests/ssh.rs for the last).
                continue;
            }
            let concrete = path.replace(
                "{id}",
                if path.starts_with("/grants") {
                    "grt_00000000000000000000000000000000"
                } else {
                    "req_00000000000000000000000000000000"
                },
            );
            let (status, v) = raw(
                &tb,
                &method.to_uppercase(),
                &concrete,
                Some(tb.token("carol")),
                None,
                None,
            )
            .await;
            assert_ne!(status.as_u16(), 405, "{method} {path} is served");
            assert!(
                !v["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no such endpoint"),
                "{method} {path} is served: {v}"
            );
        }
    }
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let tb = spawn().await;
    let pool = &tb.running.broker.store;
    let actor = firedoor_server::audit::Actor::System;
    let issued = firedoor_server::auth::issue_token(pool, &actor, "alice", common::t0())
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&issued.token).to_string();
    let c = tb.anonymous().as_user(&token);
    assert_eq!(c.me().await.unwrap().name, "alice");
    firedoor_server::auth::revoke_token(pool, &actor, &issued.id, common::t0())
        .await
        .unwrap();
    assert_eq!(c.me().await.unwrap_err().code(), Some("unauthenticated"));
    assert_eq!(
        tb.client("alice").me().await.unwrap().name,
        "alice",
        "other tokens still work"
    );
    let stored = tb.raw_db().await.strings("SELECT hash FROM tokens").await;
    assert!(
        stored.iter().all(|h| h.len() == 64 && !h.contains(&token)),
        "only hashes are stored"
    );
}

#[tokio::test]
async fn break_glass_flow_is_automatic_and_loud() {
    let tb = spawn().await;
    let mut carol_events = tb.client("carol").events(None).await.unwrap();
    let (r, _) = tb
        .client("alice")
        .create_request(&req("payments-incident-kit"), None)
        .await
        .unwrap();
    assert_eq!(
        r.state,
        RequestState::Active,
        "break-glass flow is automatic"
    );
    let e = tokio::time::timeout(std::time::Duration::from_secs(5), carol_events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        e.message.contains("BREAK GLASS"),
        "security hears of it: {}",
        e.message
    );
    let creds = tb
        .client("alice")
        .credentials(&r.grant_id.unwrap())
        .await
        .unwrap();
    assert_eq!(
        creds.items.len(),
        2,
        "one credential per resource of the bundle"
    );
}

#[tokio::test]
async fn a_break_glass_bundle_says_who_it_alerts() {
    let tb = spawn().await;
    let bundles = tb.client("alice").bundles().await.unwrap();
    let kit = bundles
        .iter()
        .find(|b| b.name == "payments-incident-kit")
        .unwrap();
    assert!(kit.terms.break_glass);
    let alerts = kit
        .terms
        .alerts
        .as_ref()
        .expect("a break-glass flow names its alerts");
    assert_eq!(alerts.groups, vec!["security".to_string()]);
    assert!(alerts.users.is_empty() && alerts.oncall.is_empty());
    assert!(alerts.admins, "admins hear of every break glass");
    let staging = bundles.iter().find(|b| b.name == "staging-shell").unwrap();
    assert!(!staging.terms.break_glass);
    assert_eq!(staging.terms.alerts, None, "only break glass alerts");
    // The JSON leaves it out for other flows.
    let raw: serde_json::Value = reqwest::Client::new()
        .get(tb.url("/bundles"))
        .bearer_auth(tb.token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let terms_of = |name: &str| {
        raw.as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()["terms"]
            .clone()
    };
    assert!(terms_of("staging-shell").get("alerts").is_none());
    assert_eq!(
        terms_of("payments-incident-kit")["alerts"]["groups"],
        serde_json::json!(["security"])
    );
}

#[tokio::test]
async fn refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("p", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = firedoor_server::Config::new(dir.path(), policy);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let err = firedoor_server::start(cfg)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("without TLS"), "{err}");
}

#[tokio::test]
async fn serves_tls_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = firedoor_core::policy::parse_policy("p", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = firedoor_server::Config::new(dir.path().join("data"), policy);
    cfg.tls = firedoor_server::Tls::Files {
        cert: cert.clone(),
        key,
    };
    let running = firedoor_server::start(cfg).await.unwrap();
    assert!(running.url().starts_with("https://"));
    let pem = std::fs::read(&cert).unwrap();
    let c = firedoor_client::Client::with_root_pem(&running.url(), None, &pem).unwrap();
    assert_eq!(c.health().await.unwrap().status, "ok");
    let plain = reqwest::get(format!("http://{}/api/v1/health", running.addr)).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no plain HTTP on a TLS port"
    );
    running.stop().await;
}

/// Attack: axum's own extractors answered a path parameter that is not UTF-8 with
/// `text/plain`, so clients (and fuzzers) got an error without a code. Every route
/// with a path parameter, every method, must answer JSON `{code, message}`.
#[tokio::test]
async fn non_utf8_path_parameters_get_json_errors() {
    let tb = spawn().await;
    let (_, doc) = raw(&tb, "GET", "/openapi.json", None, None, None).await;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        let concrete = path.replace("{id}", "%FF").replace("{name}", "%FF%FE");
        for method in ops.as_object().unwrap().keys() {
            // raw() asserts the body is JSON and the status is not a 5xx.
            let (status, v) = raw(
                &tb,
                &method.to_uppercase(),
                &concrete,
                Some(tb.token("carol")),
                Some("{}"),
                Some("application/json"),
            )
            .await;
            assert!(status.is_client_error(), "{method} {concrete}: {status}");
            assert!(
                v["code"].as_str().is_some_and(|c| !c.is_empty()) && v["message"].is_string(),
                "{method} {concrete}: {v}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "routes with a path parameter: {checked}");
}

/// The longest string the document allows at `pointer` (a schema with maxLength),
/// made of a two-byte character that every text pattern of the document accepts.
fn longest(doc: &Value, pointer: &str) -> String {
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"));
    let n = schema["maxLength"]
        .as_u64()
        .unwrap_or_else(|| panic!("{pointer} states no maxLength: {schema}"));
    "é".repeat(n as usize)
}

fn max_of(doc: &Value, pointer: &str) -> i64 {
    doc.pointer(pointer)
        .and_then(|s| s["maximum"].as_i64())
        .unwrap_or_else(|| panic!("{pointer} states no maximum"))
}

/// A schema-driven fuzzer must find no request that is valid by the served OpenAPI
/// document and still refused as malformed. This sends, for every body and
/// parameter the document bounds, a value at the bound: the broker may say 403/404/409
/// (who you are, what exists, what state it is in) but never 400/413/415/422.
#[tokio::test]
async fn requests_at_the_documented_bounds_are_accepted() {
    let tb = spawn().await;
    let (_, doc) = raw(&tb, "GET", "/openapi.json", None, None, None).await;
    let s = "/components/schemas";
    let bob = tb.token("bob").to_string();
    let carol = tb.token("carol").to_string();
    let alice = tb.token("alice").to_string();
    let json_ct = Some("application/json");
    let malformed = |status: StatusCode| matches!(status.as_u16(), 400 | 413 | 415 | 422);

    // Every flow's alternative of CreateRequest: its bundles, its maximum duration,
    // justification and ticket at their maximum length, the longest idempotency key.
    let alternatives = doc
        .pointer(&format!("{s}/CreateRequest/anyOf"))
        .and_then(Value::as_array)
        .expect("CreateRequest lists one alternative per flow")
        .clone();
    assert_eq!(alternatives.len(), 4, "one per flow of the demo policy");
    let mut pending = None;
    for (i, alt) in alternatives.iter().enumerate() {
        let base = format!("{s}/CreateRequest/anyOf/{i}");
        for bundle in alt["properties"]["bundle"]["enum"].as_array().unwrap() {
            let body = serde_json::json!({
                "bundle": bundle,
                "duration_secs": max_of(&doc, &format!("{base}/properties/duration_secs")),
                "justification": longest(&doc, &format!("{base}/properties/justification")),
                "ticket": longest(&doc, &format!("{base}/properties/ticket")),
            });
            let bundle_name = bundle.as_str().unwrap();
            let key = format!("{}{bundle_name}", "~".repeat(200 - bundle_name.len()));
            let resp = reqwest::Client::new()
                .post(tb.url("/requests"))
                .bearer_auth(&alice)
                .header("idempotency-key", &key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert!(
                status.is_success(),
                "{bundle} at the documented bounds: {status} {v}"
            );
            if v["state"] == "pending" {
                pending = Some(v["id"].as_str().unwrap().to_string());
            }
        }
    }

    // Approve and deny with the longest comment / reason.
    let id = pending.expect("a pending request");
    let comment = serde_json::json!({ "comment": longest(&doc, &format!("{s}/ApproveBody/properties/comment")) });
    let (st, v) = raw(
        &tb,
        "POST",
        &format!("/requests/{id}/approve"),
        Some(&bob),
        Some(&comment.to_string()),
        json_ct,
    )
    .await;
    assert!(!malformed(st), "approve: {st} {v}");
    let reason =
        serde_json::json!({ "reason": longest(&doc, &format!("{s}/DenyBody/properties/reason")) });
    let (st, v) = raw(
        &tb,
        "POST",
        &format!("/requests/{id}/deny"),
        Some(&carol),
        Some(&reason.to_string()),
        json_ct,
    )
    .await;
    assert!(!malformed(st), "deny: {st} {v}");

    // Query parameters and headers at their documented extremes.
    let p = |op: &str, i: usize| format!("/paths/{op}/parameters/{i}/schema");
    let lim = max_of(&doc, &p("~1requests/get", 2));
    let (st, v) = raw(
        &tb,
        "GET",
        &format!("/requests?scope=all&state=timed_out&limit={lim}"),
        Some(&carol),
        None,
        None,
    )
    .await;
    assert!(st.is_success(), "{st} {v}");
    let lim = max_of(&doc, &p("~1grants/get", 2));
    let (st, v) = raw(
        &tb,
        "GET",
        &format!("/grants?scope=all&state=live&limit={lim}"),
        Some(&carol),
        None,
        None,
    )
    .await;
    assert!(st.is_success(), "{st} {v}");
    let after = max_of(&doc, &p("~1audit/get", 0));
    let lim = max_of(&doc, &p("~1audit/get", 1));
    let (st, v) = raw(
        &tb,
        "GET",
        &format!("/audit?after={after}&limit={lim}"),
        Some(&carol),
        None,
        None,
    )
    .await;
    assert!(st.is_success(), "{st} {v}");
    let resp = reqwest::Client::new()
        .get(tb.url("/events"))
        .bearer_auth(&alice)
        .header(
            "last-event-id",
            max_of(&doc, &p("~1events/get", 0)).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "events: {}", resp.status());
    drop(resp);

    // Break glass: the longest device name, secret value and unlock reason.
    let keys = firedoor_client::device::DeviceKeys::generate();
    let dev = serde_json::json!({
        "name": longest(&doc, &format!("{s}/RegisterDevice/properties/name")),
        "recipient": keys.recipient(),
        "signing_key": keys.signing_key_b64(),
    });
    let (st, v) = raw(
        &tb,
        "POST",
        "/devices",
        Some(&alice),
        Some(&dev.to_string()),
        json_ct,
    )
    .await;
    assert!(st.is_success(), "register: {st} {v}");
    let n = doc
        .pointer(&format!("{s}/PutSecret/properties/value/maxLength"))
        .and_then(Value::as_u64)
        .unwrap() as usize;
    // Four bytes a character: the documented length is the byte limit's worst case.
    let value = serde_json::json!({ "value": "\u{1F525}".repeat(n) });
    let (st, v) = raw(
        &tb,
        "PUT",
        "/secrets/payments-db-breakglass",
        Some(&carol),
        Some(&value.to_string()),
        json_ct,
    )
    .await;
    assert!(st.is_success(), "put secret: {st} {v}");
    let unlock = serde_json::json!({ "reason": longest(&doc, &format!("{s}/OnlineUnlock/properties/reason")) });
    let (st, v) = raw(
        &tb,
        "POST",
        "/secrets/payments-db-breakglass/unlock",
        Some(&alice),
        Some(&unlock.to_string()),
        json_ct,
    )
    .await;
    assert!(st.is_success(), "online unlock: {st} {v}");
}

// ------------------------------------------------- access ends everywhere (issue 8 §2)

/// Waits up to 2 s for an event stream to end (a deadline on a liveness property:
/// the broker must close it within 1 s; nothing here waits for time to pass).
async fn stream_ends(events: &mut firedoor_client::EventStream) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => continue, // history or news: keep reading
        }
    }
}

/// A fresh token for `user` valid `ttl_secs` at the broker's clock.
async fn token_for(tb: &common::TestBroker, user: &str, ttl_secs: i64) -> String {
    use secrecy::ExposeSecret;
    firedoor_server::auth::issue_token_with_ttl(
        &tb.running.broker.store,
        &firedoor_server::audit::Actor::System,
        user,
        tb.running.broker.now(),
        ttl_secs,
    )
    .await
    .unwrap()
    .token
    .expose_secret()
    .to_string()
}

/// Attack: a stolen or signed-out token keeps an open event stream and goes on
/// receiving everything the user is told (requests, grants, security alerts) after
/// the token was revoked, expired, or its user was disabled.
#[tokio::test]
async fn open_event_streams_end_when_the_token_or_the_person_ends() {
    let tb = spawn().await;
    let url = tb.running.url();

    // 1. Revoked through the API (sign-out).
    let t = token_for(&tb, "alice", 3600).await;
    let c = firedoor_client::Client::new(&url, Some(&t)).unwrap();
    let mut s = c.events(None).await.unwrap();
    c.revoke_my_token().await.unwrap();
    assert!(
        stream_ends(&mut s).await,
        "revoked by sign-out: the stream ends"
    );
    let e = c.me().await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");

    // 2. Revoked in the store by another process (the CLI writes the database):
    // the stream notices without being told.
    let t = token_for(&tb, "alice", 3600).await;
    let c = firedoor_client::Client::new(&url, Some(&t)).unwrap();
    let mut s = c.events(None).await.unwrap();
    tb.raw_db()
        .await
        .execute(
            "UPDATE tokens SET revoked_at = '2030-01-01T00:00:00.000000Z' WHERE hash = $1",
            &firedoor_server::auth::hash_token(&t),
        )
        .await;
    // (the CLI path itself is covered in tests/process.rs)
    assert!(
        stream_ends(&mut s).await,
        "revoked elsewhere: the stream ends"
    );

    // 3. Expired: the manual clock moves past the token's end.
    let t = token_for(&tb, "alice", 3600).await;
    let c = firedoor_client::Client::new(&url, Some(&t)).unwrap();
    let mut s = c.events(None).await.unwrap();
    tb.advance(Duration::minutes(61));
    assert!(stream_ends(&mut s).await, "expired: the stream ends");
    assert_eq!(c.me().await.unwrap_err().status(), Some(401));

    // 4. The user is disabled by an admin (alice's default token lives 90 days).
    let alice = tb.client("alice");
    let mut s = alice.events(None).await.unwrap();
    let e = tb.client("bob").disable_user("alice").await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "only admins disable: {e}");
    tb.client("carol").disable_user("alice").await.unwrap();
    assert!(stream_ends(&mut s).await, "disabled: the stream ends");
    assert_eq!(alice.me().await.unwrap_err().status(), Some(401));

    // A stream that is still valid stays open meanwhile.
    let mut bob = tb.client("bob").events(None).await.unwrap();
    assert!(!stream_ends(&mut bob).await, "bob's stream is unaffected");
}

/// Attack: a token leaked months ago still works forever; and one user opens
/// unbounded event streams to exhaust the broker.
#[tokio::test]
async fn tokens_expire_and_streams_are_capped_per_user() {
    let tb = spawn().await;
    let url = tb.running.url();
    // Streams: 8 per user; the 9th is refused with JSON; closing one frees a slot.
    let erin = tb.client("erin");
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(erin.events(None).await.unwrap());
    }
    let (s, v) = raw(&tb, "GET", "/events", Some(tb.token("erin")), None, None).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (429, Some("too_many_streams")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("8 event streams"));
    let _other = tb
        .client("alice")
        .events(None)
        .await
        .expect("another user is not affected");
    drop(open.pop());
    eventually("a closed stream frees its slot", || async {
        (tb.running.broker.access.open_streams("erin") < 8).then_some(())
    })
    .await;
    open.push(erin.events(None).await.unwrap());
    drop(open);

    let short = token_for(&tb, "bob", 30 * 86_400).await;
    let bob30 = firedoor_client::Client::new(&url, Some(&short)).unwrap();
    bob30.me().await.unwrap();
    let tokens = firedoor_server::auth::list_tokens(&tb.running.broker.store, "bob")
        .await
        .unwrap();
    assert!(
        tokens.iter().all(|t| t.2.is_some()),
        "every token has an expiry: {tokens:?}"
    );
    tb.advance(Duration::days(31));
    let e = bob30.me().await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some("unauthenticated")));
    tb.client("bob")
        .me()
        .await
        .expect("the default token lives 90 days");
    tb.advance(Duration::days(60));
    let e = tb.client("bob").me().await.unwrap_err();
    assert_eq!(e.status(), Some(401), "past 90 days: {e}");
    let e = firedoor_server::auth::issue_token_with_ttl(
        &tb.running.broker.store,
        &firedoor_server::audit::Actor::System,
        "bob",
        tb.running.broker.now(),
        400 * 86_400,
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("a token lives between"), "{e}");
}

/// Attack: probing `GET /grants/{id}/credentials` with someone else's grant id
/// answered 403, telling the prober the grant exists.
#[tokio::test]
async fn credentials_of_a_grant_you_may_not_see_is_404() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let r = alice
        .create_request(&req("staging-shell"), None)
        .await
        .unwrap()
        .0;
    let gid = r.grant_id.unwrap();
    alice.credentials(&gid).await.unwrap();
    let unknown = firedoor_core::GrantId::new();
    let (s1, v1) = raw(
        &tb,
        "GET",
        &format!("/grants/{gid}/credentials"),
        Some(tb.token("dave")),
        None,
        None,
    )
    .await;
    let (s2, v2) = raw(
        &tb,
        "GET",
        &format!("/grants/{unknown}"),
        Some(tb.token("dave")),
        None,
        None,
    )
    .await;
    let (s3, v3) = raw(
        &tb,
        "GET",
        &format!("/grants/{gid}"),
        Some(tb.token("dave")),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s1.as_u16(), &v1),
        (404, &v2),
        "same answer as an unknown id"
    );
    assert_eq!((s3.as_u16(), &v3), (404, &v2));
    assert_eq!(s2.as_u16(), 404);
}

/// Attack: tokens issued before expiry existed would live forever. The migration
/// gives each of them created_at + 90 days, in the stored time format.
#[tokio::test]
async fn existing_tokens_get_90_days_from_their_creation() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("0001_") || name.starts_with("0002_") {
            std::fs::copy(&p, old.join(&name)).unwrap();
        }
    }
    let db = dir.path().join("firedoor.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (name, groups_json, admin, created_at) VALUES ('old', '[]', 0, '2026-01-31T10:20:30.123456Z')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO tokens (id, user_name, hash, created_at) VALUES ('tok_00000000000000000000000000000001', 'old', 'h', '2026-01-31T10:20:30.123456Z')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = firedoor_server::store::Store::open_sqlite(&db)
        .await
        .unwrap();
    let tokens = firedoor_server::auth::list_tokens(&store, "old")
        .await
        .unwrap();
    assert_eq!(
        tokens[0].2.map(|t| t.text()).as_deref(),
        Some("2026-05-01T10:20:30.123456Z"),
        "created_at + 90 days"
    );
}

/// Any signed-in user gets the broker's signed audit head and the signed head at an
/// earlier record (a count and a hash, no content); every record and head verifies
/// with the public key of `GET /broker`. Bad sequence numbers are JSON 4xx.
#[tokio::test]
async fn audit_heads_are_signed_and_served_to_any_user() {
    let tb = common::spawn().await;
    let dave = tb.token("dave");
    let (s, id) = raw(&tb, "GET", "/broker", Some(dave), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let key =
        firedoor_core::breakglass::decode_public_key(id["signing_key"].as_str().unwrap()).unwrap();
    let (s, head) = raw(&tb, "GET", "/audit/head", Some(dave), None, None).await;
    assert_eq!(s, StatusCode::OK, "{head}");
    let head: firedoor_core::audit::SignedHead = serde_json::from_value(head).unwrap();
    assert!(head.signature_valid(&key));
    let records = tb.client("carol").audit(0, 5000).await.unwrap();
    assert_eq!(head.seq, records.len() as i64);
    assert_eq!(head.hash, records.last().unwrap().hash);
    // Each commit's last record is signed, and vouches for the ones before it.
    assert_eq!(
        firedoor_core::audit::verify_signed_chain(&records, &key).unwrap(),
        (head.seq, head.hash.clone())
    );
    assert!(records.last().unwrap().signature.is_some());
    let (s, first) = raw(&tb, "GET", "/audit/heads/1", Some(dave), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let first: firedoor_core::audit::SignedHead = serde_json::from_value(first).unwrap();
    assert_eq!((first.seq, &first.hash), (1, &records[0].hash));
    assert!(first.signature_valid(&key));
    assert_eq!(
        serde_json::to_value(&first)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        4
    );

    for (path, status) in [
        ("/audit/heads/0", StatusCode::BAD_REQUEST),
        ("/audit/heads/-3", StatusCode::BAD_REQUEST),
        ("/audit/heads/abc", StatusCode::BAD_REQUEST),
        ("/audit/heads/99999999", StatusCode::NOT_FOUND),
    ] {
        let (s, body) = raw(&tb, "GET", path, Some(dave), None, None).await;
        assert_eq!(s, status, "{path}: {body}");
        assert!(
            body["code"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    let (s, _) = raw(&tb, "GET", "/audit/head", None, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// The upgrade: records written before audit signatures (no signature) are signed at
/// the first start, while nothing is anchored yet. Afterwards an unsigned record
/// means someone without the key wrote it, and the broker refuses to start.
#[tokio::test]
async fn records_from_before_signatures_are_signed_at_the_first_start_only() {
    if common::on_postgres() {
        // An upgrade of SQLite stores only: PostgreSQL stores start with signatures.
        return;
    }
    let tb = common::spawn().await;
    let data = tb.dir.path().join("data");
    let n = tb.client("carol").audit(0, 5000).await.unwrap().len() as i64;
    tb.running.stop().await;
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("firedoor.db").display()))
            .await
            .unwrap();
    // As the database looks right after migration 0003, with no anchor yet.
    sqlx::query("UPDATE audit SET signature = NULL")
        .execute(&pool)
        .await
        .unwrap();
    std::fs::remove_file(data.join("audit-anchor.log")).unwrap();
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let cfg = firedoor_server::Config::new(&data, policy.clone());
    let b = firedoor_server::start(cfg).await.unwrap();
    let v = firedoor_server::audit::verify(&b.broker.store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.records, n + 1, "all signed, plus broker_started");
    b.stop().await;

    // Now anchored: a log that ends unsigned (a record added without the key) is
    // refused, not signed.
    let last: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET signature = NULL WHERE seq = $1")
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let e = firedoor_server::start(firedoor_server::Config::new(&data, policy))
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains(&format!("record {last} has no signature on or after it")),
        "{e}"
    );
}

/// Attack: someone with write access to the database but without the broker key
/// appends a record, chained correctly and unsigned, while the broker runs. The
/// broker signs only the last record of its own commits, and never onto an
/// unsigned head: its later records stay unsigned rather than vouch for the
/// forged one, and `audit verify` names the forged record.
#[tokio::test]
async fn a_record_added_without_the_key_is_not_vouched_for_by_later_commits() {
    let tb = common::spawn().await;
    let store = &tb.running.broker.store;
    let records = firedoor_server::audit::records(store, 0, 5000)
        .await
        .unwrap();
    let last = records.last().unwrap();
    let mut forged = firedoor_core::audit::AuditRecord {
        seq: last.seq + 1,
        at: last.at.clone(),
        actor: "carol".into(),
        action: "user_added".into(),
        subject: "mallory".into(),
        details: r#"{"admin":true}"#.into(),
        prev_hash: last.hash.clone(),
        hash: String::new(),
        signature: None,
    };
    forged.hash = forged.expected_hash();
    let insert = "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    macro_rules! forge {
        ($pool:expr) => {
            sqlx::query(insert)
                .bind(forged.seq)
                .bind(&forged.at)
                .bind(&forged.actor)
                .bind(&forged.action)
                .bind(&forged.subject)
                .bind(&forged.details)
                .bind(&forged.prev_hash)
                .bind(&forged.hash)
                .execute($pool)
                .await
                .unwrap()
        };
    }
    match &tb.database {
        Some(firedoor_server::store::DatabaseUrl::Postgres(url)) => {
            forge!(&sqlx::PgPool::connect(url).await.unwrap());
        }
        _ => {
            let file = tb.dir.path().join("data").join("firedoor.db");
            forge!(
                &sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
                    .await
                    .unwrap()
            );
        }
    }

    // The broker writes on: two commits after the forged record.
    for name in ["oscar", "peggy"] {
        firedoor_server::auth::add_user(
            store,
            &firedoor_server::audit::Actor::System,
            name,
            &[],
            false,
            tb.running.broker.now(),
        )
        .await
        .unwrap();
    }
    let after = firedoor_server::audit::records(store, 0, 5000)
        .await
        .unwrap();
    assert!(after.len() as i64 > forged.seq, "the broker chained on");
    assert!(
        after[forged.seq as usize..]
            .iter()
            .all(|r| r.signature.is_none()),
        "nothing after the forged record is signed"
    );
    let e = firedoor_server::audit::verify(store)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.seq, forged.seq, "{e}");
    assert!(e.problem.contains("no signature"), "{e}");
}

/// While records are written the broker anchors its head every `anchor_interval`
/// (a minute by default), not only at start and shutdown: a crash loses at most
/// that much from the anchor.
#[tokio::test]
async fn the_head_is_anchored_periodically_while_records_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = firedoor_server::Config::new(&data, policy);
    cfg.anchor_interval = std::time::Duration::from_millis(50);
    let b = firedoor_server::start(cfg).await.unwrap();
    let anchored = || {
        std::fs::read_to_string(data.join("audit-anchor.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<firedoor_core::audit::SignedHead>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(anchored().last().unwrap().seq, 1, "anchored at start");
    firedoor_server::auth::add_user(
        &b.broker.store,
        &firedoor_server::audit::Actor::System,
        "alice",
        &[],
        false,
        b.broker.now(),
    )
    .await
    .unwrap();
    eventually("the new head is anchored", || async {
        (anchored().last().unwrap().seq == 3).then_some(())
    })
    .await;
    let key = b.broker.key.verifying_key();
    assert!(anchored().iter().all(|h| h.signature_valid(&key)));
    let before = anchored().len();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        anchored().len(),
        before,
        "an idle log is not anchored again"
    );
    b.stop().await;
}

/// Live events are kept for a limited time (7 days by default). A stream resuming
/// (`Last-Event-ID`) below what was pruned first gets a `resync` event (whose id
/// moves it past the gap), then what is still kept; resuming from there gets no
/// second resync. Nobody silently misses events.
async fn next(s: &mut firedoor_client::EventStream) -> firedoor_core::api::EventView {
    tokio::time::timeout(std::time::Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("event")
}

#[tokio::test]
async fn a_stream_resuming_below_pruned_events_is_told_to_resync() {
    let tb = spawn().await;
    let alice = tb.client("alice");
    let bob = tb.client("bob");
    let ask = |n: u32| CreateRequest {
        bundle: "prod-db-read".into(),
        justification: Some(format!("INC-{n}")),
        ..Default::default()
    };
    alice.create_request(&ask(1), None).await.unwrap();
    alice.create_request(&ask(2), None).await.unwrap();
    let mut s = bob.events(None).await.unwrap();
    let seen = next(&mut s).await;
    assert_eq!(seen.kind, "request_awaiting_approval");
    drop(s);

    // Eight days on: both events are past the retention and the worker prunes them.
    tb.advance(Duration::days(8));
    eventually("events pruned", || async {
        let through = tb
            .raw_db()
            .await
            .number("SELECT COALESCE(MAX(through), 0) FROM events_pruned")
            .await;
        (through > seen.id).then_some(())
    })
    .await;
    let (third, _) = alice.create_request(&ask(3), None).await.unwrap();

    let mut s = bob.events(Some(seen.id)).await.unwrap();
    let resync = next(&mut s).await;
    assert_eq!(resync.kind, firedoor_core::api::RESYNC_EVENT);
    assert!(resync.id > seen.id, "it moves the stream past the gap");
    assert!(resync.message.contains("reload"), "{}", resync.message);
    let kept = next(&mut s).await;
    assert_eq!(kept.request_id, Some(third.id), "then what is still kept");
    drop(s);

    let mut s = bob.events(Some(resync.id)).await.unwrap();
    let again = next(&mut s).await;
    assert_eq!(again.request_id, Some(third.id), "no second resync");
}

/// Attack: a non-admin calling each admin-only operation through the library (the
/// API the CLI, the desktop's demo mode and any later transport use, not HTTP) is
/// refused with `forbidden`, and nothing changes. The check lives in the operation,
/// so no transport can forget it.
#[tokio::test]
async fn non_admins_are_forbidden_every_admin_operation_through_the_library() {
    use firedoor_core::access::{check_admin, Actor, AdminAction};
    use firedoor_core::policy::Principal;
    use firedoor_core::ErrorCode;
    use firedoor_server::error::Error;

    let t = spawn().await;
    let b = t.running.broker.clone();
    let alice = Actor::User(Principal {
        name: "alice".into(),
        groups: vec!["oncall".into()],
        admin: false,
        oncall: Vec::new(),
    });
    let forbidden = |what: &str, r: Result<(), Error>| match r {
        Err(Error::Rule(e)) => assert_eq!(
            e.code,
            ErrorCode::Forbidden,
            "{what} by a non-admin must be forbidden, got {e:?}"
        ),
        Err(other) => panic!("{what} by a non-admin: expected forbidden, got {other}"),
        Ok(()) => panic!("{what} by a non-admin succeeded: it must be forbidden"),
    };
    let secret = "payments-db-breakglass";
    // Every admin-only action is walked: adding one to `AdminAction::ALL` without
    // a case here fails this test.
    for action in AdminAction::ALL {
        let r = match action {
            AdminAction::ReadAudit => b.audit_records(&alice, 0, 10).await.map(|_| ()),
            AdminAction::DisableUser => b.disable_user(&alice, "dave", true).await.map(|_| ()),
            AdminAction::SetGroups => b
                .set_groups(&alice, "alice", &["security".into()], true)
                .await
                .map(|_| ()),
            AdminAction::PutSecret => b.put_secret(&alice, secret, "hunter2").await.map(|_| ()),
            AdminAction::RotateSecret => b.rotate_secret_now(&alice, secret).await.map(|_| ()),
            AdminAction::ListAllSecrets => b.all_secrets(&alice).await.map(|_| ()),
            AdminAction::ListAllDevices => b.all_devices(&alice).await.map(|_| ()),
            AdminAction::OverrideOnCall => {
                b.remove_override(&alice, "any", "ovr_0").await.map(|_| ())
            }
            AdminAction::ManageNotifications => {
                forbidden(
                    "listing deliveries",
                    b.deliveries(&alice, None, 10).await.map(|_| ()),
                );
                b.retry_delivery(&alice, "msg_0").await.map(|_| ())
            }
            AdminAction::RotateSshCa => b.rotate_ssh_ca(&alice, "any", 0).await.map(|_| ()),
            // issue 14: drills
            AdminAction::StartDrill => {
                forbidden("listing drills", b.list_drills(&alice).await.map(|_| ()));
                b.start_drill(&alice, secret).await.map(|_| ())
            }
        };
        forbidden(&format!("{action:?}"), r);
        assert!(check_admin(&alice, *action).is_err());
    }
    // Nothing happened: dave is not disabled, alice did not join security, no value
    // of the secret was stored.
    assert!(!firedoor_server::access::is_disabled(&b.store, "dave")
        .await
        .unwrap());
    let me = t.client("alice").me().await.unwrap();
    assert_eq!(me.groups, vec!["oncall".to_string()], "groups unchanged");
    let carol = Actor::User(Principal {
        name: "carol".into(),
        groups: vec!["security".into()],
        admin: true,
        oncall: Vec::new(),
    });
    let secrets = b.all_secrets(&carol).await.unwrap();
    let s = secrets.iter().find(|s| s.name == secret).unwrap();
    assert_eq!(s.version, 0, "no value was stored by the refused call");
    // The CLI acts as an operator the rules allow explicitly.
    let cli = Actor::Cli("ops".into());
    assert!(b.all_devices(&cli).await.is_ok());
    assert!(b.audit_records(&cli, 0, 10).await.is_ok());
    t.running.stop().await;
}

/// Lets provisioning reach the target only once the test opens it, counting arrivals.
struct Gate {
    inner: firedoor_server::connectors::demo::DemoConnector,
    open: tokio::sync::Semaphore,
    arrived: std::sync::atomic::AtomicUsize,
}

impl firedoor_server::connectors::Connector for Gate {
    fn kind(&self) -> &'static str {
        "gate"
    }
    fn provision<'a>(
        &'a self,
        t: &'a firedoor_server::connectors::Target<'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<firedoor_core::api::CredentialItem, firedoor_server::connectors::ConnectorError>,
    > {
        Box::pin(async move {
            self.arrived
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.open.acquire().await.unwrap().forget();
            self.inner.provision(t).await
        })
    }
    fn deprovision<'a>(
        &'a self,
        t: &'a firedoor_server::connectors::Target<'a>,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            firedoor_server::connectors::DeprovisionReport,
            firedoor_server::connectors::ConnectorError,
        >,
    > {
        self.inner.deprovision(t)
    }
    fn extend<'a>(
        &'a self,
        t: &'a firedoor_server::connectors::Target<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), firedoor_server::connectors::ConnectorError>>
    {
        self.inner.extend(t)
    }
}

/// Two attempts at one grant (the approval's own, and another replica's once the
/// lease looked expired) both reach the target; the one that commits second finds
/// the grant already active and changes nothing: the grant is active and the audit
/// log has one activation.
#[tokio::test]
async fn a_second_provisioning_attempt_finds_the_grant_active_and_records_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    let gate = Arc::new(Gate {
        inner: Default::default(),
        open: tokio::sync::Semaphore::new(0),
        arrived: Default::default(),
    });
    let mut connectors: firedoor_server::connectors::Connectors = Default::default();
    connectors.insert(
        "demo".into(),
        gate.clone() as Arc<dyn firedoor_server::connectors::Connector>,
    );
    let tb = common::spawn_with(firedoor_server::DEMO_POLICY, Some(connectors)).await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(&req("prod-db-read"), None)
        .await
        .unwrap();
    let bob = tb.client("bob");
    let rid = r.id;
    let approving = tokio::spawn(async move { bob.approve(&rid, None).await });
    let arrived = |n: usize| {
        let gate = gate.clone();
        async move { (gate.arrived.load(SeqCst) == n).then_some(()) }
    };
    eventually("the approval's attempt at the target", || arrived(1)).await;
    let gid = alice.request(&r.id).await.unwrap().grant_id.unwrap();
    let broker = tb.running.broker.clone();
    let second = tokio::spawn(async move { broker.provision(&gid).await });
    eventually("the second attempt at the target", || arrived(2)).await;
    gate.open.add_permits(2);
    let approved = approving.await.unwrap().unwrap();
    second.await.unwrap().unwrap();

    assert_eq!(approved.state, RequestState::Active);
    assert_eq!(alice.grant(&gid).await.unwrap().state, GrantState::Active);
    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    let activations = audit
        .iter()
        .filter(|a| a.action == "grant_activated" && a.subject == gid.to_string())
        .count();
    assert_eq!(activations, 1, "one activation recorded");
    let verified = firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap();
    assert!(verified.is_ok(), "chain verifies: {verified:?}");
}
