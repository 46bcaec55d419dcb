//! Test harness: a real broker on 127.0.0.1:0 with a fresh SQLite file, a manual
//! clock and the demo connector, driven over HTTP with the typed client.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, Utc};
use firedoor_client::Client;
use firedoor_server::audit::Actor;
use firedoor_server::clock::ManualClock;
use firedoor_server::connectors::demo::DemoConnector;
use firedoor_server::connectors::{Connector, Connectors};
use firedoor_server::{auth, Config, RunningBroker};
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

pub struct TestBroker {
    pub running: RunningBroker,
    /// The store, when not the SQLite file in the data directory.
    pub database: Option<firedoor_server::store::DatabaseUrl>,
    pub clock: Arc<ManualClock>,
    pub demo: Arc<DemoConnector>,
    pub dir: tempfile::TempDir,
    pub tokens: BTreeMap<String, String>,
}

/// The store the tests run on: SQLite in the data directory, or with
/// `FIREDOOR_TEST_STORE=postgres` a fresh database on this binary's PostgreSQL
/// server (`make test` runs the store-level tests both ways).
///
/// The broker gets one store connection there: an operation that asked the pool
/// for a second connection while holding one (a read beside its own unit of work)
/// could hang a broker whose every connection is held that way, and with one
/// connection it hangs at once, failing the test on the pool's acquire timeout.
pub fn test_store() -> Option<firedoor_server::store::DatabaseUrl> {
    match std::env::var("FIREDOOR_TEST_STORE").as_deref() {
        Ok("postgres") => Some(firedoor_server::store::DatabaseUrl::Postgres(format!(
            "{}?pool_max_conns=1",
            firedoor_testkit::shared_server().fresh_database()
        ))),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("FIREDOOR_TEST_STORE={other}: use sqlite or postgres"),
    }
}

/// Whether the tests run on PostgreSQL (tests that open the SQLite file skip their
/// file-level part there).
pub fn on_postgres() -> bool {
    std::env::var("FIREDOOR_TEST_STORE").as_deref() == Ok("postgres")
}

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).expect("valid time")
}

/// The demo team: alice (oncall), bob (oncall, sre-leads), carol (security, admin),
/// dave (no groups).
pub async fn spawn() -> TestBroker {
    spawn_with(firedoor_server::DEMO_POLICY, None).await
}

pub async fn spawn_with(policy: &str, connectors: Option<Connectors>) -> TestBroker {
    spawn_at(policy, connectors, t0()).await
}

/// [`spawn_with`], its clock starting at `start` (tests that need the real time,
/// e.g. for a real sshd, start there: moving a running broker's clock backwards
/// races its worker, whose pass may still hold the later time).
pub async fn spawn_at(
    policy: &str,
    connectors: Option<Connectors>,
    start: DateTime<Utc>,
) -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy =
        firedoor_core::policy::parse_policy("test-policy.toml", policy).expect("valid policy");
    let clock = Arc::new(ManualClock::new(start));
    let demo = Arc::new(DemoConnector::default());
    let connectors = connectors.unwrap_or_else(|| {
        let mut c: Connectors = BTreeMap::new();
        for name in policy.integrations.keys() {
            c.insert(name.clone(), demo.clone() as Arc<dyn Connector>);
        }
        c
    });
    let mut cfg = Config::new(dir.path().join("data"), policy);
    let database = test_store();
    cfg.database = database.clone();
    cfg.clock = clock.clone();
    cfg.connectors = Some(connectors);
    cfg.worker_interval = StdDuration::from_millis(50);
    let running = firedoor_server::start(cfg).await.expect("broker starts");
    let mut tokens = BTreeMap::new();
    for (name, groups, admin) in [
        ("alice", vec!["oncall"], false),
        ("bob", vec!["oncall", "sre-leads"], false),
        ("carol", vec!["security"], true),
        ("dave", vec![], false),
        ("erin", vec!["sre-leads"], false),
    ] {
        let groups: Vec<String> = groups.into_iter().map(String::from).collect();
        let issued = auth::add_user(
            &running.broker.store,
            &Actor::System,
            name,
            &groups,
            admin,
            start,
        )
        .await
        .expect("user added");
        tokens.insert(name.to_string(), issued.token.expose_secret().to_string());
    }
    TestBroker {
        running,
        database,
        clock,
        demo,
        dir,
        tokens,
    }
}

/// A connection of its own to a broker's store, as another process (the CLI, an
/// attacker with the database) would open it: the raw SQL a test needs to look at
/// or change what is stored, on either backend (`$1` placeholders).
pub enum RawDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawDb {
    pub async fn execute(&self, sql: &'static str, arg: &str) -> u64 {
        match self {
            RawDb::Sqlite(p) => sqlx::query(sql)
                .bind(arg)
                .execute(p)
                .await
                .unwrap()
                .rows_affected(),
            RawDb::Postgres(p) => sqlx::query(sql)
                .bind(arg)
                .execute(p)
                .await
                .unwrap()
                .rows_affected(),
        }
    }
    pub async fn count(&self, sql: &'static str, arg: &str) -> i64 {
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar(sql)
                .bind(arg)
                .fetch_one(p)
                .await
                .unwrap(),
            RawDb::Postgres(p) => sqlx::query_scalar(sql)
                .bind(arg)
                .fetch_one(p)
                .await
                .unwrap(),
        }
    }
    /// A query without arguments answering one integer.
    pub async fn number(&self, sql: &'static str) -> i64 {
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            RawDb::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }
    pub async fn strings(&self, sql: &'static str) -> Vec<String> {
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            RawDb::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }
}

impl TestBroker {
    pub async fn raw_db(&self) -> RawDb {
        use firedoor_server::store::DatabaseUrl;
        match &self.database {
            Some(DatabaseUrl::Postgres(url)) => {
                RawDb::Postgres(sqlx::PgPool::connect(url).await.unwrap())
            }
            Some(DatabaseUrl::Sqlite(p)) => RawDb::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{}", p.display()))
                    .await
                    .unwrap(),
            ),
            None => RawDb::Sqlite(
                sqlx::SqlitePool::connect(&format!(
                    "sqlite://{}",
                    self.dir.path().join("data").join("firedoor.db").display()
                ))
                .await
                .unwrap(),
            ),
        }
    }

    pub fn client(&self, user: &str) -> Client {
        Client::new(&self.running.url(), Some(&self.tokens[user])).expect("client")
    }
    pub fn anonymous(&self) -> Client {
        Client::new(&self.running.url(), None).expect("client")
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.running.url())
    }
    pub fn token(&self, user: &str) -> &str {
        &self.tokens[user]
    }
    /// Moves the broker's clock and wakes its worker.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.running.broker.wake_worker.notify_one();
    }
}

/// Polls `check` until it returns Some, for at most 10 s (waiting for the broker's
/// worker to act, never for time to pass: the clock is manual).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}
