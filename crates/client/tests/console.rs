//! The console engine against a real broker over HTTP, with a real SQLite cache file:
//! sign-in, cache-first snapshots, offline outbox replayed exactly once, live events.
#![allow(clippy::unwrap_used)]

mod common;
use common::{broker, token};

use firedoor_client::console::{Change, Console};
use firedoor_client::secrets::{MemoryStore, SecretStore};
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::RequestState;
use std::sync::Arc;
use std::time::Duration;

fn justified(bundle: &str) -> CreateRequest {
    CreateRequest {
        bundle: bundle.into(),
        justification: Some("INC-9".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn sign_in_errors_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    let e = console.sign_in(&b.url(), "fdt_wrong").await.unwrap_err();
    assert_eq!(e.code, "unauthenticated");
    assert_eq!(e.message, "The broker does not accept this token.");
    let e = console
        .sign_in("http://127.0.0.1:9", "fdt_x")
        .await
        .unwrap_err();
    assert_eq!(e.code, "offline");
    assert!(
        e.message
            .contains("Cannot reach a broker at http://127.0.0.1:9"),
        "{}",
        e.message
    );
    // The cause people recognise, without the HTTP client's layers of wording.
    assert!(
        e.message.contains("cannot connect: Connection refused")
            && !e.message.contains("error sending request"),
        "{}",
        e.message
    );
    let e = console.sign_in("not a url", "fdt_x").await.unwrap_err();
    assert_eq!(e.code, "invalid_url");
    assert!(!console.status().await.unwrap().signed_in);
}

#[tokio::test]
async fn offline_cache_and_outbox_replayed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let secrets = Arc::new(MemoryStore::default());
    let console = Console::open(&appdir, secrets.clone(), false)
        .await
        .unwrap();
    let st = console.sign_in(&b.url(), &alice).await.unwrap();
    assert!(st.signed_in && st.online);
    assert_eq!(st.user.as_deref(), Some("alice"));
    assert_eq!(
        secrets
            .get(&format!("api-token:{}", b.url()))
            .unwrap()
            .as_deref(),
        Some(alice.as_str())
    );

    let staging = console
        .request_bundle(CreateRequest {
            bundle: "staging-shell".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!staging.queued);
    let snap = console.snapshot().await.unwrap();
    assert!(snap.bundles.iter().any(|b| b.name == "prod-db-read"));
    assert_eq!(
        snap.grants.len(),
        1,
        "the automatic staging grant is cached"
    );

    // The broker goes away.
    b.stop().await;
    let queued = console
        .request_bundle(justified("prod-db-read"))
        .await
        .unwrap();
    assert!(queued.queued, "{}", queued.message);
    let e = console
        .approve(&firedoor_core::RequestId::new(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, "offline");
    assert!(
        e.message.starts_with("Approvals need the broker"),
        "{}",
        e.message
    );
    let revoke = console.revoke(&snap.grants[0].id).await.unwrap();
    assert!(revoke.queued);
    let snap = console.snapshot().await.unwrap();
    assert!(!snap.status.online);
    assert!(snap.status.offline_since.is_some());
    assert_eq!(snap.outbox.len(), 2, "both actions are visible as queued");
    assert_eq!(snap.grants.len(), 1, "cached grants still show");

    // The app restarts while the broker is still down: it starts from the cache.
    drop(console);
    let console = Console::open(&appdir, secrets.clone(), false)
        .await
        .unwrap();
    let snap = console.snapshot().await.unwrap();
    assert!(
        snap.status.signed_in,
        "session resumed from keyring + cache"
    );
    assert!(!snap.status.online, "still known to be offline");
    assert_eq!(snap.outbox.len(), 2);
    assert!(!snap.bundles.is_empty());

    // The broker is back on the same address.
    let b = broker(&bdir, addr).await;
    assert_eq!(console.replay_outbox().await.unwrap(), 2);
    assert_eq!(
        console.replay_outbox().await.unwrap(),
        0,
        "nothing is sent twice"
    );
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    assert!(snap.outbox.is_empty());
    assert!(snap.status.online);
    let prod: Vec<_> = snap
        .my_requests
        .iter()
        .filter(|r| r.bundle == "prod-db-read")
        .collect();
    assert_eq!(prod.len(), 1, "the queued request was created exactly once");
    assert_eq!(prod[0].state, RequestState::Pending);
    assert!(snap.grants.is_empty(), "the queued revoke went through");

    // No token in the cache file.
    let bytes = std::fs::read(appdir.join("cache.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains(&alice),
        "the token never reaches the cache"
    );
    b.stop().await;
}

#[tokio::test]
async fn replay_after_a_lost_answer_creates_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let appdir = dir.path().join("app");
    let console = Console::open(&appdir, Arc::new(MemoryStore::default()), false)
        .await
        .unwrap();
    console.sign_in(&b.url(), &alice).await.unwrap();
    b.stop().await;
    assert!(
        console
            .request_bundle(justified("prod-db-read"))
            .await
            .unwrap()
            .queued
    );
    let b = broker(&dir.path().join("broker"), addr).await;
    // The broker got the request once already (the app died before hearing back).
    let item = console.snapshot().await.unwrap().outbox.remove(0);
    let cache = firedoor_client::cache::Cache::open(&appdir.join("cache.db"))
        .await
        .unwrap();
    let key = cache.outbox().await.unwrap()[0].idempotency_key.clone();
    assert_eq!(item.kind, "request");
    let direct = firedoor_client::Client::new(&b.url(), Some(&alice)).unwrap();
    direct
        .create_request(&justified("prod-db-read"), Some(&key))
        .await
        .unwrap();
    assert_eq!(console.replay_outbox().await.unwrap(), 1);
    let mine = direct.requests("mine").await.unwrap();
    assert_eq!(mine.len(), 1, "the idempotency key kept it to one request");
    b.stop().await;
}

#[tokio::test]
async fn live_events_arrive_and_update_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let bob = token(&b, "bob", &["sre-leads"], false).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    console.sign_in(&b.url(), &bob).await.unwrap();
    let mut changes = console.subscribe();
    tokio::spawn(console.clone().run(Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (r, _) = firedoor_client::Client::new(&b.url(), Some(&alice))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Change::Event(e)) = changes.recv().await {
                break e;
            }
        }
    })
    .await
    .expect("the event arrives");
    assert_eq!(ev.kind, "request_awaiting_approval");
    let snap = console.snapshot().await.unwrap();
    assert_eq!(snap.approvals.len(), 1, "the inbox was refreshed");
    assert_eq!(snap.approvals[0].id, r.id);
    let res = console.approve(&r.id, None).await.unwrap();
    assert!(
        res.message.contains("Approved alice's request"),
        "{}",
        res.message
    );
    assert!(console.snapshot().await.unwrap().approvals.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn the_event_stream_follows_a_change_of_user() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let bob = token(&b, "bob", &["sre-leads"], false).await;
    let erin = token(&b, "erin", &["oncall"], false).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    console.sign_in(&b.url(), &bob).await.unwrap();
    let mut changes = console.subscribe();
    tokio::spawn(console.clone().run(Duration::from_secs(3600)));
    let as_alice = firedoor_client::Client::new(&b.url(), Some(&alice)).unwrap();
    let next_event = |changes: &mut tokio::sync::broadcast::Receiver<Change>| {
        let mut changes = changes.resubscribe();
        async move {
            tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    if let Ok(Change::Event(e)) = changes.recv().await {
                        break e;
                    }
                }
            })
            .await
            .expect("an event arrives")
        }
    };
    // Bob's stream is live: an event for him arrives (and moves the stream position).
    let waiting = next_event(&mut changes);
    tokio::time::sleep(Duration::from_millis(300)).await;
    as_alice
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    assert_eq!(waiting.await.kind, "request_awaiting_approval");

    // Erin signs in on the same app and asks for access; bob approves. The approval
    // reaches erin on a stream of her own, although no event ended bob's stream first.
    console.sign_out().await.unwrap();
    console.sign_in(&b.url(), &erin).await.unwrap();
    let mut mine = changes.resubscribe();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (r, _) = firedoor_client::Client::new(&b.url(), Some(&erin))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    // (Signing out revoked the app's token: bob approves with another one.)
    let bob_elsewhere = token(&b, "bob", &["sre-leads"], false).await;
    firedoor_client::Client::new(&b.url(), Some(&bob_elsewhere))
        .unwrap()
        .approve(&r.id, None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Change::Event(e)) = mine.recv().await {
                if e.kind == "grant_active" && e.request_id == Some(r.id) {
                    break;
                }
            }
        }
    })
    .await
    .expect("erin hears that her access is active (an event only she receives)");
    b.stop().await;
}

/// Every file under `dir`, concatenated (the cache database and its WAL).
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        } else if p.is_dir() {
            out.extend(all_bytes(&p));
        }
    }
    out
}

/// Attack: signing out of the app only forgot the token on this machine; a copy of
/// it (a backup of the keyring, malware that read it earlier) kept working at the
/// broker. And when the broker was unreachable at sign-out, nothing was ever sent.
#[tokio::test]
async fn sign_out_revokes_the_token_at_the_broker_even_when_offline() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let url = b.url();
    let secrets = Arc::new(MemoryStore::default());
    let console = Console::open(&appdir, secrets.clone(), false)
        .await
        .unwrap();

    // Online: the broker revokes it at once.
    let t1 = token(&b, "alice", &["oncall"], false).await;
    console.sign_in(&url, &t1).await.unwrap();
    let st = console.sign_out().await.unwrap();
    assert!(!st.signed_in);
    let e = firedoor_client::Client::new(&url, Some(&t1))
        .unwrap()
        .me()
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "signed out: the token is dead: {e}");
    assert!(secrets.get(&format!("api-token:{url}")).unwrap().is_none());
    let audit = firedoor_server::audit::records(&b.broker.store, 0, 10_000)
        .await
        .unwrap();
    assert!(
        audit.iter().any(|r| r.action == "token_revoked"
            && r.actor == "alice"
            && r.details.contains("sign_out")),
        "the sign-out is audited"
    );

    // Offline: queued, sent when the broker is back.
    let t2 = token(&b, "alice", &["oncall"], false).await;
    console.sign_in(&url, &t2).await.unwrap();
    b.stop().await;
    let st = console.sign_out().await.unwrap();
    assert!(!st.signed_in);
    let snap = console.snapshot().await.unwrap();
    assert_eq!(snap.outbox.len(), 1, "the revocation waits in the outbox");
    assert_eq!(snap.outbox[0].kind, "revoke_token");
    assert!(
        !contains(&all_bytes(&appdir), t2.as_bytes()),
        "the token is never written to the cache"
    );
    assert!(
        secrets.get(&format!("api-token:{url}")).unwrap().is_none(),
        "the session's token entry is gone"
    );

    let b = broker(&bdir, addr).await;
    let c2 = firedoor_client::Client::new(&url, Some(&t2)).unwrap();
    c2.me().await.expect("not revoked yet: the broker was down");
    let runner = tokio::spawn(console.clone().run(Duration::from_secs(60)));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c2.me().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the queued revocation is sent when the broker is back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c2.me().await.unwrap_err().status(), Some(401));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !console.snapshot().await.unwrap().outbox.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the outbox empties");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !contains(&all_bytes(&appdir), t2.as_bytes()),
        "nor afterwards"
    );
    runner.abort();
    b.stop().await;
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
/// Attack (issue 8 §3): the broker's database is rolled back to an earlier audit head
/// (its end deleted, SQLite's counter reset) and the anchor file deleted too, so the
/// broker starts again. An app that saw the later signed head reports the rollback
/// as a security alert, and keeps reporting it when the broker writes new records
/// over the old sequence numbers.
#[tokio::test]
async fn an_app_reports_a_rolled_back_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    let mut changes = console.subscribe();
    console.sign_in(&b.url(), &alice).await.unwrap();
    console
        .request_bundle(justified("prod-db-read"))
        .await
        .unwrap();
    console.sync().await.unwrap();
    let st = console.status().await.unwrap();
    assert_eq!(st.audit_alert, None, "a log that only grows is fine");
    let seen = firedoor_server::audit::head(&b.broker.store, b.broker.now())
        .await
        .unwrap()
        .unwrap()
        .seq;
    assert!(seen > 3, "{seen}");
    b.stop().await;

    // The attack: back to record 3, the end of a commit (alice's user_added and
    // token_issued; a cut inside a commit leaves an unsigned end the broker itself
    // refuses).
    let db = bdir.join("firedoor.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit WHERE seq > 3")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // The anchor file stops the broker from starting on it...
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = firedoor_server::Config::new(&bdir, policy);
    cfg.listen = addr;
    let refused = firedoor_server::start(cfg).await.err().unwrap();
    assert!(
        refused.to_string().contains("refusing to start"),
        "{refused}"
    );
    // ...so the attacker deletes it too.
    std::fs::remove_file(bdir.join("audit-anchor.log")).unwrap();
    let b = broker(&bdir, addr).await;

    console.sync().await.unwrap();
    let st = console.status().await.unwrap();
    let alert = st.audit_alert.clone().expect("the rollback is reported");
    assert!(
        alert.contains("rolled back") && alert.contains(&format!("record {seen}")),
        "{alert}"
    );
    assert_eq!(st.last_error.as_deref(), Some(alert.as_str()));
    let mut raised = Vec::new();
    while let Ok(c) = changes.try_recv() {
        if let Change::Event(ev) = c {
            if ev.kind == "security_alert" {
                raised.push(ev.message);
            }
        }
    }
    assert_eq!(raised.len(), 1, "one security alert, not one per sync");
    assert_eq!(raised[0], alert);

    // The broker writes on past the seq the app saw: different records there, still
    // reported.
    let mut n = 0;
    while firedoor_server::audit::head(&b.broker.store, b.broker.now())
        .await
        .unwrap()
        .unwrap()
        .seq
        <= seen
    {
        token(&b, &format!("u{n}"), &[], false).await;
        n += 1;
    }
    console.sync().await.unwrap();
    let st = console.status().await.unwrap();
    assert!(
        st.audit_alert
            .as_deref()
            .is_some_and(|a| a.contains("not the one seen signed")),
        "{:?}",
        st.audit_alert
    );
    b.stop().await;
}

/// The app and the `firedoor` command line are two consoles on one data dir and one
/// keyring: a sign-in by one is followed by the other while it runs (its `run` loop),
/// and so is a sign-out; both write the cache at once without "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_on_one_data_dir_follow_each_others_session() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir.path().join("broker"), "127.0.0.1:0".parse().unwrap()).await;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let appdir = dir.path().join("app");
    let keyring: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    let app = Console::open(&appdir, keyring.clone(), false)
        .await
        .unwrap();
    let mut changes = app.subscribe();
    let runner = tokio::spawn(app.clone().run(Duration::from_secs(60)));
    let cli = Console::open(&appdir, keyring.clone(), false)
        .await
        .unwrap();
    cli.sign_in(&b.url(), &alice).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app.status().await.unwrap().signed_in {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running app follows the command line's sign-in"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.recv()).await;
    }
    assert_eq!(app.status().await.unwrap().user.as_deref(), Some("alice"));

    // Both write the shared cache at once: requests from one, syncs from the other.
    let (a, b2) = tokio::join!(
        async {
            for _ in 0..5 {
                cli.request_bundle(justified("prod-db-read")).await?;
            }
            Ok::<_, firedoor_client::console::ConsoleError>(())
        },
        async {
            for _ in 0..5 {
                app.sync().await?;
            }
            Ok::<_, firedoor_client::console::ConsoleError>(())
        }
    );
    a.unwrap();
    b2.unwrap();
    app.sync().await.unwrap();
    let mine = app.snapshot().await.unwrap().my_requests;
    assert_eq!(
        mine.iter()
            .filter(|r| r.state == RequestState::Pending)
            .count(),
        5,
        "the app sees the command line's requests"
    );

    // Signed out from the command line: the running app follows.
    cli.sign_out().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.status().await.unwrap().signed_in {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running app follows the command line's sign-out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runner.abort();
}

/// The events a console hands to the shell (what it notifies), until `until` says
/// stop or `secs` pass.
async fn told_until(
    changes: &mut tokio::sync::broadcast::Receiver<Change>,
    secs: u64,
    until: impl Fn(&firedoor_core::api::EventView) -> bool,
) -> Vec<firedoor_core::api::EventView> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Ok(Change::Event(e)) = changes.recv().await {
                let stop = until(&e);
                seen.push(e);
                if stop {
                    break;
                }
            }
        }
    })
    .await;
    seen
}

/// Issue 13: after a restart the app said "Access active" again for a grant already
/// active. Restarting the demo signs in again at a new URL (its broker listens on a
/// new port), which clears the cache and the stream position, so the broker replays
/// recent events; the console now remembers what it told (in the cache) and tells
/// nothing twice.
#[tokio::test]
async fn a_restart_never_tells_the_same_event_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let bob = token(&b, "bob", &["oncall", "sre-leads"], false).await;
    let app = dir.path().join("app");

    // First run: bob asks for the automatic staging bundle and hears it is active.
    let first = Console::open(&app, Arc::new(MemoryStore::default()), false)
        .await
        .unwrap();
    first.sign_in(&b.url(), &bob).await.unwrap();
    let mut changes = first.subscribe();
    let running = tokio::spawn(first.clone().run(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    first
        .request_bundle(justified("staging-shell"))
        .await
        .unwrap();
    let told = told_until(&mut changes, 10, |e| e.kind == "grant_active").await;
    assert_eq!(
        told.iter().filter(|e| e.kind == "grant_active").count(),
        1,
        "told once in the first run: {told:?}"
    );
    running.abort();
    first.close().await;
    b.stop().await;

    // Second run, as the demo does it: the broker (same database) on another port,
    // and a sign-in there, which starts the event stream from the beginning.
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let second = Console::open(&app, Arc::new(MemoryStore::default()), false)
        .await
        .unwrap();
    second.sign_in(&b.url(), &bob).await.unwrap();
    let mut changes = second.subscribe();
    tokio::spawn(second.clone().run(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Something new happens, so we know the stream is live and everything before
    // it was replayed already.
    let (r, _) = firedoor_client::Client::new(&b.url(), Some(&alice))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    let told = told_until(&mut changes, 10, |e| e.request_id == Some(r.id)).await;
    assert!(
        told.iter()
            .any(|e| e.kind == "request_awaiting_approval" && e.request_id == Some(r.id)),
        "new news is still told: {told:?}"
    );
    assert!(
        !told.iter().any(|e| e.kind == "grant_active"),
        "'Access active' is not told again after the restart: {told:?}"
    );
    b.stop().await;
}

/// A request queued offline and cancelled before the broker is back is never sent:
/// the cancel is on disk (it survives a restart), the replay sends only the rest, and
/// what was sent is told in words.
#[tokio::test]
async fn a_cancelled_queued_request_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let appdir = dir.path().join("app");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let secrets = Arc::new(MemoryStore::default());
    let console = Console::open(&appdir, secrets.clone(), false)
        .await
        .unwrap();
    console.sign_in(&b.url(), &alice).await.unwrap();
    console.sync().await.unwrap();
    b.stop().await;

    let first = console
        .request_bundle(justified("prod-db-read"))
        .await
        .unwrap();
    assert!(first.queued);
    // One sentence, no "X: Y: Z" chain of prefixes.
    assert_eq!(
        first.message,
        "Request Prod DB read is queued and will be sent when the broker is back (it cannot be reached now)."
    );
    let kept = console
        .request_bundle(CreateRequest {
            bundle: "staging-shell".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(kept.queued);
    let outbox = console.snapshot().await.unwrap().outbox;
    assert_eq!(outbox.len(), 2);
    let doomed = outbox
        .iter()
        .find(|o| o.bundle.as_deref() == Some("prod-db-read"))
        .unwrap()
        .id
        .clone();

    let done = console.cancel_queued(&doomed).await.unwrap();
    assert!(!done.queued);
    assert_eq!(
        done.message,
        "“Request Prod DB read” is cancelled and will never be sent to the broker."
    );
    let again = console.cancel_queued(&doomed).await.unwrap_err();
    assert_eq!(again.code, "not_found");
    assert!(
        again.message.contains("no longer waiting"),
        "{}",
        again.message
    );

    // The app restarts before the broker is back: the cancel held.
    drop(console);
    let console = Console::open(&appdir, secrets.clone(), false)
        .await
        .unwrap();
    let outbox = console.snapshot().await.unwrap().outbox;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].bundle.as_deref(), Some("staging-shell"));

    let b = broker(&bdir, addr).await;
    let mut changes = console.subscribe();
    assert_eq!(console.replay_outbox().await.unwrap(), 1);
    assert_eq!(console.replay_outbox().await.unwrap(), 0);
    console.sync().await.unwrap();

    // The broker never heard of the cancelled request.
    let direct = firedoor_client::Client::new(&b.url(), Some(&alice)).unwrap();
    let mine = direct.requests("mine").await.unwrap();
    assert!(
        mine.iter().all(|r| r.bundle != "prod-db-read"),
        "the cancelled request was sent: {mine:?}"
    );
    assert_eq!(
        mine.iter().filter(|r| r.bundle == "staging-shell").count(),
        1
    );

    // What was sent is told in words, in the snapshot and to the shell.
    let snap = console.snapshot().await.unwrap();
    assert!(snap.outbox.is_empty());
    assert_eq!(snap.replayed.len(), 1);
    let r = &snap.replayed[0];
    assert_eq!(r.summary, "Request Staging shell");
    assert!(r.ok);
    assert!(
        r.outcome.starts_with("sent · approved, access is"),
        "{}",
        r.outcome
    );
    let told = loop {
        match tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("a change")
            .unwrap()
        {
            Change::OutboxReplayed { summary, outcome } => break (summary, outcome),
            _ => continue,
        }
    };
    assert_eq!(told.0, "Request Staging shell");
    assert_eq!(told.1, r.outcome);
    b.stop().await;
}

/// A queued request that waits for approval is told with who can approve it.
#[tokio::test]
async fn a_replayed_request_says_who_can_approve_it() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("broker");
    let b = broker(&bdir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = b.addr;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    console.sign_in(&b.url(), &alice).await.unwrap();
    b.stop().await;
    assert!(
        console
            .request_bundle(justified("prod-db-read"))
            .await
            .unwrap()
            .queued
    );
    let b = broker(&bdir, addr).await;
    assert_eq!(console.replay_outbox().await.unwrap(), 1);
    let snap = console.snapshot().await.unwrap();
    assert_eq!(
        snap.replayed[0].outcome,
        "sent · waiting for 1 approval (sre-leads or security can approve)"
    );
    b.stop().await;
}

/// A periodic sync that brings the same list writes nothing (an idle app does not
/// rewrite its cache every minute); a changed one replaces it whole.
#[tokio::test]
async fn an_unchanged_list_is_not_rewritten() {
    use firedoor_client::cache::{Cache, List};
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache.db")).await.unwrap();
    let id = |s: &String| s.clone();
    let a = vec!["one".to_string(), "two".to_string()];
    assert!(cache.put_list(List::Grants, &a, id).await.unwrap());
    assert!(!cache.put_list(List::Grants, &a, id).await.unwrap());
    let reordered = vec!["two".to_string(), "one".to_string()];
    assert!(cache.put_list(List::Grants, &reordered, id).await.unwrap());
    let stored: Vec<String> = cache.list(List::Grants).await.unwrap();
    assert_eq!(stored, reordered);
    assert!(cache
        .put_list(List::Grants, &Vec::<String>::new(), id)
        .await
        .unwrap());
    assert!(!cache
        .put_list(List::Grants, &Vec::<String>::new(), id)
        .await
        .unwrap());
    assert!(cache.list::<String>(List::Grants).await.unwrap().is_empty());
}
