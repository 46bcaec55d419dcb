//! Approvers wherever they are: reminders, escalation to the next approvers,
//! approval windows and requests on someone else's behalf — a real broker over
//! HTTP, a manual clock moved past each deadline (never slept through), the
//! worker's pass run at each step. Runs on SQLite and, with
//! FIREDOOR_TEST_STORE=postgres, on PostgreSQL (`make test` does both).
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::{CreateRequest, EventView};
use firedoor_core::lifecycle::RequestState;

/// bob decides on weekdays 08:00–20:00 UTC; after 30 minutes (or outside those
/// hours at once) erin is asked too, after an hour security (carol). Requests time
/// out after two hours. carol may request for someone else.
const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.prod-db]
title = "Prod database"
resources = [{ integration = "demo", resource = "prod", permission = "write" }]

[flows.prod]
bundles = ["prod-db"]
requesters = { groups = ["oncall"] }
approvers = { users = ["bob"] }
approvers_window = { days = ["mon", "tue", "wed", "thu", "fri"], hours = "08:00-20:00", time_zone = "UTC" }
approvals = 1
default_duration = "1h"
max_duration = "4h"
pending_ttl = "2h"
remind_after = "10m"
escalate = [
  { after = "30m", approvers = { users = ["erin"] } },
  { after = "1h", approvers = { groups = ["security"] } },
]
on_behalf = { users = ["carol"] }
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

fn prod() -> CreateRequest {
    CreateRequest {
        bundle: "prod-db".into(),
        justification: Some("INC-7 replication lag".into()),
        ..Default::default()
    }
}

async fn told(tb: &TestBroker, user: &str) -> Vec<EventView> {
    tb.running
        .broker
        .events_after(user, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "request_awaiting_approval")
        .collect()
}

async fn pass(tb: &TestBroker, to: DateTime<Utc>) {
    tb.clock.set(to);
    tb.running.broker.run_due_work().await.unwrap();
}

async fn audit(tb: &TestBroker, action: &str) -> Vec<(String, serde_json::Value)> {
    tb.client("carol")
        .audit(0, 5000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| (r.actor, serde_json::from_str(&r.details).unwrap()))
        .collect()
}

/// Monday 09:00: bob is asked; the escalation approvers may not decide yet; bob is
/// reminded once at 10 minutes; at 30 minutes erin is asked (and may decide, bob
/// still may); at an hour security; at two hours it times out and alice hears so.
#[tokio::test]
async fn a_request_reminds_then_escalates_stage_by_stage_then_times_out() {
    let t = at("2030-03-18T09:00:00Z");
    let tb = spawn_at(POLICY, None, t).await;
    let (alice, erin) = (tb.client("alice"), tb.client("erin"));
    let (r, _) = alice.create_request(&prod(), None).await.unwrap();
    assert_eq!((r.state, r.stage), (RequestState::Pending, 0));
    assert_eq!(told(&tb, "bob").await.len(), 1);
    assert!(told(&tb, "erin").await.is_empty());
    assert!(erin.requests("awaiting_me").await.unwrap().is_empty());
    let e = erin.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e).0, 403, "erin is asked only once it escalates");

    pass(&tb, t + Duration::minutes(9)).await;
    assert_eq!(
        told(&tb, "bob").await.len(),
        1,
        "no reminder before 10 minutes"
    );
    pass(&tb, t + Duration::minutes(10)).await;
    pass(&tb, t + Duration::minutes(12)).await;
    let bob_told = told(&tb, "bob").await;
    assert_eq!(bob_told.len(), 2, "one reminder, once: {bob_told:?}");
    assert!(bob_told[1].message.starts_with("Reminder:"), "{bob_told:?}");
    assert_eq!(bob_told[1].request_id, Some(r.id));
    let reminded = audit(&tb, "request_reminded").await;
    assert_eq!(reminded.len(), 1);
    assert_eq!(reminded[0].1["asked"], serde_json::json!(["bob"]));

    pass(&tb, t + Duration::minutes(30)).await;
    let erin_told = told(&tb, "erin").await;
    assert_eq!(erin_told.len(), 1, "{erin_told:?}");
    assert!(erin_told[0].message.starts_with("Escalated to you"));
    assert_eq!(told(&tb, "bob").await.len(), 2, "bob is not asked again");
    let waiting = erin.requests("awaiting_me").await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].stage, 1);
    let esc = audit(&tb, "request_escalated").await;
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].0, "system");
    assert_eq!(
        esc[0].1,
        serde_json::json!({ "from": 0, "to": 1, "cause": "no_decision", "asked": ["erin"] })
    );
    // At the new stage erin is reminded after 10 more minutes.
    pass(&tb, t + Duration::minutes(40)).await;
    assert_eq!(told(&tb, "erin").await.len(), 2);

    pass(&tb, t + Duration::minutes(60)).await;
    assert_eq!(
        told(&tb, "carol").await.len(),
        1,
        "security is asked at an hour"
    );
    assert_eq!(audit(&tb, "request_escalated").await.len(), 2);

    pass(&tb, t + Duration::minutes(120)).await;
    let r = alice.request(&r.id).await.unwrap();
    assert_eq!(r.state, RequestState::TimedOut);
    let alice_told = tb
        .running
        .broker
        .events_after("alice", 0, 1000)
        .await
        .unwrap();
    assert!(alice_told
        .iter()
        .any(|e| e.kind == "request_timed_out" && e.request_id == Some(r.id)));
    tb.running.stop().await;
}

/// Any approver reached may decide: after the escalation bob still may.
#[tokio::test]
async fn those_asked_first_keep_the_right_to_decide_after_an_escalation() {
    let t = at("2030-03-18T09:00:00Z");
    let tb = spawn_at(POLICY, None, t).await;
    let (r, _) = tb
        .client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();
    pass(&tb, t + Duration::minutes(31)).await;
    let r = tb.client("bob").approve(&r.id, None).await.unwrap();
    assert_eq!(r.stage, 1);
    assert!(matches!(
        r.state,
        RequestState::Approved | RequestState::Active
    ));
    tb.running.stop().await;
}

/// On a Saturday bob's window is closed: erin is asked at once and the audit says
/// why. On a weekday evening, bob is asked until 20:00, then erin.
#[tokio::test]
async fn outside_the_approval_window_the_next_approvers_are_asked() {
    let sat = at("2030-03-23T10:00:00Z");
    let tb = spawn_at(POLICY, None, sat).await;
    let (r, _) = tb
        .client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();
    assert_eq!(r.stage, 1);
    assert!(told(&tb, "bob").await.is_empty(), "not bob on a Saturday");
    assert_eq!(told(&tb, "erin").await.len(), 1);
    let esc = audit(&tb, "request_escalated").await;
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].1["cause"], "outside_window");
    let r = tb.client("erin").approve(&r.id, None).await.unwrap();
    assert_ne!(r.state, RequestState::Pending);

    let evening = at("2030-03-25T19:55:00Z");
    tb.clock.set(evening);
    let (r2, _) = tb
        .client("alice")
        .create_request(&prod(), None)
        .await
        .unwrap();
    assert_eq!(r2.stage, 0);
    assert_eq!(told(&tb, "bob").await.len(), 1, "bob is asked at 19:55");
    pass(&tb, evening + Duration::minutes(4)).await;
    assert_eq!(told(&tb, "erin").await.len(), 1, "not yet");
    pass(&tb, evening + Duration::minutes(5)).await;
    assert_eq!(told(&tb, "erin").await.len(), 2, "at 20:00 erin is asked");
    assert_eq!(tb.client("alice").request(&r2.id).await.unwrap().stage, 1);
    tb.running.stop().await;
}

/// carol (an incident commander) requests for alice: approvers see who asked for
/// whom, the grant is alice's, neither of them may approve it, carol hears the
/// decision, and the audit names both. Nobody else may ask for others, nobody may
/// be given what they could not request themselves.
#[tokio::test]
async fn a_request_on_someone_elses_behalf_is_theirs_and_says_who_asked() {
    let t = at("2030-03-18T09:00:00Z");
    let tb = spawn_at(POLICY, None, t).await;
    let carol = tb.client("carol");
    let body = CreateRequest {
        on_behalf_of: Some("alice".into()),
        ..prod()
    };
    let (r, _) = carol.create_request(&body, None).await.unwrap();
    assert_eq!(r.requester, "alice");
    assert_eq!(r.requested_by.as_deref(), Some("carol"));
    let bob_told = told(&tb, "bob").await;
    assert_eq!(bob_told.len(), 1);
    assert!(
        bob_told[0].message.contains("carol requests Prod database")
            && bob_told[0].message.contains("on behalf of alice"),
        "{bob_told:?}"
    );
    // Both see it as theirs; carol may not decide it even once security is asked.
    assert_eq!(tb.client("alice").requests("mine").await.unwrap().len(), 1);
    assert_eq!(carol.requests("mine").await.unwrap().len(), 1);
    pass(&tb, t + Duration::minutes(61)).await;
    assert!(carol.requests("awaiting_me").await.unwrap().is_empty());
    let e = carol.approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e), (403, "self_approval".into()));
    let e = tb.client("alice").approve(&r.id, None).await.unwrap_err();
    assert_eq!(code(e), (403, "self_approval".into()));

    let r = tb.client("bob").approve(&r.id, None).await.unwrap();
    let grant = r.grant_id.expect("a grant");
    let g = eventually("the grant is active", || async {
        let g = tb.client("alice").grant(&grant).await.unwrap();
        (g.state == firedoor_core::lifecycle::GrantState::Active).then_some(g)
    })
    .await;
    assert_eq!(g.holder, "alice");
    let carol_told = tb
        .running
        .broker
        .events_after("carol", 0, 1000)
        .await
        .unwrap();
    assert!(
        carol_told
            .iter()
            .any(|e| e.kind == "request_approved" && e.request_id == Some(r.id)),
        "carol hears the decision: {carol_told:?}"
    );
    let created = audit(&tb, "request_created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].0, "carol");
    assert_eq!(created[0].1["on_behalf_of"], "alice");

    // Refusals.
    let for_ = |who: &str| CreateRequest {
        on_behalf_of: Some(who.into()),
        ..prod()
    };
    let e = tb
        .client("bob")
        .create_request(&for_("alice"), None)
        .await
        .unwrap_err();
    assert_eq!(
        code(e),
        (403, "not_eligible".into()),
        "bob may not ask for others"
    );
    let e = carol.create_request(&for_("dave"), None).await.unwrap_err();
    assert_eq!(
        code(e),
        (403, "not_eligible".into()),
        "dave may not have it himself"
    );
    let e = carol
        .create_request(&for_("mallory"), None)
        .await
        .unwrap_err();
    assert_eq!(code(e), (403, "not_eligible".into()), "no such user");
    let e = carol
        .create_request(&for_("carol"), None)
        .await
        .unwrap_err();
    assert_eq!(code(e), (400, "invalid_request".into()));
    tb.running.stop().await;
}

/// The same idempotency key from the person who asked returns the request made on
/// the other's behalf, instead of making a second one.
#[tokio::test]
async fn an_on_behalf_request_is_idempotent_for_the_one_who_asked() {
    let tb = spawn_at(POLICY, None, at("2030-03-18T09:00:00Z")).await;
    let body = CreateRequest {
        on_behalf_of: Some("alice".into()),
        ..prod()
    };
    let carol = tb.client("carol");
    let (a, created) = carol.create_request(&body, Some("key-1")).await.unwrap();
    assert_eq!(created, firedoor_client::Created::New);
    let (b, created) = carol.create_request(&body, Some("key-1")).await.unwrap();
    assert_eq!(created, firedoor_client::Created::Replayed);
    assert_eq!(a.id, b.id);
    tb.running.stop().await;
}

/// A request says who may decide it, from the policy, as it escalates: the flow's
/// approvers first, then each escalation's added to them.
#[tokio::test]
async fn a_request_says_who_can_approve_it_stage_by_stage() {
    use firedoor_core::api::WhoApproves;
    let t = at("2030-03-18T09:00:00Z");
    let tb = spawn_at(POLICY, None, t).await;
    let alice = tb.client("alice");
    let (r, _) = alice.create_request(&prod(), None).await.unwrap();
    let bob_only = WhoApproves {
        users: vec!["bob".into()],
        ..Default::default()
    };
    assert_eq!(r.approvers, bob_only);
    assert_eq!(alice.requests("mine").await.unwrap()[0].approvers, bob_only);

    pass(&tb, t + Duration::minutes(31)).await;
    let r = alice.request(&r.id).await.unwrap();
    assert_eq!(r.stage, 1);
    assert_eq!(r.approvers.users, vec!["bob", "erin"]);
    assert!(r.approvers.groups.is_empty());

    pass(&tb, t + Duration::minutes(61)).await;
    let r = alice.request(&r.id).await.unwrap();
    assert_eq!(
        r.approvers,
        WhoApproves {
            users: vec!["bob".into(), "erin".into()],
            groups: vec!["security".into()],
            oncall: vec![],
        }
    );
    // On the wire.
    let raw = serde_json::to_value(&r).unwrap();
    assert_eq!(raw["approvers"]["groups"], serde_json::json!(["security"]));
    tb.running.stop().await;
}
