//! The embedded store: one SQLite file in WAL mode, migrations in
//! `migrations/sqlite`. One writer at a time: `BEGIN IMMEDIATE` takes the write
//! lock up front, so a read-then-write inside a unit of work cannot be overtaken by
//! another writer (a deferred BEGIN would fail such a transaction with SQLITE_BUSY).
//! Statements run through [`super::lite`]; sqlx only brings the schema up to date.

use super::lite::Lite;
use crate::error::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Opens (creating if needed) the database file and brings its schema up to date.
pub async fn open(path: &Path) -> Result<Arc<Lite>> {
    let opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    let migrated = sqlx::migrate!("./migrations/sqlite").run(&pool).await;
    pool.close().await;
    migrated?;
    Lite::open(path)
}
