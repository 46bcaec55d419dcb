//! The broker's store: the only place with SQL. Two backends sit behind one
//! [`Store`] handle, chosen by the database URL:
//!
//! - SQLite (`sqlite://PATH`, the default: `DATA_DIR/firedoor.db`): embedded, WAL,
//!   one writer at a time (an in-process queue in front of `BEGIN IMMEDIATE`),
//!   statements run in place and queued units of work committed together (see
//!   [`lite`]);
//! - PostgreSQL (`postgres://…`): the shared store of several broker replicas. A
//!   write transaction takes transaction-scoped advisory locks first: the hot
//!   lifecycle steps lock only their own request or grant, everything else runs
//!   alone, so every read-then-write inside a unit of work, every compare-and-set
//!   and every claim of due work is serialised where it must be. Audit records and
//!   events are chained by rounds after the commit, in one line across replicas,
//!   and LISTEN/NOTIFY carries "events were written" to the other replicas (see
//!   [`postgres`]).
//!
//! The SQL text is shared: it is written once with `$N` placeholders (which SQLite
//! understands too) and types both backends map the same way ([`Ts`] for times,
//! `i64` for integers and flags, `Vec<u8>` for sealed values). The aggregate modules
//! ([`audit`], [`users`], …) expose methods named by intent over domain types; the
//! operations never see a pool or a connection.

#[macro_use]
pub mod lite;
pub mod postgres;
pub mod sqlite;
mod ts;

pub use ts::Ts;

use crate::error::{Error, Result};
use ed25519_dalek::SigningKey;
use sqlx::{PgConnection, PgPool};
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Runs one statement on a [`Db`] and returns the rows it changed.
macro_rules! exec {
    ($db:expr, $sql:expr $(, $arg:expr)* $(,)?) => {{
        let sql = $sql;
        match $db.reborrow() {
            $crate::store::Db::LitePool(l) => $crate::store::lite::write(l, |c| $crate::store::lite::exec(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*])).await,
            $crate::store::Db::Lite(c) => $crate::store::lite::exec(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*]),
            $crate::store::Db::PgPool(c) => sqlx::query(sql)$(.bind($arg))*.execute(c).await.map(|r| r.rows_affected()).map_err($crate::error::Error::from),
            $crate::store::Db::Pg(c) => sqlx::query(sql)$(.bind($arg))*.execute(c).await.map(|r| r.rows_affected()).map_err($crate::error::Error::from),
        }
    }};
}

/// Runs one query on a [`Db`] and reads its rows as `$t` (a tuple or a
/// `sqlx::FromRow` struct): `fetch!(db, all|optional|one, T, SQL, args…)`.
macro_rules! fetch {
    ($db:expr, $how:ident, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {{
        let sql = $sql;
        match $db.reborrow() {
            $crate::store::Db::LitePool(l) => l.read(|c| $crate::store::lite::$how(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*], <$t as $crate::store::lite::FromLite>::from_lite)),
            $crate::store::Db::Lite(c) => $crate::store::lite::$how(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*], <$t as $crate::store::lite::FromLite>::from_lite),
            $crate::store::Db::PgPool(c) => sqlx::query_as::<_, $t>(sql)$(.bind($arg))*.$how(c).await.map_err($crate::error::Error::from),
            $crate::store::Db::Pg(c) => sqlx::query_as::<_, $t>(sql)$(.bind($arg))*.$how(c).await.map_err($crate::error::Error::from),
        }
    }};
}

/// As [`fetch!`], reading the first column of each row.
macro_rules! scalar {
    ($db:expr, $how:ident, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {{
        let sql = $sql;
        match $db.reborrow() {
            $crate::store::Db::LitePool(l) => l.read(|c| $crate::store::lite::$how(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*], |r| r.get::<_, $t>(0))),
            $crate::store::Db::Lite(c) => $crate::store::lite::$how(c, $crate::store::lite::SqlText::sql(&sql), &[$(&$arg as &dyn rusqlite::types::ToSql),*], |r| r.get::<_, $t>(0)),
            $crate::store::Db::PgPool(c) => sqlx::query_scalar::<_, $t>(sql)$(.bind($arg))*.$how(c).await.map_err($crate::error::Error::from),
            $crate::store::Db::Pg(c) => sqlx::query_scalar::<_, $t>(sql)$(.bind($arg))*.$how(c).await.map_err($crate::error::Error::from),
        }
    }};
}

pub mod access;
pub mod audit;
pub mod audit_sinks;
pub mod copy;
pub mod devices;
pub mod directory;
pub mod drills;
pub mod envelopes;
pub mod events;
pub mod grants;
pub mod incidents;
pub mod oncall;
pub mod outbound;
pub mod requests;
pub mod secrets;
pub mod ssh;
pub mod sso;
pub mod stats;
pub mod users;
// issue 14: uses
pub mod uses;

/// Where one statement runs: a pool (reads outside a unit of work) or the
/// connection of a write transaction.
pub enum Db<'a> {
    /// SQLite outside a unit of work: reads on an idle read connection, a write
    /// as its own transaction on the writer connection.
    LitePool(&'a Arc<lite::Lite>),
    /// The SQLite writer connection of a unit of work.
    Lite(&'a mut rusqlite::Connection),
    PgPool(&'a PgPool),
    Pg(&'a mut PgConnection),
}

impl Db<'_> {
    /// The same place, borrowed again (a method runs several statements on it).
    pub fn reborrow(&mut self) -> Db<'_> {
        match self {
            Db::LitePool(p) => Db::LitePool(p),
            Db::Lite(c) => Db::Lite(c),
            Db::PgPool(p) => Db::PgPool(p),
            Db::Pg(c) => Db::Pg(c),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::PgPool(_) | Db::Pg(_))
    }
}

/// What a write transaction keeps other writers out of (PostgreSQL; on SQLite
/// there is one writer at a time whatever the scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Anything: the unit runs alone.
    Everything,
    /// Only these items (request or grant ids) besides its audit records and
    /// events, which are chained after its commit. For units that read and write
    /// nothing else but append-only records (see [`postgres`]).
    Only(Vec<String>),
}

/// Shared-scope units of work one process keeps open at once on PostgreSQL at
/// most: half its connections (8 of the default 16, 2 of 5; at least 1), so the
/// other half is left for reads, the unit that runs alone and chaining rounds.
pub const SHARED_UNITS: usize = 8;

/// [`SHARED_UNITS`] for a pool of `connections`.
fn shared_units(connections: u32) -> usize {
    (connections as usize / 2).clamp(1, SHARED_UNITS)
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Pool {
    Sqlite(Arc<lite::Lite>),
    Postgres(PgPool),
}

struct Inner {
    pool: Pool,
    /// What to show for this store in messages (no password).
    display: String,
    /// Signs the audit records this process appends (see [`Store::set_signer`]).
    signer: RwLock<Option<Arc<SigningKey>>>,
    /// Writers of this process take turns here before the database's own lock.
    write_turn: Arc<Mutex<()>>,
    /// Shared-scope units of work of this process open at once (PostgreSQL): at
    /// most half the pool ([`SHARED_UNITS`]), so it always has connections left for reads
    /// (an overloaded replica queues writers here instead of timing out reads).
    shared_slots: Arc<tokio::sync::Semaphore>,
    /// The last audit record this process wrote: a hint checked in the insert.
    audit_head: AuditHead,
    /// This process's chaining rounds (PostgreSQL, see [`Store::chain_pending`]).
    chain: Chain,
    /// This process's copy of the users and on-call facts (see [`directory`]).
    directory: directory::Cached,
}

/// Chaining rounds are numbered; a caller waits for the first round that begins
/// after its commit. One round runs at a time per process: whoever finds none
/// running leads the next, for every caller waiting.
#[derive(Default)]
struct Chain {
    started: std::sync::atomic::AtomicU64,
    finished: std::sync::atomic::AtomicU64,
    leader: Mutex<()>,
    /// A vacuum of the pending tables is under way.
    vacuuming: Arc<std::sync::atomic::AtomicBool>,
}

/// Rounds of one process between two vacuums of the pending tables.
const ROUNDS_PER_VACUUM: u64 = 500;

/// The broker's store. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub type AuditHead = Arc<std::sync::Mutex<Option<(i64, String)>>>;

/// How a database is named on the command line and in `FIREDOOR_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// `sqlite://PATH` (or `sqlite:PATH`), `postgres://…`/`postgresql://…`.
    pub fn parse(url: &str) -> Result<DatabaseUrl> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::pool_size(url)?;
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(Error::Config(
                    "the SQLite database URL names no file: use sqlite:///path/to/firedoor.db"
                        .into(),
                ));
            }
            return Ok(DatabaseUrl::Sqlite(path.into()));
        }
        Err(Error::Config(format!(
            "unsupported database URL '{}': use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        )))
    }
}

/// A database for messages: a path, or a URL without its password.
pub fn describe(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
        DatabaseUrl::Postgres(u) => redact_url(u),
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens (creating a SQLite file if needed) the database and brings its schema
    /// up to date.
    pub async fn open(url: &DatabaseUrl) -> Result<Store> {
        let (pool, display) = match url {
            DatabaseUrl::Sqlite(path) => (
                Pool::Sqlite(sqlite::open(path).await?),
                format!("sqlite://{}", path.display()),
            ),
            DatabaseUrl::Postgres(u) => (Pool::Postgres(postgres::open(u).await?), redact_url(u)),
        };
        let slots = match &pool {
            Pool::Postgres(p) => shared_units(p.options().get_max_connections()),
            // SQLite has one writer connection and its own turn.
            Pool::Sqlite(_) => SHARED_UNITS,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                display,
                signer: RwLock::new(None),
                write_turn: Arc::new(Mutex::new(())),
                shared_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
                audit_head: Arc::default(),
                chain: Chain::default(),
                directory: Default::default(),
            }),
        })
    }

    /// Opens the SQLite file at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Store::open(&DatabaseUrl::Sqlite(path.to_path_buf())).await
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The store for messages: a path or a URL without its password.
    pub fn display(&self) -> &str {
        &self.inner.display
    }

    /// Reads outside a unit of work run on the pool.
    pub fn db(&self) -> Db<'_> {
        match &self.inner.pool {
            Pool::Sqlite(p) => Db::LitePool(p),
            Pool::Postgres(p) => Db::PgPool(p),
        }
    }

    /// Makes `key` sign the audit records this process appends to this store: the
    /// last record of each commit (on SQLite as the commit ends, on PostgreSQL the
    /// last of each chaining round), which vouches for the records before it.
    /// Every writer (the broker, the CLI's user and token commands) loads the key
    /// file and sets it; an append without one fails.
    pub fn set_signer(&self, key: &SigningKey) {
        let key = Arc::new(key.clone());
        if let Pool::Sqlite(lite) = &self.inner.pool {
            lite.set_commit_hook(Arc::new(audit::SignCommits::new(key.clone())));
        }
        *self.inner.signer.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    /// The audit signing key set for this store.
    pub fn signer(&self) -> Option<Arc<SigningKey>> {
        self.inner
            .signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Begins a write transaction (a unit of work). Writers of this process queue
    /// on an async lock first, so they wait their turn without the database's
    /// sleep-and-retry; across processes SQLite's `BEGIN IMMEDIATE` and
    /// PostgreSQL's advisory lock keep them apart.
    pub async fn begin(&self) -> Result<Tx> {
        self.begin_in(Scope::Everything).await
    }

    /// Begins a unit of work that keeps other writers out of `scope` only.
    pub async fn begin_in(&self, scope: Scope) -> Result<Tx> {
        let (conn, turn, slot, shared) = match (&self.inner.pool, &scope) {
            // The SQLite writer connection comes with its own turn.
            (Pool::Sqlite(l), _) => (TxConn::Sqlite(lite::begin(l).await?), None, None, false),
            (Pool::Postgres(p), Scope::Everything) => {
                let turn = self.inner.write_turn.clone().lock_owned().await;
                (
                    TxConn::Pg(postgres::begin(p).await?),
                    Some(turn),
                    None,
                    false,
                )
            }
            (Pool::Postgres(p), Scope::Only(keys)) => {
                // The semaphore is never closed.
                let slot = self
                    .inner
                    .shared_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::Commit("the store is closing".into()))?;
                let conn = TxConn::Pg(postgres::begin_shared(p, keys).await?);
                (conn, None, Some(slot), true)
            }
        };
        Ok(Tx {
            conn,
            _turn: turn,
            _slot: slot,
            shared,
            store: self.clone(),
            pending: Default::default(),
            audit_head: Some(self.inner.audit_head.clone()),
            audit_key: self.signer(),
        })
    }

    /// On PostgreSQL: returns once every audit record and live event committed
    /// before the call is in the signed chain and in `events` (see [`postgres`]).
    /// A unit of work calls it after its commit, so its answer comes after its
    /// records are chained; rounds are shared, so many units cost one round. On
    /// SQLite records are chained in the unit itself: nothing to do.
    pub async fn chain_pending(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let Pool::Postgres(pool) = &self.inner.pool else {
            return Ok(());
        };
        let c = &self.inner.chain;
        // A round that begins after this line reads everything committed before it.
        let need = c.started.load(SeqCst) + 1;
        loop {
            if c.finished.load(SeqCst) >= need {
                return Ok(());
            }
            let _leader = c.leader.lock().await;
            if c.finished.load(SeqCst) >= need {
                return Ok(());
            }
            let round = c.started.fetch_add(1, SeqCst) + 1;
            let timer = crate::metrics::store_timer("chain");
            let key = self.signer().ok_or_else(no_signer)?;
            let r = postgres::begin_round(pool).await?;
            // Signing after a record added without the key would vouch for it.
            if !r.head_signed {
                audit::not_vouching_for(r.head.as_ref().map_or(0, |h| h.0));
            }
            let key = r.head_signed.then_some(&*key);
            let records = crate::audit::chain_records(r.head.clone(), &r.pending, key);
            r.finish(&records).await?;
            timer.done();
            c.finished.store(round, SeqCst);
            if round.is_multiple_of(ROUNDS_PER_VACUUM) && !c.vacuuming.swap(true, SeqCst) {
                let (pool, flag) = (pool.clone(), c.vacuuming.clone());
                tokio::spawn(async move {
                    if let Err(e) = postgres::vacuum_pending(&pool).await {
                        tracing::debug!(error = %e, "vacuum of the pending audit tables");
                    }
                    flag.store(false, SeqCst);
                });
            }
        }
    }

    /// How units of work used the SQLite write turn since the store was opened
    /// (`None` on PostgreSQL, where writers have no such turn).
    pub fn write_turn_stats(&self) -> Option<lite::TurnStats> {
        match &self.inner.pool {
            Pool::Sqlite(l) => Some(l.turn_stats()),
            Pool::Postgres(_) => None,
        }
    }

    /// Audit records committed but not yet chained (PostgreSQL; 0 on SQLite).
    pub async fn records_awaiting_chain(&self) -> Result<i64> {
        match &self.inner.pool {
            Pool::Postgres(p) => postgres::pending_records(p).await,
            Pool::Sqlite(_) => Ok(0),
        }
    }

    /// Whether anything in the store was sealed with a broker key (a secret's value,
    /// a grant's credentials): a missing key file must then not start a new key.
    pub async fn holds_sealed_values(&self) -> Result<bool> {
        Ok(scalar!(
            self.db(),
            fetch_optional,
            i64,
            "SELECT CAST(1 AS BIGINT) WHERE EXISTS (SELECT 1 FROM secrets WHERE value IS NOT NULL OR pending_value IS NOT NULL)
                 OR EXISTS (SELECT 1 FROM grants WHERE credentials IS NOT NULL)"
        )?
        .is_some())
    }

    /// Answers a trivial query (readiness).
    pub async fn ping(&self) -> Result<()> {
        scalar!(self.db(), fetch_one, i64, "SELECT CAST(1 AS BIGINT)")?;
        Ok(())
    }

    /// Closes the pool (the CLI before it exits).
    pub async fn close(&self) {
        match &self.inner.pool {
            Pool::Sqlite(l) => l.close(),
            Pool::Postgres(p) => p.close().await,
        }
    }

    pub(crate) fn pg_pool(&self) -> Option<&PgPool> {
        match &self.inner.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    pub fn audit(&self) -> audit::Audit<'_> {
        audit::Audit(self.db())
    }

    pub fn users(&self) -> users::Users<'_> {
        users::Users(self.db())
    }
}

/// The error of a write with audit records and no signing key loaded.
pub(crate) fn no_signer() -> Error {
    Error::Config(
        "no audit signing key is loaded for this database (load the broker key file first)".into(),
    )
}

enum TxConn {
    Sqlite(lite::LiteTx),
    Pg(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A write transaction: the unit of work of one operation.
pub struct Tx {
    conn: TxConn,
    _turn: Option<OwnedMutexGuard<()>>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// A PostgreSQL unit of work in [`Scope::Only`]: others write beside it.
    shared: bool,
    /// The store it writes to (to chain its records after the commit).
    store: Store,
    /// PostgreSQL: the audit records and live events written at the commit.
    pending: (Vec<postgres::PendingRecord>, Vec<postgres::PendingEvent>),
    pub(crate) audit_head: Option<AuditHead>,
    pub(crate) audit_key: Option<Arc<SigningKey>>,
}

impl Tx {
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, TxConn::Pg(_))
    }

    pub fn db(&mut self) -> Db<'_> {
        match &mut self.conn {
            TxConn::Sqlite(t) => Db::Lite(t.conn()),
            TxConn::Pg(t) => Db::Pg(t),
        }
    }

    /// The store this transaction writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// PostgreSQL: an audit record to write to `audit_pending` at the commit.
    pub fn pend_record(&mut self, r: postgres::PendingRecord) {
        self.pending.0.push(r);
    }

    /// PostgreSQL: a live event to write to `events_pending` at the commit.
    pub fn pend_event(&mut self, e: postgres::PendingEvent) {
        self.pending.1.push(e);
    }

    /// Locks one more item (a grant found by a read) in a shared-scope unit.
    pub async fn lock_item(&mut self, key: &str) -> Result<()> {
        if self.shared {
            if let TxConn::Pg(t) = &mut self.conn {
                postgres::lock_item(t, key).await?;
            }
        }
        Ok(())
    }

    /// Commits.
    ///
    /// On PostgreSQL the transaction's audit records and live events go to the
    /// pending tables first (one statement, no lock shared with other writers), and
    /// after the commit it waits for a chaining round to append them to the signed
    /// chain and give the events their ids ([`Store::chain_pending`]; the round's
    /// insert wakes every replica's streams with a NOTIFY). So the caller's answer
    /// still comes after its records are chained. Should that round fail, the
    /// records are safe in the pending table and the next round (another unit's, or
    /// the worker's) chains them; the failure is counted and logged.
    pub async fn commit(self) -> Result<()> {
        let timer = crate::metrics::store_timer("commit");
        let Tx {
            conn,
            _turn: turn,
            _slot: slot,
            store,
            pending: (records, events),
            ..
        } = self;
        let chained = !records.is_empty() || !events.is_empty();
        if chained && matches!(conn, TxConn::Pg(_)) && store.signer().is_none() {
            // As on SQLite, a writer without the key writes nothing (its records
            // could not be chained): the transaction rolls back as it is dropped.
            crate::metrics::audit_append_failed();
            return Err(no_signer());
        }
        match conn {
            TxConn::Sqlite(t) => t.commit().await?,
            TxConn::Pg(mut t) => {
                if chained {
                    if let Err(e) = postgres::pend(&mut t, &records, &events).await {
                        crate::metrics::audit_append_failed();
                        return Err(e);
                    }
                }
                t.commit().await?;
            }
        }
        // The next writer of this process may begin now: waiting for the chaining
        // round below needs neither this unit's turn nor its slot.
        drop((turn, slot));
        timer.done();
        if chained {
            if let Err(e) = store.chain_pending().await {
                crate::metrics::audit_append_failed();
                tracing::error!(error = %e, "chaining audit records failed: they stay pending for the next round");
            }
        }
        Ok(())
    }

    pub fn audit(&mut self) -> audit::Audit<'_> {
        audit::Audit(self.db())
    }

    pub fn users(&mut self) -> users::Users<'_> {
        users::Users(self.db())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shared_units_take_at_most_half_the_pool() {
        for (pool, units) in [(16, 8), (100, 8), (5, 2), (2, 1), (1, 1)] {
            assert_eq!(super::shared_units(pool), units, "pool of {pool}");
        }
    }
}
