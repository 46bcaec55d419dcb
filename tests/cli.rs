//! The `firedoor` command line as a user runs it: the real binary (the app's, with
//! a subcommand) against a real broker over HTTP, each user on their own "machine"
//! (a private D-Bus session with an unlocked gnome-keyring, HOME, data dir,
//! ssh-agent). No window: these never start Xvfb (the app's own window and the CLI
//! together are in `tests/e2e.rs`).
//!
//! Needs: dbus-daemon, gnome-keyring-daemon, ssh-agent (scripts/deps.sh). The test
//! fails, never skips, without them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{any_file_contains, firedoor_with, until, Machine, Out};
use firedoor_client::Client;
use firedoor_core::lifecycle::GrantState;
use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config, RunningBroker};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

async fn broker(dir: &Path, listen: SocketAddr) -> RunningBroker {
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = Config::new(dir, policy);
    cfg.listen = listen;
    cfg.worker_interval = Duration::from_millis(200);
    firedoor_server::start(cfg).await.unwrap()
}

async fn user(b: &RunningBroker, name: &str, groups: &[&str], admin: bool) -> String {
    let g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
    let t = auth::add_user(
        &b.broker.store,
        &Actor::System,
        name,
        &g,
        admin,
        b.broker.now(),
    )
    .await
    .unwrap();
    secrecy::ExposeSecret::expose_secret(&t.token).to_string()
}

fn s(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The `error.code` of a `--json` failure.
fn error_code(o: &Out) -> String {
    s(&o.error_json()["error"]["code"])
}

/// What a POSIX shell makes of `firedoor creds --format env`: the variables.
fn eval_env(lines: &str) -> std::collections::BTreeMap<String, String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{lines}\nprintf '%s\\n' \"$PGDATABASE\" \"$PGUSER\" \"$PGPASSWORD\""
        ))
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "the env lines run in sh: {lines}");
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<&str> = text.lines().collect();
    ["PGDATABASE", "PGUSER", "PGPASSWORD"]
        .iter()
        .zip(v)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_creds_revoke_deny_wait_and_exit_codes() {
    let bdir = tempfile::tempdir().unwrap();
    let b = broker(bdir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice_token = user(&b, "alice", &["oncall"], false).await;
    let bob_token = user(&b, "bob", &["oncall", "sre-leads"], false).await;
    // alice's laptop uses the app's default data dir ($XDG_DATA_HOME/dev.firedoor.console).
    let alice = Machine::start_with(false).await;
    let bob = Machine::start().await;

    // --- not signed in: exit 7, as text and as JSON
    let o = alice.firedoor(&["status"]).await.expect(7);
    assert!(o.stdout.contains("Not signed in"), "{o:?}");
    let o = alice.firedoor(&["bundles", "--json"]).await.expect(7);
    assert_eq!(error_code(&o), "signed_out");
    assert_eq!(o.error_json()["exit"], 7);
    assert!(o.stdout.is_empty(), "errors go to stderr: {o:?}");

    // --- sign in with the token on stdin; a wrong token is refused
    let o = alice.login(&url, "fdt_not-a-token").await.expect(7);
    assert!(o.stderr.contains("does not accept this token"), "{o:?}");
    let o = alice.login(&url, &alice_token).await.expect(0);
    assert!(o.stdout.contains("as alice"), "{o:?}");
    assert!(
        !o.stdout.contains(&alice_token) && !o.stderr.contains(&alice_token),
        "the token is never echoed"
    );
    assert!(
        alice.data_dir().join("cache.db").exists(),
        "the cache is where the app keeps it: {}",
        alice.data_dir().display()
    );
    assert_eq!(
        any_file_contains(alice.dir.path(), &alice_token).map(|p| p.display().to_string()),
        None,
        "the token is in the keyring, never in a file of the machine (cache, config)"
    );
    bob.login(&url, &bob_token).await.expect(0);
    let st = alice.firedoor(&["status", "--json"]).await.expect(0).json();
    assert_eq!(st["status"]["user"], "alice");
    assert_eq!(st["status"]["online"], true);
    assert_eq!(st["outbox"].as_array().unwrap().len(), 0);

    // --- bundles (timed: a command is a process start, keyring read, sync, print)
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        alice.firedoor(&["bundles", "--json"]).await.expect(0);
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "firedoor bundles --json (debug build, 5 runs): median {} ms, max {} ms",
        took[2].as_millis(),
        took[4].as_millis()
    );
    let o = alice.firedoor(&["bundles"]).await.expect(0);
    assert!(
        o.stdout.contains("prod-db-read") && o.stdout.contains("Prod DB read"),
        "{o:?}"
    );
    let bundles = alice
        .firedoor(&["bundles", "--json"])
        .await
        .expect(0)
        .json();
    assert!(bundles
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "prod-db-write" && b["terms"]["approvals"] == 2));

    // --- usage errors, unknown bundle, forbidden
    alice.firedoor(&["request"]).await.expect(2);
    alice
        .firedoor(&["request", "prod-db-read", "--for", "ten minutes"])
        .await
        .expect(2);
    alice.firedoor(&["approve", "not-an-id"]).await.expect(2);
    let o = alice
        .firedoor(&["request", "no-such-bundle", "--reason", "x", "--json"])
        .await
        .expect(4);
    assert_eq!(error_code(&o), "not_found");

    // --- request -> approve by bob's CLI -> grants -> creds -> revoke
    let r = alice
        .firedoor(&[
            "request",
            "prod-db-read",
            "--for",
            "30m",
            "--reason",
            "INC-101 slow checkout",
            "--json",
        ])
        .await
        .expect(0)
        .json();
    assert_eq!(r["queued"], false);
    let req = s(&r["request"]["id"]);
    assert_eq!(r["request"]["state"], "pending");
    assert_eq!(r["request"]["duration_secs"], 1800);
    let o = alice.firedoor(&["approve", &req, "--json"]).await.expect(3);
    assert_eq!(error_code(&o), "self_approval", "{o:?}");
    let waiting = bob.firedoor(&["requests", "--json"]).await.expect(0).json();
    assert!(
        waiting["awaiting_me"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == req.as_str()),
        "{waiting}"
    );
    let o = bob.firedoor(&["requests"]).await.expect(0);
    assert!(
        o.stdout.contains(&req) && o.stdout.contains("alice"),
        "{o:?}"
    );
    let o = bob
        .firedoor(&["approve", &req, "--comment", "ok, INC-101"])
        .await
        .expect(0);
    assert!(o.stdout.contains("Approved alice's request"), "{o:?}");
    let grant = until("alice's grant active", || async {
        let g = alice.firedoor(&["grants", "--json"]).await.expect(0).json();
        g.as_array()?
            .iter()
            .find(|g| g["request_id"] == req.as_str() && g["state"] == "active")
            .map(|g| s(&g["id"]))
    })
    .await;
    let o = alice.firedoor(&["grants"]).await.expect(0);
    assert!(
        o.stdout.contains(&grant) && o.stdout.contains("active"),
        "{o:?}"
    );

    let env = alice.firedoor(&["creds", &grant]).await.expect(0);
    assert!(env.stdout.starts_with("export "), "{env:?}");
    let vars = eval_env(&env.stdout);
    assert_eq!(vars["PGDATABASE"], "app");
    assert!(!vars["PGUSER"].is_empty());
    assert!(vars["PGPASSWORD"].starts_with("demo-"), "{vars:?}");
    let json = alice
        .firedoor(&["creds", &grant, "--format", "json"])
        .await
        .expect(0)
        .json();
    assert_eq!(json["grant_id"], grant.as_str());
    assert_eq!(json["items"][0]["username"], vars["PGUSER"].as_str());
    assert_eq!(json["items"][0]["secret"], vars["PGPASSWORD"].as_str());
    let pgpass = alice
        .firedoor(&["creds", &grant, "--format", "pgpass"])
        .await
        .expect(0);
    assert_eq!(
        pgpass.stdout,
        format!("*:*:app:{}:{}\n", vars["PGUSER"], vars["PGPASSWORD"]),
        "a pgpass line (the demo connector gives no host or port)"
    );
    assert_eq!(
        any_file_contains(alice.dir.path(), &vars["PGPASSWORD"]).map(|p| p.display().to_string()),
        None,
        "credentials go to stdout only, never to a file"
    );
    // Someone else's grant: bob (its approver) sees it but may not read its
    // credentials: forbidden, exit 3.
    let o = bob.firedoor(&["creds", &grant, "--json"]).await.expect(3);
    assert_eq!(error_code(&o), "forbidden", "{o:?}");
    assert!(o.stdout.is_empty(), "nothing on stdout: {o:?}");

    let o = alice.firedoor(&["revoke", &grant]).await.expect(0);
    assert!(o.stdout.contains("revoked"), "{o:?}");
    let g = alice.firedoor(&["grants", "--json"]).await.expect(0).json();
    assert!(
        !g.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == grant.as_str() && x["state"] == "active"),
        "no longer listed as active: {g}"
    );
    let as_alice = Client::new(&url, Some(&alice_token)).unwrap();
    let at_broker = as_alice.grant(&grant.parse().unwrap()).await.unwrap();
    assert!(
        matches!(at_broker.state, GrantState::Revoked | GrantState::Revoking),
        "{:?}",
        at_broker.state
    );
    alice.firedoor(&["creds", &grant, "--json"]).await.expect(4);

    // --- deny
    let r = alice
        .firedoor(&["request", "prod-db-read", "--reason", "INC-102", "--json"])
        .await
        .expect(0)
        .json();
    let req2 = s(&r["request"]["id"]);
    bob.firedoor(&["deny", &req2, "--reason", "use the replica"])
        .await
        .expect(0);
    let mine = alice
        .firedoor(&["requests", "--json"])
        .await
        .expect(0)
        .json();
    let r2 = mine["mine"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == req2.as_str())
        .unwrap()
        .clone();
    assert_eq!(r2["state"], "denied");

    // --- --wait returns on approval (exit 0), and on denial (exit 6)
    for (decision, code) in [("approve", 0), ("deny", 6)] {
        let env = alice.env.clone();
        let waiter = tokio::spawn(async move {
            firedoor_with(
                &env,
                &[
                    "request",
                    "prod-db-read",
                    "--reason",
                    "INC-103",
                    "--wait",
                    "--timeout",
                    "2m",
                    "--json",
                ],
                None,
            )
            .await
        });
        let id = until("the waiting request reaches bob", || async {
            let w = bob.firedoor(&["requests", "--json"]).await.expect(0).json();
            w["awaiting_me"]
                .as_array()?
                .iter()
                .find(|r| r["requester"] == "alice" && r["state"] == "pending")
                .map(|r| s(&r["id"]))
        })
        .await;
        bob.firedoor(&[decision, &id]).await.expect(0);
        let o = waiter.await.unwrap().expect(code);
        let out = o.json();
        assert_eq!(out["request"]["id"], id.as_str());
        assert_eq!(out["granted"], code == 0, "{out}");
        if code == 0 {
            assert_eq!(out["grant"]["state"], "active", "{out}");
            alice
                .firedoor(&["revoke", &s(&out["grant"]["id"])])
                .await
                .expect(0);
        } else {
            assert_eq!(out["request"]["state"], "denied", "{out}");
        }
    }
    // ... and gives up after its own timeout, saying so (exit 6).
    let o = alice
        .firedoor(&[
            "request",
            "prod-db-read",
            "--reason",
            "INC-104",
            "--wait",
            "--timeout",
            "2s",
        ])
        .await
        .expect(6);
    assert!(o.stdout.contains("Gave up waiting after 2s"), "{o:?}");

    // --- the broker goes away: a request is queued (exit 5), status says so, and the
    // next command after it is back sends it exactly once
    let addr = b.addr;
    b.stop().await;
    let o = alice
        .firedoor(&[
            "request",
            "staging-shell",
            "--for",
            "1h",
            "--reason",
            "offline",
        ])
        .await
        .expect(5);
    assert!(o.stdout.contains("queued"), "{o:?}");
    let o = alice
        .firedoor(&["approve", &req2, "--json"])
        .await
        .expect(5);
    assert_eq!(error_code(&o), "offline");
    let o = alice.firedoor(&["status"]).await.expect(0);
    assert!(
        o.stdout.contains("OFFLINE since") && o.stdout.contains("Request Staging shell"),
        "{o:?}"
    );
    let o = alice.firedoor(&["grants"]).await.expect(0);
    assert!(
        o.stdout.contains("offline since"),
        "lists come from the cache: {o:?}"
    );
    let b = broker(bdir.path(), addr).await;
    let st = alice.firedoor(&["status", "--json"]).await.expect(0).json();
    assert_eq!(st["status"]["online"], true);
    assert_eq!(st["outbox"].as_array().unwrap().len(), 0, "{st}");
    let staging: Vec<_> = as_alice
        .requests("mine")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.bundle == "staging-shell")
        .collect();
    assert_eq!(staging.len(), 1, "the queued request was sent once");

    // --- logout revokes the token at the broker
    alice.firedoor(&["logout"]).await.expect(0);
    alice.firedoor(&["grants"]).await.expect(7);
    assert!(
        as_alice.me().await.is_err(),
        "the signed-out token no longer works"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_unlock_offline_then_the_chain_is_uploaded() {
    let bdir = tempfile::tempdir().unwrap();
    let b = broker(bdir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let url = b.url();
    let alice_token = user(&b, "alice", &["oncall"], false).await;
    let carol_token = user(&b, "carol", &["security"], true).await;
    let as_carol = Client::new(&url, Some(&carol_token)).unwrap();
    let secret = format!("bg-{}", std::process::id());
    as_carol
        .put_secret("payments-db-breakglass", &secret)
        .await
        .unwrap();
    let alice = Machine::start().await;
    alice.login(&url, &alice_token).await.expect(0);
    let o = alice.firedoor(&["breakglass", "list"]).await.expect(0);
    assert!(o.stdout.contains("not enrolled"), "{o:?}");
    let passphrase = "correct horse battery staple";
    alice
        .firedoor_stdin(&["breakglass", "enrol", "--passphrase-stdin"], "too short")
        .await
        .expect(1);
    let o = alice
        .firedoor_stdin(&["breakglass", "enrol", "--passphrase-stdin"], passphrase)
        .await
        .expect(0);
    assert!(o.stdout.contains("enrolled"), "{o:?}");
    let sealed = until("the sealed secret is cached on the device", || async {
        let list = alice
            .firedoor(&["breakglass", "list", "--json"])
            .await
            .expect(0)
            .json();
        list["credentials"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "payments-db-breakglass")
            .cloned()
    })
    .await;
    assert_eq!(sealed["state"], "valid");

    // --- the broker is down: unlock from the sealed copy
    let addr = b.addr;
    b.stop().await;
    let unlock = [
        "breakglass",
        "unlock",
        "payments-db-breakglass",
        "--reason",
        "INC-900 broker down, payments stuck",
        "--passphrase-stdin",
    ];
    let o = alice
        .firedoor_stdin(&unlock, "not my passphrase")
        .await
        .expect(1);
    assert!(o.stderr.contains("Wrong passphrase"), "{o:?}");
    let o = alice
        .firedoor_stdin(
            &[
                "breakglass",
                "unlock",
                "payments-db-breakglass",
                "--reason",
                " ",
                "--passphrase-stdin",
            ],
            passphrase,
        )
        .await
        .expect(1);
    assert!(o.stderr.contains("Give a reason"), "{o:?}");
    let o = alice.firedoor_stdin(&unlock, passphrase).await.expect(0);
    assert_eq!(
        o.stdout,
        format!("{secret}\n"),
        "the secret alone on stdout"
    );
    assert!(o.stderr.contains("Opened offline"), "{o:?}");
    let list = alice
        .firedoor(&["breakglass", "list", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(list["device"]["pending_records"], 1, "{list}");
    assert_eq!(list["device"]["chain_ok"], true);
    assert_eq!(
        any_file_contains(alice.dir.path(), &secret).map(|p| p.display().to_string()),
        None,
        "the secret is in no file"
    );

    // --- back: the next command uploads the signed record; the broker records it
    let _b = broker(bdir.path(), addr).await;
    alice.firedoor(&["status"]).await.expect(0);
    let rec = until("unlock record at the broker", || async {
        as_carol
            .audit(0, 1000)
            .await
            .ok()?
            .into_iter()
            .find(|r| r.action == "break_glass_offline_unlock")
    })
    .await;
    assert_eq!(rec.actor, "alice");
    assert_eq!(rec.subject, "payments-db-breakglass");
    assert!(rec.details.contains("INC-900"), "{}", rec.details);
    let list = alice
        .firedoor(&["breakglass", "list", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        list["device"]["pending_records"], 0,
        "acknowledged records leave the device: {list}"
    );
}

#[tokio::test]
async fn completions_help_and_no_window() {
    // No DISPLAY, no session bus: the app could not start here; the CLI must.
    let env: Vec<(String, String)> = vec![("HOME".into(), "/nonexistent".into())];
    let o = firedoor_with(&env, &["--help"], None).await.expect(0);
    for needle in [
        "Exit codes",
        "login",
        "breakglass",
        "completions",
        "7  not signed in",
    ] {
        assert!(o.stdout.contains(needle), "--help shows {needle}: {o:?}");
    }
    let o = firedoor_with(&env, &["--version"], None).await.expect(0);
    assert!(o.stdout.starts_with("firedoor "), "{o:?}");
    firedoor_with(&env, &["frobnicate"], None).await.expect(2);
    firedoor_with(&env, &["login", "--url", "http://x", "--token", "t"], None)
        .await
        .expect(2);

    let o = firedoor_with(&env, &["completions", "bash"], None)
        .await
        .expect(0);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("firedoor.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    // bash loads it and completes subcommands with it.
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p firedoor && COMP_WORDS=(firedoor breakg); COMP_CWORD=1; COMP_LINE='firedoor breakg'; COMP_POINT=15; _firedoor firedoor breakg firedoor && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "bash loads the completions: {check:?}"
    );
    assert!(out.contains("breakglass"), "completes `breakg`: {out}");
    for shell in ["zsh", "fish"] {
        let o = firedoor_with(&env, &["completions", shell], None)
            .await
            .expect(0);
        assert!(o.stdout.contains("firedoor"), "{shell}: {o:?}");
    }
}

const SSH_POLICY: &str = r#"
[integrations.hosts]
kind = "ssh"

[integrations.hosts.host_sets.payments]
hosts = ["payments-1.internal"]
user = "oncall"

[integrations.hosts.host_sets.payments.permissions.login]
principals = ["payments-oncall"]

[bundles.payments-shell]
title = "Payments hosts"
resources = [{ integration = "hosts", resource = "payments", permission = "login" }]

[flows.hosts]
bundles = ["payments-shell"]
requesters = { groups = ["oncall"] }
approvals = 0
default_duration = "1h"
max_duration = "4h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_of_an_ssh_grant_put_its_key_and_certificate_into_the_agent() {
    let bdir = tempfile::tempdir().unwrap();
    let policy = firedoor_core::policy::parse_policy("ssh", SSH_POLICY).unwrap();
    let mut cfg = Config::new(bdir.path(), policy);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let b = firedoor_server::start(cfg).await.unwrap();
    let url = b.url();
    let token = user(&b, "alice", &["oncall"], false).await;
    let alice = Machine::start().await;
    alice.login(&url, &token).await.expect(0);
    let agent = alice
        .env
        .iter()
        .find(|(k, _)| k == "SSH_AUTH_SOCK")
        .map(|(_, v)| std::path::PathBuf::from(v))
        .unwrap();
    let in_agent = || async {
        firedoor_client::ssh_agent::comments(&agent)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.starts_with("firedoor:alice:"))
            .collect::<Vec<_>>()
    };
    let r = alice
        .firedoor(&[
            "request",
            "payments-shell",
            "--reason",
            "disk full",
            "--json",
        ])
        .await
        .expect(0)
        .json();
    let gid = s(&r["request"]["grant_id"]);
    assert!(gid.starts_with("grt_"), "{r}");

    // Without an agent: says how to get one.
    let no_agent: Vec<(String, String)> = alice
        .env
        .iter()
        .filter(|(k, _)| k != "SSH_AUTH_SOCK")
        .cloned()
        .collect();
    let o = firedoor_with(&no_agent, &["creds", &gid, "--json"], None)
        .await
        .expect(1);
    assert_eq!(error_code(&o), "no_ssh_agent");

    let o = alice.firedoor(&["creds", &gid]).await.expect(0);
    assert!(
        o.stdout.contains("are in your ssh-agent")
            && o.stdout.contains("ssh oncall@payments-1.internal"),
        "{o:?}"
    );
    assert_eq!(in_agent().await, vec![format!("firedoor:alice:{gid}")]);
    let st = alice
        .firedoor(&["creds", &gid, "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(st["in_agent"], true);
    assert_eq!(st["principals"][0], "payments-oncall");
    // Once, not once per command: the agent holds one key for the grant.
    assert_eq!(in_agent().await.len(), 1);

    alice.firedoor(&["revoke", &gid]).await.expect(0);
    until("the key left the agent", || async {
        in_agent().await.is_empty().then_some(())
    })
    .await;
    b.stop().await;
}

/// The CLI computes the app's data dir itself (without Tauri): the identifier it
/// joins must be the app's, or the two would keep two caches.
#[test]
fn the_cli_uses_the_apps_identifier_and_keyring_service() {
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tauri.conf.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        conf["identifier"],
        firedoor_client::paths::APP_IDENTIFIER,
        "tauri.conf.json's identifier names the app data dir"
    );
    assert_eq!(firedoor_client::paths::KEYRING_SERVICE, "firedoor");
}

/// Single sign-on from the terminal, against a real OpenID Provider: `firedoor login
/// --sso` opens the browser (`xdg-open`, which honours `$BROWSER`: here a script
/// that hands the URL to the test, which then signs in at the IdP's forms as a
/// person would), the session lands in the keyring and nowhere else, commands use
/// it, the command line renews the short access token itself when it has ended at
/// the broker, and once the session is over it says so and exits 7.
#[tokio::test(flavor = "multi_thread")]
async fn login_with_sso_in_the_browser_and_the_session_renews_until_it_ends() {
    use firedoor_testkit::oidc::{self, OidcProvider, OidcUser};
    let idp = OidcProvider::start(&[OidcUser::new("sam", "sam-pw-1", &["idp-sre"])]);
    let policy = format!(
        "{}\n[sso]\nissuer = \"{}\"\nclient_id = \"{}\"\nsession_max = \"1h\"\naccess_ttl = \"1m\"\n[sso.groups]\n\"idp-sre\" = [\"oncall\"]\n",
        firedoor_server::DEMO_POLICY,
        idp.issuer(),
        oidc::CLIENT_ID
    );
    let bdir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        bdir.path(),
        firedoor_core::policy::parse_policy("sso", &policy).unwrap(),
    );
    let clock = std::sync::Arc::new(firedoor_server::clock::ManualClock::new(chrono::Utc::now()));
    cfg.clock = clock.clone();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.worker_interval = Duration::from_millis(200);
    let b = firedoor_server::start(cfg).await.unwrap();
    let url = b.url();

    let sam = Machine::start().await;
    let seen = sam.dir.path().join("browser-url");
    let browser = sam.dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut env = sam.env.clone();
    env.push(("BROWSER".into(), browser.display().to_string()));

    let login = {
        let (env, url) = (env.clone(), url.clone());
        tokio::spawn(async move {
            firedoor_with(&env, &["login", "--url", &url, "--sso", "--json"], None).await
        })
    };
    let auth_url = until("the command line opens the browser", || {
        let seen = seen.clone();
        async move {
            std::fs::read_to_string(&seen)
                .ok()
                .filter(|s| !s.is_empty())
        }
    })
    .await;
    assert!(auth_url.starts_with(&idp.issuer()), "{auth_url}");
    assert!(
        auth_url.contains("code_challenge_method=S256"),
        "{auth_url}"
    );
    // A wrong password gets nowhere; the right one signs in.
    assert!(oidc::login(&auth_url, "sam", "wrong").await.is_err());
    oidc::login(&auth_url, "sam", "sam-pw-1").await.unwrap();
    let o = login.await.unwrap().expect(0);
    let st = o.json();
    assert_eq!(st["user"], "sam");
    assert_eq!(st["sso"], true);
    assert_eq!(
        st["groups"],
        serde_json::json!(["oncall"]),
        "groups from the IdP's claims"
    );
    assert!(o.stderr.contains("Opening the browser"), "{o:?}");
    for secret_prefix in ["fdt_", "fdr_"] {
        assert_eq!(
            any_file_contains(sam.dir.path(), secret_prefix),
            None,
            "no token of the session is in a file"
        );
    }

    // Commands use the session: an on-call bundle is requestable.
    let o = firedoor_with(&env, &["bundles", "--json"], None)
        .await
        .expect(0);
    assert!(o.stdout.contains("staging-shell"), "{o:?}");

    // The access token (1 minute) ends at the broker: the next command renews the
    // sign-in by itself, without the IdP (stopped) and without a browser.
    drop(idp);
    clock.advance(chrono::Duration::minutes(3));
    let o = firedoor_with(&env, &["grants", "--json"], None)
        .await
        .expect(0);
    assert!(o.json().is_array(), "{o:?}");
    let o = firedoor_with(&env, &["status", "--json"], None)
        .await
        .expect(0);
    assert_eq!(o.json()["status"]["sso"], true, "{o:?}");

    // Past session_max the session is over: the command says so and exits 7.
    clock.advance(chrono::Duration::hours(2));
    let o = firedoor_with(&env, &["grants", "--json"], None)
        .await
        .expect(7);
    assert!(o.stderr.contains("sign-in ended"), "{o:?}");
    let o = firedoor_with(&env, &["status", "--json"], None).await;
    assert_eq!(o.json()["status"]["signed_in"], false, "{o:?}");
    b.stop().await;
}

/// `firedoor shortcut`: the desktop app's global shortcut, shown, set (checked and
/// written one way), refused readably, turned off. Local only: no broker, no keyring.
#[tokio::test]
async fn notify_the_global_shortcut_is_shown_set_and_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = vec![
        ("HOME".into(), dir.path().display().to_string()),
        (
            "FIREDOOR_DATA_DIR".into(),
            dir.path().join("app").display().to_string(),
        ),
    ];
    let o = firedoor_with(&env, &["shortcut"], None).await.expect(0);
    assert_eq!(o.stdout.trim(), "Global shortcut: Ctrl+Alt+K (the default)");
    let o = firedoor_with(&env, &["shortcut", "alt+ctrl+j"], None)
        .await
        .expect(0);
    assert!(o.stdout.starts_with("Global shortcut: Ctrl+Alt+J"), "{o:?}");
    let o = firedoor_with(&env, &["shortcut"], None).await.expect(0);
    assert_eq!(o.stdout.trim(), "Global shortcut: Ctrl+Alt+J");
    // Without Ctrl, Alt or Super it would take a key from typing: refused, kept.
    let o = firedoor_with(&env, &["shortcut", "Shift+J"], None)
        .await
        .expect(2);
    assert!(o.stderr.contains("needs Ctrl, Alt or Super"), "{o:?}");
    let o = firedoor_with(&env, &["shortcut", "--json"], None)
        .await
        .expect(0);
    assert_eq!(o.json()["shortcut"], "Ctrl+Alt+J");
    let o = firedoor_with(&env, &["shortcut", "off", "--json"], None)
        .await
        .expect(0);
    assert_eq!(o.json()["shortcut"], "off");
    let o = firedoor_with(&env, &["shortcut"], None).await.expect(0);
    assert_eq!(o.stdout.trim(), "Global shortcut: off");
}
