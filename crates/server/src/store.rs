//! The broker's database: SQLite in WAL mode, migrations embedded.

use crate::error::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A write transaction. Inside one broker, writers also queue on an async lock so
/// they wait their turn without SQLite's sleep-and-retry busy handler; across
/// processes (the CLI beside a running broker) `BEGIN IMMEDIATE` and the busy
/// timeout keep them apart.
pub struct Tx {
    inner: Transaction<'static, Sqlite>,
    _turn: Option<OwnedMutexGuard<()>>,
    /// The last audit record this process wrote (seq, hash): a hint that saves a
    /// read per append. It is checked against the table in the insert itself.
    pub(crate) audit_head: Option<AuditHead>,
    /// The key that signs audit records appended in this transaction.
    pub(crate) audit_key: Option<Arc<ed25519_dalek::SigningKey>>,
}

pub type AuditHead = Arc<std::sync::Mutex<Option<(i64, String)>>>;

impl Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.inner
    }
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        let timer = crate::metrics::store_timer("commit");
        self.inner.commit().await?;
        timer.done();
        Ok(())
    }
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub async fn open(path: &Path) -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// A write transaction that takes the write lock up front, so a read-then-write
/// inside it cannot be overtaken by another writer (SQLite's deferred BEGIN would
/// fail such a transaction with SQLITE_BUSY instead).
pub async fn write_tx(pool: &SqlitePool) -> Result<Tx> {
    Ok(Tx {
        inner: pool.begin_with("BEGIN IMMEDIATE").await?,
        _turn: None,
        audit_head: None,
        audit_key: crate::audit::signer_for(pool),
    })
}

/// As [`write_tx`], first waiting for this process's turn on `lock`.
pub async fn write_tx_queued(
    pool: &SqlitePool,
    lock: &Arc<Mutex<()>>,
    audit_head: &AuditHead,
) -> Result<Tx> {
    let turn = lock.clone().lock_owned().await;
    Ok(Tx {
        inner: pool.begin_with("BEGIN IMMEDIATE").await?,
        _turn: Some(turn),
        audit_head: Some(audit_head.clone()),
        audit_key: crate::audit::signer_for(pool),
    })
}
