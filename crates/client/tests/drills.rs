//! issue 14: a break-glass drill answered by two real consoles (two users, two
//! enrolled devices, real SQLite caches, the in-memory secret store) against a real
//! broker over HTTP: the passphrase re-auth and its lock-out count, the proof passes
//! without the secret ever reaching the caller, no unlock record is written, and the
//! broker's readiness shows who passed.
#![allow(clippy::unwrap_used)]

mod common;
use common::{broker, token};

use chrono::Utc;
use firedoor_client::console::{Console, ConsoleOptions};
use firedoor_client::secrets::MemoryStore;
use firedoor_client::Client;
use secrecy::SecretString;
use sqlx::SqlitePool;
use std::path::Path;
use std::sync::Arc;

const SECRET: &str = "payments-db-breakglass";
const PASS: &str = "correct horse battery staple";
const VALUE: &str = "pw-drill-3c5e7a91";

async fn console(appdir: &Path) -> Arc<Console> {
    Console::open_with(
        appdir,
        Arc::new(MemoryStore::default()),
        false,
        ConsoleOptions {
            kdf_work_factor: Some(10),
        },
    )
    .await
    .unwrap()
}

async fn chain_len(appdir: &Path) -> i64 {
    let db = SqlitePool::connect(&format!("sqlite://{}", appdir.join("cache.db").display()))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM unlock_chain")
        .fetch_one(&db)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_people_answer_a_drill_from_their_consoles_and_readiness_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    let mut consoles = Vec::new();
    for (user, groups) in [
        ("alice", vec!["oncall"]),
        ("bob", vec!["oncall", "sre-leads"]),
    ] {
        let appdir = dir.path().join(user);
        let c = console(&appdir).await;
        c.sign_in(&url, &token(&b, user, &groups, false).await)
            .await
            .unwrap();
        c.enrol_device(&SecretString::from(PASS), Utc::now())
            .await
            .unwrap();
        consoles.push((user, appdir, c));
    }
    carol.put_secret(SECRET, VALUE).await.unwrap();
    for (_, _, c) in &consoles {
        c.sync().await.unwrap();
    }
    let drill = carol.start_drill(SECRET).await.unwrap().remove(0);
    assert_eq!(drill.devices.len(), 2);

    for (user, appdir, c) in &consoles {
        let pending = c.pending_drills().await.unwrap();
        assert_eq!(pending.len(), 1, "{user}");
        assert_eq!(pending[0].id, drill.id);
        // A wrong passphrase counts towards the lock-out, like an unlock's.
        let e = c
            .answer_drill(
                &drill.id,
                &SecretString::from("wrong passphrase here"),
                Utc::now(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "wrong_passphrase", "{e:?}");
        let snap = c.snapshot().await.unwrap();
        assert_eq!(snap.break_glass.device.failed_attempts, 1);

        let o = c
            .answer_drill(&drill.id, &SecretString::from(PASS), Utc::now())
            .await
            .unwrap();
        assert_eq!((o.drill_id.as_str(), o.version), (drill.id.as_str(), 1));
        assert!(o.message.contains("No secret was shown"), "{}", o.message);
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains(VALUE), "the outcome never holds the secret");
        assert!(c.pending_drills().await.unwrap().is_empty());
        assert_eq!(
            chain_len(appdir).await,
            0,
            "a drill writes no unlock record"
        );
        let e = c
            .answer_drill(&drill.id, &SecretString::from(PASS), Utc::now())
            .await
            .unwrap_err();
        assert_eq!(e.code, "not_found", "answered already: {e:?}");
    }

    let r = carol.readiness().await.unwrap();
    let s = r.secrets.iter().find(|s| s.name == SECRET).unwrap();
    assert_eq!((s.ready, s.required, s.below), (2, 1, false));
    let passed: Vec<&str> = s
        .holders
        .iter()
        .filter(|h| {
            h.devices
                .iter()
                .any(|d| d.drill == "passed" && d.passed_at.is_some())
        })
        .map(|h| h.user.as_str())
        .collect();
    assert_eq!(passed, ["alice", "bob"]);
    let last = s.last_drill.as_ref().unwrap();
    assert_eq!((last.asked, last.passed, last.failed), (2, 2, 0));
    // The drill is not a use: nothing to rotate, no unlock alert.
    let secrets = carol.secrets().await.unwrap();
    let v = secrets.iter().find(|s| s.name == SECRET).unwrap();
    assert_eq!((v.version, v.rotation_due_at), (1, None));
    let audit = carol.audit(0, 10_000).await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "drill_passed").count(),
        2
    );
    assert!(!audit
        .iter()
        .any(|r| r.action.starts_with("break_glass_") || r.details.contains(VALUE)));
}
