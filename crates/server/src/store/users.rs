//! Users and their API tokens (only SHA-256 hashes of tokens are kept).

use super::{Db, Ts};
use crate::error::Result;

pub struct Users<'a>(pub(crate) Db<'a>);

/// A user row: (name, groups_json, admin).
pub type UserRow = (String, String, i64);

/// A token as listed: (id, created, expires, revoked).
pub type TokenRow = (String, Ts, Option<Ts>, Option<Ts>);

impl Users<'_> {
    /// The user and token id behind a token hash that authenticates at `now` (not
    /// revoked, not expired, its user not disabled), and the store's directory
    /// version read in the same statement (see [`super::directory`]).
    pub async fn by_token_hash(
        &mut self,
        hash: &str,
        now: Ts,
    ) -> Result<Option<(UserRow, String, i64)>> {
        let row = fetch!(
            self.0,
            fetch_optional,
            (String, String, i64, String, i64),
            "SELECT u.name, u.groups_json, u.admin, t.id, (SELECT n FROM directory_version)
             FROM tokens t JOIN users u ON u.name = t.user_name
             WHERE t.hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled_at IS NULL",
            hash,
            now
        )?;
        Ok(row.map(|(n, g, a, id, v)| ((n, g, a), id, v)))
    }

    pub async fn get(&mut self, name: &str) -> Result<Option<UserRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            UserRow,
            "SELECT name, groups_json, admin FROM users WHERE name = $1",
            name
        )?)
    }

    /// Whether the user exists, and when they were disabled.
    pub async fn disabled_at(&mut self, name: &str) -> Result<Option<Option<Ts>>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (Option<Ts>,),
            "SELECT disabled_at FROM users WHERE name = $1",
            name
        )?
        .map(|r| r.0))
    }

    /// Every user, by name.
    pub async fn all(&mut self) -> Result<Vec<UserRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            UserRow,
            "SELECT name, groups_json, admin FROM users ORDER BY name"
        )?)
    }

    pub async fn insert(
        &mut self,
        name: &str,
        groups_json: &str,
        admin: bool,
        now: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO users (name, groups_json, admin, created_at) VALUES ($1, $2, $3, $4)",
            name,
            groups_json,
            admin as i64,
            now
        )?;
        Ok(())
    }

    pub async fn insert_token(
        &mut self,
        id: &str,
        user: &str,
        hash: &str,
        now: Ts,
        expires_at: Ts,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO tokens (id, user_name, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            id,
            user,
            hash,
            now,
            expires_at
        )?;
        Ok(())
    }

    /// A token's user and when it was revoked.
    pub async fn token(&mut self, id: &str) -> Result<Option<(String, Option<Ts>)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (String, Option<Ts>),
            "SELECT user_name, revoked_at FROM tokens WHERE id = $1",
            id
        )?)
    }

    /// Revokes a token that is not revoked yet; false if it already was.
    pub async fn revoke_token(&mut self, id: &str, now: Ts) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            now,
            id
        )? == 1)
    }

    /// Whether the token with this hash still authenticates at `now`.
    pub async fn token_hash_valid(&mut self, hash: &str, now: Ts) -> Result<bool> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            i64,
            "SELECT CAST(1 AS BIGINT) FROM tokens t JOIN users u ON u.name = t.user_name
             WHERE t.hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled_at IS NULL",
            hash,
            now
        )?
        .is_some())
    }

    /// A user's tokens, newest first.
    pub async fn tokens_of(&mut self, user: &str) -> Result<Vec<TokenRow>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            TokenRow,
            "SELECT id, created_at, expires_at, revoked_at FROM tokens WHERE user_name = $1 ORDER BY created_at DESC",
            user
        )?)
    }

    /// Every user with when they were disabled: (name, groups_json, admin,
    /// disabled_at), by name.
    pub async fn all_with_state(&mut self) -> Result<Vec<(String, String, i64, Option<Ts>)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String, i64, Option<Ts>),
            "SELECT name, groups_json, admin, disabled_at FROM users ORDER BY name"
        )?)
    }

    /// Marks the user disabled at `now`.
    pub async fn set_disabled(&mut self, name: &str, now: Ts) -> Result<()> {
        exec!(
            self.0,
            "UPDATE users SET disabled_at = $1 WHERE name = $2",
            now,
            name
        )?;
        Ok(())
    }

    /// Revokes every token of `user` not revoked yet; returns how many.
    pub async fn revoke_tokens_of(&mut self, user: &str, now: Ts) -> Result<u64> {
        Ok(exec!(
            self.0,
            "UPDATE tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
            now,
            user
        )?)
    }

    /// The user's groups (JSON), if the user exists.
    pub async fn groups_json(&mut self, name: &str) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT groups_json FROM users WHERE name = $1",
            name
        )?)
    }

    /// Sets the user's admin flag.
    pub async fn set_admin(&mut self, name: &str, admin: bool) -> Result<()> {
        exec!(
            self.0,
            "UPDATE users SET admin = $1 WHERE name = $2",
            admin as i64,
            name
        )?;
        Ok(())
    }

    pub async fn set_groups_json(&mut self, name: &str, groups_json: &str) -> Result<()> {
        exec!(
            self.0,
            "UPDATE users SET groups_json = $1 WHERE name = $2",
            groups_json,
            name
        )?;
        Ok(())
    }

    /// A fingerprint of who may authenticate at `now`: tokens revoked or expired,
    /// users disabled. Both counts only grow, so any change means some token or
    /// person ended (polled by [`crate::access::watch_store`]).
    pub async fn access_fingerprint(&mut self, now: Ts) -> Result<(i64, i64)> {
        Ok(fetch!(
            self.0,
            fetch_one,
            (i64, i64),
            "SELECT (SELECT COUNT(*) FROM tokens WHERE revoked_at IS NOT NULL OR expires_at <= $1),
                    (SELECT COUNT(*) FROM users WHERE disabled_at IS NOT NULL)",
            now
        )?)
    }
}
