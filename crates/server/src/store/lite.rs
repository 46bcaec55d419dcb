//! SQLite without a worker thread: statements run on the calling thread against a
//! connection this store owns ([`rusqlite`] over the same bundled SQLite that sqlx
//! uses for the migrations).
//!
//! Why: sqlx-sqlite hands every statement to a per-connection worker thread and
//! waits for the answer, two thread hand-offs per statement; a lifecycle runs about
//! forty statements, and on two cores the hand-offs, not SQLite, were the cost. A
//! unit of work now runs all its statements on one dedicated write connection, in
//! place, between `BEGIN IMMEDIATE` and `COMMIT`; reads take an idle connection from
//! a small set. A statement is microseconds of work on pages that are in memory; the
//! only waits that could be long (another process holding the write lock) are
//! moved off the async thread (see [`begin`]).
//!
//! Statements keep the shared SQL text with `$N` placeholders: SQLite numbers named
//! parameters in order of first appearance, so each one is bound by the number in
//! its name, not its position.

use crate::error::{Error, Result};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Row};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a unit of work waits for another process (the CLI) to finish writing.
const BUSY_WAIT: Duration = Duration::from_secs(10);
/// Idle read connections kept open.
const IDLE_READERS: usize = 8;
/// Prepared statements kept per connection (the store has about 150).
const STATEMENT_CACHE: usize = 256;

fn open_conn(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    c.busy_timeout(BUSY_WAIT)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(c)
}

/// The WAL file next to the database file `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The store's SQLite connections: one for writers (taken by the unit of work that
/// holds the store's write turn), a few for reads.
pub struct Lite {
    path: PathBuf,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// Set by [`Lite::close`]: every later statement fails.
    closed: AtomicBool,
    /// Writers of this process wait here for the writer connection, in order,
    /// without SQLite's sleep-and-retry.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Writers queued for the turn (a unit done with none queued commits at once).
    queued: AtomicUsize,
    /// The group of units open on the writer connection, if any.
    group: Mutex<Option<Group>>,
    /// How long units held the write turn and waited for it (see [`TurnStats`]).
    stats: Arc<TurnCounters>,
    /// Runs in each write transaction as it begins and before it commits (see
    /// [`Lite::set_commit_hook`]).
    commit_hook: std::sync::RwLock<Option<Arc<dyn CommitHook>>>,
}

/// What [`Lite::set_commit_hook`] installs: called on the writer connection
/// inside the write transaction, as it begins (after `BEGIN IMMEDIATE`) and just
/// before its `COMMIT`, one at a time (the write turn is held).
pub trait CommitHook: Send + Sync {
    fn begun(&self, conn: &Connection) -> Result<()>;
    fn committing(&self, conn: &Connection) -> Result<()>;
}

/// Totals since the store was opened, for the benchmark's account of where a
/// lifecycle's time goes: the write turn is the one thing units of work cannot do
/// side by side, so its busy share bounds the write rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Units of work that held the turn.
    pub units: u64,
    /// Their time holding it, summed.
    pub held: Duration,
    /// Their time queued for it, summed.
    pub waited: Duration,
}

#[derive(Default)]
struct TurnCounters {
    units: AtomicU64,
    held_ns: AtomicU64,
    waited_ns: AtomicU64,
}

/// The write turn, held by one unit of work; counts how long when it is released.
struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    since: std::time::Instant,
    stats: Arc<TurnCounters>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.units.fetch_add(1, Ordering::Relaxed);
        self.stats.held_ns.fetch_add(held, Ordering::Relaxed);
    }
}

impl Lite {
    pub fn open(path: &Path) -> Result<Arc<Lite>> {
        let writer = open_conn(path)?;
        // Commits only append to the WAL; the checkpoints (the fsyncs) run on a
        // thread of their own, not inside a unit of work holding the write turn.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let checkpointer = open_conn(path)?;
        let lite = Arc::new(Lite {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(writer)),
            readers: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            turn: Arc::default(),
            queued: AtomicUsize::new(0),
            group: Mutex::new(None),
            stats: Arc::default(),
            commit_hook: std::sync::RwLock::new(None),
        });
        let weak = Arc::downgrade(&lite);
        let wal = wal_path(path);
        std::thread::Builder::new()
            .name("firedoor-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, wal, weak))?;
        Ok(lite)
    }

    /// Runs `f` on an idle read connection (opening one if none is idle).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.check_open()?;
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = open_conn(&self.path)?;
                // Reads outside a unit of work never write: a write here would
                // bypass the write turn.
                c.execute_batch("PRAGMA query_only = ON;")?;
                c
            }
        };
        let out = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS && conn.is_autocommit() {
            idle.push(conn);
        }
        out
    }

    /// Makes `f` run in each write transaction as it begins and just before it
    /// commits (once per group of units of work, after its last unit): the store
    /// signs the audit log's last record there, so every commit ends on a signed
    /// record. If it fails, the transaction is rolled back and every unit in it
    /// fails.
    pub fn set_commit_hook(&self, f: Arc<dyn CommitHook>) {
        *self.commit_hook.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// How the write turn was used since the store was opened.
    pub fn turn_stats(&self) -> TurnStats {
        let s = &self.stats;
        TurnStats {
            units: s.units.load(Ordering::Relaxed),
            held: Duration::from_nanos(s.held_ns.load(Ordering::Relaxed)),
            waited: Duration::from_nanos(s.waited_ns.load(Ordering::Relaxed)),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Db(sqlx::Error::PoolClosed));
        }
        Ok(())
    }

    /// Closes the idle connections; every later statement fails (the CLI before it
    /// exits). A unit of work still running finishes on its connection.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// A WAL larger than this is checkpointed completely and truncated. Under steady
/// load a passive checkpoint never finds a moment without readers or writers, so
/// the WAL would otherwise only grow.
const WAL_TRUNCATE_AT: u64 = 64 * 1024 * 1024;

/// Copies committed WAL pages into the database file (and syncs it) while the
/// store is open; stops when it is closed or dropped.
fn checkpoint_loop(conn: Connection, wal: PathBuf, lite: std::sync::Weak<Lite>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        match lite.upgrade() {
            Some(l) if !l.closed.load(Ordering::SeqCst) => {}
            _ => return,
        }
        if let Err(e) = checkpoint(&conn, &wal, WAL_TRUNCATE_AT) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
        }
    }
}

/// One checkpoint: passive (never waits for writers or readers; what it cannot copy
/// yet is copied next time), or, once the WAL is larger than `truncate_at`, a
/// truncating one: it takes the write lock (this process's writers wait for it on a
/// blocking thread, see [`begin`]), waits for readers to leave the WAL, copies
/// everything and empties the file.
fn checkpoint(conn: &Connection, wal: &Path, truncate_at: u64) -> Result<()> {
    let size = std::fs::metadata(wal).map_or(0, |m| m.len());
    let mode = if size > truncate_at {
        "TRUNCATE"
    } else {
        "PASSIVE"
    };
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))?;
    Ok(())
}

/// Units of work committed together (group commit). While writers of this process
/// are queued for the turn, a unit that is done releases its savepoint into the
/// open transaction instead of committing, and waits: the last unit of the group
/// (no writer queued, or [`GROUP_MAX`] units) commits once for all of them. Each
/// unit's commit returns only once that commit is done, so nothing is acknowledged
/// before it is in the WAL; a failed group commit fails every unit in it.
struct Group {
    /// The group's outcome, sent once when it is committed or rolled back.
    done: tokio::sync::watch::Sender<Option<std::result::Result<(), String>>>,
    /// Units released into it so far.
    units: usize,
}

/// Most units in one group (a bound on the wait of its first unit).
const GROUP_MAX: usize = 64;
/// How long a unit in a group waits before it commits the group itself (the writer
/// that was queued after it went away).
const GROUP_WAIT: Duration = Duration::from_millis(20);

/// The write transaction of one unit of work: a savepoint in the writer
/// connection's open transaction. Dropped without [`LiteTx::commit`], it rolls back
/// to its savepoint and gives the connection back.
pub struct LiteTx {
    lite: Arc<Lite>,
    conn: Option<Connection>,
    /// Released after the connection is given back (fields drop after `drop`).
    turn: Option<Turn>,
}

/// Counts a writer queued for the turn until it gets it or gives up.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Begins a unit of work on the writer connection once this process's earlier
/// writers are done with it: opens a transaction (`BEGIN IMMEDIATE`) unless a group
/// is open, then a savepoint. Another process holding SQLite's write lock makes the
/// first try fail at once; the wait for it then runs on a blocking thread, never on
/// the async one.
pub async fn begin(lite: &Arc<Lite>) -> Result<LiteTx> {
    lite.check_open()?;
    let turn = {
        lite.queued.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&lite.queued);
        let queued_at = std::time::Instant::now();
        let guard = lite.turn.clone().lock_owned().await;
        let waited = u64::try_from(queued_at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        lite.stats.waited_ns.fetch_add(waited, Ordering::Relaxed);
        Turn {
            _guard: guard,
            since: std::time::Instant::now(),
            stats: lite.stats.clone(),
        }
    };
    let taken = lite.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    let conn = match taken {
        Some(c) => c,
        None => open_conn(&lite.path)?,
    };
    let in_group = lite
        .group
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some();
    let conn = if in_group {
        conn
    } else {
        let conn = begin_immediate(lite, conn).await?;
        let (done, _) = tokio::sync::watch::channel(None);
        *lite.group.lock().unwrap_or_else(|p| p.into_inner()) = Some(Group { done, units: 0 });
        conn
    };
    let mut tx = LiteTx {
        lite: lite.clone(),
        conn: Some(conn),
        turn: Some(turn),
    };
    tx.conn().execute_batch("SAVEPOINT uow")?;
    Ok(tx)
}

async fn begin_immediate(lite: &Arc<Lite>, conn: Connection) -> Result<Connection> {
    let conn = begin_write_lock(lite, conn).await?;
    let hook = lite
        .commit_hook
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(Err(e)) = hook.map(|h| h.begun(&conn)) {
        let _ = conn.execute_batch("ROLLBACK");
        give_back(lite, conn);
        return Err(e);
    }
    Ok(conn)
}

async fn begin_write_lock(lite: &Arc<Lite>, conn: Connection) -> Result<Connection> {
    conn.busy_timeout(Duration::ZERO)?;
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => Ok(conn),
        Err(e) if is_busy(&e) => {
            let (conn, r) = tokio::task::spawn_blocking(move || {
                let r = conn
                    .busy_timeout(BUSY_WAIT)
                    .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"));
                (conn, r)
            })
            .await
            .map_err(|e| Error::Corrupt(format!("the SQLite writer thread failed: {e}")))?;
            match r {
                Ok(()) => Ok(conn),
                Err(e) => {
                    give_back(lite, conn);
                    Err(e.into())
                }
            }
        }
        Err(e) => {
            give_back(lite, conn);
            Err(e.into())
        }
    }
}

/// Runs `f` as a unit of work of its own (a single write outside one).
pub async fn write<T>(lite: &Arc<Lite>, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let mut tx = begin(lite).await?;
    let out = f(tx.conn())?;
    tx.commit().await?;
    Ok(out)
}

/// Ends the open group: commits it if any unit was released into it (rolls it back
/// otherwise) and tells its units. Called with the turn held.
fn end_group(lite: &Lite, conn: &Connection) -> Result<()> {
    let Some(group) = lite.group.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Ok(());
    };
    let outcome = if conn.is_autocommit() {
        // SQLite rolled the whole transaction back (an I/O error, a full disk).
        Err("the transaction was rolled back by the database".to_string())
    } else if group.units == 0 {
        conn.execute_batch("ROLLBACK").map_err(|e| e.to_string())
    } else {
        let hook = lite
            .commit_hook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        hook.map_or(Ok(()), |f| f.committing(conn))
            .map_err(|e| e.to_string())
            .and_then(|()| conn.execute_batch("COMMIT").map_err(|e| e.to_string()))
            .inspect_err(|_| {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            })
    };
    group.done.send_replace(Some(outcome.clone()));
    outcome.map_err(Error::Commit)
}

fn group_outcome(o: &std::result::Result<(), String>) -> Result<()> {
    o.clone().map_err(Error::Commit)
}

impl LiteTx {
    pub fn conn(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("the writer connection is held until the transaction ends")
    }

    /// Releases the unit into its group; commits the group unless another writer
    /// of this process is queued to join it, else waits for its commit.
    pub async fn commit(mut self) -> Result<()> {
        let conn = self.conn.take().expect("held until the transaction ends");
        let lite = self.lite.clone();
        if let Err(e) = conn.execute_batch("RELEASE uow") {
            let _ = conn.execute_batch("ROLLBACK TO uow; RELEASE uow");
            if lite.queued.load(Ordering::SeqCst) == 0 {
                let _ = end_group(&lite, &conn);
            }
            give_back(&lite, conn);
            return Err(e.into());
        }
        let joined = lite
            .group
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(|g| {
                g.units += 1;
                (g.units, g.done.subscribe())
            });
        let Some((units, mut done)) = joined else {
            // Only `begin` opens a group and only the holder of the turn ends one, so
            // this cannot happen; if it did, nothing of this unit may count as done.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            give_back(&lite, conn);
            return Err(Error::Commit(
                "the unit of work had no open transaction".into(),
            ));
        };
        if units >= GROUP_MAX || lite.queued.load(Ordering::SeqCst) == 0 {
            let out = end_group(&lite, &conn);
            give_back(&lite, conn);
            return out;
        }
        // The next writer joins the group; this unit waits for its commit.
        give_back(&lite, conn);
        drop(self.turn.take());
        loop {
            let waited = tokio::time::timeout(GROUP_WAIT, done.wait_for(|o| o.is_some()))
                .await
                .map(|r| r.map(|o| o.clone()));
            match waited {
                Ok(Ok(Some(o))) => return group_outcome(&o),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    return Err(Error::Commit("the group ended without an outcome".into()))
                }
                Err(_) => {
                    // Nobody closed the group in time: close it.
                    let _turn = lite.turn.clone().lock_owned().await;
                    if let Some(o) = done.borrow().clone() {
                        return group_outcome(&o);
                    }
                    let taken = lite.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
                    let Some(conn) = taken else {
                        continue;
                    };
                    let out = end_group(&lite, &conn);
                    give_back(&lite, conn);
                    return out;
                }
            }
        }
    }
}

impl Drop for LiteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO uow; RELEASE uow");
            }
            // Units already released into the group must not wait for a writer
            // that is not coming.
            if self.lite.queued.load(Ordering::SeqCst) == 0 || conn.is_autocommit() {
                let _ = end_group(&self.lite, &conn);
            }
            give_back(&self.lite, conn);
        }
    }
}

fn give_back(lite: &Lite, conn: Connection) {
    let _ = conn.busy_timeout(BUSY_WAIT);
    *lite.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A statement's SQL text: a literal or checked dynamic SQL.
pub trait SqlText {
    fn sql(&self) -> &str;
}

impl SqlText for &str {
    fn sql(&self) -> &str {
        self
    }
}

impl SqlText for sqlx::AssertSqlSafe<String> {
    fn sql(&self) -> &str {
        &self.0
    }
}

impl SqlText for sqlx::AssertSqlSafe<&str> {
    fn sql(&self) -> &str {
        self.0
    }
}

/// Prepares `sql` (cached) and binds `args` by the numbers of their `$N` names.
fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut st = conn.prepare_cached(sql)?;
    for i in 1..=st.parameter_count() {
        let n = match st.parameter_name(i) {
            Some(name) => name
                .strip_prefix('$')
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| Error::Corrupt(format!("unexpected SQL parameter {name}")))?,
            None => i,
        };
        let arg = args
            .get(n.wrapping_sub(1))
            .ok_or_else(|| Error::Corrupt(format!("SQL parameter ${n} has no argument ({sql})")))?;
        st.raw_bind_parameter(i, arg)?;
    }
    Ok(st)
}

/// Runs one statement; the rows it changed.
pub fn exec(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> Result<u64> {
    let mut st = prepare(conn, sql, args)?;
    let mut rows = st.raw_query();
    while rows.next()?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

/// Runs one query and maps each row.
pub fn fetch_all<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    f: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = prepare(conn, sql, args)?;
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// Runs one query and maps its first row, if any.
pub fn fetch_optional<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    f: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    let mut st = prepare(conn, sql, args)?;
    let mut rows = st.raw_query();
    let out = match rows.next()? {
        Some(r) => Some(f(r)?),
        None => None,
    };
    // Step to the end so a statement with side effects (RETURNING) completes.
    while rows.next()?.is_some() {}
    Ok(out)
}

/// Runs one query and maps its first row, which must exist.
pub fn fetch_one<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    f: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    fetch_optional(conn, sql, args, f)?.ok_or(Error::Db(sqlx::Error::RowNotFound))
}

/// A row type read from SQLite by column name (see [`lite_row!`]) or a tuple read
/// by position.
pub trait FromLite: Sized {
    fn from_lite(row: &Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! tuple_from_lite {
    ($($t:ident $i:tt),+) => {
        impl<$($t: rusqlite::types::FromSql),+> FromLite for ($($t,)+) {
            fn from_lite(row: &Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<_, $t>($i)?,)+))
            }
        }
    };
}

tuple_from_lite!(A 0);
tuple_from_lite!(A 0, B 1);
tuple_from_lite!(A 0, B 1, C 2);
tuple_from_lite!(A 0, B 1, C 2, D 3);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_from_lite!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);

/// Declares a row struct readable by both backends: sqlx's `FromRow` for
/// PostgreSQL and [`FromLite`] (by column name) for SQLite.
macro_rules! row_struct {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $f:ident : $t:ty),+ $(,)? }) => {
        $(#[$m])*
        #[derive(sqlx::FromRow)]
        $vis struct $name { $($(#[$fm])* $fvis $f: $t),+ }

        impl $crate::store::lite::FromLite for $name {
            fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok($name { $($f: row.get(stringify!($f))?),+ })
            }
        }
    };
}
pub(crate) use row_struct;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Lite(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, Arc<Lite>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        let lite = Lite::open(&path).unwrap();
        (dir, lite)
    }

    /// `.cargo/config.toml` builds SQLite without its two process-wide mutexes (the
    /// shared page cache, allocation statistics); readers and the writer contended
    /// on both. A build that loses the flags is slower, not wrong: this says so.
    #[test]
    fn sqlite_is_built_without_process_wide_page_cache_and_memory_statistics() {
        let c = Connection::open_in_memory().unwrap();
        let mut st = c.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn each_unit_of_work_is_counted_in_the_turn_statistics() {
        let (_dir, lite) = fresh();
        assert_eq!(lite.turn_stats(), TurnStats::default());
        write(&lite, |c| exec(c, "INSERT INTO t (v) VALUES (1)", &[]))
            .await
            .unwrap();
        drop(begin(&lite).await.unwrap()); // rolled back: it held the turn all the same
        let s = lite.turn_stats();
        assert_eq!(s.units, 2);
        assert!(s.held > Duration::ZERO);
    }

    /// Counts its calls; fails the commit while `fail` is set.
    #[derive(Default)]
    struct Counting {
        begun: AtomicUsize,
        committing: AtomicUsize,
        fail: AtomicBool,
    }

    impl CommitHook for Counting {
        fn begun(&self, _: &Connection) -> Result<()> {
            self.begun.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn committing(&self, conn: &Connection) -> Result<()> {
            self.committing.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::Corrupt("refused by the hook".into()));
            }
            // It runs inside the transaction: what it writes commits with it.
            exec(conn, "INSERT INTO t (v) VALUES (100)", &[])?;
            Ok(())
        }
    }

    /// The commit hook (where the store signs the audit log's last record) runs once
    /// per commit, however many units of work the commit holds, inside the write
    /// transaction; if it fails, every unit in the commit fails and nothing is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_commit_hook_runs_once_per_group_and_its_failure_fails_every_unit() {
        let (dir, lite) = fresh();
        let hook = Arc::new(Counting::default());
        lite.set_commit_hook(hook.clone());

        // Unit a holds the turn; unit b queues behind it, so a's commit leaves the
        // transaction open for b, and b's commit ends it for both.
        let mut a = begin(&lite).await.unwrap();
        exec(a.conn(), "INSERT INTO t (v) VALUES (1)", &[]).unwrap();
        let l = lite.clone();
        let b = tokio::spawn(async move { insert(&l, 2).await });
        while lite.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        a.commit().await.unwrap();
        b.await.unwrap().unwrap();
        assert_eq!(hook.begun.load(Ordering::SeqCst), 1);
        assert_eq!(hook.committing.load(Ordering::SeqCst), 1);
        assert_eq!(committed(&dir), [1, 2, 100]);

        hook.fail.store(true, Ordering::SeqCst);
        let e = insert(&lite, 3).await.unwrap_err();
        assert!(e.to_string().contains("refused by the hook"), "{e}");
        assert_eq!(committed(&dir), [1, 2, 100], "nothing of the failed commit");
        hook.fail.store(false, Ordering::SeqCst);
        insert(&lite, 4).await.unwrap();
        assert_eq!(committed(&dir), [1, 2, 4, 100, 100]);
        assert_eq!(hook.committing.load(Ordering::SeqCst), 3);
    }

    /// Rows another connection sees (what is committed).
    fn committed(dir: &tempfile::TempDir) -> Vec<i64> {
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        let mut st = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    async fn insert(lite: &Arc<Lite>, v: i64) -> Result<u64> {
        write(lite, |c| exec(c, "INSERT INTO t (v) VALUES ($1)", &[&v])).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_past_its_limit_is_checkpointed_and_emptied_while_readers_read() {
        let (dir, lite) = fresh();
        let path = dir.path().join("t.db");
        let wal = wal_path(&path);
        let payload = "x".repeat(4000);
        for v in 0..300 {
            write(&lite, |c| {
                exec(c, "INSERT INTO t (v) VALUES ($1)", &[&v])?;
                exec(c, "CREATE TABLE IF NOT EXISTS pad (p TEXT)", &[])?;
                exec(c, "INSERT INTO pad (p) VALUES ($1)", &[&payload])
            })
            .await
            .unwrap();
        }
        let before = std::fs::metadata(&wal).unwrap().len();
        assert!(before > 1_000_000, "the WAL grew: {before} bytes");
        // A reader keeps reading meanwhile.
        let n: i64 = lite
            .read(|c| fetch_one(c, "SELECT COUNT(*) FROM t", &[], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 300);
        let c = open_conn(&path).unwrap();
        // Below the limit: a passive checkpoint leaves the file as it is.
        checkpoint(&c, &wal, u64::MAX).unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), before);
        checkpoint(&c, &wal, 1_000_000).unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "emptied");
        assert_eq!(committed(&dir).len(), 300, "nothing lost");
        insert(&lite, 300).await.unwrap();
        assert_eq!(committed(&dir).len(), 301, "writes go on after it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_unit_of_a_group_is_committed() {
        let (dir, lite) = fresh();
        let mut tasks = Vec::new();
        for v in 0..300 {
            let lite = lite.clone();
            tasks.push(tokio::spawn(async move { insert(&lite, v).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 1);
        }
        // Acknowledged means committed: another connection sees every row.
        assert_eq!(committed(&dir), (0..300).collect::<Vec<_>>());
        assert!(lite.group.lock().unwrap().is_none(), "no group left open");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_unit_takes_only_its_own_writes_back() {
        let (dir, lite) = fresh();
        let mut tasks = Vec::new();
        for v in 0..200i64 {
            let lite = lite.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = begin(&lite).await?;
                exec(tx.conn(), "INSERT INTO t (v) VALUES ($1)", &[&v])?;
                if v % 3 == 0 {
                    // A rule fails after the write: the unit is dropped.
                    return Err(Error::Config("refused".into()));
                }
                exec(tx.conn(), "INSERT INTO t (v) VALUES ($1)", &[&(v + 1000)])?;
                tx.commit().await
            }));
        }
        let mut want = Vec::new();
        for (v, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            let v = v as i64;
            if v % 3 == 0 {
                assert!(r.is_err());
            } else {
                r.unwrap();
                want.extend([v, v + 1000]);
            }
        }
        want.sort();
        assert_eq!(committed(&dir), want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_unit_waiting_for_its_group_is_not_stranded_by_a_writer_that_goes_away() {
        let (dir, lite) = fresh();
        // A holds the turn; B queues behind it.
        let mut a = begin(&lite).await.unwrap();
        exec(a.conn(), "INSERT INTO t (v) VALUES (1)", &[]).unwrap();
        let lb = lite.clone();
        let b = tokio::spawn(async move {
            let mut tx = begin(&lb).await.unwrap();
            exec(tx.conn(), "INSERT INTO t (v) VALUES (2)", &[]).unwrap();
            // B never commits: it is dropped with its unit (a cancelled request).
            drop(tx);
        });
        while lite.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // A sees B queued, releases into the group and waits; B joins, then goes.
        a.commit().await.unwrap();
        b.await.unwrap();
        assert_eq!(committed(&dir), vec![1]);

        // A queued writer that is cancelled before its turn: the unit ahead of it
        // still commits (at the latest after GROUP_WAIT).
        let mut a = begin(&lite).await.unwrap();
        exec(a.conn(), "INSERT INTO t (v) VALUES (3)", &[]).unwrap();
        let lc = lite.clone();
        let c = tokio::spawn(async move {
            let _ = begin(&lc).await;
        });
        while lite.queued.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        c.abort();
        let _ = c.await;
        a.commit().await.unwrap();
        assert_eq!(committed(&dir), vec![1, 3]);
    }
}
