//! Two-person break glass (issue 14: quorum), the broker's side over real HTTP on a
//! real SQLite file: one Shamir share per person (the same on each of their devices,
//! opened here with the devices' age identities), the broker-signed holder directory,
//! the whole offline exchange with the core's functions on the envelopes the broker
//! served, no one-person online unlock, quorum and share_released records verified,
//! audited and alerted (an inconsistent one raised to security), and rotation to a new
//! split.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{spawn_with, t0, TestBroker};
use ed25519_dalek::SigningKey;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, BrokerIdentity, DeviceView, EnvelopeList, EnvelopeMeta,
    SignedRecord, UnlockRecord, GENESIS_HASH,
};
use firedoor_core::quorum::{self, QuorumRecord, SignedRequest};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "vault-root";
const VALUE: &str = "vault-root-value-8f3a";

fn policy() -> String {
    format!(
        "{}\n[secrets.{SECRET}]\nunlock = {{ groups = [\"oncall\"], quorum = 2 }}\n\
         alert = {{ groups = [\"security\"] }}\nrotate = {{ integration = \"demo\", role = \"vaultroot\" }}\n",
        firedoor_server::DEMO_POLICY
    )
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
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct Device {
    id: String,
    user: String,
    identity: age::x25519::Identity,
    key: SigningKey,
    chain: Vec<SignedRecord>,
}

impl Device {
    fn record(&mut self, version: i64, mode: &str, q: QuorumRecord) -> SignedRecord {
        let rec = UnlockRecord {
            format: 1,
            seq: self.chain.len() as u64 + 1,
            device_id: self.id.clone(),
            user: self.user.clone(),
            secret: SECRET.into(),
            version,
            at: t0() + Duration::minutes(5),
            reason: "INC-9 vault sealed".into(),
            mode: mode.into(),
            prev_hash: self
                .chain
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or_else(|| GENESIS_HASH.into()),
            quorum: Some(q),
            incident: None,
        };
        let s = SignedRecord::sign(&rec, &self.key);
        self.chain.push(s.clone());
        s
    }
}

async fn register(tb: &TestBroker, user: &str) -> Device {
    let identity = age::x25519::Identity::generate();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (s, v) = call(
        tb,
        "POST",
        "/devices",
        user,
        Some(json!({
            "name": format!("{user}-laptop"),
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
        chain: Vec::new(),
    }
}

/// The device's verified envelope of the secret and its plaintext share.
async fn share(tb: &TestBroker, d: &Device) -> (EnvelopeMeta, String) {
    let (s, v) = call(
        tb,
        "GET",
        &format!("/devices/{}/envelopes", d.id),
        &d.user,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list: EnvelopeList = serde_json::from_value(v).unwrap();
    let item = list
        .envelopes
        .into_iter()
        .find(|e| e.name == SECRET)
        .unwrap();
    let (_, v) = call(tb, "GET", "/broker", &d.user, None).await;
    let id: BrokerIdentity = serde_json::from_value(v).unwrap();
    let meta = item
        .envelope
        .verify(&decode_public_key(&id.signing_key).unwrap())
        .unwrap();
    let plain = age::decrypt(&d.identity, item.envelope.ciphertext.as_bytes()).unwrap();
    (meta, String::from_utf8(plain).unwrap())
}

async fn upload(tb: &TestBroker, d: &Device, recs: &[SignedRecord]) -> (StatusCode, Value) {
    call(
        tb,
        "POST",
        &format!("/devices/{}/unlocks", d.id),
        &d.user,
        Some(json!({ "records": recs })),
    )
    .await
}

async fn audit_of(tb: &TestBroker, action: &str) -> Vec<Value> {
    firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| serde_json::from_str(&r.details).unwrap())
        .collect()
}

async fn events(tb: &TestBroker, user: &str, kind: &str) -> Vec<String> {
    tb.running
        .broker
        .events_after(user, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.message)
        .collect()
}

async fn version(tb: &TestBroker) -> i64 {
    let (_, v) = call(tb, "GET", "/secrets", "carol", None).await;
    v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == SECRET)
        .unwrap()["version"]
        .as_i64()
        .unwrap()
}

/// Bob's record of releasing his share (release `release`) for alice's request
/// `req` on device `a`, for version `v` of share set `share_set` (quorum 2).
fn bob_releases_to_alice(
    b: &mut Device,
    a: &Device,
    v: i64,
    share_set: String,
    req: &SignedRequest,
    release: &str,
) -> SignedRecord {
    b.record(
        v,
        quorum::MODE_SHARE_RELEASED,
        QuorumRecord {
            share_set,
            request_hash: req.hash(),
            requester: "alice".into(),
            requester_device: a.id.clone(),
            releasers: vec!["bob".into()],
            releases: vec![release.to_string()],
            m: 2,
        },
    )
}

/// Carol stores the secret's value; its version. A rotation running (refused with
/// 409) is waited for, for at most 5 s.
async fn store_value(tb: &TestBroker) -> i64 {
    for _ in 0..100 {
        let (s, v) = call(
            tb,
            "PUT",
            &format!("/secrets/{SECRET}"),
            "carol",
            Some(json!({ "value": VALUE })),
        )
        .await;
        if s == StatusCode::OK {
            return version(tb).await;
        }
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a rotation of {SECRET} ran for more than 5 s");
}

/// The secret's version once a worker pass has rotated it past `v` (or `v`, after
/// 100 passes 50 ms apart). The harness's own worker may hold the rotation's claim
/// when a pass here runs, which then leaves it to that worker: wait for whichever
/// rotates.
async fn version_after_rotation(tb: &TestBroker, v: i64) -> i64 {
    for _ in 0..100 {
        tb.running.run_due_work().await.unwrap();
        let now = version(tb).await;
        if now > v {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    v
}

#[tokio::test]
async fn quorum_shares_per_person_records_audit_and_rotation() {
    let tb = spawn_with(&policy(), None).await;
    let mut a = register(&tb, "alice").await;
    let v1 = store_value(&tb).await;
    // Bob and alice's second laptop enrol after the value was stored.
    let mut b = register(&tb, "bob").await;
    let a2 = register(&tb, "alice").await;

    let (ma, sa) = share(&tb, &a).await;
    let (ma2, sa2) = share(&tb, &a2).await;
    let (mb, sb) = share(&tb, &b).await;
    assert!(
        !sa.contains(VALUE) && !sb.contains(VALUE),
        "a share is not the secret"
    );
    assert_eq!(
        sa, sa2,
        "one share per person, the same on each of their devices"
    );
    assert_ne!(sa, sb);
    let (qa, qb) = (ma.quorum.clone().unwrap(), mb.quorum.clone().unwrap());
    assert_eq!((qa.m, qa.n), (2, 2));
    assert_eq!(qa.share_set, qb.share_set);
    assert_eq!(qa.index, ma2.quorum.as_ref().unwrap().index);
    assert_ne!(qa.index, qb.index);
    // Every holder's signed directory lists every device, those enrolled later too.
    for q in [&qa, &qb] {
        let alice = q.holders.iter().find(|h| h.user == "alice").unwrap();
        assert_eq!(alice.devices.len(), 2);
        let bob = q.holders.iter().find(|h| h.user == "bob").unwrap();
        assert_eq!(bob.devices[0].id, b.id);
    }

    // One person cannot get it online.
    let (s, v) = call(
        &tb,
        "POST",
        &format!("/secrets/{SECRET}/unlock"),
        "alice",
        Some(json!({ "reason": "INC-9", "device_id": a.id })),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("needs 2 people"));

    // The offline exchange on the envelopes the broker served.
    let now = t0() + Duration::minutes(5);
    let (req, _) = SignedRequest::create(&ma, "INC-9 vault sealed", [1; 16], &a.key, now).unwrap();
    let rel = quorum::release_share(&req, &mb, &sb, &b.key, [2; 16], now).unwrap();
    let vr = quorum::open_release(&rel.text, &a.identity, &req, &ma, now).unwrap();
    assert_eq!(
        quorum::combine(&ma, &sa, &[]).unwrap_err(),
        quorum::QuorumError::NotEnough { have: 1, need: 2 }
    );
    assert_eq!(quorum::combine(&ma, &sa, &[vr]).unwrap().as_str(), VALUE);
    // Alice's two devices are one person: her second laptop cannot release to her.
    assert!(quorum::release_share(&req, &ma2, &sa2, &a2.key, [3; 16], now).is_err());

    // Records: bob's release, then alice's unlock; both verified and audited.
    let rb = bob_releases_to_alice(&mut b, &a, v1, qb.share_set.clone(), &req, &rel.id);
    let (s, v) = upload(&tb, &b, &[rb]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ra = a.record(
        v1,
        quorum::MODE_QUORUM,
        QuorumRecord {
            share_set: qa.share_set.clone(),
            request_hash: req.hash(),
            requester: "alice".into(),
            requester_device: a.id.clone(),
            releasers: vec!["bob".into()],
            releases: vec![rel.id.clone()],
            m: 2,
        },
    );
    let (s, v) = upload(&tb, &a, std::slice::from_ref(&ra)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Bob's release made the secret due already: the broker's worker may have
    // rotated it before alice's record arrived (then hers is of an older version).
    assert!(
        v["rotating"] == json!([SECRET]) || version(&tb).await > v1,
        "{v}"
    );
    // Her two-person unlock is a use, open until classified.
    let (s, uses) = call(&tb, "GET", "/unlocks?open=true", "carol", None).await;
    assert_eq!(s, StatusCode::OK, "{uses}");
    assert!(
        uses["uses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["mode"] == "quorum" && u["user"] == "alice" && u["open"] == true),
        "{uses}"
    );
    let unlocks = audit_of(&tb, "break_glass_quorum_unlock").await;
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0]["consistent"], json!(true));
    assert_eq!(unlocks[0]["releasers"], json!(["bob"]));
    assert_eq!(unlocks[0]["request_hash"], json!(req.hash()));
    let released = audit_of(&tb, "break_glass_share_released").await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["requester"], json!("alice"));
    assert_eq!(released[0]["release"], json!(rel.id));
    let alerts = events(&tb, "carol", "break_glass_unlocked").await;
    assert!(
        alerts.iter().any(|m| m.contains("with the shares of bob")),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|m| m.contains("bob released their share")),
        "{alerts:?}"
    );
    // No alert about the unlock itself. (Readiness may have been raised and
    // restored while only alice was enrolled, if the broker's worker passed
    // between the value being stored and bob enrolling.)
    let raised: Vec<String> = events(&tb, "carol", "security_alert")
        .await
        .into_iter()
        .filter(|m| !m.contains("required people ready") && !m.contains("ready again"))
        .collect();
    assert!(raised.is_empty(), "{raised:?}");

    // A record that does not add up (alice alone, or with an ineligible person) is
    // accepted (the chain goes on) but audited as inconsistent and raised.
    let bad = a.record(
        v1,
        quorum::MODE_QUORUM,
        QuorumRecord {
            share_set: qa.share_set.clone(),
            request_hash: "0".repeat(64),
            requester: "alice".into(),
            requester_device: a.id.clone(),
            releasers: vec!["dave".into()],
            releases: vec!["1".repeat(64)],
            m: 2,
        },
    );
    let (s, v) = upload(&tb, &a, &[ra, bad]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let unlocks = audit_of(&tb, "break_glass_quorum_unlock").await;
    assert_eq!(unlocks.len(), 2);
    assert_eq!(unlocks[1]["consistent"], json!(false));
    assert!(unlocks[1]["problem"]
        .as_str()
        .unwrap()
        .contains("dave may not unlock"));
    let sec = events(&tb, "carol", "security_alert").await;
    assert!(sec.iter().any(|m| m.contains("does not add up")), "{sec:?}");
    // A quorum mode without its details is refused as a whole.
    let mut t = a.record(
        v1,
        quorum::MODE_QUORUM,
        QuorumRecord {
            share_set: "x".into(),
            request_hash: "0".repeat(64),
            requester: "alice".into(),
            requester_device: a.id.clone(),
            releasers: vec![],
            releases: vec![],
            m: 2,
        },
    );
    let mut body: Value = serde_json::from_str(&t.body).unwrap();
    body.as_object_mut().unwrap().remove("quorum");
    let rec: UnlockRecord = serde_json::from_value(body).unwrap();
    t = SignedRecord::sign(&rec, &a.key);
    let (s, v) = upload(&tb, &a, &[t]).await;
    assert_eq!(s.as_u16(), 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("quorum"), "{v}");
    for r in firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
    {
        assert!(!r.details.contains(VALUE), "no secret in the audit");
    }

    // Rotation: a new version, a new split; the old release does not fit it.
    let v2 = version_after_rotation(&tb, v1).await;
    assert!(v2 > v1, "rotated after the unlock");
    let (na, nsa) = share(&tb, &a).await;
    let (nb, _) = share(&tb, &b).await;
    assert_eq!(na.version, v2);
    assert_ne!(na.quorum.as_ref().unwrap().share_set, qa.share_set);
    assert_ne!(nsa, sa);
    assert!(quorum::open_release(&rel.text, &a.identity, &req, &na, now).is_err());
    let (req2, _) = SignedRequest::create(&na, "INC-10", [4; 16], &a.key, now).unwrap();
    let (mb2, sb2) = (nb, share(&tb, &b).await.1);
    let rel2 = quorum::release_share(&req2, &mb2, &sb2, &b.key, [5; 16], now).unwrap();
    let vr2 = quorum::open_release(&rel2.text, &a.identity, &req2, &na, now).unwrap();
    let rotated = quorum::combine(&na, &nsa, &[vr2]).unwrap();
    assert_ne!(rotated.as_str(), VALUE);
    assert_eq!(rotated.len(), 32);
}

/// Under `rotate = { when = "after_incident" }` a share released for an offline
/// unlock does not make the secret due at once (that would lock the responders out
/// in the middle of the incident): alone, it rotates by the policy's `max_delay`.
#[tokio::test]
async fn a_released_share_under_after_incident_rotates_by_the_max_delay_not_at_once() {
    let policy = policy().replace(
        "rotate = { integration = \"demo\", role = \"vaultroot\" }",
        "rotate = { integration = \"demo\", role = \"vaultroot\", when = \"after_incident\", max_delay = \"12h\" }",
    );
    assert!(policy.contains("after_incident"));
    let tb = spawn_with(&policy, None).await;
    let a = register(&tb, "alice").await;
    let mut b = register(&tb, "bob").await;
    let v1 = store_value(&tb).await;
    let (ma, _) = share(&tb, &a).await;
    let (mb, sb) = share(&tb, &b).await;
    let now = t0() + Duration::minutes(5);
    let (req, _) = SignedRequest::create(&ma, "INC-9 vault sealed", [1; 16], &a.key, now).unwrap();
    let rel = quorum::release_share(&req, &mb, &sb, &b.key, [2; 16], now).unwrap();
    let rb = bob_releases_to_alice(
        &mut b,
        &a,
        v1,
        mb.quorum.clone().unwrap().share_set,
        &req,
        &rel.id,
    );
    let (s, v) = upload(&tb, &b, &[rb]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tb.running.run_due_work().await.unwrap();
    tb.advance(Duration::hours(6));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(version(&tb).await, v1, "mid-incident: not rotated");
    tb.advance(Duration::hours(6) + Duration::minutes(10));
    assert_eq!(
        version_after_rotation(&tb, v1).await,
        v1 + 1,
        "rotated by the maximum delay"
    );
    tb.running.stop().await;
}

/// Two people enrolling at the same moment into a split that neither is part of yet:
/// each enrolment used to take the smallest free share index from what it had read,
/// so both could get the same index, the same share, until the next rotation (two
/// "different" people whose shares count once). Every trial here enrols bob and erin
/// at once into a split that only alice holds.
#[tokio::test]
async fn people_enrolling_at_the_same_moment_get_different_shares() {
    let policy = policy().replace(
        "groups = [\"oncall\"], quorum = 2",
        "groups = [\"oncall\", \"sre-leads\"], quorum = 2",
    );
    assert!(policy.contains("\"sre-leads\"], quorum"));
    let tb = spawn_with(&policy, None).await;
    let _a = register(&tb, "alice").await;
    for trial in 0..20 {
        // A rotation of the last trial's revocations may be running: waited for.
        let v = store_value(&tb).await;
        // Erin first, bob a moment later: the window is erin's sealing, after she
        // read the split and before her envelope is stored.
        let later = std::time::Duration::from_millis(trial);
        let (e, b) = tokio::join!(register(&tb, "erin"), async {
            tokio::time::sleep(later).await;
            register(&tb, "bob").await
        });
        let ((mb, sb), (me, se)) = tokio::join!(share(&tb, &b), share(&tb, &e));
        if mb.version == me.version {
            let (qb, qe) = (mb.quorum.unwrap(), me.quorum.unwrap());
            assert_ne!(
                qb.index, qe.index,
                "trial {trial}, version {v}: bob and erin were dealt the same share index"
            );
            assert_ne!(sb, se, "trial {trial}: the same share");
        }
        for d in [&b, &e] {
            let (s, _) = call(&tb, "DELETE", &format!("/devices/{}", d.id), &d.user, None).await;
            assert_eq!(s, StatusCode::NO_CONTENT);
        }
    }
    tb.running.stop().await;
}
