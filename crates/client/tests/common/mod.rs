//! Shared by the client's integration tests: a real broker on a SQLite file with the
//! demo policy, and API tokens for its users.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use firedoor_server::audit::Actor;
use firedoor_server::{auth, Config, RunningBroker};
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::path::Path;

/// A broker with the demo policy on `dir`, listening on `listen` (port 0: any).
pub async fn broker(dir: &Path, listen: SocketAddr) -> RunningBroker {
    let policy = firedoor_core::policy::parse_policy("demo", firedoor_server::DEMO_POLICY).unwrap();
    let mut cfg = Config::new(dir, policy);
    cfg.listen = listen;
    firedoor_server::start(cfg).await.unwrap()
}

/// A new API token for `name`, creating the user (with `groups`, `admin`) if needed.
pub async fn token(b: &RunningBroker, name: &str, groups: &[&str], admin: bool) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let pool = &b.broker.store;
    let issued = match auth::get_user(pool, name).await.unwrap() {
        Some(_) => auth::issue_token(pool, &Actor::System, name, b.broker.now())
            .await
            .unwrap(),
        None => auth::add_user(pool, &Actor::System, name, &groups, admin, b.broker.now())
            .await
            .unwrap(),
    };
    issued.token.expose_secret().to_string()
}
