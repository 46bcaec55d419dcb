//! Offline break glass over real HTTP on a real SQLite file: devices, sealed
//! envelopes (opened by the reference `age` tool), signed unlock chains, alerts,
//! rotation through the connector, online unlock, and no secret at rest or in logs.

#![allow(clippy::unwrap_used)]

mod common;

use age::secrecy::ExposeSecret;
use chrono::Duration;
use common::{eventually, spawn, spawn_with, t0, TestBroker};
use ed25519_dalek::SigningKey;
use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, BrokerIdentity, DeviceView, EnvelopeList, EnvelopeMeta,
    SecretView, SignedRecord, UnlockRecord, UnlockedSecret, UnlocksAck, GENESIS_HASH,
};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

const SECRET: &str = "payments-db-breakglass";
/// The demo policy rotates the secret on this demo "role".
const ROLE: &str = "breakglass";

// ---------------------------------------------------------------- log capture

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, at debug level (sqlx statements included).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Capture(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,hyper=info,hyper_util=info,reqwest=info,h2=info",
            ))
            .with_writer(move || w.clone())
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

// ---------------------------------------------------------------------- HTTP

async fn call(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut r = http.request(method.parse().unwrap(), tb.url(path));
    if let Some(u) = user {
        r = r.bearer_auth(tb.token(u));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(
        status.as_u16() < 500,
        "{method} {path} must not be a server error: {status} {text}"
    );
    if status == StatusCode::NO_CONTENT {
        return (status, Value::Null);
    }
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {text}"));
    if !status.is_success() {
        assert!(
            v["code"].is_string() && v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: errors are {{code, message}}: {v}"
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
    let (s, v) = call(tb, method, path, Some(user), body).await;
    assert!(s.is_success(), "{method} {path} as {user}: {s} {v}");
    serde_json::from_value(v).unwrap()
}

/// Expects an error with this status and code; returns the message.
async fn fails(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
    status: u16,
    code: &str,
) -> String {
    let (s, v) = call(tb, method, path, user, body.clone()).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (status, Some(code)),
        "{method} {path} {body:?}: {v}"
    );
    v["message"].as_str().unwrap().to_string()
}

// ------------------------------------------------------------------- devices

struct Device {
    id: String,
    user: String,
    identity: age::x25519::Identity,
    key: SigningKey,
    /// Records written so far (the device's local chain).
    chain: Vec<SignedRecord>,
}

impl Device {
    fn new(user: &str) -> Device {
        Device {
            id: String::new(),
            user: user.into(),
            identity: age::x25519::Identity::generate(),
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            chain: Vec::new(),
        }
    }

    /// Appends an unlock record to the local chain and returns it.
    fn unlock(&mut self, secret: &str, version: i64, mode: &str, reason: &str) -> SignedRecord {
        let prev = self
            .chain
            .last()
            .map(|r| r.hash.clone())
            .unwrap_or_else(|| GENESIS_HASH.to_string());
        let rec = UnlockRecord {
            format: 1,
            seq: self.chain.len() as u64 + 1,
            device_id: self.id.clone(),
            user: self.user.clone(),
            secret: secret.into(),
            version,
            at: t0() + Duration::minutes(5),
            reason: reason.into(),
            mode: mode.into(),
            prev_hash: prev,
            incident: None,
            quorum: None,
        };
        let s = SignedRecord::sign(&rec, &self.key);
        self.chain.push(s.clone());
        s
    }

    fn open(&self, ciphertext: &str) -> String {
        String::from_utf8(age::decrypt(&self.identity, ciphertext.as_bytes()).unwrap()).unwrap()
    }
}

async fn register(tb: &TestBroker, user: &str, name: &str) -> Device {
    let mut d = Device::new(user);
    let (s, v) = call(
        tb,
        "POST",
        "/devices",
        Some(user),
        Some(json!({
            "name": name,
            "recipient": d.identity.to_public().to_string(),
            "signing_key": encode_public_key(&d.key.verifying_key()),
        })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let view: DeviceView = serde_json::from_value(v).unwrap();
    assert_eq!(view.user, user);
    assert_eq!(view.head.seq, 0);
    assert_eq!(view.head.hash, GENESIS_HASH);
    assert!(view.id.starts_with("dev_"));
    d.id = view.id;
    d
}

async fn envelopes(tb: &TestBroker, d: &Device) -> EnvelopeList {
    ok(
        tb,
        "GET",
        &format!("/devices/{}/envelopes", d.id),
        &d.user,
        None,
    )
    .await
}

async fn upload(tb: &TestBroker, d: &Device, records: &[SignedRecord]) -> (StatusCode, Value) {
    call(
        tb,
        "POST",
        &format!("/devices/{}/unlocks", d.id),
        Some(&d.user),
        Some(json!({ "records": records })),
    )
    .await
}

async fn secret(tb: &TestBroker, name: &str) -> SecretView {
    let list: Value = ok(tb, "GET", "/secrets", "carol", None).await;
    let all: Vec<SecretView> = serde_json::from_value(list["secrets"].clone()).unwrap();
    all.into_iter().find(|s| s.name == name).unwrap()
}

async fn put(tb: &TestBroker, name: &str, value: &str) -> SecretView {
    ok(
        tb,
        "PUT",
        &format!("/secrets/{name}"),
        "carol",
        Some(json!({ "value": value })),
    )
    .await
}

async fn audit(tb: &TestBroker) -> Vec<firedoor_core::audit::AuditRecord> {
    firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
}

async fn audit_count(tb: &TestBroker, action: &str) -> usize {
    audit(tb)
        .await
        .iter()
        .filter(|a| a.action == action)
        .count()
}

async fn events_of(tb: &TestBroker, user: &str, kind: &str) -> Vec<firedoor_core::api::EventView> {
    tb.running
        .broker
        .events_after(user, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn random_value() -> String {
    format!(
        "bg-{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    )
}

/// Opens an envelope with the reference `age` CLI and the device's identity file.
fn age_cli_open(dir: &Path, d: &Device, ciphertext: &str) -> String {
    let id_file = dir.join(format!("{}.identity.txt", d.id));
    std::fs::write(
        &id_file,
        format!("{}\n", d.identity.to_string().expose_secret()),
    )
    .unwrap();
    let env_file = dir.join(format!("{}.age", d.id));
    std::fs::write(&env_file, ciphertext).unwrap();
    let out = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&id_file)
        .arg(&env_file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the reference `age` tool is needed to prove envelopes are standard age files \
                 and it could not be run ({e}): install it with `apt-get install -y age`"
            )
        });
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every byte of the broker's database files and of the captured logs: none may
/// hold a secret value.
fn assert_nowhere(tb: &TestBroker, values: &[&str]) {
    let data = tb.dir.path().join("data");
    let mut scanned = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "broker.key" {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for v in values {
            assert!(
                !contains(&bytes, v.as_bytes()),
                "a secret value is in {name} in plaintext"
            );
        }
        scanned.push(name);
    }
    if let Some(firedoor_server::store::DatabaseUrl::Postgres(url)) = &tb.database {
        // The PostgreSQL store: every row, as a dump of the database shows it.
        let db = url.rsplit('/').next().unwrap();
        let db = db.split('?').next().unwrap();
        let dump = firedoor_testkit::shared_server().dump(db);
        assert!(
            contains(&dump, b"COPY public.secrets"),
            "the store was dumped"
        );
        for v in values {
            assert!(
                !contains(&dump, v.as_bytes()),
                "a secret value is in the PostgreSQL store in plaintext"
            );
        }
    } else {
        assert!(
            scanned.iter().any(|n| n == "firedoor.db")
                && scanned.iter().any(|n| n.ends_with("-wal")),
            "the database and its WAL were scanned: {scanned:?}"
        );
    }
    let logs = logs().lock().unwrap().clone();
    assert!(!logs.is_empty(), "logs were captured");
    for v in values {
        assert!(
            !contains(&logs, v.as_bytes()),
            "a secret value is in the logs"
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// --------------------------------------------------------------------- tests

#[tokio::test]
async fn seal_unlock_offline_report_rotate() {
    logs();
    let tb = spawn().await;
    let tmp = tempfile::tempdir().unwrap();

    // The broker's identity, pinned by the app.
    let id: BrokerIdentity = ok(&tb, "GET", "/broker", "alice", None).await;
    let broker_key = decode_public_key(&id.signing_key).unwrap();
    assert!(id.fingerprint.starts_with("SHA256:"));
    fails(&tb, "GET", "/broker", None, None, 401, "unauthenticated").await;

    let mut alice = register(&tb, "alice", "laptop-7").await;
    assert!(
        envelopes(&tb, &alice).await.envelopes.is_empty(),
        "nothing sealed before a value is stored"
    );
    let listed: Value = ok(&tb, "GET", "/devices", "alice", None).await;
    assert_eq!(listed["devices"].as_array().unwrap().len(), 1);
    assert_eq!(listed["devices"][0]["id"], alice.id.as_str());
    let none: Value = ok(&tb, "GET", "/devices", "bob", None).await;
    assert!(
        none["devices"].as_array().unwrap().is_empty(),
        "own devices only"
    );

    // An admin stores the value: sealed to alice's device at once.
    let v1 = random_value();
    let view = put(&tb, SECRET, &v1).await;
    assert_eq!(view.version, 1);
    assert_eq!(view.sealed_devices, 1);
    assert_eq!(view.rotated_by.as_deref(), Some("demo"));
    assert_eq!(view.validity_secs, 7 * 86_400);
    assert!(
        !serde_json::to_string(&view).unwrap().contains(&v1),
        "a view never carries the value"
    );

    let list = envelopes(&tb, &alice).await;
    assert_eq!(list.envelopes.len(), 1);
    let item = &list.envelopes[0];
    assert_eq!(item.name, SECRET);
    assert_eq!(item.title, "Payments DB break-glass login");
    let meta: EnvelopeMeta = item.envelope.verify(&broker_key).unwrap();
    assert_eq!(meta.secret, SECRET);
    assert_eq!(meta.version, 1);
    assert_eq!(meta.device_id, alice.id);
    assert_eq!(meta.user, "alice");
    assert_eq!(meta.recipient, alice.identity.to_public().to_string());
    assert_eq!(meta.sealed_at, t0());
    assert_eq!(meta.not_before, meta.sealed_at);
    assert_eq!(meta.not_after, meta.sealed_at + Duration::days(7));
    assert!(meta.check_window(t0() + Duration::days(6)).is_ok());
    assert!(
        item.envelope
            .ciphertext
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "ASCII-armoured age file"
    );
    assert_eq!(
        age_cli_open(tmp.path(), &alice, &item.envelope.ciphertext),
        v1,
        "the reference age tool opens the envelope with the device identity"
    );
    assert_eq!(alice.open(&item.envelope.ciphertext), v1);

    // dave may not unlock: no envelope. Others cannot see alice's device.
    let dave = register(&tb, "dave", "dave-laptop").await;
    assert!(envelopes(&tb, &dave).await.envelopes.is_empty());
    for who in ["dave", "bob", "carol"] {
        fails(
            &tb,
            "GET",
            &format!("/devices/{}/envelopes", alice.id),
            Some(who),
            None,
            404,
            "not_found",
        )
        .await;
    }
    fails(
        &tb,
        "POST",
        &format!("/devices/{}/unlocks", alice.id),
        Some("bob"),
        Some(json!({ "records": [] })),
        404,
        "not_found",
    )
    .await;

    // Offline: alice opens it twice; back online, the chain is uploaded.
    let r1 = alice.unlock(
        SECRET,
        1,
        "offline",
        "INC-7 payments DB down, broker unreachable",
    );
    let r2 = alice.unlock(SECRET, 1, "offline", "INC-7 second look");
    let (s, v) = upload(&tb, &alice, &[r1.clone(), r2.clone()]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ack: UnlocksAck = serde_json::from_value(v).unwrap();
    assert_eq!(ack.head.seq, 2);
    assert_eq!(ack.head.hash, r2.hash);
    assert_eq!(ack.accepted, 2);
    assert_eq!(ack.rotating, vec![SECRET.to_string()]);

    let rows: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|a| a.action == "break_glass_offline_unlock")
        .collect();
    assert_eq!(rows.len(), 2, "one audit record per unlock");
    assert_eq!(rows[0].actor, "alice");
    assert_eq!(rows[0].subject, SECRET);
    let d: Value = serde_json::from_str(&rows[0].details).unwrap();
    assert_eq!(d["device"], alice.id.as_str());
    assert_eq!(d["seq"], 1);
    assert_eq!(d["version"], 1);
    assert_eq!(d["reason"], "INC-7 payments DB down, broker unreachable");
    assert_eq!(d["hash"], r1.hash.as_str());
    assert!(
        d["at"].as_str().unwrap().starts_with("2030-03-17T17:51"),
        "{d}"
    );

    let alerts = events_of(&tb, "carol", "break_glass_unlocked").await;
    assert_eq!(
        alerts.len(),
        2,
        "security (carol, admin) hears of every unlock"
    );
    assert_eq!(alerts[0].bundle.as_deref(), Some(SECRET));
    assert_eq!(alerts[0].actor.as_deref(), Some("alice"));
    assert!(
        alerts[0]
            .message
            .contains("alice unlocked payments-db-breakglass v1 offline on laptop-7")
            && alerts[0].message.contains("INC-7 payments DB down"),
        "{}",
        alerts[0].message
    );
    assert!(
        events_of(&tb, "erin", "break_glass_unlocked")
            .await
            .is_empty(),
        "only admins and the alert audience"
    );

    // The worker rotates through the connector and reseals.
    tb.running.run_due_work().await.unwrap();
    let rotated = eventually("rotated to version 2", || async {
        let s = secret(&tb, SECRET).await;
        (s.version == 2).then_some(s)
    })
    .await;
    assert!(rotated.rotation_due_at.is_none());
    assert_eq!(rotated.sealed_devices, 1);
    let v2 = tb
        .demo
        .live_secret(ROLE)
        .expect("the connector set a value");
    assert_ne!(v2, v1, "the unlocked value no longer works");
    let list = envelopes(&tb, &alice).await;
    let meta = list.envelopes[0].envelope.verify(&broker_key).unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(
        alice.open(&list.envelopes[0].envelope.ciphertext),
        v2,
        "the fresh envelope opens to the live value"
    );
    assert!(
        !events_of(&tb, "alice", "envelopes_changed")
            .await
            .is_empty(),
        "alice is told to fetch her new envelope"
    );
    let rot = audit(&tb)
        .await
        .into_iter()
        .find(|a| a.action == "secret_rotated")
        .unwrap();
    let d: Value = serde_json::from_str(&rot.details).unwrap();
    assert_eq!(
        (d["from_version"].as_i64(), d["to_version"].as_i64()),
        (Some(1), Some(2))
    );

    // The app was killed after the broker acknowledged: the same records again.
    let (s, v) = upload(&tb, &alice, &[r1.clone(), r2.clone()]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ack: UnlocksAck = serde_json::from_value(v).unwrap();
    assert_eq!((ack.head.seq, ack.accepted), (2, 0));
    assert!(ack.rotating.is_empty());
    assert_eq!(
        audit_count(&tb, "break_glass_offline_unlock").await,
        2,
        "no duplicate audit"
    );
    // The acknowledged tail plus a new record is fine too.
    let r3 = alice.unlock(SECRET, 2, "offline", "INC-8");
    let (s, v) = upload(&tb, &alice, &[r2.clone(), r3.clone()]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["head"]["seq"], 3);
    assert_eq!(v["accepted"], 1);
    tb.running.run_due_work().await.unwrap();
    eventually("rotated to version 3", || async {
        (secret(&tb, SECRET).await.version == 3).then_some(())
    })
    .await;
    let v3 = tb.demo.live_secret(ROLE).unwrap();

    // Tampering: every kind is refused, audited and raised; the head stays.
    let head_before: Value = ok(&tb, "GET", "/devices", "alice", None).await;
    let rejected_before = audit_count(&tb, "unlock_chain_rejected").await;
    let alerts_before = events_of(&tb, "carol", "security_alert").await.len();

    // 1. An acknowledged record, edited (and re-hashed).
    let mut edited = r2.clone();
    edited.body = edited.body.replace("INC-7 second look", "routine check");
    edited.hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(edited.body.as_bytes()))
    };
    // 2. A new record, edited after signing.
    let mut r4 = alice.unlock(SECRET, 3, "offline", "INC-9");
    alice.chain.pop();
    let mut r4_edited = r4.clone();
    r4_edited.body = r4_edited.body.replace("INC-9", "INC-0");
    // 3. A gap: record 5 without record 4.
    alice.chain.push(r4.clone());
    let r5 = alice.unlock(SECRET, 3, "offline", "INC-10");
    alice.chain.truncate(3);
    // 4. Signed by another key.
    let mut thief = Device::new("alice");
    thief.id = alice.id.clone();
    thief.chain = alice.chain.clone();
    let forged = thief.unlock(SECRET, 3, "offline", "forged");
    // 5. Naming another user, signed by alice's own device key.
    let mut other = Device::new("bob");
    other.id = alice.id.clone();
    other.key = alice.key.clone();
    other.chain = alice.chain.clone();
    let bobs = other.unlock(SECRET, 3, "offline", "not mine");
    // 6. Naming another device.
    let mut elsewhere = Device::new("alice");
    elsewhere.id = dave.id.clone();
    elsewhere.key = alice.key.clone();
    elsewhere.chain = alice.chain.clone();
    let moved = elsewhere.unlock(SECRET, 3, "offline", "other device");

    let cases: Vec<(&str, Vec<SignedRecord>, &str)> = vec![
        (
            "edited acknowledged record",
            vec![r1.clone(), edited],
            "differs from the record 2",
        ),
        ("edited new record", vec![r4_edited], "edited"),
        ("gap", vec![r5.clone()], "missing"),
        ("wrong key", vec![forged], "signature"),
        ("other user", vec![bobs], "names user bob"),
        ("other device", vec![moved], "names device"),
    ];
    for (i, (what, records, says)) in cases.into_iter().enumerate() {
        let (s, v) = upload(&tb, &alice, &records).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str()),
            (422, Some("chain_rejected")),
            "{what}: {v}"
        );
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: a readable reason: {msg}");
        assert_eq!(
            audit_count(&tb, "unlock_chain_rejected").await,
            rejected_before + i + 1,
            "{what}: audited"
        );
        assert_eq!(
            events_of(&tb, "carol", "security_alert").await.len(),
            alerts_before + 1,
            "{what}: admins alerted by the first refusal; the next ones within ten minutes are counted, not alerted one by one"
        );
        let head: Value = ok(&tb, "GET", "/devices", "alice", None).await;
        assert_eq!(head, head_before, "{what}: the head is unchanged");
    }
    let alert = events_of(&tb, "carol", "security_alert")
        .await
        .pop()
        .unwrap();
    assert!(alert.message.contains("laptop-7"), "{}", alert.message);
    assert_eq!(
        audit_count(&tb, "break_glass_offline_unlock").await,
        3,
        "nothing of a refused upload was recorded as an unlock"
    );
    assert_eq!(secret(&tb, SECRET).await.version, 3, "nor rotated anything");

    // The honest continuation is still accepted afterwards.
    r4 = alice.unlock(SECRET, 3, "offline", "INC-9");
    let (s, v) = upload(&tb, &alice, &[r4]).await;
    assert_eq!(
        (s, v["head"]["seq"].as_i64()),
        (StatusCode::OK, Some(4)),
        "{v}"
    );
    tb.running.run_due_work().await.unwrap();
    eventually("rotated to version 4", || async {
        (secret(&tb, SECRET).await.version == 4).then_some(())
    })
    .await;
    let v4 = tb.demo.live_secret(ROLE).unwrap();

    // Envelopes are refreshed lazily once past half their validity.
    let before = envelopes(&tb, &alice).await.envelopes[0]
        .envelope
        .verify(&broker_key)
        .unwrap();
    tb.advance(Duration::days(3));
    let same = envelopes(&tb, &alice).await.envelopes[0]
        .envelope
        .verify(&broker_key)
        .unwrap();
    assert_eq!(
        same.sealed_at, before.sealed_at,
        "still fresh at 3 of 7 days"
    );
    tb.advance(Duration::hours(13));
    let fresh = envelopes(&tb, &alice).await.envelopes[0]
        .envelope
        .verify(&broker_key)
        .unwrap();
    assert_eq!(
        fresh.sealed_at,
        t0() + Duration::days(3) + Duration::hours(13)
    );
    assert_eq!(fresh.version, 4);

    // Revoking a device deletes its envelopes.
    fails(
        &tb,
        "DELETE",
        &format!("/devices/{}", alice.id),
        Some("dave"),
        None,
        404,
        "not_found",
    )
    .await;
    let (s, _) = call(
        &tb,
        "DELETE",
        &format!("/devices/{}", alice.id),
        Some("alice"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    fails(
        &tb,
        "GET",
        &format!("/devices/{}/envelopes", alice.id),
        Some("alice"),
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        &tb,
        "DELETE",
        &format!("/devices/{}", alice.id),
        Some("alice"),
        None,
        409,
        "conflict",
    )
    .await;
    // What the revoked device held sealed is rotated: by the woken worker, which may
    // hold the rotation's lease right now, or by this pass.
    tb.running.run_due_work().await.unwrap();
    let after = eventually("rotated after the revocation", || async {
        let s = secret(&tb, SECRET).await;
        (s.version == 5).then_some(s)
    })
    .await;
    assert_eq!(after.sealed_devices, 0);
    let revoked = audit(&tb)
        .await
        .into_iter()
        .find(|a| a.action == "device_revoked")
        .unwrap();
    assert!(revoked.details.contains(SECRET), "{}", revoked.details);
    // A revoked device may still report what happened on it.
    let r5 = alice.unlock(SECRET, 4, "offline", "INC-11 on the old laptop");
    let (s, v) = upload(&tb, &alice, &[r5]).await;
    assert_eq!(
        (s, v["head"]["seq"].as_i64()),
        (StatusCode::OK, Some(5)),
        "{v}"
    );

    let verified = firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap();
    assert!(verified.is_ok(), "audit chain verifies: {verified:?}");
    for a in audit(&tb).await {
        for v in [&v1, &v2, &v3, &v4] {
            assert!(!a.details.contains(v.as_str()), "no value in the audit log");
        }
    }
    let logs_ok = tb
        .running
        .broker
        .events_after("carol", 0, 100_000)
        .await
        .unwrap();
    for e in logs_ok {
        for v in [&v1, &v2, &v3, &v4] {
            assert!(!e.message.contains(v.as_str()), "no value in an event");
        }
    }
    tb.running.run_due_work().await.unwrap();
    assert_nowhere(&tb, &[&v1, &v2, &v3, &v4]);
}

#[tokio::test]
async fn online_unlock_is_loud_and_rotates_later() {
    logs();
    let tb = spawn().await;
    let path = format!("/secrets/{SECRET}/unlock");
    let body = json!({ "reason": "INC-12 broker up, laptop lost" });
    let msg = fails(
        &tb,
        "POST",
        &path,
        Some("alice"),
        Some(body.clone()),
        409,
        "conflict",
    )
    .await;
    assert!(msg.contains("no value"), "{msg}");

    let v1 = random_value();
    put(&tb, SECRET, &v1).await;
    fails(
        &tb,
        "POST",
        &path,
        Some("dave"),
        Some(body.clone()),
        403,
        "not_eligible",
    )
    .await;
    fails(
        &tb,
        "POST",
        &path,
        Some("carol"),
        Some(body.clone()),
        403,
        "not_eligible",
    )
    .await;
    fails(
        &tb,
        "POST",
        &path,
        Some("alice"),
        Some(json!({ "reason": "  " })),
        400,
        "justification_required",
    )
    .await;
    fails(
        &tb,
        "POST",
        &path,
        Some("alice"),
        Some(json!({ "reason": "x".repeat(2001) })),
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "POST",
        &path,
        Some("alice"),
        None,
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "POST",
        &path,
        Some("alice"),
        Some(json!({ "reason": "x", "device_id": "dev_nope" })),
        404,
        "not_found",
    )
    .await;
    fails(
        &tb,
        "POST",
        "/secrets/nope/unlock",
        Some("alice"),
        Some(body.clone()),
        404,
        "not_found",
    )
    .await;

    let got: UnlockedSecret = ok(&tb, "POST", &path, "alice", Some(body.clone())).await;
    assert_eq!(got.value, v1);
    assert_eq!(got.version, 1);
    assert_eq!(got.rotates_at, Some(t0() + Duration::hours(1)));
    assert!(!format!("{got:?}").contains(&v1), "Debug hides the value");
    let alerts = events_of(&tb, "carol", "break_glass_unlocked").await;
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0]
            .message
            .contains("alice unlocked payments-db-breakglass v1 online"),
        "{}",
        alerts[0].message
    );
    assert_eq!(audit_count(&tb, "break_glass_online_unlock").await, 1);
    let row = audit(&tb)
        .await
        .into_iter()
        .find(|a| a.action == "break_glass_online_unlock")
        .unwrap();
    assert!(row.details.contains("INC-12") && !row.details.contains(&v1));
    assert_eq!(
        secret(&tb, SECRET).await.rotation_due_at,
        Some(t0() + Duration::hours(1))
    );
    // A second unlock does not push the rotation later.
    tb.advance(Duration::minutes(30));
    let again: UnlockedSecret = ok(&tb, "POST", &path, "bob", Some(body.clone())).await;
    assert_eq!(again.rotates_at, Some(t0() + Duration::hours(1)));

    // The app records online unlocks in its chain too: accepted and audited, but
    // not alerted a second time, and they start no rotation of their own.
    let mut dev = register(&tb, "alice", "laptop").await;
    let rec = dev.unlock(SECRET, 1, "online", "INC-12 broker up, laptop lost");
    let (s, v) = upload(&tb, &dev, &[rec]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["accepted"].as_i64(),
            v["rotating"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        events_of(&tb, "carol", "break_glass_unlocked").await.len(),
        2
    );
    let rows: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|a| a.action == "break_glass_online_unlock")
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[2].details.contains("device_record"),
        "{}",
        rows[2].details
    );
    let mut odd = Device::new("alice");
    odd.id = dev.id.clone();
    odd.key = dev.key.clone();
    odd.chain = dev.chain.clone();
    let bad = odd.unlock(SECRET, 1, "sideways", "x");
    let (s, v) = upload(&tb, &dev, &[bad]).await;
    assert_eq!(s.as_u16(), 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("unknown mode"),
        "{v}"
    );

    tb.advance(Duration::minutes(29));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(secret(&tb, SECRET).await.version, 1, "not before its time");
    tb.advance(Duration::minutes(2));
    tb.running.run_due_work().await.unwrap();
    eventually("rotated after rotate_after_online", || async {
        (secret(&tb, SECRET).await.version == 2).then_some(())
    })
    .await;
    let v2 = tb.demo.live_secret(ROLE).unwrap();
    assert_ne!(v2, v1);
    let now: UnlockedSecret = ok(&tb, "POST", &path, "alice", Some(body)).await;
    assert_eq!(now.value, v2, "online unlock releases the live value");
    assert_nowhere(&tb, &[&v1, &v2]);
}

const MANUAL_POLICY: &str = r#"
[integrations.demo]
kind = "demo"

[secrets.root-password]
title = "Root password"
unlock = { groups = ["oncall"] }
validity = "1d"

[secrets.rotating]
unlock = { users = ["alice"] }
rotate = { integration = "demo", role = "svc" }
"#;

#[tokio::test]
async fn rotation_failures_retry_with_the_same_value_and_manual_secrets_alert_once() {
    logs();
    let tb = spawn_with(MANUAL_POLICY, None).await;
    let mut alice = register(&tb, "alice", "laptop").await;

    // A secret without a rotation connector: "rotate now" is refused clearly.
    let msg = fails(
        &tb,
        "POST",
        "/secrets/root-password/rotate",
        Some("carol"),
        None,
        409,
        "conflict",
    )
    .await;
    assert!(msg.contains("secret put root-password"), "{msg}");
    fails(
        &tb,
        "POST",
        "/secrets/rotating/rotate",
        Some("alice"),
        None,
        403,
        "forbidden",
    )
    .await;

    // Its unlock makes it due; admins get one alert asking for a new value.
    let v1 = random_value();
    put(&tb, "root-password", &v1).await;
    let r1 = alice.unlock("root-password", 1, "offline", "INC-1");
    let (s, v) = upload(&tb, &alice, &[r1]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["rotating"].as_array().unwrap().is_empty(),
        "nothing rotates it: {v}"
    );
    for _ in 0..3 {
        tb.running.run_due_work().await.unwrap();
    }
    let alerts = events_of(&tb, "carol", "security_alert").await;
    assert_eq!(alerts.len(), 1, "one alert, not one per pass: {alerts:?}");
    assert!(
        alerts[0].message.contains("secret put root-password"),
        "{}",
        alerts[0].message
    );
    let s = secret(&tb, "root-password").await;
    assert!(
        s.rotation_due_at.is_some(),
        "stays due until a new value is stored"
    );
    assert!(s.last_rotation_error.is_some());
    let s = put(&tb, "root-password", &random_value()).await;
    assert_eq!(s.version, 2);
    assert!(
        s.rotation_due_at.is_none() && s.last_rotation_error.is_none(),
        "{s:?}"
    );

    // The first rotation of a secret with a connector: an admin starts it, which
    // also gives it its first value.
    let s: SecretView = ok(&tb, "POST", "/secrets/rotating/rotate", "carol", None).await;
    assert_eq!(s.version, 1);
    let first = tb.demo.live_secret("svc").unwrap();
    assert_eq!(
        alice.open(
            &envelopes(&tb, &alice).await.envelopes[1]
                .envelope
                .ciphertext
        ),
        first
    );

    // The target takes the new value but the answer is lost: the broker retries
    // with the same value, with backoff, alerting once.
    tb.demo.fail_rotations(Some("connection reset by peer"));
    let r2 = alice.unlock("rotating", 1, "offline", "INC-2");
    let (s, v) = upload(&tb, &alice, &[r2]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    tb.running.run_due_work().await.unwrap();
    let failed = eventually("a failed attempt is recorded", || async {
        let s = secret(&tb, "rotating").await;
        s.last_rotation_error.is_some().then_some(s)
    })
    .await;
    assert_eq!(failed.version, 1);
    assert!(failed.rotation_due_at.is_some());
    assert!(failed
        .last_rotation_error
        .unwrap()
        .contains("connection reset"));
    let attempted = tb.demo.live_secret("svc").unwrap();
    assert_ne!(attempted, first);
    tb.advance(Duration::seconds(10));
    tb.running.run_due_work().await.unwrap();
    eventually("a second failed attempt", || async {
        (audit_count(&tb, "secret_rotation_failed").await >= 3).then_some(())
    })
    .await;
    assert_eq!(
        tb.demo.live_secret("svc").unwrap(),
        attempted,
        "the retry sent the same pending value"
    );
    let rotation_alerts = events_of(&tb, "carol", "security_alert")
        .await
        .into_iter()
        .filter(|e| e.bundle.as_deref() == Some("rotating"))
        .count();
    assert_eq!(rotation_alerts, 1, "the first failure of a streak alerts");

    tb.demo.fail_rotations(None);
    tb.advance(Duration::minutes(10));
    tb.running.run_due_work().await.unwrap();
    let done = eventually("rotated once the target answers", || async {
        let s = secret(&tb, "rotating").await;
        (s.version == 2).then_some(s)
    })
    .await;
    assert!(done.last_rotation_error.is_none() && done.rotation_due_at.is_none());
    assert_eq!(tb.demo.live_secret("svc").unwrap(), attempted);
    let list = envelopes(&tb, &alice).await;
    let env = list
        .envelopes
        .iter()
        .find(|e| e.name == "rotating")
        .unwrap();
    assert_eq!(
        alice.open(&env.envelope.ciphertext),
        attempted,
        "broker and target agree on the value"
    );
    assert_nowhere(&tb, &[&v1, &first, &attempted]);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    logs();
    let tb = spawn().await;
    let good = Device::new("alice");
    let recipient = good.identity.to_public().to_string();
    let key = encode_public_key(&good.key.verifying_key());
    let reg = |name: Value, recipient: Value, key: Value| {
        Some(json!({ "name": name, "recipient": recipient, "signing_key": key }))
    };
    let cases: Vec<(Option<Value>, u16, &str, &str)> = vec![
        (
            reg(json!("x"), json!("age1nope"), json!(key)),
            400,
            "invalid_request",
            "recipient",
        ),
        (
            reg(json!("x"), json!(key), json!(key)),
            400,
            "invalid_request",
            "recipient",
        ),
        (
            reg(json!("x"), json!(recipient), json!("AAAA")),
            400,
            "invalid_request",
            "signing_key",
        ),
        (
            reg(json!("x"), json!(recipient), json!("not base64!")),
            400,
            "invalid_request",
            "signing_key",
        ),
        (
            reg(json!(""), json!(recipient), json!(key)),
            400,
            "invalid_request",
            "name",
        ),
        (
            reg(json!("x".repeat(101)), json!(recipient), json!(key)),
            400,
            "invalid_request",
            "name",
        ),
        (
            reg(json!("a\u{7}b"), json!(recipient), json!(key)),
            400,
            "invalid_request",
            "control",
        ),
        (
            reg(json!(5), json!(recipient), json!(key)),
            400,
            "invalid_request",
            "expected a string",
        ),
        (
            Some(json!({ "name": "x" })),
            400,
            "invalid_request",
            "recipient",
        ),
        (None, 400, "invalid_request", "JSON body"),
    ];
    for (body, status, code, says) in cases {
        let msg = fails(
            &tb,
            "POST",
            "/devices",
            Some("alice"),
            body.clone(),
            status,
            code,
        )
        .await;
        assert!(msg.contains(says), "{body:?}: {msg}");
    }
    let (s, v) = {
        let http = reqwest::Client::new();
        let r = http
            .post(tb.url("/devices"))
            .bearer_auth(tb.token("alice"))
            .body("name=x")
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let mut d = register(&tb, "alice", "laptop").await;
    let dup = fails(
        &tb,
        "POST",
        "/devices",
        Some("bob"),
        reg(
            json!("copy"),
            json!(recipient),
            json!(encode_public_key(&d.key.verifying_key())),
        ),
        409,
        "conflict",
    )
    .await;
    assert!(dup.contains("already registered"), "{dup}");
    fails(
        &tb,
        "DELETE",
        "/devices/dev_nope",
        Some("alice"),
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        &tb,
        "GET",
        "/devices/dev_nope/envelopes",
        Some("alice"),
        None,
        404,
        "not_found",
    )
    .await;
    fails(&tb, "GET", "/devices", None, None, 401, "unauthenticated").await;

    // Secrets.
    let path = format!("/secrets/{SECRET}");
    let v = json!({ "value": "s3cret-value" });
    let m = fails(
        &tb,
        "PUT",
        &path,
        Some("alice"),
        Some(v.clone()),
        403,
        "forbidden",
    )
    .await;
    assert!(m.contains("admins"), "{m}");
    let m = fails(
        &tb,
        "PUT",
        "/secrets/nope",
        Some("carol"),
        Some(v.clone()),
        404,
        "not_found",
    )
    .await;
    assert_eq!(m, "no secret named nope in the policy");
    fails(
        &tb,
        "PUT",
        &path,
        Some("carol"),
        Some(json!({ "value": "" })),
        400,
        "invalid_request",
    )
    .await;
    let big = "x".repeat(65_537);
    let m = fails(
        &tb,
        "PUT",
        &path,
        Some("carol"),
        Some(json!({ "value": big })),
        400,
        "invalid_request",
    )
    .await;
    assert!(m.contains("65536"), "{m}");
    let m = fails(
        &tb,
        "PUT",
        &path,
        Some("carol"),
        Some(json!({ "value": 42 })),
        400,
        "invalid_request",
    )
    .await;
    assert!(!m.contains("42"), "a malformed body is not echoed: {m}");
    fails(
        &tb,
        "PUT",
        &path,
        Some("carol"),
        None,
        400,
        "invalid_request",
    )
    .await;
    let huge = "y".repeat(600_000);
    fails(
        &tb,
        "PUT",
        &path,
        Some("carol"),
        Some(json!({ "value": huge })),
        413,
        "payload_too_large",
    )
    .await;
    let max: SecretView = ok(
        &tb,
        "PUT",
        &path,
        "carol",
        Some(json!({ "value": "z".repeat(65_536) })),
    )
    .await;
    assert_eq!(max.version, 1, "exactly 64 KiB is accepted");
    fails(
        &tb,
        "POST",
        "/secrets/nope/rotate",
        Some("carol"),
        None,
        404,
        "not_found",
    )
    .await;

    // Lists: admins see every secret, others what they may unlock.
    let l: Value = ok(&tb, "GET", "/secrets", "dave", None).await;
    assert!(l["secrets"].as_array().unwrap().is_empty());
    let l: Value = ok(&tb, "GET", "/secrets", "alice", None).await;
    assert_eq!(l["secrets"][0]["name"], SECRET);
    let l: Value = ok(&tb, "GET", "/secrets", "carol", None).await;
    assert_eq!(l["secrets"].as_array().unwrap().len(), 1);

    // Uploads.
    let up = format!("/devices/{}/unlocks", d.id);
    fails(
        &tb,
        "POST",
        &up,
        Some("alice"),
        None,
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "POST",
        &up,
        Some("alice"),
        Some(json!({ "records": 5 })),
        400,
        "invalid_request",
    )
    .await;
    let garbage = json!({ "records": [{ "body": "{", "hash": "0".repeat(64), "signature": "y" }] });
    let m = fails(
        &tb,
        "POST",
        &up,
        Some("alice"),
        Some(garbage),
        422,
        "chain_rejected",
    )
    .await;
    assert!(m.contains("unreadable"), "{m}");
    let one = d.unlock(SECRET, 1, "offline", "x");
    let many: Vec<SignedRecord> = (0..1001).map(|_| one.clone()).collect();
    let m = fails(
        &tb,
        "POST",
        &up,
        Some("alice"),
        Some(json!({ "records": many })),
        400,
        "invalid_request",
    )
    .await;
    assert!(m.contains("at most 1000"), "{m}");
    let (s, v) = upload(&tb, &d, &[]).await;
    assert_eq!(
        (s, v["head"]["seq"].as_i64()),
        (StatusCode::OK, Some(0)),
        "an empty upload acks the head"
    );
}

#[tokio::test]
async fn old_key_file_gains_a_signing_key_and_the_identity_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("elsewhere.key");
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let start = |key: Option<&Path>| {
        let mut cfg = firedoor_server::Config::new(&data, policy.clone());
        cfg.key_file = key.map(Path::to_path_buf);
        firedoor_server::start(cfg)
    };
    let b = start(Some(&key_file)).await.unwrap();
    let first = b.broker.identity();
    b.stop().await;
    assert!(
        key_file.exists() && !data.join("broker.key").exists(),
        "--key-file is used"
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.lines().any(|l| l.starts_with("AGE-SECRET-KEY-")));
    assert!(text.lines().any(|l| l.starts_with("FIREDOOR-SIGNING-KEY-")));
    let b = start(Some(&key_file)).await.unwrap();
    assert_eq!(
        b.broker.identity(),
        first,
        "the same signing key after a restart"
    );
    b.stop().await;
    // Without the key file no new key is made: the audit log is signed with the old one.
    let e = start(None).await.err().unwrap();
    assert!(e.to_string().contains("--key-file"), "{e}");
    assert!(!data.join("broker.key").exists());
}

/// Attack: an enrolled device (or whoever holds its keys) uploads records with huge
/// fields, properly signed, over and over. Before the fix every byte went into the
/// append-only audit log and into every admin's alert, once per request. Now: the
/// fields are bounded before any signature work, a refusal's text in the audit log is
/// short, an oversized body is refused at the door, and the admins get one alert per
/// device per ten minutes, with a count of what they were not told one by one.
#[tokio::test]
async fn oversized_unlock_uploads_are_bounded_and_alerts_rate_limited() {
    let tb = spawn().await;
    let mut d = register(&tb, "alice", "laptop").await;
    let huge = "A".repeat(1024 * 1024);
    let alerts = || async { events_of(&tb, "carol", "security_alert").await };
    let before = alerts().await.len();

    // Each field in turn, signed by the device: refused, and the text stays out.
    let mut bad = Vec::new();
    for field in ["reason", "mode", "secret", "user", "device_id"] {
        let mut rec = UnlockRecord {
            format: 1,
            seq: 1,
            device_id: d.id.clone(),
            user: "alice".into(),
            secret: SECRET.into(),
            version: 1,
            at: t0(),
            reason: "db down".into(),
            mode: "offline".into(),
            prev_hash: GENESIS_HASH.into(),
            incident: None,
            quorum: None,
        };
        match field {
            "reason" => rec.reason = huge.clone(),
            "mode" => rec.mode = huge.clone(),
            "secret" => rec.secret = huge.clone(),
            "user" => rec.user = huge.clone(),
            _ => rec.device_id = huge.clone(),
        }
        bad.push(SignedRecord::sign(&rec, &d.key));
    }
    for sr in &bad {
        let (s, v) = upload(&tb, &d, std::slice::from_ref(sr)).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str()),
            (422, Some("chain_rejected")),
            "{v}"
        );
        assert!(
            v["message"].as_str().unwrap().len() < 500,
            "the answer is short"
        );
    }
    // A body that is only too long (no valid JSON inside) is refused the same way.
    let (s, v) = upload(
        &tb,
        &d,
        &[SignedRecord {
            body: huge.clone(),
            hash: "0".repeat(64),
            signature: "x".into(),
        }],
    )
    .await;
    assert_eq!(s.as_u16(), 422, "{v}");
    // Larger than the upload limit: refused before it is read.
    let (s, v) = upload(
        &tb,
        &d,
        &[SignedRecord {
            body: "A".repeat(3 * 1024 * 1024),
            hash: "0".repeat(64),
            signature: "x".into(),
        }],
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );

    let rejected: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|a| a.action == "unlock_chain_rejected")
        .collect();
    assert_eq!(rejected.len(), 6, "every refusal is audited");
    for a in &rejected {
        assert!(
            a.details.len() < 2000,
            "audit details are bounded: {} bytes",
            a.details.len()
        );
        assert!(
            !a.details.contains("AAAAAAAAAA"),
            "no field text in the audit log"
        );
    }
    let after = alerts().await;
    assert_eq!(
        after.len() - before,
        1,
        "one alert for six refusals in a row"
    );
    assert!(after
        .iter()
        .all(|e| e.message.len() < 1000 && !e.message.contains("AAAAAAAAAA")));

    // Ten minutes later the next refusal alerts again, with the count in between.
    tb.advance(Duration::minutes(10));
    let (s, _) = upload(&tb, &d, std::slice::from_ref(&bad[0])).await;
    assert_eq!(s.as_u16(), 422);
    let after = alerts().await;
    assert_eq!(after.len() - before, 2);
    assert!(
        after
            .last()
            .unwrap()
            .message
            .contains("and 5 more rejected uploads"),
        "{}",
        after.last().unwrap().message
    );

    // The device's real chain still goes through.
    let ok_rec = d.unlock(SECRET, 0, "offline", "db down, INC-9");
    let (s, v) = upload(&tb, &d, &[ok_rec]).await;
    assert!(s.is_success(), "{v}");
}

// ------------------------------------------------- access ends everywhere (issue 8 §2)

async fn version_becomes(tb: &TestBroker, v: i64) {
    eventually(&format!("{SECRET} rotated to version {v}"), || async {
        tb.running.broker.wake_worker.notify_one();
        (secret(tb, SECRET).await.version == v).then_some(())
    })
    .await;
}

/// Attack: a person leaves (or their laptop and token are stolen); an admin revokes
/// one token, but other tokens, the enrolled laptop with its sealed envelopes, and
/// their live grants all keep working.
#[tokio::test]
async fn disabling_a_user_ends_tokens_devices_grants_and_rotates_what_they_held() {
    let tb = spawn().await;
    let alice = register(&tb, "alice", "alice-laptop").await;
    let bob = register(&tb, "bob", "bob-laptop").await;
    let v1 = random_value();
    assert_eq!(put(&tb, SECRET, &v1).await.sealed_devices, 2);
    let grant: Value = ok(
        &tb,
        "POST",
        "/requests",
        "alice",
        Some(json!({ "bundle": "staging-shell" })),
    )
    .await;
    let gid = grant["grant_id"].as_str().unwrap().to_string();
    assert!(!tb.demo.live().is_empty(), "alice holds live access");

    fails(
        &tb,
        "POST",
        "/users/alice/disable",
        Some("bob"),
        None,
        403,
        "forbidden",
    )
    .await;
    fails(
        &tb,
        "POST",
        "/users/nobody/disable",
        Some("carol"),
        None,
        404,
        "not_found",
    )
    .await;
    let done: Value = ok(&tb, "POST", "/users/alice/disable", "carol", None).await;
    assert_eq!(done["devices_revoked"], 1, "{done}");
    assert_eq!(done["grants_revoked"], 1, "{done}");
    assert_eq!(done["rotating"], json!([SECRET]), "{done}");
    assert!(done["tokens_revoked"].as_u64().unwrap() >= 1);

    fails(
        &tb,
        "GET",
        "/me",
        Some("alice"),
        None,
        401,
        "unauthenticated",
    )
    .await;
    let g: Value = ok(&tb, "GET", &format!("/grants/{gid}"), "carol", None).await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert!(tb.demo.live().is_empty(), "access removed in the target");
    version_becomes(&tb, 2).await;
    let v2 = tb.demo.live_secret(ROLE).unwrap();
    assert_ne!(v2, v1, "what alice's laptop held no longer works");
    let list = envelopes(&tb, &bob).await;
    assert_eq!(list.envelopes.len(), 1);
    assert_eq!(bob.open(&list.envelopes[0].envelope.ciphertext), v2);
    let devices = tb
        .running
        .broker
        .all_devices(&firedoor_server::audit::Actor::System)
        .await
        .unwrap();
    assert!(
        devices
            .iter()
            .any(|(d, revoked)| d.id == alice.id && revoked.is_some()),
        "alice's device is revoked"
    );
    let n = tb
        .raw_db()
        .await
        .count(
            "SELECT count(*) FROM envelopes WHERE device_id = $1",
            &alice.id,
        )
        .await;
    assert_eq!(n, 0, "no envelope of alice's is kept");
    assert_eq!(audit_count(&tb, "user_disabled").await, 1);
    fails(
        &tb,
        "POST",
        "/users/alice/disable",
        Some("carol"),
        None,
        409,
        "conflict",
    )
    .await;
    let e = firedoor_server::auth::issue_token(
        &tb.running.broker.store,
        &firedoor_server::audit::Actor::System,
        "alice",
        tb.running.broker.now(),
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("disabled"), "{e}");
    assert!(firedoor_server::audit::verify(&tb.running.broker.store)
        .await
        .unwrap()
        .is_ok());
}

/// Attack: someone moved out of the on-call group keeps the envelope on their
/// laptop, and the value in it keeps working.
#[tokio::test]
async fn losing_eligibility_rotates_and_reseals_for_those_still_eligible() {
    let tb = spawn().await;
    let alice = register(&tb, "alice", "alice-laptop").await;
    let bob = register(&tb, "bob", "bob-laptop").await;
    let v1 = random_value();
    assert_eq!(put(&tb, SECRET, &v1).await.sealed_devices, 2);
    fails(
        &tb,
        "PUT",
        "/users/alice/groups",
        Some("alice"),
        Some(json!({ "groups": ["oncall", "security"] })),
        403,
        "forbidden",
    )
    .await;
    let changed: Value = ok(
        &tb,
        "PUT",
        "/users/alice/groups",
        "carol",
        Some(json!({ "groups": ["dev"] })),
    )
    .await;
    assert_eq!(changed["groups"], json!(["dev"]));
    version_becomes(&tb, 2).await;
    let v2 = tb.demo.live_secret(ROLE).unwrap();
    assert_ne!(v1, v2);
    assert!(envelopes(&tb, &alice).await.envelopes.is_empty());
    let list = envelopes(&tb, &bob).await;
    assert_eq!(bob.open(&list.envelopes[0].envelope.ciphertext), v2);
    assert_eq!(audit_count(&tb, "user_groups_changed").await, 1);
    assert_eq!(audit_count(&tb, "envelopes_withdrawn").await, 1);
}

/// Attack: the policy is edited to take someone out of a secret's audience and the
/// broker restarted; their laptop's envelope still opens a working value.
#[tokio::test]
async fn a_policy_change_at_restart_rotates_where_the_holders_shrank() {
    let tb = spawn().await;
    let _alice = register(&tb, "alice", "alice-laptop").await;
    let bob = register(&tb, "bob", "bob-laptop").await;
    let v1 = random_value();
    assert_eq!(put(&tb, SECRET, &v1).await.sealed_devices, 2);
    let common::TestBroker {
        running,
        database,
        clock,
        demo,
        dir,
        tokens,
    } = tb;
    running.stop().await;
    // Now only sre-leads (bob) may unlock it.
    let policy = firedoor_server::DEMO_POLICY.replace(
        "unlock = { groups = [\"oncall\"] }",
        "unlock = { groups = [\"sre-leads\"] }",
    );
    let policy = firedoor_core::policy::parse_policy("p.toml", &policy).unwrap();
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
    version_becomes(&tb, 2).await;
    let v2 = tb.demo.live_secret(ROLE).unwrap();
    assert_ne!(v1, v2);
    let list = envelopes(&tb, &bob).await;
    assert_eq!(bob.open(&list.envelopes[0].envelope.ciphertext), v2);
    let withdrawn: Vec<_> = audit(&tb)
        .await
        .into_iter()
        .filter(|r| r.action == "envelopes_withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 1);
    assert!(withdrawn[0].details.contains("alice"), "{:?}", withdrawn[0]);
}

/// Attack: an envelope copied off a laptop (or a value noted down) keeps working
/// for as long as nobody unlocks the secret.
#[tokio::test]
async fn secrets_are_rotated_at_least_every_max_age() {
    let policy = firedoor_server::DEMO_POLICY
        .replace("validity = \"7d\"", "validity = \"7d\"\nmax_age = \"2d\"");
    let tb = spawn_with(&policy, None).await;
    let v1 = random_value();
    put(&tb, SECRET, &v1).await;
    tb.advance(Duration::days(1));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(secret(&tb, SECRET).await.version, 1, "young enough");
    tb.advance(Duration::days(1) + Duration::seconds(1));
    version_becomes(&tb, 2).await;
    assert_ne!(tb.demo.live_secret(ROLE).unwrap(), v1);
    let rotated = audit(&tb)
        .await
        .into_iter()
        .rfind(|r| r.action == "secret_rotated")
        .unwrap();
    assert!(rotated.details.contains("max_age"), "{rotated:?}");
    // Not again before another max_age has passed.
    tb.advance(Duration::days(1));
    tb.running.run_due_work().await.unwrap();
    assert_eq!(secret(&tb, SECRET).await.version, 2);
}
