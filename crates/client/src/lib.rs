//! Firedoor's client library: the typed HTTP client for the broker (this module),
//! and everything the desktop app does that is not UI: the offline cache
//! ([`cache`]), the console engine with sync, live events and the outbox
//! ([`console`]), offline break glass on this device ([`breakglass`], keys in
//! [`device`]), and the OS keyring store for the API token and the wrapped device
//! keys ([`secrets`]).

mod audit_head;
pub mod breakglass;
pub mod cache;
pub mod console;
pub mod device;
pub mod secrets;
pub mod trust;

use firedoor_core::api::{
    ApproveBody, BundleView, CreateRequest, Credentials, DenyBody, ErrorBody, EventView,
    ExtendBody, ExtendResult, GrantView, Health, Me, RequestView,
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

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
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
        Self::build(base_url, token, None)
    }

    /// As [`Client::new`], trusting an extra root certificate (PEM) for TLS.
    pub fn with_root_pem(base_url: &str, token: Option<&str>, pem: &[u8]) -> Result<Client> {
        Self::build(base_url, token, Some(pem))
    }

    fn build(base_url: &str, token: Option<&str>, pem: Option<&[u8]>) -> Result<Client> {
        let base = base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Decode(format!("'{base}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Decode(format!(
                "'{base}' must start with http:// or https://"
            )));
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
            base,
            token: token.map(str::to_string),
        })
    }

    /// The same broker as someone else.
    pub fn as_user(&self, token: &str) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.to_string()),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r.timeout(Duration::from_secs(30))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        r: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, T)> {
        let resp = r.send().await.map_err(net)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(net)?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map(|v| (status, v))
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// For answers without a body (204).
    async fn send_no_body(&self, r: reqwest::RequestBuilder) -> Result<()> {
        let resp = r.send().await.map_err(net)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = resp.bytes().await.map_err(net)?;
        Err(api_error(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.send(self.req(Method::GET, path)).await?.1)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Ok(self.send(self.req(Method::POST, path).json(body)).await?.1)
    }

    async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Ok(self.send(self.req(Method::PUT, path).json(body)).await?.1)
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
        let mut r = self.req(Method::POST, "/requests").json(body);
        if let Some(k) = idempotency_key {
            r = r.header("Idempotency-Key", k);
        }
        let (status, v) = self.send(r).await?;
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
        self.send(
            self.req(Method::GET, "/requests")
                .query(&[("scope", scope)]),
        )
        .await
        .map(|x| x.1)
    }
    pub async fn request(&self, id: &RequestId) -> Result<RequestView> {
        self.get(&format!("/requests/{id}")).await
    }
    pub async fn approve(&self, id: &RequestId, comment: Option<&str>) -> Result<RequestView> {
        self.post(
            &format!("/requests/{id}/approve"),
            &ApproveBody {
                comment: comment.map(str::to_string),
            },
        )
        .await
    }
    pub async fn deny(&self, id: &RequestId, reason: Option<&str>) -> Result<RequestView> {
        self.post(
            &format!("/requests/{id}/deny"),
            &DenyBody {
                reason: reason.map(str::to_string),
            },
        )
        .await
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
        self.send(self.req(Method::GET, "/grants").query(&q))
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
        self.send(
            self.req(Method::GET, "/audit")
                .query(&[("after", after), ("limit", limit)]),
        )
        .await
        .map(|x| x.1)
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
    pub async fn broker_identity(&self) -> Result<BrokerIdentity> {
        self.get("/broker").await
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
        self.send_no_body(self.req(Method::DELETE, &format!("/devices/{}", seg(device_id))))
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
        self.post(&format!("/devices/{}/unlocks", seg(device_id)), body)
            .await
    }

    /// Online break glass: the broker releases the secret (and alerts). A broker that
    /// has not answered within [`ONLINE_UNLOCK_TIMEOUT`] counts as unreachable: in an
    /// emergency the app must fall back to the sealed copy quickly.
    pub async fn unlock_secret(&self, name: &str, body: &OnlineUnlock) -> Result<UnlockedSecret> {
        let r = self
            .req(Method::POST, &format!("/secrets/{}/unlock", seg(name)))
            .json(body)
            .timeout(ONLINE_UNLOCK_TIMEOUT);
        Ok(self.send(r).await?.1)
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
        self.put(
            &format!("/secrets/{}", seg(name)),
            &PutSecret {
                value: value.to_string(),
            },
        )
        .await
    }

    /// The caller's live events from after `last_event_id`, as they arrive. The
    /// stream ends when the connection does; reconnect with the last id seen.
    pub async fn events(&self, last_event_id: Option<i64>) -> Result<EventStream> {
        let mut r = self
            .req(Method::GET, "/events")
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id.to_string());
        }
        let resp = r.send().await.map_err(net)?;
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
            code: "http_error".into(),
            message: format!("HTTP {status} without an error body"),
        },
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
        self.send_no_body(self.req(Method::DELETE, "/me/token"))
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
        self.put(
            &format!("/users/{}/groups", seg(name)),
            &serde_json::json!({ "groups": groups }),
        )
        .await
    }
}
