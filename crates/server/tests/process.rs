//! The real `firedoor-server` binary: the CLI, a SIGKILLed broker that revokes on
//! restart what fell due while it was down, and audit verification that catches
//! edits and removals.

#![allow(clippy::unwrap_used)]

use firedoor_client::Client;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::GrantState;
use firedoor_testkit::PgServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_firedoor-server");

fn cli(data: &Path, args: &[&str]) -> Output {
    run_cli(BIN, data, args)
}

fn run_cli(bin: &str, data: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn last_line(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

async fn serve(data: &Path, policy: &Path, pg_url: &str, port: u16, extra: &[&str]) -> Broker {
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .arg("--policy")
        .arg(policy)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("FIREDOOR_PG_URL", pg_url)
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let c = Client::new(&url, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.health().await.is_err() {
        assert!(Instant::now() < deadline, "broker did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Broker { child, url }
}

const POLICY: &str = r#"
[integrations.pg]
kind = "postgres"
url_env = "FIREDOOR_PG_URL"
permissions = { read = ["app_read"] }

[bundles.app-read]
resources = [{ integration = "pg", resource = "app", permission = "read" }]

[flows.oncall]
bundles = ["app-read"]
requesters = { groups = ["oncall"] }
approvals = 0
default_duration = "1m"
max_duration = "1h"
"#;

fn write_policy(dir: &Path) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, POLICY).unwrap();
    p
}

#[tokio::test]
async fn sigkilled_broker_revokes_what_fell_due_while_down() {
    let pg = PgServer::start();
    pg.seed_app();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = write_policy(tmp.path());
    let token = last_line(&cli(&data, &["user", "add", "alice", "--group", "oncall"]));
    let port = free_port();
    // The broker's own admin role, not the superuser (which only sets it up).
    let pg_url = pg.app_broker_url(&[]);

    let mut broker = serve(&data, &policy, &pg_url, port, &[]).await;
    let alice = Client::new(&broker.url, Some(&token)).unwrap();
    let mut issued = Vec::new();
    for i in 0..3 {
        let (r, _) = alice
            .create_request(
                &CreateRequest {
                    bundle: "app-read".into(),
                    duration_secs: Some(60),
                    ..Default::default()
                },
                Some(&format!("k{i}")),
            )
            .await
            .unwrap();
        let gid = r.grant_id.unwrap();
        let c = alice.credentials(&gid).await.unwrap().items.remove(0);
        assert!(pg
            .psql(&c.username, &c.secret, "app", "SELECT count(*) FROM orders")
            .status
            .success());
        issued.push((gid, c));
    }

    // SIGKILL: no chance to clean up.
    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    for (_, c) in &issued {
        assert!(
            pg.psql(&c.username, &c.secret, "app", "SELECT 1")
                .status
                .success(),
            "still live while the broker is down"
        );
    }

    // Back two minutes later (the clock is shifted instead of waiting).
    let broker = serve(
        &data,
        &policy,
        &pg_url,
        port,
        &["--clock-offset-secs", "120"],
    )
    .await;
    let alice = Client::new(&broker.url, Some(&token)).unwrap();
    for (gid, c) in &issued {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let g = alice.grant(gid).await.unwrap();
            if g.state == GrantState::Expired {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "grant {gid} revoked after restart, is {:?}",
                g.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !pg.psql(&c.username, &c.secret, "app", "SELECT 1")
                .status
                .success(),
            "login fails after restart"
        );
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
    }
    drop(broker);

    let v = cli(&data, &["audit", "verify"]);
    assert!(
        v.status.success(),
        "audit chain verifies after the crash: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(out.contains("audit log ok"), "{out}");

    // No secret on disk: neither the token nor an issued password.
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&token), "token not stored in plaintext");
        for (_, c) in &issued {
            assert!(
                !text.contains(&c.secret),
                "password not stored in plaintext"
            );
        }
    }
}

#[tokio::test]
async fn cli_users_tokens_and_audit_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let add = cli(
        &data,
        &[
            "user",
            "add",
            "bob",
            "--group",
            "oncall",
            "--group",
            "sre-leads",
            "--admin",
        ],
    );
    let token = last_line(&add);
    assert!(
        token.starts_with("fdt_"),
        "the token is the last line: {token}"
    );
    let stdout = String::from_utf8_lossy(&add.stdout).to_string();
    let token_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token id: "))
        .unwrap()
        .to_string();
    let dup = cli(&data, &["user", "add", "bob"]);
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = cli(&data, &["user", "add", "Bob Smith"]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("not a valid user name")
    );

    let list = cli(&data, &["user", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("bob\tgroups=oncall,sre-leads\tadmin"));
    let second = last_line(&cli(&data, &["user", "token", "issue", "bob"]));
    assert_ne!(second, token);
    let revoked = cli(&data, &["user", "token", "revoke", &token_id]);
    assert!(revoked.status.success());
    let again = cli(&data, &["user", "token", "revoke", &token_id]);
    assert!(!again.status.success(), "revoking twice is an error");

    // The demo policy file and a broken one.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-policy.toml");
    assert!(cli(&data, &["check-policy", demo.to_str().unwrap()])
        .status
        .success());
    let pgp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/postgres-policy.toml");
    assert!(cli(&data, &["check-policy", pgp.to_str().unwrap()])
        .status
        .success());
    let broken = tmp.path().join("broken.toml");
    std::fs::write(&broken, "[flows.x]\nbundles = [\"nope\"]\n").unwrap();
    let o = cli(&data, &["check-policy", broken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("broken.toml:1:"), "names file and line: {err}");

    // Verify, export, then tamper.
    assert!(cli(&data, &["audit", "verify"]).status.success());
    let export = cli(&data, &["audit", "export"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user_added",
            "token_issued",
            "token_issued",
            "token_revoked"
        ]
    );
    assert_eq!(
        lines[0]["actor"].as_str().map(|a| a.starts_with("cli:")),
        Some(true)
    );

    let db = data.join("firedoor.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let v = cli(&data, &["audit", "verify"]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "an edited record fails verification"
    );
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("record 2"),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );
    sqlx::query("UPDATE audit SET actor = ? WHERE seq = 2")
        .bind(lines[1]["actor"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        cli(&data, &["audit", "verify"]).status.success(),
        "restored"
    );

    sqlx::query("DELETE FROM audit WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let v = cli(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("record 3"),
        "{}",
        String::from_utf8_lossy(&v.stdout)
    );

    let tmp2 = tempfile::tempdir().unwrap();
    let data2 = tmp2.path().join("data");
    cli(&data2, &["user", "add", "x"]);
    cli(&data2, &["user", "add", "y"]);
    let pool2 =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data2.join("firedoor.db").display()))
            .await
            .unwrap();
    sqlx::query("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
        .execute(&pool2)
        .await
        .unwrap();
    let v = cli(&data2, &["audit", "verify"]);
    assert_eq!(
        v.status.code(),
        Some(1),
        "removing the last record is caught too"
    );
}

#[tokio::test]
async fn cli_secret_put_list_rotate_never_prints_the_value() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-policy.toml");
    let policy = policy.to_str().unwrap();
    let value = "Cli-Breakglass-0b7e41d2c9";
    let file = tmp.path().join("value.txt");
    std::fs::write(&file, format!("{value}\n")).unwrap();

    let put = cli(
        &data,
        &[
            "secret",
            "put",
            "payments-db-breakglass",
            "--policy",
            policy,
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    let out = String::from_utf8_lossy(&put.stdout).to_string();
    let err = String::from_utf8_lossy(&put.stderr).to_string();
    assert!(put.status.success(), "{out}{err}");
    assert!(
        out.contains("stored payments-db-breakglass version 1"),
        "{out}"
    );
    assert!(!out.contains(value) && !err.contains(value), "never echoed");

    // From standard input, with `-`.
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "secret",
            "put",
            "payments-db-breakglass",
            "--policy",
            policy,
        ])
        .args(["--from-file", "-"])
        .env("FIREDOOR_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = "Cli-Breakglass-second-5d1c";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{second}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("version 2"), "{out}");
    assert!(
        !out.contains(second) && !err.contains(second),
        "not even in debug logs"
    );

    let list = cli(&data, &["secret", "list", "--policy", policy]);
    let out = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success());
    assert!(
        out.contains("payments-db-breakglass\tversion=2\tsealed_devices=0"),
        "{out}"
    );
    assert!(out.contains("rotated_by=demo"), "{out}");
    assert!(!out.contains(value) && !out.contains(second));

    let bad = cli(
        &data,
        &[
            "secret",
            "put",
            "nope",
            "--policy",
            policy,
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no secret named nope in the policy"));
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    let bad = cli(
        &data,
        &[
            "secret",
            "put",
            "payments-db-breakglass",
            "--policy",
            policy,
            "--from-file",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!bad.status.success(), "an empty value is refused");

    // Rotation through the demo connector, from the CLI.
    let rot = cli(
        &data,
        &[
            "secret",
            "rotate",
            "payments-db-breakglass",
            "--policy",
            policy,
        ],
    );
    let out = String::from_utf8_lossy(&rot.stdout).to_string();
    assert!(
        rot.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&rot.stderr)
    );
    assert!(
        out.contains("rotated payments-db-breakglass to version 3"),
        "{out}"
    );

    let devices = cli(&data, &["device", "list"]);
    assert!(devices.status.success());
    assert!(String::from_utf8_lossy(&devices.stdout).trim().is_empty());

    // Audited as the operator; nothing secret on disk; the key file is private and
    // holds the envelope signing key.
    let export = cli(&data, &["audit", "export"]);
    let text = String::from_utf8_lossy(&export.stdout).to_string();
    let stored: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["action"] == "secret_stored")
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert!(text.contains("secret_rotated"));
    assert!(cli(&data, &["audit", "verify"]).status.success());
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(value) && !text.contains(second),
            "{} holds a secret value",
            p.display()
        );
    }
    // Pointing the CLI at a key file that does not exist must not start a new key.
    let wrong = tmp.path().join("missing.key");
    let o = cli(
        &data,
        &[
            "--key-file",
            wrong.to_str().unwrap(),
            "secret",
            "put",
            "payments-db-breakglass",
            "--policy",
            policy,
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pass the broker's key file with --key-file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!wrong.exists());

    use std::os::unix::fs::PermissionsExt;
    let key = data.join("broker.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .any(|l| l.starts_with("FIREDOOR-SIGNING-KEY-")));
}

/// The broker refuses to start when its PostgreSQL admin connection is a superuser:
/// whatever a grantee leaves behind, or tricks the broker into running, would run
/// with a superuser's rights. The error names the integration and what to do, and
/// not the URL's password.
#[tokio::test]
async fn serve_refuses_a_superuser_postgres_admin() {
    let pg = PgServer::start();
    pg.seed_app();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = write_policy(tmp.path());
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--policy"])
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("FIREDOOR_PG_URL", pg.admin_url("postgres"))
        .env("FIREDOOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {stderr}");
    assert!(
        stderr.contains("integration 'pg'")
            && stderr.contains("superuser")
            && stderr.contains("CREATEROLE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&pg.admin_password),
        "no password in the error"
    );
}

/// Waits up to 2 s for an event stream to end (the broker must close it within 1 s).
async fn stream_ends(s: &mut firedoor_client::EventStream) -> bool {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Attack: `user token revoke` (or disabling a person) from the CLI leaves a stream
/// that was open in the running broker delivering events; a disabled person's live
/// grants stay. The CLI writes the store from another process: the broker must
/// notice by itself.
#[tokio::test]
async fn cli_token_revoke_and_user_disable_end_access_in_the_running_broker() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-policy.toml");
    let add = cli(
        &data,
        &["user", "add", "alice", "--group", "oncall", "--ttl", "30d"],
    );
    let alice = last_line(&add);
    let out = String::from_utf8_lossy(&add.stdout).to_string();
    let token_id = out
        .lines()
        .find_map(|l| l.strip_prefix("token id: "))
        .unwrap()
        .to_string();
    assert!(out.contains("expires: "), "{out}");
    let carol = last_line(&cli(&data, &["user", "add", "carol", "--admin"]));
    let bad = cli(&data, &["user", "token", "issue", "alice", "--ttl", "400d"]);
    assert!(!bad.status.success(), "a token lives at most 366 days");
    let alice2 = last_line(&cli(
        &data,
        &["user", "token", "issue", "alice", "--ttl", "12h"],
    ));
    let list = String::from_utf8_lossy(&cli(&data, &["user", "token", "list", "alice"]).stdout)
        .to_string();
    assert_eq!(list.matches("\texpires ").count(), 2, "{list}");

    let port = free_port();
    let b = serve(&data, &demo, "", port, &[]).await;
    let a1 = Client::new(&b.url, Some(&alice)).unwrap();
    let a2 = Client::new(&b.url, Some(&alice2)).unwrap();
    let mut s1 = a1.events(None).await.unwrap();
    let mut s2 = a2.events(None).await.unwrap();
    assert!(cli(&data, &["user", "token", "revoke", &token_id])
        .status
        .success());
    assert!(
        stream_ends(&mut s1).await,
        "the revoked token's stream ends"
    );
    assert_eq!(a1.me().await.unwrap_err().status(), Some(401));
    a2.me().await.expect("the other token still works");

    let r = a2
        .create_request(
            &CreateRequest {
                bundle: "staging-shell".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .0;
    let gid = r.grant_id.unwrap();
    let o = cli(&data, &["user", "disable", "alice"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stream_ends(&mut s2).await, "a disabled user's stream ends");
    assert_eq!(a2.me().await.unwrap_err().status(), Some(401));
    let admin = Client::new(&b.url, Some(&carol)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = admin.grant(&gid).await.unwrap();
        if g.state == GrantState::Revoked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker revokes the grant: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users = String::from_utf8_lossy(&cli(&data, &["user", "list"]).stdout).to_string();
    assert!(users.contains("alice\tgroups=oncall\tDISABLED"), "{users}");
    let o = cli(
        &data,
        &["user", "set-groups", "carol", "--group", "security"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let users = String::from_utf8_lossy(&cli(&data, &["user", "list"]).stdout).to_string();
    assert!(users.contains("carol\tgroups=security\tadmin"), "{users}");
}

// ------------------------------------------------------------ signed audit log

/// The binary under test; `FIREDOOR_TEST_SERVER_BIN` runs these attacks against
/// another build (e.g. one from before audit signatures, to see them succeed).
fn audit_bin() -> String {
    std::env::var("FIREDOOR_TEST_SERVER_BIN").unwrap_or_else(|_| BIN.to_string())
}

fn audit_cli(data: &Path, args: &[&str]) -> Output {
    run_cli(&audit_bin(), data, args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn open_db(data: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("firedoor.db").display()))
        .await
        .unwrap()
}

/// What an attacker with write access to the database (but not the key file)
/// does: edit a record, then recompute every SHA-256 and link after it, exactly as
/// the broker computes them. Signatures stay as they were (they cannot make new
/// ones).
async fn rewrite_record(pool: &sqlx::SqlitePool, seq: i64, details: &str) {
    type Row = (i64, String, String, String, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor, action, subject, details, prev_hash FROM audit ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut prev: Option<String> = None;
    for (s, at, actor, action, subject, old_details, prev_hash) in rows {
        if s < seq {
            continue;
        }
        let d = if s == seq {
            details.to_string()
        } else {
            old_details
        };
        let p = prev.clone().unwrap_or(prev_hash);
        let hash = firedoor_core::audit::record_hash(&p, s, &at, &actor, &action, &subject, &d);
        sqlx::query("UPDATE audit SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&d)
            .bind(&p)
            .bind(&hash)
            .bind(s)
            .execute(pool)
            .await
            .unwrap();
        prev = Some(hash);
    }
}

/// The chain as the pre-signature `audit verify` checked it (hashes and links only).
async fn plain_chain_ok(pool: &sqlx::SqlitePool) -> bool {
    let records: Vec<firedoor_core::audit::AuditRecord> = sqlx::query_as::<_, (i64, String, String, String, String, String, String, String, Option<String>)>(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash, signature FROM audit ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| firedoor_core::audit::AuditRecord {
        seq: r.0,
        at: r.1,
        actor: r.2,
        action: r.3,
        subject: r.4,
        details: r.5,
        prev_hash: r.6,
        hash: r.7,
        signature: r.8,
    })
    .collect();
    firedoor_core::audit::verify_chain(&records).is_ok()
}

/// Attack (issue 8 §3): edit an audit record in the SQLite file and recompute every
/// SHA-256 after it. Before signatures `audit verify` passed; now it fails naming
/// the edited record, on the database and on an export checked with only the
/// public key.
#[tokio::test]
async fn audit_rewrite_with_recomputed_hashes_is_caught_by_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for name in ["alice", "bob", "carol"] {
        last_line(&audit_cli(
            &data,
            &["user", "add", name, "--group", "oncall"],
        ));
    }
    let ok = audit_cli(&data, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));

    let export = tmp.path().join("audit.jsonl");
    let e = audit_cli(
        &data,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    assert!(e.status.success(), "{}", text(&e));

    // The attack: record 3 (bob's user_added) is edited; every later hash is
    // recomputed.
    let pool = open_db(&data).await;
    rewrite_record(&pool, 3, r#"{"user":"mallory"}"#).await;
    assert!(
        plain_chain_ok(&pool).await,
        "the hash chain alone is fooled by the attack"
    );
    let v = audit_cli(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("BROKEN at record 3") && text(&v).contains("signature"),
        "names the edited record: {}",
        text(&v)
    );

    // The public key, and the export taken before the attack checked offline with it.
    let key = last_line(&audit_cli(&data, &["audit", "public-key"]));
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&export)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    // Each commit's last record carries its signature: `user add` is one commit of
    // two records (user_added, token_issued).
    let exported: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(first, exported[0]);
    let signed: Vec<i64> = exported
        .iter()
        .filter(|r| r["signature"].as_str().is_some_and(|s| s.len() > 60))
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        signed,
        [2, 4, 6],
        "the export carries each commit's signature"
    );
    let offline = tempfile::tempdir().unwrap();
    let v = audit_cli(
        &offline.path().join("nothing-here"),
        &[
            "audit",
            "verify",
            "--export",
            export.to_str().unwrap(),
            "--public-key",
            &key,
        ],
    );
    assert!(v.status.success(), "{}", text(&v));

    // The same on an export, offline, with only the public key.
    let forged = tmp.path().join("forged.jsonl");
    assert!(audit_cli(
        &data,
        &["audit", "export", "--out", forged.to_str().unwrap()]
    )
    .status
    .success());
    let v = audit_cli(
        &offline.path().join("nothing-here"),
        &[
            "audit",
            "verify",
            "--export",
            forged.to_str().unwrap(),
            "--public-key",
            &key,
        ],
    );
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("record 3"), "{}", text(&v));

    // Dropping the signatures from record 3 on is caught too, and a wrong public
    // key fails at record 1.
    sqlx::query("UPDATE audit SET signature = NULL WHERE seq >= 3")
        .execute(&pool)
        .await
        .unwrap();
    let v = audit_cli(&data, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(text(&v).contains("record 3"), "{}", text(&v));
    let other = firedoor_core::breakglass::encode_public_key(
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
    );
    let v = audit_cli(&data, &["audit", "verify", "--public-key", &other]);
    assert_eq!(v.status.code(), Some(1));
    assert!(text(&v).contains("record 1"), "{}", text(&v));
    let bad = audit_cli(&data, &["audit", "verify", "--public-key", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

/// Starts `serve` with an empty policy; `Err(output)` if it exits instead (within
/// 20 s).
async fn try_serve(data: &Path, port: u16, anchor: &Path) -> Result<Broker, String> {
    let policy = data.parent().unwrap().join("empty-policy.toml");
    std::fs::write(&policy, "").unwrap();
    let mut child = Command::new(audit_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("serve")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("FIREDOOR_LOG", "warn")
        .env("FIREDOOR_AUDIT_ANCHOR", anchor)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let c = Client::new(&url, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        if c.health().await.is_ok() {
            return Ok(Broker { child, url });
        }
        assert!(
            Instant::now() < deadline,
            "broker neither came up nor exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a broker the way an operator does (SIGTERM): it anchors its head on the way out.
fn terminate(mut b: Broker) {
    let pid = b.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "broker did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `audit_cli` with the anchor file at `anchor` (through the environment).
fn audit_cli_at(data: &Path, anchor: &Path, args: &[&str]) -> Output {
    Command::new(audit_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("FIREDOOR_LOG", "warn")
        .env("FIREDOOR_AUDIT_ANCHOR", anchor)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Attack (issue 8 §3): roll the log back to an earlier head: delete its end and
/// reset SQLite's AUTOINCREMENT counter so the database alone looks whole. The
/// anchor file (here on "another disk", FIREDOOR_AUDIT_ANCHOR / --audit-anchor)
/// still holds the later signed head: `audit verify` fails naming it and the broker
/// refuses to start.
#[tokio::test]
async fn audit_rollback_is_caught_by_the_anchor_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let anchor = tmp.path().join("other-disk").join("anchor.log");
    last_line(&audit_cli(&data, &["user", "add", "alice"])); // records 1, 2
    let b = try_serve(&data, free_port(), &anchor).await.unwrap(); // 3: broker_started
    for name in ["bob", "carol"] {
        // 4..=7, written beside the running broker
        last_line(&audit_cli(&data, &["user", "add", name]));
    }
    terminate(b);
    let v = audit_cli_at(&data, &anchor, &["audit", "verify"]);
    assert!(v.status.success(), "{}", text(&v));

    // The attack: back to record 5, the end of bob's commit (a cut inside a commit
    // leaves an unsigned end, which `audit verify` names by itself).
    let pool = open_db(&data).await;
    sqlx::query("DELETE FROM audit WHERE seq > 5")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sqlite_sequence SET seq = 5 WHERE name = 'audit'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let plain = audit_cli_at(&data, Path::new("/nonexistent/x"), &["audit", "verify"]);
    assert!(
        plain.status.success(),
        "without the anchor the database alone looks whole: {}",
        text(&plain)
    );

    let v = audit_cli_at(&data, &anchor, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("ROLLED BACK") && text(&v).contains("record 7"),
        "{}",
        text(&v)
    );
    let refused = try_serve(&data, free_port(), &anchor).await;
    let err = refused
        .err()
        .expect("the broker must not start on a rolled-back log");
    assert!(
        err.contains("refusing to start") && err.contains("record 7"),
        "{err}"
    );
    let lines: Vec<firedoor_core::audit::SignedHead> = std::fs::read_to_string(&anchor)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [3, 7],
        "anchored at start and at shutdown (only appended, never rewritten)"
    );

    // Rolled back and written again (the same seqs, other content): still caught.
    let pool = open_db(&data).await;
    sqlx::query("DELETE FROM audit WHERE seq > 2")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    for name in ["dave", "erin", "frank"] {
        last_line(&audit_cli(&data, &["user", "add", name])); // 3..=8 again
    }
    let v = audit_cli_at(&data, &anchor, &["audit", "verify"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("not the one seen signed"), "{}", text(&v));
    assert!(try_serve(&data, free_port(), &anchor).await.is_err());
}

/// Attack: an operator moves someone out of the on-call group with the CLI while the
/// broker runs; their laptop keeps an envelope whose value keeps working. The
/// running broker must notice the change the CLI wrote and rotate.
#[tokio::test]
async fn cli_set_groups_makes_the_running_broker_rotate_what_they_held() {
    use firedoor_core::breakglass::encode_public_key;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo-policy.toml");
    let alice = last_line(&cli(&data, &["user", "add", "alice", "--group", "oncall"]));
    let carol = last_line(&cli(&data, &["user", "add", "carol", "--admin"]));
    let port = free_port();
    let b = serve(&data, &demo, "", port, &[]).await;
    let http = reqwest::Client::new();
    let identity = age::x25519::Identity::generate();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let resp = http
        .post(format!("{}/api/v1/devices", b.url))
        .bearer_auth(&alice)
        .json(&serde_json::json!({
            "name": "alice-laptop",
            "recipient": identity.to_public().to_string(),
            "signing_key": encode_public_key(&key.verifying_key()),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let file = tmp.path().join("v.txt");
    std::fs::write(&file, "First-Value-9f8e7d6c5b4a").unwrap();
    let put = cli(
        &data,
        &[
            "secret",
            "put",
            "payments-db-breakglass",
            "--policy",
            demo.to_str().unwrap(),
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&put.stdout).contains("sealed for 1 devices"),
        "{}",
        String::from_utf8_lossy(&put.stdout)
    );
    let o = cli(&data, &["user", "set-groups", "alice", "--group", "dev"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The broker checks eligibility at least every 5 s; allow 15.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v: serde_json::Value = http
            .get(format!("{}/api/v1/secrets", b.url))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["secrets"][0]["version"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotated after the CLI change: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let export = String::from_utf8_lossy(&cli(&data, &["audit", "export"]).stdout).to_string();
    assert!(export.contains("\"envelopes_withdrawn\""), "{export}");
    assert!(export.contains("\"user_groups_changed\""), "{export}");
}

/// The operator's on-call commands: an override from the CLI (audited as the CLI
/// operator), the list showing it, a mistake named, the override taken back.
#[tokio::test]
async fn cli_oncall_override_list_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/oncall-policy.toml");
    let policy = policy.to_str().unwrap();
    let checked = cli(&data, &["check-policy", policy]);
    assert!(
        text(&checked).contains("2 on-call schedules"),
        "{}",
        text(&checked)
    );
    last_line(&cli(
        &data,
        &["user", "add", "alice", "--group", "payments"],
    ));

    let o = cli(
        &data,
        &[
            "oncall",
            "override",
            "payments-primary",
            "--user",
            "alice",
            "--for",
            "2h",
            "--reason",
            "bob at the dentist",
            "--policy",
            policy,
        ],
    );
    let line = last_line(&o);
    assert!(line.starts_with("ovr_"), "{line}");
    assert!(line.contains("alice covers payments-primary"), "{line}");
    let id = line.split(':').next().unwrap().to_string();

    let list = cli(&data, &["oncall", "list", "--policy", policy]);
    let out = text(&list);
    assert!(list.status.success(), "{out}");
    let primary = out
        .lines()
        .find(|l| l.starts_with("payments-primary\t"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        primary.contains("\talice\t") && primary.ends_with("(override)"),
        "{primary}"
    );
    assert!(out.contains(&id), "the override is listed: {out}");
    assert!(
        out.lines().any(|l| l.starts_with("sre-secondary\t")),
        "{out}"
    );

    // Mistakes are named, nothing is written.
    for (args, want) in [
        (
            vec![
                "oncall", "override", "nope", "--user", "alice", "--for", "1h",
            ],
            "no on-call schedule named 'nope'",
        ),
        (
            vec![
                "oncall",
                "override",
                "payments-primary",
                "--user",
                "zed",
                "--for",
                "1h",
            ],
            "no user named 'zed'",
        ),
        (
            vec![
                "oncall",
                "override",
                "payments-primary",
                "--user",
                "alice",
                "--until",
                "yesterday",
            ],
            "not an RFC 3339 time",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--policy", policy]);
        let o = cli(&data, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }

    let removed = cli(
        &data,
        &[
            "oncall",
            "remove-override",
            "payments-primary",
            &id,
            "--policy",
            policy,
        ],
    );
    assert!(last_line(&removed).starts_with(&format!("removed {id}")));
    let again = cli(
        &data,
        &[
            "oncall",
            "remove-override",
            "payments-primary",
            &id,
            "--policy",
            policy,
        ],
    );
    assert!(!again.status.success(), "removing twice is an error");

    let export = cli(&data, &["audit", "export"]);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "oncall_override_added")
        .collect();
    assert_eq!(added.len(), 1);
    assert!(added[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(
        records
            .iter()
            .filter(|r| r["action"] == "oncall_override_removed")
            .count(),
        1
    );
    assert!(cli(&data, &["audit", "verify"]).status.success());
}
