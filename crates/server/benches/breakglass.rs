//! Break-glass benchmark (figures, not a timed test). Run:
//! `cargo bench -p firedoor-server --bench breakglass`.
//!
//! Re-seal after a rotation: N enrolled devices (default 1,000: 50 on-call users with
//! 20 devices each) are all eligible for one secret. A rotation is triggered and the
//! clock runs until every device has its new envelope stored (age-encrypted to the
//! device, ASCII-armoured, metadata signed by the broker). Measured two ways:
//! the synchronous admin `POST /secrets/{name}/rotate`, and an uploaded offline
//! unlock that the background worker turns into a rotation (polling the store).
#![allow(clippy::unwrap_used)]

use firedoor_core::breakglass::{
    decode_public_key, encode_public_key, EnvelopeList, SignedRecord, UnlockRecord, GENESIS_HASH,
};
use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "payments-db-breakglass";

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/api/v1{path}", self.base),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }
}

async fn count_at(pool: &sqlx::SqlitePool, version: i64) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM envelopes WHERE secret = ? AND version = ?")
            .bind(SECRET)
            .bind(version)
            .fetch_one(pool)
            .await
            .unwrap();
    n
}

async fn reseal() {
    // `cargo bench` passes --bench and gets the full figure; `cargo test --benches`
    // runs a small smoke version.
    let full = std::env::args().any(|a| a == "--bench");
    let devices = env_n("FIREDOOR_BENCH_DEVICES", if full { 1000 } else { 40 });
    let per_user = 20usize;
    let users = devices.div_ceil(per_user);
    let rounds = env_n("FIREDOOR_BENCH_ROTATIONS", if full { 5 } else { 2 });

    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let b = firedoor_server::start(Config::new(dir.path(), policy))
        .await
        .unwrap();
    // The bench's own connection to the broker's SQLite file, as another process.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        firedoor_server::db_path(dir.path()).display()
    ))
    .await
    .unwrap();
    let store = b.broker.store.clone();
    let now = b.broker.now();
    let admin = auth::add_user(
        &store,
        &Actor::System,
        "sec",
        &["security".into()],
        true,
        now,
    )
    .await
    .unwrap()
    .token
    .expose_secret()
    .to_string();
    let mut tokens = Vec::new();
    for i in 0..users {
        let t = auth::add_user(
            &store,
            &Actor::System,
            &format!("eng{i}"),
            &["oncall".into()],
            false,
            now,
        )
        .await
        .unwrap();
        tokens.push(t.token.expose_secret().to_string());
    }
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        base: b.url(),
    });

    // Enrol the devices (8 at a time), keeping one identity to open an envelope.
    let t = Instant::now();
    let mut tasks = Vec::new();
    let tokens = Arc::new(tokens);
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    for n in 0..devices {
        let api = api.clone();
        let tokens = tokens.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let id = age::x25519::Identity::generate();
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let token = &tokens[n / per_user];
            let v = api
                .call(
                    "POST",
                    "/devices",
                    token,
                    Some(json!({ "name": format!("laptop-{n}"), "recipient": id.to_public().to_string(),
                        "signing_key": encode_public_key(&key.verifying_key()) })),
                )
                .await;
            (v["id"].as_str().unwrap().to_string(), id, key, token.clone())
        }));
    }
    let mut enrolled = Vec::new();
    for t in tasks {
        enrolled.push(t.await.unwrap());
    }
    println!(
        "enrolled {devices} devices ({users} users x {per_user}) over HTTP in {:.2}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let v = api
        .call(
            "PUT",
            &format!("/secrets/{SECRET}"),
            &admin,
            Some(json!({ "value": "bench-initial-value-0123456789" })),
        )
        .await;
    let put = t.elapsed();
    assert_eq!(v["sealed_devices"], devices as i64);
    println!(
        "secret put (HTTP) → {devices} envelopes sealed and stored: {:.1} ms",
        ms(put)
    );

    // 1. Synchronous rotation by an admin.
    let mut sync = Vec::new();
    let mut version = 1;
    for _ in 0..rounds {
        let t = Instant::now();
        let v = api
            .call("POST", &format!("/secrets/{SECRET}/rotate"), &admin, None)
            .await;
        sync.push(t.elapsed());
        version += 1;
        assert_eq!(v["version"], version);
        assert_eq!(count_at(&pool, version).await, devices as i64);
    }

    // 2. An offline unlock reported by a device: the worker rotates and reseals.
    let (dev_id, identity, key, token) = &enrolled[0];
    let mut via_worker = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for seq in 1..=rounds as u64 {
        let rec = UnlockRecord {
            format: 1,
            seq,
            device_id: dev_id.clone(),
            user: "eng0".into(),
            secret: SECRET.into(),
            version,
            at: b.broker.now(),
            reason: "bench".into(),
            mode: "offline".into(),
            prev_hash: prev.clone(),
            incident: None,
            quorum: None,
        };
        let signed = SignedRecord::sign(&rec, key);
        prev = signed.hash.clone();
        let t = Instant::now();
        api.call(
            "POST",
            &format!("/devices/{dev_id}/unlocks"),
            token,
            Some(json!({ "records": [signed] })),
        )
        .await;
        version += 1;
        while count_at(&pool, version).await < devices as i64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        via_worker.push(t.elapsed());
    }

    // The last envelope verifies and opens to the value the connector holds.
    let id = api.call("GET", "/broker", token, None).await;
    let broker_key = decode_public_key(id["signing_key"].as_str().unwrap()).unwrap();
    let list: EnvelopeList = serde_json::from_value(
        api.call("GET", &format!("/devices/{dev_id}/envelopes"), token, None)
            .await,
    )
    .unwrap();
    let meta = list.envelopes[0].envelope.verify(&broker_key).unwrap();
    assert_eq!(meta.version, version);
    let value = age::decrypt(identity, list.envelopes[0].envelope.ciphertext.as_bytes()).unwrap();
    assert_eq!(value.len(), 32, "a generated 32-character value");

    sync.sort();
    via_worker.sort();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("re-seal after rotation, {devices} devices, {cores} cores ({rounds} rotations each):");
    println!(
        "  admin rotate (HTTP, synchronous) → all {devices} new envelopes stored: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(sync[sync.len() / 2]),
        ms(sync[0]),
        ms(sync[sync.len() - 1])
    );
    println!(
        "  offline unlock uploaded → worker rotates → all {devices} new envelopes stored: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(via_worker[via_worker.len() / 2]),
        ms(via_worker[0]),
        ms(via_worker[via_worker.len() - 1])
    );
    println!(
        "  per envelope (median, synchronous): {:.1} µs",
        sync[sync.len() / 2].as_secs_f64() * 1e6 / devices as f64
    );
    let v = firedoor_server::audit::verify(&store)
        .await
        .unwrap()
        .unwrap();
    println!("  audit chain verified: {} records", v.records);
    b.stop().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(reseal());
}
