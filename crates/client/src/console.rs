//! The console engine behind the desktop app: sign-in with the token in the keyring,
//! a snapshot served from the local cache (so the app starts and keeps working
//! offline), sync with the broker, live events over SSE with `Last-Event-ID`, and an
//! outbox that replays requests and revokes taken offline exactly once (each carries
//! an idempotency key). The Tauri shell only adapts these calls.
//!
//! Offline break glass (device enrolment, sealed envelopes, unlocking, the signed
//! unlock chain) is in [`crate::breakglass`], as more methods of [`Console`].

pub use crate::breakglass::{
    BreakGlass, DeviceStatus, SealedCredential, SealedState, UnlockMode, UnlockResult,
};
use crate::cache::{Cache, CacheError, List, OutboxItem};
use crate::secrets::SecretStore;
use crate::{Client, ClientError};
use chrono::{DateTime, Utc};
use firedoor_core::api::{
    BundleView, ClientChannel, CreateRequest, Credentials, EventKind, EventView, ExtendBody,
    GrantView, IncidentView, MyOnCall, RequestView, RESYNC_EVENT,
};
pub use firedoor_core::{ConsoleErrorCode, ErrorCode};
use firedoor_core::{GrantId, RequestId};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Mutex};

/// An error fit for the UI: a stable code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[error("{message}")]
pub struct ConsoleError {
    pub code: ConsoleErrorCode,
    pub message: String,
}

impl ConsoleError {
    /// `code`: a [`ConsoleErrorCode`], or a broker [`ErrorCode`] meaning the same here.
    pub fn new(code: impl Into<ConsoleErrorCode>, message: impl Into<String>) -> Self {
        ConsoleError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<CacheError> for ConsoleError {
    fn from(e: CacheError) -> Self {
        ConsoleError::new(ConsoleErrorCode::Cache, e.to_string())
    }
}

impl From<ClientError> for ConsoleError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { code, message, .. } => match ConsoleErrorCode::parse(&code) {
                Some(code) => ConsoleError { code, message },
                // A code this app does not know (a newer broker): kept in the message.
                None => {
                    ConsoleError::new(ConsoleErrorCode::BrokerError, format!("{message} ({code})"))
                }
            },
            ClientError::Network(m) => ConsoleError::new(
                ConsoleErrorCode::Offline,
                format!("The broker cannot be reached: {m}"),
            ),
            ClientError::Decode(m) => ConsoleError::new(ConsoleErrorCode::BadAnswer, m),
            ClientError::InvalidUrl(m) => ConsoleError::new(ConsoleErrorCode::InvalidUrl, m),
            ClientError::WrongBroker { message, .. } => {
                ConsoleError::new(ConsoleErrorCode::WrongBroker, message)
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, ConsoleError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppStatus {
    pub signed_in: bool,
    pub demo: bool,
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// The primary broker URL (the first one given at sign-in).
    pub broker_url: Option<String>,
    /// Every broker URL of this sign-in, in the order they are tried (replicas of one
    /// broker; the first is [`AppStatus::broker_url`]).
    #[serde(default)]
    pub broker_urls: Vec<String>,
    /// The URL the app talks to now: the one that answered last.
    #[serde(default)]
    pub broker_url_in_use: Option<String>,
    pub online: bool,
    pub offline_since: Option<DateTime<Utc>>,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Broker clock minus local clock, in milliseconds.
    pub clock_offset_ms: i64,
    pub last_error: Option<String>,
    /// Set while the broker's audit log does not extend the signed head this app
    /// saw earlier (rolled back, rewritten, or not signed by the pinned key): a
    /// security alert (see `crate::audit_head`).
    #[serde(default)]
    pub audit_alert: Option<String>,
    /// The on-call schedules the user was on call for at the last sync, with until
    /// when (the UI hides one once its `until` has passed).
    #[serde(default)]
    pub oncall: Vec<MyOnCall>,
    /// Signed in through single sign-on (the session renews itself until
    /// `session_expires_at`).
    #[serde(default)]
    pub sso: bool,
    /// When an SSO sign-in ends (the policy's `session_max` after signing in).
    #[serde(default)]
    pub session_expires_at: Option<DateTime<Utc>>,
    /// Set when the app signed itself out because the sign-in ended (SSO session
    /// over, revoked, or the user disabled): what to tell the person.
    #[serde(default)]
    pub session_ended: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Snapshot {
    pub status: AppStatus,
    pub bundles: Vec<BundleView>,
    pub favourites: Vec<String>,
    pub my_requests: Vec<RequestView>,
    pub approvals: Vec<RequestView>,
    pub grants: Vec<GrantView>,
    pub outbox: Vec<OutboxItem>,
    /// Offline break glass: this device's enrolment and its sealed credentials.
    pub break_glass: BreakGlass,
    /// Open incidents first, then recent resolved ones (from the last sync).
    #[serde(default)]
    pub incidents: Vec<IncidentView>,
    /// My active SSH grants: their key in the ssh-agent until when, or why not.
    #[serde(default)]
    pub ssh: Vec<crate::ssh::SshStatus>,
    /// What became of actions queued offline once they were sent (newest first, the
    /// last few of this sign-in).
    #[serde(default)]
    pub replayed: Vec<Replayed>,
}

/// An action queued offline and sent (or refused, or cancelled) later, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Replayed {
    /// The outbox item's id.
    pub id: String,
    /// What was queued ("Request Production database (read-only)").
    pub summary: String,
    /// What became of it ("sent · waiting for 1 approval (sre-leads can approve)").
    pub outcome: String,
    /// False when the broker refused it.
    pub ok: bool,
    pub at: DateTime<Utc>,
}

/// How many [`Replayed`] entries the snapshot keeps.
const REPLAYED_KEPT: usize = 10;

/// What became of a request sent from the outbox, in words.
fn request_outcome(r: &RequestView) -> String {
    use firedoor_core::lifecycle::RequestState as S;
    match r.state {
        S::Pending => {
            let n = r.approvals_needed;
            let who = approvers_phrase(&r.approvers);
            format!(
                "sent · waiting for {n} approval{}{}",
                if n == 1 { "" } else { "s" },
                who.map(|w| format!(" ({w})")).unwrap_or_default()
            )
        }
        S::Approved => "sent · approved, access is being set up".into(),
        S::Active => "sent · approved, access is active".into(),
        S::Denied => "sent · denied".into(),
        S::Failed => format!(
            "sent · approved, but access could not be set up{}",
            r.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        other => format!("sent · {}", other.as_str().replace('_', " ")),
    }
}

/// "sre-leads can approve", "alice or sre-leads can approve", or None when the
/// policy names nobody.
pub fn approvers_phrase(a: &firedoor_core::api::WhoApproves) -> Option<String> {
    let mut names: Vec<String> = a.users.clone();
    names.extend(a.groups.iter().cloned());
    names.extend(
        a.oncall
            .iter()
            .map(|s| format!("whoever is on call for {s}")),
    );
    if names.is_empty() {
        return None;
    }
    let list = match names.len() {
        1 => names[0].clone(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    };
    Some(format!("{list} can approve"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ActionResult {
    pub queued: bool,
    pub message: String,
    pub request: Option<RequestView>,
    pub grant: Option<GrantView>,
}

/// What changed, for the shell: refresh the UI, and maybe notify.
#[derive(Debug, Clone)]
pub enum Change {
    /// The snapshot changed.
    Snapshot,
    /// A live event arrived from the broker.
    Event(EventView),
    /// The broker became unreachable / reachable again.
    Connectivity { online: bool },
    /// An outbox item was sent (or refused) after reconnecting.
    OutboxReplayed { summary: String, outcome: String },
}

pub(crate) struct Session {
    pub(crate) client: Client,
    /// The primary URL: names the keyring entries and the cache's per-account keys.
    pub(crate) url: String,
    pub(crate) user: String,
    groups: Vec<String>,
}

/// An SSO session's timing (broker time), kept in the cache; its refresh token and
/// key are in the keyring.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SsoLive {
    access_expires_at: DateTime<Utc>,
    /// When to renew the access token: a third of its life (at most 2 minutes)
    /// before it ends.
    refresh_due: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
}

impl SsoLive {
    fn from_tokens(t: &firedoor_core::sso::SsoTokens, broker_now: DateTime<Utc>) -> SsoLive {
        let life = t.access_expires_at - broker_now;
        let margin = (life / 3).min(chrono::Duration::seconds(120));
        SsoLive {
            access_expires_at: t.access_expires_at,
            refresh_due: t.access_expires_at - margin,
            session_expires_at: t.session_expires_at,
        }
    }
}

/// What the app says when it signed itself out because the sign-in ended.
pub const SESSION_ENDED: &str = "Your sign-in ended; sign in again.";

pub(crate) struct Live {
    pub(crate) session: Option<Session>,
    /// The SSO session behind `session`, if it is one.
    sso: Option<SsoLive>,
    /// Why the app signed itself out (see [`AppStatus::session_ended`]).
    session_ended: Option<String>,
    online: bool,
    offline_since: Option<DateTime<Utc>>,
    pub(crate) clock_offset_ms: i64,
    last_error: Option<String>,
}

/// Settings of a [`Console`] beyond where its data lives.
#[derive(Debug, Clone, Default)]
pub struct ConsoleOptions {
    /// scrypt work factor (log2 N) that wraps the device keys at enrolment. `None`
    /// (the default): calibrated on this machine at enrolment, the smallest factor
    /// whose derivation takes at least 0.5 s (see
    /// [`crate::device::calibrate_work_factor`]). Tests pass a low factor, e.g. 10.
    pub kdf_work_factor: Option<u8>,
}

pub struct Console {
    pub(crate) cache: Cache,
    pub(crate) secrets: Arc<dyn SecretStore>,
    demo: bool,
    pub(crate) options: ConsoleOptions,
    pub(crate) live: Mutex<Live>,
    /// Serialises outbox replays so an item is never sent twice at once.
    replaying: Mutex<()>,
    /// Serialises what reads then writes the device's break-glass state: enrolment,
    /// an unlock (lock-out count, chain append) and recording an upload's
    /// acknowledgement. Never held while a sync waits on the broker.
    pub(crate) break_glass_turn: Mutex<()>,
    changes: broadcast::Sender<Change>,
    /// This device's SSH grants: in the ssh-agent or why not (see [`crate::ssh`]).
    pub(crate) ssh_status: Mutex<std::collections::BTreeMap<String, crate::ssh::SshStatus>>,
    /// Bumped at every sign-in and sign-out: the event stream belongs to one session
    /// and reconnects as the new one.
    session_gen: tokio::sync::watch::Sender<u64>,
    /// Held by a sign-in or sign-out from start to end, so that following another
    /// process's session ([`Console::follow_shared_session`]) never sees one half done.
    session_turn: Mutex<()>,
    /// A file in the data dir that every process sharing it (the app, the command
    /// line) locks while it renews the SSO session: a refresh token works once, so
    /// two processes renewing at once would look like a stolen token to the broker
    /// and end the session.
    sso_lock_path: std::path::PathBuf,
}

const K_URL: &str = "broker_url";
/// All broker URLs of the sign-in (JSON list; its first is `K_URL`). Absent in caches
/// of older versions: then `K_URL` alone.
const K_URLS: &str = "broker_urls";
/// The URL in use when last heard of, so a restart starts there.
const K_URL_IN_USE: &str = "broker_url_in_use";
const K_USER: &str = "user";
const K_GROUPS: &str = "groups";
const K_ONCALL: &str = "oncall";
const K_SYNCED: &str = "last_synced_at";
const K_OFFLINE: &str = "offline_since";
const K_OFFSET: &str = "clock_offset_ms";
const K_EVENT: &str = "last_event_id";
/// What became of the last outbox items sent ([`Replayed`], JSON list).
const K_REPLAYED: &str = "replayed";
/// The SSO session's timing ([`SsoLive`], JSON); absent for a token sign-in.
const K_SSO: &str = "sso_session";

fn token_account(url: &str) -> String {
    format!("api-token:{url}")
}

/// The keyring entry of an SSO session's refresh token.
fn sso_refresh_account(url: &str) -> String {
    format!("sso-refresh:{url}")
}

/// The keyring entry of an SSO session's private key (ed25519, base64).
fn sso_key_account(url: &str) -> String {
    format!("sso-key:{url}")
}

/// At sign-in with several URLs: every other URL that answers within a few seconds
/// must present the broker key of the one signed in through (`client`'s, just read).
/// One that does not is another broker: sign-in fails and says which URL. URLs that
/// do not answer now are checked when first failed over to.
async fn check_replicas(client: &Client, token: &str) -> Result<()> {
    let Ok(id) = client.broker_identity().await else {
        return Ok(()); // a broker without a signing key: nothing to compare
    };
    let in_use = client.current_url();
    let checks = client
        .urls()
        .iter()
        .filter(|u| **u != in_use)
        .map(|u| async move {
            let c = Client::new(u, Some(token))?;
            let got = tokio::time::timeout(Duration::from_secs(5), c.broker_identity()).await;
            Ok::<_, ClientError>((u.clone(), got))
        });
    for r in futures::future::join_all(checks).await {
        let (u, got) = r?;
        match got {
            Ok(Ok(other)) => {
                c_check_same(&u, &in_use, &id.signing_key, &other.signing_key)?;
            }
            Ok(Err(ClientError::Api { status: 401, .. })) => {
                return Err(ConsoleError::new(
                    ConsoleErrorCode::WrongBroker,
                    format!(
                        "{u} does not accept this token while {in_use} does: all broker URLs must be replicas of one broker."
                    ),
                ))
            }
            Ok(Err(e)) => tracing::info!(url = %u, error = %e, "broker URL not checked at sign-in"),
            Err(_) => tracing::info!(url = %u, "broker URL did not answer at sign-in"),
        }
    }
    Ok(())
}

fn c_check_same(u: &str, in_use: &str, expected: &str, presented: &str) -> Result<()> {
    use firedoor_core::breakglass::{decode_public_key, fingerprint};
    let fp = |k: &str| {
        decode_public_key(k)
            .map(|k| fingerprint(&k))
            .unwrap_or_else(|_| "(unreadable key)".into())
    };
    if fp(expected) == fp(presented) {
        return Ok(());
    }
    Err(ConsoleError::new(
        ConsoleErrorCode::WrongBroker,
        format!(
            "{u} presents the broker signing key {}, but {in_use} presents {}: they are different brokers, \
             not replicas of one. Remove the URL that is not your team's broker (ask your admins which).",
            fp(presented),
            fp(expected)
        ),
    ))
}

/// The session the cache and the keyring hold (what a sign-in, in this process or
/// another one sharing the data dir, left there), if its token is still in the
/// keyring.
/// The signed-in session the cache names, with its token from the keyring, and its
/// SSO timing if it is an SSO session; `(None, None)` when signed out.
async fn load_session(
    cache: &Cache,
    secrets: &Arc<dyn SecretStore>,
) -> Result<(Option<Session>, Option<SsoLive>)> {
    let (Some(url), Some(user)) = (cache.get(K_URL).await?, cache.get(K_USER).await?) else {
        return Ok((None, None));
    };
    let s = secrets.clone();
    let account = token_account(&url);
    let token = match blocking(move || s.get(&account)).await? {
        Ok(Some(token)) => zeroize::Zeroizing::new(token),
        Ok(None) => {
            tracing::info!("no token in the keyring for the cached session; sign in again");
            return Ok((None, None));
        }
        Err(e) => {
            tracing::warn!(error = %e, "keyring unavailable; sign in again");
            return Ok((None, None));
        }
    };
    let groups = cache
        .get(K_GROUPS)
        .await?
        .and_then(|g| serde_json::from_str(&g).ok())
        .unwrap_or_default();
    let urls = cache
        .get(K_URLS)
        .await?
        .and_then(|v| serde_json::from_str::<Vec<String>>(&v).ok())
        .filter(|u| u.first() == Some(&url))
        .unwrap_or_else(|| vec![url.clone()]);
    let client =
        Client::with_urls(&urls, Some(&token)).or_else(|_| Client::new(&url, Some(&token)))?;
    if let Some(in_use) = cache.get(K_URL_IN_USE).await? {
        client.prefer_url(&in_use);
    }
    let sso = cache
        .get(K_SSO)
        .await?
        .and_then(|v| serde_json::from_str::<SsoLive>(&v).ok());
    Ok((
        Some(Session {
            client,
            url,
            user,
            groups,
        }),
        sso,
    ))
}

/// Outbox kind of a token revocation queued at sign-out.
pub const REVOKE_TOKEN: &str = "revoke_token";

/// The keyring entry holding a signed-out token until the broker has revoked it.
fn pending_revocation_account(item_id: &str) -> String {
    format!("pending-revocation:{item_id}")
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConsoleError::new(ErrorCode::Internal, format!("keyring call failed: {e}")))
}

pub(crate) fn is_network(e: &ClientError) -> bool {
    matches!(e, ClientError::Network(_))
}

impl Console {
    /// Opens the cache in `data_dir` and resumes the signed-in session if the keyring
    /// still holds its token. Never touches the network: the app can show the cache
    /// at once.
    pub async fn open(
        data_dir: &Path,
        secrets: Arc<dyn SecretStore>,
        demo: bool,
    ) -> Result<Arc<Console>> {
        Self::open_with(data_dir, secrets, demo, ConsoleOptions::default()).await
    }

    /// As [`Console::open`], with options.
    pub async fn open_with(
        data_dir: &Path,
        secrets: Arc<dyn SecretStore>,
        demo: bool,
        options: ConsoleOptions,
    ) -> Result<Arc<Console>> {
        let cache = Cache::open(&data_dir.join("cache.db")).await?;
        let (changes, _) = broadcast::channel(256);
        let offline_since = cache.get_time(K_OFFLINE).await?;
        let clock_offset_ms = cache
            .get(K_OFFSET)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (session, sso) = load_session(&cache, &secrets).await?;
        let console = Arc::new(Console {
            cache,
            secrets,
            demo,
            options,
            live: Mutex::new(Live {
                session,
                sso,
                session_ended: None,
                // Unknown until the broker answers; the UI shows the cache meanwhile.
                online: offline_since.is_none(),
                offline_since,
                clock_offset_ms,
                last_error: None,
            }),
            replaying: Mutex::new(()),
            ssh_status: Mutex::new(std::collections::BTreeMap::new()),
            break_glass_turn: Mutex::new(()),
            changes,
            session_gen: tokio::sync::watch::channel(0).0,
            session_turn: Mutex::new(()),
            sso_lock_path: data_dir.join("sso-refresh.lock"),
        });
        console.seed_broker_key().await;
        Ok(console)
    }

    /// Gives a resumed session's client the broker key to expect from every URL it
    /// fails over to: the key the broker presented last (a change awaiting the user's
    /// confirmation), else the pinned one. Without either it learns it from the first
    /// URL that answers.
    async fn seed_broker_key(&self) {
        let Some((client, a)) = ({
            let live = self.live.lock().await;
            live.session.as_ref().map(|s| {
                (
                    s.client.clone(),
                    crate::breakglass::Account::new(&s.url, &s.user),
                )
            })
        }) else {
            return;
        };
        if client.urls().len() < 2 {
            return;
        }
        match self.presented_key(&a).await {
            Ok(Some(k)) => client.set_broker_key(Some(&k)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "no broker key to check failover URLs with yet"),
        }
    }

    /// Follows a sign-in or sign-out made by another process on the same data dir
    /// (the `firedoor` command line next to the app, or the reverse): when the
    /// cache names another session than this one (or none), this one is replaced
    /// by what the cache and keyring hold. Returns whether it changed. Cheap: two
    /// cache reads, and a keyring read only when something changed.
    pub async fn follow_shared_session(&self) -> Result<bool> {
        let Ok(_turn) = self.session_turn.try_lock() else {
            return Ok(false); // a sign-in or sign-out here is under way
        };
        let cached = match (self.cache.get(K_URL).await?, self.cache.get(K_USER).await?) {
            (Some(u), Some(n)) => Some((u, n)),
            _ => None,
        };
        let mine = {
            let live = self.live.lock().await;
            live.session
                .as_ref()
                .map(|s| (s.url.clone(), s.user.clone()))
        };
        if cached == mine {
            return Ok(false);
        }
        let (session, sso) = load_session(&self.cache, &self.secrets).await?;
        let now = session.as_ref().map(|s| (s.url.clone(), s.user.clone()));
        if now == mine {
            return Ok(false); // e.g. the token is not in the keyring (yet)
        }
        tracing::info!(
            signed_in = now.is_some(),
            "the session changed in another process sharing this data dir"
        );
        {
            let mut live = self.live.lock().await;
            live.session = session;
            live.sso = sso;
        }
        self.session_gen.send_modify(|g| *g += 1);
        self.seed_broker_key().await;
        self.changed(Change::Snapshot);
        Ok(true)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self, c: Change) {
        let _ = self.changes.send(c);
    }

    pub(crate) async fn client(&self) -> Result<Client> {
        self.live
            .lock()
            .await
            .session
            .as_ref()
            .map(|s| s.client.clone())
            .ok_or_else(|| ConsoleError::new(ConsoleErrorCode::SignedOut, "Sign in first."))
    }

    pub async fn status(&self) -> Result<AppStatus> {
        let live = self.live.lock().await;
        Ok(AppStatus {
            signed_in: live.session.is_some(),
            demo: self.demo,
            user: live.session.as_ref().map(|s| s.user.clone()),
            groups: live
                .session
                .as_ref()
                .map(|s| s.groups.clone())
                .unwrap_or_default(),
            broker_url: live.session.as_ref().map(|s| s.url.clone()),
            broker_urls: live
                .session
                .as_ref()
                .map(|s| s.client.urls().to_vec())
                .unwrap_or_default(),
            broker_url_in_use: live.session.as_ref().map(|s| s.client.current_url()),
            online: live.online,
            offline_since: live.offline_since,
            last_synced_at: self.cache.get_time(K_SYNCED).await?,
            clock_offset_ms: live.clock_offset_ms,
            last_error: live.last_error.clone(),
            audit_alert: self.audit_alert(&live).await?,
            oncall: self
                .cache
                .get(K_ONCALL)
                .await?
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            sso: live.sso.is_some(),
            session_expires_at: live.sso.map(|s| s.session_expires_at),
            session_ended: live.session_ended.clone(),
        })
    }

    /// Whether this is the demo (its secrets live in memory, for one run).
    pub fn demo(&self) -> bool {
        self.demo
    }

    /// Everything the UI shows, from the cache.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        self.snapshot_at(Utc::now()).await
    }

    /// As [`Console::snapshot`], judging envelope windows and the lock-out at `now`.
    pub async fn snapshot_at(&self, now: DateTime<Utc>) -> Result<Snapshot> {
        Ok(Snapshot {
            status: self.status().await?,
            bundles: self.cache.bundles().await?,
            favourites: self.cache.favourites().await?,
            my_requests: self.cache.my_requests().await?,
            approvals: self.cache.approvals().await?,
            grants: self.cache.grants().await?,
            outbox: self.cache.outbox().await?,
            break_glass: self.break_glass(now).await?,
            incidents: self.cache.incidents().await?,
            ssh: self.ssh_status().await,
            replayed: self.replayed().await?,
        })
    }

    /// What became of actions sent from the outbox (newest first).
    async fn replayed(&self) -> Result<Vec<Replayed>> {
        Ok(self
            .cache
            .get(K_REPLAYED)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    /// Remembers what became of an outbox item (for the UI) and tells the shell.
    async fn note_replayed(&self, item: &OutboxItem, outcome: String, ok: bool) -> Result<()> {
        let mut list = self.replayed().await?;
        list.retain(|r| r.id != item.id);
        list.insert(
            0,
            Replayed {
                id: item.id.clone(),
                summary: item.summary.clone(),
                outcome: outcome.clone(),
                ok,
                at: Utc::now(),
            },
        );
        list.truncate(REPLAYED_KEPT);
        let json = serde_json::to_string(&list)
            .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?;
        self.cache.set(K_REPLAYED, Some(&json)).await?;
        self.changed(Change::OutboxReplayed {
            summary: item.summary.clone(),
            outcome,
        });
        Ok(())
    }

    pub(crate) async fn mark_online(&self) {
        let mut live = self.live.lock().await;
        let was = live.online;
        live.online = true;
        live.offline_since = None;
        live.last_error = None;
        drop(live);
        let _ = self.cache.set_time(K_OFFLINE, None).await;
        if !was {
            self.changed(Change::Connectivity { online: true });
        }
    }

    pub(crate) async fn mark_offline(&self, why: &str) {
        let mut live = self.live.lock().await;
        let was = live.online;
        live.online = false;
        live.last_error = Some(why.to_string());
        if live.offline_since.is_none() {
            live.offline_since = Some(Utc::now());
        }
        let since = live.offline_since;
        drop(live);
        let _ = self.cache.set_time(K_OFFLINE, since).await;
        if was {
            self.changed(Change::Connectivity { online: false });
        }
    }

    /// Runs a broker call, tracking connectivity.
    async fn online<T>(&self, r: std::result::Result<T, ClientError>) -> Result<T> {
        match r {
            Ok(v) => {
                self.mark_online().await;
                Ok(v)
            }
            Err(e) if is_network(&e) => {
                let ce = ConsoleError::from(e);
                self.mark_offline(&ce.message).await;
                Err(ce)
            }
            Err(e) => {
                self.note_error(&e).await;
                Err(e.into())
            }
        }
    }

    /// After a broker error that is not a network one: the broker answered (online),
    /// unless the only URL left to fail over to is another broker (offline, and why).
    pub(crate) async fn note_error(&self, e: &ClientError) {
        match e {
            ClientError::WrongBroker { message, .. } => self.mark_offline(message).await,
            _ => self.mark_online().await,
        }
    }

    /// Checks the URL and token with the broker, keeps the token in the keyring and
    /// the rest in the cache, pins the broker's signing key (break-glass envelopes must
    /// be signed by it; [`Console::sync`] never re-pins), then syncs.
    ///
    /// `urls`: one broker URL, or several replicas of one broker (one per line, or
    /// separated by commas), tried in that order; see [`Console::sign_in_urls`].
    pub async fn sign_in(&self, urls: &str, token: &str) -> Result<AppStatus> {
        let urls = crate::trust::split_broker_urls(urls);
        self.sign_in_urls(&urls, token).await
    }

    /// As [`Console::sign_in`], with the URLs as a list. The first is the primary: the
    /// keyring entries and the break-glass enrolment are named after it, so adding
    /// replicas after it keeps an existing sign-in's token, pin and enrolment. Every
    /// other URL that answers must present the same broker key as the one signed in
    /// through, or sign-in fails (`wrong_broker`).
    pub async fn sign_in_urls(&self, urls: &[&str], token: &str) -> Result<AppStatus> {
        self.sign_in_with(urls, token, None).await
    }

    /// Checks the broker URLs as a sign-in does: the list, normalised, primary first.
    fn check_urls(urls: &[&str]) -> Result<Vec<String>> {
        let list = urls
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .collect::<Vec<_>>();
        if list.is_empty() {
            return Err(ConsoleError::new(
                ErrorCode::InvalidRequest,
                "Enter the broker URL.",
            ));
        }
        for u in &list {
            // Unparseable or not http(s): the same code as before several URLs.
            Client::new(u, None)
                .map_err(|e| ConsoleError::new(ConsoleErrorCode::InvalidUrl, e.to_string()))?;
        }
        crate::trust::check_broker_urls(&list).map_err(|m| {
            let code = if m.contains("https://") {
                ConsoleErrorCode::InsecureUrl
            } else {
                ConsoleErrorCode::InvalidUrl
            };
            ConsoleError::new(code, m)
        })
    }

    /// Signs in through the broker's single sign-on (OpenID Connect, see
    /// [`crate::sso`]): `opener` is handed the IdP's sign-in URL and must show it to
    /// the person (the desktop app opens the system browser). The access token,
    /// the refresh token and the session's private key are kept in the keyring,
    /// never in a file; [`Console::run`] renews the access token before it ends, and
    /// once the session is over the app shows itself signed out
    /// ([`AppStatus::session_ended`]).
    pub async fn sign_in_sso<F>(&self, urls: &[&str], opener: F) -> Result<AppStatus>
    where
        F: FnOnce(String) -> std::result::Result<(), String> + Send,
    {
        let checked = Self::check_urls(urls)?;
        let client = Client::with_urls(&checked, None)
            .map_err(|e| ConsoleError::new(ConsoleErrorCode::InvalidUrl, e.to_string()))?;
        let sent = Utc::now();
        let signed = crate::sso::sign_in(&client, opener)
            .await
            .map_err(|e| match e {
                crate::sso::SsoError::Broker(ClientError::Network(m)) => ConsoleError::new(
                    ConsoleErrorCode::Offline,
                    format!("Cannot reach the broker at {}: {m}", checked[0]),
                ),
                crate::sso::SsoError::Broker(e) => e.into(),
                crate::sso::SsoError::Timeout => {
                    ConsoleError::new(ConsoleErrorCode::SsoTimeout, e.to_string())
                }
                other => ConsoleError::new(ConsoleErrorCode::Sso, other.to_string()),
            })?;
        // The broker's time, for when to refresh: its clock as it answered.
        let offset = self.live.lock().await.clock_offset_ms;
        let broker_now = sent + chrono::Duration::milliseconds(offset);
        let list: Vec<&str> = checked.iter().map(String::as_str).collect();
        let access = zeroize::Zeroizing::new(signed.tokens.access_token.clone());
        self.sign_in_with(&list, &access, Some((signed, broker_now)))
            .await
    }

    async fn sign_in_with(
        &self,
        urls: &[&str],
        token: &str,
        sso: Option<(crate::sso::SsoSignIn, DateTime<Utc>)>,
    ) -> Result<AppStatus> {
        let _turn = self.session_turn.lock().await;
        let token = zeroize::Zeroizing::new(token.trim().to_string());
        if token.is_empty() {
            return Err(ConsoleError::new(
                ErrorCode::InvalidRequest,
                "Enter the broker URL and your API token.",
            ));
        }
        let urls = Self::check_urls(urls)?;
        let url = urls[0].clone();
        let client = Client::with_urls(&urls, Some(&token))
            .map_err(|e| ConsoleError::new(ConsoleErrorCode::InvalidUrl, e.to_string()))?;
        let previous = match (self.cache.get(K_URL).await?, self.cache.get(K_USER).await?) {
            (Some(u), Some(n)) => Some((u, n)),
            _ => None,
        };
        let me = match client.me().await {
            Ok(me) => me,
            Err(ClientError::Api { status: 401, .. }) => {
                return Err(ConsoleError::new(
                    ErrorCode::Unauthenticated,
                    "The broker does not accept this token.",
                ))
            }
            Err(ClientError::Network(m)) => {
                let at = if urls.len() > 1 {
                    format!("any of the {} broker URLs", urls.len())
                } else {
                    format!("a broker at {url}")
                };
                return Err(ConsoleError::new(
                    ConsoleErrorCode::Offline,
                    format!("Cannot reach {at}: {m}"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if urls.len() > 1 {
            check_replicas(&client, &token).await?;
        }
        let s = self.secrets.clone();
        let account = token_account(&url);
        let t = token.clone();
        blocking(move || s.set(&account, &t)).await?.map_err(|e| {
            ConsoleError::new(
                ConsoleErrorCode::Keyring,
                format!(
                    "Cannot keep the token in the {}: {e}",
                    self.secrets.describe()
                ),
            )
        })?;
        // The SSO session's refresh token and key go to the keyring too; a token
        // sign-in leaves none of an earlier SSO session behind.
        let sso_live = sso
            .as_ref()
            .map(|(s, now)| SsoLive::from_tokens(&s.tokens, *now));
        let sso_secrets = sso.map(|(s, _)| {
            (
                zeroize::Zeroizing::new(s.tokens.refresh_token.clone()),
                zeroize::Zeroizing::new(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    s.session_key.to_bytes(),
                )),
            )
        });
        self.store_sso_secrets(&url, sso_secrets).await?;
        if self.cache.get(K_URL).await?.as_deref() != Some(url.as_str())
            || self.cache.get(K_USER).await?.as_deref() != Some(me.name.as_str())
        {
            self.cache.clear().await?;
        }
        self.cache.set(K_URL, Some(&url)).await?;
        self.cache
            .set(
                K_URLS,
                Some(&serde_json::to_string(&urls).unwrap_or_default()),
            )
            .await?;
        self.cache
            .set(K_URL_IN_USE, Some(&client.current_url()))
            .await?;
        self.cache.set(K_USER, Some(&me.name)).await?;
        self.cache
            .set(
                K_GROUPS,
                Some(&serde_json::to_string(&me.groups).unwrap_or_default()),
            )
            .await?;
        self.pin_broker_key(&client, &url, &me.name).await?;
        if previous != Some((url.clone(), me.name.clone())) {
            // Another user's or broker's event ids mean nothing to this session.
            self.cache.set(K_EVENT, None).await?;
        }
        self.cache
            .set(
                K_SSO,
                sso_live
                    .map(|l| serde_json::to_string(&l).unwrap_or_default())
                    .as_deref(),
            )
            .await?;
        {
            let mut live = self.live.lock().await;
            live.session = Some(Session {
                client,
                url,
                user: me.name,
                groups: me.groups,
            });
            live.sso = sso_live;
            live.session_ended = None;
        }
        self.session_gen.send_modify(|g| *g += 1);
        self.mark_online().await;
        if let Err(e) = self.send_pending_revocations_except(Some(&token)).await {
            tracing::warn!(error = %e, "sending queued token revocations");
        }
        if let Err(e) = self.sync().await {
            tracing::warn!(error = %e, "first sync");
        }
        self.changed(Change::Snapshot);
        self.status().await
    }

    /// Removes the token from the keyring and forgets the cache — except this
    /// device's break-glass enrolment: its wrapped keys stay in the keyring and its
    /// public data and pending unlock records stay in the cache, so the device stays
    /// enrolled for that broker and user, and records not yet acknowledged by the
    /// broker are uploaded at the next sign-in to the same broker as the same user.
    /// (Signing in as someone else, or to another broker, uses a separate enrolment.)
    ///
    /// The token is revoked at the broker first (`DELETE /me/token`). If the broker
    /// cannot be reached, the revocation waits in the outbox (see
    /// [`Console::send_pending_revocations`]): the token moves to a separate keyring
    /// entry that only the revocation uses, never to the cache file.
    pub async fn sign_out(&self) -> Result<AppStatus> {
        let _turn = self.session_turn.lock().await;
        let session = {
            let mut live = self.live.lock().await;
            live.sso = None;
            live.session.take()
        };
        if let Some(s) = &session {
            // The broker ends the SSO session with its access token (below); the
            // refresh token and key are of no use any more.
            self.store_sso_secrets(&s.url, None).await?;
        }
        let mut pending = None;
        if let Some(s) = session {
            match s.client.revoke_my_token().await {
                // 401: the token already works nowhere.
                Ok(()) | Err(ClientError::Api { status: 401, .. }) => {}
                Err(e) => {
                    tracing::info!(error = %e, "the broker did not revoke the token; queued");
                    pending = Some((s.url.clone(), s.client.urls().to_vec()));
                }
            }
            let item_id = Self::new_key();
            if let Some((url, _)) = &pending {
                // Keep the token where it was (the keyring), under an entry only the
                // queued revocation reads, before the session's entry goes.
                let store = self.secrets.clone();
                let from = token_account(url);
                let to = pending_revocation_account(&item_id);
                blocking(
                    move || -> std::result::Result<(), crate::secrets::SecretError> {
                        if let Some(t) = store.get(&from)? {
                            store.set(&to, &t)?;
                        }
                        Ok(())
                    },
                )
                .await?
                .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
            }
            let store = self.secrets.clone();
            let account = token_account(&s.url);
            blocking(move || store.delete(&account))
                .await?
                .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
            self.cache.clear().await?;
            if let Some((url, urls)) = pending {
                self.cache
                    .push_outbox(&OutboxItem {
                        id: item_id.clone(),
                        kind: REVOKE_TOKEN.into(),
                        summary: format!("Revoke the signed-out token at {url}"),
                        created_at: Utc::now(),
                        attempts: 0,
                        last_error: None,
                        bundle: None,
                        grant_id: None,
                        payload: serde_json::json!({ "url": url, "urls": urls }).to_string(),
                        idempotency_key: item_id,
                    })
                    .await?;
            }
        } else {
            self.cache.clear().await?;
        }
        self.session_gen.send_modify(|g| *g += 1);
        self.changed(Change::Snapshot);
        self.status().await
    }

    /// Sends the token revocations queued by signing out while the broker was
    /// unreachable, each with the token kept for it in the keyring (deleted once the
    /// broker has revoked it, or says it no longer works). Works signed out too.
    /// Stops at the first network error; returns how many were done.
    pub async fn send_pending_revocations(&self) -> Result<usize> {
        self.send_pending_revocations_except(None).await
    }

    /// As [`Console::send_pending_revocations`]; a revocation queued for `in_use` (the
    /// token someone just signed in with again) is dropped instead of sent: signing in
    /// with it is a choice to keep using it, and sending it would sign them out.
    async fn send_pending_revocations_except(&self, in_use: Option<&str>) -> Result<usize> {
        let _turn = self.replaying.lock().await;
        let mut done = 0;
        for item in self.cache.outbox().await? {
            if item.kind != REVOKE_TOKEN {
                continue;
            }
            let payload = serde_json::from_str::<serde_json::Value>(&item.payload).ok();
            let url = payload
                .as_ref()
                .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(String::from));
            // Queued by a version with several URLs: all of them (the first is `url`).
            let urls: Vec<String> = payload
                .as_ref()
                .and_then(|v| v.get("urls"))
                .and_then(|u| serde_json::from_value(u.clone()).ok())
                .filter(|u: &Vec<String>| u.first() == url.as_ref())
                .unwrap_or_default();
            let account = pending_revocation_account(&item.id);
            let store = self.secrets.clone();
            let a = account.clone();
            let token = blocking(move || store.get(&a))
                .await?
                .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
            let token = token.map(zeroize::Zeroizing::new);
            let outcome = match (url, token) {
                (_, Some(token)) if in_use == Some(token.as_str()) => {
                    Ok("not sent: signed in again with this token".to_string())
                }
                (Some(url), Some(token)) => match if urls.len() > 1 {
                    Client::with_urls(&urls, Some(&token))
                } else {
                    Client::new(&url, Some(&token))
                } {
                    Ok(c) => match c.revoke_my_token().await {
                        Ok(()) => Ok("token revoked".to_string()),
                        Err(ClientError::Api { status: 401, .. }) => {
                            Ok("token already no longer valid".to_string())
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Ok(format!("dropped: {e}")),
                },
                _ => Ok("dropped: nothing left to revoke".to_string()),
            };
            match outcome {
                Ok(what) => {
                    let store = self.secrets.clone();
                    blocking(move || store.delete(&account))
                        .await?
                        .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
                    self.cache.remove_outbox(&item.id).await?;
                    done += 1;
                    self.changed(Change::OutboxReplayed {
                        summary: item.summary.clone(),
                        outcome: what,
                    });
                }
                Err(e) => {
                    // Network or a broker error: keep it and try again later (the
                    // token must not be forgotten while it may still work).
                    let network = is_network(&e);
                    let ce = ConsoleError::from(e);
                    self.cache.outbox_failed(&item.id, &ce.message).await?;
                    if network {
                        break;
                    }
                }
            }
        }
        if done > 0 {
            self.changed(Change::Snapshot);
        }
        Ok(done)
    }

    /// Fetches everything the UI shows and replaces the cache with it. When this
    /// device is enrolled for break glass it first uploads pending unlock records,
    /// then refreshes the sealed envelopes.
    pub async fn sync(&self) -> Result<()> {
        let c = self.client().await?;
        let sent = Utc::now();
        let health = self.online(c.health().await).await?;
        let rtt = Utc::now() - sent;
        let offset = (health.time - (sent + rtt / 2)).num_milliseconds();
        // The broker's time is known now, whatever the rest of the sync meets (an
        // SSO access token that ended is renewed by the broker's time).
        self.live.lock().await.clock_offset_ms = offset;
        let break_glass_problem = self.sync_break_glass(&c).await?;
        let audit_problem = self.check_audit_head(&c).await?;
        let (me, bundles, mine, awaiting, grants, incidents) = tokio::join!(
            c.me(),
            c.bundles(),
            c.requests("mine"),
            c.requests("awaiting_me"),
            c.grants("mine", true),
            c.incidents()
        );
        let me = self.online(me).await?;
        let incidents = self.online(incidents).await?;
        let bundles = self.online(bundles).await?;
        let mine = self.online(mine).await?;
        let awaiting = self.online(awaiting).await?;
        let grants = self.online(grants).await?;
        self.cache
            .put_list(List::Bundles, &bundles, |b| b.name.clone())
            .await?;
        self.cache
            .put_list(List::MyRequests, &mine, |r| r.id.to_string())
            .await?;
        self.cache
            .put_list(List::Approvals, &awaiting, |r| r.id.to_string())
            .await?;
        self.cache
            .put_list(List::Grants, &grants, |g| g.id.to_string())
            .await?;
        self.cache
            .put_list(List::Incidents, &incidents, |i| i.id.clone())
            .await?;
        self.cache
            .set(
                K_ONCALL,
                Some(&serde_json::to_string(&me.oncall).unwrap_or_default()),
            )
            .await?;
        self.reconcile_ssh(
            &c,
            &me.name,
            &grants,
            Utc::now() + chrono::Duration::milliseconds(offset),
        )
        .await;
        self.cache.set_time(K_SYNCED, Some(Utc::now())).await?;
        let in_use = c.current_url();
        if self.cache.get(K_URL_IN_USE).await?.as_deref() != Some(in_use.as_str()) {
            tracing::info!(url = %in_use, "broker URL in use");
            self.cache.set(K_URL_IN_USE, Some(&in_use)).await?;
        }
        self.cache.set(K_OFFSET, Some(&offset.to_string())).await?;
        {
            let mut live = self.live.lock().await;
            live.clock_offset_ms = offset;
            if break_glass_problem.is_some() {
                live.last_error = break_glass_problem;
            }
            if audit_problem.is_some() {
                live.last_error = audit_problem;
            }
        }
        self.changed(Change::Snapshot);
        Ok(())
    }

    fn new_key() -> String {
        format!("fdo_{}", uuid::Uuid::new_v4().simple())
    }

    /// Requests a bundle. If the broker cannot be reached the request goes to the
    /// outbox and is sent once when it is back.
    pub async fn request_bundle(&self, body: CreateRequest) -> Result<ActionResult> {
        let c = self.client().await?;
        let key = Self::new_key();
        match c.create_request(&body, Some(&key)).await {
            Ok((r, _)) => {
                self.mark_online().await;
                let _ = self.sync().await;
                Ok(ActionResult {
                    queued: false,
                    message: format!(
                        "Requested {} — {}",
                        r.bundle_title,
                        r.state.as_str().replace('_', " ")
                    ),
                    request: Some(r),
                    grant: None,
                })
            }
            Err(e) if is_network(&e) => {
                self.mark_offline(&ConsoleError::from(e).message).await;
                let title = self
                    .cache
                    .bundles()
                    .await?
                    .into_iter()
                    .find(|b| b.name == body.bundle)
                    .map(|b| b.title)
                    .unwrap_or_else(|| body.bundle.clone());
                let item = OutboxItem {
                    id: key.clone(),
                    kind: "request".into(),
                    summary: format!("Request {title}"),
                    created_at: Utc::now(),
                    attempts: 0,
                    last_error: None,
                    bundle: Some(body.bundle.clone()),
                    grant_id: None,
                    payload: serde_json::to_string(&body)
                        .map_err(|e| ConsoleError::new(ErrorCode::Internal, e.to_string()))?,
                    idempotency_key: key,
                };
                self.queue(item).await
            }
            Err(e) => {
                self.note_error(&e).await;
                Err(e.into())
            }
        }
    }

    /// Puts an action in the outbox and says so.
    async fn queue(&self, item: OutboxItem) -> Result<ActionResult> {
        self.cache.push_outbox(&item).await?;
        self.changed(Change::Snapshot);
        Ok(ActionResult {
            queued: true,
            message: format!(
                "{} is queued and will be sent when the broker is back (it cannot be reached now).",
                item.summary
            ),
            request: None,
            grant: None,
        })
    }

    /// Cancels an action queued offline (an outbox item) before it is sent: it is
    /// removed from the cache for good, so no later replay sends it. Waits for a
    /// replay under way; an item already sent is not found (`not_found`, saying so).
    /// A sign-out's token revocation cannot be cancelled (`conflict`).
    pub async fn cancel_queued(&self, id: &str) -> Result<ActionResult> {
        let _turn = self.replaying.lock().await;
        let item = self
            .cache
            .outbox()
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| {
                ConsoleError::new(
                    ErrorCode::NotFound,
                    "That queued action is no longer waiting: it was sent or cancelled already.",
                )
            })?;
        if item.kind == REVOKE_TOKEN {
            return Err(ConsoleError::new(
                ErrorCode::Conflict,
                "The revocation of a signed-out session's token cannot be cancelled.",
            ));
        }
        self.cache.remove_outbox(&item.id).await?;
        tracing::info!(kind = %item.kind, "queued action cancelled before it was sent");
        self.changed(Change::Snapshot);
        Ok(ActionResult {
            queued: false,
            message: format!(
                "“{}” is cancelled and will never be sent to the broker.",
                item.summary
            ),
            request: None,
            grant: None,
        })
    }

    /// Revokes a grant; queued in the outbox while offline.
    pub async fn revoke(&self, grant: &GrantId) -> Result<ActionResult> {
        let c = self.client().await?;
        match c.revoke(grant).await {
            Ok(g) => {
                self.mark_online().await;
                let _ = self.sync().await;
                Ok(ActionResult {
                    queued: false,
                    message: format!("{} revoked", g.bundle_title),
                    request: None,
                    grant: Some(g),
                })
            }
            Err(e) if is_network(&e) => {
                self.mark_offline(&ConsoleError::from(e).message).await;
                let title = self
                    .cache
                    .grants()
                    .await?
                    .into_iter()
                    .find(|g| &g.id == grant)
                    .map(|g| g.bundle_title)
                    .unwrap_or_else(|| grant.to_string());
                let key = Self::new_key();
                let item = OutboxItem {
                    id: key.clone(),
                    kind: "revoke".into(),
                    summary: format!("Revoke {title}"),
                    created_at: Utc::now(),
                    attempts: 0,
                    last_error: None,
                    bundle: None,
                    grant_id: Some(grant.to_string()),
                    payload: String::new(),
                    idempotency_key: key,
                };
                self.queue(item).await
            }
            Err(e) => {
                self.note_error(&e).await;
                Err(e.into())
            }
        }
    }

    pub(crate) async fn needs_broker<T>(
        &self,
        what: &str,
        r: std::result::Result<T, ClientError>,
    ) -> Result<T> {
        match self.online(r).await {
            Err(e) if e.code == ConsoleErrorCode::Offline => Err(ConsoleError::new(
                ConsoleErrorCode::Offline,
                format!("{what} need the broker, and it cannot be reached right now."),
            )),
            other => other,
        }
    }

    pub async fn approve(&self, id: &RequestId, comment: Option<&str>) -> Result<ActionResult> {
        self.approve_via(id, comment, ClientChannel::App).await
    }

    /// Approves; `channel` says where (the window, a notification), for the audit.
    pub async fn approve_via(
        &self,
        id: &RequestId,
        comment: Option<&str>,
        channel: ClientChannel,
    ) -> Result<ActionResult> {
        let c = self.client().await?;
        let r = self
            .needs_broker("Approvals", c.approve_via(id, comment, Some(channel)).await)
            .await?;
        let _ = self.sync().await;
        Ok(ActionResult {
            queued: false,
            message: format!("Approved {}'s request for {}", r.requester, r.bundle_title),
            request: Some(r),
            grant: None,
        })
    }

    pub async fn deny(&self, id: &RequestId, reason: Option<&str>) -> Result<ActionResult> {
        self.deny_via(id, reason, ClientChannel::App).await
    }

    // issue 14: report
    /// Whether the signed-in user may read reports (an admin, as the broker says);
    /// false when signed out or offline.
    pub async fn reports_allowed(&self) -> bool {
        let Ok(c) = self.client().await else {
            return false;
        };
        c.me().await.map(|m| m.admin).unwrap_or(false)
    }

    /// A report as the broker renders it (admins): `kind` `incident`, `grant` or
    /// `unlock`, `format` `md` or `html`.
    pub async fn report(&self, kind: &str, id: &str, format: &str) -> Result<String> {
        if firedoor_core::report::ReportKind::parse(kind).is_none()
            || !matches!(format, "md" | "html")
        {
            return Err(ConsoleError::new(
                ConsoleErrorCode::Validation,
                "A report is on an incident, a grant or an unlock, as Markdown or HTML.",
            ));
        }
        let c = self.client().await?;
        self.needs_broker("Reports", c.report_text(kind, id, format).await)
            .await
    }

    /// Denies; `channel` as for [`Console::approve_via`].
    pub async fn deny_via(
        &self,
        id: &RequestId,
        reason: Option<&str>,
        channel: ClientChannel,
    ) -> Result<ActionResult> {
        let c = self.client().await?;
        let r = self
            .needs_broker("Approvals", c.deny_via(id, reason, Some(channel)).await)
            .await?;
        let _ = self.sync().await;
        Ok(ActionResult {
            queued: false,
            message: format!("Denied {}'s request for {}", r.requester, r.bundle_title),
            request: Some(r),
            grant: None,
        })
    }

    pub async fn cancel(&self, id: &RequestId) -> Result<ActionResult> {
        let c = self.client().await?;
        let r = self.needs_broker("Cancelling", c.cancel(id).await).await?;
        let _ = self.sync().await;
        Ok(ActionResult {
            queued: false,
            message: format!("Cancelled the request for {}", r.bundle_title),
            request: Some(r),
            grant: None,
        })
    }

    pub async fn extend(&self, grant: &GrantId, body: ExtendBody) -> Result<ActionResult> {
        let c = self.client().await?;
        let x = self
            .needs_broker("Extensions", c.extend(grant, &body).await)
            .await?;
        let _ = self.sync().await;
        let message = match &x.request {
            Some(_) => format!(
                "Extension of {} requested; it needs approval",
                x.grant.bundle_title
            ),
            None => format!(
                "{} extended until {}",
                x.grant.bundle_title,
                x.grant.expires_at.format("%H:%M UTC")
            ),
        };
        Ok(ActionResult {
            queued: false,
            message,
            request: x.request,
            grant: Some(x.grant),
        })
    }

    /// One request as the broker has it now (e.g. to say who decided it).
    pub async fn request(&self, id: &RequestId) -> Result<RequestView> {
        let c = self.client().await?;
        self.needs_broker("Requests", c.request(id).await).await
    }

    /// The global shortcut's setting as stored (`None`: never set, the default), and
    /// how registering it went when the app last tried (see [`crate::shortcut`]).
    pub async fn global_shortcut_setting(&self) -> Result<(Option<String>, Option<String>)> {
        Ok((
            self.cache.get(crate::shortcut::PREF_KEY).await?,
            self.cache.get(crate::shortcut::STATUS_KEY).await?,
        ))
    }

    /// Sets the global shortcut: a combination (checked by
    /// [`crate::shortcut::normalize`]), `off`, or `default`. Returns what was stored.
    /// The running app registers the new one within a few seconds.
    pub async fn set_global_shortcut(&self, combination: &str) -> Result<String> {
        let value = match combination.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => crate::shortcut::OFF.to_string(),
            "default" => crate::shortcut::DEFAULT.to_string(),
            _ => crate::shortcut::normalize(combination)
                .map_err(|m| ConsoleError::new(ConsoleErrorCode::Usage, m))?,
        };
        self.cache
            .set_many(&[
                (crate::shortcut::PREF_KEY, Some(&value)),
                (crate::shortcut::STATUS_KEY, None),
            ])
            .await?;
        Ok(value)
    }

    /// The app records how registering the global shortcut went.
    pub async fn set_global_shortcut_status(&self, status: &str) -> Result<()> {
        self.cache
            .set(crate::shortcut::STATUS_KEY, Some(status))
            .await?;
        Ok(())
    }

    /// Credentials are fetched live and never cached.
    pub async fn credentials(&self, grant: &GrantId) -> Result<Credentials> {
        let c = self.client().await?;
        self.needs_broker("Credentials", c.credentials(grant).await)
            .await
    }

    pub async fn set_favourite(&self, bundle: &str, on: bool) -> Result<Snapshot> {
        self.cache.set_favourite(bundle, on).await?;
        self.changed(Change::Snapshot);
        self.snapshot().await
    }

    /// Sends queued actions, oldest first, each exactly once: a request carries the
    /// idempotency key it was queued with, so a replay interrupted after the broker
    /// received it does not create a second one. Stops at the first network error.
    pub async fn replay_outbox(&self) -> Result<usize> {
        let _turn = self.replaying.lock().await;
        let c = self.client().await?;
        let mut sent = 0;
        for item in self.cache.outbox().await? {
            if item.kind == REVOKE_TOKEN {
                continue; // sent by send_pending_revocations, with its own token
            }
            let outcome: std::result::Result<String, ClientError> = match item.kind.as_str() {
                "request" => {
                    let body: CreateRequest = serde_json::from_str(&item.payload)
                        .map_err(|e| ConsoleError::new(ConsoleErrorCode::Cache, e.to_string()))?;
                    c.create_request(&body, Some(&item.idempotency_key))
                        .await
                        .map(|(r, _)| request_outcome(&r))
                }
                "revoke" => {
                    let gid: GrantId = item
                        .grant_id
                        .as_deref()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|e: firedoor_core::ids::ParseIdError| {
                            ConsoleError::new(ConsoleErrorCode::Cache, e.to_string())
                        })?;
                    match c.revoke(&gid).await {
                        Ok(_) => Ok("sent · access revoked".into()),
                        // Already over (expired or revoked meanwhile): nothing left to do.
                        Err(ClientError::Api { status: 409, .. }) => {
                            Ok("not needed · the access had already ended".into())
                        }
                        Err(e) => Err(e),
                    }
                }
                other => Ok(format!("dropped unknown action '{other}'")),
            };
            match outcome {
                Ok(what) => {
                    self.cache.remove_outbox(&item.id).await?;
                    sent += 1;
                    self.note_replayed(&item, what, true).await?;
                }
                Err(e) if is_network(&e) => {
                    let ce = ConsoleError::from(e);
                    self.cache.outbox_failed(&item.id, &ce.message).await?;
                    self.mark_offline(&ce.message).await;
                    break;
                }
                Err(e) => {
                    // The broker refused it for good (e.g. no longer eligible): drop it
                    // and say so, rather than retrying forever.
                    let ce = ConsoleError::from(e);
                    self.cache.remove_outbox(&item.id).await?;
                    let why = ce.message.trim_end_matches('.');
                    self.note_replayed(&item, format!("refused by the broker · {why}"), false)
                        .await?;
                }
            }
        }
        if sent > 0 {
            self.changed(Change::Snapshot);
        }
        Ok(sent)
    }

    /// Keeps the cache live until the process ends: sync + outbox replay, then the
    /// event stream (resumed with `Last-Event-ID`); on any break it reconnects with
    /// backoff, and a periodic full resync repairs anything missed.
    pub async fn run(self: Arc<Self>, resync_every: Duration) {
        // SSO sign-ins renew their access token alongside; it ends with this loop.
        let refresher = tokio::spawn(self.clone().sso_refresher());
        let _refresher = AbortOnDrop(refresher);
        let mut backoff = Duration::from_millis(500);
        let mut revocations_at = tokio::time::Instant::now();
        let mut revocations_backoff = Duration::from_secs(1);
        loop {
            if tokio::time::Instant::now() >= revocations_at {
                let ok = self.send_pending_revocations().await.is_ok()
                    && !self
                        .cache
                        .outbox()
                        .await
                        .is_ok_and(|o| o.iter().any(|i| i.kind == REVOKE_TOKEN));
                if ok {
                    revocations_backoff = Duration::from_secs(1);
                } else {
                    revocations_backoff = (revocations_backoff * 2).min(Duration::from_secs(60));
                }
                revocations_at = tokio::time::Instant::now() + revocations_backoff;
            }
            // A sign-in or sign-out by the command line (or another window) on the
            // same data dir is followed here.
            if let Err(e) = self.follow_shared_session().await {
                tracing::debug!(error = %e, "reading the shared session");
            }
            if self.live.lock().await.session.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let mut session_changed = self.session_gen.subscribe();
            session_changed.borrow_and_update();
            let connected = async {
                self.sync().await?;
                self.replay_outbox().await?;
                let c = self.client().await?;
                let last: Option<i64> = self.cache.get(K_EVENT).await?.and_then(|v| v.parse().ok());
                let stream = self.online(c.events(last).await).await?;
                Ok::<_, ConsoleError>(stream)
            }
            .await;
            let mut stream = match connected {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "not connected");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(500);
            // Events older than this are history, not news (only matters when the
            // stream starts from the beginning, i.e. on the first connection).
            let offset = self.live.lock().await.clock_offset_ms;
            let fresh_after = Utc::now() + chrono::Duration::milliseconds(offset)
                - chrono::Duration::seconds(120);
            let mut resync = tokio::time::interval(resync_every);
            resync.tick().await;
            loop {
                tokio::select! {
                    next = stream.next() => match next {
                        Some(Ok(first)) => {
                            // Take everything already waiting, then sync once.
                            let mut batch = vec![first];
                            let mut broke = false;
                            while let Some(more) = stream.next().now_or_never() {
                                match more {
                                    Some(Ok(ev)) => batch.push(ev),
                                    _ => {
                                        broke = true;
                                        break;
                                    }
                                }
                            }
                            if let Some(last) = batch.last() {
                                let _ = self.cache.set(K_EVENT, Some(&last.id.to_string())).await;
                            }
                            // On a first connection the broker replays the user's
                            // history: keep it out of notifications. A resync (events
                            // pruned past our last id) is answered by the sync, not
                            // shown.
                            let fresh = |ev: &EventView| ev.at >= fresh_after && ev.kind != RESYNC_EVENT;
                            // An incident needs nothing from the sync to be told: at
                            // 3 a.m. the pager's news goes out first.
                            let (now, later): (Vec<_>, Vec<_>) = batch
                                .into_iter()
                                .partition(|ev| ev.kind == EventKind::IncidentOpened.as_str());
                            for ev in now.into_iter().filter(|e| fresh(e)) {
                                self.tell(ev).await;
                            }
                            let _ = self.sync().await;
                            for ev in later.into_iter().filter(|e| fresh(e)) {
                                self.tell(ev).await;
                            }
                            if broke {
                                self.stream_ended("the event stream broke").await;
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            self.stream_ended(&ConsoleError::from(e).message).await;
                            break;
                        }
                        None => {
                            self.stream_ended("the event stream closed").await;
                            break;
                        }
                    },
                    _ = resync.tick() => {
                        // Signed out (or in as someone else) from another process: the
                        // session watch below ends this stream.
                        let _ = self.follow_shared_session().await;
                        let _ = self.sync().await;
                    }
                    _ = session_changed.changed() => break,
                }
                if self.live.lock().await.session.is_none() {
                    break;
                }
            }
        }
    }

    /// Hands a live event to the shell (which notifies), unless it was told
    /// before: a replay after a restart, or after signing in again (which starts the
    /// stream from the beginning), never notifies twice. See [`notice_key`].
    async fn tell(&self, ev: EventView) {
        match self.cache.first_notice(&notice_key(&ev), ev.at).await {
            Ok(true) => self.changed(Change::Event(ev)),
            Ok(false) => tracing::debug!(kind = %ev.kind, id = ev.id, "event already told"),
            Err(e) => {
                // Better told twice than never.
                tracing::warn!(error = %e, "recording a notified event");
                self.changed(Change::Event(ev));
            }
        }
    }

    /// The event stream ended. With one broker URL the app is offline until it
    /// reconnects; with several, the reconnection (at once, to the next URL if need
    /// be) decides, so a failover does not flash "offline".
    async fn stream_ended(&self, why: &str) {
        let several = self
            .live
            .lock()
            .await
            .session
            .as_ref()
            .is_some_and(|s| s.client.urls().len() > 1);
        if several {
            tracing::info!(reason = %why, "event stream ended; reconnecting, to the next broker URL if need be");
        } else {
            self.mark_offline(why).await;
        }
    }

    /// Sends the UI's latest everything: handy after actions.
    pub async fn close(&self) {
        self.cache.close().await;
    }
}

/// What makes an event the same news as one told before. An event that happens once
/// in the life of its request or grant (approval needed, approved, denied, timed out,
/// access active, revoked, expired, failed) is named by kind and request or grant,
/// so the same news is told once even if the broker repeats it under another event
/// id; others (expiring soon, extended, alerts, incidents) by the event's id and time
/// (a broker that lost its database reuses ids, not times).
pub fn notice_key(ev: &EventView) -> String {
    let once = match ev.kind.as_str() {
        "request_awaiting_approval"
        | "request_approved"
        | "request_denied"
        | "request_timed_out" => ev.request_id.map(|r| r.to_string()),
        "grant_active" | "grant_revoked" | "grant_expired" | "grant_failed" => {
            ev.grant_id.map(|g| g.to_string())
        }
        _ => None,
    };
    match once {
        Some(subject) => format!("{}:{subject}", ev.kind),
        None => format!("{}:{}@{}", ev.kind, ev.id, ev.at.timestamp_micros()),
    }
}

/// Aborts a task when dropped (a background helper ends with its owner).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Single sign-on sessions: their secrets in the keyring and their renewal.
impl Console {
    /// Keeps (or, with `None`, removes) an SSO session's refresh token and private
    /// key in the keyring, under entries named after the primary broker URL.
    async fn store_sso_secrets(
        &self,
        url: &str,
        secrets: Option<(zeroize::Zeroizing<String>, zeroize::Zeroizing<String>)>,
    ) -> Result<()> {
        let store = self.secrets.clone();
        let (refresh, key) = (sso_refresh_account(url), sso_key_account(url));
        blocking(
            move || -> std::result::Result<(), crate::secrets::SecretError> {
                match secrets {
                    Some((r, k)) => {
                        store.set(&refresh, &r)?;
                        store.set(&key, &k)
                    }
                    None => {
                        store.delete(&refresh)?;
                        store.delete(&key)
                    }
                }
            },
        )
        .await?
        .map_err(|e| {
            ConsoleError::new(
                ConsoleErrorCode::Keyring,
                format!(
                    "Cannot keep the sign-in in the {}: {e}",
                    self.secrets.describe()
                ),
            )
        })
    }

    /// The broker's time as this app knows it (its clock offset from the last
    /// sync).
    async fn broker_now(&self) -> DateTime<Utc> {
        let offset = self.live.lock().await.clock_offset_ms;
        Utc::now() + chrono::Duration::milliseconds(offset)
    }

    /// Whether the SSO session's access token is due for renewal now.
    pub async fn sso_refresh_due(&self) -> bool {
        let due = self.live.lock().await.sso.map(|s| s.refresh_due);
        match due {
            Some(d) => self.broker_now().await >= d,
            None => false,
        }
    }

    /// Renews the SSO session's tokens now: a new access token for the calls, a new
    /// refresh token in the keyring. When the broker says the session is over
    /// (`session_expired`, or the refresh refused), the app signs itself out and
    /// says so ([`SESSION_ENDED`]). A network failure leaves everything as it was
    /// (the run loop tries again).
    pub async fn refresh_sso_now(&self) -> Result<()> {
        let path = self.sso_lock_path.clone();
        let _lock = blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            f.lock()?;
            Ok(f)
        })
        .await?
        .map_err(|e| {
            ConsoleError::new(
                ConsoleErrorCode::Cache,
                format!("locking the data dir: {e}"),
            )
        })?;
        if self.adopt_shared_sso_renewal().await? {
            return Ok(());
        }
        let (client, url) = {
            let live = self.live.lock().await;
            match (&live.session, live.sso) {
                (Some(s), Some(_)) => (s.client.clone(), s.url.clone()),
                _ => {
                    return Err(ConsoleError::new(
                        ConsoleErrorCode::SignedOut,
                        "No SSO sign-in to renew.",
                    ))
                }
            }
        };
        let store = self.secrets.clone();
        let (ra, ka) = (sso_refresh_account(&url), sso_key_account(&url));
        let got = blocking(
            move || -> std::result::Result<_, crate::secrets::SecretError> {
                Ok((
                    store.get(&ra)?.map(zeroize::Zeroizing::new),
                    store.get(&ka)?.map(zeroize::Zeroizing::new),
                ))
            },
        )
        .await?
        .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
        let (Some(refresh), Some(key)) = got else {
            return self.session_over().await;
        };
        let key =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key.as_bytes())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(|b| ed25519_dalek::SigningKey::from_bytes(&b));
        let Some(key) = key else {
            return self.session_over().await;
        };
        let now = self.broker_now().await;
        match crate::sso::refresh(&client, &refresh, &key, now).await {
            Ok(tokens) => {
                let sso = SsoLive::from_tokens(&tokens, now);
                self.store_sso_secrets(
                    &url,
                    Some((
                        zeroize::Zeroizing::new(tokens.refresh_token.clone()),
                        zeroize::Zeroizing::new(base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            key.to_bytes(),
                        )),
                    )),
                )
                .await?;
                let store = self.secrets.clone();
                let account = token_account(&url);
                let access = zeroize::Zeroizing::new(tokens.access_token.clone());
                blocking(move || store.set(&account, &access))
                    .await?
                    .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
                self.cache
                    .set(
                        K_SSO,
                        Some(&serde_json::to_string(&sso).unwrap_or_default()),
                    )
                    .await?;
                {
                    let mut live = self.live.lock().await;
                    if let Some(s) = live.session.as_mut().filter(|s| s.url == url) {
                        s.client = s.client.as_user(&tokens.access_token);
                        s.groups = tokens.groups.clone();
                    }
                    live.sso = Some(sso);
                }
                // The event stream reconnects with the new token.
                self.session_gen.send_modify(|g| *g += 1);
                self.mark_online().await;
                self.changed(Change::Snapshot);
                Ok(())
            }
            Err(e @ ClientError::Network(_)) => {
                let ce = ConsoleError::from(e);
                self.mark_offline(&ce.message).await;
                Err(ce)
            }
            Err(ClientError::Api { status: 401, .. }) => self.session_over().await,
            Err(e) => {
                self.note_error(&e).await;
                Err(e.into())
            }
        }
    }

    /// Takes over a renewal another process sharing this data dir made since this
    /// one last looked (its access token is in the keyring, its timing in the
    /// cache). Returns whether there was one. Called with the renewal lock held.
    async fn adopt_shared_sso_renewal(&self) -> Result<bool> {
        let stored = self
            .cache
            .get(K_SSO)
            .await?
            .and_then(|v| serde_json::from_str::<SsoLive>(&v).ok());
        let (url, mine) = {
            let live = self.live.lock().await;
            match (&live.session, live.sso) {
                (Some(s), Some(m)) => (s.url.clone(), m),
                _ => return Ok(false),
            }
        };
        let Some(stored) = stored.filter(|s| s.access_expires_at > mine.access_expires_at) else {
            return Ok(false);
        };
        let store = self.secrets.clone();
        let account = token_account(&url);
        let token = blocking(move || store.get(&account))
            .await?
            .map_err(|e| ConsoleError::new(ConsoleErrorCode::Keyring, e.to_string()))?;
        let Some(token) = token.map(zeroize::Zeroizing::new) else {
            return Ok(false);
        };
        {
            let mut live = self.live.lock().await;
            if let Some(s) = live.session.as_mut().filter(|s| s.url == url) {
                s.client = s.client.as_user(&token);
            }
            live.sso = Some(stored);
        }
        self.session_gen.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// The sign-in ended: sign out (revoking at the broker what may still work)
    /// and show why.
    async fn session_over(&self) -> Result<()> {
        self.sign_out().await?;
        self.live.lock().await.session_ended = Some(SESSION_ENDED.to_string());
        self.changed(Change::Snapshot);
        Err(ConsoleError::new(ErrorCode::SessionExpired, SESSION_ENDED))
    }

    /// Renews the SSO session's access token when due, as long as the console
    /// lives (started by [`Console::run`]). Checks every second against the
    /// broker's time; after a failed renewal waits longer, up to 30 s.
    async fn sso_refresher(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !self.sso_refresh_due().await {
                continue;
            }
            match self.refresh_sso_now().await {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(e) if e.code == "session_expired" || e.code == "signed_out" => {}
                Err(e) => {
                    tracing::info!(error = %e, "renewing the SSO sign-in; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str) -> ClientError {
        ClientError::Api {
            status: 404,
            code: code.into(),
            message: "No such request.".into(),
        }
    }

    #[test]
    fn broker_codes_reach_the_ui_as_the_broker_sent_them() {
        let e = ConsoleError::from(api("not_found"));
        assert_eq!(e.code, ConsoleErrorCode::Broker(ErrorCode::NotFound));
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            serde_json::json!({"code": "not_found", "message": "No such request."}),
            "nothing changes on the wire"
        );
        let e = ConsoleError::from(api("http_error"));
        assert_eq!(e.code, ConsoleErrorCode::HttpError);
    }

    #[test]
    fn an_unknown_broker_code_is_kept_in_the_message() {
        let e = ConsoleError::from(api("quota_exceeded"));
        assert_eq!(e.code, ConsoleErrorCode::BrokerError);
        assert_eq!(e.message, "No such request. (quota_exceeded)");
        let e = ConsoleError::from(ClientError::Network("refused".into()));
        assert_eq!(e.code, ConsoleErrorCode::Offline);
    }
}
