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
    assert_eq!(third.state, RequestState::Approved);
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
