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
use firedoor_server::{auth, Config};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The demo policy's break-glass secret (rotated by the demo connector).
const DEMO_SECRET: &str = "payments-db-breakglass";

/// The seeded team: name, groups, admin.
const TEAM: &[(&str, &[&str], bool)] = &[
    ("alice", &["oncall"], false),
    ("bob", &["oncall", "sre-leads"], false),
    ("carol", &["security"], true),
];

async fn token_for(
    pool: &sqlx::SqlitePool,
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

pub async fn start(dir: &Path, console: Arc<Console>) -> anyhow::Result<()> {
    let policy =
        firedoor_core::policy::parse_policy("demo-policy.toml", firedoor_server::DEMO_POLICY)?;
    let mut cfg = Config::new(dir.join("broker"), policy);
    cfg.start_details =
        serde_json::json!({ "policy": "built-in demo policy", "mode": "desktop demo" });
    let broker = firedoor_server::start(cfg).await?;
    let url = broker.url();
    let pool = broker.broker.pool.clone();
    let mut tokens = std::collections::BTreeMap::new();
    for (name, groups, admin) in TEAM {
        tokens.insert(*name, token_for(&pool, name, groups, *admin).await?);
    }
    console
        .sign_in(&url, &tokens["bob"])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(%url, "demo broker running; you are bob");
    // The admin stores the demo break-glass secret once (later the broker rotates it).
    let carol = Client::new(&url, Some(&tokens["carol"]))?;
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
            },
            None,
        )
        .await
    {
        tracing::warn!(error = %e, "demo teammate request");
    }
    // Keep the broker alive for the life of the app.
    std::future::pending::<()>().await;
    drop(broker);
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
