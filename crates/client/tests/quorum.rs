//! Two-person (2-of-n) offline break glass (issue 14: quorum) against a real broker
//! over HTTP, with two users on two devices (two consoles, each with its own SQLite
//! cache and secret store): the request, the release, the refusals (own request,
//! another request, replayed, expired, fewer shares than the quorum), both chains
//! uploaded and verified by the broker, its audit and alerts, and the rotation after.
#![allow(clippy::unwrap_used)]

mod common;
use common::token;
use firedoor_server::{Config, RunningBroker};

use chrono::{Duration, Utc};
use firedoor_client::breakglass::UnlockMode;
use firedoor_client::console::{Console, ConsoleOptions};
use firedoor_client::secrets::MemoryStore;
use firedoor_client::Client;
use secrecy::SecretString;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const SECRET: &str = "vault-root";
const PASS_A: &str = "correct horse battery staple";
const PASS_B: &str = "purple elephant marmalade rocket";
const VALUE: &str = "root-pw-quorum-5d1e";

fn pass(s: &str) -> SecretString {
    SecretString::from(s)
}

/// The demo policy plus a secret that needs two people of `dba`.
async fn broker(dir: &Path, listen: SocketAddr) -> RunningBroker {
    let src = format!(
        "{}\n[secrets.{SECRET}]\ntitle = \"Vault root token\"\nunlock = {{ groups = [\"dba\"], quorum = 2 }}\n\
         alert = {{ groups = [\"security\"] }}\nrotate = {{ integration = \"demo\", role = \"vaultroot\" }}\n",
        firedoor_server::DEMO_POLICY
    );
    let policy = firedoor_core::policy::parse_policy("demo+quorum", &src).unwrap();
    let mut cfg = Config::new(dir, policy);
    cfg.listen = listen;
    firedoor_server::start(cfg).await.unwrap()
}

async fn open_console(appdir: &Path) -> Arc<Console> {
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

async fn chain_rows(appdir: &Path) -> Vec<String> {
    let db = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(appdir.join("cache.db"))
            .busy_timeout(std::time::Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let rows = sqlx::query_scalar("SELECT record FROM unlock_chain ORDER BY seq")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows
}

async fn version(carol: &Client) -> i64 {
    carol
        .secrets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == SECRET)
        .unwrap()
        .version
}

#[tokio::test]
async fn quorum_two_people_unlock_offline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let (app_a, app_b) = (dir.path().join("alice"), dir.path().join("bob"));
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let url = b.url();
    let alice = token(&b, "alice", &["dba"], false).await;
    let bob = token(&b, "bob", &["dba"], false).await;
    // dave may unlock but has no device: he holds no share.
    token(&b, "dave", &["dba"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    let ca = open_console(&app_a).await;
    let cb = open_console(&app_b).await;
    ca.sign_in(&url, &alice).await.unwrap();
    cb.sign_in(&url, &bob).await.unwrap();
    ca.enrol_device(&pass(PASS_A), Utc::now()).await.unwrap();
    carol.put_secret(SECRET, VALUE).await.unwrap();
    // Bob enrols after the value is stored: the broker deals him a share of the same
    // split and reseals alice's envelope so her directory lists his device.
    cb.enrol_device(&pass(PASS_B), Utc::now()).await.unwrap();
    ca.sync().await.unwrap();
    cb.sync().await.unwrap();
    let v1 = version(&carol).await;
    assert!(v1 >= 1);

    // Online, the broker never releases a two-person secret to one person.
    let e = ca
        .unlock_secret(SECRET, "INC-7 vault sealed", &pass(PASS_A), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(e.code, "conflict", "{e:?}");
    assert!(e.message.contains("needs 2 people"), "{}", e.message);

    // The broker goes down.
    b.stop().await;
    let now = Utc::now();
    // One person's envelope alone opens nothing.
    let e = ca
        .unlock_secret(SECRET, "INC-7 vault sealed", &pass(PASS_A), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_incomplete", "{e:?}");

    let req = ca
        .quorum_request(SECRET, "INC-7 vault sealed", &pass(PASS_A), now)
        .await
        .unwrap();
    assert_eq!(req.need, 2);
    assert_eq!(req.version, v1);
    assert_eq!(
        req.co_holders,
        vec!["bob".to_string()],
        "dave has no device"
    );
    assert!(req.text.starts_with("firedoor-unlock-request:v1:"));
    assert!(req.text.len() < 2000, "{} characters", req.text.len());
    let svg = req.qr_svg.as_deref().expect("the request fits a QR code");
    assert!(svg.contains("<svg"), "{}", &svg[..100]);

    // Fewer than m shares open nothing, and write no record.
    let e = ca
        .quorum_complete(&req.request_id, &[], &pass(PASS_A), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_incomplete");
    assert!(e.message.contains("1 of 2 shares"), "{}", e.message);
    assert!(chain_rows(&app_a).await.is_empty());

    // Alice cannot release her own share to herself.
    let e = ca
        .quorum_release(&req.text, &pass(PASS_A), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");

    // Bob sees who, what and why, then releases his share.
    let seen = cb.quorum_inspect(&req.text, now).await.unwrap();
    assert_eq!(seen.requester, "alice");
    assert_eq!(seen.reason, "INC-7 vault sealed");
    assert_eq!(seen.name, SECRET);
    assert_eq!(seen.request_id, req.request_id);
    // A wrong passphrase releases nothing.
    let e = cb
        .quorum_release(&req.text, &pass("not bob's passphrase"), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "wrong_passphrase");
    let rel = cb
        .quorum_release(&req.text, &pass(PASS_B), now)
        .await
        .unwrap();
    assert!(rel.text.starts_with("firedoor-share-release:v1:"));
    assert!(rel.qr_svg.is_some(), "{} characters", rel.text.len());
    assert_eq!(rel.record_seq, 1);
    assert!(!rel.text.contains(VALUE));
    let rows = chain_rows(&app_b).await;
    assert_eq!(
        rows.len(),
        1,
        "bob's share_released record is written first"
    );
    assert!(rows[0].contains("share_released") && !rows[0].contains(VALUE));
    // One release per request from a device.
    let e = cb
        .quorum_release(&req.text, &pass(PASS_B), now)
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");

    // A release for one request does not open another.
    let req2 = ca
        .quorum_request(SECRET, "INC-7 second try", &pass(PASS_A), now)
        .await
        .unwrap();
    let e = ca
        .quorum_complete(
            &req2.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");
    assert!(
        e.message.contains("another unlock request"),
        "{}",
        e.message
    );
    // An expired release is refused.
    let late = now + Duration::minutes(16);
    let e = ca
        .quorum_complete(
            &req.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            late,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");
    assert!(e.message.contains("expired"), "{}", e.message);
    // A damaged blob is refused.
    let e = ca
        .quorum_complete(
            &req.request_id,
            &["firedoor-share-release:v1:AAAA".to_string()],
            &pass(PASS_A),
            now,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");
    assert!(
        chain_rows(&app_a).await.is_empty(),
        "refusals write no record"
    );

    // The right release opens it: the record is written before the secret is shown.
    let t = now + Duration::minutes(1);
    let r = ca
        .quorum_complete(
            &req.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            t,
        )
        .await
        .unwrap();
    assert_eq!(r.secret.as_str(), VALUE);
    assert_eq!(r.mode, UnlockMode::Quorum);
    assert_eq!(r.version, v1);
    assert_eq!(r.record_seq, Some(1));
    assert!(r.message.contains("bob"), "{}", r.message);
    let rows = chain_rows(&app_a).await;
    assert_eq!(rows.len(), 1);
    let rec: firedoor_core::breakglass::SignedRecord = serde_json::from_str(&rows[0]).unwrap();
    let body: firedoor_core::breakglass::UnlockRecord = serde_json::from_str(&rec.body).unwrap();
    assert_eq!(body.mode, "quorum");
    assert_eq!(
        body.quorum.as_ref().unwrap().releasers,
        vec!["bob".to_string()]
    );
    assert_eq!(body.quorum.as_ref().unwrap().request_hash, req.request_id);
    assert!(!rows[0].contains(VALUE));

    // Replayed: the same release again, to the spent request or to the new one.
    let e = ca
        .quorum_complete(
            &req.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            t,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");
    assert!(e.message.contains("already completed"), "{}", e.message);
    let e = ca
        .quorum_complete(
            &req2.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            t,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "quorum_refused");
    let pending = ca.quorum_pending(t).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending
        .iter()
        .any(|p| p.request_id == req.request_id && p.completed && p.have == 2));

    // The broker is back: both chains upload and verify, both records are audited and
    // alerted, and the secret rotates.
    let b = broker(&bdir, addr).await;
    ca.sync().await.unwrap();
    cb.sync().await.unwrap();
    assert!(
        chain_rows(&app_a).await.is_empty(),
        "alice's record was acknowledged"
    );
    assert!(
        chain_rows(&app_b).await.is_empty(),
        "bob's record was acknowledged"
    );
    assert_eq!(ca.status().await.unwrap().last_error, None);
    assert_eq!(cb.status().await.unwrap().last_error, None);
    let audit = carol.audit(0, 5000).await.unwrap();
    let unlock = audit
        .iter()
        .find(|r| r.action == "break_glass_quorum_unlock")
        .expect("the two-person unlock is audited");
    assert_eq!(unlock.actor, "alice");
    let d: serde_json::Value = serde_json::from_str(&unlock.details).unwrap();
    assert_eq!(d["releasers"], serde_json::json!(["bob"]));
    assert_eq!(d["consistent"], serde_json::json!(true));
    assert_eq!(d["request_hash"], serde_json::json!(req.request_id));
    assert_eq!(d["quorum"], serde_json::json!(2));
    let released = audit
        .iter()
        .find(|r| r.action == "break_glass_share_released")
        .expect("the release is audited");
    assert_eq!(released.actor, "bob");
    let d: serde_json::Value = serde_json::from_str(&released.details).unwrap();
    assert_eq!(d["requester"], serde_json::json!("alice"));
    assert_eq!(d["request_hash"], serde_json::json!(req.request_id));
    for r in &audit {
        assert!(!r.details.contains(VALUE), "no secret in the audit");
    }
    let alerts: Vec<_> = b
        .broker
        .events_after("carol", 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "break_glass_unlocked")
        .collect();
    assert!(
        alerts
            .iter()
            .any(|e| e.message.contains("with the shares of bob")),
        "security hears of the unlock: {alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|e| e.message.contains("bob released their share")),
        "and of the release: {alerts:?}"
    );

    // Rotation after: a new version, a new split; the old release opens nothing.
    let mut v2 = v1;
    for _ in 0..100 {
        b.run_due_work().await.unwrap();
        v2 = version(&carol).await;
        if v2 > v1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(v2 > v1, "the unlock rotated the secret");
    ca.sync().await.unwrap();
    cb.sync().await.unwrap();
    b.stop().await;
    let t2 = Utc::now();
    let req3 = ca
        .quorum_request(SECRET, "INC-8", &pass(PASS_A), t2)
        .await
        .unwrap();
    assert_eq!(req3.version, v2);
    let e = ca
        .quorum_complete(
            &req3.request_id,
            std::slice::from_ref(&rel.text),
            &pass(PASS_A),
            t2,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code, "quorum_refused",
        "a release of v{v1} does not open v{v2}"
    );
    let rel3 = cb
        .quorum_release(&req3.text, &pass(PASS_B), t2)
        .await
        .unwrap();
    let r = ca
        .quorum_complete(&req3.request_id, &[rel3.text], &pass(PASS_A), t2)
        .await
        .unwrap();
    assert_eq!(r.version, v2);
    assert_ne!(r.secret.as_str(), VALUE, "rotated");
    assert_eq!(
        r.record_seq,
        Some(2),
        "the chain continues after the upload"
    );
}

/// A drill of a two-person secret: each holder's device proves it opens its own
/// share (the broker derives the same share again to check the proof), nothing is
/// shown or recorded as an unlock, and readiness counts two ready of two required.
/// Alone, before the second person enrolled, readiness says the secret is below its
/// quorum.
#[tokio::test]
async fn quorum_holders_pass_a_drill_with_their_shares() {
    let dir = tempfile::tempdir().unwrap();
    let (app_a, app_b) = (dir.path().join("alice"), dir.path().join("bob"));
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice = token(&b, "alice", &["dba"], false).await;
    let bob = token(&b, "bob", &["dba"], false).await;
    let carol = Client::new(&url, Some(&token(&b, "carol", &["security"], true).await)).unwrap();
    let ca = open_console(&app_a).await;
    let cb = open_console(&app_b).await;
    ca.sign_in(&url, &alice).await.unwrap();
    cb.sign_in(&url, &bob).await.unwrap();
    ca.enrol_device(&pass(PASS_A), Utc::now()).await.unwrap();
    carol.put_secret(SECRET, VALUE).await.unwrap();
    let r = carol.readiness().await.unwrap();
    let s = r.secrets.iter().find(|s| s.name == SECRET).unwrap();
    assert_eq!((s.ready, s.required, s.below), (1, 2, true), "{s:?}");

    cb.enrol_device(&pass(PASS_B), Utc::now()).await.unwrap();
    ca.sync().await.unwrap();
    cb.sync().await.unwrap();
    let drill = carol.start_drill(SECRET).await.unwrap().remove(0);
    assert_eq!(drill.devices.len(), 2);
    for (c, p, appdir) in [(&ca, PASS_A, &app_a), (&cb, PASS_B, &app_b)] {
        let o = c
            .answer_drill(&drill.id, &pass(p), Utc::now())
            .await
            .unwrap();
        assert!(o.message.contains("No secret was shown"), "{}", o.message);
        assert!(!serde_json::to_string(&o).unwrap().contains(VALUE));
        assert!(chain_rows(appdir).await.is_empty(), "no unlock record");
    }
    let r = carol.readiness().await.unwrap();
    let s = r.secrets.iter().find(|s| s.name == SECRET).unwrap();
    assert_eq!((s.ready, s.required, s.below), (2, 2, false), "{s:?}");
    let last = s.last_drill.as_ref().unwrap();
    assert_eq!((last.asked, last.passed, last.failed), (2, 2, 0));
    let audit = carol.audit(0, 10_000).await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "drill_passed").count(),
        2
    );
    assert!(!audit.iter().any(|r| r.details.contains(VALUE)));
}
