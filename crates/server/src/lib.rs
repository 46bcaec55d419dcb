#![recursion_limit = "512"]
//! The Firedoor access broker as a library: [`start`] runs it (HTTP API, background
//! worker) on a data directory and returns a handle. The `firedoor-server` binary and
//! the desktop app's demo mode both call it.

pub mod access;
pub mod anchor;
pub mod audit;
pub mod auth;
pub mod breakglass;
pub mod clock;
pub mod connectors;
pub mod error;
pub mod fanout;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod probes;
pub mod report;
pub mod service;
pub mod ssh_setup;
pub mod store;
pub mod vault;

use crate::audit::Actor;
use crate::clock::Clock;
use crate::connectors::Connectors;
use crate::service::Broker;
use crate::store::{DatabaseUrl, Store};
use firedoor_core::audit::AuditEvent;
use firedoor_core::policy::Policy;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The memory allocator of the `firedoor-server` binary (and of the broker
/// benchmark, so that it measures what runs): mimalloc. Under load the system
/// allocator's arena locks were contended between the async threads (futex waits
/// and wake-ups inside `malloc`/`free`), and its frees spent time consolidating;
/// with mimalloc a lifecycle costs less CPU and holds the SQLite write turn for less
/// time (see the README's Benchmarks). Only the Rust side uses it: SQLite and other
/// C code keep the system allocator.
pub type ServerAllocator = mimalloc::MiMalloc;

/// The demo policy, built in so the demo needs no files.
pub const DEMO_POLICY: &str = include_str!("../../../examples/demo-policy.toml");

/// How the broker's listener is protected.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Plain HTTP: only allowed on a loopback address.
    None,
    /// TLS with these PEM files (rustls).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP on any address because a TLS proxy in front terminates TLS.
    BehindProxy,
}

pub struct Config {
    pub data_dir: PathBuf,
    /// The store; default: the SQLite file `<data_dir>/firedoor.db`.
    pub database: Option<DatabaseUrl>,
    /// How long live events are kept for streams to resume from.
    pub event_retention: chrono::Duration,
    pub policy: Policy,
    pub listen: SocketAddr,
    pub tls: Tls,
    pub clock: Arc<dyn Clock>,
    /// Connectors to use instead of the policy's (tests, demo).
    pub connectors: Option<Connectors>,
    /// How often the worker looks for due work when nothing wakes it.
    pub worker_interval: Duration,
    /// Extra facts recorded in the `broker_started` audit record.
    pub start_details: serde_json::Value,
    /// The broker's key file (age identity and envelope signing key); default
    /// `<data_dir>/broker.key`.
    pub key_file: Option<PathBuf>,
    /// The audit anchor file (signed heads, append-only); default
    /// `<data_dir>/audit-anchor.log`.
    pub audit_anchor: Option<PathBuf>,
    /// How often the head is anchored while records are written.
    pub anchor_interval: Duration,
    /// If set, `GET /metrics` wants `Authorization: Bearer <this>`.
    pub metrics_token: Option<secrecy::SecretString>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, policy: Policy) -> Self {
        Config {
            data_dir: data_dir.into(),
            database: None,
            event_retention: chrono::Duration::days(service::DEFAULT_EVENT_RETENTION_DAYS),
            policy,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: Tls::None,
            clock: Arc::new(clock::SystemClock::default()),
            connectors: None,
            worker_interval: Duration::from_millis(500),
            start_details: serde_json::json!({}),
            key_file: None,
            audit_anchor: None,
            anchor_interval: Duration::from_secs(60),
            metrics_token: None,
        }
    }

    /// Where the audit anchor file is.
    pub fn anchor_path(&self) -> PathBuf {
        anchor::path(&self.data_dir, self.audit_anchor.as_deref())
    }

    /// Where the broker's key file is.
    pub fn key_path(&self) -> PathBuf {
        key_path(&self.data_dir, self.key_file.as_deref())
    }
}

/// The key file: `explicit`, or `<data_dir>/broker.key`.
pub fn key_path(data_dir: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("broker.key"))
}

/// Loads the broker key, creating it only if nothing in the store was sealed with a
/// key before: a wrong `--key-file` must not silently start a second key.
async fn load_key(store: &Store, path: &Path) -> anyhow::Result<vault::BrokerKey> {
    if !path.exists() {
        if store.holds_sealed_values().await? {
            anyhow::bail!(
                "{}: no broker key there, but the database holds values sealed with one; \
                 pass the broker's key file with --key-file (or FIREDOOR_KEY_FILE)",
                path.display()
            );
        }
        if store.audit().any_signed().await? {
            anyhow::bail!(
                "{}: no broker key there, but the database's audit log is signed with one; \
                 pass the broker's key file with --key-file (or FIREDOOR_KEY_FILE)",
                path.display()
            );
        }
    }
    let key = vault::BrokerKey::load_or_create(path)?;
    store.set_signer(key.signing_key());
    Ok(key)
}

/// Opens the store of a data directory for the CLI's writes (users, tokens): loads
/// the broker key (creating it on a fresh data directory) so the audit records it
/// appends are signed.
pub async fn open_store(
    data_dir: &Path,
    database: Option<&DatabaseUrl>,
    key_file: Option<&Path>,
) -> anyhow::Result<Store> {
    let store = open_db(data_dir, database).await?;
    load_key(&store, &key_path(data_dir, key_file)).await?;
    Ok(store)
}

/// Opens `database`, or the SQLite file in the data directory.
pub async fn open_db(data_dir: &Path, database: Option<&DatabaseUrl>) -> anyhow::Result<Store> {
    ensure_data_dir(data_dir)?;
    let url = database
        .cloned()
        .unwrap_or_else(|| DatabaseUrl::Sqlite(db_path(data_dir)));
    Store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the store {}: {e}", store::describe(&url)))
}

/// Before serving: signs the records written before audit signatures existed (only
/// on the first start after the upgrade, while nothing is anchored), then checks the
/// database against the anchor file. A log that no longer holds the highest anchored
/// head (truncated, restored from an older copy, rewritten) stops the start.
async fn check_audit_at_start(
    store: &Store,
    key: &vault::BrokerKey,
    anchor_path: &Path,
) -> anyhow::Result<i64> {
    let anchors = anchor::read(anchor_path)?;
    let signed = audit::sign_legacy(store, key.signing_key(), !anchors.is_empty()).await?;
    if signed > 0 {
        tracing::info!(
            records = signed,
            "signed the audit records written before audit signatures existed (first start after the upgrade)"
        );
    }
    if let Err(e) = anchor::check(store, anchor_path, &anchors, &key.verifying_key(), false).await?
    {
        tracing::error!(problem = %e, "AUDIT LOG ROLLED BACK: refusing to start");
        anyhow::bail!(
            "refusing to start: the audit log does not hold a head anchored earlier: {e}. \
             Someone with access to the database removed or rewrote audit records, or an older \
             copy of the database was restored. Investigate (`firedoor-server audit verify`), \
             then restore the database that reaches the anchored head; to accept the loss \
             instead, move the anchor file aside (the next start begins a new one)."
        );
    }
    Ok(anchors.iter().map(|h| h.seq).max().unwrap_or(0))
}

/// Opens the store and key of a data directory as a [`Broker`] without serving it:
/// the CLI acts on the data directory with the same operations the API uses.
pub async fn open_broker(
    data_dir: &Path,
    database: Option<&DatabaseUrl>,
    key_file: Option<&Path>,
    policy: Policy,
    connectors: Connectors,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Broker> {
    let store = open_db(data_dir, database).await?;
    let key = load_key(&store, &key_path(data_dir, key_file)).await?;
    Ok(Broker::new(store, policy, connectors, clock, key))
}

/// A running broker.
pub struct RunningBroker {
    pub addr: SocketAddr,
    pub tls: bool,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    anchor: JoinHandle<()>,
    /// Tells the anchoring task to write the final head (after the worker stopped).
    anchor_stop: watch::Sender<bool>,
}

impl RunningBroker {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
    /// Runs one pass of due work now (tests use this after moving a manual clock).
    pub async fn run_due_work(&self) -> error::Result<()> {
        self.broker.run_due_work().await
    }
    /// Stops serving and the worker.
    pub async fn stop(self) {
        self.broker.closing.send_replace(true);
        let _ = self.shutdown.send(true);
        let abort = self.server.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .is_err()
        {
            abort.abort();
        }
        let _ = self.worker.await;
        let _ = self.anchor_stop.send(true);
        let _ = self.anchor.await;
    }
    /// Waits until the server stops (it runs until [`RunningBroker::stop`] or an error).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("firedoor.db")
}

/// Creates the data directory (0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> error::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Starts the broker: opens the database, loads the key, builds connectors, binds the
/// listener and starts the worker, which at once revokes whatever fell due while
/// the broker was down.
pub async fn start(cfg: Config) -> anyhow::Result<RunningBroker> {
    let use_tls = match &cfg.tls {
        Tls::None if !cfg.listen.ip().is_loopback() => anyhow::bail!(
            "refusing to listen on {} without TLS: pass --tls-cert and --tls-key, or \
             --behind-tls-proxy if a TLS proxy in front terminates connections",
            cfg.listen
        ),
        Tls::Files { .. } => true,
        _ => false,
    };
    let store = open_db(&cfg.data_dir, cfg.database.as_ref()).await?;
    let key = load_key(&store, &cfg.key_path()).await?;
    let anchor_path = cfg.anchor_path();
    let anchored = check_audit_at_start(&store, &key, &anchor_path).await?;
    let mut anchor_log = anchor::AnchorLog::open(&anchor_path, anchored)?;
    let connectors = match cfg.connectors {
        Some(c) => c,
        None => connectors::from_policy(&cfg.policy).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let connectors = connectors::instrumented::wrap(connectors);
    for c in connectors.values() {
        c.check().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let broker = {
        let mut b = Broker::new(store, cfg.policy, connectors, cfg.clock, key);
        b.event_retention = cfg.event_retention;
        Arc::new(b)
    };
    // A single broker on SQLite held every lease itself: after a crash it takes its
    // unfinished work back at once. Replicas sharing PostgreSQL must not: another
    // one may be deprovisioning that grant right now, so a lease there runs out
    // (CLAIM_LEASE_SECS) before anyone else picks the work up.
    if broker.store.backend() == store::Backend::Sqlite {
        broker.release_leases().await?;
    }
    {
        let mut uow = broker.uow_at(broker.now()).await?;
        let event = AuditEvent::BrokerStarted {
            version: env!("CARGO_PKG_VERSION").into(),
            listen: cfg.listen.to_string(),
            tls: match &cfg.tls {
                Tls::None => "none",
                Tls::Files { .. } => "rustls",
                Tls::BehindProxy => "behind_tls_proxy",
            }
            .into(),
            bundles: broker.policy.bundles.len(),
            flows: broker.policy.flows.len(),
            secrets: broker.policy.secrets.len(),
            signing_key: broker.identity().fingerprint,
            extra: cfg.start_details.as_object().cloned().unwrap_or_default(),
        };
        uow.record(&Actor::System, "broker", event);
        uow.commit().await?;
    }
    anchor_log.anchor_now(&broker.store, broker.now()).await?;

    let (shutdown, mut stop_rx) = watch::channel(false);
    let (anchor_stop, anchor_rx) = watch::channel(false);
    let anchor = spawn_anchoring(broker.clone(), anchor_log, cfg.anchor_interval, anchor_rx);
    let app = probes::wrap(
        http::router(broker.clone()),
        broker.clone(),
        cfg.metrics_token,
    );
    let std_listener = std::net::TcpListener::bind(cfg.listen)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let server = match &cfg.tls {
        Tls::Files { cert, key } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| anyhow::anyhow!("loading TLS certificate/key: {e}"))?;
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let _ = rx.wait_for(|s| *s).await;
                h2.graceful_shutdown(Some(Duration::from_secs(2)));
            });
            let srv = axum_server::from_tcp_rustls(std_listener, tls)?.handle(handle);
            tokio::spawn(async move {
                if let Err(e) = srv.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "server stopped");
                }
            })
        }
        _ => {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let res = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, "server stopped");
                }
            })
        }
    };

    // Notifications to chat and webhooks go out on their own loop: a slow receiver
    // never holds up expiries and revocations. It wakes when events are committed
    // (a delivery is stored with its event), and on the worker's interval for retries.
    if !broker.policy.notifications.is_empty() {
        let ob = broker.clone();
        let mut stop = stop_rx.clone();
        let mut committed = broker.events.subscribe();
        tokio::spawn(async move {
            loop {
                if let Err(e) = ob.deliver_outbound(ob.now()).await {
                    tracing::error!(error = %e, "sending notifications failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(cfg.worker_interval) => {}
                    _ = committed.changed() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
    }

    let wb = broker.clone();
    let interval = cfg.worker_interval;
    let worker = tokio::spawn(async move {
        loop {
            if let Err(e) = wb.run_due_work().await {
                tracing::error!(error = %e, "background work failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wb.wake_worker.notified() => {}
                _ = stop_rx.wait_for(|s| *s) => break,
            }
        }
    });

    // One reader hands committed events to every open stream.
    let last_event = broker.store.events().last_id().await?;
    tokio::spawn(fanout::run(
        broker.clone(),
        last_event,
        broker.closing.subscribe(),
    ));

    // Tokens and people that end (here, by the CLI, on another replica, by the
    // clock) end their open streams.
    tokio::spawn(access::watch_store(
        broker.clone(),
        broker.closing.subscribe(),
    ));

    // Several replicas on one PostgreSQL store: events committed by any of them wake
    // this one's streams.
    if let Some(pool) = broker.store.pg_pool() {
        let b = broker.clone();
        tokio::spawn(store::postgres::listen_events(
            pool.clone(),
            move || b.events_changed(),
            broker.closing.subscribe(),
        ));
    }

    Ok(RunningBroker {
        addr,
        tls: use_tls,
        broker,
        shutdown,
        server,
        worker,
        anchor,
        anchor_stop,
    })
}

/// Anchors the head every `interval` while it moves, and once more at shutdown.
fn spawn_anchoring(
    broker: Arc<Broker>,
    mut log: anchor::AnchorLog,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if let Err(e) = log.anchor_now(&broker.store, broker.now()).await {
                tracing::error!(error = %e, path = %log.path().display(), "could not anchor the audit head");
            }
            if stopping {
                break;
            }
        }
    })
}
