//! Incidents open access: a real Alertmanager fires at the broker over HTTP;
//! PagerDuty deliveries are the documented payloads, signed by the test with the
//! real algorithm (HMAC-SHA256), since PagerDuty itself cannot be reached from here.
//! The broker's clock is manual: grace periods pass by moving it.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::{GrantState, RequestState};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.payments-kit]
title = "Payments incident kit"
resources = [{ integration = "demo", resource = "payments", permission = "write" }]

[bundles.prod-db-read]
title = "Prod DB read"
resources = [{ integration = "demo", resource = "app", permission = "read" }]

[incident_sources.monitoring]
kind = "alertmanager"
secret_env = "FIREDOOR_TEST_ALERTMANAGER_TOKEN"

[incident_sources.pagerduty]
kind = "pagerduty"
secret_env = "FIREDOOR_TEST_PAGERDUTY_SECRETS"

[incident_sources.opsgenie]
kind = "opsgenie"
secret_env = "FIREDOOR_TEST_OPSGENIE_TOKEN"

[incidents.payments-down]
source = "monitoring"
match = { service = "payments-api" }
bundles = ["payments-kit"]
responders = { users = ["alice"] }

[incidents.payments-og]
source = "opsgenie"
match = { service = "payments-api" }
bundles = ["payments-kit"]
responders = { users = ["alice"] }

[incidents.payments-pd]
source = "pagerduty"
match = { service = "PF9KMXH" }
bundles = ["payments-kit"]
responders = { users = ["alice"] }

[flows.payments-incident]
bundles = ["payments-kit"]
requesters = { groups = ["sre-leads"] }
approvers = { groups = ["security"] }
approvals = 1
auto_approve = "incident_responder"
incident_end_grace = "10m"
default_duration = "2h"
max_duration = "4h"

[flows.prod-read]
bundles = ["prod-db-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["sre-leads"] }
approvals = 1
default_duration = "1h"
max_duration = "4h"
"#;

const AM_TOKEN: &str = "am-token-6c1f0e9d2b";
const PD_OLD: &str = "pd-secret-old-4a7e";
const PD_NEW: &str = "pd-secret-new-91bd";
const OG_TOKEN: &str = "og-token-3f8a11";

fn set_secrets() {
    // Edition 2021: setting the environment is safe; every test sets the same values.
    std::env::set_var("FIREDOOR_TEST_ALERTMANAGER_TOKEN", AM_TOKEN);
    std::env::set_var(
        "FIREDOOR_TEST_PAGERDUTY_SECRETS",
        format!("{PD_OLD},{PD_NEW}"),
    );
    std::env::set_var("FIREDOOR_TEST_OPSGENIE_TOKEN", OG_TOKEN);
}

fn kit(incident: Option<&str>) -> CreateRequest {
    CreateRequest {
        bundle: "payments-kit".into(),
        justification: Some("payments down".into()),
        incident: incident.map(str::to_string),
        on_behalf_of: None,
        ..Default::default()
    }
}

fn code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn audit(tb: &TestBroker) -> Vec<(String, serde_json::Value)> {
    tb.client("carol")
        .audit(0, 5000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, serde_json::from_str(&r.details).unwrap()))
        .collect()
}

/// A real Alertmanager fires; alice, the responder, is told and takes the kit in one
/// request that is approved at once and names the incident; the alert resolves and
/// her grant ends ten minutes later (the flow's grace), by the worker.
#[tokio::test]
async fn alertmanager_fires_the_responder_takes_the_kit_and_it_ends_with_the_alert() {
    set_secrets();
    let tb = spawn_with(POLICY, None).await;
    let am = firedoor_testkit::alertmanager::Alertmanager::start(
        &tb.url("/hooks/alertmanager/monitoring"),
        AM_TOKEN,
    );
    let http = reqwest::Client::new();
    let alert = |ends: Option<chrono::DateTime<chrono::Utc>>| {
        let mut a = serde_json::json!([{
            "labels": { "alertname": "PaymentsDown", "service": "payments-api", "severity": "page" },
            "annotations": { "summary": "payments-api down" },
        }]);
        if let Some(t) = ends {
            a[0]["endsAt"] = serde_json::json!(t.to_rfc3339());
        }
        a
    };
    let r = http
        .post(format!("{}/alerts", am.api()))
        .json(&alert(None))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let alice = tb.client("alice");
    let inc = eventually("the incident opens", || async {
        alice
            .incidents()
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.state == "open")
    })
    .await;
    assert_eq!(inc.title, "payments-api down");
    assert_eq!(inc.bundles, vec!["payments-kit".to_string()]);
    assert!(inc.responder);
    assert!(!tb.client("dave").incidents().await.unwrap()[0].responder);
    let told = tb
        .running
        .broker
        .events_after("alice", 0, 100)
        .await
        .unwrap();
    let e = told
        .iter()
        .find(|e| e.kind == "incident_opened")
        .unwrap_or_else(|| panic!("alice is told: {told:?}"));
    assert_eq!(e.incident_id.as_deref(), Some(inc.id.as_str()));
    assert_eq!(e.message, "payments-api down — Payments incident kit ready");

    // alice is not in the flow's requesters: only the incident lets her in.
    let err = alice.create_request(&kit(None), None).await.unwrap_err();
    assert_eq!(code(err), (403, "not_eligible".into()));
    let (req, _) = alice
        .create_request(&kit(Some(&inc.id)), None)
        .await
        .unwrap();
    assert_eq!(
        req.state,
        RequestState::Active,
        "approved at once for a responder"
    );
    assert_eq!(req.incident_id.as_deref(), Some(inc.id.as_str()));
    let grant_id = req.grant_id.unwrap();
    let before = alice.grant(&grant_id).await.unwrap();

    // Resolve the alert at Alertmanager; it tells the broker.
    let r = http
        .post(format!("{}/alerts", am.api()))
        .json(&alert(Some(
            chrono::Utc::now() - chrono::Duration::seconds(1),
        )))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually("the incident is resolved", || async {
        let i = alice.incidents().await.unwrap();
        (i[0].state == "resolved").then_some(())
    })
    .await;
    let g = alice.grant(&grant_id).await.unwrap();
    let now = tb.running.broker.now();
    assert_eq!(g.expires_at, now + Duration::minutes(10));
    assert!(g.expires_at < before.expires_at);
    // A resolved incident opens nothing more.
    let err = alice
        .create_request(&kit(Some(&inc.id)), None)
        .await
        .unwrap_err();
    assert_eq!(code(err), (409, "conflict".into()));

    tb.advance(Duration::minutes(10));
    eventually("the grant ends with the grace", || async {
        let g = alice.grant(&grant_id).await.unwrap();
        (g.state == GrantState::Expired).then_some(())
    })
    .await;
    let a = audit(&tb).await;
    let opened = a.iter().find(|(x, _)| x == "incident_opened").unwrap();
    assert_eq!(opened.1["responders"], serde_json::json!(["alice"]));
    assert!(a
        .iter()
        .any(|(x, d)| x == "request_created" && d["incident"] == inc.id.as_str()));
    assert!(a
        .iter()
        .any(|(x, d)| x == "request_approved" && d["incident"] == inc.id.as_str()));
    assert!(a
        .iter()
        .any(|(x, d)| x == "grant_shortened" && d["incident"] == inc.id.as_str()));
    assert!(a.iter().any(|(x, _)| x == "incident_resolved"));
    tb.running.stop().await;
}

fn pd_body(event_id: &str, event_type: &str, occurred: chrono::DateTime<chrono::Utc>) -> String {
    // PagerDuty's documented v3 payload for an incident event.
    serde_json::json!({
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred.to_rfc3339(),
            "agent": null,
            "client": null,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "number": 2,
                "status": "triggered",
                "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                "created_at": occurred.to_rfc3339(),
                "title": "Checkout errors",
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                    "id": "PF9KMXH",
                    "self": "https://api.pagerduty.com/services/PF9KMXH",
                    "summary": "Payments API",
                    "type": "service_reference"
                },
                "assignees": [],
                "escalation_policy": null,
                "teams": [],
                "priority": null,
                "urgency": "high",
                "conference_bridge": null,
                "resolve_reason": null
            }
        }
    })
    .to_string()
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver(tb: &TestBroker, signature: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(tb.url("/hooks/pagerduty/pagerduty"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = signature {
        r = r.header("X-PagerDuty-Signature", s);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Signed PagerDuty deliveries open and resolve an incident; a forged, replayed or
/// stale one is refused with a 4xx and recorded in the audit log, at most once a
/// minute per source (with a count), so a flood cannot fill the log.
#[tokio::test]
async fn pagerduty_deliveries_are_signed_applied_once_and_refusals_are_audited() {
    set_secrets();
    let tb = spawn_with(POLICY, None).await;
    let now = tb.running.broker.now();
    let body = pd_body("01EVENTTRIGGERED0000000001", "incident.triggered", now);

    // Forged: signed with a secret that is not the source's.
    let (s, v) = deliver(&tb, Some(&sign("guess", &body)), &body).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthenticated")));
    // Unsigned; then an edited body under a good signature.
    assert_eq!(deliver(&tb, None, &body).await.0, 401);
    let edited = body.replace("Checkout errors", "Give me access");
    assert_eq!(
        deliver(&tb, Some(&sign(PD_NEW, &body)), &edited).await.0,
        401
    );
    assert!(tb.client("alice").incidents().await.unwrap().is_empty());

    // Signed with the older of two secrets (rotation), among other signatures.
    let header = format!("v1=00ff, {}", sign(PD_OLD, &body));
    let (s, v) = deliver(&tb, Some(&header), &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["opened"].as_array().unwrap().len(), 1);
    let inc = tb.client("alice").incidents().await.unwrap()[0].clone();
    assert_eq!(inc.title, "#2 Checkout errors");
    assert_eq!(
        inc.url.as_deref(),
        Some("https://acme.pagerduty.com/incidents/PGR0VU2")
    );

    // The same event again (a replay, or PagerDuty retrying): refused.
    let (s, v) = deliver(&tb, Some(&sign(PD_NEW, &body)), &body).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")));
    // An old event, correctly signed and never seen: refused as a replay.
    let stale = pd_body(
        "01EVENTSTALE00000000000001",
        "incident.resolved",
        now - Duration::hours(2),
    );
    let (s, v) = deliver(&tb, Some(&sign(PD_NEW, &stale)), &stale).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    assert_eq!(
        tb.client("alice").incidents().await.unwrap()[0].state,
        "open"
    );
    // An unknown source, and an unreadable body.
    let r = reqwest::Client::new()
        .post(tb.url("/hooks/pagerduty/nope"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        deliver(&tb, Some(&sign(PD_NEW, "not json")), "not json")
            .await
            .0,
        400
    );

    // Every refusal so far fell in one minute: one record, the first.
    let refused: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, _)| a == "incident_webhook_refused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].1["refused"], 1);
    // A minute later the next refusal is recorded with the count since.
    tb.advance(Duration::minutes(1));
    assert_eq!(deliver(&tb, Some("v1=00"), &body).await.0, 401);
    let refused: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, _)| a == "incident_webhook_refused")
        .collect();
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[1].1["refused"], 6, "{:?}", refused[1]);
    let all = serde_json::to_string(&audit(&tb).await).unwrap();
    assert!(
        !all.contains(PD_OLD) && !all.contains(PD_NEW),
        "no secret in the audit log"
    );

    // alice takes the kit for the incident; it resolves; her grant ends 10 min later.
    let (req, _) = tb
        .client("alice")
        .create_request(&kit(Some(&inc.id)), None)
        .await
        .unwrap();
    let gid = req.grant_id.unwrap();
    let now = tb.running.broker.now();
    let resolved = pd_body("01EVENTRESOLVED00000000001", "incident.resolved", now);
    let (s, v) = deliver(&tb, Some(&sign(PD_NEW, &resolved)), &resolved).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["resolved"].as_array().unwrap().len(), 1);
    let g = tb.client("alice").grant(&gid).await.unwrap();
    assert_eq!(g.expires_at, now + Duration::minutes(10));

    // A day later the handled ids are forgotten (bounded storage); the first
    // delivery replayed now is still refused: its event is too old.
    let count = "SELECT COUNT(*) FROM webhook_deliveries WHERE source = $1";
    assert_eq!(tb.raw_db().await.count(count, "pagerduty").await, 2);
    tb.advance(Duration::hours(25));
    tb.running
        .broker
        .prune_events(tb.running.broker.now())
        .await
        .unwrap();
    assert_eq!(tb.raw_db().await.count(count, "pagerduty").await, 0);
    let (s, v) = deliver(&tb, Some(&sign(PD_NEW, &body)), &body).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_request")));
    tb.running.stop().await;
}

/// Only a responder of an open incident may use it, and only for what it opens.
#[tokio::test]
async fn an_incident_lets_in_only_its_responders_for_its_bundles() {
    set_secrets();
    let tb = spawn_with(POLICY, None).await;
    let now = tb.running.broker.now();
    let body = pd_body("01EVENTTRIGGERED0000000002", "incident.triggered", now);
    assert_eq!(deliver(&tb, Some(&sign(PD_NEW, &body)), &body).await.0, 200);
    let inc = tb.client("alice").incidents().await.unwrap()[0].id.clone();

    // bob is no responder: the incident gives him nothing (he is not a requester
    // of the flow either).
    let err = tb
        .client("dave")
        .create_request(&kit(Some(&inc)), None)
        .await
        .unwrap_err();
    assert_eq!(code(err), (403, "not_eligible".into()));
    // A bundle the incident does not open.
    let read = CreateRequest {
        bundle: "prod-db-read".into(),
        incident: Some(inc.clone()),
        ..Default::default()
    };
    let err = tb
        .client("alice")
        .create_request(&read, None)
        .await
        .unwrap_err();
    assert_eq!(code(err), (400, "invalid_request".into()));
    // An incident that does not exist.
    let err = tb
        .client("alice")
        .create_request(&kit(Some("inc_00000000000000000000000000000000")), None)
        .await
        .unwrap_err();
    assert_eq!(code(err).0, 404);
    // bob, a requester of the flow, without the incident: the normal way (pending).
    let (r, _) = tb
        .client("bob")
        .create_request(&kit(None), None)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.incident_id, None);
    tb.running.stop().await;
}

fn og_body(action: &str) -> String {
    // Opsgenie's documented alert action data (webhook integration).
    serde_json::json!({
        "source": { "name": "web", "type": "API" },
        "alert": {
            "updatedAt": 1420452193166002000u64,
            "tags": ["service:payments-api", "page"],
            "teams": ["team1"],
            "recipients": ["recipient1"],
            "message": "payments-api down",
            "username": "fili@ifountain.com",
            "alertId": "052652ac-5d1c-464a-812a-7dd18bbfba8c",
            "source": "fili@ifountain.com",
            "alias": "aliastest",
            "tinyId": "23",
            "createdAt": 1420452191104u64,
            "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d",
            "entity": ""
        },
        "action": action,
        "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d",
        "integrationName": "Integration1"
    })
    .to_string()
}

async fn og(tb: &TestBroker, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(tb.url("/hooks/opsgenie/opsgenie"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.header("X-Firedoor-Token", t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Opsgenie deliveries carry the shared secret in a custom header: without it or
/// with another one they are refused and audited; Create opens (a repeat changes
/// nothing), Acknowledge is no signal, Close resolves.
#[tokio::test]
async fn opsgenie_deliveries_need_the_shared_secret_and_open_and_close() {
    set_secrets();
    let tb = spawn_with(POLICY, None).await;
    let create = og_body("Create");
    assert_eq!(og(&tb, None, &create).await.0, 401);
    assert_eq!(og(&tb, Some("og-token-wrong"), &create).await.0, 401);
    assert!(tb.client("alice").incidents().await.unwrap().is_empty());
    let (s, v) = og(&tb, Some(OG_TOKEN), &create).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["opened"].as_array().unwrap().len(), 1);
    let (_, v) = og(&tb, Some(OG_TOKEN), &create).await;
    assert_eq!(v["unchanged"], 1, "a repeat changes nothing: {v}");
    let (_, v) = og(&tb, Some(OG_TOKEN), &og_body("Acknowledge")).await;
    assert_eq!(
        (
            v["opened"].as_array().unwrap().len(),
            v["resolved"].as_array().unwrap().len()
        ),
        (0, 0)
    );
    let inc = tb.client("alice").incidents().await.unwrap()[0].clone();
    assert_eq!(
        (inc.title.as_str(), inc.state.as_str()),
        ("#23 payments-api down", "open")
    );
    let (_, v) = og(&tb, Some(OG_TOKEN), &og_body("Close")).await;
    assert_eq!(v["resolved"].as_array().unwrap().len(), 1);
    assert_eq!(
        tb.client("alice").incidents().await.unwrap()[0].state,
        "resolved"
    );
    let refused = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, _)| a == "incident_webhook_refused")
        .count();
    assert_eq!(refused, 1, "two refusals within a minute: one record");
    tb.running.stop().await;
}

/// A grant for an incident that was approved only after the incident was resolved
/// ends like the grants that were already active: the flow's grace after the
/// resolution, recorded as shortened.
#[tokio::test]
async fn a_grant_approved_after_its_incident_resolved_ends_with_it() {
    set_secrets();
    // The same, but responders are not approved automatically.
    let policy = POLICY.replace("auto_approve = \"incident_responder\"\n", "");
    let tb = spawn_with(&policy, None).await;
    let (s, _) = og(&tb, Some(OG_TOKEN), &og_body("Create")).await;
    assert_eq!(s, 200);
    let inc = tb.client("alice").incidents().await.unwrap()[0].id.clone();
    let (r, _) = tb
        .client("alice")
        .create_request(&kit(Some(&inc)), None)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Pending);
    tb.advance(Duration::minutes(5));
    let (_, v) = og(&tb, Some(OG_TOKEN), &og_body("Close")).await;
    assert_eq!(v["resolved"].as_array().unwrap().len(), 1);
    let resolved_at = tb.running.broker.now();
    tb.advance(Duration::minutes(2));
    let r = tb.client("carol").approve(&r.id, None).await.unwrap();
    let gid = r.grant_id.unwrap();
    let g = eventually("active", || async {
        let g = tb.client("alice").grant(&gid).await.unwrap();
        (g.state == GrantState::Active).then_some(g)
    })
    .await;
    assert_eq!(
        g.expires_at,
        resolved_at + Duration::minutes(10),
        "10 minutes after the resolution, not 2 h after activation"
    );
    let shortened = audit(&tb)
        .await
        .into_iter()
        .find(|(a, _)| a == "grant_shortened")
        .expect("recorded");
    assert_eq!(shortened.1["incident"], inc.as_str());
    tb.running.stop().await;
}
