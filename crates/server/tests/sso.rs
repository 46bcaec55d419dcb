//! Single sign-on over real HTTP against a real OpenID Provider (`oidc-provider`
//! run by node, see `firedoor_testkit::oidc`): the person signs in on the IdP's own
//! forms, the client library does the RFC 8252 loopback flow with PKCE, the broker
//! verifies the ID token against the IdP's published keys. The attacks come first:
//! forged, foreign, replayed and unsigned tokens; copied refresh tokens; refreshes
//! without the session key; sessions outliving session_max, sign-out or a disabled
//! user.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use chrono::{Duration, Utc};
use common::{spawn_at, TestBroker};
use ed25519_dalek::SigningKey;
use firedoor_client::sso::{pkce_challenge, refresh_request, SsoSignIn};
use firedoor_core::sso::SsoTokens;
use firedoor_testkit::oidc::{login, OidcProvider, OidcUser, CLIENT_ID, OTHER_CLIENT_ID};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "payments-db-breakglass";

fn policy(issuer: &str) -> String {
    format!(
        "{}\n[sso]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nsession_max = \"1h\"\naccess_ttl = \"5m\"\nadmin_group = \"fd-admins\"\n[sso.groups]\n\"idp-sre\" = [\"oncall\"]\n\"idp-sec\" = [\"security\"]\n",
        firedoor_server::DEMO_POLICY
    )
}

fn people() -> Vec<OidcUser> {
    vec![
        OidcUser::new("sam", "sam-pw-1", &["idp-sre", "unrelated"]),
        OidcUser::new("ivy", "ivy-pw-2", &["idp-sec", "fd-admins"]),
        OidcUser::new("alice", "alice-pw", &["idp-sre"]),
    ]
}

/// A broker trusting this test binary's shared IdP.
async fn setup() -> (TestBroker, &'static OidcProvider) {
    let idp = OidcProvider::shared(&people());
    // The IdP stamps tokens with the real time: the broker's clock starts there.
    let tb = spawn_at(&policy(&idp.issuer()), None, Utc::now()).await;
    (tb, idp)
}

/// A broker with an IdP of its own (the test stops it, rotates its key or changes
/// its users).
async fn setup_own() -> (TestBroker, OidcProvider) {
    let idp = OidcProvider::start(&people());
    let tb = spawn_at(&policy(&idp.issuer()), None, Utc::now()).await;
    (tb, idp)
}

/// Signs `user` in through the client library, the IdP's forms filled over HTTP.
async fn sign_in(tb: &TestBroker, user: &str, password: &str) -> SsoSignIn {
    let client = tb.anonymous();
    let (user, password) = (user.to_string(), password.to_string());
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        firedoor_client::sso::sign_in(&client, move |url| {
            tokio::spawn(async move {
                if let Err(e) = login(&url, &user, &password).await {
                    panic!("IdP login failed: {e}");
                }
            });
            Ok(())
        }),
    )
    .await
    .expect("sign-in finished in time")
    .expect("signed in")
}

async fn call(
    tb: &TestBroker,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let http = reqwest::Client::new();
    let mut r = http.request(method.parse().unwrap(), tb.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
    if status == StatusCode::NO_CONTENT {
        return (status, Value::Null);
    }
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
    (status, v)
}

async fn fails(tb: &TestBroker, path: &str, body: Value, status: u16, code: &str) -> String {
    let (s, v) = call(tb, "POST", path, None, Some(body.clone())).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (status, Some(code)),
        "{path} {body}: {v}"
    );
    v["message"].as_str().unwrap().to_string()
}

async fn audit_count(tb: &TestBroker, action: &str) -> usize {
    firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == action)
        .count()
}

async fn me(tb: &TestBroker, token: &str) -> (StatusCode, Value) {
    call(tb, "GET", "/me", Some(token), None).await
}

/// An ID token from the IdP for `user`, issued to `client_id`, carrying a nonce the
/// broker issued (as the app would get it, but not yet handed to the broker).
async fn id_token(tb: &TestBroker, client_id: &str, user: &str, password: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let start = tb.anonymous().sso_start(&redirect).await.unwrap();
    let verifier = "v".repeat(50);
    let url = reqwest::Url::parse_with_params(
        &start.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect.as_str()),
            ("scope", start.scope.as_str()),
            ("state", "s1"),
            ("nonce", start.nonce.as_str()),
            ("code_challenge", pkce_challenge(&verifier).as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap()
    .to_string();
    let (user, password) = (user.to_string(), password.to_string());
    let browser = tokio::spawn(async move { login(&url, &user, &password).await });
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = sock.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
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
    let tok: Value = reqwest::Client::new()
        .post(&start.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", client_id),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tok["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {tok}"))
        .to_string()
}

fn session_key() -> (SigningKey, String) {
    let k = SigningKey::generate(&mut rand::rngs::OsRng);
    let p = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
    (k, p)
}

fn b64url(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value, String) {
    let p: Vec<&str> = token.split('.').collect();
    let d = |s: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap(),
        )
        .unwrap()
    };
    (d(p[0]), d(p[1]), p[2].to_string())
}

async fn refresh_with(tb: &TestBroker, refresh: &str, key: &SigningKey) -> (StatusCode, Value) {
    let at = tb.running.broker.now();
    let body = serde_json::to_value(refresh_request(refresh, key, at)).unwrap();
    call(tb, "POST", "/auth/sso/refresh", None, Some(body)).await
}

// ---------------------------------------------------------------- attacks

/// Attack: an ID token edited after the IdP signed it (here: made an admin).
#[tokio::test]
async fn a_tampered_id_token_is_refused() {
    let (tb, _idp) = setup().await;
    let token = id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await;
    let (h, mut c, sig) = parts(&token);
    c["groups"] = json!(["idp-sre", "fd-admins"]);
    let forged = format!("{}.{}.{sig}", b64url(&h), b64url(&c));
    let (_, key) = session_key();
    let m = fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": forged, "session_key": key }),
        401,
        "invalid_id_token",
    )
    .await;
    assert!(m.contains("signature"), "{m}");
    // The untouched token still works (the nonce was not used by the refusal).
    let (s, v) = call(
        &tb,
        "POST",
        "/auth/sso/session",
        None,
        Some(json!({ "id_token": token, "session_key": key })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["admin"], false);
}

/// Attack: a token the IdP really signed, but for another application.
#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let (tb, _idp) = setup().await;
    let token = id_token(&tb, OTHER_CLIENT_ID, "sam", "sam-pw-1").await;
    let (_, c, _) = parts(&token);
    assert_eq!(
        c["aud"], OTHER_CLIENT_ID,
        "the IdP issued it to the other app"
    );
    let (_, key) = session_key();
    let m = fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": token, "session_key": key }),
        401,
        "invalid_id_token",
    )
    .await;
    assert!(m.contains("aud"), "{m}");
    assert_eq!(audit_count(&tb, "sso_signed_in").await, 0);
}

/// Attack: `alg: none` (no signature), and HS256 "signed" with a public value.
#[tokio::test]
async fn unsigned_and_symmetric_id_tokens_are_refused() {
    let (tb, _idp) = setup().await;
    let token = id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await;
    let (h, c, _) = parts(&token);
    let (_, key) = session_key();
    let mut none = h.clone();
    none["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64url(&none), b64url(&c));
    fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": unsigned, "session_key": key }),
        401,
        "invalid_id_token",
    )
    .await;
    let mut hs = h.clone();
    hs["alg"] = json!("HS256");
    let signing_input = format!("{}.{}", b64url(&hs), b64url(&c));
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CLIENT_ID.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let hs_token = format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let m = fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": hs_token, "session_key": key }),
        401,
        "invalid_id_token",
    )
    .await;
    assert!(m.contains("HS256") || m.contains("accepted"), "{m}");
    assert_eq!(audit_count(&tb, "sso_signed_in").await, 0);
}

/// Attack: an ID token seen once (a log, a proxy) presented again.
#[tokio::test]
async fn a_replayed_id_token_is_refused() {
    let (tb, _idp) = setup().await;
    let token = id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await;
    let (_, key) = session_key();
    let (s, v) = call(
        &tb,
        "POST",
        "/auth/sso/session",
        None,
        Some(json!({ "id_token": token, "session_key": key })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, key2) = session_key();
    let m = fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": token, "session_key": key2 }),
        401,
        "invalid_id_token",
    )
    .await;
    assert!(m.contains("nonce"), "{m}");
    assert_eq!(audit_count(&tb, "sso_signed_in").await, 1);
}

/// Attack: a nonce kept past its 10 minutes.
#[tokio::test]
async fn an_id_token_with_an_expired_nonce_is_refused() {
    let (tb, _idp) = setup().await;
    let token = id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await;
    tb.advance(Duration::minutes(11));
    let (_, key) = session_key();
    let m = fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": token, "session_key": key }),
        401,
        "invalid_id_token",
    )
    .await;
    assert!(m.contains("nonce"), "{m}");
}

/// Attack: a refresh token copied off the laptop, used by the thief and by the
/// person: whichever comes second, the session ends for both.
#[tokio::test]
async fn a_used_refresh_token_presented_again_revokes_the_session() {
    let (tb, _idp) = setup().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let second: SsoTokens = serde_json::from_value(v).unwrap();
    assert_eq!(me(&tb, &second.access_token).await.0, StatusCode::OK);
    // The first refresh token again:
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("session_expired")),
        "{v}"
    );
    // Everything of the session is dead: both access tokens and the new refresh token.
    assert_eq!(
        me(&tb, &s.tokens.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&tb, &second.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = refresh_with(&tb, &second.refresh_token, &s.session_key).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("session_expired")),
        "{v}"
    );
    assert_eq!(audit_count(&tb, "sso_session_revoked").await, 1);
}

/// Attack: the refresh token without the session key (or a proof for another
/// token, or an old proof).
#[tokio::test]
async fn a_refresh_without_a_valid_proof_is_refused() {
    let (tb, _idp) = setup().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let (thief, _) = session_key();
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &thief).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    // A proof made 10 minutes ago (replayed from a capture).
    let old = refresh_request(
        &s.tokens.refresh_token,
        &s.session_key,
        tb.running.broker.now() - Duration::minutes(10),
    );
    let (st, v) = call(
        &tb,
        "POST",
        "/auth/sso/refresh",
        None,
        Some(serde_json::to_value(old).unwrap()),
    )
    .await;
    assert_eq!(st.as_u16(), 401, "{v}");
    // The proof's time edited: the signature no longer matches.
    let mut edited = refresh_request(
        &s.tokens.refresh_token,
        &s.session_key,
        tb.running.broker.now(),
    );
    edited.at = (tb.running.broker.now() + Duration::seconds(1)).to_rfc3339();
    let (st, v) = call(
        &tb,
        "POST",
        "/auth/sso/refresh",
        None,
        Some(serde_json::to_value(edited).unwrap()),
    )
    .await;
    assert_eq!(st.as_u16(), 401, "{v}");
    // None of that spent the refresh token.
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A session does not outlive session_max, however often it is refreshed.
#[tokio::test]
async fn refresh_after_session_max_is_refused_with_session_expired() {
    let (tb, _idp) = setup().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let mut refresh = s.tokens.refresh_token.clone();
    for _ in 0..3 {
        tb.advance(Duration::minutes(15));
        let (st, v) = refresh_with(&tb, &refresh, &s.session_key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let t: SsoTokens = serde_json::from_value(v).unwrap();
        assert!(t.access_expires_at <= t.session_expires_at);
        assert_eq!(
            t.session_expires_at, s.tokens.session_expires_at,
            "refresh never extends the session"
        );
        refresh = t.refresh_token;
    }
    tb.advance(Duration::minutes(16));
    let (st, v) = refresh_with(&tb, &refresh, &s.session_key).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("session_expired")),
        "{v}"
    );
}

/// People signed in keep working while the IdP is down (refresh never calls it).
#[tokio::test]
async fn refresh_works_while_the_idp_is_stopped() {
    let (tb, mut idp) = setup_own().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    idp.stop();
    tb.advance(Duration::minutes(4));
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t: SsoTokens = serde_json::from_value(v).unwrap();
    tb.advance(Duration::minutes(2));
    assert_eq!(
        me(&tb, &s.tokens.access_token).await.0,
        StatusCode::UNAUTHORIZED,
        "the first access token ended"
    );
    assert_eq!(me(&tb, &t.access_token).await.0, StatusCode::OK);
    // A new sign-in needs the IdP: once the cached discovery document is old,
    // a clear error, not a 500.
    tb.advance(Duration::minutes(61));
    let r = reqwest::Client::new()
        .post(tb.url("/auth/sso/start"))
        .json(&json!({ "redirect_uri": "http://127.0.0.1:5000/callback" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "idp_unavailable", "{v}");
}

#[tokio::test]
async fn sign_out_and_disabling_the_user_revoke_the_session() {
    let (tb, _idp) = setup().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let (st, _) = call(
        &tb,
        "DELETE",
        "/me/token",
        Some(&s.tokens.access_token),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("session_expired")),
        "{v}"
    );

    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let (st, v) = refresh_with(&tb, &s.tokens.refresh_token, &s.session_key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t: SsoTokens = serde_json::from_value(v).unwrap();
    let (st, v) = call(
        &tb,
        "POST",
        "/users/sam/disable",
        Some(tb.token("carol")),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(me(&tb, &t.access_token).await.0, StatusCode::UNAUTHORIZED);
    let (st, v) = refresh_with(&tb, &t.refresh_token, &s.session_key).await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (401, Some("session_expired")),
        "{v}"
    );
    // And a disabled user cannot sign in again through the IdP.
    let token = id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await;
    let (_, key) = session_key();
    fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": token, "session_key": key }),
        403,
        "forbidden",
    )
    .await;
    assert!(audit_count(&tb, "sso_session_revoked").await >= 2);
}

#[tokio::test]
async fn a_wrong_password_is_refused_by_the_idp() {
    let (tb, _idp) = setup().await;
    let start = tb
        .anonymous()
        .sso_start("http://127.0.0.1:5000/callback")
        .await
        .unwrap();
    let url = reqwest::Url::parse_with_params(
        &start.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", "http://127.0.0.1:5000/callback"),
            ("scope", start.scope.as_str()),
            ("state", "s"),
            ("nonce", start.nonce.as_str()),
            ("code_challenge", pkce_challenge(&"x".repeat(50)).as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let e = login(url.as_str(), "sam", "not-sams-password")
        .await
        .unwrap_err();
    assert!(e.contains("refused"), "{e}");
}

/// Bad input to every endpoint: 4xx with a JSON error, never a 500.
#[tokio::test]
async fn bad_input_gives_4xx_json() {
    let (tb, _idp) = setup().await;
    for uri in [
        "http://localhost:5000/callback",
        "https://127.0.0.1:5000/callback",
        "http://127.0.0.1/callback",
        "http://evil.example/callback",
        "",
    ] {
        fails(
            &tb,
            "/auth/sso/start",
            json!({ "redirect_uri": uri }),
            400,
            "invalid_request",
        )
        .await;
    }
    fails(
        &tb,
        "/auth/sso/start",
        json!({ "redirect": "x" }),
        400,
        "invalid_request",
    )
    .await;
    let (_, key) = session_key();
    for bad in ["", "a.b.c", "not a token", &"x".repeat(20_000)] {
        fails(
            &tb,
            "/auth/sso/session",
            json!({ "id_token": bad, "session_key": key }),
            401,
            "invalid_id_token",
        )
        .await;
    }
    fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": "a.b.c", "session_key": "short" }),
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": 5 }),
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "/auth/sso/refresh",
        json!({ "refresh_token": "fdr_x", "at": "yesterday", "proof": "x" }),
        400,
        "invalid_request",
    )
    .await;
    fails(
        &tb,
        "/auth/sso/refresh",
        json!({ "refresh_token": "nope", "at": Utc::now().to_rfc3339(), "proof": "x" }),
        401,
        "unauthenticated",
    )
    .await;
    fails(&tb, "/auth/sso/refresh", json!({ "refresh_token": "fdr_unknown", "at": tb.running.broker.now().to_rfc3339(), "proof": "AAAA" }), 401, "unauthenticated").await;
    // An empty body, and text that is not JSON.
    let (s, v) = call(&tb, "POST", "/auth/sso/refresh", None, None).await;
    assert_eq!(
        (s.as_u16(), v["code"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let r = reqwest::Client::new()
        .post(tb.url("/auth/sso/session"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_json");
}

#[tokio::test]
async fn without_sso_configured_the_endpoints_say_so() {
    let tb = spawn_at(firedoor_server::DEMO_POLICY, None, Utc::now()).await;
    fails(
        &tb,
        "/auth/sso/start",
        json!({ "redirect_uri": "http://127.0.0.1:5000/callback" }),
        404,
        "sso_not_configured",
    )
    .await;
    let (_, key) = session_key();
    fails(
        &tb,
        "/auth/sso/session",
        json!({ "id_token": "a.b.c", "session_key": key }),
        404,
        "sso_not_configured",
    )
    .await;
}

// ---------------------------------------------------------------- sign-in

/// Signing in through the real IdP makes the user from the claims: groups mapped,
/// unmapped ones ignored, admin only through admin_group; the access token works
/// like any token; sign-in is audited.
#[tokio::test]
async fn sign_in_through_the_idp_maps_groups_from_claims() {
    let (tb, _idp) = setup().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    assert_eq!(s.tokens.user, "sam");
    assert_eq!(s.tokens.groups, vec!["oncall"]);
    assert!(!s.tokens.admin);
    assert!(s.tokens.access_token.starts_with("fdt_"));
    assert!(s.tokens.refresh_token.starts_with("fdr_"));
    let now = tb.running.broker.now();
    let micros = |t: chrono::DateTime<Utc>| t.timestamp_micros();
    assert_eq!(
        micros(s.tokens.session_expires_at),
        micros(now + Duration::hours(1))
    );
    assert_eq!(
        micros(s.tokens.access_expires_at),
        micros(now + Duration::minutes(5))
    );
    let (st, v) = me(&tb, &s.tokens.access_token).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["groups"], json!(["oncall"]));
    let (_, bundles) = call(&tb, "GET", "/bundles", Some(&s.tokens.access_token), None).await;
    assert!(bundles.to_string().contains("prod-db-read"), "{bundles}");

    let ivy = sign_in(&tb, "ivy", "ivy-pw-2").await;
    assert_eq!(ivy.tokens.groups, vec!["security"]);
    assert!(ivy.tokens.admin, "fd-admins is the admin_group");
    // An existing user (added by an admin) signs in too: their groups follow the IdP.
    let alice = sign_in(&tb, "alice", "alice-pw").await;
    assert_eq!(alice.tokens.groups, vec!["oncall"]);
    assert_eq!(audit_count(&tb, "sso_signed_in").await, 3);
    assert_eq!(
        audit_count(&tb, "user_added").await,
        5 + 2,
        "the five of the harness, then sam and ivy"
    );
    // No secret in the audit log.
    let all = firedoor_server::audit::records(&tb.running.broker.store, 0, 100_000)
        .await
        .unwrap();
    let text = serde_json::to_string(&all).unwrap();
    for secret in [&s.tokens.access_token, &s.tokens.refresh_token] {
        assert!(!text.contains(secret.as_str()));
    }
}

/// The IdP rotates its signing key: the broker finds the new key (refetching its
/// JWKS for the unknown kid) and sign-in goes on working.
#[tokio::test]
async fn sign_in_works_after_the_idp_rotates_its_key() {
    let (tb, mut idp) = setup_own().await;
    let first_kid = idp.kid();
    sign_in(&tb, "sam", "sam-pw-1").await;
    idp.rotate_key();
    assert_ne!(idp.kid(), first_kid);
    // The JWKS is refetched for an unknown kid at most every 10 s (broker time).
    tb.advance(Duration::seconds(11));
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    assert_eq!(me(&tb, &s.tokens.access_token).await.0, StatusCode::OK);
    let (h, _, _) = parts(&id_token(&tb, CLIENT_ID, "sam", "sam-pw-1").await);
    assert_eq!(h["kid"], idp.kid());
}

/// Someone leaves a group at the IdP: at their next sign-in they lose what it gave,
/// through the same path as an admin's change: a bundle is no longer requestable
/// and the break-glass envelope they held only through it is withdrawn (and the
/// secret rotated).
#[tokio::test]
async fn re_sign_in_with_fewer_groups_loses_eligibility_and_envelopes() {
    let (tb, mut idp) = setup_own().await;
    let s = sign_in(&tb, "sam", "sam-pw-1").await;
    let token = s.tokens.access_token.clone();
    let identity = age::x25519::Identity::generate();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (st, dev) = call(
        &tb,
        "POST",
        "/devices",
        Some(&token),
        Some(json!({
            "name": "sam-laptop",
            "recipient": identity.to_public().to_string(),
            "signing_key": firedoor_core::breakglass::encode_public_key(&key.verifying_key()),
        })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{dev}");
    let dev_id = dev["id"].as_str().unwrap().to_string();
    let (st, v) = call(
        &tb,
        "PUT",
        &format!("/secrets/{SECRET}"),
        Some(tb.token("carol")),
        Some(json!({ "value": "correct-horse-battery-staple-42" })),
    )
    .await;
    assert!(st.is_success(), "{v}");
    let (_, env) = call(
        &tb,
        "GET",
        &format!("/devices/{dev_id}/envelopes"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(env["envelopes"].as_array().unwrap().len(), 1, "{env}");

    let mut fewer = people();
    fewer[0].groups = vec!["unrelated".into()];
    idp.set_users(&fewer);
    let again = sign_in(&tb, "sam", "sam-pw-1").await;
    assert!(again.tokens.groups.is_empty());
    let (st, v) = call(
        &tb,
        "POST",
        "/requests",
        Some(&again.tokens.access_token),
        Some(json!({ "bundle": "prod-db-read", "justification": "checking a report" })),
    )
    .await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (403, Some("not_eligible")),
        "{v}"
    );
    let (_, env) = call(
        &tb,
        "GET",
        &format!("/devices/{dev_id}/envelopes"),
        Some(&again.tokens.access_token),
        None,
    )
    .await;
    assert!(env["envelopes"].as_array().unwrap().is_empty(), "{env}");
    assert_eq!(audit_count(&tb, "user_groups_changed").await, 1);
    assert_eq!(audit_count(&tb, "envelopes_withdrawn").await, 1);
}
