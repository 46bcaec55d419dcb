//! Broker benchmark (figures, not a timed test). Run: `cargo bench -p firedoor-server`.
//!
//! 1. Lifecycles per second (create → approve → active → revoke) over HTTP on SQLite
//!    with the demo connector, several clients at once.
//!    In the same run, the floor: SQLite commits per second on this machine (one
//!    connection, the store's settings: WAL, synchronous=NORMAL, one-row commits).
//! 2. The same lifecycles through HAProxy in front of 2 brokers sharing one
//!    PostgreSQL store (the harness's server: fsync off, as for every test; statement
//!    logging off), and the ratio to SQLite. In the same run, the floor: one-row
//!    commits per second on that server from as many connections as clients.
//! 3. Request → grant-usable latency (p50/p99) with the PostgreSQL connector against a
//!    real server, and in the same run the floor: raw CREATE ROLE + GRANT against that
//!    server, so the ratio is visible.
//! 4. The same with the MySQL connector against a real MariaDB
//!    (`FIREDOOR_BENCH_ONLY=mysql`), and in the same run its floor: raw CREATE USER +
//!    GRANT over one connection as the broker's account.
#![allow(clippy::unwrap_used)]

use firedoor_client::Client;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::RequestState;
use firedoor_server::audit::Actor;
use firedoor_server::connectors::mysql::{
    native_password_hash, quote_db_for_grant, MysqlConnector,
};
use firedoor_server::connectors::postgres::{quote_ident, scram_verifier, PostgresConnector};
use firedoor_server::connectors::{Connector, Connectors};
use firedoor_server::{auth, Config};
use firedoor_testkit::mariadb::MariaDb;
use firedoor_testkit::PgServer;
use secrecy::ExposeSecret;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `firedoor-server` binary runs with, so the figures are its.
#[global_allocator]
static ALLOCATOR: firedoor_server::ServerAllocator = mimalloc::MiMalloc;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn users(
    b: &firedoor_server::RunningBroker,
    names: &[(&str, &[&str])],
) -> BTreeMap<String, Client> {
    let mut out = BTreeMap::new();
    for (name, groups) in names {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let t = auth::add_user(
            &b.broker.store,
            &Actor::System,
            name,
            &groups,
            false,
            b.broker.now(),
        )
        .await
        .unwrap();
        out.insert(
            name.to_string(),
            Client::new(&b.url(), Some(t.token.expose_secret())).unwrap(),
        );
    }
    out
}

/// `conc` clients each run create → approve → active → revoke against `url` until
/// `n` lifecycles are done; returns lifecycles per second.
/// CPU seconds (user + system) used so far by this process and by every process
/// named `name` (`/proc/PID/stat`, in clock ticks of 1/100 s on Linux).
fn cpu_seconds(name: &str) -> (f64, f64) {
    fn ticks(stat: &str) -> Option<f64> {
        // Fields after the ")" that ends the command name: utime is the 12th,
        // stime the 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    }
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .unwrap_or(0.0);
    let mut theirs = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            if let Some(t) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
            {
                theirs += t;
            }
        }
    }
    (own / 100.0, theirs / 100.0)
}

async fn run_lifecycles(clients: Arc<BTreeMap<String, Client>>, n: usize, conc: usize) -> f64 {
    let per = n / conc;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conc {
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            let me = &clients[&format!("eng{i}")];
            let lead = &clients["lead"];
            for _ in 0..per {
                let (r, _) = me
                    .create_request(
                        &CreateRequest {
                            bundle: "prod-db-read".into(),
                            justification: Some("bench".into()),
                            ..Default::default()
                        },
                        None,
                    )
                    .await
                    .unwrap();
                let r = lead.approve(&r.id, None).await.unwrap();
                assert_eq!(r.state, RequestState::Active);
                me.revoke(&r.grant_id.unwrap()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * conc) as f64 / start.elapsed().as_secs_f64()
}

fn team(conc: usize) -> Vec<(String, Vec<&'static str>)> {
    let mut names: Vec<(String, Vec<&str>)> = Vec::new();
    for i in 0..conc {
        names.push((format!("eng{i}"), vec!["oncall"]));
    }
    names.push(("lead".into(), vec!["sre-leads"]));
    names
}

/// SQLite commits per second on one connection with the store's settings (WAL,
/// synchronous=NORMAL, statements run in place as the store runs them): the floor
/// under any lifecycle rate, since a lifecycle is several commits.
fn sqlite_floor(dir: &std::path::Path) -> f64 {
    let c = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    )
    .unwrap();
    let n = 20_000;
    let start = Instant::now();
    for i in 0..n {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        c.prepare_cached("INSERT INTO t (id, v) VALUES ($1, 'x')")
            .unwrap()
            .execute([i as i64])
            .unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn lifecycles() -> f64 {
    let n = env_n("FIREDOOR_BENCH_LIFECYCLES", 3000);
    let conc = env_n("FIREDOOR_BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let b = firedoor_server::start(Config::new(dir.path(), policy))
        .await
        .unwrap();
    let names = team(conc);
    let refs: Vec<(&str, &[&str])> = names
        .iter()
        .map(|(n, g)| (n.as_str(), g.as_slice()))
        .collect();
    let clients = Arc::new(users(&b, &refs).await);
    let turn = || b.broker.store.write_turn_stats().unwrap_or_default();
    let (own0, turn0, start) = (cpu_seconds("postgres").0, turn(), Instant::now());
    let rate = run_lifecycles(clients, n, conc).await;
    let (own1, turn1, elapsed) = (cpu_seconds("postgres").0, turn(), start.elapsed());
    println!(
        "lifecycles (create → approve → active → revoke, HTTP, SQLite, demo connector, {conc} clients): {rate:.0} lifecycles/s"
    );
    println!(
        "  CPU per lifecycle: broker + clients (this process) {:.1} ms",
        (own1 - own0) * 1000.0 / n as f64
    );
    // Units of work take the write turn one at a time: its busy share bounds the rate.
    let units = (turn1.units - turn0.units).max(1);
    let held = turn1.held - turn0.held;
    println!(
        "  write turn: {:.1} units per lifecycle, held {:.0} µs per unit (busy {:.0} % of the run), queued {:.0} µs per unit; ceiling at 100 % busy: {:.0} lifecycles/s",
        units as f64 / n as f64,
        held.as_secs_f64() * 1e6 / units as f64,
        held.as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
        (turn1.waited - turn0.waited).as_secs_f64() * 1e6 / units as f64,
        n as f64 / held.as_secs_f64(),
    );
    let v = firedoor_server::audit::verify(&b.broker.store)
        .await
        .unwrap()
        .unwrap();
    let signed = firedoor_server::audit::records(&b.broker.store, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.signature.is_some())
        .count();
    println!(
        "  audit chain verified: {} records, {signed} signed (the last of each commit: {:.2} signatures per lifecycle)",
        v.records,
        signed as f64 / n as f64
    );
    let wal = std::fs::metadata(dir.path().join("firedoor.db-wal")).map_or(0, |m| m.len());
    println!(
        "  WAL after the run (checkpointed every 200 ms): {:.1} MiB",
        wal as f64 / 1048576.0
    );
    b.stop().await;
    let floor = sqlite_floor(dir.path());
    println!(
        "  floor: SQLite commits on one connection (WAL, synchronous=NORMAL): {floor:.0} commits/s"
    );
    rate
}

/// The same lifecycles through HAProxy in front of `replicas` brokers on one
/// PostgreSQL store.
async fn postgres_replicas(sqlite_rate: f64) {
    let n = env_n("FIREDOOR_BENCH_LIFECYCLES", 3000);
    let conc = env_n("FIREDOOR_BENCH_CONCURRENCY", 16);
    let replicas = env_n("FIREDOOR_BENCH_REPLICAS", 2);
    // Store connections per broker: 2 brokers x 5 for this machine's 2 cores (see
    // `store::postgres::open`; 16, the default, measured 0.75-0.9x as fast here).
    let pool = env_n("FIREDOOR_BENCH_PG_POOL", 5);
    let mut pg = PgServer::start();
    // FIREDOOR_BENCH_PG_STATS=1 loads pg_stat_statements and prints where the store
    // server spent its time after the run.
    let stats = std::env::var("FIREDOOR_BENCH_PG_STATS").is_ok();
    if stats {
        pg.admin(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
        pg.stop();
        pg.start_again();
        pg.admin(
            "postgres",
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        );
    }
    // The harness logs every statement (tests look for secrets in the log); a
    // store in production does not, and here the log would be measured too.
    // FIREDOOR_BENCH_PG_LOG=FILE keeps the statement log and copies it there (to
    // count a lifecycle's statements); the figures are then not comparable.
    // The harness sets `log_statement` on the server's command line, which a
    // configuration file (`ALTER SYSTEM`) cannot override; a database's own setting
    // does, for every session opened on it afterwards.
    let keep_log = std::env::var("FIREDOOR_BENCH_PG_LOG").ok();
    let url = pg.fresh_database();
    if keep_log.is_none() {
        let db = url.rsplit('/').next().unwrap();
        pg.admin(
            "postgres",
            &format!("ALTER DATABASE {db} SET log_statement = 'none'"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("broker.key");
    let mut brokers = Vec::new();
    for i in 0..replicas {
        let policy =
            firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
        let mut cfg = Config::new(dir.path().join(format!("r{i}")), policy);
        cfg.database = Some(firedoor_server::store::DatabaseUrl::Postgres(format!(
            "{url}?pool_max_conns={pool}"
        )));
        cfg.key_file = Some(key.clone());
        brokers.push(firedoor_server::start(cfg).await.unwrap());
    }
    let backends: Vec<String> = brokers
        .iter()
        .map(|b| format!("127.0.0.1:{}", b.addr.port()))
        .collect();
    let lb = firedoor_testkit::haproxy::Haproxy::start(&backends);
    let names: Vec<String> = (1..=replicas).map(|i| format!("broker{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    lb.wait_for_up(&names, Duration::from_secs(20)).unwrap();
    let team = team(conc);
    let mut clients = BTreeMap::new();
    for (name, groups) in &team {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let t = auth::add_user(
            &brokers[0].broker.store,
            &Actor::System,
            name,
            &groups,
            false,
            brokers[0].broker.now(),
        )
        .await
        .unwrap();
        clients.insert(
            name.clone(),
            Client::new(&lb.url(), Some(t.token.expose_secret())).unwrap(),
        );
    }
    let (own0, pg0) = cpu_seconds("postgres");
    let rate = run_lifecycles(Arc::new(clients), n, conc).await;
    let (own1, pg1) = cpu_seconds("postgres");
    println!(
        "lifecycles through HAProxy, {replicas} brokers on one PostgreSQL store ({conc} clients, {pool} store connections per broker): {rate:.0} lifecycles/s = {:.2}x SQLite",
        rate / sqlite_rate
    );
    // Where the machine's time went: at R lifecycles/s these cost R x (both) CPU-ms
    // per second, which this machine's cores bound.
    println!(
        "  CPU per lifecycle: PostgreSQL server {:.1} ms, brokers + clients (this process) {:.1} ms",
        (pg1 - pg0) * 1000.0 / n as f64,
        (own1 - own0) * 1000.0 / n as f64
    );
    let v = firedoor_server::audit::verify(&brokers[0].broker.store)
        .await
        .unwrap()
        .unwrap();
    println!(
        "  audit chain verified: {} records, one line from {replicas} brokers",
        v.records
    );
    drop(lb);
    for b in brokers {
        b.stop().await;
    }
    if stats {
        println!(
            "  the store's statements by total time (calls, total ms, mean µs, rows):\n{}",
            pg.admin(
                "postgres",
                "SELECT calls || ' | ' || round(total_exec_time) || ' | ' || round(1000 * mean_exec_time) || ' | ' || rows || ' | ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
                 FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
            )
        );
    }
    if let Some(to) = &keep_log {
        std::fs::copy(pg.log_path(), to).unwrap();
    }
    let floor = postgres_floor(&url, conc).await;
    println!(
        "  floor: PostgreSQL one-row commits from {conc} connections (one round trip each): {floor:.0} commits/s"
    );
}

/// One-row autocommit INSERTs per second on the store server from `conc`
/// connections at once: the most round trips per second this machine gives a
/// PostgreSQL client. A lifecycle makes about 60 round trips to the store (see the
/// closing note of issue 9), so this bounds the replicas' rate from above.
async fn postgres_floor(url: &str, conc: usize) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(conc as u32)
        .connect(url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let per = 2_000;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = pool.acquire().await.unwrap();
            for _ in 0..per {
                sqlx::query("INSERT INTO bench_floor (v) VALUES ('x')")
                    .execute(&mut *c)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (per * conc) as f64 / start.elapsed().as_secs_f64();
    pool.close().await;
    rate
}

const PG_POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "UNUSED"
permissions = { read = ["app_read"] }
[bundles.app-read]
resources = [{ integration = "pg", resource = "app", permission = "read" }]
[flows.auto]
bundles = ["app-read"]
requesters = { groups = ["oncall"] }
approvals = 0
default_duration = "15m"
max_duration = "1h"
"#;

async fn postgres_latency() {
    let n = env_n("FIREDOOR_BENCH_PG_SAMPLES", 300);
    let pg = PgServer::start();
    pg.seed_app();
    // The broker's own admin role (CREATEROLE, not a superuser), as in production.
    let admin_url = pg.app_broker_url(&[]);

    // The floor: what the connector must do at least, straight over one connection.
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
        .unwrap()
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    let mut floor = Vec::with_capacity(n);
    let verifier = scram_verifier("bench-password-0123456789");
    for i in 0..n {
        let role = format!("floor_{i}");
        let t = Instant::now();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "CREATE ROLE {} LOGIN INHERIT PASSWORD '{}' VALID UNTIL '2099-01-01 00:00:00+00' IN ROLE app_read",
            quote_ident(&role),
            verifier
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "GRANT CONNECT ON DATABASE app TO {}",
            quote_ident(&role)
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        floor.push(t.elapsed());
    }

    let dir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("pg", PG_POLICY).unwrap();
    let c = PostgresConnector::new(
        "pg",
        &admin_url,
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    let mut connectors: Connectors = BTreeMap::new();
    connectors.insert("pg".into(), Arc::new(c) as Arc<dyn Connector>);
    let mut cfg = Config::new(dir.path(), policy);
    cfg.connectors = Some(connectors);
    let b = firedoor_server::start(cfg).await.unwrap();
    let clients = users(&b, &[("alice", &["oncall"])]).await;
    let alice = &clients["alice"];
    let mut lat = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        let (r, _) = alice
            .create_request(
                &CreateRequest {
                    bundle: "app-read".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let gid = r.grant_id.unwrap();
        let creds = alice.credentials(&gid).await.unwrap();
        lat.push(t.elapsed());
        if let Some(prev) = last.replace(gid) {
            alice.revoke(&prev).await.unwrap();
        }
        last_creds_check(&pg, &creds, lat.len() == n);
    }
    floor.sort();
    lat.sort();
    println!(
        "PostgreSQL floor (raw CREATE ROLE + GRANT, one connection, {n} samples): p50 {:.2} ms, p99 {:.2} ms",
        ms(pct(&floor, 0.5)),
        ms(pct(&floor, 0.99))
    );
    println!(
        "request → grant usable (HTTP create, auto-approved, provisioned, credentials in hand; {n} samples): p50 {:.2} ms, p99 {:.2} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    println!(
        "  ratio p99 / floor p99: {:.2}x   (p50 / floor p50: {:.2}x)",
        pct(&lat, 0.99).as_secs_f64() / pct(&floor, 0.99).as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() / pct(&floor, 0.5).as_secs_f64()
    );
    b.stop().await;
}

/// Proves (once, outside the timing) that the issued credentials really log in.
fn last_creds_check(pg: &PgServer, creds: &firedoor_core::api::Credentials, check: bool) {
    if check {
        let c = &creds.items[0];
        let out = pg.psql(&c.username, &c.secret, "app", "SELECT count(*) FROM orders");
        assert!(
            out.status.success(),
            "issued credentials log in: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("  checked: the last issued role logs in with psql and reads the granted table");
    }
}

const MYSQL_POLICY: &str = r#"
[integrations.my]
kind = "mysql"
url_env = "UNUSED"
permissions = { read = ["SELECT"] }
[bundles.app-read]
resources = [{ integration = "my", resource = "DB", permission = "read" }]
[flows.auto]
bundles = ["app-read"]
requesters = { groups = ["oncall"] }
approvals = 0
default_duration = "15m"
max_duration = "1h"
"#;

async fn mysql_latency() {
    let n = env_n("FIREDOOR_BENCH_MYSQL_SAMPLES", 300);
    let db = MariaDb::start();
    // The general log is for the tests; a production server runs without it.
    db.root_sql("SET GLOBAL general_log = 0");
    let app = db.fresh_app();
    // The broker's own account (CREATE USER, PROCESS, CONNECTION ADMIN; privileges
    // on the database WITH GRANT OPTION), as in production.
    let admin_url = db.broker_url(&[&app]);

    // The floor: what the connector must do at least, straight over one connection:
    // CREATE USER + GRANT in one round trip, as text.
    let mut conn = sqlx::mysql::MySqlConnectOptions::from_str(&admin_url)
        .unwrap()
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    let mut floor = Vec::with_capacity(n);
    let hash = native_password_hash("bench-password-0123456789");
    for i in 0..n {
        let acct = format!("'floor_{i}'@'%'");
        let t = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE USER {acct} IDENTIFIED WITH mysql_native_password AS '{hash}' PASSWORD EXPIRE NEVER; \
             GRANT SELECT ON {}.* TO {acct}",
            quote_db_for_grant(&app)
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        floor.push(t.elapsed());
    }
    let _ = conn.close().await;

    let dir = tempfile::tempdir().unwrap();
    let src = MYSQL_POLICY.replace("\"DB\"", &format!("\"{app}\""));
    let policy = firedoor_core::policy::parse_policy("mysql", &src).unwrap();
    let c = MysqlConnector::new(
        "my",
        &admin_url,
        None,
        policy.integrations["my"].kind.clone(),
        &[(app.clone(), "read".into())],
    )
    .unwrap();
    let mut connectors: Connectors = BTreeMap::new();
    connectors.insert("my".into(), Arc::new(c) as Arc<dyn Connector>);
    let mut cfg = Config::new(dir.path(), policy);
    cfg.connectors = Some(connectors);
    let b = firedoor_server::start(cfg).await.unwrap();
    let clients = users(&b, &[("alice", &["oncall"])]).await;
    let alice = &clients["alice"];
    let mut lat = Vec::with_capacity(n);
    let mut last = None;
    for i in 0..n {
        let t = Instant::now();
        let (r, _) = alice
            .create_request(
                &CreateRequest {
                    bundle: "app-read".into(),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        let gid = r.grant_id.unwrap();
        let creds = alice.credentials(&gid).await.unwrap();
        lat.push(t.elapsed());
        if let Some(prev) = last.replace(gid) {
            alice.revoke(&prev).await.unwrap();
        }
        if i + 1 == n {
            let c = &creds.items[0];
            let out = db.client(&c.username, &c.secret, &app, "SELECT COUNT(*) FROM orders");
            assert!(
                out.status.success(),
                "issued credentials log in: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            println!("  checked: the last issued account logs in with the mariadb client and reads the granted table");
        }
    }
    floor.sort();
    lat.sort();
    println!(
        "MySQL ({}) floor (raw CREATE USER + GRANT, one round trip on one connection, {n} samples): p50 {:.2} ms, p99 {:.2} ms",
        db.root_sql("SELECT VERSION()"),
        ms(pct(&floor, 0.5)),
        ms(pct(&floor, 0.99))
    );
    println!(
        "request → grant usable (HTTP create, auto-approved, provisioned, credentials in hand; {n} samples): p50 {:.2} ms, p99 {:.2} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99))
    );
    println!(
        "  ratio p99 / floor p99: {:.2}x   (p50 / floor p50: {:.2}x)",
        pct(&lat, 0.99).as_secs_f64() / pct(&floor, 0.99).as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() / pct(&floor, 0.5).as_secs_f64()
    );
    b.stop().await;
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: both run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // FIREDOOR_BENCH_ONLY=sqlite|replicas|connector|mysql runs one part (replicas needs
    // the SQLite rate for its ratio, so it runs both).
    let only = std::env::var("FIREDOOR_BENCH_ONLY").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only == p;
    rt.block_on(async {
        if part("sqlite") || part("replicas") {
            let sqlite = lifecycles().await;
            if part("replicas") {
                postgres_replicas(sqlite).await;
            }
        }
        if part("connector") {
            postgres_latency().await;
        }
        if part("mysql") {
            mysql_latency().await;
        }
    });
}
