//! `Console::sign_in_sso` against a real broker and a real OpenID Provider: the
//! sign-in keeps its secrets in the keyring (never the cache file), the run loop
//! renews the access token before it ends, a session that is over signs the app out
//! with a clear message, and sign-out ends the session at the broker.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use firedoor_client::console::{Console, SESSION_ENDED};
use firedoor_client::secrets::{MemoryStore, SecretStore};
use firedoor_server::clock::ManualClock;
use firedoor_server::{Config, RunningBroker};
use firedoor_testkit::oidc::{login, OidcProvider, OidcUser, CLIENT_ID};
use std::sync::Arc;

async fn broker(dir: &std::path::Path, issuer: &str, clock: Arc<ManualClock>) -> RunningBroker {
    let text = format!(
        "{}\n[sso]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nsession_max = \"1h\"\naccess_ttl = \"5m\"\n[sso.groups]\n\"idp-sre\" = [\"oncall\"]\n",
        firedoor_server::DEMO_POLICY
    );
    let policy = firedoor_core::policy::parse_policy("sso", &text).unwrap();
    let mut cfg = Config::new(dir, policy);
    cfg.clock = clock;
    firedoor_server::start(cfg).await.unwrap()
}

fn opener(
    user: &'static str,
    password: &'static str,
) -> impl FnOnce(String) -> Result<(), String> + Send {
    move |url| {
        tokio::spawn(async move {
            if let Err(e) = login(&url, user, password).await {
                panic!("IdP login failed: {e}");
            }
        });
        Ok(())
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sign_in_sso_refreshes_in_the_background_and_signs_out_when_the_session_ends() {
    let idp = OidcProvider::start(&[OidcUser::new("sam", "sam-pw", &["idp-sre"])]);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let b = broker(&dir.path().join("broker"), &idp.issuer(), clock.clone()).await;
    let url = b.url();
    let secrets = Arc::new(MemoryStore::default());
    let app_dir = dir.path().join("app");
    let console = Console::open(&app_dir, secrets.clone(), false)
        .await
        .unwrap();

    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        console.sign_in_sso(&[url.as_str()], opener("sam", "sam-pw")),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(status.signed_in && status.sso, "{status:?}");
    assert_eq!(status.user.as_deref(), Some("sam"));
    assert_eq!(status.groups, vec!["oncall"]);
    let access = secrets.get(&format!("api-token:{url}")).unwrap().unwrap();
    let refresh = secrets.get(&format!("sso-refresh:{url}")).unwrap().unwrap();
    assert!(access.starts_with("fdt_") && refresh.starts_with("fdr_"));
    assert!(secrets.get(&format!("sso-key:{url}")).unwrap().is_some());
    // Never in a file.
    for entry in std::fs::read_dir(&app_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&refresh) && !text.contains(&access));
    }
    let snap = console.snapshot().await.unwrap();
    assert!(snap.bundles.iter().any(|x| x.name == "prod-db-read"));

    // The run loop renews the access token before it ends (broker time moves).
    let run = tokio::spawn(console.clone().run(std::time::Duration::from_millis(200)));
    clock.advance(Duration::minutes(4));
    eventually("the access token is renewed", || {
        let (s, old) = (secrets.clone(), access.clone());
        let key = format!("api-token:{url}");
        async move { s.get(&key).unwrap().is_some_and(|t| t != old) }
    })
    .await;
    let renewed = secrets.get(&format!("api-token:{url}")).unwrap().unwrap();
    assert_ne!(
        secrets.get(&format!("sso-refresh:{url}")).unwrap().unwrap(),
        refresh
    );
    clock.advance(Duration::minutes(2));
    console.sync().await.expect("calls use the renewed token");
    let me = firedoor_client::Client::new(&url, Some(&renewed))
        .unwrap()
        .me()
        .await
        .unwrap();
    assert_eq!(me.name, "sam");

    // After session_max: the app signs itself out and says why.
    clock.advance(Duration::minutes(60));
    eventually("the app shows the sign-in ended", || {
        let c = console.clone();
        async move {
            let s = c.status().await.unwrap();
            !s.signed_in && s.session_ended.as_deref() == Some(SESSION_ENDED)
        }
    })
    .await;
    assert!(secrets
        .get(&format!("sso-refresh:{url}"))
        .unwrap()
        .is_none());
    assert!(secrets.get(&format!("api-token:{url}")).unwrap().is_none());
    run.abort();

    // Sign in again, then sign out: the session ends at the broker (its refresh
    // token is refused).
    // (The IdP's tokens carry the real time: bring the broker's clock back to it.)
    clock.set(Utc::now());
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        console.sign_in_sso(&[url.as_str()], opener("sam", "sam-pw")),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(status.signed_in && status.session_ended.is_none());
    let refresh = secrets.get(&format!("sso-refresh:{url}")).unwrap().unwrap();
    let key = secrets.get(&format!("sso-key:{url}")).unwrap().unwrap();
    console.sign_out().await.unwrap();
    let key: [u8; 32] = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&key);
    let e = firedoor_client::sso::refresh(
        &firedoor_client::Client::new(&url, None).unwrap(),
        &refresh,
        &key,
        b.broker.now(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some("session_expired"), "{e}");
}
