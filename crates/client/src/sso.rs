//! Single sign-on as a native app (RFC 8252): the person signs in at the IdP in
//! their own browser, never in the app, so the app never sees their password.
//!
//! 1. bind `127.0.0.1:0` (the redirect URI is `http://127.0.0.1:PORT/callback`);
//! 2. ask the broker where the IdP is and for a nonce (`/auth/sso/start`);
//! 3. build the authorization URL (code flow, PKCE S256, our own `state`, the
//!    broker's nonce) and hand it to the caller's opener (the desktop app opens the
//!    system browser; tests sign in over HTTP);
//! 4. accept exactly one callback (state checked; a small "signed in" page; 5
//!    minutes at most);
//! 5. exchange the code at the IdP's token endpoint (public client: the PKCE
//!    verifier, no secret) for the ID token;
//! 6. make an ed25519 key for the session and trade the ID token for the broker's
//!    session (`/auth/sso/session`).
//!
//! [`refresh`] renews the broker's tokens with a proof by that key; it never
//! involves the IdP.

use crate::{Client, ClientError};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signer, SigningKey};
use firedoor_core::sso::{
    refresh_proof_message, SsoRefreshRequest, SsoSessionRequest, SsoStart, SsoStartRequest,
    SsoTokens,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long the app waits for the browser to come back.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(300);
/// The callback path of the loopback redirect (registered at the IdP as
/// `http://127.0.0.1/callback`, any port).
pub const CALLBACK_PATH: &str = "/callback";

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The broker refused or could not be reached.
    #[error(transparent)]
    Broker(#[from] ClientError),
    /// The IdP refused, or answered what the app cannot use.
    #[error("the identity provider: {0}")]
    Idp(String),
    /// The browser could not be opened.
    #[error("could not open the browser: {0}")]
    Opener(String),
    /// Nothing came back to the app in time.
    #[error("the sign-in in the browser was not finished within 5 minutes")]
    Timeout,
    /// The loopback listener failed.
    #[error("the app's sign-in listener: {0}")]
    Listener(String),
}

/// A finished sign-in: the broker's tokens and the session key that signs refreshes.
pub struct SsoSignIn {
    pub tokens: SsoTokens,
    pub session_key: SigningKey,
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Client {
    /// `POST /auth/sso/start`.
    pub async fn sso_start(&self, redirect_uri: &str) -> crate::Result<SsoStart> {
        self.post(
            "/auth/sso/start",
            &SsoStartRequest {
                redirect_uri: redirect_uri.into(),
            },
        )
        .await
    }

    /// `POST /auth/sso/session`.
    pub async fn sso_session(&self, id_token: &str, session_key: &str) -> crate::Result<SsoTokens> {
        self.post(
            "/auth/sso/session",
            &SsoSessionRequest {
                id_token: id_token.into(),
                session_key: session_key.into(),
            },
        )
        .await
    }

    /// `POST /auth/sso/refresh` with a prepared proof (see [`refresh`]).
    pub async fn sso_refresh(&self, body: &SsoRefreshRequest) -> crate::Result<SsoTokens> {
        self.post("/auth/sso/refresh", body).await
    }
}

/// The proof a refresh carries: the session key's signature over the refresh
/// token's hash and `at` (the broker's time, as well as the app knows it).
pub fn refresh_request(
    refresh_token: &str,
    key: &SigningKey,
    at: DateTime<Utc>,
) -> SsoRefreshRequest {
    let at = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let msg = refresh_proof_message(&sha256_hex(refresh_token), &at);
    let sig = key.sign(msg.as_bytes());
    SsoRefreshRequest {
        refresh_token: refresh_token.into(),
        at,
        proof: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
    }
}

/// Renews a session's tokens (the old refresh token is then spent).
pub async fn refresh(
    client: &Client,
    refresh_token: &str,
    key: &SigningKey,
    broker_now: DateTime<Utc>,
) -> crate::Result<SsoTokens> {
    client
        .sso_refresh(&refresh_request(refresh_token, key, broker_now))
        .await
}

/// Signs in through the IdP (see the module). `opener` gets the authorization URL
/// and must show it to the person (the system browser) without waiting for them.
pub async fn sign_in<F>(client: &Client, opener: F) -> Result<SsoSignIn, SsoError>
where
    F: FnOnce(String) -> Result<(), String> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| SsoError::Listener(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| SsoError::Listener(e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    let start = client.sso_start(&redirect_uri).await?;
    let verifier = random_b64(32);
    let state = random_b64(16);
    let url = reqwest::Url::parse_with_params(
        &start.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", start.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", start.scope.as_str()),
            ("state", state.as_str()),
            ("nonce", start.nonce.as_str()),
            ("code_challenge", pkce_challenge(&verifier).as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .map_err(|e| SsoError::Idp(format!("authorization endpoint is not a URL: {e}")))?;
    opener(url.to_string()).map_err(SsoError::Opener)?;
    let code = tokio::time::timeout(
        CALLBACK_TIMEOUT,
        accept_callback(listener, &state, &start.issuer),
    )
    .await
    .map_err(|_| SsoError::Timeout)??;
    let id_token = exchange_code(&start, &code, &redirect_uri, &verifier).await?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let tokens = client.sso_session(&id_token, &public).await?;
    Ok(SsoSignIn {
        tokens,
        session_key: key,
    })
}

const PAGE_OK: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Firedoor</title></head>\
<body style=\"font-family:sans-serif;margin:4em\"><h1>Signed in to Firedoor</h1><p>You can close this tab and go back to the app.</p></body></html>";

fn page_failed(why: &str) -> String {
    let why: String = why
        .chars()
        .filter(|c| c.is_alphanumeric() || " .,:;'()_-".contains(*c))
        .take(300)
        .collect();
    format!("<!doctype html><html><head><meta charset=\"utf-8\"><title>Firedoor</title></head>\
<body style=\"font-family:sans-serif;margin:4em\"><h1>Sign-in failed</h1><p>{why}</p><p>Go back to the app and try again.</p></body></html>")
}

/// Waits for the browser to come back to the loopback redirect, answers it, and
/// returns the authorization code. Requests to other paths (a favicon) get a 404
/// and the wait goes on; the first request to the callback path ends it.
async fn accept_callback(
    listener: TcpListener,
    state: &str,
    issuer: &str,
) -> Result<String, SsoError> {
    loop {
        let (mut sock, _) = listener
            .accept()
            .await
            .map_err(|e| SsoError::Listener(e.to_string()))?;
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 2048];
        let head_read = tokio::time::timeout(Duration::from_secs(10), async {
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if !matches!(head_read, Ok(Ok(()))) {
            continue;
        }
        let head = String::from_utf8_lossy(&buf);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("")
            .to_string();
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            let _ = respond(
                &mut sock,
                "400 Bad Request",
                &page_failed("unreadable request"),
            )
            .await;
            continue;
        };
        if url.path() != CALLBACK_PATH {
            let _ = respond(&mut sock, "404 Not Found", "").await;
            continue;
        }
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let outcome = if q.get("state").map(String::as_str) != Some(state) {
            Err(SsoError::Idp(
                "the browser came back without this sign-in's state (another sign-in's answer?)"
                    .into(),
            ))
        } else if let Some(err) = q.get("error") {
            let desc = q.get("error_description").cloned().unwrap_or_default();
            Err(SsoError::Idp(format!("{err}: {desc}")))
        } else if q.get("iss").is_some_and(|i| i != issuer) {
            Err(SsoError::Idp("the answer came from another issuer".into()))
        } else {
            q.get("code")
                .filter(|c| !c.is_empty() && c.len() <= 2048)
                .cloned()
                .ok_or_else(|| SsoError::Idp("the browser came back without a code".into()))
        };
        match &outcome {
            Ok(_) => respond(&mut sock, "200 OK", PAGE_OK).await,
            Err(e) => respond(&mut sock, "400 Bad Request", &page_failed(&e.to_string())).await,
        }
        .map_err(|e| SsoError::Listener(e.to_string()))?;
        return outcome;
    }
}

async fn respond(
    sock: &mut tokio::net::TcpStream,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

/// Trades the code at the IdP's token endpoint (public client + PKCE verifier).
async fn exchange_code(
    start: &SsoStart,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<String, SsoError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SsoError::Idp(e.to_string()))?;
    let resp = http
        .post(&start.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", start.client_id.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .map_err(|e| SsoError::Idp(format!("token endpoint: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| SsoError::Idp(format!("token endpoint answered {status}: {e}")))?;
    if !status.is_success() {
        let err = body["error"].as_str().unwrap_or("error");
        let desc = body["error_description"].as_str().unwrap_or("");
        return Err(SsoError::Idp(format!(
            "token endpoint refused the code: {err} {desc}"
        )));
    }
    body["id_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SsoError::Idp("the token endpoint gave no id_token".into()))
}

/// Opens `url` in the person's browser with `xdg-open` (which honours `$BROWSER`);
/// a thread reaps it, and nobody waits for the browser to close.
pub fn open_in_browser(url: String) -> Result<(), String> {
    let mut child = std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("xdg-open: {e}"))?;
    std::thread::spawn(move || child.wait());
    Ok(())
}
