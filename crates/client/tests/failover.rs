//! Several broker URLs (replicas of one broker) against real brokers: two brokers
//! started in-process on one SQLite database and one broker key file (as replicas on
//! one PostgreSQL database share the database and the key), one stopped while the
//! client talks to it; and a third broker with its own key, which must be refused,
//! not failed over to.
#![allow(clippy::unwrap_used)]

mod common;
use common::token;

use firedoor_client::console::Console;
use firedoor_client::secrets::{MemoryStore, SecretStore};
use firedoor_client::{Client, ClientError, Created};
use firedoor_core::api::{CreateRequest, EventView};
use firedoor_server::{Config, RunningBroker};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn justified(bundle: &str) -> CreateRequest {
    CreateRequest {
        bundle: bundle.into(),
        justification: Some("INC-77 failover".into()),
        ..Default::default()
    }
}

/// A broker on `data_dir` with the key file `key_file` and its own anchor file.
async fn replica(data_dir: &Path, key_file: &Path, anchor: &Path) -> RunningBroker {
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = Config::new(data_dir, policy);
    cfg.key_file = Some(key_file.to_path_buf());
    cfg.audit_anchor = Some(anchor.to_path_buf());
    firedoor_server::start(cfg).await.unwrap()
}

/// Two replicas: the same database and the same key file.
async fn two_replicas(dir: &Path) -> (RunningBroker, RunningBroker) {
    let data = dir.join("shared-db");
    let key = dir.join("broker.key");
    let a = replica(&data, &key, &dir.join("anchor-a.log")).await;
    let b = replica(&data, &key, &dir.join("anchor-b.log")).await;
    (a, b)
}

/// The next event, within 5 s.
async fn next_event(s: &mut firedoor_client::EventStream) -> EventView {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("a readable event")
}

#[tokio::test]
async fn requests_and_the_event_stream_continue_on_the_next_url() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path()).await;
    let (url_a, url_b) = (a.url(), b.url());
    let alice = token(&a, "alice", &["oncall"], false).await;
    let bob = token(&a, "bob", &["sre-leads"], false).await;

    // Bob, the approver, listens through [A, B]; it starts on A.
    let bobc = Client::with_urls(&[&url_a, &url_b], Some(&bob)).unwrap();
    assert_eq!(bobc.urls(), [url_a.clone(), url_b.clone()]);
    assert_eq!(bobc.current_url(), url_a);
    assert_eq!(bobc.me().await.unwrap().name, "bob");
    assert_eq!(bobc.current_url(), url_a, "A answers: it stays in use");
    assert!(
        bobc.broker_key().is_some(),
        "with several URLs the client learns the broker key from the first that answers"
    );
    let mut stream = bobc.events(None).await.unwrap();
    let alice_on_a = Client::new(&url_a, Some(&alice)).unwrap();
    let (r1, _) = alice_on_a
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    let ev = loop {
        let ev = next_event(&mut stream).await;
        if ev.request_id.as_ref() == Some(&r1.id) {
            break ev;
        }
    };
    assert_eq!(ev.kind, "request_awaiting_approval");
    let last_seen = ev.id;

    // A goes away: its stream ends.
    a.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream of a stopped broker ends");
    assert!(
        !matches!(end, Some(Ok(_))),
        "no more events from A: {end:?}"
    );

    // Meanwhile (bob is disconnected) alice asks again, through B.
    let alice_on_b = Client::new(&url_b, Some(&alice)).unwrap();
    let (r2, _) = alice_on_b
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();

    // Bob's stream reconnects with Last-Event-ID: A refuses the connection, B resumes
    // right after the last event seen, so the one made while disconnected arrives and
    // nothing seen before comes again.
    let t = std::time::Instant::now();
    let mut stream = bobc.events(Some(last_seen)).await.unwrap();
    assert_eq!(bobc.current_url(), url_b, "failed over to B");
    let ev = next_event(&mut stream).await;
    let took = t.elapsed();
    eprintln!("measured: event stream reconnected on B and the missed event arrived in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "a refused connection fails over at once, not after a timeout: {took:?}"
    );
    assert!(ev.id > last_seen, "resumed after {last_seen}: {ev:?}");
    assert_eq!(ev.request_id.as_ref(), Some(&r2.id), "{ev:?}");
    assert_eq!(ev.kind, "request_awaiting_approval");

    // Requests continue on B, and it stays in use (sticky): no more trips to A.
    let awaiting = bobc.requests("awaiting_me").await.unwrap();
    assert!(awaiting.iter().any(|r| r.id == r2.id), "{awaiting:?}");
    let approved = bobc.approve(&r2.id, Some("ok")).await.unwrap();
    assert_eq!(approved.id, r2.id);
    assert_eq!(bobc.current_url(), url_b);
    // The live stream on B carries what happens next.
    let ev = loop {
        let ev = next_event(&mut stream).await;
        if ev.request_id.as_ref() == Some(&r1.id) || ev.request_id.as_ref() == Some(&r2.id) {
            break ev;
        }
    };
    assert_eq!(ev.request_id.as_ref(), Some(&r2.id), "{ev:?}");

    // A fresh client starts on A (down). A request with an idempotency key is safe to
    // send again: it fails over, and a replay of it (through either URL) gives the
    // first result.
    let alicec = Client::with_urls(&[&url_a, &url_b], Some(&alice)).unwrap();
    let (r3, created) = alicec
        .create_request(&justified("prod-db-read"), Some("fdo_failover_1"))
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert_eq!(alicec.current_url(), url_b);
    let (again, created) = alicec
        .create_request(&justified("prod-db-read"), Some("fdo_failover_1"))
        .await
        .unwrap();
    assert_eq!((again.id, created), (r3.id, Created::Replayed));

    // A non-idempotent call (cancel) is failed over too when the connection to A is
    // refused: it never reached a broker.
    let alice_fresh = Client::with_urls(&[&url_a, &url_b], Some(&alice)).unwrap();
    let cancelled = alice_fresh.cancel(&r3.id).await.unwrap();
    assert_eq!(cancelled.state.as_str(), "cancelled");
    assert_eq!(alice_fresh.current_url(), url_b);
    b.stop().await;
}

/// A loopback listener that answers every connection with `answer` (or, with
/// `None`, reads the request and closes the connection without answering). Returns
/// its URL and the number of POST requests it saw.
async fn fake_broker(
    answer: Option<&'static str>,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                // Read the head and the body (bodies here are small).
                loop {
                    let Ok(n) = c.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..p]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= p + 4 + len {
                            break;
                        }
                    }
                }
                if got.starts_with(b"POST ") {
                    s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if let Some(a) = answer {
                    let _ = c.write_all(a.as_bytes()).await;
                }
                let _ = c.shutdown().await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn only_requests_safe_to_repeat_are_sent_again_after_they_may_have_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::broker(&dir.path().join("b"), "127.0.0.1:0".parse().unwrap()).await;
    let alice = token(&b, "alice", &["oncall"], false).await;
    let bob = token(&b, "bob", &["sre-leads"], false).await;
    let (r, _) = Client::new(&b.url(), Some(&alice))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();

    // A URL whose connection breaks after the request was sent: a GET goes on to B,
    // an approval (not idempotent) does not: it may have been approved there.
    let (dropper, seen) = fake_broker(None).await;
    let c = Client::with_urls(&[&dropper, &b.url()], Some(&bob)).unwrap();
    let e = c.approve(&r.id, None).await.unwrap_err();
    assert!(matches!(e, ClientError::Network(_)), "{e:?}");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(c.current_url(), dropper, "not failed over");
    let at_b = Client::new(&b.url(), Some(&alice))
        .unwrap()
        .request(&r.id)
        .await
        .unwrap();
    assert_eq!(at_b.state.as_str(), "pending", "B never got the approval");
    assert_eq!(c.me().await.unwrap().name, "bob", "a GET fails over");
    assert_eq!(c.current_url(), b.url());

    // An answer that breaks off half way: the broker may have acted. A GET is asked
    // again at B; an approval is not.
    let (halfway, seen) = fake_broker(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"id\":",
    ))
    .await;
    let c = Client::with_urls(&[&halfway, &b.url()], Some(&bob)).unwrap();
    let e = c.approve(&r.id, None).await.unwrap_err();
    assert!(matches!(e, ClientError::Network(_)), "{e:?}");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent once"
    );
    let at_b = Client::new(&b.url(), Some(&alice))
        .unwrap()
        .request(&r.id)
        .await
        .unwrap();
    assert_eq!(at_b.state.as_str(), "pending", "B never got the approval");
    let c = Client::with_urls(&[&halfway, &b.url()], Some(&bob)).unwrap();
    assert_eq!(c.me().await.unwrap().name, "bob", "a GET is asked again");
    assert_eq!(c.current_url(), b.url());
    assert!(
        c.broker_key().is_some(),
        "the key is learnt from B, the first URL that answered readably"
    );

    // A proxy in front answering 503: GETs and keyed requests go on; a POST without
    // an idempotency key gets the 503 (the proxy may have passed it on).
    let (busy, _) = fake_broker(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 44\r\nconnection: close\r\n\r\n{\"code\":\"unavailable\",\"message\":\"try again\"}",
    ))
    .await;
    let c = Client::with_urls(&[&busy, &b.url()], Some(&alice)).unwrap();
    let e = c
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503), "{e:?}");
    assert_eq!(c.current_url(), busy);
    let (_, created) = c
        .create_request(&justified("prod-db-read"), Some("fdo_busy_1"))
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert_eq!(c.current_url(), b.url());
    b.stop().await;
}

/// Gives `user` on broker `to` the same token as on `from` (an attacker who learnt it,
/// or simply a broker that accepts anything).
/// `to` runs on the SQLite file of its data directory `to_dir` (written to here
/// as another process would).
async fn same_token_on(to: &RunningBroker, to_dir: &Path, user: &str, token_value: &str) {
    token(to, user, &["oncall"], false).await;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        firedoor_server::db_path(to_dir).display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE tokens SET hash = ? WHERE user_name = ?")
        .bind(firedoor_server::auth::hash_token(token_value))
        .bind(user)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_url_presenting_another_broker_key_is_refused_not_failed_over_to() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::broker(&dir.path().join("a"), "127.0.0.1:0".parse().unwrap()).await;
    // Another broker, with its own key, listed as if it were a replica.
    let evil = common::broker(&dir.path().join("evil"), "127.0.0.1:0".parse().unwrap()).await;
    let url_a = a.url();
    let alice = token(&a, "alice", &["oncall"], false).await;
    same_token_on(&evil, &dir.path().join("evil"), "alice", &alice).await;
    let key_a = Client::new(&a.url(), Some(&alice))
        .unwrap()
        .broker_identity()
        .await
        .unwrap();

    // Signing in with both while both answer: refused at once, naming the URL.
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    let e = console
        .sign_in(&format!("{}\n{}", a.url(), evil.url()), &alice)
        .await
        .unwrap_err();
    assert_eq!(e.code, "wrong_broker", "{e:?}");
    assert!(e.message.contains(&evil.url()), "{}", e.message);
    assert!(!console.status().await.unwrap().signed_in);

    // A client on [A, evil] (evil did not answer at sign-in, say): A answers first.
    let c = Client::with_urls(&[&a.url(), &evil.url()], Some(&alice)).unwrap();
    assert_eq!(c.me().await.unwrap().name, "alice");
    assert_eq!(c.broker_key().as_deref(), Some(key_a.signing_key.as_str()));
    a.stop().await;
    // A is gone: the next URL presents another key. That is a hard error, for reads
    // and writes alike, and the client does not move there.
    let e = c.me().await.unwrap_err();
    match &e {
        ClientError::WrongBroker { url, message } => {
            assert_eq!(url, &evil.url());
            assert!(message.contains("different broker"), "{message}");
            assert!(
                message.contains(&key_a.fingerprint),
                "names this broker's fingerprint to compare: {message}"
            );
        }
        other => panic!("expected WrongBroker, got {other:?}"),
    }
    let e = c
        .create_request(&justified("prod-db-read"), Some("fdo_evil_1"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::WrongBroker { .. }), "{e:?}");
    assert!(c.events(None).await.is_err());
    assert_eq!(c.current_url(), url_a, "never in use");
    let evil_requests = Client::new(&evil.url(), Some(&alice))
        .unwrap()
        .requests("mine")
        .await
        .unwrap();
    assert!(
        evil_requests.is_empty(),
        "nothing was sent there: {evil_requests:?}"
    );
    evil.stop().await;
}

#[tokio::test]
async fn the_console_fails_over_and_keeps_keyring_names_of_the_primary_url() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path()).await;
    let (url_a, url_b) = (a.url(), b.url());
    let bob = token(&a, "bob", &["sre-leads"], false).await;
    let store = Arc::new(MemoryStore::default());
    let app = dir.path().join("app");

    // An existing user signed in with A alone (as before several URLs).
    let console = Console::open(&app, store.clone(), false).await.unwrap();
    console.sign_in(&url_a, &bob).await.unwrap();
    let pinned = store
        .get(&format!("break-glass-state:bob@{url_a}"))
        .unwrap()
        .expect("the break-glass state is kept under the primary URL");
    assert!(store.get(&format!("api-token:{url_a}")).unwrap().is_some());
    console.close().await;
    drop(console);

    // Adds B after A: the same entries, the pin unchanged.
    let console = Console::open(&app, store.clone(), false).await.unwrap();
    let st = console
        .sign_in(&format!("{url_a}, {url_b}/"), &bob)
        .await
        .unwrap();
    assert_eq!(st.broker_url.as_deref(), Some(url_a.as_str()));
    assert_eq!(st.broker_urls, [url_a.clone(), url_b.clone()]);
    assert_eq!(st.broker_url_in_use.as_deref(), Some(url_a.as_str()));
    assert_eq!(
        store
            .get(&format!("break-glass-state:bob@{url_a}"))
            .unwrap(),
        Some(pinned.clone())
    );
    assert!(store.get(&format!("api-token:{url_b}")).unwrap().is_none());
    console.close().await;
    drop(console);

    // A stops; the app restarts from its cache and fails over to B.
    a.stop().await;
    let console = Console::open(&app, store.clone(), false).await.unwrap();
    let st = console.status().await.unwrap();
    assert!(st.signed_in);
    assert_eq!(
        st.broker_urls,
        [url_a.clone(), url_b.clone()],
        "kept in the cache"
    );
    console.sync().await.unwrap();
    let st = console.status().await.unwrap();
    assert!(st.online, "{st:?}");
    assert_eq!(st.broker_url_in_use.as_deref(), Some(url_b.as_str()));
    assert_eq!(st.broker_url.as_deref(), Some(url_a.as_str()));
    assert!(
        !console.snapshot().await.unwrap().bundles.is_empty(),
        "synced from B"
    );
    console.close().await;
    drop(console);

    // The next start begins where it left off (B), not with A.
    let console = Console::open(&app, store.clone(), false).await.unwrap();
    assert_eq!(
        console.status().await.unwrap().broker_url_in_use.as_deref(),
        Some(url_b.as_str())
    );
    b.stop().await;
}

/// The app's next live event about request `id`, within `secs`.
async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<firedoor_client::console::Change>,
    id: &firedoor_core::RequestId,
    secs: u64,
) -> EventView {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Ok(firedoor_client::console::Change::Event(e)) = rx.recv().await {
                if e.request_id.as_ref() == Some(id) {
                    break e;
                }
            }
        }
    })
    .await
    .expect("the event reaches the app")
}

#[tokio::test]
async fn the_running_app_follows_the_broker_to_the_next_url_without_missing_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path()).await;
    let (url_a, url_b) = (a.url(), b.url());
    let alice = token(&a, "alice", &["oncall"], false).await;
    let bob = token(&a, "bob", &["sre-leads"], false).await;
    let console = Console::open(
        &dir.path().join("app"),
        Arc::new(MemoryStore::default()),
        false,
    )
    .await
    .unwrap();
    console
        .sign_in(&format!("{url_a}\n{url_b}"), &bob)
        .await
        .unwrap();
    let mut changes = console.subscribe();
    let mut connectivity = console.subscribe();
    tokio::spawn(console.clone().run(Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (r1, _) = Client::new(&url_a, Some(&alice))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    wait_event(&mut changes, &r1.id, 10).await;
    assert_eq!(
        console.status().await.unwrap().broker_url_in_use.as_deref(),
        Some(url_a.as_str())
    );

    // A stops; a teammate's request arrives through B meanwhile. The app reconnects to
    // B by itself, resumes after the last event and shows it.
    a.stop().await;
    let (r2, _) = Client::new(&url_b, Some(&alice))
        .unwrap()
        .create_request(&justified("prod-db-read"), None)
        .await
        .unwrap();
    let ev = wait_event(&mut changes, &r2.id, 15).await;
    assert_eq!(ev.kind, "request_awaiting_approval");
    let st = console.status().await.unwrap();
    assert!(st.online, "{st:?}");
    assert_eq!(st.broker_url_in_use.as_deref(), Some(url_b.as_str()));
    let snap = console.snapshot().await.unwrap();
    assert!(
        snap.approvals.iter().any(|r| r.id == r2.id),
        "the inbox was refreshed from B"
    );
    // The failover did not flash "offline" (no offline notification, no banner).
    loop {
        use tokio::sync::broadcast::error::TryRecvError;
        match connectivity.try_recv() {
            Ok(firedoor_client::console::Change::Connectivity { online }) => {
                assert!(online, "the app never went offline while B answered")
            }
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    // Actions go to B.
    console.approve(&r2.id, None).await.unwrap();
    b.stop().await;
}
