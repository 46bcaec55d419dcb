//! On-call schedules decide who may request and approve: a real broker over HTTP,
//! a manual clock moved across handoffs (never slept through), overrides through
//! the admin API. Runs on SQLite and, with FIREDOOR_TEST_STORE=postgres, on
//! PostgreSQL (`make test` does both).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::{CreateRequest, NewOverride, OverrideView};
use firedoor_core::lifecycle::RequestState;

/// t0 is Sunday 2030-03-17 17:46:40 UTC. Payments primary hands off weekly on
/// Monday 09:00 Berlin time (08:00 UTC until clocks go forward on 31 March, 07:00
/// UTC after); SRE secondary is erin, every day.
const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.payments-kit]
title = "Payments incident kit"
resources = [{ integration = "demo", resource = "payments", permission = "write" }]

[bundles.payments-read]
title = "Payments read"
resources = [{ integration = "demo", resource = "payments", permission = "read" }]

[oncall.payments-primary]
title = "Payments primary"
time_zone = "Europe/Berlin"

[[oncall.payments-primary.layers]]
users = ["alice", "bob"]
start = "2030-03-18T09:00"
shift = "1w"

[oncall.sre-secondary]
time_zone = "UTC"

[[oncall.sre-secondary.layers]]
users = ["erin"]
start = "2030-01-01T00:00"
shift = "1d"

[flows.payments-oncall]
bundles = ["payments-kit"]
requesters = { oncall = ["payments-primary"] }
approvers = { oncall = ["sre-secondary"] }
approvals = 1
auto_approve = "requester_on_call"
default_duration = "1h"
max_duration = "4h"

[flows.payments-read]
bundles = ["payments-read"]
requesters = { groups = ["oncall"] }
approvers = { oncall = ["sre-secondary"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
pending_ttl = "4h"
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

fn kit() -> CreateRequest {
    CreateRequest {
        bundle: "payments-kit".into(),
        justification: Some("INC-1 payments down".into()),
        ..Default::default()
    }
}

fn read() -> CreateRequest {
    CreateRequest {
        bundle: "payments-read".into(),
        justification: Some("look at the ledger".into()),
        ..Default::default()
    }
}

/// carol (admin) puts dave on SRE secondary for two hours from `now`.
async fn dave_covers_erin(tb: &TestBroker, now: DateTime<Utc>) -> OverrideView {
    tb.client("carol")
        .add_override(
            "sre-secondary",
            &NewOverride {
                user: "dave".into(),
                starts_at: None,
                ends_at: now + Duration::hours(2),
                reason: Some("erin at the dentist".into()),
            },
        )
        .await
        .unwrap()
}

async fn audit_actions(tb: &TestBroker) -> Vec<(String, String, serde_json::Value)> {
    tb.client("carol")
        .audit(0, 5000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.actor, serde_json::from_str(&r.details).unwrap()))
        .collect()
}

/// The rotation decides who may request, and being on call approves at once:
/// before the first handoff nobody may, then alice (auto-approved, the audit says
/// why), then bob a week later (alice no longer may), with the handoff after the
/// daylight saving change at the same local time.
#[tokio::test]
async fn requesters_follow_the_rotation_across_handoffs_and_on_call_approves_automatically() {
    let tb = spawn_with(POLICY, None).await;
    let (alice, bob) = (tb.client("alice"), tb.client("bob"));

    // Sunday evening: the rotation has not started; nobody is on call.
    let e = alice.create_request(&kit(), None).await.unwrap_err();
    assert_eq!(code(e), (403, "not_eligible".into()));
    assert!(alice.me().await.unwrap().oncall.is_empty());

    // Monday 09:00 Berlin (08:00 UTC): alice's week.
    tb.clock.set(at("2030-03-18T08:00:00Z"));
    let me = alice.me().await.unwrap();
    assert_eq!(me.oncall.len(), 1);
    assert_eq!(me.oncall[0].schedule, "payments-primary");
    assert_eq!(me.oncall[0].title, "Payments primary");
    assert_eq!(me.oncall[0].until, Some(at("2030-03-25T08:00:00Z")));
    assert!(bob.me().await.unwrap().oncall.is_empty());
    let (r, _) = alice.create_request(&kit(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Active, "on call: approved at once");
    let e = bob.create_request(&kit(), None).await.unwrap_err();
    assert_eq!(code(e), (403, "not_eligible".into()), "bob is not on call");
    let audit = audit_actions(&tb).await;
    let auto = audit
        .iter()
        .find(|(a, _, d)| a == "request_approved" && d["automatic"] == true)
        .expect("the automatic approval is recorded");
    assert_eq!(
        auto.2["on_call"], "payments-primary",
        "and why: {:?}",
        auto.2
    );

    // One second before the handoff alice still is; at it, bob is.
    tb.clock.set(at("2030-03-25T07:59:59Z"));
    assert_eq!(alice.me().await.unwrap().oncall.len(), 1);
    tb.clock.set(at("2030-03-25T08:00:00Z"));
    assert!(alice.me().await.unwrap().oncall.is_empty());
    let e = alice.create_request(&kit(), None).await.unwrap_err();
    assert_eq!(
        code(e),
        (403, "not_eligible".into()),
        "alice's week is over"
    );
    let me = bob.me().await.unwrap();
    // Clocks go forward on 31 March: the next 09:00 Berlin is 07:00 UTC.
    assert_eq!(me.oncall[0].until, Some(at("2030-04-01T07:00:00Z")));
    let (r, _) = bob.create_request(&kit(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Active);
    tb.clock.set(at("2030-04-01T07:00:00Z"));
    assert_eq!(alice.me().await.unwrap().oncall.len(), 1, "alice again");
    tb.running.stop().await;
}

/// Approvers named by a schedule: whoever is on call is told of the request, sees
/// it awaiting them and may approve; someone else may not. An admin's override
/// moves that to the person covering, and only while it lasts.
#[tokio::test]
async fn the_approver_on_call_is_notified_and_decides_and_an_override_moves_that() {
    let tb = spawn_with(POLICY, None).await;
    let (alice, dave, erin) = (tb.client("alice"), tb.client("dave"), tb.client("erin"));

    let (r, _) = alice.create_request(&read(), None).await.unwrap();
    assert_eq!(r.state, RequestState::Pending);
    let told = tb
        .running
        .broker
        .events_after("erin", 0, 1000)
        .await
        .unwrap();
    assert!(
        told.iter()
            .any(|e| e.kind == "request_awaiting_approval" && e.request_id == Some(r.id)),
        "erin, on call, is told: {told:?}"
    );
    assert!(tb
        .running
        .broker
        .events_after("dave", 0, 1000)
        .await
        .unwrap()
        .is_empty());
    let waiting = erin.requests("awaiting_me").await.unwrap();
    assert_eq!(waiting.len(), 1);
    // Someone who may not approve does not even see the request.
    let e = dave.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "dave is not on call");

    // carol (admin) puts dave on SRE secondary for two hours.
    let now = tb.running.broker.now();
    let o = dave_covers_erin(&tb, now).await;
    assert!(o.id.starts_with("ovr_"));
    let schedules = dave.oncall().await.unwrap();
    let sre = schedules
        .iter()
        .find(|s| s.name == "sre-secondary")
        .unwrap();
    let oc = sre.on_call.as_ref().unwrap();
    assert_eq!((oc.user.as_str(), oc.by_override), ("dave", true));
    assert_eq!(oc.until, Some(now + Duration::hours(2)));
    assert_eq!(sre.overrides.len(), 1);
    let e = erin.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "erin is covered for");
    let approved = dave.approve(&r.id, None).await.unwrap();
    assert_eq!(approved.state, RequestState::Active);

    // The override ends: erin again, dave no longer.
    let (r2, _) = alice.create_request(&read(), None).await.unwrap();
    tb.advance(Duration::hours(2));
    let e = dave.approve(&r2.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "the override is over");
    assert_eq!(
        erin.approve(&r2.id, None).await.unwrap().state,
        RequestState::Active
    );
    tb.running.stop().await;
}

/// Each broker keeps the users and overrides in memory (they are read by nearly
/// every call), but a change made by another process (another replica, the CLI,
/// an operator in the database) counts from the next call on: the copy is tagged
/// with a number every change bumps, read with the caller's token.
#[tokio::test]
async fn an_override_removed_by_another_process_counts_at_once() {
    let tb = spawn_with(POLICY, None).await;
    let (alice, dave, erin) = (tb.client("alice"), tb.client("dave"), tb.client("erin"));
    let now = tb.running.broker.now();
    let o = dave_covers_erin(&tb, now).await;
    // The broker's copy now has dave covering: a request tells him, not erin.
    let (r, _) = alice.create_request(&read(), None).await.unwrap();
    let told = |who: &'static str| {
        let b = &tb.running.broker;
        async move {
            b.events_after(who, 0, 1000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind == "request_awaiting_approval")
                .filter_map(|e| e.request_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(told("dave").await, vec![r.id]);
    assert!(told("erin").await.is_empty());
    assert_eq!(dave.requests("awaiting_me").await.unwrap().len(), 1);

    // Someone with the database removes the override behind the broker's back.
    let removed = tb
        .raw_db()
        .await
        .execute(
            "UPDATE oncall_overrides SET removed_at = created_at WHERE id = $1",
            &o.id,
        )
        .await;
    assert_eq!(removed, 1);
    let e = dave.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 404, "dave no longer covers");
    let (r2, _) = alice.create_request(&read(), None).await.unwrap();
    assert_eq!(told("erin").await, vec![r2.id], "erin is told again");
    assert_eq!(told("dave").await, vec![r.id]);
    assert_eq!(
        erin.approve(&r.id, None).await.unwrap().state,
        RequestState::Active
    );
    tb.running.stop().await;
}

/// Overrides change who holds access rights, so only admins may set them; bad
/// input is a 4xx naming the problem; every change is in the audit log.
#[tokio::test]
async fn overrides_are_for_admins_checked_and_audited() {
    let tb = spawn_with(POLICY, None).await;
    let now = tb.running.broker.now();
    let carol = tb.client("carol");
    let good = NewOverride {
        user: "dave".into(),
        starts_at: None,
        ends_at: now + Duration::hours(1),
        reason: None,
    };

    // An engineer cannot put themselves on call (and so give themselves access).
    let e = tb
        .client("alice")
        .add_override(
            "payments-primary",
            &NewOverride {
                user: "alice".into(),
                ..good.clone()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), (403, "forbidden".into()));

    let cases: Vec<(&str, NewOverride, (u16, &str))> = vec![
        ("no-such-schedule", good.clone(), (404, "not_found")),
        (
            "sre-secondary",
            NewOverride {
                user: "nobody".into(),
                ..good.clone()
            },
            (404, "not_found"),
        ),
        (
            "sre-secondary",
            NewOverride {
                user: "Bad Name".into(),
                ..good.clone()
            },
            (400, "invalid_request"),
        ),
        (
            "sre-secondary",
            NewOverride {
                ends_at: now - Duration::minutes(1),
                starts_at: Some(now - Duration::hours(1)),
                ..good.clone()
            },
            (400, "invalid_request"),
        ),
        (
            "sre-secondary",
            NewOverride {
                starts_at: Some(now + Duration::hours(2)),
                ..good.clone()
            },
            (400, "invalid_request"),
        ),
        (
            "sre-secondary",
            NewOverride {
                ends_at: now + Duration::days(91),
                ..good.clone()
            },
            (400, "invalid_request"),
        ),
    ];
    for (schedule, body, want) in cases {
        let e = carol.add_override(schedule, &body).await.unwrap_err();
        assert_eq!(code(e), (want.0, want.1.to_string()), "{schedule} {body:?}");
    }
    // Unknown fields and a missing end are refused by the strict body.
    let http = reqwest::Client::new();
    for body in [
        serde_json::json!({ "user": "dave" }),
        serde_json::json!({ "user": "dave", "ends_at": "2030-03-17T20:00:00Z", "admin": true }),
        serde_json::json!({ "user": "dave", "ends_at": "tomorrow" }),
    ] {
        let resp = http
            .post(tb.url("/oncall/sre-secondary/overrides"))
            .bearer_auth(tb.token("carol"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    assert!(carol
        .oncall()
        .await
        .unwrap()
        .iter()
        .all(|s| s.overrides.is_empty()));

    let o = carol.add_override("sre-secondary", &good).await.unwrap();
    let e = tb
        .client("alice")
        .remove_override("sre-secondary", &o.id)
        .await
        .unwrap_err();
    assert_eq!(code(e), (403, "forbidden".into()));
    let removed = carol.remove_override("sre-secondary", &o.id).await.unwrap();
    assert!(removed.removed_at.is_some());
    let e = carol
        .remove_override("sre-secondary", &o.id)
        .await
        .unwrap_err();
    assert_eq!(code(e), (409, "conflict".into()));
    let e = carol
        .remove_override("payments-primary", &o.id)
        .await
        .unwrap_err();
    assert_eq!(code(e).0, 404, "an override of another schedule");

    let audit = audit_actions(&tb).await;
    let added: Vec<_> = audit
        .iter()
        .filter(|(a, _, _)| a == "oncall_override_added")
        .collect();
    assert_eq!(added.len(), 1, "refused attempts changed nothing");
    assert_eq!(added[0].1, "carol");
    assert_eq!(added[0].2["user"], "dave");
    assert_eq!(added[0].2["schedule"], "sre-secondary");
    assert_eq!(
        audit
            .iter()
            .filter(|(a, _, _)| a == "oncall_override_removed")
            .count(),
        1
    );
    let v = firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap();
    assert!(v.is_ok(), "the chain verifies");
    tb.running.stop().await;
}
