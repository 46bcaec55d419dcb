//! Single sign-on: the nonces issued for sign-ins, the SSO sessions (only hashes of
//! their refresh tokens), the refresh tokens already used, and the access tokens a
//! session issued (ordinary rows of `tokens`, linked by `session_id`).

use super::{Db, Store, Ts, Tx};
use crate::error::Result;

pub struct Sso<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn sso(&self) -> Sso<'_> {
        Sso(self.db())
    }
}

impl Tx {
    pub fn sso(&mut self) -> Sso<'_> {
        Sso(self.db())
    }
}

row_struct! {
    /// An SSO session.
    #[derive(Debug, Clone)]
    pub struct SessionRow {
        pub id: String,
        pub user_name: String,
        /// The client's ed25519 public key (base64), which signs refreshes.
        pub session_key: String,
        pub refresh_hash: String,
        pub created_at: Ts,
        pub expires_at: Ts,
        pub revoked_at: Option<Ts>,
    }
}

impl Sso<'_> {
    /// Records a nonce issued at `now`, good until `expires_at`; forgets nonces
    /// that expired a day ago.
    pub async fn insert_nonce(&mut self, hash: &str, now: Ts, expires_at: Ts) -> Result<()> {
        let stale = Ts(now.0 - chrono::Duration::days(1));
        exec!(
            self.0,
            "DELETE FROM sso_nonces WHERE expires_at < $1",
            stale
        )?;
        exec!(
            self.0,
            "INSERT INTO sso_nonces (hash, created_at, expires_at) VALUES ($1, $2, $3)",
            hash,
            now,
            expires_at
        )?;
        Ok(())
    }

    /// Uses a nonce: true only for the first use of an issued, unexpired nonce (one
    /// compare-and-set, so two sign-ins with one nonce cannot both pass).
    pub async fn consume_nonce(&mut self, hash: &str, now: Ts) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE sso_nonces SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1",
            now,
            hash
        )? == 1)
    }

    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO sso_sessions (id, user_name, session_key, refresh_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            s.id.as_str(),
            s.user_name.as_str(),
            s.session_key.as_str(),
            s.refresh_hash.as_str(),
            s.created_at,
            s.expires_at
        )?;
        Ok(())
    }

    /// The session whose current refresh token has this hash.
    pub async fn by_refresh_hash(&mut self, hash: &str) -> Result<Option<SessionRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            SessionRow,
            "SELECT id, user_name, session_key, refresh_hash, created_at, expires_at, revoked_at
             FROM sso_sessions WHERE refresh_hash = $1",
            hash
        )?)
    }

    pub async fn get(&mut self, id: &str) -> Result<Option<SessionRow>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            SessionRow,
            "SELECT id, user_name, session_key, refresh_hash, created_at, expires_at, revoked_at
             FROM sso_sessions WHERE id = $1",
            id
        )?)
    }

    /// The session a refresh token with this hash was already exchanged in.
    pub async fn used_refresh(&mut self, hash: &str) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT session_id FROM sso_used_refresh WHERE hash = $1",
            hash
        )?)
    }

    /// Replaces the session's refresh token if it is still `old` and the session
    /// is not revoked (compare-and-set: one of two racing refreshes wins); the old
    /// one is remembered as used.
    pub async fn rotate_refresh(
        &mut self,
        id: &str,
        old: &str,
        new: &str,
        now: Ts,
    ) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE sso_sessions SET refresh_hash = $1, refreshed_at = $2
             WHERE id = $3 AND refresh_hash = $4 AND revoked_at IS NULL",
            new,
            now,
            id,
            old
        )?;
        if n != 1 {
            return Ok(false);
        }
        exec!(
            self.0,
            "INSERT INTO sso_used_refresh (hash, session_id, used_at) VALUES ($1, $2, $3)",
            old,
            id,
            now
        )?;
        Ok(true)
    }

    /// Revokes a session not revoked yet; false if it already was.
    pub async fn revoke(&mut self, id: &str, now: Ts, reason: &str) -> Result<bool> {
        Ok(exec!(
            self.0,
            "UPDATE sso_sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
            now,
            reason,
            id
        )? == 1)
    }

    /// Revokes the session's access tokens not revoked yet; returns how many.
    pub async fn revoke_tokens(&mut self, id: &str, now: Ts) -> Result<u64> {
        Ok(exec!(
            self.0,
            "UPDATE tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL",
            now,
            id
        )?)
    }

    /// The user's sessions not revoked (expired ones too: revoking them is harmless
    /// and keeps the record plain).
    pub async fn open_sessions_of(&mut self, user: &str) -> Result<Vec<String>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String,),
            "SELECT id FROM sso_sessions WHERE user_name = $1 AND revoked_at IS NULL ORDER BY id",
            user
        )?
        .into_iter()
        .map(|r| r.0)
        .collect())
    }

    /// The session a token was issued for, if any.
    pub async fn session_of_token(&mut self, token_id: &str) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            Option<String>,
            "SELECT session_id FROM tokens WHERE id = $1",
            token_id
        )?
        .flatten())
    }

    /// Stores an access token issued for a session.
    pub async fn insert_access_token(
        &mut self,
        id: &str,
        user: &str,
        hash: &str,
        now: Ts,
        expires_at: Ts,
        session_id: &str,
    ) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO tokens (id, user_name, hash, created_at, expires_at, session_id) VALUES ($1, $2, $3, $4, $5, $6)",
            id,
            user,
            hash,
            now,
            expires_at,
            session_id
        )?;
        Ok(())
    }
}
