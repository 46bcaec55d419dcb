//! The broker's error type. Rule errors carry a stable code for the client; anything
//! else is internal: logged with context, returned without its text.

use firedoor_core::{ErrorCode, RuleError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0}")]
    Lite(rusqlite::Error),
    #[error("database commit failed: {0}")]
    Commit(String),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Connector(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn rule(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Rule(RuleError::new(code, message))
    }
    pub fn not_found(what: &str) -> Self {
        Self::rule(ErrorCode::NotFound, format!("no such {what}"))
    }
}
