//! Single sign-on latency (figures, not a timed test):
//! `cargo bench -p firedoor-server --bench sso`.
//!
//! A broker on SQLite (in process, real HTTP on 127.0.0.1) trusting a real OpenID
//! Provider (`oidc-provider` under node, see `firedoor_testkit::oidc`):
//!
//! 1. The whole sign-in as the app does it, start -> session: `/auth/sso/start`,
//!    the IdP's authorization endpoint, its login and consent forms (submitted over
//!    HTTP as a browser would), the loopback callback, the code exchange, and
//!    `/auth/sso/session` (ID token verified against the cached JWKS, user updated,
//!    session made). p50/p99 of N (default 30, `FIREDOOR_BENCH_SIGNINS`).
//! 2. `/auth/sso/session` alone, the broker's part: an ID token (fresh nonce each)
//!    verified and exchanged.
//! 3. `/auth/sso/refresh`: the proof checked, the refresh token rotated, an access
//!    token issued (never calls the IdP). p50/p99 of M (default 200,
//!    `FIREDOOR_BENCH_REFRESHES`).
#![allow(clippy::unwrap_used)]

use firedoor_client::Client;
use firedoor_server::Config;
use firedoor_testkit::oidc::{login, OidcProvider, OidcUser, CLIENT_ID};
use std::time::{Duration, Instant};

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        v.len(),
        ms(pct(&v, 0.5)),
        ms(pct(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let idp = OidcProvider::start(&[OidcUser::new("sam", "sam-pw", &["idp-sre"])]);
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{}\n[sso]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n[sso.groups]\n\"idp-sre\" = [\"oncall\"]\n",
            firedoor_server::DEMO_POLICY,
            idp.issuer()
        );
        let policy = firedoor_core::policy::parse_policy("sso", &text).unwrap();
        let b = firedoor_server::start(Config::new(dir.path(), policy))
            .await
            .unwrap();
        let client = Client::new(&b.url(), None).unwrap();
        let opener = |url: String| {
            tokio::spawn(async move { login(&url, "sam", "sam-pw").await.unwrap() });
            Ok(())
        };
        // Warm up: the broker fetches the discovery document and JWKS once.
        let mut last = firedoor_client::sso::sign_in(&client, opener).await.unwrap();

        let n = env_n("FIREDOOR_BENCH_SIGNINS", 30);
        let mut full = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            last = firedoor_client::sso::sign_in(&client, opener).await.unwrap();
            full.push(t.elapsed());
        }
        report("sign-in start -> session (IdP forms, code exchange, broker)", full);

        // The broker's part alone: ID tokens obtained first, then exchanged.
        let mut tokens = Vec::new();
        for _ in 0..n {
            tokens.push(id_token(&client).await);
        }
        let mut session = Vec::new();
        for t in tokens {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let public = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key.verifying_key().as_bytes(),
            );
            let s = Instant::now();
            client.sso_session(&t, &public).await.unwrap();
            session.push(s.elapsed());
        }
        report("POST /auth/sso/session (verify ID token, session)", session);

        let m = env_n("FIREDOOR_BENCH_REFRESHES", 200);
        let mut refresh = last.tokens.refresh_token.clone();
        let mut times = Vec::new();
        for _ in 0..m {
            let t = Instant::now();
            let out = firedoor_client::sso::refresh(&client, &refresh, &last.session_key, b.broker.now())
                .await
                .unwrap();
            times.push(t.elapsed());
            refresh = out.refresh_token;
        }
        report("POST /auth/sso/refresh (proof, rotation, access token)", times);
        drop(idp);
    });
}

/// An ID token with a broker nonce, through the IdP (as the app gets it).
async fn id_token(client: &Client) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr().unwrap().port()
    );
    let start = client.sso_start(&redirect).await.unwrap();
    let verifier = "v".repeat(50);
    let url = reqwest::Url::parse_with_params(
        &start.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect.as_str()),
            ("scope", start.scope.as_str()),
            ("state", "s"),
            ("nonce", start.nonce.as_str()),
            (
                "code_challenge",
                firedoor_client::sso::pkce_challenge(&verifier).as_str(),
            ),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap()
    .to_string();
    let browser = tokio::spawn(async move { login(&url, "sam", "sam-pw").await });
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = sock.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    drop(sock);
    browser.await.unwrap().unwrap();
    let target = head.lines().next().unwrap().split(' ').nth(1).unwrap();
    let cb = reqwest::Url::parse(&format!("http://127.0.0.1{target}")).unwrap();
    let code = cb
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let tok: serde_json::Value = reqwest::Client::new()
        .post(&start.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", CLIENT_ID),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tok["id_token"].as_str().unwrap().to_string()
}
