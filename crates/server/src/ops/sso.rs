//! Single sign-on through an OpenID Provider (see [`firedoor_core::sso`] for the
//! rules). The desktop app does the authorization code flow with PKCE itself (a
//! public native client with a loopback redirect) and hands the broker the ID token;
//! the broker checks it against the IdP's published keys, makes or updates the user
//! from its claims, and starts a session of its own: a short access token (an
//! ordinary `fdt_` token) and a one-time refresh token bound to a key the client
//! made. Refreshing never asks the IdP, so people signed in keep working while the
//! IdP is down, until `session_max`.

use super::Uow;
use crate::audit::Actor;
use crate::auth::{hash_token, new_token};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::service::Broker;
use crate::store::sso::SessionRow;
use crate::store::Ts;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use firedoor_core::audit::AuditEvent;
use firedoor_core::policy::Principal;
use firedoor_core::sso::{
    check_loopback_redirect, refresh_proof_message, SsoConfig, SsoStart, SsoTokens,
    ID_TOKEN_LEEWAY_SECS, NONCE_TTL_SECS, REFRESH_PREFIX, REFRESH_SKEW_SECS, SCOPE,
};
use firedoor_core::{ErrorCode, TokenId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// The IdP's discovery document is read again after this long.
pub const DISCOVERY_TTL_SECS: i64 = 3600;
/// The JWKS is fetched again for an unknown `kid` at most this often (a token with
/// a made-up `kid` cannot make the broker hammer the IdP).
pub const JWKS_REFETCH_MIN_SECS: i64 = 10;
/// The longest ID token read.
const MAX_ID_TOKEN_LEN: usize = 16 * 1024;

/// What the broker caches of the IdP: its discovery document and keys, fetched
/// with the broker's clock (so tests move time, never sleep).
#[derive(Default)]
pub struct SsoState {
    http: std::sync::OnceLock<reqwest::Client>,
    discovery: Mutex<Option<(Discovery, DateTime<Utc>)>>,
    jwks: Mutex<Option<(JwkSet, DateTime<Utc>)>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

fn not_configured() -> Error {
    Error::rule(
        ErrorCode::SsoNotConfigured,
        "single sign-on is not configured on this broker (no [sso] section in its policy); sign in with a token from an admin",
    )
}

fn bad_token(message: impl Into<String>) -> Error {
    Error::rule(ErrorCode::InvalidIdToken, message)
}

fn idp_down(what: &str, e: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "sso: {what}");
    Error::rule(
        ErrorCode::IdpUnavailable,
        format!("the identity provider could not be reached ({what}); try again, or sign in with a token from an admin"),
    )
}

/// A time as the store keeps it (microseconds), so what an answer says is what a
/// later answer says.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An endpoint the IdP names must be on the issuer's scheme rules: https, or http
/// when the issuer itself is on this machine.
fn endpoint_ok(cfg: &SsoConfig, url: &str) -> bool {
    url.starts_with("https://") || (cfg.issuer.starts_with("http://") && url.starts_with("http://"))
}

impl SsoState {
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T> {
        let resp = self
            .http()
            .get(url)
            .send()
            .await
            .map_err(|e| idp_down(what, e))?;
        if !resp.status().is_success() {
            return Err(idp_down(what, format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| idp_down(what, e))?;
        if bytes.len() > 512 * 1024 {
            return Err(idp_down(what, "answer too large"));
        }
        serde_json::from_slice(&bytes).map_err(|e| idp_down(what, e))
    }

    async fn discovery(&self, cfg: &SsoConfig, now: DateTime<Utc>) -> Result<Discovery> {
        let mut cached = self.discovery.lock().await;
        if let Some((d, at)) = cached.as_ref() {
            if now - *at < Duration::seconds(DISCOVERY_TTL_SECS) && now >= *at {
                return Ok(d.clone());
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        let d: Discovery = self.get_json(&url, "discovery document").await?;
        if d.issuer != cfg.issuer {
            return Err(idp_down(
                "discovery document",
                format!(
                    "it names issuer '{}', the policy '{}'",
                    d.issuer, cfg.issuer
                ),
            ));
        }
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            if !endpoint_ok(cfg, u) {
                return Err(idp_down(
                    "discovery document",
                    format!("endpoint {u} is not https"),
                ));
            }
        }
        *cached = Some((d.clone(), now));
        Ok(d)
    }

    /// The IdP's key `kid`: from the cached JWKS, else fetched again (at most every
    /// [`JWKS_REFETCH_MIN_SECS`]), so a key rotated in at the IdP is found.
    async fn key(
        &self,
        cfg: &SsoConfig,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>> {
        let mut cached = self.jwks.lock().await;
        if let Some((set, at)) = cached.as_ref() {
            if let Some(k) = set.find(kid) {
                return Ok(Some(k.clone()));
            }
            if now - *at < Duration::seconds(JWKS_REFETCH_MIN_SECS) && now >= *at {
                return Ok(None);
            }
        }
        let d = self.discovery(cfg, now).await?;
        let set: JwkSet = self.get_json(&d.jwks_uri, "signing keys (JWKS)").await?;
        let found = set.find(kid).cloned();
        *cached = Some((set, now));
        Ok(found)
    }
}

/// What a verified ID token said.
struct Verified {
    claims: Map<String, Value>,
    nonce: String,
}

fn num_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| bad_token(format!("the ID token's '{name}' is not a number"))),
    }
}

impl Broker {
    fn sso_config(&self) -> Result<&SsoConfig> {
        self.policy.sso.as_ref().ok_or_else(not_configured)
    }

    /// `POST /auth/sso/start`: where to send the person, and a fresh nonce.
    pub async fn sso_start(&self, redirect_uri: &str) -> Result<SsoStart> {
        let cfg = self.sso_config()?;
        check_loopback_redirect(redirect_uri)?;
        let now = self.now();
        let d = self.sso.discovery(cfg, now).await?;
        let nonce = random_b64(32);
        // A nonce is not a change anyone makes (the sign-in that uses it is
        // audited): it is stored without a record, so anonymous callers cannot
        // fill the audit log.
        let mut tx = self.write_tx().await?;
        tx.sso()
            .insert_nonce(
                &sha256_hex(&nonce),
                Ts(now),
                Ts(now + Duration::seconds(NONCE_TTL_SECS)),
            )
            .await?;
        tx.commit().await?;
        Ok(SsoStart {
            issuer: cfg.issuer.clone(),
            authorization_endpoint: d.authorization_endpoint,
            token_endpoint: d.token_endpoint,
            client_id: cfg.client_id.clone(),
            scope: SCOPE.into(),
            nonce,
        })
    }

    /// Checks an ID token: an asymmetric signature by a key the IdP publishes, its
    /// issuer, audience (and `azp`), and times against the broker's clock. The
    /// nonce is checked (and used) by the caller, in its unit of work.
    async fn verify_id_token(
        &self,
        cfg: &SsoConfig,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified> {
        if token.is_empty() || token.len() > MAX_ID_TOKEN_LEN {
            return Err(bad_token("the ID token is empty or too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            bad_token("the ID token is not a signed JWT with an algorithm this broker accepts (RS256, ES256, EdDSA; never none or HS*)")
        })?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(bad_token(format!(
                "the ID token is signed with {:?}; only RS256, ES256 and EdDSA are accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or_else(|| bad_token("the ID token names no key (kid)"))?;
        let jwk = self.sso.key(cfg, kid, now).await?.ok_or_else(|| {
            bad_token("the ID token is signed with a key the IdP does not publish")
        })?;
        if let Some(alg) = jwk.common.key_algorithm {
            if alg.to_string() != format!("{:?}", header.alg) {
                return Err(bad_token("the ID token's algorithm is not its key's"));
            }
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| bad_token("the IdP's key for this ID token is not usable"))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&cfg.issuer]);
        v.set_audience(&[&cfg.client_id]);
        // Times are checked below against the broker's clock, not the system's.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        v.set_required_spec_claims(&["iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => bad_token("the ID token's signature does not verify"),
                K::InvalidIssuer => bad_token("the ID token is from another issuer"),
                K::InvalidAudience => bad_token("the ID token is for another application (aud)"),
                K::InvalidAlgorithm => bad_token("the ID token's algorithm is not accepted"),
                K::MissingRequiredClaim(c) => bad_token(format!("the ID token has no '{c}'")),
                _ => bad_token("the ID token could not be read"),
            }
        })?;
        let claims = data.claims;
        let aud_count = match claims.get("aud") {
            Some(Value::Array(a)) => a.len(),
            _ => 1,
        };
        match claims.get("azp").and_then(|v| v.as_str()) {
            Some(azp) if azp != cfg.client_id => {
                return Err(bad_token(
                    "the ID token was issued to another application (azp)",
                ))
            }
            None if aud_count > 1 => {
                return Err(bad_token("the ID token has several audiences and no azp"))
            }
            _ => {}
        }
        let t = now.timestamp();
        let leeway = ID_TOKEN_LEEWAY_SECS;
        let exp = num_claim(&claims, "exp")?.ok_or_else(|| bad_token("the ID token has no exp"))?;
        if t > exp + leeway {
            return Err(bad_token("the ID token has expired"));
        }
        if let Some(nbf) = num_claim(&claims, "nbf")? {
            if nbf > t + leeway {
                return Err(bad_token("the ID token is not valid yet (nbf)"));
            }
        }
        let iat = num_claim(&claims, "iat")?.ok_or_else(|| bad_token("the ID token has no iat"))?;
        if iat > t + leeway {
            return Err(bad_token("the ID token was issued in the future (iat)"));
        }
        let nonce = claims
            .get("nonce")
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty() && n.len() <= 200)
            .ok_or_else(|| bad_token("the ID token has no nonce"))?
            .to_string();
        Ok(Verified { claims, nonce })
    }

    /// `POST /auth/sso/session`: signs in with an ID token. Makes the user if new;
    /// an existing user's groups (and admin flag, when `admin_group` is set) follow
    /// the IdP's; a disabled user is refused.
    pub async fn sso_session(&self, id_token: &str, session_key: &str) -> Result<SsoTokens> {
        let cfg = self.sso_config()?;
        let key = parse_session_key(session_key)?;
        let now = self.now();
        let verified = self.verify_id_token(cfg, id_token, now).await?;
        let id = cfg.identity(&verified.claims)?;

        let mut uow = self.uow_at(now).await?;
        if !uow
            .sso()
            .consume_nonce(&sha256_hex(&verified.nonce), Ts(now))
            .await?
        {
            return Err(bad_token(
                "the ID token's nonce was not issued by this broker, has expired or was already used: start the sign-in again",
            ));
        }
        let actor = Actor::User(Principal {
            name: id.name.clone(),
            groups: id.groups.clone(),
            admin: id.admin,
            oncall: Vec::new(),
        });
        let mut groups_changed = false;
        let (created, admin) = match uow.users().disabled_at(&id.name).await? {
            Some(Some(_)) => {
                return Err(Error::rule(
                    ErrorCode::Forbidden,
                    format!("user '{}' is disabled in Firedoor; ask an admin", id.name),
                ))
            }
            None => {
                let groups_json =
                    serde_json::to_string(&id.groups).map_err(|e| Error::Corrupt(e.to_string()))?;
                uow.users()
                    .insert(&id.name, &groups_json, id.admin, Ts(now))
                    .await?;
                uow.record(
                    &actor,
                    &id.name,
                    AuditEvent::UserAdded {
                        groups: id.groups.clone(),
                        admin: id.admin,
                    },
                );
                (true, id.admin)
            }
            Some(None) => {
                let (_, groups_json, admin) = uow
                    .users()
                    .get(&id.name)
                    .await?
                    .ok_or_else(|| Error::not_found("user"))?;
                let before: Vec<String> = serde_json::from_str(&groups_json)
                    .map_err(|e| Error::Corrupt(format!("groups of user {}: {e}", id.name)))?;
                if before != id.groups {
                    self.set_groups_in(&mut uow, &actor, &id.name, &id.groups)
                        .await?;
                    groups_changed = true;
                }
                let mut admin = admin != 0;
                if cfg.admin_group.is_some() && admin != id.admin {
                    uow.users().set_admin(&id.name, id.admin).await?;
                    admin = id.admin;
                    groups_changed = true;
                }
                (false, admin)
            }
        };
        let session_id = format!("sso_{}", uuid::Uuid::new_v4().simple());
        let refresh = format!("{REFRESH_PREFIX}{}", random_b64(32));
        let expires_at = micros(now + Duration::seconds(cfg.session_max_secs));
        uow.sso()
            .insert_session(&SessionRow {
                id: session_id.clone(),
                user_name: id.name.clone(),
                session_key: base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
                refresh_hash: sha256_hex(&refresh),
                created_at: Ts(now),
                expires_at: Ts(expires_at),
                revoked_at: None,
            })
            .await?;
        uow.record(
            &actor,
            &session_id,
            AuditEvent::SsoSignedIn {
                user: id.name.clone(),
                groups: id.groups.clone(),
                admin,
                created,
                expires_at: ts(expires_at),
            },
        );
        let (access, access_expires_at, _) = self
            .issue_access(&mut uow, &actor, cfg, &id.name, &session_id, expires_at)
            .await?;
        uow.commit().await?;
        if groups_changed {
            self.groups_changed(true).await?;
        }
        Ok(SsoTokens {
            access_token: access,
            access_expires_at,
            refresh_token: refresh,
            session_expires_at: expires_at,
            user: id.name,
            groups: id.groups,
            admin,
        })
    }

    /// A new access token for a session: `access_ttl`, never past the session's end.
    async fn issue_access(
        &self,
        uow: &mut Uow<'_>,
        actor: &Actor,
        cfg: &SsoConfig,
        user: &str,
        session_id: &str,
        session_ends: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>, String)> {
        let now = uow.now();
        let token_id = TokenId::new();
        let token = new_token();
        let expires_at = micros((now + Duration::seconds(cfg.access_ttl_secs)).min(session_ends));
        uow.sso()
            .insert_access_token(
                &token_id.to_string(),
                user,
                &hash_token(token.expose_secret()),
                Ts(now),
                Ts(expires_at),
                session_id,
            )
            .await?;
        uow.record(
            actor,
            &token_id.to_string(),
            AuditEvent::TokenIssued {
                user: user.to_string(),
                expires_at: ts(expires_at),
            },
        );
        Ok((
            token.expose_secret().to_string(),
            expires_at,
            token_id.to_string(),
        ))
    }

    /// `POST /auth/sso/refresh`: a new access token and refresh token for a
    /// session, proved by the session key. Never asks the IdP. A refresh token
    /// already used revokes its session (it was copied).
    pub async fn sso_refresh(
        &self,
        refresh_token: &str,
        at: &str,
        proof: &str,
    ) -> Result<SsoTokens> {
        let cfg = self.sso_config()?;
        if !refresh_token.starts_with(REFRESH_PREFIX) || refresh_token.len() > 200 {
            return Err(Error::rule(
                ErrorCode::Unauthenticated,
                "the refresh token is not valid",
            ));
        }
        let now = self.now();
        let at_time = DateTime::parse_from_rfc3339(at)
            .map_err(|_| Error::rule(ErrorCode::InvalidRequest, "at must be an RFC 3339 time"))?
            .with_timezone(&Utc);
        if (now - at_time).num_seconds().abs() > REFRESH_SKEW_SECS {
            return Err(Error::rule(
                ErrorCode::Unauthenticated,
                "the refresh proof's time is more than 5 minutes off the broker's clock",
            ));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(proof)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| {
                Error::rule(
                    ErrorCode::Unauthenticated,
                    "the refresh proof is not an ed25519 signature (base64)",
                )
            })?;
        let hash = sha256_hex(refresh_token);
        let mut uow = self.uow_at(now).await?;
        let Some(session) = uow.sso().by_refresh_hash(&hash).await? else {
            if let Some(sid) = uow.sso().used_refresh(&hash).await? {
                // A used refresh token came back: whoever holds the current one,
                // one of the two copies is not the person's. End the session.
                if let Some(s) = uow.sso().get(&sid).await? {
                    self.revoke_session_in(
                        &mut uow,
                        &Actor::System,
                        &s.id,
                        &s.user_name,
                        "refresh_replayed",
                    )
                    .await?;
                    uow.commit().await?;
                    self.access.bump();
                }
                return Err(Error::rule(
                    ErrorCode::SessionExpired,
                    "this refresh token was already used, so the session was ended to be safe: sign in again",
                ));
            }
            return Err(Error::rule(
                ErrorCode::Unauthenticated,
                "the refresh token is not valid",
            ));
        };
        if session.revoked_at.is_some() {
            return Err(Error::rule(
                ErrorCode::SessionExpired,
                "this sign-in was ended (signed out or revoked): sign in again",
            ));
        }
        if session.expires_at.0 <= now {
            return Err(Error::rule(
                ErrorCode::SessionExpired,
                "your sign-in ended (sso session_max): sign in again",
            ));
        }
        let key = parse_session_key(&session.session_key)?;
        let msg = refresh_proof_message(&hash, at);
        if key.verify_strict(msg.as_bytes(), &sig).is_err() {
            return Err(Error::rule(
                ErrorCode::Unauthenticated,
                "the refresh proof does not verify with this session's key",
            ));
        }
        let Some((_, groups_json, admin)) = uow.users().get(&session.user_name).await? else {
            return Err(Error::Corrupt(format!(
                "session {} has no user",
                session.id
            )));
        };
        if uow
            .users()
            .disabled_at(&session.user_name)
            .await?
            .flatten()
            .is_some()
        {
            return Err(Error::rule(
                ErrorCode::SessionExpired,
                "this user is disabled: the sign-in has ended",
            ));
        }
        let groups: Vec<String> = serde_json::from_str(&groups_json)
            .map_err(|e| Error::Corrupt(format!("groups of user {}: {e}", session.user_name)))?;
        let refresh = format!("{REFRESH_PREFIX}{}", random_b64(32));
        if !uow
            .sso()
            .rotate_refresh(&session.id, &hash, &sha256_hex(&refresh), Ts(now))
            .await?
        {
            return Err(Error::rule(
                ErrorCode::Conflict,
                "this refresh token was just used by another request",
            ));
        }
        let actor = Actor::User(Principal {
            name: session.user_name.clone(),
            groups: groups.clone(),
            admin: admin != 0,
            oncall: Vec::new(),
        });
        let (access, access_expires_at, token_id) = self
            .issue_access(
                &mut uow,
                &actor,
                cfg,
                &session.user_name,
                &session.id,
                session.expires_at.0,
            )
            .await?;
        uow.record(
            &actor,
            &session.id,
            AuditEvent::SsoRefreshed {
                user: session.user_name.clone(),
                token: token_id,
            },
        );
        uow.commit().await?;
        Ok(SsoTokens {
            access_token: access,
            access_expires_at,
            refresh_token: refresh,
            session_expires_at: session.expires_at.0,
            user: session.user_name,
            groups,
            admin: admin != 0,
        })
    }

    /// Ends a session inside `uow`: the session and every access token it issued
    /// are revoked, and it is recorded (`reason`: `sign_out`, `user_disabled`,
    /// `refresh_replayed`). False if it had already ended.
    pub(crate) async fn revoke_session_in(
        &self,
        uow: &mut Uow<'_>,
        actor: &Actor,
        session_id: &str,
        user: &str,
        reason: &str,
    ) -> Result<bool> {
        let now = uow.now();
        let revoked = uow.sso().revoke(session_id, Ts(now), reason).await?;
        let tokens_revoked = uow.sso().revoke_tokens(session_id, Ts(now)).await?;
        if revoked || tokens_revoked > 0 {
            uow.record(
                actor,
                session_id,
                AuditEvent::SsoSessionRevoked {
                    user: user.to_string(),
                    reason: reason.to_string(),
                    tokens_revoked,
                },
            );
        }
        Ok(revoked)
    }
}

fn parse_session_key(text: &str) -> Result<VerifyingKey> {
    let bad = || {
        Error::rule(
            ErrorCode::InvalidRequest,
            "session_key must be an ed25519 public key (32 bytes, base64)",
        )
    };
    if text.len() > 100 {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| bad())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| bad())?;
    if key.is_weak() {
        return Err(bad());
    }
    Ok(key)
}
