//! Offline break glass against a real broker over HTTP, with a real SQLite cache file
//! and the in-memory secret store: enrolment, sealed envelopes, unlocking with the
//! broker down, the passphrase lock-out, tampering with envelopes and with the local
//! unlock chain, upload when the broker is back, rotation, and what is at rest.
#![allow(clippy::unwrap_used)]

mod common;
use common::{broker, token};
use firedoor_server::RunningBroker;

use chrono::{Duration, Utc};
use firedoor_client::breakglass::{SealedState, UnlockMode};
use firedoor_client::console::{Console, ConsoleOptions};
use firedoor_client::secrets::{MemoryStore, SecretStore};
use firedoor_client::Client;
use secrecy::SecretString;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use std::path::Path;
use std::sync::Arc;

const SECRET: &str = "payments-db-breakglass";
const PASS: &str = "correct horse battery staple";
const FIRST_VALUE: &str = "pw-first-7a1c9e";

fn pass(s: &str) -> SecretString {
    SecretString::from(s)
}

/// A console with a low scrypt work factor (tests must not spend seconds per unlock).
async fn open_console(appdir: &Path, secrets: Arc<MemoryStore>) -> Arc<Console> {
    Console::open_with(
        appdir,
        secrets,
        false,
        ConsoleOptions {
            kdf_work_factor: Some(10),
        },
    )
    .await
    .unwrap()
}

/// A second connection to the app's cache file, to look and to tamper.
async fn cache_db(appdir: &Path) -> SqlitePool {
    SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(appdir.join("cache.db"))
            .busy_timeout(std::time::Duration::from_secs(5)),
    )
    .await
    .unwrap()
}

async fn chain_rows(db: &SqlitePool) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, record FROM unlock_chain ORDER BY seq")
        .fetch_all(db)
        .await
        .unwrap()
}

async fn envelope_json(db: &SqlitePool) -> String {
    sqlx::query_scalar("SELECT envelope FROM envelopes WHERE name = ?")
        .bind(SECRET)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn set_envelope_json(db: &SqlitePool, json: &str) {
    sqlx::query("UPDATE envelopes SET envelope = ? WHERE name = ?")
        .bind(json)
        .bind(SECRET)
        .execute(db)
        .await
        .unwrap();
}

/// Waits (bounded) until the broker has rotated the secret past `version`: rotation
/// runs in the broker's worker, which the upload wakes; `run_due_work` runs it now.
async fn rotated_past(b: &RunningBroker, carol: &Client, version: i64) -> i64 {
    for _ in 0..100 {
        b.run_due_work().await.unwrap();
        let v = carol
            .secrets()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == SECRET)
            .unwrap()
            .version;
        if v > version {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the broker did not rotate {SECRET} past v{version}");
}

#[tokio::test]
async fn offline_break_glass_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol_token = token(&b, "carol", &["security"], true).await;
    let carol = Client::new(&url, Some(&carol_token)).unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;

    console.sign_in(&url, &alice).await.unwrap();
    let snap = console.snapshot().await.unwrap();
    let dev = &snap.break_glass.device;
    assert!(!dev.enrolled);
    let identity = carol.broker_identity().await.unwrap();
    assert_eq!(
        dev.broker_fingerprint.as_deref(),
        Some(identity.fingerprint.as_str()),
        "sign-in pins the broker's signing key"
    );

    // Enrolment.
    let e = console
        .enrol_device(&pass("short"), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "weak_passphrase");
    let snap = console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let dev = &snap.break_glass.device;
    assert!(dev.enrolled && dev.chain_ok, "{dev:?}");
    let device_id = dev.device_id.clone().unwrap();
    assert!(dev.device_name.as_deref().is_some_and(|n| !n.is_empty()));
    assert_eq!(dev.pending_records, 0);
    let wrapped = secrets
        .get(&format!("device-keys:alice@{url}"))
        .unwrap()
        .expect("the wrapped keys are in the secret store");
    assert!(
        wrapped.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
            && !wrapped.contains("AGE-SECRET-KEY-"),
        "the keys are stored wrapped with the passphrase"
    );

    // An admin stores the secret; the next sync brings its envelope.
    carol.put_secret(SECRET, FIRST_VALUE).await.unwrap();
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    let cred = snap
        .break_glass
        .credentials
        .iter()
        .find(|c| c.name == SECRET)
        .expect("the envelope is cached");
    assert_eq!(cred.state, SealedState::Valid, "{cred:?}");
    assert!(cred.problem.is_none());
    let v1 = cred.version;
    assert!(v1 >= 1);
    assert!(cred.not_after > Utc::now() + Duration::days(6));

    // The broker goes down: unlock offline.
    b.stop().await;
    let now = Utc::now();
    let e = console
        .unlock_secret(SECRET, "  ", &pass(PASS), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "validation");
    let long = "x".repeat(firedoor_core::breakglass::MAX_REASON_CHARS + 1);
    let e = console
        .unlock_secret(SECRET, &long, &pass(PASS), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "validation");
    let r = console
        .unlock_secret(
            SECRET,
            "INC-42 payments down, broker unreachable",
            &pass(PASS),
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.mode, UnlockMode::Offline);
    assert_eq!(r.secret.as_str(), FIRST_VALUE);
    assert_eq!(r.record_seq, Some(1));
    assert_eq!(r.version, v1);
    assert_eq!(r.hide_after_secs, 60);
    assert!(
        !format!("{r:?}").contains(FIRST_VALUE),
        "Debug hides the secret"
    );
    let db = cache_db(&appdir).await;
    let rows = chain_rows(&db).await;
    assert_eq!(
        rows.len(),
        1,
        "the record is committed before the secret is shown"
    );
    assert_eq!(rows[0].0, 1);
    assert!(rows[0].1.contains("INC-42 payments down"));
    let snap = console.snapshot().await.unwrap();
    assert!(!snap.status.online);
    assert_eq!(snap.break_glass.device.pending_records, 1);
    assert!(snap.break_glass.device.chain_ok);

    // Wrong passphrases: 4 tell how many are left, the 5th locks out for 15 minutes.
    let t = Utc::now();
    for left in (1..=4).rev() {
        let e = console
            .unlock_secret(SECRET, "INC-42", &pass("not the passphrase"), t)
            .await
            .unwrap_err();
        assert_eq!(e.code, "wrong_passphrase");
        let plural = if left == 1 { "" } else { "s" };
        assert_eq!(
            e.message,
            format!("Wrong passphrase. {left} attempt{plural} left before a 15-minute lock-out.")
        );
    }
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass("not the passphrase"), t)
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out");
    assert_eq!(
        e.message,
        "Locked out after 5 wrong passphrases. Try again in 15 min."
    );
    // Even the right passphrase is refused while locked out.
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass(PASS), t + Duration::minutes(1))
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out");
    assert!(e.message.ends_with("Try again in 14 min."), "{}", e.message);
    let dev = console.snapshot_at(t).await.unwrap().break_glass.device;
    assert_eq!(dev.failed_attempts, 5);
    assert_eq!(dev.locked_until, Some(t + Duration::minutes(15)));
    // Fifteen minutes later it opens again.
    let later = t + Duration::minutes(15);
    let dev = console.snapshot_at(later).await.unwrap().break_glass.device;
    assert_eq!(dev.failed_attempts, 0);
    assert_eq!(dev.locked_until, None);
    let r = console
        .unlock_secret(SECRET, "INC-42 second look", &pass(PASS), later)
        .await
        .unwrap();
    assert_eq!(r.record_seq, Some(2));
    assert_eq!(r.secret.as_str(), FIRST_VALUE);

    // Envelope tampering in the cache: refused as invalid.
    let original = envelope_json(&db).await;
    let mut env: serde_json::Value = serde_json::from_str(&original).unwrap();
    let meta = env["meta_json"].as_str().unwrap().to_string();
    let bumped = meta.replace(
        &format!("\"version\":{v1}"),
        &format!("\"version\":{}", v1 + 1),
    );
    assert_ne!(meta, bumped);
    env["meta_json"] = bumped.into();
    set_envelope_json(&db, &env.to_string()).await;
    let cred = console
        .snapshot_at(later)
        .await
        .unwrap()
        .break_glass
        .credentials[0]
        .clone();
    assert_eq!(cred.state, SealedState::Invalid);
    assert!(
        cred.problem.as_deref().unwrap().contains("signature"),
        "{cred:?}"
    );
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass(PASS), later)
        .await
        .unwrap_err();
    assert_eq!(e.code, "envelope_invalid", "{e:?}");
    let mut env: serde_json::Value = serde_json::from_str(&original).unwrap();
    let ct = env["ciphertext"].as_str().unwrap().to_string();
    let line = ct.lines().nth(1).unwrap().to_string();
    let flipped: String = line
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 5 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    env["ciphertext"] = ct.replacen(&line, &flipped, 1).into();
    set_envelope_json(&db, &env.to_string()).await;
    let cred = console
        .snapshot_at(later)
        .await
        .unwrap()
        .break_glass
        .credentials[0]
        .clone();
    assert_eq!(cred.state, SealedState::Invalid);
    assert!(
        cred.problem.as_deref().unwrap().contains("checksum"),
        "{cred:?}"
    );
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass(PASS), later)
        .await
        .unwrap_err();
    assert_eq!(e.code, "envelope_invalid");
    set_envelope_json(&db, &original).await;
    // Past its window: expired.
    let week = later + Duration::days(8);
    let cred = console
        .snapshot_at(week)
        .await
        .unwrap()
        .break_glass
        .credentials[0]
        .clone();
    assert_eq!(cred.state, SealedState::Expired);
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass(PASS), week)
        .await
        .unwrap_err();
    assert_eq!(e.code, "envelope_expired");
    assert_eq!(
        chain_rows(&db).await.len(),
        2,
        "refused unlocks write no record"
    );

    // Chain tampering: the last record removed, then an earlier one edited.
    let saved = chain_rows(&db).await;
    sqlx::query("DELETE FROM unlock_chain WHERE seq = 2")
        .execute(&db)
        .await
        .unwrap();
    let dev = console.snapshot_at(later).await.unwrap().break_glass.device;
    assert!(!dev.chain_ok);
    assert!(
        dev.chain_error
            .as_deref()
            .unwrap()
            .contains("record 2 is missing"),
        "{dev:?}"
    );
    let e = console
        .unlock_secret(SECRET, "INC-42", &pass(PASS), later)
        .await
        .unwrap_err();
    assert_eq!(e.code, "chain_broken", "no unlock on top of a broken chain");
    sqlx::query("UPDATE unlock_chain SET record = ? WHERE seq = 1")
        .bind(
            saved[0]
                .1
                .replace("INC-42 payments down", "routine check, nothing to see"),
        )
        .execute(&db)
        .await
        .unwrap();
    let dev = console.snapshot_at(later).await.unwrap().break_glass.device;
    assert!(!dev.chain_ok);
    assert!(
        dev.chain_error.as_deref().unwrap().contains("edited"),
        "{dev:?}"
    );

    // The broker comes back on the same data: it refuses the tampered chain, and
    // nothing leaves the device.
    let b = broker(&bdir, addr).await;
    console.sync().await.unwrap();
    let st = console.status().await.unwrap();
    assert!(st.online);
    let err = st.last_error.unwrap_or_default();
    assert!(
        err.starts_with("The broker rejected this device's unlock records:"),
        "{err}"
    );
    assert_eq!(chain_rows(&db).await.len(), 1, "nothing deleted");
    let audit = carol.audit(0, 5000).await.unwrap();
    assert!(audit.iter().any(|r| r.action == "unlock_chain_rejected"));

    // Restored, the chain uploads; the records leave the device only now.
    for (seq, rec) in &saved {
        sqlx::query("INSERT OR REPLACE INTO unlock_chain (account, seq, record) VALUES (?, ?, ?)")
            .bind(format!("alice@{url}"))
            .bind(seq)
            .bind(rec)
            .execute(&db)
            .await
            .unwrap();
    }
    assert!(
        console
            .snapshot()
            .await
            .unwrap()
            .break_glass
            .device
            .chain_ok
    );
    console.sync().await.unwrap();
    assert!(
        chain_rows(&db).await.is_empty(),
        "acknowledged records are removed"
    );
    let snap = console.snapshot().await.unwrap();
    assert_eq!(snap.break_glass.device.pending_records, 0);
    assert!(snap.break_glass.device.chain_ok);
    assert_eq!(snap.status.last_error, None);
    let audit = carol.audit(0, 5000).await.unwrap();
    let unlocks: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "break_glass_offline_unlock")
        .collect();
    assert_eq!(unlocks.len(), 2, "both offline unlocks are audited");
    assert!(unlocks[0].details.contains("INC-42 payments down"));
    assert!(unlocks[0].details.contains(&device_id));

    // The unlock made the broker rotate the secret; after a sync the new envelope
    // opens offline to the new value.
    let v2 = rotated_past(&b, &carol, v1).await;
    console.sync().await.unwrap();
    let cred = console.snapshot().await.unwrap().break_glass.credentials[0].clone();
    assert_eq!(cred.version, v2);
    assert_eq!(cred.state, SealedState::Valid);
    b.stop().await;
    // At a time after the earlier lock-out (the wrong passphrases are minutes old).
    let r = console
        .unlock_secret(
            SECRET,
            "INC-43 still down",
            &pass(PASS),
            later + Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(r.mode, UnlockMode::Offline);
    assert_eq!(r.version, v2);
    assert_ne!(r.secret.as_str(), FIRST_VALUE, "rotated");
    assert_eq!(
        r.record_seq,
        Some(3),
        "the chain continues after the upload"
    );
    let rotated_value = r.secret.to_string();

    // At rest: no secret value, passphrase, token or private key in any file.
    db.close().await;
    let mut files = 0;
    for entry in std::fs::read_dir(&appdir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (what, needle) in [
            ("the first secret value", FIRST_VALUE),
            ("the rotated secret value", rotated_value.as_str()),
            ("the passphrase", PASS),
            ("the API token", alice.as_str()),
            ("an age identity", "AGE-SECRET-KEY-"),
        ] {
            assert!(!text.contains(needle), "{} contains {what}", path.display());
        }
    }
    assert!(files >= 1);
}

#[tokio::test]
async fn online_unlock_and_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let bob = token(&b, "bob", &["sre-leads"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "online-value-1").await.unwrap();

    let console = open_console(&dir.path().join("app"), Arc::new(MemoryStore::default())).await;
    let e = console
        .unlock_secret(SECRET, "INC-1", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "signed_out");
    let e = console
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "signed_out");
    console.sign_in(&url, &alice).await.unwrap();
    let e = console
        .unlock_secret(SECRET, "INC-1", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_enrolled");
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();

    let r = console
        .unlock_secret(SECRET, "INC-1 online", &pass(PASS), Utc::now())
        .await
        .unwrap();
    assert_eq!(r.mode, UnlockMode::Online);
    assert_eq!(r.record_seq, None);
    assert_eq!(r.secret.as_str(), "online-value-1");
    assert_eq!(r.title, "Payments DB break-glass login");
    let audit = carol.audit(0, 5000).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "break_glass_online_unlock" && a.details.contains("INC-1 online")));
    let db = cache_db(&dir.path().join("app")).await;
    assert!(
        chain_rows(&db).await.is_empty(),
        "online unlocks are the broker's to record"
    );

    // A wrong passphrase fails before the broker hears anything.
    let e = console
        .unlock_secret(SECRET, "INC-1", &pass("wrong wrong"), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "wrong_passphrase");

    // Someone not eligible: the broker's refusal comes through as is.
    let console_b = open_console(
        &dir.path().join("app-bob"),
        Arc::new(MemoryStore::default()),
    )
    .await;
    console_b.sign_in(&url, &bob).await.unwrap();
    let snap = console_b
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap();
    assert!(
        snap.break_glass.credentials.is_empty(),
        "bob may unlock nothing"
    );
    let e = console_b
        .unlock_secret(SECRET, "curious", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_eligible");

    // Enrolment needs the broker.
    b.stop().await;
    let e = console
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "offline", "{e:?}");
}

#[tokio::test]
async fn sign_out_keeps_the_enrolment_and_pending_records() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "kept-value").await.unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    let device_id = console
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap()
        .break_glass
        .device
        .device_id
        .unwrap();
    b.stop().await;
    let r = console
        .unlock_secret(SECRET, "INC-7", &pass(PASS), Utc::now())
        .await
        .unwrap();
    assert_eq!(r.record_seq, Some(1));

    console.sign_out().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    assert!(
        !snap.break_glass.device.enrolled,
        "nothing shows while signed out"
    );
    assert!(snap.break_glass.credentials.is_empty());
    let db = cache_db(&appdir).await;
    assert_eq!(
        chain_rows(&db).await.len(),
        1,
        "the pending record survives sign-out"
    );

    // Signed in again (same broker, same user): the device is still enrolled and the
    // record is uploaded.
    let b = broker(&bdir, addr).await;
    console.sign_in(&url, &alice).await.unwrap();
    let snap = console.snapshot().await.unwrap();
    let dev = &snap.break_glass.device;
    assert!(dev.enrolled);
    assert_eq!(dev.device_id.as_deref(), Some(device_id.as_str()));
    assert_eq!(dev.pending_records, 0, "{dev:?}");
    assert!(chain_rows(&db).await.is_empty());
    let audit = carol.audit(0, 5000).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "break_glass_offline_unlock" && a.details.contains("INC-7")));
    b.stop().await;
}

/// Removes the signing key from a stopped broker's key file (it makes a new one).
fn drop_signing_key(bdir: &Path) {
    let keyfile = bdir.join("broker.key");
    let text = std::fs::read_to_string(&keyfile).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("FIREDOOR-SIGNING-KEY-"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, text);
    std::fs::write(&keyfile, kept).unwrap();
    // The audit anchor, signed with the old key, would stop the start: the operator
    // moves it aside to accept the new key.
    let anchor = bdir.join("audit-anchor.log");
    if anchor.exists() {
        std::fs::rename(anchor, bdir.join("audit-anchor.old")).unwrap();
    }
}

/// A consistent copy of the app's cache file, as an attacker (or a backup) keeps it.
async fn copy_cache(appdir: &Path, to: &Path) {
    let db = cache_db(appdir).await;
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_str().unwrap())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

/// Closes the app, replaces (or with `from = None` deletes) its cache file, and
/// starts the app again with the same secret store (keyring).
async fn replace_cache(
    console: Arc<Console>,
    appdir: &Path,
    from: Option<&Path>,
    secrets: Arc<MemoryStore>,
) -> Arc<Console> {
    console.close().await;
    drop(console);
    for f in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        let _ = std::fs::remove_file(appdir.join(f));
    }
    if let Some(from) = from {
        std::fs::copy(from, appdir.join("cache.db")).unwrap();
    }
    open_console(appdir, secrets).await
}

/// Attack: the broker's signing key changes (a new broker, an impostor, or a key
/// lost and remade). Before, sign-in re-pinned it silently (only a log line) and the
/// envelopes signed by it were then trusted. Now nothing is re-pinned without the
/// user: break glass stops (no unlock, no enrolment, no upload of records, no
/// envelopes) and the device status carries both fingerprints to compare, until the
/// user confirms the new one. Deleting cache.db does not reset the pin (it is in the
/// keyring).
#[tokio::test]
async fn a_changed_broker_key_stops_break_glass_until_the_user_confirms_it() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol_token = token(&b, "carol", &["security"], true).await;
    let carol = Client::new(&url, Some(&carol_token)).unwrap();
    carol.put_secret(SECRET, "value-a").await.unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let pinned = console
        .snapshot()
        .await
        .unwrap()
        .break_glass
        .device
        .broker_fingerprint
        .unwrap();
    // An offline unlock while the broker is down leaves a record to upload.
    let addr = b.addr;
    b.stop().await;
    let r = console
        .unlock_secret(
            SECRET,
            "INC-8 before the key change",
            &pass(PASS),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(r.record_seq, Some(1));

    drop_signing_key(&bdir);
    let b = broker(&bdir, addr).await;
    let new_fp = carol.broker_identity().await.unwrap().fingerprint;
    assert_ne!(new_fp, pinned);
    carol.put_secret(SECRET, "value-b").await.unwrap();

    // Sync notices, does not re-pin, and stops break glass.
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    let dev = &snap.break_glass.device;
    assert_eq!(dev.broker_fingerprint.as_deref(), Some(pinned.as_str()));
    let change = dev.broker_key_change.clone().expect("the change is shown");
    assert_eq!(change.pinned_fingerprint, pinned);
    assert_eq!(change.new_fingerprint, new_fp);
    let problem = snap.status.last_error.clone().unwrap_or_default();
    assert!(
        problem.contains(&pinned) && problem.contains(&new_fp),
        "{problem}"
    );
    // The record is not handed to a broker whose key is not confirmed (it could
    // acknowledge it and make the device drop it).
    assert_eq!(dev.pending_records, 1);
    let db = cache_db(&appdir).await;
    assert_eq!(chain_rows(&db).await.len(), 1);
    db.close().await;
    assert!(!carol
        .audit(0, 5000)
        .await
        .unwrap()
        .iter()
        .any(|a| a.action == "break_glass_offline_unlock"));
    let e = console
        .unlock_secret(SECRET, "INC-9", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "broker_key_changed", "{e:?}");
    assert!(e.message.contains(&pinned) && e.message.contains(&new_fp));
    let dev = console.snapshot().await.unwrap().break_glass.device;
    assert_eq!(dev.failed_attempts, 0, "no passphrase was asked for");

    // Signing in again does not re-pin either (it did, silently, before).
    console.sign_in(&url, &alice).await.unwrap();
    let dev = console.snapshot().await.unwrap().break_glass.device;
    assert_eq!(dev.broker_fingerprint.as_deref(), Some(pinned.as_str()));
    assert!(dev.broker_key_change.is_some());

    // Nor does deleting the cache file and signing in anew.
    let console = replace_cache(console, &appdir, None, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    let dev = console.snapshot().await.unwrap().break_glass.device;
    assert_eq!(dev.broker_fingerprint.as_deref(), Some(pinned.as_str()));
    assert_eq!(
        dev.broker_key_change
            .as_ref()
            .map(|c| c.new_fingerprint.as_str()),
        Some(new_fp.as_str())
    );
    let e = console
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "broker_key_changed");

    // Confirming needs the fingerprint of the key actually offered.
    let e = console
        .confirm_broker_key(&pinned, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "fingerprint_mismatch");
    let snap = console
        .confirm_broker_key(&new_fp, Utc::now())
        .await
        .unwrap();
    let dev = &snap.break_glass.device;
    assert_eq!(dev.broker_fingerprint.as_deref(), Some(new_fp.as_str()));
    assert!(dev.broker_key_change.is_none());
    let e = console
        .confirm_broker_key(&new_fp, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "no_key_change");

    // Break glass works again, with envelopes signed by the new key.
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let snap = console.snapshot().await.unwrap();
    assert_eq!(snap.break_glass.credentials[0].state, SealedState::Valid);
    b.stop().await;
    let r = console
        .unlock_secret(SECRET, "INC-9", &pass(PASS), Utc::now())
        .await
        .unwrap();
    assert_eq!(r.secret.as_str(), "value-b");
}

/// Attack: put an older envelope back (its value was rotated away, but it is still in
/// its validity window), by editing the cached row or by restoring an older copy of
/// cache.db. The highest version seen per secret is kept in the keyring, so both are
/// refused.
#[tokio::test]
async fn an_older_envelope_put_back_in_the_cache_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "old-value").await.unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let old_copy = dir.path().join("old-cache.db");
    copy_cache(&appdir, &old_copy).await;
    let db = cache_db(&appdir).await;
    let old_envelope = envelope_json(&db).await;

    carol.put_secret(SECRET, "new-value").await.unwrap();
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    let v2 = snap.break_glass.credentials[0].version;
    assert_eq!(snap.break_glass.credentials[0].state, SealedState::Valid);
    b.stop().await;

    // The cached row is replaced by the older (validly signed) envelope.
    set_envelope_json(&db, &old_envelope).await;
    let cred = console.snapshot().await.unwrap().break_glass.credentials[0].clone();
    assert_eq!(cred.state, SealedState::Invalid, "{cred:?}");
    assert!(
        cred.problem
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("older than version {v2}")),
        "{cred:?}"
    );
    let e = console
        .unlock_secret(SECRET, "INC-11", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "envelope_rolled_back", "{e:?}");
    db.close().await;

    // The whole cache file is replaced by the older copy.
    let console = replace_cache(console, &appdir, Some(&old_copy), secrets.clone()).await;
    let e = console
        .unlock_secret(SECRET, "INC-11", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "envelope_rolled_back", "{e:?}");
    assert!(chain_rows(&cache_db(&appdir).await).await.is_empty());
}

/// Attack: wrong passphrases are counted in cache.db; deleting that row, or putting
/// back a copy of cache.db from before the guesses, gave 5 more guesses each time. The
/// times are kept in the keyring now: the lock-out holds.
#[tokio::test]
async fn the_lock_out_survives_editing_or_restoring_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "locked-value").await.unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let before = dir.path().join("before-guesses.db");
    copy_cache(&appdir, &before).await;
    b.stop().await;

    let t = Utc::now();
    for _ in 0..5 {
        let _ = console
            .unlock_secret(SECRET, "guess", &pass("a wrong guess here"), t)
            .await
            .unwrap_err();
    }
    let e = console
        .unlock_secret(SECRET, "INC-12", &pass(PASS), t)
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out");

    // Editing cache.db: every break-glass row that could count failures is removed.
    let db = cache_db(&appdir).await;
    sqlx::query("DELETE FROM kv WHERE key LIKE '%fail%'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let e = console
        .unlock_secret(SECRET, "INC-12", &pass(PASS), t + Duration::minutes(1))
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out", "{e:?}");

    // Restoring a copy of cache.db from before the guesses.
    let console = replace_cache(console, &appdir, Some(&before), secrets.clone()).await;
    let dev = console.snapshot_at(t).await.unwrap().break_glass.device;
    assert_eq!(dev.failed_attempts, 5);
    let e = console
        .unlock_secret(SECRET, "INC-12", &pass(PASS), t + Duration::minutes(2))
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out", "{e:?}");

    // The window still ends: 15 minutes after the guesses it opens.
    let r = console
        .unlock_secret(SECRET, "INC-12", &pass(PASS), t + Duration::minutes(15))
        .await
        .unwrap();
    assert_eq!(r.secret.as_str(), "locked-value");
}

/// Attack: a weak passphrase that is long enough (the old rule was 8 characters)
/// falls to a few guesses against the wrapped keys copied from the keyring. Judged by
/// strength now (zxcvbn score >= 3, at least 12 characters), with its feedback.
/// And a broker URL over plain http to another machine is refused at sign-in.
#[tokio::test]
async fn weak_passphrases_and_plain_http_brokers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let console = open_console(&dir.path().join("app"), Arc::new(MemoryStore::default())).await;

    let e = console
        .sign_in("http://firedoor.example.com", &alice)
        .await
        .unwrap_err();
    assert_eq!(e.code, "insecure_url");
    assert!(e.message.contains("https://"), "{}", e.message);
    assert!(
        !e.message.contains(&alice),
        "the token is never in a message"
    );
    // A broker on this machine may use http (the test broker does).
    assert!(url.starts_with("http://127.0.0.1"));
    console.sign_in(&url, &alice).await.unwrap();

    for weak in ["password1234", "alicealice2026", "qwertyuiopasdf"] {
        let e = console
            .enrol_device(&pass(weak), Utc::now())
            .await
            .unwrap_err();
        assert_eq!(e.code, "weak_passphrase", "{weak}");
        assert!(e.message.contains("too easy to guess"), "{}", e.message);
        assert!(!e.message.contains(weak), "the passphrase is never echoed");
    }
    let e = console
        .enrol_device(&pass("Tr0ub4dor&3"), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "weak_passphrase", "short");
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_revoked_device_loses_its_envelopes_and_can_enrol_again() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "value-r").await.unwrap();
    let console = open_console(&dir.path().join("app"), Arc::new(MemoryStore::default())).await;
    console.sign_in(&url, &alice).await.unwrap();
    let snap = console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    let first = snap.break_glass.device.device_id.unwrap();
    assert_eq!(
        snap.break_glass.credentials.len(),
        1,
        "enrolment fetches the envelopes"
    );

    Client::new(&url, Some(&alice))
        .unwrap()
        .revoke_device(&first)
        .await
        .unwrap();
    // Revoking rotates what the device held (the worker does it at once; make sure).
    b.run_due_work().await.unwrap();
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    assert!(
        snap.break_glass.credentials.is_empty(),
        "revoked: no sealed copy stays"
    );
    assert!(
        snap.status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("revoked"),
        "{:?}",
        snap.status.last_error
    );

    // Enrolling again (new keys, new passphrase) makes a new device.
    let snap = console
        .enrol_device(&pass("another long passphrase"), Utc::now())
        .await
        .unwrap();
    let second = snap.break_glass.device.device_id.unwrap();
    assert_ne!(second, first);
    assert_eq!(snap.break_glass.credentials[0].state, SealedState::Valid);
    b.stop().await;
    let e = console
        .unlock_secret(SECRET, "INC-5", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(
        e.code, "wrong_passphrase",
        "the old passphrase is gone with the old keys"
    );
    let r = console
        .unlock_secret(
            SECRET,
            "INC-5",
            &pass("another long passphrase"),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!((r.mode, r.record_seq), (UnlockMode::Offline, Some(1)));
    assert_ne!(
        r.secret.as_str(),
        "value-r",
        "what the revoked device held was rotated; the new device holds the new value"
    );
    assert!(r.version >= 2, "version {}", r.version);
}

#[tokio::test]
async fn a_new_value_reaches_the_device_through_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "value-1").await.unwrap();
    let console = open_console(&dir.path().join("app"), Arc::new(MemoryStore::default())).await;
    console.sign_in(&url, &alice).await.unwrap();
    let v1 = console
        .enrol_device(&pass(PASS), Utc::now())
        .await
        .unwrap()
        .break_glass
        .credentials[0]
        .version;
    let mut changes = console.subscribe();
    tokio::spawn(console.clone().run(std::time::Duration::from_secs(3600)));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    carol.put_secret(SECRET, "value-2").await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(firedoor_client::console::Change::Event(e)) = changes.recv().await {
                if e.kind == "envelopes_changed" {
                    break e;
                }
            }
        }
    })
    .await
    .expect("envelopes_changed arrives");
    assert_eq!(ev.bundle.as_deref(), Some(SECRET));
    // The event's sync has run before the event is passed on.
    let cred = console.snapshot().await.unwrap().break_glass.credentials[0].clone();
    assert!(cred.version > v1, "the new envelope was fetched: {cred:?}");
    b.stop().await;
    let r = console
        .unlock_secret(SECRET, "INC-11", &pass(PASS), Utc::now())
        .await
        .unwrap();
    assert_eq!(r.secret.as_str(), "value-2");
}

/// An enrolment made before the break-glass state moved to the keyring kept the pin
/// and the wrong-passphrase times in cache.db: they are taken over once, kept in the
/// keyring, and removed from the cache (which no longer counts for them).
#[tokio::test]
async fn an_older_enrolment_moves_its_pin_and_failures_to_the_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let appdir = dir.path().join("app");
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    let identity = carol.broker_identity().await.unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let console = open_console(&appdir, secrets.clone()).await;
    console.sign_in(&url, &alice).await.unwrap();
    console.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    b.stop().await;

    // As the older version left it: no state in the keyring, pin and failures in kv.
    let state_account = format!("break-glass-state:alice@{url}");
    assert!(secrets.get(&state_account).unwrap().is_some());
    secrets.delete(&state_account).unwrap();
    let t = Utc::now();
    let failures = serde_json::to_string(&vec![t; 5]).unwrap();
    let db = cache_db(&appdir).await;
    for (k, v) in [
        ("broker_key", identity.signing_key.as_str()),
        ("broker_fingerprint", identity.fingerprint.as_str()),
        ("failed_passphrases", failures.as_str()),
    ] {
        sqlx::query("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)")
            .bind(format!("bg/alice@{url}/{k}"))
            .bind(v)
            .execute(&db)
            .await
            .unwrap();
    }

    let dev = console.snapshot_at(t).await.unwrap().break_glass.device;
    assert_eq!(
        dev.broker_fingerprint.as_deref(),
        Some(identity.fingerprint.as_str())
    );
    assert_eq!(dev.failed_attempts, 5);
    assert!(dev.locked_until.is_some());
    assert!(secrets.get(&state_account).unwrap().is_some());
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM kv WHERE key LIKE '%broker_key' OR key LIKE '%failed_passphrases'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left, 0, "the cache copies are removed");
    let e = console
        .unlock_secret(SECRET, "INC-13", &pass(PASS), t)
        .await
        .unwrap_err();
    assert_eq!(e.code, "locked_out");
}

/// Demo mode keeps secrets in memory: after a restart the enrolment has no keys left.
/// The device then shows as not enrolled (so the app offers to enrol again), an unlock
/// says why, and enrolling again works. Outside demo mode nothing of this applies.
#[tokio::test]
async fn demo_enrolment_lasts_one_run_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["oncall"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    carol.put_secret(SECRET, "demo-value-1").await.unwrap();
    let appdir = dir.path().join("app");
    let run = |demo: bool| {
        let appdir = appdir.clone();
        async move {
            Console::open_with(
                &appdir,
                Arc::new(MemoryStore::default()),
                demo,
                ConsoleOptions {
                    kdf_work_factor: Some(10),
                },
            )
            .await
            .unwrap()
        }
    };

    let first = run(true).await;
    first.sign_in(&url, &alice).await.unwrap();
    first.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    assert!(first.snapshot().await.unwrap().break_glass.device.enrolled);
    drop(first);

    // The next run (a new memory): not enrolled, and an unlock says why.
    let second = run(true).await;
    second.sign_in(&url, &alice).await.unwrap();
    assert!(!second.snapshot().await.unwrap().break_glass.device.enrolled);
    let e = second
        .unlock_secret(SECRET, "INC-1", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_enrolled");
    assert!(
        e.message
            .contains("In demo mode the device keys live in memory only"),
        "{}",
        e.message
    );
    second.enrol_device(&pass(PASS), Utc::now()).await.unwrap();
    assert!(second.snapshot().await.unwrap().break_glass.device.enrolled);
    drop(second);

    // Not the demo: the enrolment stays (its keys would be in the OS keyring).
    let third = run(false).await;
    third.sign_in(&url, &alice).await.unwrap();
    assert!(third.snapshot().await.unwrap().break_glass.device.enrolled);
    let e = third
        .unlock_secret(SECRET, "INC-1", &pass(PASS), Utc::now())
        .await
        .unwrap_err();
    assert!(
        e.message.contains("missing from the memory"),
        "{}",
        e.message
    );
    b.stop().await;
}
