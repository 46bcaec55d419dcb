//! API tokens: random, shown once, stored only as SHA-256 hashes, revocable.

use crate::audit::{append, Actor};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::Tx;
use crate::store::{Store, Ts};
use base64::Engine;
use chrono::{DateTime, Utc};
use firedoor_core::audit::AuditEvent;
use firedoor_core::policy::{valid_name, Principal};
use firedoor_core::{ErrorCode, TokenId};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const TOKEN_PREFIX: &str = "fdt_";

pub use firedoor_core::lifecycle::{DEFAULT_TOKEN_TTL_SECS, MAX_TOKEN_TTL_SECS};

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    SecretString::from(format!("{TOKEN_PREFIX}{body}"))
}

/// Finds the user behind a bearer token, if it is valid at `now`: not revoked, not
/// expired, and its user not disabled.
pub async fn authenticate(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Principal>> {
    Ok(authenticate_session(store, token, now)
        .await?
        .map(|s| s.principal))
}

/// A token that authenticated: who, and which token (for `DELETE /me/token` and for
/// event streams that re-check it).
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub token_id: String,
    pub token_hash: String,
    /// The store's directory version as the token was checked (see
    /// [`crate::store::directory`]).
    pub directory_version: i64,
}

/// As [`authenticate`], also naming the token.
pub async fn authenticate_session(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Session>> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let hash = hash_token(token);
    let row = store.users().by_token_hash(&hash, Ts(now)).await?;
    row.map(|(user, token_id, directory_version)| {
        Ok(Session {
            principal: principal_from_row(user)?,
            token_id,
            token_hash: hash.clone(),
            directory_version,
        })
    })
    .transpose()
}

/// Whether the token with this hash still authenticates at `now` (event streams ask
/// this while they are open).
pub async fn token_hash_valid(store: &Store, hash: &str, now: DateTime<Utc>) -> Result<bool> {
    store.users().token_hash_valid(hash, Ts(now)).await
}

fn principal_from_row((name, groups_json, admin): (String, String, i64)) -> Result<Principal> {
    let groups: Vec<String> = serde_json::from_str(&groups_json)
        .map_err(|e| Error::Corrupt(format!("groups of user {name}: {e}")))?;
    Ok(Principal {
        name,
        groups,
        admin: admin != 0,
        oncall: Vec::new(),
    })
}

pub async fn get_user(store: &Store, name: &str) -> Result<Option<Principal>> {
    store
        .users()
        .get(name)
        .await?
        .map(principal_from_row)
        .transpose()
}

/// Every user, by name.
pub async fn all_users(mut users: crate::store::users::Users<'_>) -> Result<Vec<Principal>> {
    principals(&users.all().await?)
}

/// The users of a directory (see [`crate::store::directory`]).
pub fn principals(rows: &[crate::store::users::UserRow]) -> Result<Vec<Principal>> {
    rows.iter().cloned().map(principal_from_row).collect()
}

/// A token just issued: its id and the secret, shown once.
pub struct IssuedToken {
    pub id: TokenId,
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// Checks a token lifetime (the rule is [`firedoor_core::lifecycle::check_token_ttl`]).
pub fn check_ttl(ttl_secs: i64) -> Result<()> {
    Ok(firedoor_core::lifecycle::check_token_ttl(ttl_secs)?)
}

async fn issue_in(
    tx: &mut Tx,
    actor: &Actor,
    user: &str,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<IssuedToken> {
    check_ttl(ttl_secs)?;
    let id = TokenId::new();
    let token = new_token();
    let expires_at = now + chrono::Duration::seconds(ttl_secs);
    tx.users()
        .insert_token(
            &id.to_string(),
            user,
            &hash_token(token.expose_secret()),
            Ts(now),
            Ts(expires_at),
        )
        .await?;
    append(
        tx,
        actor,
        &id.to_string(),
        AuditEvent::TokenIssued {
            user: user.to_string(),
            expires_at: ts(expires_at),
        },
        now,
    )
    .await?;
    Ok(IssuedToken {
        id,
        token,
        expires_at,
    })
}

/// Creates a user and its first token (valid [`DEFAULT_TOKEN_TTL_SECS`]).
pub async fn add_user(
    store: &Store,
    actor: &Actor,
    name: &str,
    groups: &[String],
    admin: bool,
    now: DateTime<Utc>,
) -> Result<IssuedToken> {
    add_user_with_ttl(
        store,
        actor,
        name,
        groups,
        admin,
        now,
        DEFAULT_TOKEN_TTL_SECS,
    )
    .await
}

/// Creates a user and its first token, valid `ttl_secs`.
pub async fn add_user_with_ttl(
    store: &Store,
    actor: &Actor,
    name: &str,
    groups: &[String],
    admin: bool,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<IssuedToken> {
    check_ttl(ttl_secs)?;
    if !valid_name(name) {
        return Err(Error::rule(
            ErrorCode::InvalidRequest,
            format!("'{name}' is not a valid user name: use 1-64 of a-z, 0-9, '-' and '_'"),
        ));
    }
    for g in groups {
        if !valid_name(g) {
            return Err(Error::rule(
                ErrorCode::InvalidRequest,
                format!("'{g}' is not a valid group name: use 1-64 of a-z, 0-9, '-' and '_'"),
            ));
        }
    }
    let mut tx = store.begin().await?;
    if tx.users().get(name).await?.is_some() {
        return Err(Error::rule(
            ErrorCode::Conflict,
            format!(
                "user '{name}' already exists (issue another token with `user token issue {name}`)"
            ),
        ));
    }
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    let groups_json = serde_json::to_string(&groups).map_err(|e| Error::Corrupt(e.to_string()))?;
    tx.users()
        .insert(name, &groups_json, admin, Ts(now))
        .await?;
    append(
        &mut tx,
        actor,
        name,
        AuditEvent::UserAdded {
            groups: groups.to_vec(),
            admin,
        },
        now,
    )
    .await?;
    let issued = issue_in(&mut tx, actor, name, now, ttl_secs).await?;
    tx.commit().await?;
    Ok(issued)
}

/// Issues another token for an existing user (valid [`DEFAULT_TOKEN_TTL_SECS`]).
pub async fn issue_token(
    store: &Store,
    actor: &Actor,
    user: &str,
    now: DateTime<Utc>,
) -> Result<IssuedToken> {
    issue_token_with_ttl(store, actor, user, now, DEFAULT_TOKEN_TTL_SECS).await
}

/// Issues another token for an existing, enabled user, valid `ttl_secs`.
pub async fn issue_token_with_ttl(
    store: &Store,
    actor: &Actor,
    user: &str,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<IssuedToken> {
    let mut tx = store.begin().await?;
    match tx.users().disabled_at(user).await? {
        None => return Err(Error::not_found("user")),
        Some(Some(_)) => {
            return Err(Error::rule(
                ErrorCode::Conflict,
                format!("user '{user}' is disabled; a disabled user gets no tokens"),
            ))
        }
        Some(_) => {}
    }
    let issued = issue_in(&mut tx, actor, user, now, ttl_secs).await?;
    tx.commit().await?;
    Ok(issued)
}

/// Revokes one token by id. Returns the user it belonged to.
pub async fn revoke_token(
    store: &Store,
    actor: &Actor,
    id: &TokenId,
    now: DateTime<Utc>,
) -> Result<String> {
    let mut tx = store.begin().await?;
    let Some((user, revoked)) = tx.users().token(&id.to_string()).await? else {
        return Err(Error::not_found("token"));
    };
    if revoked.is_some() {
        return Err(Error::rule(ErrorCode::Conflict, "token is already revoked"));
    }
    tx.users().revoke_token(&id.to_string(), Ts(now)).await?;
    append(
        &mut tx,
        actor,
        &id.to_string(),
        AuditEvent::TokenRevoked {
            user: user.clone(),
            by: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Token ids of a user, newest first: (id, created, expires, revoked).
pub async fn list_tokens(store: &Store, user: &str) -> Result<Vec<crate::store::users::TokenRow>> {
    store.users().tokens_of(user).await
}
