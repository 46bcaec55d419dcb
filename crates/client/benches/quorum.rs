//! Two-person (2-of-n) offline unlock time (issue 14: quorum), from importing the
//! second person's release to the secret in hand: `Console::quorum_complete`, i.e.
//! unwrap the device keys with the passphrase, check the own sealed share (broker
//! signature, binding, window), decrypt it, decrypt and verify the release (device
//! signature against the broker-signed directory, request hash, envelope, version,
//! expiry, replay), recombine (Shamir), check the broker's commitment, and commit the
//! signed `quorum` record to the SQLite cache. Real broker (stopped before the
//! unlocks, as in an outage), two consoles with their own caches. Prints p50 and p95
//! with the key-wrapping work factor enrolment calibrates on this machine (what a
//! person waits) and with a minimal one (everything but the KDF). Asserts nothing
//! about speed.
//!
//! `cargo bench -p firedoor-client --bench quorum`
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use firedoor_client::console::{Console, ConsoleOptions};
use firedoor_client::secrets::MemoryStore;
use firedoor_client::Client;
use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "vault-root";
const VALUE: &str = "bench-quorum-value";

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

async fn run(dir: &Path, work_factor: Option<u8>, runs: usize) -> Vec<Duration> {
    let src = format!(
        "{}\n[secrets.{SECRET}]\nunlock = {{ groups = [\"dba\"], quorum = 2 }}\n",
        firedoor_server::DEMO_POLICY
    );
    let policy = firedoor_core::policy::parse_policy("bench", &src).unwrap();
    let b = firedoor_server::start(Config::new(dir.join("broker"), policy))
        .await
        .unwrap();
    let pool = &b.broker.store;
    let now = b.broker.now();
    let mut tokens = Vec::new();
    for u in ["alice", "bob"] {
        let t = auth::add_user(pool, &Actor::System, u, &["dba".into()], false, now)
            .await
            .unwrap();
        tokens.push(t.token.expose_secret().to_string());
    }
    let carol = auth::add_user(pool, &Actor::System, "carol", &[], true, now)
        .await
        .unwrap();
    let pass = SecretString::from("correct horse battery staple");
    let mut consoles = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let c = Console::open_with(
            &dir.join(format!("app{i}")),
            Arc::new(MemoryStore::default()),
            false,
            ConsoleOptions {
                kdf_work_factor: work_factor,
            },
        )
        .await
        .unwrap();
        c.sign_in(&b.url(), t).await.unwrap();
        c.enrol_device(&pass, Utc::now()).await.unwrap();
        consoles.push(c);
    }
    Client::new(&b.url(), Some(carol.token.expose_secret()))
        .unwrap()
        .put_secret(SECRET, VALUE)
        .await
        .unwrap();
    for c in &consoles {
        c.sync().await.unwrap();
    }
    b.stop().await;
    let (alice, bob) = (&consoles[0], &consoles[1]);
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let now = Utc::now();
        let req = alice
            .quorum_request(SECRET, &format!("bench {i}"), &pass, now)
            .await
            .unwrap();
        let rel = bob.quorum_release(&req.text, &pass, now).await.unwrap();
        let t = Instant::now();
        let r = alice
            .quorum_complete(&req.request_id, &[rel.text], &pass, now)
            .await
            .unwrap();
        out.push(t.elapsed());
        assert_eq!(r.secret.as_str(), VALUE);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let real = run(&dir.path().join("calibrated"), None, 11).await;
    let light = run(&dir.path().join("light"), Some(10), 41).await;
    println!("two-person offline unlock, second release imported -> secret in hand (broker down):");
    println!(
        "  calibrated key-wrapping work factor ({} runs): p50 {:.0} ms, p95 {:.0} ms",
        real.len(),
        pct(&real, 0.5),
        pct(&real, 0.95)
    );
    println!(
        "  minimal work factor, i.e. all but the passphrase KDF ({} runs): p50 {:.1} ms, p95 {:.1} ms",
        light.len(),
        pct(&light, 0.5),
        pct(&light, 0.95)
    );
}
