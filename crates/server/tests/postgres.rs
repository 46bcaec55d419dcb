//! The PostgreSQL connector against a real PostgreSQL server that the harness starts:
//! issued roles log in with `psql` and see the granted tables; after revoke or
//! expiry login fails and open sessions are gone. These tests fail, never skip,
//! when PostgreSQL is missing.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::Duration;
use common::{eventually, spawn_with, TestBroker};
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::GrantState;
use firedoor_core::policy::parse_policy;
use firedoor_server::connectors::postgres::PostgresConnector;
use firedoor_server::connectors::{Connector, Connectors};
use firedoor_testkit::PgServer;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "UNUSED_IN_THESE_TESTS"
permissions = { read = ["app_read"], write = ["app_write"] }

[bundles.app-read]
title = "App DB read"
resources = [{ integration = "pg", resource = "app", permission = "read" }]

[bundles.app-write]
title = "App DB write"
resources = [{ integration = "pg", resource = "app", permission = "write" }]

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

async fn setup() -> (PgServer, TestBroker) {
    setup_with(POLICY).await
}

async fn setup_with(policy_src: &str) -> (PgServer, TestBroker) {
    let pg = PgServer::start();
    pg.seed_app();
    // As a DBA would for data fixes: write grantees may create objects in public.
    pg.admin("app", "GRANT CREATE ON SCHEMA public TO app_write");
    let policy = parse_policy("pg.toml", policy_src).unwrap();
    let conn = PostgresConnector::new(
        "pg",
        &pg.app_broker_url(&[]),
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    let mut c: Connectors = BTreeMap::new();
    c.insert("pg".into(), Arc::new(conn) as Arc<dyn Connector>);
    let tb = spawn_with(policy_src, Some(c)).await;
    (pg, tb)
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A psql session held open as `user` (it sleeps on the server).
fn open_session(pg: &PgServer, user: &str, password: &str) -> Child {
    Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-p"])
        .arg(pg.port.to_string())
        .args(["-U", user, "-d", "app", "-c", "SELECT pg_sleep(120)"])
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sessions_of(pg: &PgServer, role: &str) -> i64 {
    pg.admin(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"),
    )
    .parse()
    .unwrap()
}

#[tokio::test]
async fn grant_logs_in_then_revoke_cuts_everything() {
    let (pg, tb) = setup().await;
    let alice = tb.client("alice");
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
    let r = tb.client("bob").approve(&r.id, None).await.unwrap();
    let gid = r.grant_id.unwrap();
    let creds = alice.credentials(&gid).await.unwrap();
    let c = &creds.items[0];
    assert_eq!(c.kind, "postgres");
    assert_eq!(c.port, Some(pg.port));

    // The issued role logs in with psql and reads the granted table...
    assert_eq!(
        ok_stdout(&pg.psql(&c.username, &c.secret, "app", "SELECT count(*) FROM orders")),
        "2"
    );
    // ...but cannot write (read permission), nor log in with a wrong password.
    let denied = pg.psql(
        &c.username,
        &c.secret,
        "app",
        "INSERT INTO orders (item) VALUES ('x')",
    );
    assert!(!denied.status.success(), "read role cannot insert");
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"));
    assert!(!pg
        .psql(&c.username, "wrong-password", "app", "SELECT 1")
        .status
        .success());

    // The backstop expiry is set in PostgreSQL itself.
    let valid_until = pg.admin(
        "postgres",
        &format!("SELECT to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM pg_roles WHERE rolname = '{}'", c.username),
    );
    assert_eq!(
        valid_until,
        (common::t0() + Duration::minutes(15))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    );

    // An open session...
    let mut session = open_session(&pg, &c.username, &c.secret);
    let role = c.username.clone();
    eventually("session open", || async {
        (sessions_of(&pg, &role) == 1).then_some(())
    })
    .await;

    let g = alice.revoke(&gid).await.unwrap();
    assert_eq!(g.state, GrantState::Revoked);
    // ...is gone, the role is gone, and login fails.
    let status = session.wait().unwrap();
    assert!(!status.success(), "the open session was terminated");
    assert_eq!(sessions_of(&pg, &c.username), 0);
    assert_eq!(
        pg.admin(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = '{}'",
                c.username
            )
        ),
        "0"
    );
    let after = pg.psql(&c.username, &c.secret, "app", "SELECT 1");
    assert!(!after.status.success(), "login fails after revoke");

    // The password never reached the server's statement log.
    let log = pg.log();
    assert!(
        log.contains("CREATE ROLE"),
        "statement logging is on, so this check means something"
    );
    assert!(
        !log.contains(&c.secret),
        "the plaintext password is not in the PostgreSQL log"
    );
}

#[tokio::test]
async fn expiry_drops_the_role_and_objects_it_made() {
    let (pg, tb) = setup().await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "app-write".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    let c = alice.credentials(&gid).await.unwrap().items.remove(0);
    ok_stdout(&pg.psql(
        &c.username,
        &c.secret,
        "app",
        "INSERT INTO orders (item) VALUES ('cake')",
    ));
    // An object the role owns would block DROP ROLE; the connector hands it back.
    pg.admin("app", "GRANT CREATE ON SCHEMA public TO app_write");
    ok_stdout(&pg.psql(
        &c.username,
        &c.secret,
        "app",
        "CREATE TABLE scratch (x int)",
    ));
    let mut session = open_session(&pg, &c.username, &c.secret);
    let role = c.username.clone();
    eventually("session open", || async {
        (sessions_of(&pg, &role) == 1).then_some(())
    })
    .await;

    tb.advance(Duration::minutes(16));
    eventually("expired", || async {
        (alice.grant(&gid).await.ok()?.state == GrantState::Expired).then_some(())
    })
    .await;
    assert!(
        !session.wait().unwrap().success(),
        "session terminated at expiry"
    );
    assert!(
        !pg.psql(&c.username, &c.secret, "app", "SELECT 1")
            .status
            .success(),
        "login fails after expiry"
    );
    assert_eq!(
        pg.admin("app", "SELECT count(*) FROM orders"),
        "3",
        "data written during the grant stays"
    );
    assert_eq!(
        pg.admin(
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'scratch'"
        ),
        "firedoor_orphans",
        "objects the role made go to the orphan role, never to the admin"
    );
}

#[tokio::test]
async fn failed_deprovision_is_retried_and_visible() {
    let (mut pg, tb) = setup().await;
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "app-write".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    let c = alice.credentials(&gid).await.unwrap().items.remove(0);

    pg.stop();
    let g = alice.revoke(&gid).await.unwrap();
    assert_eq!(
        g.state,
        GrantState::RevokeFailed,
        "shows as revoke_failed, not silently dropped"
    );
    assert!(
        g.last_error
            .as_deref()
            .is_some_and(|e| e.contains("postgres")),
        "{:?}",
        g.last_error
    );
    let retry_at = g.next_attempt_at.expect("a retry is scheduled");
    assert!(retry_at > common::t0(), "with backoff");
    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "grant_revoke_failed"));

    pg.start_again();
    assert!(
        pg.psql(&c.username, &c.secret, "app", "SELECT 1")
            .status
            .success(),
        "still live until the retry"
    );
    tb.advance(Duration::seconds(5));
    eventually("retried revoke", || async {
        (alice.grant(&gid).await.ok()?.state == GrantState::Revoked).then_some(())
    })
    .await;
    assert!(
        !pg.psql(&c.username, &c.secret, "app", "SELECT 1")
            .status
            .success(),
        "login fails after the retry"
    );
}

const BREAKGLASS_POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "UNUSED_IN_THESE_TESTS"
permissions = { read = ["app_read"] }

[secrets.payments-db-breakglass]
unlock = { groups = ["oncall"] }
alert = { groups = ["security"] }
rotate = { integration = "pg", role = "fd_breakglass" }
"#;

async fn bg_call(
    tb: &TestBroker,
    method: &str,
    path: &str,
    user: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let http = reqwest::Client::new();
    let mut r = http
        .request(method.parse().unwrap(), tb.url(path))
        .bearer_auth(tb.token(user));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

#[tokio::test]
async fn break_glass_rotation_changes_the_role_password() {
    use firedoor_core::breakglass::{
        encode_public_key, EnvelopeList, SignedRecord, UnlockRecord, GENESIS_HASH,
    };
    use firedoor_server::connectors::postgres::scram_verifier;

    let pg = PgServer::start();
    pg.seed_app();
    // The standing break-glass role. Its first password is set as a SCRAM verifier
    // too, so no plaintext password ever reaches the server's statement log.
    let initial = "initial-Bg-7f3a9c2e1d";
    pg.admin(
        "app",
        &format!(
            "CREATE ROLE fd_breakglass LOGIN PASSWORD '{}'; GRANT app_read TO fd_breakglass;
             GRANT CONNECT ON DATABASE app TO fd_breakglass;",
            scram_verifier(initial)
        ),
    );
    assert_eq!(
        ok_stdout(&pg.psql(
            "fd_breakglass",
            initial,
            "app",
            "SELECT count(*) FROM orders"
        )),
        "2"
    );
    let policy = parse_policy("bg.toml", BREAKGLASS_POLICY).unwrap();
    let conn = PostgresConnector::new(
        "pg",
        &pg.app_broker_url(&["fd_breakglass"]),
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    let mut c: Connectors = BTreeMap::new();
    c.insert("pg".into(), Arc::new(conn) as Arc<dyn Connector>);
    let tb = spawn_with(BREAKGLASS_POLICY, Some(c)).await;

    let identity = age::x25519::Identity::generate();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let dev = bg_call(
        &tb,
        "POST",
        "/devices",
        "alice",
        Some(serde_json::json!({
            "name": "laptop", "recipient": identity.to_public().to_string(),
            "signing_key": encode_public_key(&key.verifying_key()),
        })),
    )
    .await;
    let dev_id = dev["id"].as_str().unwrap().to_string();
    let v = bg_call(
        &tb,
        "PUT",
        "/secrets/payments-db-breakglass",
        "carol",
        Some(serde_json::json!({ "value": initial })),
    )
    .await;
    assert_eq!(v["version"], 1);
    let open = |list: &EnvelopeList| {
        String::from_utf8(
            age::decrypt(&identity, list.envelopes[0].envelope.ciphertext.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let list: EnvelopeList = serde_json::from_value(
        bg_call(
            &tb,
            "GET",
            &format!("/devices/{dev_id}/envelopes"),
            "alice",
            None,
        )
        .await,
    )
    .unwrap();
    assert_eq!(open(&list), initial);

    // Offline unlock, reported later.
    let rec = UnlockRecord {
        format: 1,
        seq: 1,
        device_id: dev_id.clone(),
        user: "alice".into(),
        secret: "payments-db-breakglass".into(),
        version: 1,
        at: common::t0(),
        reason: "INC-3 payments DB".into(),
        mode: "offline".into(),
        prev_hash: GENESIS_HASH.into(),
        incident: None,
        quorum: None,
    };
    let ack = bg_call(
        &tb,
        "POST",
        &format!("/devices/{dev_id}/unlocks"),
        "alice",
        Some(serde_json::json!({ "records": [SignedRecord::sign(&rec, &key)] })),
    )
    .await;
    assert_eq!(ack["rotating"][0], "payments-db-breakglass");
    tb.running.run_due_work().await.unwrap();
    eventually("rotated", || async {
        let l = bg_call(&tb, "GET", "/secrets", "carol", None).await;
        (l["secrets"][0]["version"] == 2).then_some(())
    })
    .await;

    let old = pg.psql("fd_breakglass", initial, "app", "SELECT 1");
    assert!(
        !old.status.success(),
        "the unlocked password no longer logs in"
    );
    let list: EnvelopeList = serde_json::from_value(
        bg_call(
            &tb,
            "GET",
            &format!("/devices/{dev_id}/envelopes"),
            "alice",
            None,
        )
        .await,
    )
    .unwrap();
    let new = open(&list);
    assert_ne!(new, initial);
    assert_eq!(
        ok_stdout(&pg.psql("fd_breakglass", &new, "app", "SELECT count(*) FROM orders")),
        "2",
        "the value in the new envelope logs in"
    );

    // A role that does not exist: a clear, recorded error, and the secret stays due.
    pg.admin(
        "app",
        "DROP OWNED BY fd_breakglass; DROP ROLE fd_breakglass",
    );
    let rotated = bg_call(
        &tb,
        "POST",
        "/secrets/payments-db-breakglass/rotate",
        "carol",
        None,
    )
    .await;
    let err = rotated["last_rotation_error"].as_str().unwrap();
    assert!(err.contains("role fd_breakglass does not exist"), "{err}");
    assert_eq!(rotated["version"], 2);

    let log = pg.log();
    assert!(
        log.contains("ALTER ROLE \"fd_breakglass\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$"),
        "statement logging is on and shows only the verifier"
    );
    for p in [initial, new.as_str()] {
        assert!(
            !log.contains(p),
            "a break-glass password is in the PostgreSQL log"
        );
    }
}

/// A write grant for alice (the write flow approves automatically).
async fn write_grant(
    tb: &TestBroker,
) -> (firedoor_core::GrantId, firedoor_core::api::CredentialItem) {
    let alice = tb.client("alice");
    let (r, _) = alice
        .create_request(
            &CreateRequest {
                bundle: "app-write".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    let c = alice.credentials(&gid).await.unwrap().items.remove(0);
    (gid, c)
}

/// A read grant for `user`, approved by erin.
async fn read_grant(
    tb: &TestBroker,
    user: &str,
) -> (firedoor_core::GrantId, firedoor_core::api::CredentialItem) {
    let who = tb.client(user);
    let (r, _) = who
        .create_request(
            &CreateRequest {
                bundle: "app-read".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let r = tb.client("erin").approve(&r.id, None).await.unwrap();
    let gid = r.grant_id.unwrap();
    let c = who.credentials(&gid).await.unwrap().items.remove(0);
    (gid, c)
}

/// The details of the audit record `action` about grant `gid`.
async fn audit_details(
    tb: &TestBroker,
    action: &str,
    gid: &firedoor_core::GrantId,
) -> serde_json::Value {
    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    let rec = audit
        .iter()
        .rfind(|a| a.action == action && a.subject == gid.to_string())
        .unwrap_or_else(|| panic!("no {action} audit record for {gid}"));
    serde_json::from_str(&rec.details).unwrap()
}

/// ATTACK (issue 8, item 1): a write grantee plants a `SECURITY DEFINER` function that
/// runs its text argument (EXECUTE is granted to PUBLIC by default). When the grant
/// ends, its objects used to be handed to the broker's admin, a superuser, so the
/// function then ran as superuser, and any later grantee, even read-only, could call
/// it to make itself a superuser. Now the function goes to the orphan role (NOLOGIN,
/// no privileges), becomes SECURITY INVOKER, loses every EXECUTE grant, and the audit
/// record of the revoke says what the grant role left behind and where it went.
#[tokio::test]
async fn security_definer_backdoor_does_not_outlive_the_grant() {
    let (pg, tb) = setup().await;
    let (wgid, w) = write_grant(&tb).await;
    ok_stdout(&pg.psql(
        &w.username,
        &w.secret,
        "app",
        "CREATE FUNCTION public.run_sql(cmd text) RETURNS void LANGUAGE plpgsql \
         SECURITY DEFINER AS $$ BEGIN EXECUTE cmd; END $$",
    ));
    let g = tb.client("alice").revoke(&wgid).await.unwrap();
    assert_eq!(g.state, GrantState::Revoked);

    // Later, a read-only grantee finds the function and tries to become superuser.
    let (_rgid, r) = read_grant(&tb, "bob").await;
    let out = pg.psql(
        &r.username,
        &r.secret,
        "app",
        "SELECT public.run_sql('CREATE ROLE x SUPERUSER LOGIN')",
    );
    assert!(
        !out.status.success(),
        "the planted function still runs for a later grantee"
    );
    let _ = pg.psql(
        &r.username,
        &r.secret,
        "app",
        &format!(
            "SELECT public.run_sql('ALTER ROLE {} SUPERUSER')",
            r.username
        ),
    );
    assert_eq!(
        pg.admin(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname <> 'firedoor_admin'"
        ),
        "0",
        "no new superuser"
    );
    // The function is kept, owned by the orphan role, and inert.
    assert_eq!(
        pg.admin(
            "app",
            "SELECT pg_get_userbyid(proowner) || ' ' || prosecdef || ' ' || coalesce(proacl::text, 'default') \
             FROM pg_proc WHERE proname = 'run_sql'"
        ),
        "firedoor_orphans false {firedoor_orphans=X/firedoor_orphans}"
    );

    // The audit of the revoke names what was left behind, where, who made it and
    // where it went.
    let d = audit_details(&tb, "grant_revoked", &wgid).await;
    let left = d["leftovers"].as_array().expect("leftovers in the audit");
    let f = left
        .iter()
        .find(|l| l["identity"] == "public.run_sql(pg_catalog.text)")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(f["integration"], "pg");
    assert_eq!(f["database"], "app");
    assert_eq!(f["kind"], "function");
    assert_eq!(f["created_by"], w.username.as_str());
    let action = f["action"].as_str().unwrap();
    assert!(
        action.contains("firedoor_orphans") && action.contains("SECURITY INVOKER"),
        "{action}"
    );
}

/// Tables (and views) a write grantee created hold data someone may need, so under
/// the default `on_revoke = "reassign"` they are kept, owned by the orphan role,
/// with every privilege others were given on them revoked: no later grantee can read
/// them through a grant the old role handed out. This also covers a second database
/// the grantee could create in: every database where the role owns something is
/// cleaned, not just the granted one.
#[tokio::test]
async fn write_grantee_tables_are_kept_by_the_orphan_role_with_no_privileges() {
    let (pg, tb) = setup().await;
    pg.admin("postgres", "CREATE DATABASE other");
    pg.admin("other", "GRANT CREATE ON SCHEMA public TO app_write");
    let (wgid, w) = write_grant(&tb).await;
    ok_stdout(&pg.psql(
        &w.username,
        &w.secret,
        "app",
        "CREATE TABLE public.scratch (x int); INSERT INTO public.scratch VALUES (1);
         GRANT SELECT ON public.scratch TO PUBLIC; GRANT ALL ON public.scratch TO app_read;
         GRANT SELECT (x) ON public.scratch TO app_write;
         CREATE VIEW public.scratch_v AS SELECT * FROM public.scratch;
         GRANT SELECT ON public.scratch_v TO app_read;",
    ));
    ok_stdout(&pg.psql(
        &w.username,
        &w.secret,
        "other",
        "CREATE FUNCTION public.run_sql(cmd text) RETURNS void LANGUAGE plpgsql \
         SECURITY DEFINER AS $$ BEGIN EXECUTE cmd; END $$;
         CREATE TABLE public.t2 (y int);",
    ));

    tb.advance(Duration::minutes(16));
    eventually("expired", || async {
        (tb.client("alice").grant(&wgid).await.ok()?.state == GrantState::Expired).then_some(())
    })
    .await;

    // Kept, with its data, owned by the orphan role.
    assert_eq!(pg.admin("app", "SELECT count(*) FROM public.scratch"), "1");
    assert_eq!(
        pg.admin(
            "app",
            "SELECT string_agg(relname || ':' || pg_get_userbyid(relowner), ',' ORDER BY relname)
             FROM pg_class WHERE relname IN ('scratch', 'scratch_v')"
        ),
        "scratch:firedoor_orphans,scratch_v:firedoor_orphans"
    );
    // Nobody but the owner holds a privilege on them, table- or column-level.
    assert_eq!(
        pg.admin(
            "app",
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.relname IN ('scratch', 'scratch_v') AND a.grantee <> c.relowner"
        ),
        "0"
    );
    assert_eq!(
        pg.admin(
            "app",
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.scratch'::regclass AND attacl IS NOT NULL"
        ),
        "0"
    );
    // The orphan role cannot log in, is a member of nothing and has no attributes.
    assert_eq!(
        pg.admin(
            "postgres",
            "SELECT rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
                    OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid)
             FROM pg_roles r WHERE rolname = 'firedoor_orphans'"
        ),
        "f"
    );
    // A later read grantee cannot read them.
    let (_, r) = read_grant(&tb, "bob").await;
    for sql in [
        "SELECT * FROM public.scratch",
        "SELECT * FROM public.scratch_v",
    ] {
        let out = pg.psql(&r.username, &r.secret, "app", sql);
        assert!(!out.status.success(), "{sql} is refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    }
    // The data the grant was for is untouched, and app_write still works for others.
    assert_eq!(pg.admin("app", "SELECT count(*) FROM orders"), "2");
    // In the other database too: the function is inert and orphaned.
    assert_eq!(
        pg.admin(
            "other",
            "SELECT pg_get_userbyid(proowner) || ' ' || prosecdef FROM pg_proc WHERE proname = 'run_sql'"
        ),
        "firedoor_orphans false"
    );

    // The expiry's audit record lists each, in its database.
    let d = audit_details(&tb, "grant_expired", &wgid).await;
    let left: Vec<(String, String, String)> = d["leftovers"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"))
        .iter()
        .map(|l| {
            assert_eq!(l["created_by"], w.username.as_str());
            (
                l["database"].as_str().unwrap().to_string(),
                l["kind"].as_str().unwrap().to_string(),
                l["identity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("app", "table", "public.scratch"),
        ("app", "view", "public.scratch_v"),
        ("other", "function", "public.run_sql(pg_catalog.text)"),
        ("other", "table", "public.t2"),
    ] {
        assert!(
            left.iter()
                .any(|l| (l.0.as_str(), l.1.as_str(), l.2.as_str()) == want),
            "{want:?} in {left:?}"
        );
    }
}

/// Under `on_revoke = "drop"` what the grantee made is dropped. DROP OWNED runs
/// without CASCADE: when someone else's object depends on one of them (here a view a
/// DBA built on the grantee's table) the revoke fails with a clear message and is
/// retried, but login is already disabled and the grantee's functions already
/// inert; once the dependency is gone the retry finishes.
#[tokio::test]
async fn on_revoke_drop_drops_what_the_grantee_made() {
    let policy = POLICY.replace(
        "permissions = { read",
        "on_revoke = \"drop\"\npermissions = { read",
    );
    let (pg, tb) = setup_with(&policy).await;
    let (wgid, w) = write_grant(&tb).await;
    ok_stdout(&pg.psql(
        &w.username,
        &w.secret,
        "app",
        "CREATE TABLE public.scratch (x int);
         CREATE FUNCTION public.run_sql(cmd text) RETURNS void LANGUAGE plpgsql \
         SECURITY DEFINER AS $$ BEGIN EXECUTE cmd; END $$;",
    ));
    pg.admin(
        "app",
        "CREATE VIEW public.dba_view AS SELECT * FROM public.scratch",
    );

    let alice = tb.client("alice");
    let g = alice.revoke(&wgid).await.unwrap();
    assert_eq!(g.state, GrantState::RevokeFailed);
    let e = g.last_error.unwrap_or_default();
    assert!(
        e.contains("on_revoke = \"drop\"") && e.contains("depend"),
        "{e}"
    );
    assert!(
        !pg.psql(&w.username, &w.secret, "app", "SELECT 1")
            .status
            .success(),
        "login is disabled while the revoke waits"
    );
    assert_eq!(
        pg.admin(
            "app",
            "SELECT prosecdef::text || ' ' || coalesce(proacl::text, 'default') FROM pg_proc WHERE proname = 'run_sql'"
        ),
        format!("false {{{}=X/{}}}", w.username, w.username),
        "the function is already inert"
    );

    pg.admin("app", "DROP VIEW public.dba_view");
    tb.advance(Duration::seconds(5));
    eventually("retried revoke", || async {
        (alice.grant(&wgid).await.ok()?.state == GrantState::Revoked).then_some(())
    })
    .await;
    assert_eq!(
        pg.admin(
            "app",
            "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'scratch')
                  + (SELECT count(*) FROM pg_proc WHERE proname = 'run_sql')"
        ),
        "0",
        "dropped"
    );
    let d = audit_details(&tb, "grant_revoked", &wgid).await;
    let left = d["leftovers"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(left.len(), 2, "{d}");
    assert!(left.iter().all(|l| l["action"] == "dropped"), "{d}");
    assert_eq!(
        pg.admin(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'firedoor_orphans'"
        ),
        "0",
        "no orphan role is needed when nothing is kept"
    );
}

/// An orphan role that could be used (it can log in, or someone is a member of
/// it) would make everything handed to it reachable again: the revoke refuses,
/// says why, and keeps retrying; login is disabled all the same.
#[tokio::test]
async fn an_orphan_role_that_can_log_in_is_refused() {
    let (pg, tb) = setup().await;
    pg.admin("postgres", "CREATE ROLE firedoor_orphans LOGIN");
    let (wgid, w) = write_grant(&tb).await;
    let g = tb.client("alice").revoke(&wgid).await.unwrap();
    assert_eq!(g.state, GrantState::RevokeFailed);
    let e = g.last_error.unwrap_or_default();
    assert!(e.contains("orphan role firedoor_orphans can log in"), "{e}");
    assert!(!pg
        .psql(&w.username, &w.secret, "app", "SELECT 1")
        .status
        .success());
}

/// The connector never acts through a superuser connection, even when the check
/// at start did not run or could not (PostgreSQL down then): every new pooled
/// connection is checked, and the operation fails saying why.
#[tokio::test]
async fn the_connector_refuses_to_act_as_a_superuser() {
    let pg = PgServer::start();
    pg.seed_app();
    let policy = parse_policy("pg.toml", POLICY).unwrap();
    let conn = PostgresConnector::new(
        "pg",
        &pg.admin_url("postgres"),
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    let e = conn.check().await.expect_err("superuser refused at start");
    assert!(
        e.0.contains("integration 'pg'") && e.0.contains("superuser"),
        "{e}"
    );
    let resource = &policy.bundles["app-read"].resources[0];
    let t = firedoor_server::connectors::Target {
        grant_id: firedoor_core::GrantId::new(),
        index: 0,
        holder: "alice",
        resource,
        expires_at: common::t0() + Duration::minutes(15),
    };
    let e = conn.provision(&t).await.expect_err("refused");
    assert!(e.0.contains("superuser"), "{e}");
    assert_eq!(
        pg.admin(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'fd_%'"
        ),
        "0",
        "nothing was created"
    );

    // A proper admin works; made a superuser while the broker runs, its pooled
    // connections are refused before their next use.
    let conn = PostgresConnector::new(
        "pg",
        &pg.app_broker_url(&[]),
        None,
        policy.integrations["pg"].kind.clone(),
    )
    .unwrap();
    conn.check().await.unwrap();
    let c = conn.provision(&t).await.unwrap();
    assert!(c.username.starts_with("fd_alice_"));
    pg.admin("postgres", "ALTER ROLE firedoor_broker SUPERUSER");
    let e = conn.deprovision(&t).await.expect_err("refused");
    assert!(e.0.contains("superuser"), "{e}");
    assert_eq!(
        pg.admin(
            "postgres",
            &format!(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'",
                c.username
            )
        ),
        "t",
        "the superuser connection did nothing"
    );
}

/// The requests, grants and events of the store run the same SQL on SQLite and on
/// PostgreSQL: one walk through a request's and a grant's life on each.
async fn store_walk(store: &firedoor_server::store::Store) {
    use firedoor_core::lifecycle::{EndReason, RequestState};
    use firedoor_server::store::grants::NewGrant;
    use firedoor_server::store::requests::NewRequest;
    use firedoor_server::store::Ts;

    let t0 = Ts(common::t0());
    let at = |s: i64| Ts(common::t0() + Duration::seconds(s));
    let mut tx = store.begin().await.unwrap();
    tx.users().insert("alice", "[]", false, t0).await.unwrap();
    for (id, key) in [("req_1", Some("k1")), ("req_2", None)] {
        tx.requests()
            .insert(&NewRequest {
                id,
                kind: "access",
                bundle: "app-read",
                flow: "read",
                requester: "alice",
                state: RequestState::Pending,
                duration_secs: 900,
                justification: Some("why"),
                ticket: None,
                created_at: t0,
                pending_until: at(3600),
                approvals_needed: 1,
                grant_id: None,
                idempotency_key: key,
                body_hash: key.map(|_| "h"),
                incident_id: None,
                requested_by: None,
                stage: 0,
            })
            .await
            .unwrap();
    }
    let prior = tx
        .requests()
        .by_idempotency_key("alice", "k1")
        .await
        .unwrap();
    assert_eq!(prior, Some(("req_1".to_string(), Some("h".to_string()))));
    tx.requests()
        .insert_approval("req_1", "bob", Some("ok"), at(1))
        .await
        .unwrap();
    tx.requests()
        .upsert_denial("req_2", "bob", None, at(2))
        .await
        .unwrap();
    tx.requests()
        .upsert_denial("req_2", "bob", Some("no"), at(3))
        .await
        .unwrap();
    assert!(tx
        .requests()
        .cas_state(
            "req_1",
            RequestState::Pending,
            RequestState::Approved,
            at(1),
            None
        )
        .await
        .unwrap());
    assert!(!tx
        .requests()
        .cas_state(
            "req_1",
            RequestState::Pending,
            RequestState::Denied,
            at(1),
            None
        )
        .await
        .unwrap());
    tx.grants()
        .insert(&NewGrant {
            id: "grt_1",
            request_id: "req_1",
            bundle: "app-read",
            flow: "read",
            holder: "alice",
            duration_secs: 900,
            expires_at: at(900),
            next_attempt_at: at(60),
        })
        .await
        .unwrap();
    tx.requests()
        .set_grant("req_1", "grt_1", at(1))
        .await
        .unwrap();
    tx.events()
        .insert("alice", "grant_active", at(1), "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let r = store.requests().load("req_1").await.unwrap().unwrap();
    assert_eq!(
        (
            r.state.as_str(),
            r.grant_id.as_deref(),
            r.created_at,
            r.pending_until
        ),
        ("approved", Some("grt_1"), t0, at(3600))
    );
    let (r2, decisions) = store
        .requests()
        .load_with_decisions("req_2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r2.id, "req_2");
    assert_eq!(
        decisions,
        vec![("bob".into(), "deny".into(), Some("no".into()), at(3))]
    );
    let mine = store
        .requests()
        .of_requester("alice", Some(RequestState::Pending), 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    // Every request, a page at a time: newest first, each page continuing after the
    // last row of the one before. Both were created at t0: the id breaks the tie.
    let first = store.requests().page(None, None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let last = &first[0].0;
    assert_eq!(last.id, "req_2");
    let rest = store
        .requests()
        .page(None, Some((last.created_at, &last.id)), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0.id, "req_1");
    assert_eq!(
        store.requests().page(None, None, 10).await.unwrap().len(),
        2
    );
    assert!(store
        .requests()
        .awaiting_decision_by("bob", at(10))
        .await
        .unwrap()
        .is_empty());
    let awaiting = store
        .requests()
        .awaiting_decision_by("carol", at(10))
        .await
        .unwrap();
    assert_eq!(awaiting.len(), 1);
    assert_eq!(awaiting[0].0.id, "req_2");
    assert_eq!(
        awaiting[0].1, decisions,
        "each listed request with its decisions"
    );
    assert!(store
        .requests()
        .pending_past_deadline(at(3599), 10)
        .await
        .unwrap()
        .is_empty());
    let stale = store
        .requests()
        .pending_past_deadline(at(3600), 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    // The follow-up worker's read: the pending requests of the flows it asks for,
    // however many older pending requests of other flows come before them (req_2).
    let mut tx = store.begin().await.unwrap();
    tx.requests()
        .insert(&NewRequest {
            id: "req_3",
            kind: "access",
            bundle: "app-write",
            flow: "write",
            requester: "alice",
            state: RequestState::Pending,
            duration_secs: 900,
            justification: None,
            ticket: None,
            created_at: at(5),
            pending_until: at(3600),
            approvals_needed: 1,
            grant_id: None,
            idempotency_key: None,
            body_hash: None,
            incident_id: None,
            requested_by: None,
            stage: 0,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let due = store
        .requests()
        .pending_in_flows(&["write".to_string()], at(10), 1)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["req_3"]
    );

    // Provisioning is retried, then the grant is active, extended, ended.
    let retry = store.grants().due_retries(at(60), 10).await.unwrap();
    assert_eq!(retry, vec![("grt_1".into(), "provisioning".into())]);
    assert!(store
        .grants()
        .claim_retry("grt_1", "provisioning", at(60), at(120))
        .await
        .unwrap());
    assert!(!store
        .grants()
        .claim_retry("grt_1", "provisioning", at(60), at(120))
        .await
        .unwrap());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.grants().state("grt_1").await.unwrap().as_deref(),
        Some("provisioning")
    );
    assert!(tx
        .grants()
        .retry_provisioning("grt_1", 1, "boom", at(130))
        .await
        .unwrap());
    assert!(tx
        .grants()
        .activate("grt_1", at(130), at(1030), b"sealed")
        .await
        .unwrap());
    assert!(tx
        .grants()
        .cas_expiry("grt_1", at(1030), at(1930))
        .await
        .unwrap());
    assert!(!tx
        .grants()
        .cas_expiry("grt_1", at(1030), at(1930))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let g = store.grants().load("grt_1").await.unwrap().unwrap();
    assert_eq!(
        (g.state.as_str(), g.activated_at, g.expires_at, g.attempts),
        ("active", Some(at(130)), at(1930), 1)
    );
    assert_eq!(
        store.grants().credentials("grt_1").await.unwrap(),
        Some(("alice".into(), "active".into(), Some(b"sealed".to_vec())))
    );
    assert_eq!(
        store
            .grants()
            .of_holder("alice", true, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .grants()
            .of_holder("bob", false, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(store.grants().page(true, None, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .grants()
            .page(false, Some((at(1930), "grt_1")), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    let soon = store
        .grants()
        .expiring_unnotified(at(1930), 10)
        .await
        .unwrap();
    assert_eq!(soon.len(), 1);
    assert!(store
        .grants()
        .mark_expiring_notified("grt_1")
        .await
        .unwrap());
    assert!(!store
        .grants()
        .mark_expiring_notified("grt_1")
        .await
        .unwrap());
    assert!(store
        .grants()
        .due_to_expire(at(1929), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .grants()
            .due_to_expire(at(1930), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .grants()
        .set_last_error("grt_1", "backstop")
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .grants()
        .claim_end("grt_1", EndReason::Expired, "system", at(2000))
        .await
        .unwrap());
    assert!(tx
        .grants()
        .end_failed("grt_1", 2, "down", at(2100))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    store.grants().release_leases(at(1950)).await.unwrap();
    let g = store.grants().load("grt_1").await.unwrap().unwrap();
    // revoke_failed keeps its own retry time; only claimed work is released.
    assert_eq!(
        (g.state.as_str(), g.next_attempt_at),
        ("revoke_failed", Some(at(2100)))
    );
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .grants()
        .end("grt_1", EndReason::Expired.final_grant_state(), at(2100))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let g = store.grants().load("grt_1").await.unwrap().unwrap();
    assert_eq!((g.state.as_str(), g.ended_at), ("expired", Some(at(2100))));
    assert_eq!(
        store
            .grants()
            .credentials("grt_1")
            .await
            .unwrap()
            .unwrap()
            .2,
        None
    );

    let events = store.events().after("alice", 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(store
        .events()
        .after("alice", events[0].0, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn store_requests_grants_events_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = firedoor_server::store::Store::open_sqlite(&dir.path().join("f.db"))
        .await
        .unwrap();
    store_walk(&sqlite).await;

    let pg = PgServer::start();
    pg.admin("postgres", "CREATE DATABASE firedoor");
    let url = firedoor_server::store::DatabaseUrl::parse(&pg.admin_url("firedoor")).unwrap();
    let store = firedoor_server::store::Store::open(&url).await.unwrap();
    store_walk(&store).await;
}

/// Provisioning sends the role and its CONNECT in one round trip; a retry that finds
/// the role of an earlier attempt (a crash between the target and the store) removes
/// it and creates it afresh: the earlier attempt's password no longer logs in, the
/// new one does, and several grants provisioned at once all succeed (PostgreSQL's
/// "tuple concurrently updated" on the shared catalog is retried).
#[tokio::test]
async fn provisioning_again_replaces_an_earlier_attempt_and_parallel_grants_succeed() {
    let pg = PgServer::start();
    pg.seed_app();
    let policy = parse_policy("pg.toml", POLICY).unwrap();
    let conn = Arc::new(
        PostgresConnector::new(
            "pg",
            &pg.app_broker_url(&[]),
            None,
            policy.integrations["pg"].kind.clone(),
        )
        .unwrap(),
    );
    let resource = &policy.bundles["app-read"].resources[0];
    let t = firedoor_server::connectors::Target {
        grant_id: firedoor_core::GrantId::new(),
        index: 0,
        holder: "alice",
        resource,
        expires_at: chrono::Utc::now() + Duration::minutes(15),
    };
    let first = conn.provision(&t).await.unwrap();
    let again = conn.provision(&t).await.unwrap();
    assert_eq!(first.username, again.username);
    assert!(!pg
        .psql(&first.username, &first.secret, "app", "SELECT 1")
        .status
        .success());
    assert!(pg
        .psql(
            &again.username,
            &again.secret,
            "app",
            "SELECT count(*) FROM orders"
        )
        .status
        .success());
    conn.deprovision(&t).await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..12 {
        let conn = conn.clone();
        let resource = resource.clone();
        tasks.push(tokio::spawn(async move {
            let holder = format!("eng{i}");
            let t = firedoor_server::connectors::Target {
                grant_id: firedoor_core::GrantId::new(),
                index: 0,
                holder: &holder,
                resource: &resource,
                expires_at: chrono::Utc::now() + Duration::minutes(15),
            };
            let c = conn.provision(&t).await.unwrap();
            conn.deprovision(&t).await.unwrap();
            c.username
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        pg.admin(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'fd\\_%'"
        ),
        "0"
    );
}
