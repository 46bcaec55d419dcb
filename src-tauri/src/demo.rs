//! Demo mode: the broker runs in-process on an embedded SQLite database with the
//! built-in demo policy and a seeded team. You are bob (on call, SRE lead): you can
//! request bundles and approve. Shortly after start, teammate alice asks for prod
//! read access, so an approval arrives as a desktop notification. The demo policy's
//! break-glass secret gets a (demo) value, so the Break glass view has something to
//! seal once you set a passphrase.

use firedoor_client::console::Console;
use firedoor_client::Client;
use firedoor_core::api::CreateRequest;
use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config, RunningBroker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The in-process demo broker. It can be stopped and started again on the same
/// address ("pull the cable"), so offline mode and offline break glass can be tried
/// without a real outage.
#[derive(Default)]
pub struct DemoBroker {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    dir: Option<PathBuf>,
    addr: Option<SocketAddr>,
    running: Option<RunningBroker>,
}

fn config(dir: &Path, listen: Option<SocketAddr>) -> anyhow::Result<Config> {
    let policy =
        firedoor_core::policy::parse_policy("demo-policy.toml", firedoor_server::DEMO_POLICY)?;
    let mut cfg = Config::new(dir.join("broker"), policy);
    if let Some(addr) = listen {
        cfg.listen = addr;
    }
    cfg.start_details =
        serde_json::json!({ "policy": "built-in demo policy", "mode": "desktop demo" });
    Ok(cfg)
}

impl DemoBroker {
    /// Stops the broker (`up = false`) or starts it again on its address.
    pub async fn set_up(&self, up: bool) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        match (up, inner.running.take()) {
            (false, Some(running)) => {
                running.stop().await;
                tracing::info!("demo broker stopped: the app is offline now");
            }
            (true, None) => {
                let (Some(dir), Some(addr)) = (inner.dir.clone(), inner.addr) else {
                    anyhow::bail!("the demo broker has not started yet");
                };
                inner.running = Some(firedoor_server::start(config(&dir, Some(addr))?).await?);
                tracing::info!(%addr, "demo broker started again");
            }
            (_, same) => inner.running = same,
        }
        Ok(())
    }
}

/// The demo policy's break-glass secret (rotated by the demo connector).
const DEMO_SECRET: &str = "payments-db-breakglass";

/// The seeded team: name, groups, admin.
const TEAM: &[(&str, &[&str], bool)] = &[
    ("alice", &["oncall"], false),
    ("bob", &["oncall", "sre-leads"], false),
    ("carol", &["security"], true),
];

async fn token_for(
    pool: &firedoor_server::store::Store,
    name: &str,
    groups: &[&str],
    admin: bool,
) -> anyhow::Result<String> {
    use secrecy_expose::Expose;
    let actor = Actor::System;
    let now = chrono::Utc::now();
    let issued = match auth::get_user(pool, name).await? {
        Some(_) => auth::issue_token(pool, &actor, name, now).await?,
        None => {
            let g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
            auth::add_user(pool, &actor, name, &g, admin, now).await?
        }
    };
    Ok(issued.token.expose())
}

pub async fn start(dir: &Path, console: Arc<Console>, demo: Arc<DemoBroker>) -> anyhow::Result<()> {
    let broker = firedoor_server::start(config(dir, None)?).await?;
    let url = broker.url();
    let pool = broker.broker.store.clone();
    {
        let mut inner = demo.inner.lock().await;
        inner.dir = Some(dir.to_path_buf());
        inner.addr = Some(broker.addr);
        inner.running = Some(broker);
    }
    let mut tokens = std::collections::BTreeMap::new();
    for (name, groups, admin) in TEAM {
        tokens.insert(*name, token_for(&pool, name, groups, *admin).await?);
    }
    let carol = Client::new(&url, Some(&tokens["carol"]))?;
    // bob covers the payments pager for the next 8 hours (an admin's override, in
    // the audit log), so the demo shows being on call.
    let bob = Client::new(&url, Some(&tokens["bob"]))?;
    if bob.me().await?.oncall.is_empty() {
        if let Err(e) = carol
            .add_override(
                "payments-primary",
                &firedoor_core::api::NewOverride {
                    user: "bob".into(),
                    starts_at: None,
                    ends_at: chrono::Utc::now() + chrono::Duration::hours(8),
                    reason: Some("demo: bob covers the payments pager".into()),
                },
            )
            .await
        {
            tracing::warn!(error = %e, "demo on-call override");
        }
    }
    console
        .sign_in(&url, &tokens["bob"])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(%url, "demo broker running; you are bob");
    // The admin stores the demo break-glass secret once (later the broker rotates it).
    let stored = carol
        .secrets()
        .await?
        .iter()
        .any(|s| s.name == DEMO_SECRET && s.version > 0);
    if !stored {
        carol
            .put_secret(DEMO_SECRET, "DEMO-ONLY-payments-breakglass-password")
            .await?;
    }
    // A teammate's request, to approve from the notification.
    let alice = Client::new(&url, Some(&tokens["alice"]))?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    if let Err(e) = alice
        .create_request(
            &CreateRequest {
                bundle: "prod-db-read".into(),
                duration_secs: Some(1800),
                justification: Some(
                    "INC-2041: checkout latency, need to look at slow queries".into(),
                ),
                ticket: None,
                incident: None,
                on_behalf_of: None,
            },
            None,
        )
        .await
    {
        tracing::warn!(error = %e, "demo teammate request");
    }
    Ok(())
}

mod secrecy_expose {
    pub trait Expose {
        fn expose(&self) -> String;
    }
    impl Expose for secrecy::SecretString {
        fn expose(&self) -> String {
            secrecy::ExposeSecret::expose_secret(self).to_string()
        }
    }
}
