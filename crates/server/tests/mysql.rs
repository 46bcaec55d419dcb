//! The MySQL / MariaDB connector against a real MariaDB server that the harness starts
//! (one per test binary, a fresh database and broker account per test): issued
//! accounts log in with the `mariadb` client and hold exactly their level's
//! privileges; after revoke or expiry the account is locked, its sessions killed, what
//! it defined dropped and the account dropped; a SIGKILLed broker revokes at restart;
//! no password reaches the server's general log or the broker's log; an admin account
//! that is too powerful or too weak is refused. These tests fail, never skip, when
//! MariaDB is missing.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{eventually, spawn_with, TestBroker};
use firedoor_client::Client;
use firedoor_core::api::{CreateRequest, CredentialItem};
use firedoor_core::lifecycle::GrantState;
use firedoor_core::policy::parse_policy;
use firedoor_core::GrantId;
use firedoor_server::connectors::mysql::MysqlConnector;
use firedoor_server::connectors::{Connector, Connectors, Target};
use firedoor_testkit::mariadb::{shared_mariadb, MariaDb};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const POLICY: &str = r#"
[integrations.my]
kind = "mysql"
url_env = "FIREDOOR_MYSQL_URL"

[integrations.my.permissions]
read = ["SELECT", "EXECUTE"]
write = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE", "TRIGGER", "EVENT"]

[bundles.app-read]
title = "App DB read"
resources = [{ integration = "my", resource = "DB", permission = "read" }]

[bundles.app-write]
title = "App DB write"
resources = [{ integration = "my", resource = "DB", permission = "write" }]

[flows.read]
bundles = ["app-read"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["sre-leads"] }
approvals = 1
default_duration = "15m"
max_duration = "1h"

[flows.write]
bundles = ["app-write"]
requesters = { groups = ["oncall"] }
approvals = 0
default_duration = "15m"
max_duration = "1h"
"#;

struct Setup {
    db: &'static MariaDb,
    /// The test's own database, `app_<n>`.
    app: String,
    /// The broker's admin account URL.
    url: String,
    tb: TestBroker,
}

fn policy_for(app: &str) -> String {
    POLICY.replace("\"DB\"", &format!("\"{app}\""))
}

fn connector(url: &str, policy_src: &str) -> MysqlConnector {
    let policy = parse_policy("mysql.toml", policy_src).unwrap();
    let uses: Vec<(String, String)> = policy
        .bundles
        .values()
        .flat_map(|b| &b.resources)
        .map(|r| (r.resource.clone(), r.permission.clone()))
        .collect();
    MysqlConnector::new(
        "my",
        url,
        None,
        policy.integrations["my"].kind.clone(),
        &uses,
    )
    .unwrap()
}

async fn setup() -> Setup {
    let db = shared_mariadb();
    let app = db.fresh_app();
    let url = db.broker_url(&[&app]);
    let src = policy_for(&app);
    let conn = connector(&url, &src);
    conn.check()
        .await
        .expect("the harness's broker account passes check()");
    let mut c: Connectors = BTreeMap::new();
    c.insert("my".into(), Arc::new(conn) as Arc<dyn Connector>);
    let tb = spawn_with(&src, Some(c)).await;
    Setup { db, app, url, tb }
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "mariadb client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sessions_of(db: &MariaDb, user: &str) -> i64 {
    db.root_sql(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
    ))
    .parse()
    .unwrap()
}

fn account_exists(db: &MariaDb, user: &str) -> bool {
    db.root_sql(&format!(
        "SELECT COUNT(*) FROM mysql.user WHERE User = '{user}'"
    )) != "0"
}

/// Every view, routine, trigger and event whose definer is one of `definers`
/// (`user@host`), anywhere on the server.
fn defined_by(db: &MariaDb, definers: &[&str]) -> String {
    let list: Vec<String> = definers.iter().map(|d| format!("'{d}'")).collect();
    let list = list.join(", ");
    db.root_sql(&format!(
        "SELECT GROUP_CONCAT(x ORDER BY x) FROM (
           SELECT CONCAT('view ', TABLE_SCHEMA, '.', TABLE_NAME) x FROM information_schema.VIEWS WHERE DEFINER IN ({list})
           UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE DEFINER IN ({list})
           UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE DEFINER IN ({list})
           UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS WHERE DEFINER IN ({list})) t"
    ))
}

/// The user part of a `mysql://user:password@…` URL.
fn url_user(url: &str) -> &str {
    url.trim_start_matches("mysql://")
        .split(':')
        .next()
        .unwrap()
}

async fn request(
    tb: &TestBroker,
    user: &str,
    bundle: &str,
    approver: Option<&str>,
) -> (GrantId, CredentialItem) {
    let who = tb.client(user);
    let (r, _) = who
        .create_request(
            &CreateRequest {
                bundle: bundle.into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let r = match approver {
        Some(a) => tb.client(a).approve(&r.id, None).await.unwrap(),
        None => r,
    };
    let gid = r.grant_id.unwrap();
    let c = who.credentials(&gid).await.unwrap().items.remove(0);
    (gid, c)
}

#[tokio::test]
async fn grant_connects_with_exactly_its_privileges_then_revoke_cuts_everything() {
    let Setup { db, app, tb, .. } = setup().await;
    let (gid, c) = request(&tb, "alice", "app-read", Some("bob")).await;
    assert_eq!(c.kind, "mysql");
    assert_eq!(c.resource, app);
    assert_eq!(c.port, Some(db.port));
    assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
    assert!(c.username.len() <= 32, "fits MySQL 8's user name limit");

    // The issued account logs in with the mariadb client and reads...
    assert_eq!(
        ok_stdout(&db.client(&c.username, &c.secret, &app, "SELECT COUNT(*) FROM orders")),
        "2"
    );
    // ...but cannot write (read level), nor log in with a wrong password.
    let denied = db.client(
        &c.username,
        &c.secret,
        &app,
        "INSERT INTO orders (item) VALUES ('x')",
    );
    assert!(!denied.status.success(), "a read account cannot insert");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("command denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert!(!db
        .client(&c.username, "wrong-password", &app, "SELECT 1")
        .status
        .success());
    // Exactly the level's privileges, on exactly that database: none global, and the
    // `_` in the name is not a wildcard (a database `appx<n>` is out of reach).
    let grantee = format!("'{}'@'%'", c.username);
    assert_eq!(
        db.root_sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT(REPLACE(TABLE_SCHEMA, '\\\\', ''), ':', PRIVILEGE_TYPE, ':', IS_GRANTABLE) ORDER BY PRIVILEGE_TYPE) \
             FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = \"{grantee}\""
        )),
        format!("{app}:EXECUTE:NO,{app}:SELECT:NO")
    );
    assert_eq!(
        db.root_sql(&format!(
            "SELECT GROUP_CONCAT(PRIVILEGE_TYPE) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = \"{grantee}\""
        )),
        "USAGE"
    );
    let lookalike = app.replace('_', "x");
    db.root_sql(&format!(
        "CREATE DATABASE {lookalike}; CREATE TABLE {lookalike}.t (x INT)"
    ));
    assert!(
        !db.client(&c.username, &c.secret, &lookalike, "SELECT * FROM t")
            .status
            .success(),
        "the grant's database name is not a pattern"
    );

    // An open session...
    let mut session = db.open_session(&c.username, &c.secret, &app);
    let user = c.username.clone();
    eventually("session open", || async {
        (sessions_of(db, &user) == 1).then_some(())
    })
    .await;

    let g = tb.client("alice").revoke(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::Revoked);
    // ...is gone, the account is gone, and login fails.
    assert!(
        !session.wait().unwrap().success(),
        "the open session was killed"
    );
    assert_eq!(sessions_of(db, &c.username), 0);
    assert!(!account_exists(db, &c.username), "the account is dropped");
    let after = db.client(&c.username, &c.secret, &app, "SELECT 1");
    assert!(!after.status.success(), "login fails after revoke");

    // In that order: locked first (no new session can start), then its sessions
    // killed, then dropped.
    let log = db.general_log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("the general log has {needle}"))
    };
    let created = at(&format!("CREATE USER '{}'", c.username));
    let locked = at(&format!("ALTER USER '{}'@'%' ACCOUNT LOCK", c.username));
    let killed = log[locked..].find("KILL CONNECTION").expect("a KILL") + locked;
    let dropped = at(&format!("DROP USER IF EXISTS '{}'", c.username));
    assert!(created < locked && locked < killed && killed < dropped);
    // The password never reached the server's general log (MariaDB writes
    // `IDENTIFIED BY '<password>'` there as is; the connector sends only the hash).
    assert!(
        log.contains("IDENTIFIED WITH mysql_native_password AS '*"),
        "the general log is on and has the CREATE USER, so this check means something"
    );
    assert!(
        !log.contains(&c.secret),
        "the plaintext password is not in the MariaDB general log"
    );
}

#[tokio::test]
async fn write_grant_then_expiry_through_the_worker() {
    let Setup { db, app, tb, .. } = setup().await;
    let (gid, c) = request(&tb, "alice", "app-write", None).await;
    ok_stdout(&db.client(
        &c.username,
        &c.secret,
        &app,
        "INSERT INTO orders (item) VALUES ('cake'); CREATE TABLE scratch (x INT)",
    ));
    let mut session = db.open_session(&c.username, &c.secret, &app);
    let user = c.username.clone();
    eventually("session open", || async {
        (sessions_of(db, &user) == 1).then_some(())
    })
    .await;
    assert!(account_exists(db, &c.username), "live until expiry");

    tb.advance(Duration::minutes(16));
    eventually("expired", || async {
        (tb.client("alice").grant(&gid).await.ok()?.state == GrantState::Expired).then_some(())
    })
    .await;
    assert!(
        !session.wait().unwrap().success(),
        "session killed at expiry"
    );
    assert!(!account_exists(db, &c.username));
    assert!(
        !db.client(&c.username, &c.secret, &app, "SELECT 1")
            .status
            .success(),
        "login fails after expiry"
    );
    assert_eq!(
        db.root_sql(&format!("SELECT COUNT(*) FROM {app}.orders")),
        "3",
        "data written during the grant stays"
    );
    assert_eq!(
        db.root_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{app}' AND TABLE_NAME = 'scratch'"
        )),
        "1",
        "tables have no owner in MySQL: what the grantee made stays"
    );
}

/// The same lesson as PostgreSQL's SECURITY DEFINER problem: a write grantee plants a
/// `SQL SECURITY DEFINER` procedure that writes (EXECUTE on the database is something
/// a read level may well hold), a DEFINER view, a trigger and an event, all running
/// with its rights. While both grants are live, a read grantee writes through the
/// procedure. After the write grant ends, nothing anywhere runs with the grantee's
/// rights, nothing was handed to the broker's admin, writes to the table still work
/// (a trigger left with a definer that no longer exists breaks every INSERT), and the
/// revoke's audit record lists each object.
#[tokio::test]
async fn definer_objects_do_not_outlive_the_grant() {
    let Setup { db, app, url, tb } = setup().await;
    let (wgid, w) = request(&tb, "alice", "app-write", None).await;
    ok_stdout(&db.client(
        &w.username,
        &w.secret,
        &app,
        "CREATE PROCEDURE add_order(it VARCHAR(200)) SQL SECURITY DEFINER \
           INSERT INTO orders (item) VALUES (it); \
         CREATE SQL SECURITY DEFINER VIEW all_orders AS SELECT * FROM orders; \
         CREATE TRIGGER stamp BEFORE INSERT ON orders FOR EACH ROW SET NEW.item = CONCAT(NEW.item, ''); \
         CREATE EVENT sweep ON SCHEDULE EVERY 1 HOUR DISABLE DO DELETE FROM orders WHERE item = 'x'; \
         CREATE TABLE kept (x INT)",
    ));
    let (_rgid, r) = request(&tb, "bob", "app-read", Some("erin")).await;
    ok_stdout(&db.client(
        &r.username,
        &r.secret,
        &app,
        "CALL add_order('through the writer')",
    ));
    assert_eq!(
        db.root_sql(&format!("SELECT COUNT(*) FROM {app}.orders")),
        "3",
        "while the write grant is live, its DEFINER procedure writes for a read grantee"
    );
    let wdef = format!("{}@%", w.username);
    let admin = format!("{}@%", url_user(&url));
    assert_eq!(
        defined_by(db, &[&wdef]),
        format!(
            "event {app}.sweep,procedure {app}.add_order,trigger {app}.stamp,view {app}.all_orders"
        )
    );

    let g = tb.client("alice").revoke(&wgid).await.unwrap();
    assert_eq!(g.state, GrantState::Revoked);

    // Nothing the write grantee defined is left, and nothing went to the admin.
    assert_eq!(
        defined_by(db, &[&wdef, &admin]),
        "NULL",
        "no view, routine, trigger or event runs with the grantee's or the admin's rights"
    );
    let call = db.client(&r.username, &r.secret, &app, "CALL add_order('after')");
    assert!(!call.status.success(), "the planted procedure is gone");
    assert!(!db
        .client(&r.username, &r.secret, &app, "SELECT * FROM all_orders")
        .status
        .success());
    db.root_sql(&format!(
        "INSERT INTO {app}.orders (item) VALUES ('still works')"
    ));
    assert_eq!(
        db.root_sql(&format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{app}' AND TABLE_NAME = 'kept'"
        )),
        "1",
        "tables (data) stay"
    );

    // The audit of the revoke names each object, where, who made it and what was done.
    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    let rec = audit
        .iter()
        .rfind(|a| a.action == "grant_revoked" && a.subject == wgid.to_string())
        .expect("a grant_revoked record");
    let d: serde_json::Value = serde_json::from_str(&rec.details).unwrap();
    let left = d["leftovers"].as_array().expect("leftovers in the audit");
    let mut kinds: Vec<(String, String)> = left
        .iter()
        .map(|l| {
            assert_eq!(l["integration"], "my");
            assert_eq!(l["database"], app.as_str());
            assert_eq!(l["created_by"], w.username.as_str());
            assert!(l["action"].as_str().unwrap().starts_with("dropped"), "{l}");
            (
                l["kind"].as_str().unwrap().to_string(),
                l["identity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("event".into(), format!("{app}.sweep")),
            ("procedure".into(), format!("{app}.add_order")),
            ("trigger".into(), format!("{app}.stamp on {app}.orders")),
            ("view".into(), format!("{app}.all_orders")),
        ]
    );
    let proc_action = left.iter().find(|l| l["kind"] == "procedure").unwrap()["action"]
        .as_str()
        .unwrap();
    assert!(
        proc_action.contains("SQL SECURITY DEFINER"),
        "{proc_action}"
    );
}

#[tokio::test]
async fn check_refuses_too_powerful_and_too_weak_admins() {
    let db = shared_mariadb();
    let app = db.fresh_app();
    let src = policy_for(&app);
    let n = app.trim_start_matches("app_");
    let db_grants = format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
         ALTER ROUTINE, EXECUTE, TRIGGER, EVENT ON `{}`.* TO {{acct}} WITH GRANT OPTION",
        app.replace('_', "\\_")
    );
    let needed = "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {acct}".to_string();
    let refused = |name: &str, grants: Vec<String>| {
        let url = db.account_url(&format!("{name}_{n}"), &grants);
        let src = src.clone();
        async move {
            let c = connector(&url, &src);
            c.check().await.expect_err("must be refused").0
        }
    };

    // Too powerful: root-like, SET USER, or the mysql schema.
    let e = refused(
        "fd_root_like",
        vec!["GRANT ALL PRIVILEGES ON *.* TO {acct} WITH GRANT OPTION".into()],
    )
    .await;
    assert!(
        e.contains("SUPER on *.*")
            && e.contains("WITH GRANT OPTION on *.*")
            && e.contains("refuses"),
        "{e}"
    );
    assert!(e.contains("integration 'my'"), "names the integration: {e}");
    let e = refused(
        "fd_set_user",
        vec![
            "GRANT CREATE USER, PROCESS, CONNECTION ADMIN, SET USER ON *.* TO {acct}".into(),
            db_grants.clone(),
        ],
    )
    .await;
    assert!(e.contains("SET USER on *.*"), "{e}");
    let e = refused(
        "fd_mysql_schema",
        vec![
            needed.clone(),
            db_grants.clone(),
            "GRANT SELECT, UPDATE ON mysql.* TO {acct}".into(),
        ],
    )
    .await;
    assert!(e.contains("mysql schema"), "{e}");

    // Too weak: cannot create accounts, cannot kill sessions, cannot pass on the
    // level's privileges, cannot drop what grantees define.
    let e = refused(
        "fd_no_create_user",
        vec![
            "GRANT PROCESS, CONNECTION ADMIN ON *.* TO {acct}".into(),
            db_grants.clone(),
        ],
    )
    .await;
    assert!(e.contains("lacks CREATE USER on *.*"), "{e}");
    let e = refused(
        "fd_no_kill",
        vec![
            "GRANT CREATE USER ON *.* TO {acct}".into(),
            db_grants.clone(),
        ],
    )
    .await;
    assert!(
        e.contains("PROCESS") && e.contains("CONNECTION ADMIN"),
        "{e}"
    );
    let e = refused(
        "fd_no_grant_option",
        vec![
            needed.clone(),
            format!(
                "GRANT SELECT, EXECUTE ON `{}`.* TO {{acct}}",
                app.replace('_', "\\_")
            ),
        ],
    )
    .await;
    assert!(
        e.contains(&format!(
            "EVENT, EXECUTE, INSERT, SELECT, SHOW VIEW, TRIGGER, UPDATE ON `{app}`.* WITH GRANT OPTION"
        )),
        "names each privilege the levels grant that it cannot pass on: {e}"
    );
    assert!(
        e.contains("ALTER ROUTINE ON"),
        "cleanup privileges named: {e}"
    );

    // A connector whose admin is too powerful provisions nothing either (every new
    // pooled connection is checked), with the same message.
    let url = db.account_url(
        &format!("fd_root_like2_{n}"),
        &["GRANT ALL PRIVILEGES ON *.* TO {acct} WITH GRANT OPTION".into()],
    );
    let c = connector(&url, &src);
    let policy = parse_policy("mysql.toml", &src).unwrap();
    let t = Target {
        grant_id: GrantId::new(),
        index: 0,
        holder: "alice",
        resource: &policy.bundles["app-read"].resources[0],
        expires_at: chrono::Utc::now() + Duration::minutes(15),
    };
    let e = c.provision(&t).await.expect_err("refused").0;
    assert!(e.contains("SUPER on *.*"), "{e}");

    // The harness's account, made as the README says, passes.
    connector(&db.broker_url(&[&app]), &src)
        .check()
        .await
        .expect("a dedicated account passes");
}

#[tokio::test]
async fn provisioning_again_replaces_an_earlier_attempt_and_rotation_sets_a_hash() {
    let db = shared_mariadb();
    let app = db.fresh_app();
    let src = policy_for(&app);
    let url = db.broker_url(&[&app]);
    let conn = connector(&url, &src);
    let policy = parse_policy("mysql.toml", &src).unwrap();
    let t = Target {
        grant_id: GrantId::new(),
        index: 0,
        holder: "Alice.Smith@example.com",
        resource: &policy.bundles["app-read"].resources[0],
        expires_at: chrono::Utc::now() + Duration::minutes(15),
    };
    let first = conn.provision(&t).await.unwrap();
    assert!(
        first.username.starts_with("fd_alice_sm_"),
        "{}",
        first.username
    );
    let again = conn.provision(&t).await.unwrap();
    assert_eq!(first.username, again.username);
    assert!(!db
        .client(&first.username, &first.secret, &app, "SELECT 1")
        .status
        .success());
    ok_stdout(&db.client(
        &again.username,
        &again.secret,
        &app,
        "SELECT COUNT(*) FROM orders",
    ));
    let report = conn.deprovision(&t).await.unwrap();
    assert!(report.leftovers.is_empty());
    conn.deprovision(&t)
        .await
        .expect("deprovisioning what is gone succeeds");
    assert!(!account_exists(db, &again.username));

    // A GRANT the admin may not give fails after CREATE USER succeeded (account DDL
    // is not transactional): the half-made account is dropped, the error says why.
    let bad_src = src.replace(
        "read = [\"SELECT\", \"EXECUTE\"]",
        "read = [\"SELECT\", \"LOCK TABLES\"]",
    );
    let bad_policy = parse_policy("mysql.toml", &bad_src).unwrap();
    let bad = connector(&url, &bad_src);
    let t2 = Target {
        grant_id: GrantId::new(),
        index: 0,
        holder: "alice",
        resource: &bad_policy.bundles["app-read"].resources[0],
        expires_at: chrono::Utc::now() + Duration::minutes(15),
    };
    let e = bad
        .provision(&t2)
        .await
        .expect_err("the admin cannot grant LOCK TABLES")
        .0;
    assert!(e.contains("LOCK TABLES"), "{e}");
    assert!(
        !account_exists(db, &MysqlConnector::account_name(&t2)),
        "no account left half-made"
    );

    // Break glass: a standing account's password set as a hash only.
    let bg = format!("fd_bg_{}", app.trim_start_matches("app_"));
    db.root_sql(&format!(
        "CREATE USER '{bg}'@'%' ACCOUNT LOCK; GRANT SELECT ON `{}`.* TO '{bg}'@'%'; ALTER USER '{bg}'@'%' ACCOUNT UNLOCK",
        app.replace('_', "\\_")
    ));
    let secret = "Rotated-Secret-For-Break-Glass-0123";
    conn.rotate_secret(&bg, secret).await.unwrap();
    ok_stdout(&db.client(&bg, secret, &app, "SELECT COUNT(*) FROM orders"));
    assert!(!db.general_log().contains(secret), "only the hash was sent");
    let e = conn
        .rotate_secret("fd_nobody_here", secret)
        .await
        .expect_err("no such account")
        .0;
    assert!(e.contains("does not exist") && !e.contains(secret), "{e}");
}

// ---- The real binary: SIGKILL during grants, restart, revoked at expiry ----

const BIN: &str = env!("CARGO_BIN_EXE_firedoor-server");

struct Broker {
    child: Child,
    url: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Starts `firedoor-server serve`, its log (debug and above) appended to `log`.
async fn serve(
    data: &Path,
    policy: &Path,
    url: &str,
    port: u16,
    offset: i64,
    log: &Path,
) -> Broker {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .arg("--policy")
        .arg(policy)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--clock-offset-secs", &offset.to_string()])
        .env("FIREDOOR_MYSQL_URL", url)
        .env("FIREDOOR_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let c = Client::new(&url, None).unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while c.health().await.is_err() {
        assert!(Instant::now() < deadline, "broker did not come up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Broker { child, url }
}

#[tokio::test]
async fn sigkilled_broker_revokes_mysql_grants_at_restart() {
    let db = shared_mariadb();
    let app = db.fresh_app();
    let url = db.broker_url(&[&app]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = tmp.path().join("policy.toml");
    // The write flow approves at once.
    std::fs::write(&policy, policy_for(&app)).unwrap();
    let log = tmp.path().join("broker.log");
    let out = cli(&data, &["user", "add", "alice", "--group", "oncall"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let port = free_port();
    let mut offset = 0i64;
    let mut all: Vec<CredentialItem> = Vec::new();

    // A few trials: grants issued, the broker SIGKILLed while they are live, back
    // two minutes later (the clock is shifted instead of waiting).
    for trial in 0..2 {
        let mut broker = serve(&data, &policy, &url, port, offset, &log).await;
        let alice = Client::new(&broker.url, Some(&token)).unwrap();
        let mut issued = Vec::new();
        for i in 0..2 {
            let (r, _) = alice
                .create_request(
                    &CreateRequest {
                        bundle: "app-write".into(),
                        duration_secs: Some(60),
                        ..Default::default()
                    },
                    Some(&format!("t{trial}k{i}")),
                )
                .await
                .unwrap();
            let gid = r.grant_id.unwrap();
            let c = alice.credentials(&gid).await.unwrap().items.remove(0);
            ok_stdout(&db.client(&c.username, &c.secret, &app, "SELECT COUNT(*) FROM orders"));
            issued.push((gid, c));
        }
        broker.child.kill().unwrap(); // SIGKILL: no chance to clean up.
        broker.child.wait().unwrap();
        for (_, c) in &issued {
            assert!(
                db.client(&c.username, &c.secret, &app, "SELECT 1")
                    .status
                    .success(),
                "still live while the broker is down"
            );
        }

        offset += 120;
        let broker = serve(&data, &policy, &url, port, offset, &log).await;
        let alice = Client::new(&broker.url, Some(&token)).unwrap();
        for (gid, c) in &issued {
            let deadline = Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let g = alice.grant(gid).await.unwrap();
                if g.state == GrantState::Expired {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "trial {trial}: grant {gid} revoked after restart, is {:?}",
                    g.state
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(
                !db.client(&c.username, &c.secret, &app, "SELECT 1")
                    .status
                    .success(),
                "trial {trial}: login fails after restart"
            );
            assert!(!account_exists(db, &c.username));
        }
        drop(broker);
        all.extend(issued.into_iter().map(|(_, c)| c));
    }

    let v = cli(&data, &["audit", "verify"]);
    assert!(
        v.status.success(),
        "audit chain verifies after the crashes: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    // No issued password in the broker's log, in its files, or in MariaDB's log.
    let broker_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        broker_log.contains("DEBUG"),
        "the broker logged at debug, so this check means something: {broker_log}"
    );
    let general = db.general_log();
    for c in &all {
        assert!(
            !broker_log.contains(&c.secret),
            "password not in the broker's log"
        );
        assert!(
            !general.contains(&c.secret),
            "password not in MariaDB's general log"
        );
        for entry in std::fs::read_dir(&data).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&c.secret),
                "password not stored in plaintext"
            );
        }
    }
}

#[tokio::test]
async fn serve_refuses_a_root_like_mysql_admin() {
    let db = shared_mariadb();
    let app = db.fresh_app();
    let n = app.trim_start_matches("app_");
    let url = db.account_url(
        &format!("fd_serve_root_like_{n}"),
        &["GRANT ALL PRIVILEGES ON *.* TO {acct} WITH GRANT OPTION".into()],
    );
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, policy_for(&app)).unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg("serve")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("FIREDOOR_MYSQL_URL", &url)
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("integration 'my'") && stderr.contains("SUPER on *.*"),
        "says which integration and why: {stderr}"
    );
    assert!(
        !stderr.contains(password),
        "never echoes the admin password"
    );
}
