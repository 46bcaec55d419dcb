//! Break-glass uses (issue 14): every unlock is open until classified; who may
//! classify; rotation `after_incident` (incident resolved through a real Opsgenie
//! delivery to the broker, or the maximum delay, across a restart); and ending the
//! old password's sessions on a real PostgreSQL. The broker runs over real HTTP
//! with a manual clock: time passes by moving it, never by sleeping.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::*;
use ed25519_dalek::SigningKey;
use firedoor_core::breakglass::{encode_public_key, SignedRecord, UnlockRecord, GENESIS_HASH};
use firedoor_core::uses::{ClassifyUse, UseKind, UseView};
use serde_json::{json, Value};
use std::sync::Arc;

const OG_TOKEN: &str = "og-token-uses-5d2e";
const ALERT_ID: &str = "052652ac-5d1c-464a-812a-7dd18bbfba8c";

/// A secret rotated by the demo connector after the linked incident (at most 12 h),
/// one rotated at once, and an Opsgenie source whose incidents the broker tracks.
const POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[bundles.payments-kit]
title = "Payments incident kit"
resources = [{ integration = "demo", resource = "payments", permission = "write" }]

[flows.payments-incident]
bundles = ["payments-kit"]
requesters = { groups = ["sre-leads"] }
approvers = { groups = ["security"] }
approvals = 1
default_duration = "2h"
max_duration = "4h"

[incident_sources.opsgenie]
kind = "opsgenie"
secret_env = "FIREDOOR_TEST_USES_OPSGENIE_TOKEN"

[incidents.payments-og]
source = "opsgenie"
match = { service = "payments-api" }
bundles = ["payments-kit"]
responders = { users = ["alice"] }

[secrets.pay-db]
unlock = { groups = ["oncall"] }
alert = { users = ["erin"] }
rotate = { integration = "demo", role = "pay_bg", when = "after_incident", max_delay = "12h" }

[secrets.now-db]
unlock = { groups = ["oncall"] }
rotate = { integration = "demo", role = "now_bg" }
"#;

fn set_env() {
    std::env::set_var("FIREDOOR_TEST_USES_OPSGENIE_TOKEN", OG_TOKEN);
}

struct Device {
    id: String,
    user: String,
    key: SigningKey,
    chain: Vec<SignedRecord>,
}

async fn register(tb: &TestBroker, user: &str) -> Device {
    let identity = age::x25519::Identity::generate();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (s, v) = call(
        tb,
        "POST",
        "/devices",
        user,
        Some(
            json!({ "name": format!("{user}-laptop"), "recipient": identity.to_public().to_string(),
            "signing_key": encode_public_key(&key.verifying_key()) }),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    Device {
        id: v["id"].as_str().unwrap().to_string(),
        user: user.into(),
        key,
        chain: Vec::new(),
    }
}

impl Device {
    fn unlock(&mut self, secret: &str, version: i64, incident: Option<&str>) -> SignedRecord {
        let rec = UnlockRecord {
            format: 1,
            seq: self.chain.len() as u64 + 1,
            device_id: self.id.clone(),
            user: self.user.clone(),
            secret: secret.into(),
            version,
            at: t0(),
            reason: "payments DB down".into(),
            mode: "offline".into(),
            prev_hash: self
                .chain
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS_HASH.into()),
            incident: incident.map(String::from),
            quorum: None,
        };
        let s = SignedRecord::sign(&rec, &self.key);
        self.chain.push(s.clone());
        s
    }
}

async fn call(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method.parse().unwrap(), tb.url(path))
        .bearer_auth(tb.token(user));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn upload(tb: &TestBroker, d: &Device, rec: SignedRecord) {
    let (s, v) = call(
        tb,
        "POST",
        &format!("/devices/{}/unlocks", d.id),
        &d.user,
        Some(json!({ "records": [rec] })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

async fn put(tb: &TestBroker, name: &str) {
    let (s, v) = call(
        tb,
        "PUT",
        &format!("/secrets/{name}"),
        "carol",
        Some(json!({ "value": format!("first-{name}-value") })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

async fn version(tb: &TestBroker, name: &str) -> i64 {
    tb.client("carol")
        .secrets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
        .version
}

/// Waits for the broker's worker to bring `name` to version `v` (it runs every
/// 50 ms and when the clock is moved; nothing waits for time to pass).
async fn version_becomes(tb: &TestBroker, name: &str, v: i64) {
    eventually(&format!("{name} at version {v}"), || async {
        (version(tb, name).await == v).then_some(())
    })
    .await;
    // Settled: nothing more is due.
    tb.running.run_due_work().await.unwrap();
    assert_eq!(version(tb, name).await, v, "{name} rotated once");
}

async fn uses_of(tb: &TestBroker, user: &str, open: bool) -> Vec<UseView> {
    tb.client(user).unlocks(open).await.unwrap()
}

async fn audit(tb: &TestBroker) -> Vec<(String, String, Value)> {
    firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.action,
                r.subject,
                serde_json::from_str(&r.details).unwrap(),
            )
        })
        .collect()
}

async fn og(tb: &TestBroker, action: &str) {
    let body = json!({
        "source": { "name": "web", "type": "API" },
        "alert": { "updatedAt": 1420452193166002000u64, "tags": ["service:payments-api"],
            "message": "payments-api down", "alertId": ALERT_ID, "tinyId": "23",
            "createdAt": 1420452191104u64, "entity": "" },
        "action": action,
        "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d",
        "integrationName": "Integration1"
    });
    let resp = reqwest::Client::new()
        .post(tb.url("/hooks/opsgenie/opsgenie"))
        .header("X-Firedoor-Token", OG_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// The broker's incident id of the Opsgenie alert.
async fn incident_id(tb: &TestBroker) -> String {
    tb.client("alice").incidents().await.unwrap()[0].id.clone()
}

/// Every unlock is an open use (offline and online), listed and audited as
/// pending; only the unlocker or security may classify it, only security may
/// change a classification, and bad input is a 4xx with a JSON error.
#[tokio::test]
async fn uses_are_open_until_classified_by_the_unlocker_or_security() {
    set_env();
    let tb = spawn_with(POLICY, None).await;
    let mut alice = register(&tb, "alice").await;
    put(&tb, "now-db").await;
    let r = alice.unlock("now-db", 1, None);
    upload(&tb, &alice, r).await;
    // An online unlock by bob is a use too.
    let (s, v) = call(
        &tb,
        "POST",
        "/secrets/now-db/unlock",
        "bob",
        Some(json!({ "reason": "checking replication" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let mine = uses_of(&tb, "alice", true).await;
    assert_eq!(mine.len(), 1, "alice sees her own use only: {mine:?}");
    let u = &mine[0];
    assert!(u.open && u.may_classify && u.kind.is_none());
    assert_eq!((u.mode.as_str(), u.version), ("offline", 1));
    assert_eq!(u.rotation, "immediate");
    // Immediate: due when the record arrived (the broker's worker may have
    // rotated it already).
    assert!(u.rotated || u.rotates_at == Some(t0()), "{u:?}");
    assert_eq!(uses_of(&tb, "carol", true).await.len(), 2, "admins see all");
    // Both stay on the readiness view until classified.
    let (s, r) = call(&tb, "GET", "/readiness", "carol", None).await;
    assert_eq!(s, 200, "{r}");
    let open_on_readiness = |r: &Value| -> Vec<String> {
        r["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["open_uses"].as_array().unwrap().clone())
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(open_on_readiness(&r).len(), 2, "{r}");
    assert!(uses_of(&tb, "dave", false).await.is_empty());
    let id = u.id.clone();
    let opened: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "break_glass_use_opened")
        .collect();
    assert_eq!(opened.len(), 2);
    let (_, subject, d) = opened.iter().find(|(_, s, _)| s == &id).unwrap();
    assert_eq!(subject, &id);
    assert_eq!(d["classification"], "pending");
    assert_eq!(d["user"], "alice");
    assert_eq!(d["rotation"], "immediate");
    assert_eq!(d["rotates_at"], "2030-03-17T17:46:40.000000Z");

    // Someone else: 403 with a JSON error, nothing changes.
    let classify = |user: &'static str, body: Value| {
        let tb = &tb;
        let id = id.clone();
        async move {
            call(
                tb,
                "POST",
                &format!("/unlocks/{id}/classify"),
                user,
                Some(body),
            )
            .await
        }
    };
    let (s, v) = classify("bob", json!({ "kind": "drill" })).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["code"], "forbidden");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("person who unlocked"));
    // Bad input.
    for (body, status, words) in [
        (json!({ "kind": "other" }), 400, "needs a note"),
        (
            json!({ "kind": "other", "note": "  " }),
            400,
            "needs a note",
        ),
        (json!({ "kind": "incident" }), 400, "needs the incident"),
        (
            json!({ "kind": "incident", "incident": "two words" }),
            400,
            "incident:",
        ),
        (
            json!({ "kind": "drill", "incident": "INC-1" }),
            400,
            "only kind incident",
        ),
        (json!({ "kind": "misuse" }), 400, "unknown variant"),
        (json!({ "kind": "drill", "extra": 1 }), 400, "unknown field"),
        (
            json!({ "kind": "incident", "incident": "inc_doesnotexist" }),
            404,
            "no incident inc_doesnotexist",
        ),
        (
            json!({ "kind": "other", "note": "x".repeat(1001) }),
            400,
            "at most 1000",
        ),
    ] {
        let (s, v) = classify("alice", body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{body}: {v}"
        );
    }
    let (s, v) = call(
        &tb,
        "POST",
        "/unlocks/use_nope/classify",
        "alice",
        Some(json!({ "kind": "drill" })),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, _) = call(
        &tb,
        "POST",
        &format!("/unlocks/{id}/classify"),
        "alice",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = call(&tb, "GET", "/unlocks?open=maybe", "alice", None).await;
    assert_eq!(s, 400, "{v}");
    assert!(uses_of(&tb, "alice", true).await[0].open, "still open");

    // The unlocker classifies it; it leaves the open list.
    let view = tb
        .client("alice")
        .classify_use(
            &id,
            &ClassifyUse {
                kind: UseKind::Drill,
                incident: None,
                note: Some("quarterly drill".into()),
            },
        )
        .await
        .unwrap();
    assert!(!view.open && !view.may_classify);
    assert_eq!(view.kind, Some(UseKind::Drill));
    assert_eq!(view.classified_by.as_deref(), Some("alice"));
    assert!(uses_of(&tb, "alice", true).await.is_empty());
    assert_eq!(uses_of(&tb, "alice", false).await.len(), 1);
    let (_, r) = call(&tb, "GET", "/readiness", "carol", None).await;
    let still_open = open_on_readiness(&r);
    assert_eq!(still_open.len(), 1, "{r}");
    assert!(
        !still_open.contains(&id),
        "a classified use leaves readiness"
    );
    // She may not change it; an admin may (an external incident id is kept).
    let (s, v) = classify(
        "alice",
        json!({ "kind": "other", "note": "changed my mind" }),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("classified already"));
    let (s, v) = classify(
        "carol",
        json!({ "kind": "incident", "incident": "INC-4711" }),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "incident");
    assert_eq!(v["incident"], "INC-4711");
    assert!(v.get("incident_id").is_none(), "not a broker incident: {v}");
    let classified: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, s, _)| a == "break_glass_use_classified" && s == &id)
        .collect();
    assert_eq!(classified.len(), 2);
    assert_eq!(classified[0].2["previous"], Value::Null);
    assert_eq!(classified[0].2["kind"], "drill");
    assert_eq!(classified[1].2["previous"], "drill");
    assert_eq!(classified[1].2["incident"], "INC-4711");
    // The CLI's view: the open use of bob is still listed as open.
    let open = tb.running.broker.open_uses().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].user.as_str(), open[0].mode.as_str()),
        ("bob", "online")
    );
    tb.running.stop().await;
}

/// `after_incident`: the rotation waits while the incident linked on the unlock
/// record is open, and runs once a real delivery resolves it.
#[tokio::test]
async fn uses_rotation_waits_for_the_linked_incident_to_be_resolved() {
    set_env();
    let tb = spawn_with(POLICY, None).await;
    og(&tb, "Create").await;
    let inc = incident_id(&tb).await;
    let mut alice = register(&tb, "alice").await;
    put(&tb, "pay-db").await;
    let v1 = tb.demo.live_secret("pay_bg");
    // The record names the provider's id; the broker matches its incident.
    let r = alice.unlock("pay-db", 1, Some(ALERT_ID));
    upload(&tb, &alice, r).await;
    let u = uses_of(&tb, "alice", true).await.remove(0);
    assert_eq!(u.incident_id.as_deref(), Some(inc.as_str()));
    assert_eq!(u.incident_state.as_deref(), Some("open"));
    assert_eq!(u.rotation, "after_incident");
    assert!(u.rotation_waits);
    assert_eq!(
        u.rotates_at,
        Some(t0() + Duration::hours(12)),
        "the maximum delay"
    );
    let opened = audit(&tb)
        .await
        .into_iter()
        .find(|(a, _, _)| a == "break_glass_use_opened")
        .unwrap();
    assert_eq!(opened.2["rotates_at"], "2030-03-18T05:46:40.000000Z");
    assert_eq!(opened.2["rotation"], "after_incident");

    tb.advance(Duration::hours(3));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(version(&tb, "pay-db").await, 1, "mid-incident: no rotation");
    assert_eq!(tb.demo.live_secret("pay_bg"), v1);

    og(&tb, "Close").await;
    // The broker's own worker (every 50 ms) picks it up.
    version_becomes(&tb, "pay-db", 2).await;
    assert!(tb
        .demo
        .live_secret("pay_bg")
        .is_some_and(|v| Some(&v) != v1.as_ref()));
    let released = audit(&tb)
        .await
        .into_iter()
        .find(|(a, _, _)| a == "rotation_released")
        .unwrap();
    assert_eq!(released.1, "pay-db");
    assert_eq!(released.2["cause"], format!("incident {inc} resolved"));
    assert_eq!(released.2["uses"][0], u.id);
    let after = uses_of(&tb, "alice", false).await.remove(0);
    assert!(after.rotated && !after.rotation_waits && after.rotates_at.is_none());
    assert!(after.open, "rotation does not classify the use");
    tb.running.stop().await;
}

/// A use linked to an incident only when it is classified waits for it too; a use
/// classified as a drill no longer holds the rotation back.
#[tokio::test]
async fn uses_classification_links_the_incident_and_a_drill_releases_the_rotation() {
    set_env();
    let tb = spawn_with(POLICY, None).await;
    og(&tb, "Create").await;
    let inc = incident_id(&tb).await;
    let mut alice = register(&tb, "alice").await;
    put(&tb, "pay-db").await;
    let r = alice.unlock("pay-db", 1, None);
    upload(&tb, &alice, r).await;
    let id = uses_of(&tb, "alice", true).await[0].id.clone();
    let v = tb
        .client("alice")
        .classify_use(
            &id,
            &ClassifyUse {
                kind: UseKind::Incident,
                incident: Some(inc.clone()),
                note: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(v.incident_id.as_deref(), Some(inc.as_str()));
    assert!(v.rotation_waits);
    tb.running.run_due_work().await.unwrap();
    assert_eq!(version(&tb, "pay-db").await, 1);
    og(&tb, "Close").await;
    version_becomes(&tb, "pay-db", 2).await;

    // Version 2 unlocked in a drill: classified drill, rotated at the next pass.
    let r = alice.unlock("pay-db", 2, None);
    upload(&tb, &alice, r).await;
    let id = uses_of(&tb, "alice", true).await[0].id.clone();
    tb.running.run_due_work().await.unwrap();
    assert_eq!(
        version(&tb, "pay-db").await,
        2,
        "unlinked: waits for max_delay"
    );
    // erin is the secret's alert audience: security for it.
    let (s, v) = call(
        &tb,
        "POST",
        &format!("/unlocks/{id}/classify"),
        "erin",
        Some(json!({ "kind": "drill" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    version_becomes(&tb, "pay-db", 3).await;
    let causes: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "rotation_released")
        .map(|(_, _, d)| d["cause"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        causes,
        vec![
            format!("incident {inc} resolved"),
            "classified drill".to_string()
        ]
    );
    tb.running.stop().await;
}

/// Unlinked, the rotation runs at the maximum delay, and the plan survives a
/// broker restart (it is stored; the worker of the new process picks it up).
#[tokio::test]
async fn uses_rotation_runs_at_max_delay_across_a_restart() {
    set_env();
    let tb = spawn_with(POLICY, None).await;
    let mut alice = register(&tb, "alice").await;
    put(&tb, "pay-db").await;
    let r = alice.unlock("pay-db", 1, Some("INC-EXTERNAL-9"));
    upload(&tb, &alice, r).await;
    let u = uses_of(&tb, "alice", true).await.remove(0);
    assert_eq!(u.incident.as_deref(), Some("INC-EXTERNAL-9"));
    assert!(u.incident_id.is_none(), "the broker does not know it");
    tb.advance(Duration::hours(11) + Duration::minutes(59));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(version(&tb, "pay-db").await, 1);

    let common::TestBroker {
        running,
        database,
        clock,
        demo,
        dir,
        tokens,
    } = tb;
    running.stop().await;
    let policy = firedoor_core::policy::parse_policy("p.toml", POLICY).unwrap();
    let mut connectors: firedoor_server::connectors::Connectors = Default::default();
    connectors.insert(
        "demo".into(),
        demo.clone() as Arc<dyn firedoor_server::connectors::Connector>,
    );
    let mut cfg = firedoor_server::Config::new(dir.path().join("data"), policy);
    cfg.database = database.clone();
    cfg.clock = clock.clone();
    cfg.connectors = Some(connectors);
    cfg.worker_interval = std::time::Duration::from_millis(50);
    let running = firedoor_server::start(cfg).await.unwrap();
    let tb = common::TestBroker {
        running,
        database,
        clock,
        demo,
        dir,
        tokens,
    };
    tb.running.run_due_work().await.unwrap();
    assert_eq!(
        version(&tb, "pay-db").await,
        1,
        "not due yet after the restart"
    );
    let u = uses_of(&tb, "alice", true).await.remove(0);
    assert_eq!(
        u.rotates_at,
        Some(t0() + Duration::hours(12)),
        "the plan was kept"
    );
    tb.advance(Duration::minutes(1));
    // Rotated at the maximum delay by the new process's worker.
    version_becomes(&tb, "pay-db", 2).await;
    let rotated = audit(&tb)
        .await
        .into_iter()
        .find(|(a, _, _)| a == "secret_rotated")
        .unwrap();
    assert!(
        rotated.2["reason"]
            .as_str()
            .unwrap()
            .contains("offline unlock by alice"),
        "{:?}",
        rotated.2
    );
    assert!(audit(&tb)
        .await
        .iter()
        .all(|(a, _, _)| a != "rotation_released"));
    tb.running.stop().await;
}

const PG_POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "UNUSED_IN_THESE_TESTS"
permissions = { read = ["app_read"] }

[secrets.end-db]
unlock = { groups = ["oncall"] }
rotate = { integration = "pg", role = "fd_bg_end", end_sessions = true }

[secrets.keep-db]
unlock = { groups = ["oncall"] }
rotate = { integration = "pg", role = "fd_bg_keep" }
"#;

/// `end_sessions = true`: after the password change the rotation ends the role's
/// open sessions on the real PostgreSQL (made with the old password); without it
/// they stay. Both secrets are unlocked online and rotate an hour later.
#[tokio::test]
async fn uses_rotation_ends_the_old_passwords_postgres_sessions_if_the_policy_says_so() {
    use firedoor_server::connectors::postgres::{scram_verifier, PostgresConnector};
    use firedoor_server::connectors::{Connector, Connectors};
    use sqlx::Connection;

    let pg = firedoor_testkit::PgServer::start();
    pg.seed_app();
    let old = "initial-Bg-2c9e71d0";
    for role in ["fd_bg_end", "fd_bg_keep"] {
        pg.admin(
            "app",
            &format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{}'; GRANT app_read TO {role};
                 GRANT CONNECT ON DATABASE app TO {role};",
                scram_verifier(old)
            ),
        );
    }
    let policy = firedoor_core::policy::parse_policy("pg.toml", PG_POLICY).unwrap();
    let conn = PostgresConnector::new(
        "pg",
        &pg.app_broker_url(&["fd_bg_end", "fd_bg_keep"]),
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    let mut c: Connectors = Default::default();
    c.insert("pg".into(), Arc::new(conn) as Arc<dyn Connector>);
    let tb = spawn_with(PG_POLICY, Some(c)).await;
    let url = |role: &str, pw: &str| format!("postgres://{role}:{pw}@127.0.0.1:{}/app", pg.port);
    for name in ["end-db", "keep-db"] {
        let (s, v) = call(
            &tb,
            "PUT",
            &format!("/secrets/{name}"),
            "carol",
            Some(json!({ "value": old })),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    // Sessions opened with the old password, as a responder would hold them.
    let mut ended = sqlx::PgConnection::connect(&url("fd_bg_end", old))
        .await
        .unwrap();
    let mut kept = sqlx::PgConnection::connect(&url("fd_bg_keep", old))
        .await
        .unwrap();
    for name in ["end-db", "keep-db"] {
        let (s, v) = call(
            &tb,
            "POST",
            &format!("/secrets/{name}/unlock"),
            "alice",
            Some(json!({ "reason": "INC-7 payments" })),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut ended)
        .await
        .unwrap();
    assert_eq!(count, 2, "the session works before the rotation");

    tb.advance(Duration::hours(1) + Duration::minutes(1));
    version_becomes(&tb, "end-db", 2).await;
    version_becomes(&tb, "keep-db", 2).await;

    assert!(
        sqlx::query("SELECT 1").execute(&mut ended).await.is_err(),
        "end_sessions = true: the old password's session is gone"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut kept)
        .await
        .unwrap();
    assert_eq!(count, 2, "end_sessions = false: the open session stays");
    assert!(
        sqlx::PgConnection::connect(&url("fd_bg_end", old))
            .await
            .is_err(),
        "and the old password no longer logs in"
    );
    let records = audit(&tb).await;
    let ends: Vec<_> = records
        .iter()
        .filter(|(a, _, _)| a == "rotation_sessions_ended")
        .collect();
    assert_eq!(
        ends.len(),
        1,
        "only the secret whose policy says so: {ends:?}"
    );
    assert_eq!(ends[0].1, "end-db");
    assert_eq!(ends[0].2["sessions"], 1);
    assert_eq!(ends[0].2["role"], "fd_bg_end");
    assert_eq!(ends[0].2["error"], Value::Null);
    assert_eq!(
        records
            .iter()
            .filter(|(a, _, _)| a == "break_glass_use_opened")
            .count(),
        2,
        "each online unlock is an open use"
    );
    let log = pg.log();
    assert!(
        log.contains("pg_terminate_backend"),
        "the statement ran on the server"
    );
    assert!(!log.contains(old), "no password in the PostgreSQL log");
    drop(kept);
    tb.running.stop().await;
}

/// The broker's CLI lists open uses and classifies them as an operator (audited as
/// `cli:<user>`), refusing what a classification must not lack.
#[tokio::test]
async fn uses_cli_lists_open_uses_and_classifies_them() {
    use firedoor_core::breakglass::OnlineUnlock;
    use firedoor_core::policy::Principal;
    use std::process::{Command, Stdio};

    const BIN: &str = env!("CARGO_BIN_EXE_firedoor-server");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy_src = "[integrations.demo]\nkind = \"demo\"\n\n[secrets.now-db]\nunlock = { groups = [\"oncall\"] }\nrotate = { integration = \"demo\", role = \"now_bg\" }\n";
    let policy_file = tmp.path().join("policy.toml");
    std::fs::write(&policy_file, policy_src).unwrap();
    let policy_arg = policy_file.to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("FIREDOOR_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let add = cli(&["user", "add", "alice", "--group", "oncall"]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    // alice unlocks online through the broker's own operation.
    {
        let policy = firedoor_core::policy::parse_policy("p.toml", policy_src).unwrap();
        let b = firedoor_server::open_broker(
            &data,
            None,
            None,
            policy,
            Default::default(),
            Arc::new(firedoor_server::clock::SystemClock::default()),
        )
        .await
        .unwrap();
        b.put_secret(
            &firedoor_server::audit::Actor::Cli("ops".into()),
            "now-db",
            "first-value-9c",
        )
        .await
        .unwrap();
        let alice = Principal {
            name: "alice".into(),
            groups: vec!["oncall".into()],
            admin: false,
            oncall: Vec::new(),
        };
        b.online_unlock(
            &alice,
            "now-db",
            OnlineUnlock {
                reason: "replica lag".into(),
                device_id: None,
                incident: None,
            },
        )
        .await
        .unwrap();
    }
    let text = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let list = text(&cli(&[
        "unlocks",
        "list",
        "--open",
        "--policy",
        &policy_arg,
    ]));
    let line = list.lines().next().unwrap();
    assert!(line.contains("\tOPEN\tnow-db v1\tonline "), "{list}");
    assert!(
        line.contains("\tby alice") && line.contains("rotation=immediate"),
        "{list}"
    );
    let id = line.split('\t').next().unwrap().to_string();
    assert!(id.starts_with("use_"), "{id}");

    let bad = cli(&[
        "unlocks",
        "classify",
        &id,
        "--kind",
        "other",
        "--policy",
        &policy_arg,
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("needs a note"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = cli(&[
        "unlocks",
        "classify",
        &id,
        "--kind",
        "oops",
        "--policy",
        &policy_arg,
    ]);
    assert!(!bad.status.success());

    let done = text(&cli(&[
        "unlocks",
        "classify",
        &id,
        "--kind",
        "incident",
        "--incident",
        "INC-5",
        "--policy",
        &policy_arg,
    ]));
    assert!(
        done.contains("\tincident\tnow-db v1") && done.contains("incident=INC-5"),
        "{done}"
    );
    assert!(done.contains("classified_by=cli:"), "{done}");
    let open = text(&cli(&[
        "unlocks",
        "list",
        "--open",
        "--policy",
        &policy_arg,
    ]));
    assert_eq!(open.trim(), "no open break-glass uses");
    let all = text(&cli(&["unlocks", "list", "--policy", &policy_arg]));
    assert!(all.contains(&id) && all.contains("incident=INC-5"), "{all}");
}
