//! issue 14: break-glass drills and readiness over real HTTP on a real store, with
//! devices enrolled as the app enrols them (an age identity + an ed25519 key),
//! envelopes opened with age, proofs computed with the core's drill rules. Time is
//! the broker's manual clock: tests advance it, never sleep for it.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{eventually, spawn_with, TestBroker};
use ed25519_dalek::SigningKey;
use firedoor_core::breakglass::{encode_public_key, DeviceView, EnvelopeList};
use firedoor_core::drill::{Challenge, DrillPassed, DrillView, PendingDrills, Readiness};
use firedoor_server::clock::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "payments-db-breakglass";
const VALUE: &str = "drill-value-9f3b1c2e7a";

/// The demo policy with the secret's drill settings.
fn policy(extra: &str) -> String {
    let p = firedoor_server::DEMO_POLICY;
    let anchor = "rotate_after_online = \"1h\"\n";
    assert!(p.contains(anchor));
    p.replacen(anchor, &format!("{anchor}{extra}\n"), 1)
        .replace("validity = \"7d\"", "validity = \"90d\"")
}

async fn call(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method.parse().unwrap(), tb.url(path))
        .bearer_auth(tb.token(user));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        assert!(
            v["code"].is_string() && v["message"].is_string(),
            "{method} {path}: errors are JSON {{code, message}}: {text}"
        );
    }
    (status, v)
}

async fn ok<T: serde::de::DeserializeOwned>(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> T {
    let (s, v) = call(tb, method, path, user, body).await;
    assert!(s.is_success(), "{method} {path} as {user}: {s} {v}");
    serde_json::from_value(v).unwrap()
}

/// A device as the app enrols it.
struct Device {
    id: String,
    user: String,
    identity: age::x25519::Identity,
    key: SigningKey,
}

impl Device {
    async fn enrol(tb: &TestBroker, user: &str, name: &str) -> Device {
        let identity = age::x25519::Identity::generate();
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let (s, v) = call(
            tb,
            "POST",
            "/devices",
            user,
            Some(json!({
                "name": name,
                "recipient": identity.to_public().to_string(),
                "signing_key": encode_public_key(&key.verifying_key()),
            })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let view: DeviceView = serde_json::from_value(v).unwrap();
        Device {
            id: view.id,
            user: user.into(),
            identity,
            key,
        }
    }

    /// Opens this device's current envelope of the secret (as the app does).
    async fn open(&self, tb: &TestBroker) -> (i64, String) {
        let list: EnvelopeList = ok(
            tb,
            "GET",
            &format!("/devices/{}/envelopes", self.id),
            &self.user,
            None,
        )
        .await;
        let item = list
            .envelopes
            .iter()
            .find(|e| e.name == SECRET)
            .expect("an envelope of the secret");
        let meta: firedoor_core::breakglass::EnvelopeMeta =
            serde_json::from_str(&item.envelope.meta_json).unwrap();
        let plain = age::decrypt(&self.identity, item.envelope.ciphertext.as_bytes()).unwrap();
        (meta.version, String::from_utf8(plain).unwrap())
    }

    async fn pending(&self, tb: &TestBroker) -> PendingDrills {
        ok(
            tb,
            "GET",
            &format!("/devices/{}/drills", self.id),
            &self.user,
            None,
        )
        .await
    }

    /// The answer to drill `id` computed from `value`.
    fn answer(&self, id: &str, nonce: &str, version: i64, value: &str) -> Value {
        let a = Challenge {
            drill_id: id,
            nonce,
            secret: SECRET,
            version,
            device_id: &self.id,
        }
        .answer(value.as_bytes(), &self.key);
        serde_json::to_value(a).unwrap()
    }

    async fn submit(&self, tb: &TestBroker, id: &str, answer: Value) -> (StatusCode, Value) {
        call(
            tb,
            "POST",
            &format!("/drills/{id}/answers"),
            &self.user,
            Some(answer),
        )
        .await
    }
}

async fn audit(tb: &TestBroker) -> Vec<firedoor_core::audit::AuditRecord> {
    firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
}

async fn count(tb: &TestBroker, action: &str) -> usize {
    audit(tb)
        .await
        .iter()
        .filter(|r| r.action == action)
        .count()
}

async fn readiness(tb: &TestBroker) -> firedoor_core::drill::SecretReadiness {
    let r: Readiness = ok(tb, "GET", "/readiness", "carol", None).await;
    r.secrets.into_iter().find(|s| s.name == SECRET).unwrap()
}

async fn put_value(tb: &TestBroker) {
    let _: Value = ok(
        tb,
        "PUT",
        &format!("/secrets/{SECRET}"),
        "carol",
        Some(json!({ "value": VALUE })),
    )
    .await;
}

#[tokio::test]
async fn drill_end_to_end_two_pass_one_fails_and_a_replay_is_refused() {
    let tb = spawn_with(&policy("min_ready = 2"), None).await;
    let alice = Device::enrol(&tb, "alice", "alice-laptop").await;
    let alice2 = Device::enrol(&tb, "alice", "alice-old-laptop").await;
    let bob = Device::enrol(&tb, "bob", "bob-laptop").await;
    let dave = Device::enrol(&tb, "dave", "dave-laptop").await;

    // No value yet: nothing to drill.
    let (s, v) = call(
        &tb,
        "POST",
        "/drills",
        "carol",
        Some(json!({"secret": SECRET})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );
    put_value(&tb).await;

    // Only admins start drills.
    let (s, v) = call(
        &tb,
        "POST",
        "/drills",
        "alice",
        Some(json!({"secret": SECRET})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (s, _) = call(
        &tb,
        "POST",
        "/drills",
        "carol",
        Some(json!({"secret": "nope"})),
    )
    .await;
    assert_eq!(s.as_u16(), 404);
    let started: Value = ok(
        &tb,
        "POST",
        "/drills",
        "carol",
        Some(json!({"secret": SECRET})),
    )
    .await;
    let drill: DrillView = serde_json::from_value(started["drills"][0].clone()).unwrap();
    assert_eq!(drill.state, "open");
    assert_eq!(drill.trigger, "manual");
    assert_eq!(drill.version, 1);
    let mut asked: Vec<&str> = drill.devices.iter().map(|d| d.device_id.as_str()).collect();
    asked.sort();
    let mut expect = vec![alice.id.as_str(), alice2.id.as_str(), bob.id.as_str()];
    expect.sort();
    assert_eq!(asked, expect, "every eligible enrolled device, nobody else");
    assert_eq!(drill.deadline - drill.started_at, Duration::days(3));
    // One drill at a time per secret.
    let (s, _) = call(
        &tb,
        "POST",
        "/drills",
        "carol",
        Some(json!({"secret": SECRET})),
    )
    .await;
    assert_eq!(s.as_u16(), 409);

    // Each asked device sees it; dave (not eligible) does not.
    let p = alice.pending(&tb).await;
    assert_eq!(p.drills.len(), 1);
    let pd = &p.drills[0];
    assert_eq!((pd.id.as_str(), pd.version), (drill.id.as_str(), 1));
    assert_eq!(pd.nonce.len(), 64, "a 256-bit nonce");
    assert!(dave.pending(&tb).await.drills.is_empty());

    // Two devices prove with what their envelope opens to.
    let (va, value_a) = alice.open(&tb).await;
    assert_eq!(value_a, VALUE);
    let first_answer = alice.answer(&drill.id, &pd.nonce, va, &value_a);
    let (s, v) = alice.submit(&tb, &drill.id, first_answer.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let passed: DrillPassed = serde_json::from_value(v).unwrap();
    assert_eq!(passed.device_id, alice.id);
    assert_eq!(passed.passed_at, tb.clock.now());
    let (vb, value_b) = bob.open(&tb).await;
    let (s, v) = bob
        .submit(
            &tb,
            &drill.id,
            bob.answer(&drill.id, &pd.nonce, vb, &value_b),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Answering again after a pass: told so, nothing new recorded.
    let (s, _) = alice.submit(&tb, &drill.id, first_answer.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        alice.pending(&tb).await.drills.is_empty(),
        "passed: no longer pending"
    );

    // The third device answers with a wrong proof: recorded, 422 with a clear error.
    let wrong = alice2.answer(&drill.id, &pd.nonce, 1, "not-the-value");
    let (s, v) = alice2.submit(&tb, &drill.id, wrong).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (422, Some("drill_proof_rejected")),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("does not match") && !msg.contains(VALUE),
        "{msg}"
    );
    // An answer for somebody else's device, or a device that was not asked.
    let (s, _) = call(
        &tb,
        "POST",
        &format!("/drills/{}/answers", drill.id),
        "alice",
        Some(bob.answer(&drill.id, &pd.nonce, 1, VALUE)),
    )
    .await;
    assert_eq!(s.as_u16(), 404);
    let (s, _) = dave
        .submit(&tb, &drill.id, dave.answer(&drill.id, &pd.nonce, 1, VALUE))
        .await;
    assert_eq!(s.as_u16(), 404);
    // A malformed body.
    let (s, v) = alice2.submit(&tb, &drill.id, json!({"device_id": 3})).await;
    assert_eq!(s.as_u16(), 400, "{v}");

    // Readiness: who passed and when, the counts.
    let (s, _) = call(&tb, "GET", "/readiness", "alice", None).await;
    assert_eq!(s.as_u16(), 403, "holders do not read readiness");
    let r = readiness(&tb).await;
    assert_eq!((r.ready, r.required, r.below), (2, 2, false), "{r:?}");
    assert_eq!(r.version, 1);
    let users: Vec<&str> = r.holders.iter().map(|h| h.user.as_str()).collect();
    assert_eq!(users, ["alice", "bob"], "the eligible people");
    let a = &r.holders[0];
    let by_id = |id: &str| {
        a.devices
            .iter()
            .find(|d| d.device_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&alice.id).drill, "passed");
    assert_eq!(by_id(&alice.id).passed_at, Some(passed.passed_at));
    assert_eq!(by_id(&alice2.id).drill, "failed");
    assert!(
        by_id(&alice2.id).fresh && by_id(&alice2.id).ready,
        "an open drill does not unready anyone"
    );
    assert_eq!(r.holders[1].devices[0].drill, "passed");
    let last = r.last_drill.as_ref().unwrap();
    assert_eq!(
        (last.asked, last.passed, last.failed, last.state.as_str()),
        (3, 2, 1, "open")
    );

    // The deadline passes: the worker closes the drill; the failed device no longer
    // counts, alice still does through her other laptop.
    tb.advance(Duration::days(3) + Duration::seconds(1));
    eventually("the drill closes", || async {
        (count(&tb, "drill_closed").await == 1).then_some(())
    })
    .await;
    let r = readiness(&tb).await;
    assert_eq!(r.last_drill.as_ref().unwrap().state, "closed");
    let a2 = r.holders[0]
        .devices
        .iter()
        .find(|d| d.device_id == alice2.id)
        .unwrap();
    assert!(!a2.ready && a2.drill == "failed", "{a2:?}");
    assert_eq!(r.ready, 2);
    let (s, v) = alice.submit(&tb, &drill.id, first_answer.clone()).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a passed device is still told it passed: {v}"
    );
    let (s, v) = alice2
        .submit(
            &tb,
            &drill.id,
            alice2.answer(&drill.id, &pd.nonce, 1, VALUE),
        )
        .await;
    assert_eq!(s.as_u16(), 409, "too late: {v}");

    // A second drill: alice's proof of the first one, replayed, is refused.
    let started: Value = ok(
        &tb,
        "POST",
        "/drills",
        "carol",
        Some(json!({"secret": "all"})),
    )
    .await;
    let drill2: DrillView = serde_json::from_value(started["drills"][0].clone()).unwrap();
    assert_ne!(drill2.id, drill.id);
    let (s, v) = alice.submit(&tb, &drill2.id, first_answer.clone()).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (422, Some("drill_proof_rejected")),
        "a replayed proof: {v}"
    );
    // The same device proving for the second drill passes.
    let nonce2 = alice.pending(&tb).await.drills[0].nonce.clone();
    assert_ne!(nonce2, pd.nonce);
    let (s, v) = alice
        .submit(&tb, &drill2.id, alice.answer(&drill2.id, &nonce2, 1, VALUE))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Every state change is audited; no proof and no value in the log.
    assert_eq!(count(&tb, "drill_started").await, 2);
    assert_eq!(count(&tb, "drill_passed").await, 3);
    assert_eq!(count(&tb, "drill_failed").await, 2);
    let records = audit(&tb).await;
    let failed: Vec<&str> = records
        .iter()
        .filter(|r| r.action == "drill_failed")
        .map(|r| r.details.as_str())
        .collect();
    assert!(
        failed[0].contains("\"problem\":\"wrong_proof\""),
        "{}",
        failed[0]
    );
    assert!(
        failed[1].contains("\"problem\":\"bad_signature\""),
        "{}",
        failed[1]
    );
    let closed = records.iter().find(|r| r.action == "drill_closed").unwrap();
    assert!(
        closed.details.contains("\"asked\":3") && closed.details.contains("\"passed\":2"),
        "{}",
        closed.details
    );
    let proof = first_answer["proof"].as_str().unwrap();
    for r in &records {
        assert!(!r.details.contains(VALUE) && !r.details.contains(proof));
    }
    // Drills are listed for admins only.
    let (s, _) = call(&tb, "GET", "/drills", "bob", None).await;
    assert_eq!(s.as_u16(), 403);
    let list: Value = ok(&tb, "GET", "/drills", "carol", None).await;
    assert_eq!(list["drills"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn drill_schedule_starts_when_due_and_readiness_alerts_once_per_transition() {
    // Security's webhook takes security alerts: the readiness alert goes out there
    // too (to a closed port here: the delivery is queued and retried).
    std::env::set_var(
        "FD_DRILL_HOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let hook = "\n[notifications.security-hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"FD_DRILL_HOOK_SECRET\"\nevents = [\"security_alert\"]\n";
    let tb = spawn_with(
        &format!(
            "{}{hook}",
            policy("drill_every = \"30d\"\ndrill_window = \"1d\"\nmin_ready = 2")
        ),
        None,
    )
    .await;
    let alice = Device::enrol(&tb, "alice", "alice-laptop").await;
    put_value(&tb).await;
    tb.running.broker.wake_worker.notify_one();

    // No drill yet: the first scheduled one starts as soon as the secret has a value.
    let first: DrillView = eventually("the first scheduled drill", || async {
        let l: Value = ok(&tb, "GET", "/drills", "carol", None).await;
        let d = l["drills"].as_array()?.first()?.clone();
        Some(serde_json::from_value::<DrillView>(d).unwrap())
    })
    .await;
    assert_eq!(
        (first.trigger.as_str(), first.started_by.as_str()),
        ("schedule", "system")
    );
    assert_eq!(first.devices.len(), 1);

    // One ready holder of two required: alerted once, however many passes run.
    eventually("readiness below is recorded", || async {
        (count(&tb, "readiness_below").await == 1).then_some(())
    })
    .await;
    for _ in 0..5 {
        tb.running.broker.run_due_work().await.unwrap();
    }
    assert_eq!(
        count(&tb, "readiness_below").await,
        1,
        "once per transition"
    );
    let raw = tb.raw_db().await;
    let alerts = raw
        .count(
            "SELECT count(*) FROM events WHERE recipient = $1 AND kind = 'security_alert' AND body LIKE '%required people ready%'",
            "carol",
        )
        .await;
    assert_eq!(alerts, 1, "the admin hears of it once");
    let outbound = raw
        .count(
            "SELECT count(*) FROM outbound WHERE kind = 'security_alert' AND payload LIKE $1",
            "%required people ready%",
        )
        .await;
    assert_eq!(
        outbound, 1,
        "one outbound notification to security's webhook"
    );
    let r = readiness(&tb).await;
    assert_eq!((r.ready, r.required, r.below), (1, 2, true));
    assert_eq!(r.next_drill_at, Some(first.started_at + Duration::days(30)));
    assert!(r
        .holders
        .iter()
        .any(|h| h.user == "bob" && !h.ready && h.devices.is_empty()));
    // On call without an envelope (an override puts someone on call instead):
    // dave may not unlock it at all; bob may, but has no device yet.
    for (user, eligible) in [("dave", false), ("bob", true)] {
        // The later override wins; a minute apart so that holds on either store.
        tb.advance(Duration::minutes(1));
        tb.client("carol")
            .add_override(
                "payments-primary",
                &firedoor_core::api::NewOverride {
                    user: user.into(),
                    starts_at: None,
                    ends_at: tb.running.broker.now() + Duration::hours(1),
                    reason: None,
                },
            )
            .await
            .unwrap();
        let r = readiness(&tb).await;
        assert!(
            r.on_call_without_envelope
                .iter()
                .any(|g| g.user == user && g.eligible == eligible),
            "{r:?}"
        );
    }
    let r = readiness(&tb).await;
    assert!(r.holders.iter().any(|h| h.user == "bob" && h.on_call));

    // alice proves; bob enrols (and gets an envelope): two ready, restored once.
    let (v, value) = alice.open(&tb).await;
    let nonce = alice.pending(&tb).await.drills[0].nonce.clone();
    let (s, body) = alice
        .submit(&tb, &first.id, alice.answer(&first.id, &nonce, v, &value))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let bob = Device::enrol(&tb, "bob", "bob-laptop").await;
    tb.running.broker.wake_worker.notify_one();
    eventually("readiness restored", || async {
        (count(&tb, "readiness_restored").await == 1).then_some(())
    })
    .await;
    let r = readiness(&tb).await;
    assert_eq!((r.ready, r.below), (2, false));
    let b = r.holders.iter().find(|h| h.user == "bob").unwrap();
    assert_eq!(
        b.devices[0].drill, "not_asked",
        "enrolled after the drill started"
    );

    // The drill closes after its 1-day window; alice passed, so nothing changes.
    tb.advance(Duration::days(1));
    eventually("the first drill closes", || async {
        (count(&tb, "drill_closed").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(&tb, "drill_started").await,
        1,
        "not due before drill_every"
    );

    // 30 days after the first started: the next one starts, asking both devices.
    let due = first.started_at + Duration::days(30);
    tb.clock.set(due - Duration::seconds(1));
    for _ in 0..3 {
        tb.running.broker.run_due_work().await.unwrap();
    }
    assert_eq!(
        count(&tb, "drill_started").await,
        1,
        "a second early: not yet"
    );
    tb.advance(Duration::seconds(1));
    eventually("the second scheduled drill", || async {
        (count(&tb, "drill_started").await == 2).then_some(())
    })
    .await;
    let l: Value = ok(&tb, "GET", "/drills", "carol", None).await;
    let second: DrillView = serde_json::from_value(l["drills"][0].clone()).unwrap();
    assert_eq!(second.trigger, "schedule");
    assert_eq!(second.devices.len(), 2);
    assert!(bob
        .pending(&tb)
        .await
        .drills
        .iter()
        .any(|d| d.id == second.id));

    // Nobody answers: at its deadline both missed it, nobody is ready: a new alert.
    tb.advance(Duration::days(1));
    eventually("readiness below again", || async {
        (count(&tb, "readiness_below").await == 2).then_some(())
    })
    .await;
    let r = readiness(&tb).await;
    assert_eq!((r.ready, r.below), (0, true));
    assert!(r
        .holders
        .iter()
        .all(|h| h.devices.iter().all(|d| d.drill == "missed" && !d.ready)));
    assert_eq!(count(&tb, "readiness_restored").await, 1);
}
