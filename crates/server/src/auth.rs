//! API tokens: random, shown once, stored only as SHA-256 hashes, revocable.

use crate::audit::{append, Actor};
use crate::clock::ts;
use crate::error::{Error, Result};
use crate::store::{write_tx, Tx};
use base64::Engine;
use chrono::{DateTime, Utc};
use firedoor_core::audit::AuditAction;
use firedoor_core::policy::{valid_name, Principal};
use firedoor_core::{ErrorCode, TokenId};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

const TOKEN_PREFIX: &str = "fdt_";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    SecretString::from(format!("{TOKEN_PREFIX}{body}"))
}

/// Finds the user behind a bearer token, if it is valid and not revoked.
pub async fn authenticate(pool: &SqlitePool, token: &str) -> Result<Option<Principal>> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT u.name, u.groups_json, u.admin FROM tokens t JOIN users u ON u.name = t.user_name
         WHERE t.hash = ? AND t.revoked_at IS NULL",
    )
    .bind(hash_token(token))
    .fetch_optional(pool)
    .await?;
    row.map(principal_from_row).transpose()
}

fn principal_from_row((name, groups_json, admin): (String, String, i64)) -> Result<Principal> {
    let groups: Vec<String> = serde_json::from_str(&groups_json)
        .map_err(|e| Error::Corrupt(format!("groups of user {name}: {e}")))?;
    Ok(Principal {
        name,
        groups,
        admin: admin != 0,
    })
}

pub async fn get_user(pool: &SqlitePool, name: &str) -> Result<Option<Principal>> {
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT name, groups_json, admin FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    row.map(principal_from_row).transpose()
}

pub async fn all_users<'e, E>(ex: E) -> Result<Vec<Principal>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, groups_json, admin FROM users ORDER BY name")
            .fetch_all(ex)
            .await?;
    rows.into_iter().map(principal_from_row).collect()
}

/// A token just issued: its id and the secret, shown once.
pub struct IssuedToken {
    pub id: TokenId,
    pub token: SecretString,
}

async fn issue_in(
    tx: &mut Tx,
    actor: &Actor,
    user: &str,
    now: DateTime<Utc>,
) -> Result<IssuedToken> {
    let id = TokenId::new();
    let token = new_token();
    sqlx::query("INSERT INTO tokens (id, user_name, hash, created_at) VALUES (?, ?, ?, ?)")
        .bind(id.to_string())
        .bind(user)
        .bind(hash_token(token.expose_secret()))
        .bind(ts(now))
        .execute(&mut **tx)
        .await?;
    append(
        tx,
        actor,
        AuditAction::TokenIssued,
        &id.to_string(),
        serde_json::json!({ "user": user }),
        now,
    )
    .await?;
    Ok(IssuedToken { id, token })
}

/// Creates a user and its first token.
pub async fn add_user(
    pool: &SqlitePool,
    actor: &Actor,
    name: &str,
    groups: &[String],
    admin: bool,
    now: DateTime<Utc>,
) -> Result<IssuedToken> {
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
    let mut tx = write_tx(pool).await?;
    let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
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
    sqlx::query("INSERT INTO users (name, groups_json, admin, created_at) VALUES (?, ?, ?, ?)")
        .bind(name)
        .bind(serde_json::to_string(&groups).map_err(|e| Error::Corrupt(e.to_string()))?)
        .bind(admin as i64)
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
    append(
        &mut tx,
        actor,
        AuditAction::UserAdded,
        name,
        serde_json::json!({ "groups": groups, "admin": admin }),
        now,
    )
    .await?;
    let issued = issue_in(&mut tx, actor, name, now).await?;
    tx.commit().await?;
    Ok(issued)
}

/// Issues another token for an existing user.
pub async fn issue_token(
    pool: &SqlitePool,
    actor: &Actor,
    user: &str,
    now: DateTime<Utc>,
) -> Result<IssuedToken> {
    let mut tx = write_tx(pool).await?;
    let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM users WHERE name = ?")
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(Error::not_found("user"));
    }
    let issued = issue_in(&mut tx, actor, user, now).await?;
    tx.commit().await?;
    Ok(issued)
}

/// Revokes one token by id. Returns the user it belonged to.
pub async fn revoke_token(
    pool: &SqlitePool,
    actor: &Actor,
    id: &TokenId,
    now: DateTime<Utc>,
) -> Result<String> {
    let mut tx = write_tx(pool).await?;
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT user_name, revoked_at FROM tokens WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    let Some((user, revoked)) = row else {
        return Err(Error::not_found("token"));
    };
    if revoked.is_some() {
        return Err(Error::rule(ErrorCode::Conflict, "token is already revoked"));
    }
    sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(ts(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    append(
        &mut tx,
        actor,
        AuditAction::TokenRevoked,
        &id.to_string(),
        serde_json::json!({ "user": user }),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// Token ids of a user, newest first, with their revocation time.
pub async fn list_tokens(
    pool: &SqlitePool,
    user: &str,
) -> Result<Vec<(String, String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT id, created_at, revoked_at FROM tokens WHERE user_name = ? ORDER BY created_at DESC",
    )
    .bind(user)
    .fetch_all(pool)
    .await?)
}
