//! Single sign-on (OpenID Connect): the `[sso]` policy section, how an ID token's
//! claims become a Firedoor user, and the rules of the broker's SSO sessions (the
//! loopback redirect a desktop client may use, the refresh proof). No I/O: the
//! broker fetches and verifies tokens, this module decides what they mean.

use crate::duration::{format_duration, parse_duration};
use crate::error::{ErrorCode, RuleError};
use crate::policy::valid_name;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A nonce the broker issued is good for this long (and once).
pub const NONCE_TTL_SECS: i64 = 600;
/// How far an ID token's `exp`/`nbf`/`iat` may be off the broker's clock.
pub const ID_TOKEN_LEEWAY_SECS: i64 = 60;
/// How far a refresh proof's `at` may be off the broker's clock.
pub const REFRESH_SKEW_SECS: i64 = 300;
/// Bounds of `session_max`.
pub const SESSION_MAX_RANGE: (i64, i64) = (300, 30 * 86_400);
/// Bounds of `access_ttl`.
pub const ACCESS_TTL_RANGE: (i64, i64) = (60, 86_400);
/// The refresh tokens' prefix (access tokens are ordinary `fdt_` tokens).
pub const REFRESH_PREFIX: &str = "fdr_";
/// The scopes a client asks the IdP for.
pub const SCOPE: &str = "openid profile groups";

/// The `[sso]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoConfig {
    /// The OpenID Provider's issuer URL (no trailing slash is added or removed:
    /// it must equal the ID tokens' `iss`).
    pub issuer: String,
    /// The audience of ID tokens: the desktop app's public client id at the IdP.
    pub client_id: String,
    pub username_claim: String,
    pub groups_claim: String,
    pub session_max_secs: i64,
    pub access_ttl_secs: i64,
    /// Members of this IdP group are Firedoor admins; without it SSO never makes
    /// an admin.
    pub admin_group: Option<String>,
    /// IdP group -> Firedoor groups. Unmapped IdP groups are ignored.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// `[sso]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSso {
    issuer: String,
    client_id: String,
    #[serde(default = "default_username_claim")]
    username_claim: String,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    #[serde(default = "default_session_max")]
    session_max: String,
    #[serde(default = "default_access_ttl")]
    access_ttl: String,
    #[serde(default)]
    admin_group: Option<String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_session_max() -> String {
    "12h".into()
}
fn default_access_ttl() -> String {
    "15m".into()
}

/// Whether `host` (no port) names this machine.
fn loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Splits `scheme://host[:port]/rest` into (host without port, port).
fn authority(rest: &str) -> (&str, Option<&str>) {
    let auth = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some(stripped) = auth.strip_prefix('[') {
        if let Some(end) = stripped.find(']') {
            let host = &auth[..end + 2];
            let port = auth[end + 2..].strip_prefix(':');
            return (host, port);
        }
        return (auth, None);
    }
    match auth.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (auth, None),
    }
}

fn plain_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= 2000 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl RawSso {
    /// Validates the section.
    pub fn check(self) -> Result<SsoConfig, String> {
        let issuer = self.issuer.trim().to_string();
        let ok_issuer = plain_text(&issuer)
            && !issuer.contains('@')
            && !issuer.contains(['?', '#'])
            && if let Some(rest) = issuer.strip_prefix("https://") {
                !authority(rest).0.is_empty()
            } else if let Some(rest) = issuer.strip_prefix("http://") {
                loopback_host(authority(rest).0)
            } else {
                false
            };
        if !ok_issuer {
            return Err(format!(
                "sso: issuer '{issuer}' must be an https URL (plain http only to 127.0.0.1, localhost or [::1], for tests), without user, query or fragment"
            ));
        }
        let client_id = self.client_id.trim().to_string();
        if !plain_text(&client_id) || client_id.len() > 255 {
            return Err("sso: client_id must be the IdP's client id of the desktop app (no spaces, at most 255 characters)".into());
        }
        for (what, claim) in [
            ("username_claim", &self.username_claim),
            ("groups_claim", &self.groups_claim),
        ] {
            if !plain_text(claim) || claim.len() > 100 {
                return Err(format!("sso: {what} must name a claim"));
            }
        }
        let dur = |what: &str, text: &str, (lo, hi): (i64, i64)| -> Result<i64, String> {
            let secs = parse_duration(text).map_err(|e| format!("sso: {what}: {e}"))?;
            if !(lo..=hi).contains(&secs) {
                return Err(format!(
                    "sso: {what} must be between {} and {}",
                    format_duration(lo),
                    format_duration(hi)
                ));
            }
            Ok(secs)
        };
        let session_max_secs = dur("session_max", &self.session_max, SESSION_MAX_RANGE)?;
        let access_ttl_secs = dur("access_ttl", &self.access_ttl, ACCESS_TTL_RANGE)?;
        if access_ttl_secs > session_max_secs {
            return Err("sso: access_ttl must not be longer than session_max".into());
        }
        if let Some(g) = &self.admin_group {
            if !plain_text(g) {
                return Err("sso: admin_group must name an IdP group".into());
            }
        }
        for (idp, ours) in &self.groups {
            if !plain_text(idp) {
                return Err(format!("sso.groups: '{idp}' is not an IdP group name"));
            }
            for g in ours {
                if !valid_name(g) {
                    return Err(format!(
                        "sso.groups.\"{idp}\": '{g}' is not a Firedoor group name: use 1-64 of a-z, 0-9, '-' and '_'"
                    ));
                }
            }
        }
        Ok(SsoConfig {
            issuer,
            client_id,
            username_claim: self.username_claim,
            groups_claim: self.groups_claim,
            session_max_secs,
            access_ttl_secs,
            admin_group: self.admin_group,
            groups: self.groups,
        })
    }
}

/// Who an ID token says the person is, in Firedoor's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentity {
    pub name: String,
    /// Firedoor groups (mapped, sorted, deduplicated).
    pub groups: Vec<String>,
    pub admin: bool,
}

fn bad_token(message: impl Into<String>) -> RuleError {
    RuleError::new(ErrorCode::InvalidIdToken, message)
}

impl SsoConfig {
    /// Maps verified ID token claims to a Firedoor user: the user name from
    /// `username_claim` (a valid Firedoor name, else refused), the groups mapped
    /// through `[sso.groups]` (an absent groups claim is no groups), admin only
    /// through `admin_group`.
    pub fn identity(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<SsoIdentity, RuleError> {
        let name = claims
            .get(&self.username_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                bad_token(format!(
                    "the ID token has no '{}' claim (sso.username_claim) to name the user",
                    self.username_claim
                ))
            })?;
        if !valid_name(name) {
            return Err(RuleError::new(
                ErrorCode::Forbidden,
                format!(
                    "the IdP's '{}' claim is not a valid Firedoor user name (1-64 of a-z, 0-9, '-' and '_')",
                    self.username_claim
                ),
            ));
        }
        let idp_groups: Vec<&str> = match claims.get(&self.groups_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            Some(_) => {
                return Err(bad_token(format!(
                    "the ID token's '{}' claim is neither a list of groups nor a group",
                    self.groups_claim
                )))
            }
        };
        let mut groups = BTreeSet::new();
        for g in &idp_groups {
            if let Some(mapped) = self.groups.get(*g) {
                groups.extend(mapped.iter().cloned());
            }
        }
        let admin = self
            .admin_group
            .as_deref()
            .is_some_and(|a| idp_groups.contains(&a));
        Ok(SsoIdentity {
            name: name.to_string(),
            groups: groups.into_iter().collect(),
            admin,
        })
    }
}

/// Checks a native app's redirect URI: RFC 8252 loopback, `http://127.0.0.1:PORT/…`
/// or `http://[::1]:PORT/…` with an explicit port (no `localhost`: a name may
/// resolve elsewhere).
pub fn check_loopback_redirect(uri: &str) -> Result<(), RuleError> {
    let bad = || {
        RuleError::new(
            ErrorCode::InvalidRequest,
            "redirect_uri must be http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252 loopback redirect)",
        )
    };
    if !plain_text(uri) || uri.len() > 300 || uri.contains(['@', '#']) {
        return Err(bad());
    }
    let rest = uri.strip_prefix("http://").ok_or_else(bad)?;
    let (host, port) = authority(rest);
    if !matches!(host, "127.0.0.1" | "[::1]") {
        return Err(bad());
    }
    let port = port.ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(bad()),
    }
}

/// The text a session key signs to refresh: the refresh token's SHA-256 (hex) and
/// the time of the proof.
pub fn refresh_proof_message(refresh_sha256_hex: &str, at: &str) -> String {
    format!("firedoor-refresh\n{refresh_sha256_hex}\n{at}")
}

/// `POST /auth/sso/start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoStartRequest {
    pub redirect_uri: String,
}

/// What a client needs to send the person to the IdP.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SsoStart {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub scope: String,
    /// Single use, good for [`NONCE_TTL_SECS`].
    pub nonce: String,
}

/// `POST /auth/sso/session`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSessionRequest {
    pub id_token: String,
    /// The client's ed25519 public key for this session (32 bytes, base64).
    pub session_key: String,
}

/// `POST /auth/sso/refresh`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoRefreshRequest {
    pub refresh_token: String,
    /// RFC 3339, within [`REFRESH_SKEW_SECS`] of the broker's clock.
    pub at: String,
    /// ed25519 signature (base64) by the session key over
    /// [`refresh_proof_message`].
    pub proof: String,
}

/// A signed-in SSO session's tokens (answer of `/session` and `/refresh`).
#[derive(Clone, Serialize, Deserialize)]
pub struct SsoTokens {
    /// An ordinary `fdt_` bearer token, good until `access_expires_at`.
    pub access_token: String,
    pub access_expires_at: chrono::DateTime<chrono::Utc>,
    /// `fdr_…`, good once.
    pub refresh_token: String,
    pub session_expires_at: chrono::DateTime<chrono::Utc>,
    pub user: String,
    pub groups: Vec<String>,
    pub admin: bool,
}

impl std::fmt::Debug for SsoTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoTokens")
            .field("access_token", &"[redacted]")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &"[redacted]")
            .field("session_expires_at", &self.session_expires_at)
            .field("user", &self.user)
            .field("groups", &self.groups)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &str) -> Result<SsoConfig, String> {
        let text = format!(
            "issuer = \"https://idp.example.com\"\nclient_id = \"firedoor-desktop\"\n{extra}"
        );
        let r: RawSso = toml::from_str(&text).map_err(|e| e.to_string())?;
        r.check()
    }

    #[test]
    fn defaults_and_bounds() {
        let c = raw("").expect("minimal section is valid");
        assert_eq!(c.session_max_secs, 12 * 3600);
        assert_eq!(c.access_ttl_secs, 900);
        assert_eq!(c.username_claim, "preferred_username");
        assert!(raw("session_max = \"1m\"").is_err(), "below the minimum");
        assert!(raw("access_ttl = \"2h\"\nsession_max = \"1h\"").is_err());
        assert!(raw("[groups]\n\"idp-sre\" = [\"Bad Group\"]").is_err());
    }

    #[test]
    fn issuer_must_be_https_unless_loopback() {
        for (issuer, ok) in [
            ("https://idp.example.com", true),
            ("http://127.0.0.1:9000", true),
            ("http://[::1]:9000/realms/x", true),
            ("http://idp.example.com", false),
            ("http://127.0.0.1.evil.com", false),
            ("https://user@idp", false),
            ("ftp://idp", false),
        ] {
            let r: RawSso = toml::from_str(&format!(
                "issuer = \"{issuer}\"\nclient_id = \"firedoor-desktop\""
            ))
            .expect("toml");
            assert_eq!(r.check().is_ok(), ok, "{issuer}");
        }
    }

    #[test]
    fn claims_map_to_groups_and_admin() {
        let c = raw("admin_group = \"fd-admins\"\n[groups]\n\"idp-sre\" = [\"oncall\", \"sre\"]\n\"idp-sec\" = [\"security\"]").expect("valid");
        let claims = |v: serde_json::Value| v.as_object().expect("object").clone();
        let id = c
            .identity(&claims(serde_json::json!({
                "preferred_username": "ann", "groups": ["idp-sre", "other", "fd-admins"]
            })))
            .expect("maps");
        assert_eq!(id.name, "ann");
        assert_eq!(id.groups, vec!["oncall", "sre"], "unmapped groups ignored");
        assert!(id.admin);
        let id = c
            .identity(&claims(serde_json::json!({ "preferred_username": "bob" })))
            .expect("no groups claim");
        assert!(id.groups.is_empty() && !id.admin);
        let e = c
            .identity(&claims(
                serde_json::json!({ "preferred_username": "Bob Smith" }),
            ))
            .expect_err("invalid name");
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(c.identity(&claims(serde_json::json!({}))).is_err());
        let no_admin = raw("").expect("valid");
        let id = no_admin
            .identity(&claims(serde_json::json!({
                "preferred_username": "ann", "groups": ["fd-admins"]
            })))
            .expect("maps");
        assert!(!id.admin, "without admin_group SSO never makes an admin");
    }

    #[test]
    fn loopback_redirects() {
        for (uri, ok) in [
            ("http://127.0.0.1:53123/callback", true),
            ("http://[::1]:53123/cb", true),
            ("http://127.0.0.1:53123", true),
            ("http://127.0.0.1/callback", false),
            ("http://localhost:53123/callback", false),
            ("https://127.0.0.1:53123/callback", false),
            ("http://127.0.0.1:0/callback", false),
            ("http://127.0.0.1:99999/callback", false),
            ("http://127.0.0.1:80@evil.com/", false),
            ("http://127.0.0.1.evil.com:80/", false),
            ("http://127.0.0.1:5312/c b", false),
        ] {
            assert_eq!(check_loopback_redirect(uri).is_ok(), ok, "{uri}");
        }
    }
}
