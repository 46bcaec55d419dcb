//! The audit log's anchor outside the database: an append-only file of signed heads
//! (`DATA_DIR/audit-anchor.log` by default; `--audit-anchor PATH` puts it on another
//! disk), one JSON [`SignedHead`] per line. The broker appends its head at start,
//! at least every minute while records are written, and at shutdown. The file is
//! only ever opened with `O_APPEND` and never rewritten.
//!
//! An attacker who can write the database but not this file cannot roll the log
//! back (delete its end, or restore an old copy) past the last anchored head: the
//! database must still hold every anchored `(seq, hash)`, which `audit verify` and
//! every broker start check (see [`firedoor_core::audit::check_anchor`]).

use crate::error::{Error, Result};
use crate::store::Store;
use ed25519_dalek::VerifyingKey;
use firedoor_core::audit::{check_anchor, RollbackError, SignedHead};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The anchor file's name in the data directory.
pub const DEFAULT_FILE: &str = "audit-anchor.log";

/// `explicit`, or `<data_dir>/audit-anchor.log`.
pub fn path(data_dir: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(DEFAULT_FILE))
}

/// Reads every anchored head, in file order. A missing file has none. A last line
/// without its newline is a write torn by a crash and is skipped; any other line
/// that is not a signed head is an error naming it.
pub fn read(path: &Path) -> Result<Vec<SignedHead>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Config(format!(
                "reading the audit anchor {}: {e}",
                path.display()
            )))
        }
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SignedHead>(line) {
            Ok(h) => out.push(h),
            Err(_) if i + 1 == lines.len() && !complete => {
                tracing::warn!(path = %path.display(), line = i + 1, "the audit anchor's last line is incomplete (a crash while writing it); ignored");
            }
            Err(e) => {
                return Err(Error::Config(format!(
                    "{} line {}: not a signed audit head ({e})",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// The anchor file, open for appending.
pub struct AnchorLog {
    path: PathBuf,
    file: std::fs::File,
    last_seq: i64,
}

impl AnchorLog {
    /// Opens (creating, mode 0600) the anchor file with `O_APPEND`. `last_seq` is the
    /// highest seq already anchored (heads at or below it are not written again).
    pub fn open(path: &Path, last_seq: i64) -> Result<AnchorLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path).map_err(|e| {
            Error::Config(format!(
                "opening the audit anchor {} for appending: {e}",
                path.display()
            ))
        })?;
        Ok(AnchorLog {
            path: path.to_path_buf(),
            file,
            last_seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `head` (one write of one line, then fsync) unless it is not newer
    /// than the last head anchored. Returns whether it wrote.
    pub fn append(&mut self, head: &SignedHead) -> Result<bool> {
        if head.seq <= self.last_seq {
            return Ok(false);
        }
        let mut line = serde_json::to_string(head).map_err(|e| Error::Corrupt(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.last_seq = head.seq;
        Ok(true)
    }

    /// Appends the database's current head if it moved since the last one.
    pub async fn anchor_now(
        &mut self,
        store: &Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        match crate::audit::head(store, now).await? {
            Some(h) => self.append(&h),
            None => Ok(false),
        }
    }
}

/// A problem found by comparing the database with the anchor file.
#[derive(Debug, thiserror::Error)]
#[error("{file} line {line}: {problem}")]
pub struct AnchorMismatch {
    pub file: String,
    pub line: usize,
    pub problem: RollbackError,
}

/// Checks the database against anchored heads: each must be signed by `key`, the
/// log must reach it and hold its hash at its seq. `all` checks every line (for
/// `audit verify`); otherwise only the head with the highest seq (at start: it
/// covers every earlier record, since its hash commits to them).
pub async fn check(
    store: &Store,
    path: &Path,
    anchors: &[SignedHead],
    key: &VerifyingKey,
    all: bool,
) -> Result<Result<(), AnchorMismatch>> {
    let log_head = store.audit().max_seq().await?;
    let mut chosen: Vec<(usize, &SignedHead)> = anchors.iter().enumerate().collect();
    if !all {
        chosen = chosen
            .into_iter()
            .max_by_key(|(_, h)| h.seq)
            .into_iter()
            .collect();
    }
    for (i, h) in chosen {
        let at = store.audit().hash_at(h.seq).await?;
        if let Err(problem) = check_anchor(h, key, log_head, at.as_deref()) {
            return Ok(Err(AnchorMismatch {
                file: path.display().to_string(),
                line: i + 1,
                problem,
            }));
        }
    }
    Ok(Ok(()))
}
