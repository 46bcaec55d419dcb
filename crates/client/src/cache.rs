//! The desktop app's local cache: a SQLite file in the app data dir holding what the
//! UI shows (bundles, my requests, approvals waiting on me, my live grants), the
//! favourites, the sync state, the outbox of actions taken offline, and for offline
//! break glass the sealed envelopes (ciphertext), the device's pending signed unlock
//! records and the device's public data. Never a token, never a credential, never a
//! private key or passphrase.
//!
//! Keys of the `kv` table that start with [`KEEP_PREFIX`] hold a device enrolment's
//! state (per broker and user) and, like the `unlock_chain` table, survive
//! [`Cache::clear`]: signing out must not lose unlock records the broker has not
//! acknowledged yet. So do this device's preferences ([`PREF_PREFIX`]) and the record of
//! which events were already notified (the `notified` table).

use chrono::{DateTime, Utc};
use firedoor_core::api::{BundleView, GrantView, IncidentView, RequestView};
use firedoor_core::breakglass::{Envelope, EnvelopeItem, SignedRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("local cache: {0}")]
    Db(#[from] sqlx::Error),
    #[error("local cache is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, CacheError>;

/// An action taken while the broker was unreachable, sent once when it is back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OutboxItem {
    pub id: String,
    /// `request`, `revoke` or `revoke_token` (sign-out while offline).
    pub kind: String,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub bundle: Option<String>,
    pub grant_id: Option<String>,
    /// The JSON body to send (for `request`), kept locally only.
    #[serde(skip)]
    pub payload: String,
    /// Sent as `Idempotency-Key`, so a replay after a crash creates nothing twice.
    #[serde(skip)]
    pub idempotency_key: String,
}

/// Which list a cached item belongs to.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Bundles,
    MyRequests,
    Approvals,
    Grants,
    Incidents,
}

impl List {
    fn as_str(self) -> &'static str {
        match self {
            List::Bundles => "bundles",
            List::MyRequests => "my_requests",
            List::Approvals => "approvals",
            List::Grants => "grants",
            List::Incidents => "incidents",
        }
    }
}

pub struct Cache {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (list TEXT NOT NULL, id TEXT NOT NULL, pos INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (list, id));
CREATE TABLE IF NOT EXISTS favourites (bundle TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, summary TEXT NOT NULL,
    created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, bundle TEXT, grant_id TEXT,
    payload TEXT NOT NULL, idempotency_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS envelopes (name TEXT PRIMARY KEY, pos INTEGER NOT NULL, title TEXT NOT NULL,
    description TEXT NOT NULL, envelope TEXT NOT NULL, fetched_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unlock_chain (account TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (account, seq));
CREATE TABLE IF NOT EXISTS notified (key TEXT PRIMARY KEY, at TEXT NOT NULL);
";

/// How many notified events [`Cache::first_notice`] remembers (the oldest go first).
pub const NOTIFIED_KEPT: i64 = 2000;

/// `kv` keys with this prefix survive [`Cache::clear`] (device enrolment state).
pub const KEEP_PREFIX: &str = "bg/";

/// `kv` keys with this prefix are this device's preferences (the global shortcut):
/// they survive [`Cache::clear`] too.
pub const PREF_PREFIX: &str = "pref/";

/// A sealed envelope as cached. A damaged row still names its secret, so the UI can
/// say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEnvelope {
    pub name: String,
    pub title: String,
    pub description: String,
    pub fetched_at: Option<DateTime<Utc>>,
    /// The envelope, or why it cannot be read.
    pub envelope: std::result::Result<Envelope, String>,
}

fn corrupt(e: impl std::fmt::Display) -> CacheError {
    CacheError::Corrupt(e.to_string())
}

async fn kv_set(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    match value {
        Some(v) => sqlx::query(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(v)
        .execute(&mut **tx)
        .await?,
        None => sqlx::query("DELETE FROM kv WHERE key = ?")
            .bind(key)
            .execute(&mut **tx)
            .await?,
    };
    Ok(())
}

type EnvelopeRow = (String, String, String, String, String);

fn envelope_row(r: EnvelopeRow) -> CachedEnvelope {
    let (name, title, description, envelope, fetched_at) = r;
    CachedEnvelope {
        name,
        title,
        description,
        fetched_at: DateTime::parse_from_rfc3339(&fetched_at)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        envelope: serde_json::from_str(&envelope)
            .map_err(|e| format!("the cached envelope is unreadable ({e})")),
    }
}

impl Cache {
    /// Opens (creating) the cache file.
    pub async fn open(path: &Path) -> Result<Cache> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(corrupt)?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Cache { pool })
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM kv WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set(&self, key: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => {
                sqlx::query("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(v)
                    .execute(&self.pool)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM kv WHERE key = ?")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn get_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .get(key)
            .await?
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    pub async fn set_time(&self, key: &str, t: Option<DateTime<Utc>>) -> Result<()> {
        self.set(key, t.map(|t| t.to_rfc3339()).as_deref()).await
    }

    /// Replaces a whole list; says whether it changed (a list identical to the stored
    /// one, as most periodic syncs bring, writes nothing).
    pub async fn put_list<T: Serialize>(
        &self,
        list: List,
        items: &[T],
        id_of: impl Fn(&T) -> String,
    ) -> Result<bool> {
        let rows = items
            .iter()
            .map(|item| Ok((id_of(item), serde_json::to_string(item).map_err(corrupt)?)))
            .collect::<Result<Vec<(String, String)>>>()?;
        // The same list as stored (the usual case of a periodic sync): nothing to write.
        // Read outside the write transaction: a transaction that reads first and then
        // writes cannot wait for another writer (SQLite answers "database is locked"
        // at once), while one that starts by writing waits its busy timeout.
        let stored: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM items WHERE list = ? ORDER BY pos")
                .bind(list.as_str())
                .fetch_all(&self.pool)
                .await?;
        if stored == rows {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM items WHERE list = ?")
            .bind(list.as_str())
            .execute(&mut *tx)
            .await?;
        for (pos, (id, body)) in rows.iter().enumerate() {
            sqlx::query("INSERT OR REPLACE INTO items (list, id, pos, body) VALUES (?, ?, ?, ?)")
                .bind(list.as_str())
                .bind(id)
                .bind(pos as i64)
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn list<T: DeserializeOwned>(&self, list: List) -> Result<Vec<T>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT body FROM items WHERE list = ? ORDER BY pos")
                .bind(list.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|b| serde_json::from_str(b).map_err(corrupt))
            .collect()
    }

    pub async fn bundles(&self) -> Result<Vec<BundleView>> {
        self.list(List::Bundles).await
    }
    pub async fn my_requests(&self) -> Result<Vec<RequestView>> {
        self.list(List::MyRequests).await
    }
    pub async fn approvals(&self) -> Result<Vec<RequestView>> {
        self.list(List::Approvals).await
    }
    pub async fn grants(&self) -> Result<Vec<GrantView>> {
        self.list(List::Grants).await
    }
    pub async fn incidents(&self) -> Result<Vec<IncidentView>> {
        self.list(List::Incidents).await
    }

    pub async fn favourites(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT bundle FROM favourites ORDER BY bundle")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn set_favourite(&self, bundle: &str, on: bool) -> Result<()> {
        let q = if on {
            "INSERT OR IGNORE INTO favourites (bundle) VALUES (?)"
        } else {
            "DELETE FROM favourites WHERE bundle = ?"
        };
        sqlx::query(q).bind(bundle).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn push_outbox(&self, item: &OutboxItem) -> Result<()> {
        sqlx::query(
            "INSERT INTO outbox (id, kind, summary, created_at, attempts, last_error, bundle, grant_id, payload, idempotency_key)
             VALUES (?, ?, ?, ?, 0, NULL, ?, ?, ?, ?)",
        )
        .bind(&item.id)
        .bind(&item.kind)
        .bind(&item.summary)
        .bind(item.created_at.to_rfc3339())
        .bind(&item.bundle)
        .bind(&item.grant_id)
        .bind(&item.payload)
        .bind(&item.idempotency_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox(&self) -> Result<Vec<OutboxItem>> {
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, kind, summary, created_at, attempts, last_error, bundle, grant_id, payload, idempotency_key
             FROM outbox ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.0,
                    kind: r.1,
                    summary: r.2,
                    created_at: DateTime::parse_from_rfc3339(&r.3)
                        .map_err(corrupt)?
                        .with_timezone(&Utc),
                    attempts: r.4,
                    last_error: r.5,
                    bundle: r.6,
                    grant_id: r.7,
                    payload: r.8,
                    idempotency_key: r.9,
                })
            })
            .collect()
    }

    pub async fn remove_outbox(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_failed(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets several keys in one transaction (`None` deletes).
    pub async fn set_many(&self, entries: &[(&str, Option<&str>)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (k, v) in entries {
            kv_set(&mut tx, k, *v).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the cached envelopes.
    pub async fn put_envelopes(
        &self,
        items: &[EnvelopeItem],
        fetched_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM envelopes")
            .execute(&mut *tx)
            .await?;
        for (pos, item) in items.iter().enumerate() {
            sqlx::query(
                "INSERT OR REPLACE INTO envelopes (name, pos, title, description, envelope, fetched_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&item.name)
            .bind(pos as i64)
            .bind(&item.title)
            .bind(&item.description)
            .bind(serde_json::to_string(&item.envelope).map_err(corrupt)?)
            .bind(fetched_at.to_rfc3339())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The cached envelopes, in the broker's order.
    pub async fn envelopes(&self) -> Result<Vec<CachedEnvelope>> {
        let rows: Vec<EnvelopeRow> = sqlx::query_as(
            "SELECT name, title, description, envelope, fetched_at FROM envelopes ORDER BY pos, name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(envelope_row).collect())
    }

    pub async fn envelope(&self, name: &str) -> Result<Option<CachedEnvelope>> {
        let row: Option<EnvelopeRow> = sqlx::query_as(
            "SELECT name, title, description, envelope, fetched_at FROM envelopes WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(envelope_row))
    }

    /// How many unlock records of an account await the broker's acknowledgement.
    pub async fn unlock_record_count(&self, account: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM unlock_chain WHERE account = ?")
            .bind(account)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// An account's pending unlock records by `seq` (each parsed, or why it does not
    /// parse) and some `kv` values (the chain's acknowledged head and tip), read in
    /// one transaction: a consistent view even while an acknowledgement is written.
    #[allow(clippy::type_complexity)]
    pub async fn unlock_chain_view(
        &self,
        account: &str,
        keys: &[&str],
    ) -> Result<(
        Vec<(i64, std::result::Result<SignedRecord, String>)>,
        Vec<Option<String>>,
    )> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, record FROM unlock_chain WHERE account = ? ORDER BY seq")
                .bind(account)
                .fetch_all(&mut *tx)
                .await?;
        let mut values = Vec::with_capacity(keys.len());
        for k in keys {
            values.push(
                sqlx::query_scalar("SELECT value FROM kv WHERE key = ?")
                    .bind(k)
                    .fetch_optional(&mut *tx)
                    .await?,
            );
        }
        tx.rollback().await?;
        let records = rows
            .into_iter()
            .map(|(seq, r)| (seq, serde_json::from_str(&r).map_err(|e| e.to_string())))
            .collect();
        Ok((records, values))
    }

    /// Appends a record and sets `kv` entries (the chain tip) in one transaction: the
    /// record is on disk before anything that depends on it happens.
    pub async fn append_unlock_record(
        &self,
        account: &str,
        seq: u64,
        record: &SignedRecord,
        kv: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO unlock_chain (account, seq, record) VALUES (?, ?, ?)")
            .bind(account)
            .bind(i64::try_from(seq).map_err(corrupt)?)
            .bind(serde_json::to_string(record).map_err(corrupt)?)
            .execute(&mut *tx)
            .await?;
        for (k, v) in kv {
            kv_set(&mut tx, k, *v).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops an account's records up to `seq` (the broker has them) and sets `kv`
    /// entries (the acknowledged head) in one transaction.
    pub async fn ack_unlock_records(
        &self,
        account: &str,
        up_to_seq: u64,
        kv: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM unlock_chain WHERE account = ? AND seq <= ?")
            .bind(account)
            .bind(i64::try_from(up_to_seq).map_err(corrupt)?)
            .execute(&mut *tx)
            .await?;
        for (k, v) in kv {
            kv_set(&mut tx, k, *v).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the cache (sign-out, or signing in as someone else), except device
    /// enrolment state and unlock records (see the module docs).
    pub async fn clear(&self) -> Result<()> {
        sqlx::query(
            "DELETE FROM kv WHERE substr(key, 1, length(?)) <> ? AND substr(key, 1, length(?)) <> ?",
        )
        .bind(KEEP_PREFIX)
        .bind(KEEP_PREFIX)
        .bind(PREF_PREFIX)
        .bind(PREF_PREFIX)
        .execute(&self.pool)
        .await?;
        // A token revocation queued at sign-out outlives the session it ended.
        sqlx::raw_sql(
            "DELETE FROM items; DELETE FROM favourites; DELETE FROM outbox WHERE kind <> 'revoke_token'; DELETE FROM envelopes;",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that the event named `key` was told to the person (a desktop
    /// notification) and returns whether it is the first time. The record outlives
    /// restarts and [`Cache::clear`] (a demo restart signs in again, which clears the
    /// cache and replays recent events): keys are made of broker ids, which name
    /// nothing personal. The newest [`NOTIFIED_KEPT`] are kept.
    pub async fn first_notice(&self, key: &str, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("INSERT OR IGNORE INTO notified (key, at) VALUES (?, ?)")
            .bind(key)
            .bind(at.to_rfc3339())
            .execute(&mut *tx)
            .await?;
        let first = done.rows_affected() == 1;
        if first {
            sqlx::query(
                "DELETE FROM notified WHERE key NOT IN (SELECT key FROM notified ORDER BY at DESC, key LIMIT ?)",
            )
            .bind(NOTIFIED_KEPT)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(first)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
