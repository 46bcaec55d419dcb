//! The audit table: appends (chained by the caller, see [`crate::audit`]), reads
//! in order, and the facts verification needs.

use super::Db;
use crate::error::Result;
use firedoor_core::audit::AuditRecord;

pub struct Audit<'a>(pub(crate) Db<'a>);

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
);

fn to_record(r: Row) -> AuditRecord {
    AuditRecord {
        seq: r.0,
        at: r.1,
        actor: r.2,
        action: r.3,
        subject: r.4,
        details: r.5,
        prev_hash: r.6,
        hash: r.7,
        signature: r.8,
    }
}

impl Audit<'_> {
    /// Inserts `r` if the last record's hash is still `head` (checked in the same
    /// statement); false if another writer moved the head.
    pub async fn append_if_head(&mut self, r: &AuditRecord, head: &str) -> Result<bool> {
        let n = exec!(
            self.0,
            "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
             WHERE (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) = $10",
            r.seq,
            &r.at,
            &r.actor,
            &r.action,
            &r.subject,
            &r.details,
            &r.prev_hash,
            &r.hash,
            &r.signature,
            head,
        )?;
        Ok(n == 1)
    }

    pub async fn append(&mut self, r: &AuditRecord) -> Result<()> {
        exec!(
            self.0,
            "INSERT INTO audit (seq, at, actor, action, subject, details, prev_hash, hash, signature)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            r.seq,
            &r.at,
            &r.actor,
            &r.action,
            &r.subject,
            &r.details,
            &r.prev_hash,
            &r.hash,
            &r.signature,
        )?;
        Ok(())
    }

    /// The last record's (seq, hash).
    pub async fn last(&mut self) -> Result<Option<(i64, String)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (i64, String),
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
        )?)
    }

    /// The last record's (seq, hash, signature).
    pub async fn head(&mut self) -> Result<Option<(i64, String, Option<String>)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (i64, String, Option<String>),
            "SELECT seq, hash, signature FROM audit ORDER BY seq DESC LIMIT 1"
        )?)
    }

    /// Record `seq`'s (seq, hash, signature).
    pub async fn head_at(&mut self, seq: i64) -> Result<Option<(i64, String, Option<String>)>> {
        Ok(fetch!(
            self.0,
            fetch_optional,
            (i64, String, Option<String>),
            "SELECT seq, hash, signature FROM audit WHERE seq = $1",
            seq
        )?)
    }

    /// Records in order, `after` exclusive, at most `limit`.
    pub async fn records(&mut self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = fetch!(
            self.0,
            fetch_all,
            Row,
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash, signature FROM audit
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            after,
            limit
        )?;
        Ok(rows.into_iter().map(to_record).collect())
    }

    /// The highest seq ever written, as the store remembers it apart from the
    /// records (SQLite's AUTOINCREMENT counter; PostgreSQL's `audit_high`).
    pub async fn high_water(&mut self) -> Result<Option<i64>> {
        Ok(if self.0.is_postgres() {
            scalar!(self.0, fetch_optional, i64, "SELECT seq FROM audit_high")?
        } else {
            scalar!(
                self.0,
                fetch_optional,
                i64,
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
            )?
        })
    }

    /// The highest seq in the log (0 when empty).
    pub async fn max_seq(&mut self) -> Result<i64> {
        Ok(scalar!(
            self.0,
            fetch_one,
            i64,
            "SELECT COALESCE(MAX(seq), 0) FROM audit"
        )?)
    }

    /// The hash of record `seq`.
    pub async fn hash_at(&mut self, seq: i64) -> Result<Option<String>> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            String,
            "SELECT hash FROM audit WHERE seq = $1",
            seq
        )?)
    }

    /// Whether any record is signed.
    pub async fn any_signed(&mut self) -> Result<bool> {
        Ok(scalar!(
            self.0,
            fetch_optional,
            i64,
            "SELECT CAST(1 AS BIGINT) FROM audit WHERE signature IS NOT NULL LIMIT 1"
        )?
        .is_some())
    }

    /// Signs an unsigned record whose hash is still `hash`.
    pub async fn set_signature(&mut self, seq: i64, hash: &str, signature: &str) -> Result<bool> {
        let n = exec!(
            self.0,
            "UPDATE audit SET signature = $1 WHERE seq = $2 AND hash = $3 AND signature IS NULL",
            signature,
            seq,
            hash
        )?;
        Ok(n == 1)
    }
}

/// Signs the audit records a SQLite write transaction appended: the last one, as
/// it commits, so that each commit ends on a signed record whose signature vouches
/// for the records before it (see [`firedoor_core::audit::verify_signed_chain`]).
/// Installed by [`super::Store::set_signer`]; the store runs it through
/// [`super::lite::Lite::set_commit_hook`], one write transaction at a time.
///
/// It signs only what the transaction appended, and only onto a signed head: if the
/// log ended on an unsigned record when the transaction began, that record was
/// added by someone without the broker key (every commit of a writer with the key
/// ends signed; a log from before signatures is signed at the first start, see
/// [`crate::audit::sign_legacy`]). Signing after it would vouch for it, so the new
/// records are left unsigned: the log then fails `audit verify` from the foreign
/// record on, and the error is logged.
pub(crate) struct SignCommits {
    key: std::sync::Arc<ed25519_dalek::SigningKey>,
    /// The head when the transaction began: its seq (0: empty log), and whether new
    /// records may be signed.
    began: std::sync::Mutex<(i64, bool)>,
}

impl SignCommits {
    pub(crate) fn new(key: std::sync::Arc<ed25519_dalek::SigningKey>) -> SignCommits {
        SignCommits {
            key,
            began: std::sync::Mutex::new((0, false)),
        }
    }
}

/// The log ended on record `seq`, unsigned, when a writer with the key went to
/// append: someone without the key added it. The writer leaves its own records
/// unsigned rather than vouch for it (on SQLite [`SignCommits`], on PostgreSQL the
/// chaining round), counts an append failure (the shipped alert rule fires) and
/// says so.
pub(crate) fn not_vouching_for(seq: i64) {
    crate::metrics::audit_append_failed();
    tracing::error!(
        record = seq,
        "AUDIT LOG TAMPERED: it ends on an unsigned record no broker wrote; the records \
         after it are left unsigned (run `firedoor-server audit verify`)"
    );
}

fn last_record(conn: &rusqlite::Connection) -> Result<Option<(i64, String, Option<String>)>> {
    super::lite::fetch_optional(
        conn,
        "SELECT seq, hash, signature FROM audit ORDER BY seq DESC LIMIT 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

impl super::lite::CommitHook for SignCommits {
    fn begun(&self, conn: &rusqlite::Connection) -> Result<()> {
        let began = match last_record(conn)? {
            None => (0, true),
            Some((seq, _, sig)) => (seq, sig.is_some()),
        };
        *self.began.lock().unwrap_or_else(|p| p.into_inner()) = began;
        Ok(())
    }

    fn committing(&self, conn: &rusqlite::Connection) -> Result<()> {
        let (began_at, signed) = *self.began.lock().unwrap_or_else(|p| p.into_inner());
        let Some((seq, hash, None)) = last_record(conn)? else {
            return Ok(());
        };
        if seq <= began_at {
            return Ok(());
        }
        if !signed {
            not_vouching_for(began_at);
            return Ok(());
        }
        let sig = firedoor_core::audit::sign_head(&self.key, seq, &hash);
        super::lite::exec(
            conn,
            "UPDATE audit SET signature = $1 WHERE seq = $2",
            &[&sig, &seq],
        )?;
        Ok(())
    }
}
