//! One broker becomes many: the PostgreSQL store shared by several `firedoor-server`
//! processes, and moving a team's SQLite store onto it. Real parts throughout: the
//! broker binary, a PostgreSQL server started here, and the typed client over HTTP.

#![allow(clippy::unwrap_used)]

use firedoor_client::Client;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::{GrantState, RequestState};
use firedoor_server::audit::Actor;
use firedoor_server::auth;
use firedoor_server::store::DatabaseUrl;
use firedoor_server::Config;
use firedoor_testkit::PgServer;
use secrecy::ExposeSecret;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_firedoor-server");

fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn policy() -> firedoor_core::policy::Policy {
    firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap()
}

async fn user(b: &firedoor_server::RunningBroker, name: &str, groups: &[&str]) -> String {
    let g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
    auth::add_user(
        &b.broker.store,
        &Actor::System,
        name,
        &g,
        false,
        b.broker.now(),
    )
    .await
    .unwrap()
    .token
    .expose_secret()
    .to_string()
}

/// A request for prod-db-read, approved by bob; returns the request.
async fn approved_read(alice: &Client, bob: &Client, key: &str) -> firedoor_core::api::RequestView {
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "prod-db-read".into(),
                justification: Some("INC-1 checkout errors".into()),
                ..Default::default()
            },
            Some(key),
        )
        .await
        .unwrap();
    bob.approve(&r.id, Some("ok")).await.unwrap()
}

/// `store copy` moves a team's SQLite store to PostgreSQL: the audit chain verifies
/// on the copy with the same key and anchor, tokens still sign in, requests and
/// grants are there in their states, and a broker on the copy carries on (new
/// records chain onto the copied head). A second copy into the now used database is
/// refused, and a bad URL is a clear error naming no password.
#[tokio::test]
async fn store_copy_moves_a_team_from_sqlite_to_postgres() {
    let pg = PgServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // A team on SQLite: a grant revoked, one live.
    let b = firedoor_server::start(Config::new(&data, policy()))
        .await
        .unwrap();
    let alice_t = user(&b, "alice", &["oncall"]).await;
    let bob_t = user(&b, "bob", &["oncall", "sre-leads"]).await;
    let alice = Client::new(&b.url(), Some(&alice_t)).unwrap();
    let bob = Client::new(&b.url(), Some(&bob_t)).unwrap();
    let first = approved_read(&alice, &bob, "k1").await;
    let revoked = alice
        .revoke(first.grant_id.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    let live = approved_read(&alice, &bob, "k2").await;
    b.stop().await;

    let url = pg.fresh_database();
    let sqlite = format!("sqlite://{}", data.join("firedoor.db").display());
    let out = cli(&data, &["store", "copy", "--from", &sqlite, "--to", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("audit:") && said.contains("grants: 2 rows"),
        "{said}"
    );
    assert!(
        !said.contains(&pg.admin_password),
        "no password in the output: {said}"
    );

    let v = cli(&data, &["--database", &url, "audit", "verify"]);
    assert!(
        v.status.success(),
        "the copied chain verifies: {}",
        text(&v)
    );
    assert!(text(&v).contains("audit log ok"), "{}", text(&v));

    // Into a store that is not empty: refused.
    let again = cli(&data, &["store", "copy", "--from", &sqlite, "--to", &url]);
    assert!(!again.status.success());
    assert!(text(&again).contains("not empty"), "{}", text(&again));

    // A broker on the copy: same people, same grants, and it carries on.
    let mut cfg = Config::new(&data, policy());
    cfg.database = Some(DatabaseUrl::parse(&url).unwrap());
    let b = firedoor_server::start(cfg).await.unwrap();
    let alice = Client::new(&b.url(), Some(&alice_t)).unwrap();
    let bob = Client::new(&b.url(), Some(&bob_t)).unwrap();
    let g = alice.grant(live.grant_id.as_ref().unwrap()).await.unwrap();
    assert_eq!(g.state, GrantState::Active);
    let old = alice.grant(first.grant_id.as_ref().unwrap()).await.unwrap();
    assert_eq!(old.state, GrantState::Revoked);
    let third = approved_read(&alice, &bob, "k3").await;
    assert!(
        matches!(third.state, RequestState::Approved | RequestState::Active),
        "{:?}",
        third.state
    );
    // The idempotency key of a copied request still answers with that request.
    let (same, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "prod-db-read".into(),
                justification: Some("INC-1 checkout errors".into()),
                ..Default::default()
            },
            Some("k2"),
        )
        .await
        .unwrap();
    assert_eq!(same.id, live.id);
    b.stop().await;
    let v = cli(&data, &["--database", &url, "audit", "verify"]);
    assert!(v.status.success(), "{}", text(&v));

    // A URL that is neither: a clear error, no password echoed.
    let bad = cli(
        &data,
        &[
            "store",
            "copy",
            "--from",
            "mysql://u:hunter2@h/db",
            "--to",
            &url,
        ],
    );
    assert!(!bad.status.success());
    let t = text(&bad);
    assert!(t.contains("unsupported database URL"), "{t}");
    assert!(!t.contains("hunter2"), "{t}");
}

// ---------------------------------------------------------------------------------
// Three replicas behind HAProxy.

use firedoor_client::ClientError;
use firedoor_core::api::EventView;
use firedoor_core::{GrantId, RequestId};
use firedoor_testkit::haproxy::Haproxy;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPLICA_POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "FIREDOOR_PG_URL"
permissions = { read = ["app_read"] }

[bundles.app-read]
resources = [{ integration = "pg", resource = "app", permission = "read" }]

[flows.oncall]
bundles = ["app-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["leads"] }
approvals = 1
default_duration = "1h"
max_duration = "2h"
"#;

struct Replica {
    child: Option<Child>,
    data: PathBuf,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Cluster {
    store_url: String,
    target_url: String,
    key: PathBuf,
    policy: PathBuf,
}

impl Cluster {
    fn cli(&self, data: &Path, args: &[&str]) -> Output {
        let mut all = vec!["--database", &self.store_url, "--key-file"];
        let key = self.key.to_str().unwrap();
        all.push(key);
        all.extend_from_slice(args);
        cli(data, &all)
    }

    fn spawn(&self, r: &mut Replica) {
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&r.data)
            .args(["--database", &self.store_url])
            .arg("--key-file")
            .arg(&self.key)
            .arg("serve")
            .arg("--policy")
            .arg(&self.policy)
            .args(["--listen", &format!("127.0.0.1:{}", r.port)])
            .env("FIREDOOR_PG_URL", &self.target_url)
            .env("FIREDOOR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        r.child = Some(child);
    }
}

async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica on {port} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A call that may meet a replica going down: retried (same arguments, so the same
/// Idempotency-Key) while the answer is a transport error or a 5xx.
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(e) if e.status().is_none_or(|s| s >= 500) && Instant::now() < deadline => {
                let _ = what;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// What the clients were told: each acknowledgement is a promise the store must
/// keep.
#[derive(Default)]
struct Acks {
    created: BTreeSet<RequestId>,
    approved: BTreeSet<RequestId>,
    grants: BTreeMap<GrantId, String>,
    revoked: BTreeSet<GrantId>,
}

/// One client's lifecycles until `until`: request → approve → active → revoke.
async fn lifecycles(
    n: usize,
    requester: Client,
    approver: Client,
    until: Instant,
    acks: Arc<Mutex<Acks>>,
) -> usize {
    let mut done = 0;
    while Instant::now() < until {
        let key = format!("c{n}-{done}");
        let body = CreateRequest {
            bundle: "app-read".into(),
            justification: Some("failover drill".into()),
            ..Default::default()
        };
        let (r, _) = retrying("create", || requester.create_request(&body, Some(&key)))
            .await
            .unwrap();
        acks.lock().unwrap().created.insert(r.id);
        // Approve; a retry after an approval that did land answers 409, and the
        // request then shows it.
        let approved = match retrying("approve", || approver.approve(&r.id, None)).await {
            Ok(v) => v,
            Err(e) if e.status() == Some(409) => approver.request(&r.id).await.unwrap(),
            Err(e) => panic!("approve {}: {e}", r.id),
        };
        assert!(
            matches!(
                approved.state,
                RequestState::Approved | RequestState::Active
            ),
            "{:?}",
            approved.state
        );
        acks.lock().unwrap().approved.insert(r.id);
        let gid = approved.grant_id.unwrap();
        // Wait until usable (a provisioning cut by a kill is retried by a replica).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let g = retrying("grant", || requester.grant(&gid)).await.unwrap();
            if g.state == GrantState::Active {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "grant {gid} stuck in {:?}",
                g.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acks.lock().unwrap().grants.insert(gid, r.id.to_string());
        match retrying("revoke", || requester.revoke(&gid)).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => panic!("revoke {gid}: {e}"),
        }
        acks.lock().unwrap().revoked.insert(gid);
        done += 1;
    }
    done
}

/// Follows `client`'s event stream through the load balancer, reconnecting with
/// Last-Event-ID whenever the replica serving it goes away, until `stop`.
async fn follow(
    client: Client,
    seen: Arc<Mutex<Vec<i64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut last: Option<i64> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok(mut s) = client.events(last).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), s.next()).await;
            match next {
                Ok(Some(Ok(EventView { id, .. }))) => {
                    seen.lock().unwrap().push(id);
                    last = Some(id);
                }
                Ok(Some(Err(_))) | Ok(None) => break,
                Err(_) => {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
    }
}

/// Issue 9: 8 clients run lifecycles for 20 s through HAProxy in front of 3
/// replicas on one PostgreSQL store while one replica is SIGKILLed and another
/// restarted. No acknowledged write is lost, every grant's role is dropped from
/// the target exactly once, the audit chain verifies, and event streams that
/// followed the load balancer miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_survive_a_kill_and_a_restart() {
    let pg = PgServer::start();
    pg.seed_app();
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, REPLICA_POLICY).unwrap();
    let cluster = Cluster {
        store_url: pg.fresh_database(),
        target_url: pg.app_broker_url(&[]),
        key: tmp.path().join("broker.key"),
        policy,
    };
    let mut replicas: Vec<Replica> = (1..=3)
        .map(|i| Replica {
            child: None,
            data: tmp.path().join(format!("replica{i}")),
            port: free_port(),
        })
        .collect();

    // People, made with the CLI against the shared store (it creates the key file
    // every replica then uses).
    let token = |o: Output| -> String {
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    };
    let lead = token(cluster.cli(
        &replicas[0].data,
        &["user", "add", "lead", "--group", "leads"],
    ));
    let mut requesters = Vec::new();
    for i in 0..8 {
        let name = format!("eng{i}");
        requesters.push(token(cluster.cli(
            &replicas[0].data,
            &["user", "add", &name, "--group", "oncall"],
        )));
    }

    for r in replicas.iter_mut() {
        cluster.spawn(r);
    }
    for r in &replicas {
        wait_ready(r.port).await;
    }
    let backends: Vec<String> = replicas
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.port))
        .collect();
    let lb = Haproxy::start(&backends);
    lb.wait_for_up(&["broker1", "broker2", "broker3"], Duration::from_secs(20))
        .unwrap();
    let url = lb.url();

    // Streams through the load balancer: the approver's and two requesters'.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut followers = Vec::new();
    for (name, t) in [
        ("lead", &lead),
        ("eng0", &requesters[0]),
        ("eng1", &requesters[1]),
    ] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let c = Client::new(&url, Some(t)).unwrap();
        followers.push((
            name,
            seen.clone(),
            tokio::spawn(follow(c, seen, stop.clone())),
        ));
    }

    let acks = Arc::new(Mutex::new(Acks::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(20);
    let mut clients = Vec::new();
    for (i, t) in requesters.iter().enumerate() {
        clients.push(tokio::spawn(lifecycles(
            i,
            Client::new(&url, Some(t)).unwrap(),
            Client::new(&url, Some(&lead)).unwrap(),
            until,
            acks.clone(),
        )));
    }

    // 5 s in: SIGKILL replica 1. 10 s in: restart replica 2 (SIGTERM, start).
    tokio::time::sleep(Duration::from_secs(5)).await;
    {
        let c = replicas[0].child.as_mut().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        replicas[0].child = None;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    {
        let c = replicas[1].child.as_mut().unwrap();
        let pid = c.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        c.wait().unwrap();
        replicas[1].child = None;
    }
    cluster.spawn(&mut replicas[1]);
    wait_ready(replicas[1].port).await;

    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(total >= 16, "only {total} lifecycles in 20 s");

    // Settle: nothing left active, provisioning or revoking (work a killed replica
    // held is taken over when its 30 s lease runs out).
    let store = sqlx::PgPool::connect(&cluster.store_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM grants WHERE state IN ('active', 'provisioning', 'revoking')",
        )
        .fetch_one(&store)
        .await
        .unwrap();
        if busy == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{busy} grants still not ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No acknowledged write lost.
    let acks = Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap();
    let requests: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, state FROM requests")
            .fetch_all(&store)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for id in &acks.created {
        assert!(requests.contains_key(&id.to_string()), "request {id} lost");
    }
    for id in &acks.approved {
        let state = &requests[&id.to_string()];
        assert!(
            ["approved", "active", "revoked", "expired"].contains(&state.as_str()),
            "approval of {id} lost: {state}"
        );
    }
    let grants: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, state FROM grants")
            .fetch_all(&store)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for id in &acks.revoked {
        assert_eq!(
            grants[&id.to_string()],
            "revoked",
            "revocation of {id} lost"
        );
    }
    assert_eq!(acks.grants.len(), acks.revoked.len());

    // Exactly once: one end record per grant, and no role left in the target.
    let ends: Vec<(String, i64)> = sqlx::query_as(
        "SELECT subject, count(*) FROM audit
          WHERE action IN ('grant_revoked', 'grant_expired') GROUP BY subject",
    )
    .fetch_all(&store)
    .await
    .unwrap();
    let ends: BTreeMap<String, i64> = ends.into_iter().collect();
    for id in grants.keys() {
        assert_eq!(ends.get(id), Some(&1), "grant {id} ended once: {ends:?}");
    }
    let left = pg.admin(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'fd\\_%'",
    );
    assert_eq!(left, "0", "roles left in the target");

    // Streams: after a last moment to catch up, each follower saw every event of
    // its user, in order, without a gap or a repeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (name, seen, task) in followers {
        task.await.unwrap();
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events WHERE recipient = $1 ORDER BY id")
                .bind(name)
                .fetch_all(&store)
                .await
                .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert!(!stored.is_empty(), "{name} had events");
        assert_eq!(seen, stored, "{name}'s stream through the load balancer");
    }

    // The chain is one line, signed throughout.
    drop(lb);
    drop(replicas);
    let v = cluster.cli(&tmp.path().join("replica1"), &["audit", "verify"]);
    assert!(v.status.success(), "{}", text(&v));
    eprintln!(
        "replicas: {total} lifecycles in 20 s through HAProxy with one replica killed and one restarted"
    );
}

/// Steps of different lifecycles run side by side on PostgreSQL, steps of one
/// lifecycle take turns across replicas. Two brokers on one store:
/// - the two approvals a prod-write request needs arrive at the same moment, one on
///   each broker: every request still ends active with both approvals (a unit that
///   did not lock its request would let each approver see only its own approval, and
///   the request would stay pending with two);
/// - one Idempotency-Key sent to both brokers at once makes one request;
/// - the audit chain, written by both at once, is one line that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_steps_on_two_replicas_keep_approvals_keys_and_the_chain_right() {
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("broker.key");
    let mut brokers = Vec::new();
    for i in 0..2 {
        let mut cfg = Config::new(tmp.path().join(format!("r{i}")), policy());
        cfg.database = Some(DatabaseUrl::Postgres(url.clone()));
        cfg.key_file = Some(key.clone());
        brokers.push(firedoor_server::start(cfg).await.unwrap());
    }
    let (a, b) = (&brokers[0], &brokers[1]);
    let alice_t = user(a, "alice", &["oncall"]).await;
    let bob_t = user(a, "bob", &["sre-leads"]).await;
    let carol_t = user(a, "carol", &["security"]).await;
    let alice_a = Client::new(&a.url(), Some(&alice_t)).unwrap();
    let alice_b = Client::new(&b.url(), Some(&alice_t)).unwrap();
    let bob = Client::new(&a.url(), Some(&bob_t)).unwrap();
    let carol = Client::new(&b.url(), Some(&carol_t)).unwrap();

    let rounds = 40;
    let mut tasks = Vec::new();
    for i in 0..rounds {
        let (alice_a, alice_b, bob, carol) =
            (alice_a.clone(), alice_b.clone(), bob.clone(), carol.clone());
        tasks.push(tokio::spawn(async move {
            let body = CreateRequest {
                bundle: "prod-db-write".into(),
                justification: Some(format!("INC-{i} repair rows")),
                ticket: Some(format!("OPS-{i}")),
                ..Default::default()
            };
            let key = format!("race-{i}");
            let (on_a, on_b) = tokio::join!(
                alice_a.create_request(&body, Some(&key)),
                alice_b.create_request(&body, Some(&key)),
            );
            let (ra, _) = on_a.unwrap();
            let (rb, _) = on_b.unwrap();
            assert_eq!(ra.id, rb.id, "one key, one request");
            let (x, y) = tokio::join!(bob.approve(&ra.id, None), carol.approve(&ra.id, None));
            // Each approval is accepted; the later one approves the request.
            x.unwrap();
            y.unwrap();
            ra.id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    for id in &ids {
        let r = alice_a.request(id).await.unwrap();
        assert_eq!(
            r.state,
            RequestState::Active,
            "request {id} has both approvals and is active"
        );
        assert_eq!(r.decisions.len(), 2, "request {id}: {:?}", r.decisions);
    }
    let mine = alice_a.requests("mine").await.unwrap();
    assert_eq!(mine.len(), rounds, "one request per Idempotency-Key");
    let v = firedoor_server::audit::verify(&a.broker.store)
        .await
        .unwrap()
        .unwrap();
    assert!(v.records >= rounds as i64 * 5, "{} records", v.records);

    // Cutting the end of the log off is reported, and steps still append (onto the
    // head the store's high-water mark names, so the gap stays in the chain).
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM audit WHERE seq > (SELECT max(seq) - 2 FROM audit)")
        .execute(&raw)
        .await
        .unwrap();
    let body = CreateRequest {
        bundle: "prod-db-write".into(),
        justification: Some("after the cut".into()),
        ticket: Some("OPS-cut".into()),
        ..Default::default()
    };
    alice_b.create_request(&body, None).await.unwrap();
    let cut = firedoor_server::audit::verify(&a.broker.store)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        cut.problem.contains("removed") || cut.problem.contains("gone"),
        "{}",
        cut.problem
    );
    assert_eq!(
        firedoor_server::store::Store::open(&DatabaseUrl::Postgres(url.clone()))
            .await
            .unwrap()
            .records_awaiting_chain()
            .await
            .unwrap(),
        0,
        "the step after the cut was chained"
    );
    raw.close().await;
    for br in brokers {
        br.stop().await;
    }
}

/// On PostgreSQL a unit of work commits its audit records and live events to
/// pending tables, and a chaining round appends them to the one signed chain after
/// the commit. A replica that dies between the two must lose nothing and hide
/// nothing: `store copy` refuses a store with records waiting, and the next round of
/// any replica (its worker's pass at the latest) chains them, signed, and hands the
/// events to the streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_dead_replica_left_pending_are_chained_by_the_next_round() {
    use firedoor_core::audit::AuditEvent;
    use firedoor_server::store::postgres::PendingEvent;
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(tmp.path().join("r0"), policy());
    cfg.database = Some(DatabaseUrl::Postgres(url.clone()));
    cfg.key_file = Some(tmp.path().join("broker.key"));
    // Only the passes this test runs.
    cfg.worker_interval = Duration::from_secs(3600);
    let b = firedoor_server::start(cfg).await.unwrap();
    let alice_t = user(&b, "alice", &["oncall"]).await;
    let alice = Client::new(&b.url(), Some(&alice_t)).unwrap();
    let store = &b.broker.store;
    let before = firedoor_server::audit::verify(store)
        .await
        .unwrap()
        .unwrap()
        .records;
    let mut stream = alice.events(None).await.unwrap();

    // What a unit leaves when its process dies right after its commit.
    let now = b.broker.now();
    let record = firedoor_server::audit::pending_record(
        &Actor::System,
        "req-left-pending",
        AuditEvent::RequestCancelled,
        now,
    )
    .unwrap();
    let view = EventView {
        id: 0,
        incident_id: None,
        kind: "request_cancelled".into(),
        at: now,
        request_id: None,
        grant_id: None,
        bundle: Some("prod-db-read".into()),
        actor: Some("system".into()),
        message: "left pending".into(),
    };
    let event = PendingEvent {
        recipient: "alice".into(),
        kind: "request_cancelled".into(),
        at: now,
        body: serde_json::to_string(&view).unwrap(),
    };
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO audit_pending (at, actor, action, subject, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&record.at)
    .bind(&record.actor)
    .bind(&record.action)
    .bind(&record.subject)
    .bind(&record.details)
    .execute(&raw)
    .await
    .unwrap();
    sqlx::query("INSERT INTO events_pending (recipient, kind, at, body) VALUES ($1, $2, $3, $4)")
        .bind(&event.recipient)
        .bind(&event.kind)
        .bind(event.at)
        .bind(&event.body)
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;

    assert_eq!(store.records_awaiting_chain().await.unwrap(), 1);
    let v = firedoor_server::audit::verify(store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.records, before, "not in the chain yet");
    let to = pg.fresh_database();
    let target = firedoor_server::store::Store::open(&DatabaseUrl::Postgres(to))
        .await
        .unwrap();
    let refused = firedoor_server::store::copy::copy(store, &target)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not yet chained"), "{refused}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "no event before it has an id"
    );

    b.run_due_work().await.unwrap();
    assert_eq!(store.records_awaiting_chain().await.unwrap(), 0);
    let v = firedoor_server::audit::verify(store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.records, before + 1);
    let last = firedoor_server::audit::records(store, before, 10)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].subject, "req-left-pending");
    assert_eq!(last[0].action, "request_cancelled");
    assert!(last[0].signature.is_some(), "signed by the round");
    let got = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the event reaches the stream")
        .unwrap()
        .unwrap();
    assert_eq!(got.message, "left pending");
    assert!(got.id > 0);
    // Nothing is chained twice.
    b.run_due_work().await.unwrap();
    let v = firedoor_server::audit::verify(store)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.records, before + 1);
    target.close().await;
    b.stop().await;
}

/// A writer that has not loaded the broker key (a CLI run without the key file)
/// writes nothing on PostgreSQL either: its records could not be chained, so the
/// change they record is not committed.
#[tokio::test]
async fn a_write_without_the_signing_key_commits_nothing() {
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let store = firedoor_server::store::Store::open(&DatabaseUrl::Postgres(url))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let Err(e) = auth::add_user(&store, &Actor::System, "mallory", &[], false, now).await else {
        panic!("a user was added without the signing key");
    };
    let e = e.to_string();
    assert!(e.contains("no audit signing key"), "{e}");
    assert!(auth::get_user(&store, "mallory").await.unwrap().is_none());
    assert_eq!(store.records_awaiting_chain().await.unwrap(), 0);
    store.close().await;
}
