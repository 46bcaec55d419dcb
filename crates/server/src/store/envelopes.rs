//! Envelopes: a secret's value sealed to one device (at most one per device and
//! secret), see [`crate::breakglass`].

use super::{Db, Store, Ts, Tx};
use crate::error::Result;
use sqlx::AssertSqlSafe;

pub struct Envelopes<'a>(pub(crate) Db<'a>);

impl Store {
    pub fn envelopes(&self) -> Envelopes<'_> {
        Envelopes(self.db())
    }
}

impl Tx {
    pub fn envelopes(&mut self) -> Envelopes<'_> {
        Envelopes(self.db())
    }
}

/// An envelope to store for one device.
pub struct NewEnvelope<'s> {
    pub device_id: &'s str,
    pub version: i64,
    pub meta_json: &'s str,
    pub signature: &'s str,
    /// ASCII-armoured age file.
    pub ciphertext: &'s str,
    pub sealed_at: Ts,
    pub not_after: Ts,
}

/// Who holds an envelope: (secret, device id, device's user, version, when the
/// device was revoked).
pub type Holder = (String, String, String, i64, Option<Ts>);

/// Envelopes per multi-row insert (8 bound values each).
const INSERT_CHUNK: usize = 200;

/// `INSERT INTO envelopes … VALUES ($1 … $8), ($9 … $16), …` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO envelopes (device_id, secret, version, meta_json, signature, ciphertext, sealed_at, not_after) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let b = r * 8;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
    }
    sql
}

/// Binds every envelope of `$rows` of secret `$secret` to the query `$q`.
macro_rules! bind_envelopes {
    ($q:expr, $secret:expr, $rows:expr) => {{
        let mut q = $q;
        for e in $rows {
            q = q
                .bind(e.device_id)
                .bind($secret)
                .bind(e.version)
                .bind(e.meta_json)
                .bind(e.signature)
                .bind(e.ciphertext)
                .bind(e.sealed_at)
                .bind(e.not_after);
        }
        q
    }};
}

impl Envelopes<'_> {
    /// Stores the envelope of `secret` for `e.device_id`, replacing the one it had.
    pub async fn upsert(&mut self, secret: &str, e: &NewEnvelope<'_>) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO envelopes (device_id, secret, version, meta_json, signature, ciphertext, sealed_at, not_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (device_id, secret) DO UPDATE SET version = excluded.version, meta_json = excluded.meta_json,
               signature = excluded.signature, ciphertext = excluded.ciphertext, sealed_at = excluded.sealed_at,
               not_after = excluded.not_after",
            e.device_id,
            secret,
            e.version,
            e.meta_json,
            e.signature,
            e.ciphertext,
            e.sealed_at,
            e.not_after
        )?;
        Ok(())
    }

    /// Inserts envelopes of `secret` (none of these devices may hold one), in
    /// multi-row statements.
    pub async fn insert_many(&mut self, secret: &str, rows: &[NewEnvelope<'_>]) -> Result<()> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = insert_sql(chunk.len());
            match self.0.reborrow() {
                Db::LitePool(_) => {
                    return Err(crate::error::Error::Corrupt(
                        "envelopes are written inside a unit of work".into(),
                    ))
                }
                Db::Lite(c) => {
                    let mut args: Vec<&dyn rusqlite::types::ToSql> =
                        Vec::with_capacity(chunk.len() * 8);
                    for e in chunk {
                        args.extend([
                            &e.device_id as &dyn rusqlite::types::ToSql,
                            &secret,
                            &e.version,
                            &e.meta_json,
                            &e.signature,
                            &e.ciphertext,
                            &e.sealed_at,
                            &e.not_after,
                        ]);
                    }
                    super::lite::exec(c, &sql, &args)?;
                }
                Db::PgPool(c) => {
                    bind_envelopes!(sqlx::query(AssertSqlSafe(sql)), secret, chunk)
                        .execute(c)
                        .await?;
                }
                Db::Pg(c) => {
                    bind_envelopes!(sqlx::query(AssertSqlSafe(sql)), secret, chunk)
                        .execute(c)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The users whose devices hold an envelope of `secret`.
    pub async fn holder_users(&mut self, secret: &str) -> Result<Vec<String>> {
        Ok(scalar!(
            self.0,
            fetch_all,
            String,
            "SELECT DISTINCT d.user_name FROM envelopes e JOIN devices d ON d.id = e.device_id WHERE e.secret = $1",
            secret
        )?)
    }

    /// Deletes every envelope of `secret`.
    pub async fn delete_for_secret(&mut self, secret: &str) -> Result<()> {
        exec!(self.0, "DELETE FROM envelopes WHERE secret = $1", secret)?;
        Ok(())
    }

    /// What a device holds: (secret, version).
    pub async fn held_by(&mut self, device_id: &str) -> Result<Vec<(String, i64)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64),
            "SELECT secret, version FROM envelopes WHERE device_id = $1",
            device_id
        )?)
    }

    /// What a device holds: (secret, version, not after).
    pub async fn validity_of(&mut self, device_id: &str) -> Result<Vec<(String, i64, Ts)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, i64, Ts),
            "SELECT secret, version, not_after FROM envelopes WHERE device_id = $1",
            device_id
        )?)
    }

    /// A device's envelopes, by secret: (secret, meta_json, signature, ciphertext).
    pub async fn of_device(
        &mut self,
        device_id: &str,
    ) -> Result<Vec<(String, String, String, String)>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            (String, String, String, String),
            "SELECT secret, meta_json, signature, ciphertext FROM envelopes WHERE device_id = $1 ORDER BY secret",
            device_id
        )?)
    }

    /// Deletes every envelope of a device.
    pub async fn delete_for_device(&mut self, device_id: &str) -> Result<()> {
        exec!(
            self.0,
            "DELETE FROM envelopes WHERE device_id = $1",
            device_id
        )?;
        Ok(())
    }

    /// Deletes a device's envelope of `secret`.
    pub async fn delete(&mut self, device_id: &str, secret: &str) -> Result<()> {
        exec!(
            self.0,
            "DELETE FROM envelopes WHERE device_id = $1 AND secret = $2",
            device_id,
            secret
        )?;
        Ok(())
    }

    /// Deletes a device's envelope of `secret` if it is of `version`; false if not.
    pub async fn delete_version(
        &mut self,
        device_id: &str,
        secret: &str,
        version: i64,
    ) -> Result<bool> {
        Ok(exec!(
            self.0,
            "DELETE FROM envelopes WHERE device_id = $1 AND secret = $2 AND version = $3",
            device_id,
            secret,
            version
        )? == 1)
    }

    /// Every envelope's holder, by secret and device.
    pub async fn holders(&mut self) -> Result<Vec<Holder>> {
        Ok(fetch!(
            self.0,
            fetch_all,
            Holder,
            "SELECT e.secret, e.device_id, d.user_name, e.version, d.revoked_at
             FROM envelopes e JOIN devices d ON d.id = e.device_id ORDER BY e.secret, e.device_id"
        )?)
    }

    /// How many active devices hold `secret` at `version`.
    pub async fn count_sealed(&mut self, secret: &str, version: i64) -> Result<i64> {
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "SELECT count(*) FROM envelopes e JOIN devices d ON d.id = e.device_id
             WHERE e.secret = $1 AND e.version = $2 AND d.revoked_at IS NULL",
            secret,
            version
        )?)
    }

    // issue 14: quorum
    /// The signed metadata of every envelope of `secret` at `version` (the share
    /// indexes already dealt to people).
    pub async fn metas_of(&mut self, secret: &str, version: i64) -> Result<Vec<String>> {
        Ok(scalar!(
            self.0,
            fetch_all,
            String,
            "SELECT meta_json FROM envelopes WHERE secret = $1 AND version = $2 ORDER BY device_id",
            secret,
            version
        )?)
    }
}
