//! Offline unlock time, from confirming the passphrase to the secret in hand: unwrap
//! the device keys (age scrypt, calibrated to take at least 0.5 s on this machine),
//! check the envelope's broker signature and window, decrypt it, verify the local
//! chain, and commit a signed record to the SQLite cache. The broker is real and
//! stopped before the unlocks, as in an outage. Prints figures; asserts nothing about
//! speed.
//!
//! `cargo bench -p firedoor-client --bench unlock`
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use firedoor_client::console::Console;
use firedoor_client::device::{calibrate_work_factor, DeviceKeys, TARGET_UNWRAP_TIME};
use firedoor_client::secrets::MemoryStore;
use firedoor_client::Client;
use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "payments-db-breakglass";
const UNLOCKS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let b = firedoor_server::start(Config::new(dir.path().join("broker"), policy))
        .await
        .unwrap();
    let pool = &b.broker.store;
    let now = b.broker.now();
    let alice = auth::add_user(
        pool,
        &Actor::System,
        "alice",
        &["oncall".into()],
        false,
        now,
    )
    .await
    .unwrap();
    let carol = auth::add_user(
        pool,
        &Actor::System,
        "carol",
        &["security".into()],
        true,
        now,
    )
    .await
    .unwrap();
    Client::new(&b.url(), Some(carol.token.expose_secret()))
        .unwrap()
        .put_secret(SECRET, "bench-secret-value")
        .await
        .unwrap();

    // The KDF alone, at the factor enrolment picks on this machine.
    let pass = SecretString::from("correct horse battery staple");
    let log_n = calibrate_work_factor(TARGET_UNWRAP_TIME);
    let wrapped = DeviceKeys::generate().wrap(&pass, log_n).unwrap();
    let kdf: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            DeviceKeys::unwrap(&wrapped, &pass, log_n).unwrap();
            t.elapsed()
        })
        .collect();

    // A console with default options (calibrated work factor), enrolled and synced.
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    console
        .sign_in(&b.url(), alice.token.expose_secret())
        .await
        .unwrap();
    let t = Instant::now();
    console.enrol_device(&pass, Utc::now()).await.unwrap();
    let enrol = t.elapsed();
    b.stop().await;

    let mut unlocks = Vec::new();
    for i in 0..UNLOCKS {
        let t = Instant::now();
        let r = console
            .unlock_secret(SECRET, &format!("bench {i}"), &pass, Utc::now())
            .await
            .unwrap();
        unlocks.push(t.elapsed());
        assert_eq!(r.secret.as_str(), "bench-secret-value");
    }
    println!("offline unlock ({UNLOCKS} runs, broker down, release build):");
    println!(
        "  scrypt work factor {log_n}: key unwrap median {:.0} ms (target >= {} ms)",
        median(kdf).as_secs_f64() * 1e3,
        TARGET_UNWRAP_TIME.as_millis()
    );
    println!(
        "  passphrase confirmed -> secret shown: median {:.0} ms, max {:.0} ms (goal <= 1500 ms)",
        median(unlocks.clone()).as_secs_f64() * 1e3,
        unlocks.iter().max().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  enrolment (calibrate, generate, wrap, register, seal, fetch): {:.0} ms",
        enrol.as_secs_f64() * 1e3
    );
}
