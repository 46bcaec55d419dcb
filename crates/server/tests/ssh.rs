//! SSH through the broker's certificate authority, against a real `sshd` started by
//! the test on a loopback port and set up as `ssh host-setup` says (the CA keys and
//! the KRL fetched from the broker's API): a grant's certificate runs a command; a
//! certificate for another principal is refused; after an early revoke it is
//! refused once the host has the new KRL; an expired one is refused with the broker
//! stopped. The broker's clock is set to the real time (sshd checks certificates
//! against it); expiry is shown with a grant made in the past, never by waiting.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;
use firedoor_client::ClientError;
use firedoor_core::api::CreateRequest;
use firedoor_core::lifecycle::GrantState;
use firedoor_testkit::sshd::Sshd;
use ssh_key::rand_core::OsRng;
use ssh_key::{LineEnding, PrivateKey};
use std::path::PathBuf;

const POLICY: &str = r#"
[integrations.hosts]
kind = "ssh"

[integrations.hosts.host_sets.payments]
hosts = ["127.0.0.1"]
user = "root"

[integrations.hosts.host_sets.payments.permissions.login]
principals = ["payments-oncall"]

[integrations.hosts.host_sets.payments.permissions.admin]
principals = ["payments-root"]
extensions = ["permit-pty", "permit-port-forwarding"]

[bundles.payments-shell]
title = "Payments hosts (login)"
resources = [{ integration = "hosts", resource = "payments", permission = "login" }]

[bundles.payments-root]
title = "Payments hosts (admin)"
resources = [{ integration = "hosts", resource = "payments", permission = "admin" }]

[flows.hosts]
bundles = ["payments-shell", "payments-root"]
requesters = { groups = ["oncall"] }
approvers = { groups = ["sre-leads"] }
approvals = 0
default_duration = "1h"
max_duration = "4h"
"#;

/// The policy's own connectors (the SSH one), not the harness's demo stand-ins.
fn real() -> firedoor_server::connectors::Connectors {
    let p = firedoor_core::policy::parse_policy("ssh.toml", POLICY).unwrap();
    firedoor_server::connectors::from_policy(&p).unwrap()
}

/// A key made for one grant, as the device makes it, and the files `ssh` reads.
struct DeviceKey {
    _dir: tempfile::TempDir,
    key: PathBuf,
    cert: PathBuf,
    public: String,
}

fn device_key() -> DeviceKey {
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let key = dir.path().join("id_ed25519");
    k.write_openssh_file(&key, LineEnding::LF).unwrap();
    DeviceKey {
        cert: dir.path().join("id_ed25519-cert.pub"),
        public: k.public_key().to_openssh().unwrap(),
        key,
        _dir: dir,
    }
}

async fn krl(tb: &TestBroker) -> Vec<u8> {
    reqwest::get(tb.url("/ssh/krl"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn ca(tb: &TestBroker) -> String {
    let r = reqwest::get(tb.url("/ssh/hosts/ca")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

async fn grant(tb: &TestBroker, bundle: &str) -> firedoor_core::GrantId {
    let (r, _) = tb
        .client("alice")
        .create_request(
            &CreateRequest {
                bundle: bundle.into(),
                justification: Some("INC-9 payments hosts".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    eventually("active", || async {
        let g = tb.client("alice").grant(&gid).await.unwrap();
        (g.state == GrantState::Active).then_some(())
    })
    .await;
    gid
}

fn ok(o: &std::process::Output) -> bool {
    o.status.success()
}

#[tokio::test]
async fn a_certificate_opens_the_host_until_the_grant_ends() {
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let sshd = Sshd::start(&ca(&tb).await, &krl(&tb).await, &["payments-oncall"]);
    let alice = tb.client("alice");

    // A grant of the login level: its certificate runs a command.
    let gid = grant(&tb, "payments-shell").await;
    let k = device_key();
    let certs = alice.ssh_certificate(&gid, &k.public).await.unwrap();
    assert_eq!(certs.len(), 1);
    let c = &certs[0];
    assert_eq!(c.principals, vec!["payments-oncall".to_string()]);
    assert_eq!(c.key_id, format!("firedoor:alice:{gid}"));
    assert_eq!(c.user.as_deref(), Some("root"));
    let g = alice.grant(&gid).await.unwrap();
    assert_eq!(c.valid_before, g.expires_at);
    std::fs::write(&k.cert, &c.certificate).unwrap();
    let out = sshd.ssh(&k.key, &k.cert, "echo firedoor-ok");
    assert!(ok(&out), "ssh failed: {out:?}\n{}", sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "firedoor-ok");
    assert!(
        sshd.log().contains(&format!("ID firedoor:alice:{gid}")),
        "the host logs who"
    );

    // The same key without the certificate: nothing (no authorized_keys).
    let bare = tempfile::tempdir().unwrap();
    let out = sshd.ssh(&k.key, &bare.path().join("none"), "true");
    assert!(!ok(&out));

    // The admin level's principal is not one this account accepts.
    let root = grant(&tb, "payments-root").await;
    let k2 = device_key();
    let c2 = alice.ssh_certificate(&root, &k2.public).await.unwrap();
    assert_eq!(c2[0].principals, vec!["payments-root".to_string()]);
    std::fs::write(&k2.cert, &c2[0].certificate).unwrap();
    assert!(
        !ok(&sshd.ssh(&k2.key, &k2.cert, "true")),
        "another principal is refused"
    );

    // Revoked early: still usable until the host fetches the KRL, then refused.
    alice.revoke(&gid).await.unwrap();
    assert!(
        ok(&sshd.ssh(&k.key, &k.cert, "true")),
        "the host has the old KRL"
    );
    let list = krl(&tb).await;
    sshd.set_krl(&list);
    let out = sshd.ssh(&k.key, &k.cert, "true");
    assert!(!ok(&out), "revoked: {out:?}");
    assert!(sshd.log().contains("revoked"), "{}", sshd.log());
    // The reference tool reads the KRL the same way.
    let krl_file = sshd.dir().join("krl");
    let q = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl_file)
        .arg(&k.cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("REVOKED"),
        "{q:?}"
    );
    // A revoked grant gets no new certificate.
    let e = alice
        .ssh_certificate(&gid, &device_key().public)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 404, .. }), "{e}");

    let audit = tb.client("carol").audit(0, 1000).await.unwrap();
    let issued: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "ssh_certificate_issued")
        .collect();
    assert_eq!(issued.len(), 2);
    assert!(issued[0].details.contains("payments-oncall"));
    assert!(audit.iter().any(|r| r.action == "ssh_ca_created"));
    tb.running.stop().await;
}

/// A grant made two hours ago for one hour: its certificate expired an hour ago,
/// and the host refuses it on its own — with the broker stopped.
#[tokio::test]
async fn an_expired_certificate_is_refused_with_the_broker_stopped() {
    let tb = spawn_at(POLICY, Some(real()), Utc::now() - Duration::hours(2)).await;
    let ca_keys = ca(&tb).await;
    let gid = grant(&tb, "payments-shell").await;
    let k = device_key();
    let c = tb
        .client("alice")
        .ssh_certificate(&gid, &k.public)
        .await
        .unwrap();
    std::fs::write(&k.cert, &c[0].certificate).unwrap();
    assert!(c[0].valid_before < Utc::now());
    let empty_krl = krl(&tb).await;
    tb.running.stop().await;
    let sshd = Sshd::start(&ca_keys, &empty_krl, &["payments-oncall"]);
    let out = sshd.ssh(&k.key, &k.cert, "true");
    assert!(!ok(&out), "expired: {out:?}");
}

/// Only the holder of an active SSH grant gets a certificate, only for an ed25519
/// key; the CA keys and the KRL are public, the CA's private key is not anywhere.
#[tokio::test]
async fn certificates_are_for_the_holders_key_only() {
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let gid = grant(&tb, "payments-shell").await;
    let k = device_key();
    let e = tb
        .client("dave")
        .ssh_certificate(&gid, &k.public)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 404, .. }), "{e}");
    let e = tb
        .client("bob")
        .ssh_certificate(&gid, &k.public)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Api {
                status: 403 | 404,
                ..
            }
        ),
        "{e}"
    );
    for bad in [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
        "not a key",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ] {
        let e = tb
            .client("alice")
            .ssh_certificate(&gid, bad)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Api { status: 400, .. }),
            "{bad}: {e}"
        );
    }
    let r = reqwest::get(tb.url("/ssh/nope/ca")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The CA's private key is sealed in the store (age, to the broker key): no
    // OpenSSH private key text there.
    assert_eq!(ca(&tb).await.lines().count(), 1);
    let sql = if on_postgres() {
        "SELECT upper(encode(sealed_private, 'hex')) FROM ssh_cas"
    } else {
        "SELECT hex(sealed_private) FROM ssh_cas"
    };
    let sealed = tb.raw_db().await.strings(sql).await;
    assert_eq!(sealed.len(), 1);
    let hex_of = |t: &str| t.bytes().map(|b| format!("{b:02X}")).collect::<String>();
    assert!(sealed[0].starts_with(&hex_of("age-encryption.org/v1")));
    assert!(!sealed[0].contains(&hex_of("PRIVATE KEY")));
    tb.running.stop().await;
}

/// A CA rotation: hosts get the new key at once (both are published), certificates
/// from the old one keep working, the new one signs after the overlap.
#[tokio::test]
async fn a_ca_rotation_publishes_the_new_key_before_it_signs() {
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let before = ca(&tb).await;
    assert_eq!(before.lines().count(), 1);
    let gid = grant(&tb, "payments-shell").await;
    let old = device_key();
    let c_old = tb
        .client("alice")
        .ssh_certificate(&gid, &old.public)
        .await
        .unwrap();
    std::fs::write(&old.cert, &c_old[0].certificate).unwrap();
    let cli = firedoor_server::audit::Actor::Cli("ops".into());
    tb.running
        .broker
        .rotate_ssh_ca(&cli, "hosts", 600)
        .await
        .unwrap();
    let both = ca(&tb).await;
    assert_eq!(both.lines().count(), 2);
    let sshd = Sshd::start(&both, &krl(&tb).await, &["payments-oncall"]);
    assert!(
        ok(&sshd.ssh(&old.key, &old.cert, "true")),
        "old CA still trusted"
    );
    // Still signing with the old key during the overlap.
    let k = device_key();
    let c = tb
        .client("alice")
        .ssh_certificate(&gid, &k.public)
        .await
        .unwrap();
    let signer = |line: &str| {
        ssh_key::Certificate::from_openssh(line)
            .unwrap()
            .signature_key()
            .clone()
    };
    assert_eq!(signer(&c[0].certificate), signer(&c_old[0].certificate));
    // After the overlap the new one signs, and hosts that have it accept it.
    tb.advance(Duration::seconds(601));
    let k3 = device_key();
    let c3 = tb
        .client("alice")
        .ssh_certificate(&gid, &k3.public)
        .await
        .unwrap();
    assert_ne!(signer(&c3[0].certificate), signer(&c_old[0].certificate));
    std::fs::write(&k3.cert, &c3[0].certificate).unwrap();
    assert!(ok(&sshd.ssh(&k3.key, &k3.cert, "true")), "{}", sshd.log());
    tb.running.stop().await;
}

/// The script `ssh host-setup` prints fetches the KRL and CA keys from the broker
/// and installs them only when they parse; with the broker gone it keeps the old
/// files and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_fetch_script_installs_what_parses_and_keeps_it_when_the_broker_is_gone() {
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let gid = grant(&tb, "payments-shell").await;
    let k = device_key();
    let c = tb
        .client("alice")
        .ssh_certificate(&gid, &k.public)
        .await
        .unwrap();
    std::fs::write(&k.cert, &c[0].certificate).unwrap();
    tb.client("alice").revoke(&gid).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (krl_file, ca_file) = (dir.path().join("firedoor.krl"), dir.path().join("ca.pub"));
    let base = tb.url("/").trim_end_matches("/api/v1/").to_string();
    let script = firedoor_server::ssh_setup::fetch_script_to(
        "hosts",
        &base,
        krl_file.to_str().unwrap(),
        ca_file.to_str().unwrap(),
    );
    let run = || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&ca_file).unwrap(), ca(&tb).await);
    let q = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl_file)
        .arg(&k.cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("REVOKED"),
        "{q:?}"
    );
    let before = std::fs::read(&krl_file).unwrap();
    tb.running.stop().await;
    let out = run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kept the old"));
    assert_eq!(
        std::fs::read(&krl_file).unwrap(),
        before,
        "the old list stays"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 2, "no temp files left");
}

/// The device side: a key made in memory for the grant goes into a real ssh-agent
/// with its certificate, `ssh` logs in with the agent alone, and taking it out of
/// the agent (as the app does when the grant ends) leaves nothing that logs in.
#[tokio::test]
async fn the_key_in_a_real_ssh_agent_logs_in_until_it_is_taken_out() {
    use firedoor_client::ssh_agent;
    use firedoor_testkit::sshd::SshAgent;
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let sshd = Sshd::start(&ca(&tb).await, &krl(&tb).await, &["payments-oncall"]);
    let agent = SshAgent::start();
    let gid = grant(&tb, "payments-shell").await;
    let key = ssh_agent::GrantKey::new().unwrap();
    let certs = tb
        .client("alice")
        .ssh_certificate(&gid, &key.public_line().unwrap())
        .await
        .unwrap();
    let cert = &certs[0].certificate;
    ssh_agent::add(&agent.socket, &key, cert, 3600)
        .await
        .unwrap();
    let listed = agent.list();
    assert!(
        listed.contains(&format!("firedoor:alice:{gid}")) && listed.contains("ED25519-CERT"),
        "{listed}"
    );
    assert_eq!(
        ssh_agent::comments(&agent.socket).await.unwrap(),
        vec![format!("firedoor:alice:{gid}")]
    );
    let out = sshd.ssh_with_agent(&agent.socket, "echo via-agent");
    assert!(ok(&out), "{out:?}\n{}", sshd.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via-agent");

    ssh_agent::remove(&agent.socket, cert).await.unwrap();
    assert!(!agent.list().contains("firedoor:"), "{}", agent.list());
    assert!(!ok(&sshd.ssh_with_agent(&agent.socket, "true")));
    // Removing what is not there is fine (the grant ended twice over).
    ssh_agent::remove(&agent.socket, cert).await.unwrap();
    tb.running.stop().await;
}

/// The app's part, through the console the desktop runs: once alice's SSH grant is
/// active, a sync puts a key for it in her running ssh-agent (and says so); a
/// restarted console finds it there instead of adding another; the revoke takes it
/// out and nothing logs in any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_the_agent_in_step_with_the_grants() {
    use firedoor_client::console::Console;
    use firedoor_client::secrets::MemoryStore;
    use firedoor_testkit::sshd::SshAgent;
    use std::sync::Arc;
    let tb = spawn_at(POLICY, Some(real()), Utc::now()).await;
    let sshd = Sshd::start(&ca(&tb).await, &krl(&tb).await, &["payments-oncall"]);
    let agent = SshAgent::start();
    // Edition 2021: setting the environment is safe; only this test reads it.
    std::env::set_var("SSH_AUTH_SOCK", &agent.socket);
    let dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(MemoryStore::default());
    let open = || Console::open(dir.path(), secrets.clone(), false);
    let console = open().await.unwrap();
    console
        .sign_in(&tb.running.url(), tb.token("alice"))
        .await
        .unwrap();
    let r = console
        .request_bundle(CreateRequest {
            bundle: "payments-shell".into(),
            justification: Some("INC-9 disk full".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let gid = r.request.unwrap().grant_id.unwrap();
    console.sync().await.unwrap();
    let snap = console.snapshot().await.unwrap();
    assert_eq!(snap.ssh.len(), 1, "{:?}", snap.ssh);
    let s = &snap.ssh[0];
    assert!(s.in_agent, "{s:?}");
    assert_eq!(s.principals, vec!["payments-oncall".to_string()]);
    assert_eq!(s.command.as_deref(), Some("ssh root@127.0.0.1"));
    assert_eq!(agent.list().matches("firedoor:alice:").count(), 1);
    assert!(ok(&sshd.ssh_with_agent(&agent.socket, "true")));

    // A restart finds the key in the agent.
    console.close().await;
    drop(console);
    let console = open().await.unwrap();
    console.sync().await.unwrap();
    assert!(console.snapshot().await.unwrap().ssh[0].in_agent);
    assert_eq!(
        agent.list().matches("firedoor:alice:").count(),
        1,
        "not added twice"
    );

    // Extended: a new key with a certificate to the new end replaces the old one.
    let before = firedoor_client::ssh_agent::identities(&agent.socket)
        .await
        .unwrap();
    console
        .extend(
            &gid,
            firedoor_core::api::ExtendBody {
                duration_secs: Some(1800),
                justification: Some("still on it".into()),
            },
        )
        .await
        .unwrap();
    console.sync().await.unwrap();
    let g = tb.client("alice").grant(&gid).await.unwrap();
    let after = firedoor_client::ssh_agent::identities(&agent.socket)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the old key left the agent");
    assert_ne!(after[0].0, before[0].0, "a new certificate");
    assert_eq!(
        firedoor_client::ssh_agent::cert_valid_before(&after[0].0),
        Some(g.expires_at.timestamp() as u64)
    );
    assert!(ok(&sshd.ssh_with_agent(&agent.socket, "true")));

    console.revoke(&gid).await.unwrap();
    console.sync().await.unwrap();
    assert!(console.snapshot().await.unwrap().ssh.is_empty());
    assert!(!agent.list().contains("firedoor:"), "{}", agent.list());
    assert!(!ok(&sshd.ssh_with_agent(&agent.socket, "true")));
    tb.running.stop().await;
}
