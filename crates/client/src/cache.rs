//! The desktop app's local cache: a SQLite file in the app data dir holding what the
//! UI shows (bundles, my requests, approvals waiting on me, my live grants), the
//! favourites, the sync state and the outbox of actions taken offline. Never a token,
//! never a credential.

use chrono::{DateTime, Utc};
use firedoor_core::api::{BundleView, GrantView, RequestView};
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
pub struct OutboxItem {
    pub id: String,
    /// `request` or `revoke`.
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
}

impl List {
    fn as_str(self) -> &'static str {
        match self {
            List::Bundles => "bundles",
            List::MyRequests => "my_requests",
            List::Approvals => "approvals",
            List::Grants => "grants",
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
";

fn corrupt(e: impl std::fmt::Display) -> CacheError {
    CacheError::Corrupt(e.to_string())
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

    /// Replaces a whole list.
    pub async fn put_list<T: Serialize>(
        &self,
        list: List,
        items: &[T],
        id_of: impl Fn(&T) -> String,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM items WHERE list = ?")
            .bind(list.as_str())
            .execute(&mut *tx)
            .await?;
        for (pos, item) in items.iter().enumerate() {
            sqlx::query("INSERT OR REPLACE INTO items (list, id, pos, body) VALUES (?, ?, ?, ?)")
                .bind(list.as_str())
                .bind(id_of(item))
                .bind(pos as i64)
                .bind(serde_json::to_string(item).map_err(corrupt)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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

    /// Forgets everything (sign-out, or signing in as someone else).
    pub async fn clear(&self) -> Result<()> {
        sqlx::raw_sql(
            "DELETE FROM kv; DELETE FROM items; DELETE FROM favourites; DELETE FROM outbox;",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
