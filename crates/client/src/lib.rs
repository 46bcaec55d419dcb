//! Firedoor's client library: the typed HTTP client for the broker (this module),
//! and everything the desktop app does that is not UI: the offline cache
//! ([`cache`]), the console engine with sync, live events and the outbox
//! ([`console`]), offline break glass on this device ([`breakglass`], keys in
//! [`device`]), and the OS keyring store for the API token and the wrapped device
//! keys ([`secrets`]).

mod audit_head;
pub mod breakglass;
pub mod cache;
pub mod cli;
pub mod console;
pub mod device;
pub mod paths;
pub mod secrets;
pub mod shortcut;
pub mod ssh;
pub mod ssh_agent;
pub mod sso;
pub mod trust;
// issue 14: uses
#[cfg(feature = "ts")]
pub mod ts;
pub mod uses;

use firedoor_core::api::{
    ApproveBody, BundleView, CreateRequest, Credentials, DenyBody, ErrorBody, EventView,
    ExtendBody, ExtendResult, GrantView, Health, IncidentView, Me, NewOverride, OverrideView,
    RequestView, ScheduleView,
};
use firedoor_core::audit::AuditRecord;
use firedoor_core::breakglass::{
    BrokerIdentity, DeviceView, EnvelopeList, OnlineUnlock, PutSecret, RegisterDevice, SecretView,
    UnlockedSecret, UnlocksAck, UploadUnlocks,
};
use firedoor_core::{GrantId, RequestId};
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The broker could not be reached or the connection broke.
    #[error("cannot reach the broker: {0}")]
    Network(String),
    /// The broker's answer was not what this client understands.
    #[error("unexpected answer from the broker: {0}")]
    Decode(String),
    /// A broker URL (or list of them) is not acceptable; the message says why.
    #[error("{0}")]
    InvalidUrl(String),
    /// Failing over, another of the configured URLs presented a broker signing key
    /// other than the one of this sign-in: it is not a replica of the same broker, and
    /// nothing more is sent there. Not a network problem: never failed over past.
    #[error("{message}")]
    WrongBroker { url: String, message: String },
}

impl ClientError {
    /// The stable error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn net(e: reqwest::Error) -> ClientError {
    // The URL is left out (the caller knows it); the token is a header, never shown.
    let e = e.without_url();
    let mut chain = vec![e.to_string()];
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    // People recognise the innermost cause ("Connection refused"), not the layers
    // of HTTP client wording around it.
    let root = chain.last().cloned().unwrap_or_default();
    let msg = if e.is_timeout() {
        "no answer in time (timed out)".to_string()
    } else if e.is_connect() {
        format!(
            "cannot connect: {}",
            root.trim_end_matches(" (os error 111)")
        )
    } else {
        chain.join(": ")
    };
    ClientError::Network(msg)
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// How long an online break-glass call may take before the broker counts as down.
pub const ONLINE_UNLOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Live events as they arrive.
pub type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<EventView>> + Send>>;

/// At most this many broker URLs per sign-in (replicas of one broker).
pub const MAX_BROKER_URLS: usize = 8;

/// The broker URLs of one client and what they share across clones: which one is in
/// use (sticky: the one that answered last) and the broker signing key they must all
/// present.
struct Endpoints {
    /// In the order given; the first is the primary (it names keyring entries).
    urls: Vec<String>,
    /// Index of the URL in use.
    current: AtomicUsize,
    /// The broker signing key (base64) of this sign-in: the key the URL in use
    /// presented, or the one the caller set. A URL failed over to must present it.
    broker_key: Mutex<Option<String>>,
    /// With no key set: the key is learnt from the first URL that answers.
    learn_tried: std::sync::atomic::AtomicBool,
}

/// Whether a request may be sent again to another URL after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Safe to repeat (a GET, or a write the broker treats as idempotent): retried on
    /// the next URL after a connection error, a timeout, a broken answer or HTTP
    /// 502/503/504.
    Safe,
    /// May have an effect each time it reaches a broker: retried on the next URL only
    /// when no connection was ever made (so the request was never sent).
    IfNotSent,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    ends: Arc<Endpoints>,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("urls", &self.ends.urls)
            .field("in_use", &self.current_url())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Whether a request was newly created or an idempotent replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Replayed,
}

impl Client {
    /// A client for the broker at `base_url` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base_url: &str, token: Option<&str>) -> Result<Client> {
        Self::build(&[base_url], token, None)
    }

    /// As [`Client::new`], trusting an extra root certificate (PEM) for TLS.
    pub fn with_root_pem(base_url: &str, token: Option<&str>, pem: &[u8]) -> Result<Client> {
        Self::build(&[base_url], token, Some(pem))
    }

    /// A client for one broker served at several URLs (replicas), tried in order: a
    /// request that fails on one URL in a way that is safe to repeat is sent to the
    /// next (see [`Client::current_url`]). 1 to [`MAX_BROKER_URLS`] URLs, each
    /// `https://` unless on this machine, no duplicates (see
    /// [`trust::check_broker_urls`]).
    pub fn with_urls<S: AsRef<str>>(urls: &[S], token: Option<&str>) -> Result<Client> {
        let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        let urls = trust::check_broker_urls(&urls).map_err(ClientError::InvalidUrl)?;
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Self::build(&urls, token, None)
    }

    /// As [`Client::with_urls`], trusting an extra root certificate (PEM) for TLS.
    pub fn with_urls_and_root_pem<S: AsRef<str>>(
        urls: &[S],
        token: Option<&str>,
        pem: &[u8],
    ) -> Result<Client> {
        let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        let urls = trust::check_broker_urls(&urls).map_err(ClientError::InvalidUrl)?;
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Self::build(&urls, token, Some(pem))
    }

    fn build(base_urls: &[&str], token: Option<&str>, pem: Option<&[u8]>) -> Result<Client> {
        if base_urls.is_empty() || base_urls.len() > MAX_BROKER_URLS {
            return Err(ClientError::InvalidUrl(format!(
                "give 1 to {MAX_BROKER_URLS} broker URLs (got {})",
                base_urls.len()
            )));
        }
        let mut urls = Vec::with_capacity(base_urls.len());
        for base_url in base_urls {
            let base = base_url.trim().trim_end_matches('/').to_string();
            let parsed = reqwest::Url::parse(&base)
                .map_err(|e| ClientError::Decode(format!("'{base}' is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ClientError::Decode(format!(
                    "'{base}' must start with http:// or https://"
                )));
            }
            urls.push(base);
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("firedoor-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| ClientError::Decode(format!("root certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(net)?;
        Ok(Client {
            http,
            ends: Arc::new(Endpoints {
                urls,
                current: AtomicUsize::new(0),
                broker_key: Mutex::new(None),
                learn_tried: std::sync::atomic::AtomicBool::new(false),
            }),
            token: token.map(str::to_string),
        })
    }

    /// The same broker as someone else (same URLs; the URL in use is shared).
    pub fn as_user(&self, token: &str) -> Client {
        Client {
            http: self.http.clone(),
            ends: self.ends.clone(),
            token: Some(token.to_string()),
        }
    }

    /// The primary (first) URL. Keyring entries and caches are named after it.
    pub fn base_url(&self) -> &str {
        &self.ends.urls[0]
    }

    /// Every configured URL, in order.
    pub fn urls(&self) -> &[String] {
        &self.ends.urls
    }

    /// The URL in use: the one that answered last (requests start there).
    pub fn current_url(&self) -> String {
        self.ends.urls[self.current_index()].clone()
    }

    fn current_index(&self) -> usize {
        self.ends.current.load(Ordering::Relaxed) % self.ends.urls.len()
    }

    /// Starts at `url` (e.g. the one in use before a restart), if it is one of ours.
    pub fn prefer_url(&self, url: &str) {
        let url = url.trim().trim_end_matches('/');
        if let Some(i) = self.ends.urls.iter().position(|u| u == url) {
            self.ends.current.store(i, Ordering::Relaxed);
        }
    }

    /// The broker signing key (base64, as `GET /broker` shows it) every URL of this
    /// client must present when failed over to. Learnt from the first URL that
    /// answers when not set; updated whenever [`Client::broker_identity`] reads it.
    pub fn set_broker_key(&self, key: Option<&str>) {
        *self
            .ends
            .broker_key
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = key.map(str::to_string);
    }

    /// The broker signing key of this client (see [`Client::set_broker_key`]).
    pub fn broker_key(&self) -> Option<String> {
        self.ends
            .broker_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn req_at(&self, base: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{base}/api/v1{path}"));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r.timeout(Duration::from_secs(30))
    }

    /// Sends a request built by `build` for a base URL, starting at the URL in use
    /// and failing over to the next ones as `retry` allows. A URL other than the one
    /// in use must first present this client's broker key ([`ClientError::WrongBroker`]
    /// otherwise, which ends the attempt). The URL that answers becomes the one in use.
    async fn execute(
        &self,
        retry: Retry,
        build: &(dyn Fn(&str) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<reqwest::Response> {
        self.execute_from(retry, 0, build).await
    }

    /// As [`Client::execute`], skipping the first `skip` URLs from the one in use.
    async fn execute_from(
        &self,
        retry: Retry,
        skip: usize,
        build: &(dyn Fn(&str) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<reqwest::Response> {
        let n = self.ends.urls.len();
        let start = self.current_index();
        let mut last_err = None;
        for k in skip..n {
            let i = (start + k) % n;
            let url = &self.ends.urls[i];
            if k > 0 {
                match self.verify_replica(url).await {
                    Ok(()) => {}
                    Err(e) if failover_after(&e) => {
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match build(url).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if retry == Retry::Safe && matches!(status, 502..=504) && k + 1 < n {
                        tracing::info!(%url, status, "broker URL unavailable; trying the next");
                        let bytes = resp.bytes().await.unwrap_or_default();
                        last_err = Some(api_error(
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                            &bytes,
                        ));
                        continue;
                    }
                    if matches!(status, 502..=504) {
                        // Nothing better left to try; the URL in use stays as it was.
                        return Ok(resp);
                    }
                    if k > 0 {
                        tracing::warn!(from = %self.ends.urls[start], to = %url, "failed over to another broker URL");
                    }
                    self.ends.current.store(i, Ordering::Relaxed);
                    if n > 1 && self.broker_key().is_none() {
                        self.learn_key(url).await;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    let never_sent = e.is_connect();
                    let e = net(e);
                    let again = match retry {
                        Retry::Safe => true,
                        Retry::IfNotSent => never_sent,
                    };
                    if !again || k + 1 == n {
                        return Err(e);
                    }
                    tracing::info!(%url, error = %e, "broker URL unreachable; trying the next");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Network("no broker URL answered".into())))
    }

    /// Checks that `url` serves the same broker as the URL in use: its signing key is
    /// this client's. With no key known yet there is nothing to compare.
    async fn verify_replica(&self, url: &str) -> Result<()> {
        let Some(expected) = self.broker_key() else {
            return Ok(());
        };
        let resp = self
            .req_at(url, Method::GET, "/broker")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(net)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(net)?;
        if !status.is_success() {
            let e = api_error(status, &bytes);
            return Err(match status.as_u16() {
                // The token is refused there too: the caller hears it as it is.
                401 | 502..=504 => e,
                _ => ClientError::WrongBroker {
                    url: url.to_string(),
                    message: format!(
                        "{url} is one of this sign-in's broker URLs but does not show the broker's signing key ({e}): it is not treated as the same broker, and nothing more is sent there."
                    ),
                },
            });
        }
        let id: BrokerIdentity =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        if same_key(&id.signing_key, &expected) {
            return Ok(());
        }
        let fp = |k: &str| {
            firedoor_core::breakglass::decode_public_key(k)
                .map(|k| firedoor_core::breakglass::fingerprint(&k))
                .unwrap_or_else(|_| "(unreadable key)".into())
        };
        tracing::error!(%url, expected = %fp(&expected), presented = %fp(&id.signing_key), "a broker URL presents another broker key; not failing over to it");
        Err(ClientError::WrongBroker {
            url: url.to_string(),
            message: format!(
                "{url} presents the broker signing key {}, not this broker's {}: it is a different broker (or someone impersonating it), so Firedoor does not fail over to it. Remove it from the broker URLs or ask your admins.",
                fp(&id.signing_key),
                fp(&expected)
            ),
        })
    }

    /// Learns the broker key from `url` (the URL that just answered), once.
    async fn learn_key(&self, url: &str) {
        if self.ends.learn_tried.swap(true, Ordering::Relaxed) {
            return;
        }
        let resp = match self
            .req_at(url, Method::GET, "/broker")
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                // Try again on the next answer.
                self.ends.learn_tried.store(false, Ordering::Relaxed);
                return;
            }
        };
        let status = resp.status();
        let got = if status.is_success() {
            resp.json::<BrokerIdentity>().await.ok()
        } else {
            None
        };
        match got {
            Some(id) => {
                let mut k = self
                    .ends
                    .broker_key
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                k.get_or_insert(id.signing_key);
            }
            None if status == StatusCode::NOT_FOUND => {
                tracing::warn!(%url, "the broker shows no signing key: failover cannot check that the other URLs serve the same broker")
            }
            // Not a clear answer: try again after the next one.
            None => self.ends.learn_tried.store(false, Ordering::Relaxed),
        }
    }

    /// Sends `method path` (with `body`, `query`, `headers`) with failover.
    async fn call(
        &self,
        retry: Retry,
        method: Method,
        path: &str,
        prepare: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<(StatusCode, Vec<u8>)> {
        let n = self.ends.urls.len();
        let build = |base: &str| prepare(self.req_at(base, method.clone(), path));
        let mut skip = 0;
        loop {
            let resp = self.execute_from(retry, skip, &build).await?;
            let status = resp.status();
            match resp.bytes().await {
                Ok(b) => return Ok((status, b.to_vec())),
                // The answer broke off: the broker may have acted. Only a safe request
                // is sent again, to the next URL (checked as any failover target).
                Err(e) if retry == Retry::Safe && skip + 1 < n => {
                    tracing::info!(error = %net(e), "answer broke off; trying the next broker URL");
                    skip += 1;
                }
                Err(e) => return Err(net(e)),
            }
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        retry: Retry,
        method: Method,
        path: &str,
        prepare: &(dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<(StatusCode, T)> {
        let (status, bytes) = self.call(retry, method, path, prepare).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// For answers without a body (204).
    async fn send_no_body(&self, retry: Retry, method: Method, path: &str) -> Result<()> {
        let (status, bytes) = self.call(retry, method, path, &|r| r).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(api_error(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.send(Retry::Safe, Method::GET, path, &|r| r).await?.1)
    }

    /// A POST the broker does not treat as idempotent (see [`Retry::IfNotSent`]).
    async fn post<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.post_as(Retry::IfNotSent, path, body).await
    }

    async fn post_as<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        retry: Retry,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Ok(self
            .send(retry, Method::POST, path, &|r| r.json(body))
            .await?
            .1)
    }

    async fn put<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        retry: Retry,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Ok(self
            .send(retry, Method::PUT, path, &|r| r.json(body))
            .await?
            .1)
    }

    pub async fn health(&self) -> Result<Health> {
        self.get("/health").await
    }
    pub async fn me(&self) -> Result<Me> {
        self.get("/me").await
    }
    pub async fn bundles(&self) -> Result<Vec<BundleView>> {
        self.get("/bundles").await
    }

    /// Requests a bundle. With an idempotency key, a replay returns the first result.
    pub async fn create_request(
        &self,
        body: &CreateRequest,
        idempotency_key: Option<&str>,
    ) -> Result<(RequestView, Created)> {
        // With an idempotency key the broker answers a repeat with the first result,
        // so it is safe to send again to another URL; without one, only if never sent.
        let retry = if idempotency_key.is_some() {
            Retry::Safe
        } else {
            Retry::IfNotSent
        };
        let (status, v) = self
            .send(retry, Method::POST, "/requests", &|r| {
                let r = r.json(body);
                match idempotency_key {
                    Some(k) => r.header("Idempotency-Key", k),
                    None => r,
                }
            })
            .await?;
        Ok((
            v,
            if status == StatusCode::CREATED {
                Created::New
            } else {
                Created::Replayed
            },
        ))
    }

    /// `scope`: `mine`, `awaiting_me` or `all`.
    pub async fn requests(&self, scope: &str) -> Result<Vec<RequestView>> {
        self.send(Retry::Safe, Method::GET, "/requests", &|r| {
            r.query(&[("scope", scope)])
        })
        .await
        .map(|x| x.1)
    }
    pub async fn request(&self, id: &RequestId) -> Result<RequestView> {
        self.get(&format!("/requests/{id}")).await
    }
    pub async fn approve(&self, id: &RequestId, comment: Option<&str>) -> Result<RequestView> {
        self.approve_via(id, comment, None).await
    }
    pub async fn deny(&self, id: &RequestId, reason: Option<&str>) -> Result<RequestView> {
        self.deny_via(id, reason, None).await
    }
    /// Approves, telling the broker where the person acted (`X-Firedoor-Client`),
    /// which the audit record and reports keep.
    pub async fn approve_via(
        &self,
        id: &RequestId,
        comment: Option<&str>,
        channel: Option<firedoor_core::api::ClientChannel>,
    ) -> Result<RequestView> {
        let body = ApproveBody {
            comment: comment.map(str::to_string),
        };
        self.post_from(&format!("/requests/{id}/approve"), &body, channel)
            .await
    }
    /// Denies, telling the broker where the person acted (see [`Client::approve_via`]).
    pub async fn deny_via(
        &self,
        id: &RequestId,
        reason: Option<&str>,
        channel: Option<firedoor_core::api::ClientChannel>,
    ) -> Result<RequestView> {
        let body = DenyBody {
            reason: reason.map(str::to_string),
        };
        self.post_from(&format!("/requests/{id}/deny"), &body, channel)
            .await
    }
    async fn post_from<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        channel: Option<firedoor_core::api::ClientChannel>,
    ) -> Result<T> {
        Ok(self
            .send(Retry::IfNotSent, Method::POST, path, &|r| {
                let r = r.json(body);
                match channel {
                    Some(c) => r.header(firedoor_core::api::CLIENT_CHANNEL_HEADER, c.as_str()),
                    None => r,
                }
            })
            .await?
            .1)
    }
    pub async fn cancel(&self, id: &RequestId) -> Result<RequestView> {
        self.post(&format!("/requests/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    /// `scope`: `mine` or `all`; `live` keeps grants whose access may still exist.
    pub async fn grants(&self, scope: &str, live: bool) -> Result<Vec<GrantView>> {
        let mut q = vec![("scope", scope)];
        if live {
            q.push(("state", "live"));
        }
        self.send(Retry::Safe, Method::GET, "/grants", &|r| r.query(&q))
            .await
            .map(|x| x.1)
    }
    pub async fn grant(&self, id: &GrantId) -> Result<GrantView> {
        self.get(&format!("/grants/{id}")).await
    }
    pub async fn credentials(&self, id: &GrantId) -> Result<Credentials> {
        self.get(&format!("/grants/{id}/credentials")).await
    }
    pub async fn revoke(&self, id: &GrantId) -> Result<GrantView> {
        self.post(&format!("/grants/{id}/revoke"), &serde_json::json!({}))
            .await
    }
    pub async fn extend(&self, id: &GrantId, body: &ExtendBody) -> Result<ExtendResult> {
        self.post(&format!("/grants/{id}/extend"), body).await
    }
    pub async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.send(Retry::Safe, Method::GET, "/audit", &|r| {
            r.query(&[("after", after), ("limit", limit)])
        })
        .await
        .map(|x| x.1)
    }

    // issue 14: report
    /// A report (admins): `kind` `incident`, `grant` or `unlock`; `format` `md`
    /// or `html` (the text as the broker renders it). Path segments are
    /// percent-encoded.
    pub async fn report_text(&self, kind: &str, id: &str, format: &str) -> Result<String> {
        let path = format!("/reports/{}/{}", segment(kind), segment(id));
        let (status, bytes) = self
            .call(Retry::Safe, Method::GET, &path, &|r| {
                r.query(&[("format", format)])
            })
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A report as JSON (admins), with every line's audit record.
    pub async fn report(&self, kind: &str, id: &str) -> Result<firedoor_core::report::Report> {
        let path = format!("/reports/{}/{}", segment(kind), segment(id));
        self.get(&path).await
    }

    /// Checks a JSON report against the broker's audit log (admins):
    /// `{"valid": true|false, "problem": ...}`.
    pub async fn verify_report(
        &self,
        report: &firedoor_core::report::Report,
    ) -> Result<serde_json::Value> {
        self.post_as(Retry::Safe, "/reports/verify", report).await
    }

    /// The broker's signed audit head (any signed-in user).
    pub async fn audit_head(&self) -> Result<firedoor_core::audit::SignedHead> {
        self.get("/audit/head").await
    }

    /// The broker's signed audit head as it was at record `seq`.
    pub async fn audit_head_at(&self, seq: i64) -> Result<firedoor_core::audit::SignedHead> {
        self.get(&format!("/audit/heads/{seq}")).await
    }

    // ---- Offline break glass --------------------------------------------------

    /// The broker's public signing key (apps pin it at sign-in).
    /// The answer also becomes this client's broker key (see
    /// [`Client::set_broker_key`]): the URLs failed over to must present it.
    pub async fn broker_identity(&self) -> Result<BrokerIdentity> {
        let id: BrokerIdentity = self.get("/broker").await?;
        self.set_broker_key(Some(&id.signing_key));
        Ok(id)
    }

    /// Registers this device's public keys for the caller.
    pub async fn register_device(&self, body: &RegisterDevice) -> Result<DeviceView> {
        self.post("/devices", body).await
    }

    /// The caller's devices.
    pub async fn devices(&self) -> Result<Vec<DeviceView>> {
        #[derive(serde::Deserialize)]
        struct DeviceList {
            devices: Vec<DeviceView>,
        }
        Ok(self.get::<DeviceList>("/devices").await?.devices)
    }

    /// Revokes one of the caller's devices (admins: anyone's); its envelopes go at once.
    pub async fn revoke_device(&self, device_id: &str) -> Result<()> {
        // A repeat of a revocation that happened answers 404: only if never sent.
        self.send_no_body(
            Retry::IfNotSent,
            Method::DELETE,
            &format!("/devices/{}", seg(device_id)),
        )
        .await
    }

    /// The current envelopes sealed to one of the caller's devices.
    pub async fn envelopes(&self, device_id: &str) -> Result<EnvelopeList> {
        self.get(&format!("/devices/{}/envelopes", seg(device_id)))
            .await
    }

    /// Uploads offline unlock records. Re-sending records the broker already holds is
    /// acknowledged again.
    pub async fn upload_unlocks(
        &self,
        device_id: &str,
        body: &UploadUnlocks,
    ) -> Result<UnlocksAck> {
        // The broker acknowledges records it already holds again: safe to repeat.
        self.post_as(
            Retry::Safe,
            &format!("/devices/{}/unlocks", seg(device_id)),
            body,
        )
        .await
    }

    /// Online break glass: the broker releases the secret (and alerts). A broker that
    /// has not answered within [`ONLINE_UNLOCK_TIMEOUT`] counts as unreachable: in an
    /// emergency the app must fall back to the sealed copy quickly.
    pub async fn unlock_secret(&self, name: &str, body: &OnlineUnlock) -> Result<UnlockedSecret> {
        // Each unlock alerts and is audited: sent to another URL only if never sent.
        let path = format!("/secrets/{}/unlock", seg(name));
        Ok(self
            .send(Retry::IfNotSent, Method::POST, &path, &|r| {
                r.json(body).timeout(ONLINE_UNLOCK_TIMEOUT)
            })
            .await?
            .1)
    }

    // issue 14: uses
    /// Break-glass uses the caller may see (their own; the secret's alert audience
    /// and admins: all of theirs), open ones first; only open ones if `open_only`.
    pub async fn unlocks(&self, open_only: bool) -> Result<Vec<firedoor_core::uses::UseView>> {
        let path = if open_only {
            "/unlocks?open=true"
        } else {
            "/unlocks"
        };
        Ok(self.get::<firedoor_core::uses::UseList>(path).await?.uses)
    }

    /// Classifies a break-glass use (drill, incident with its id, other with a note).
    pub async fn classify_use(
        &self,
        id: &str,
        body: &firedoor_core::uses::ClassifyUse,
    ) -> Result<firedoor_core::uses::UseView> {
        // A repeat of the same classification by security would be audited twice:
        // sent again only if it was never sent.
        self.post_as(
            Retry::IfNotSent,
            &format!("/unlocks/{}/classify", seg(id)),
            body,
        )
        .await
    }

    /// The break-glass secrets the caller may see (their public facts).
    pub async fn secrets(&self) -> Result<Vec<SecretView>> {
        #[derive(serde::Deserialize)]
        struct SecretList {
            secrets: Vec<SecretView>,
        }
        Ok(self.get::<SecretList>("/secrets").await?.secrets)
    }

    /// Admins: stores a new value of a break-glass secret.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<SecretView> {
        // Each store makes a new version (and rotation): only if never sent.
        self.put(
            Retry::IfNotSent,
            &format!("/secrets/{}", seg(name)),
            &PutSecret {
                value: value.to_string(),
            },
        )
        .await
    }

    // issue 14: drills
    /// Admins: starts a drill of a secret (or `all`).
    pub async fn start_drill(&self, secret: &str) -> Result<Vec<firedoor_core::drill::DrillView>> {
        #[derive(serde::Deserialize)]
        struct DrillList {
            drills: Vec<firedoor_core::drill::DrillView>,
        }
        let body = firedoor_core::drill::StartDrill {
            secret: secret.to_string(),
        };
        Ok(self.post::<_, DrillList>("/drills", &body).await?.drills)
    }

    /// Admins: the latest drills.
    pub async fn drills(&self) -> Result<Vec<firedoor_core::drill::DrillView>> {
        #[derive(serde::Deserialize)]
        struct DrillList {
            drills: Vec<firedoor_core::drill::DrillView>,
        }
        Ok(self.get::<DrillList>("/drills").await?.drills)
    }

    /// The drills waiting on one of the caller's devices.
    pub async fn pending_drills(
        &self,
        device_id: &str,
    ) -> Result<firedoor_core::drill::PendingDrills> {
        self.get(&format!("/devices/{}/drills", seg(device_id)))
            .await
    }

    /// A device's answer to a drill.
    pub async fn answer_drill(
        &self,
        drill_id: &str,
        answer: &firedoor_core::drill::DrillAnswer,
    ) -> Result<firedoor_core::drill::DrillPassed> {
        // Answering twice is harmless (a pass is told again; a wrong answer counts
        // once per send): sent again only if never sent.
        self.post(&format!("/drills/{}/answers", seg(drill_id)), answer)
            .await
    }

    /// Admins and the secrets' alert audiences: readiness per secret.
    pub async fn readiness(&self) -> Result<firedoor_core::drill::Readiness> {
        self.get("/readiness").await
    }

    /// The caller's live events from after `last_event_id`, as they arrive. The
    /// stream ends when the connection does; reconnect with the last id seen.
    pub async fn events(&self, last_event_id: Option<i64>) -> Result<EventStream> {
        // Connects to the URL in use, or fails over to the next one; the broker resumes
        // after `last_event_id` on any replica, so nothing is missed.
        let resp = self
            .execute(Retry::Safe, &|base| {
                let r = self
                    .req_at(base, Method::GET, "/events")
                    .timeout(Duration::from_secs(24 * 3600));
                match last_event_id {
                    Some(id) => r.header("Last-Event-ID", id.to_string()),
                    None => r,
                }
            })
            .await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(net)?;
            let b: ErrorBody =
                serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
            return Err(ClientError::Api {
                status,
                code: b.code,
                message: b.message,
            });
        }
        let s = async_stream::stream! {
            let mut bytes = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = bytes.next().await {
                match chunk {
                    Ok(c) => buf.extend_from_slice(&c),
                    Err(e) => {
                        yield Err(net(e));
                        break;
                    }
                }
                while let Some((content_end, frame_end)) = find_blank_line(&buf) {
                    let text = String::from_utf8_lossy(&buf[..content_end]).to_string();
                    buf.drain(..frame_end);
                    let data: Vec<&str> = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                        .collect();
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    yield serde_json::from_str::<EventView>(&data.join("\n"))
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
            }
        };
        Ok(Box::pin(s))
    }
}

/// The error of a non-success answer, from its `{code, message}` body.
fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: firedoor_core::ConsoleErrorCode::HttpError.as_str().into(),
            message: format!("HTTP {status} without an error body"),
        },
    }
}

/// Whether the next URL is tried after `e` (the URL did not serve the request).
fn failover_after(e: &ClientError) -> bool {
    matches!(e, ClientError::Network(_)) || matches!(e.status(), Some(502..=504))
}

/// Whether two base64 public keys are the same key.
fn same_key(a: &str, b: &str) -> bool {
    use firedoor_core::breakglass::decode_public_key;
    match (decode_public_key(a), decode_public_key(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A path segment: names and ids are slugs, but never let one add a path level.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Finds the end of the first SSE frame: (end of content, end including separator).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let a = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2));
    let b = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4));
    match (a, b) {
        (Some(x), Some(y)) => Some(if x.0 <= y.0 { x } else { y }),
        (x, y) => x.or(y),
    }
}

/// Access ends: sign-out and admin user management.
impl Client {
    /// Revokes the token this client signs in with (`DELETE /me/token`).
    pub async fn revoke_my_token(&self) -> Result<()> {
        // A repeat after the token was revoked answers 401, which callers take as done.
        self.send_no_body(Retry::Safe, Method::DELETE, "/me/token")
            .await
    }

    /// Disables a user (admins): tokens, devices and live grants are revoked.
    pub async fn disable_user(&self, name: &str) -> Result<serde_json::Value> {
        self.post(
            &format!("/users/{}/disable", seg(name)),
            &serde_json::json!({}),
        )
        .await
    }

    /// Replaces a user's groups (admins).
    pub async fn set_user_groups(
        &self,
        name: &str,
        groups: &[String],
    ) -> Result<serde_json::Value> {
        // Replacing the groups with the same list twice changes nothing.
        self.put(
            Retry::Safe,
            &format!("/users/{}/groups", seg(name)),
            &serde_json::json!({ "groups": groups }),
        )
        .await
    }

    /// Open incidents, then recent resolved ones.
    pub async fn incidents(&self) -> Result<Vec<IncidentView>> {
        #[derive(serde::Deserialize)]
        struct Incidents {
            incidents: Vec<IncidentView>,
        }
        Ok(self.get::<Incidents>("/incidents").await?.incidents)
    }

    /// Certificates for the key the device made for an active SSH grant (one per
    /// SSH integration of the bundle).
    pub async fn ssh_certificate(
        &self,
        grant: &GrantId,
        public_key: &str,
    ) -> Result<Vec<firedoor_core::api::SshCertificateView>> {
        #[derive(serde::Deserialize)]
        struct Certificates {
            certificates: Vec<firedoor_core::api::SshCertificateView>,
        }
        let c: Certificates = self
            .post(
                &format!("/grants/{grant}/ssh-certificate"),
                &firedoor_core::api::SshKeyBody {
                    public_key: public_key.to_string(),
                },
            )
            .await?;
        Ok(c.certificates)
    }

    /// Outbound notification deliveries (admins), newest first; `state`: `pending`,
    /// `delivered` or `dead`.
    pub async fn deliveries(
        &self,
        state: Option<&str>,
    ) -> Result<Vec<firedoor_core::api::DeliveryView>> {
        match state {
            Some(s) => {
                self.get(&format!("/notifications/deliveries?state={s}"))
                    .await
            }
            None => self.get("/notifications/deliveries").await,
        }
    }

    /// Sends a dead delivery again (admins).
    pub async fn retry_delivery(&self, id: &str) -> Result<firedoor_core::api::DeliveryView> {
        self.post(
            &format!("/notifications/deliveries/{id}/retry"),
            &serde_json::json!({}),
        )
        .await
    }

    /// Every on-call schedule, who is on call now and the overrides to come.
    pub async fn oncall(&self) -> Result<Vec<ScheduleView>> {
        #[derive(serde::Deserialize)]
        struct Schedules {
            schedules: Vec<ScheduleView>,
        }
        Ok(self.get::<Schedules>("/oncall").await?.schedules)
    }

    /// Someone covers a schedule for a while (admins).
    pub async fn add_override(&self, schedule: &str, body: &NewOverride) -> Result<OverrideView> {
        self.post(&format!("/oncall/{}/overrides", seg(schedule)), body)
            .await
    }

    /// Takes an override back (admins).
    pub async fn remove_override(&self, schedule: &str, id: &str) -> Result<OverrideView> {
        Ok(self
            .send(
                Retry::Safe,
                Method::DELETE,
                &format!("/oncall/{}/overrides/{}", seg(schedule), seg(id)),
                &|r| r,
            )
            .await?
            .1)
    }
}

/// `text` as one URL path segment (report ids are free text: `INC-123`, ...).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
