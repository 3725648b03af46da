//! The SQLite record engine: rusqlite connections on the same file sqlx opens, so a
//! record statement runs on the thread that asks for it instead of crossing to
//! sqlx-sqlite's worker thread and back (two wake-ups per statement, most of a
//! request's CPU before this engine).
//!
//! - Reads take a connection from [`Readers`] and run inline: a point read is a few
//!   microseconds of SQLite work, less than any hand-off. WAL mode means a reader
//!   never waits for the writer.
//! - Writes go to [`Writer`]: one connection owned by its own thread. Requests that
//!   arrive while a batch runs form the next batch, which is one transaction (group
//!   commit); each request runs inside its own savepoint, so a request that fails
//!   rolls back alone. A request is answered only after its batch commits.
//!
//! Statements are prepared once per connection and text (rusqlite's statement
//! cache); the record pipeline builds the text. Imports nothing of Basalt's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use rusqlite::types::Value as Cell;
use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};

use super::exec::{Exec, Names};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;
/// Most requests one group commit takes.
const MAX_BATCH: usize = 256;

/// How SQLite syncs to disk on commit, in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// The WAL is synced at checkpoints, not at each commit: a commit survives a crash
    /// of Basalt (`kill -9`), and may be lost only if the machine loses power or the
    /// kernel crashes before the next checkpoint. SQLite's recommended WAL setting.
    #[default]
    Normal,
    /// Every commit is synced before it is acknowledged.
    Full,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            other => Err(format!("`{other}`: expected normal or full")),
        }
    }
}

/// A SQLite error, carried inside sqlx's error type so that [`super::fault`] and
/// the conflict mapping read it like one of sqlx's own.
#[derive(Debug)]
pub struct LiteError {
    /// SQLite's extended result code.
    code: i32,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl sea_orm::sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
        use sea_orm::sqlx::error::ErrorKind;
        match self.code {
            2067 | 1555 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// A rusqlite error as sea-orm's.
fn db_err(err: rusqlite::Error) -> DbErr {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            let err = LiteError {
                code: failure.extended_code,
                message,
            };
            DbErr::Query(RuntimeErr::SqlxError(Arc::new(Sqlx::Database(Box::new(
                err,
            )))))
        }
        other => DbErr::Custom(format!("sqlite: {other}")),
    }
}

/// A connection of the engine, and the pool-wide statement counter.
pub struct LiteConn {
    conn: Mutex<rusqlite::Connection>,
    statements: Arc<AtomicU64>,
}

impl LiteConn {
    /// Where the record pipeline's statements run on this connection.
    pub fn exec(&self) -> Exec<'_> {
        Exec::Lite(self)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, rusqlite::Connection>, DbErr> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.conn
            .lock()
            .map_err(|_| DbErr::Custom("a SQLite connection was poisoned".into()))
    }

    fn run(&self, sql: &str) -> Result<(), DbErr> {
        self.lock()?.execute_batch(sql).map_err(db_err)
    }
}

/// One row of a SQLite result.
#[derive(Debug)]
pub struct LiteRow {
    names: Names,
    values: Vec<Cell>,
}

impl LiteRow {
    /// The cell of `column`.
    ///
    /// Fails when the row has no such column.
    pub fn value(&self, column: &str) -> Result<&Cell, DbErr> {
        self.names
            .iter()
            .position(|name| name == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| DbErr::Type(format!("no column `{column}` in the result")))
    }
}

/// A statement's bound values as SQLite cells.
fn cells(statement: &sea_orm::Statement) -> Result<Vec<Cell>, DbErr> {
    use sea_orm::Value as V;
    let Some(values) = &statement.values else {
        return Ok(Vec::new());
    };
    values
        .0
        .iter()
        .map(|value| {
            Ok(match value {
                V::Bool(b) => b.map_or(Cell::Null, |b| Cell::Integer(i64::from(b))),
                V::TinyInt(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::SmallInt(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::Int(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::BigInt(n) => n.map_or(Cell::Null, Cell::Integer),
                V::TinyUnsigned(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::SmallUnsigned(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::Unsigned(n) => n.map_or(Cell::Null, |n| Cell::Integer(n.into())),
                V::BigUnsigned(n) => match n {
                    None => Cell::Null,
                    Some(n) => Cell::Integer(
                        i64::try_from(*n).map_err(|_| DbErr::Custom("integer too large".into()))?,
                    ),
                },
                V::Float(n) => n.map_or(Cell::Null, |n| Cell::Real(n.into())),
                V::Double(n) => n.map_or(Cell::Null, Cell::Real),
                V::String(s) => s.clone().map_or(Cell::Null, Cell::Text),
                V::Char(c) => c.map_or(Cell::Null, |c| Cell::Text(c.to_string())),
                V::Bytes(b) => b.clone().map_or(Cell::Null, Cell::Blob),
                V::Json(j) => j.as_ref().map_or(Cell::Null, |j| Cell::Text(j.to_string())),
                // As sqlx-sqlite writes them, so both engines read each other's rows.
                V::ChronoDateTimeUtc(d) => d.map_or(Cell::Null, |d| {
                    Cell::Text(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
                }),
                V::ChronoDateTime(d) => {
                    d.map_or(Cell::Null, |d| Cell::Text(d.format("%F %T%.f").to_string()))
                }
                other => {
                    return Err(DbErr::Custom(format!(
                        "sqlite: cannot bind a value of type {other:?}"
                    )));
                }
            })
        })
        .collect()
}

/// Run a query on `conn`; at most `limit` rows.
///
/// Fails when the statement fails.
pub(super) fn query(
    conn: &LiteConn,
    statement: &sea_orm::Statement,
    limit: usize,
) -> Result<Vec<LiteRow>, DbErr> {
    let params = cells(statement)?;
    let conn = conn.lock()?;
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(db_err)?;
    let names: Names = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let width = names.len();
    let mut rows = prepared
        .query(rusqlite::params_from_iter(params))
        .map_err(db_err)?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(row) = rows.next().map_err(db_err)? else {
            break;
        };
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(
                Cell::try_from(row.get_ref(i).map_err(db_err)?)
                    .map_err(|e| DbErr::Custom(format!("sqlite: {e}")))?,
            );
        }
        out.push(LiteRow {
            names: Arc::clone(&names),
            values,
        });
    }
    Ok(out)
}

/// Run a statement on `conn` for its effect; how many rows it changed.
///
/// Fails when the statement fails.
pub(super) fn execute(conn: &LiteConn, statement: &sea_orm::Statement) -> Result<u64, DbErr> {
    let params = cells(statement)?;
    let conn = conn.lock()?;
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(db_err)?;
    let changed = prepared
        .execute(rusqlite::params_from_iter(params))
        .map_err(db_err)?;
    Ok(changed as u64)
}

/// How the engine opens a connection.
#[derive(Clone, Debug)]
struct Opener {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    statements: Arc<AtomicU64>,
}

impl Opener {
    fn open(&self) -> Result<LiteConn, DbErr> {
        let conn = rusqlite::Connection::open(&self.path).map_err(db_err)?;
        conn.busy_timeout(self.busy_timeout).map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            self.synchronous.pragma()
        ))
        .map_err(db_err)?;
        Ok(LiteConn {
            conn: Mutex::new(conn),
            statements: Arc::clone(&self.statements),
        })
    }
}

/// Reader connections, each used for one statement at a time: a statement takes an
/// idle one (or opens one) and puts it back when it is done, so no connection is held
/// across an `.await`.
pub struct Readers {
    opener: Opener,
    idle: Mutex<Vec<LiteConn>>,
}

/// Readers kept open when idle.
const MAX_IDLE_READERS: usize = 16;

impl Readers {
    /// Run `f` on an idle reader, or a new one.
    ///
    /// Fails when the file cannot be opened, or with `f`'s error.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&LiteConn) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.opener.open()?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }

    /// Where the record pipeline's reads run.
    pub fn exec(&self) -> Exec<'_> {
        Exec::Readers(self)
    }
}

/// Values one batch's requests share: the first to need one reads it, the others
/// reuse it (the schema version, read once per transaction).
#[derive(Debug, Default)]
pub struct Batch {
    pub schema_version: Mutex<Option<i64>>,
}

type Done = Box<dyn FnOnce(Result<(), DbErr>) + Send>;
type Run = Box<dyn for<'c> FnOnce(Exec<'c>, &'c Batch) -> BoxFuture<'c, (bool, Done)> + Send>;

struct Job {
    run: Run,
    /// Answers the request when its batch could not start.
    fail: Box<dyn FnOnce(DbErr) + Send>,
}

/// The writer: submits work to the writer thread.
#[derive(Clone, Debug)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Writer {
    /// Run `work` in the next group commit: inside its own savepoint of the batch's
    /// transaction, on the writer thread. Returns its result once the batch has
    /// committed; if the commit fails, its error. Work that fails is rolled back to
    /// its savepoint, and the rest of the batch commits without it.
    ///
    /// Fails with `work`'s error, or the database's when the batch cannot start or
    /// commit.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbErr> + Send + 'static,
        F: for<'c> FnOnce(Exec<'c>, &'c Batch) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let slot = Arc::new(Mutex::new(Some(answer)));
        let on_fail = Arc::clone(&slot);
        let job = Job {
            run: Box::new(move |exec, batch| {
                Box::pin(async move {
                    let result = work(exec, batch).await;
                    let ok = result.is_ok();
                    let done: Done = Box::new(move |commit| {
                        let result = match commit {
                            Err(err) if ok => Err(E::from(err)),
                            _ => result,
                        };
                        if let Some(answer) = slot.lock().ok().and_then(|mut s| s.take()) {
                            let _ = answer.send(result);
                        }
                    });
                    (ok, done)
                })
            }),
            fail: Box::new(move |err| {
                if let Some(answer) = on_fail.lock().ok().and_then(|mut s| s.take()) {
                    let _ = answer.send(Err(E::from(err)));
                }
            }),
        };
        self.jobs
            .send(job)
            .map_err(|_| E::from(DbErr::Custom("the SQLite writer has stopped".into())))?;
        answered
            .await
            .map_err(|_| E::from(DbErr::Custom("the SQLite writer has stopped".into())))?
    }
}

/// The record engine of a SQLite file.
pub struct Lite {
    pub readers: Readers,
    pub writer: Writer,
    /// Group commits so far, and the writes they carried: their ratio is the mean
    /// batch size (`/metrics`: `basalt_sqlite_group_commits_total`,
    /// `basalt_sqlite_group_commit_writes_total`).
    pub group_commits: Counter,
    pub group_commit_writes: Counter,
}

impl std::fmt::Debug for Lite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lite")
            .field("path", &self.readers.opener.path)
            .finish()
    }
}

impl Lite {
    /// Open the engine on `path` (which sqlx has created and put in WAL mode) and
    /// start the writer thread. `turn` is the in-process writers' turn, held by the
    /// writer for each batch so that Basalt's other writers queue behind it instead
    /// of polling for SQLite's lock.
    ///
    /// Fails when the file cannot be opened or the thread cannot start.
    pub fn open(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
        turn: Arc<tokio::sync::Mutex<()>>,
        statements: Arc<AtomicU64>,
    ) -> Result<Lite, DbErr> {
        let opener = Opener {
            path: path.to_owned(),
            synchronous,
            busy_timeout,
            statements,
        };
        let conn = opener.open()?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbErr::Custom(format!("cannot start the SQLite writer: {e}")))?;
        let writer_opener = opener.clone();
        let counts = (Counter::default(), Counter::default());
        let counted = counts.clone();
        std::thread::Builder::new()
            .name("basalt-sqlite-writer".into())
            .spawn(move || runtime.block_on(write_loop(conn, writer_opener, queue, turn, counted)))
            .map_err(|e| DbErr::Custom(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Lite {
            readers: Readers {
                opener,
                idle: Mutex::new(Vec::new()),
            },
            writer: Writer { jobs },
            group_commits: counts.0,
            group_commit_writes: counts.1,
        })
    }
}

/// The writer thread: batch, run, commit, answer; until every [`Writer`] is dropped.
async fn write_loop(
    mut conn: LiteConn,
    opener: Opener,
    mut queue: mpsc::UnboundedReceiver<Job>,
    turn: Arc<tokio::sync::Mutex<()>>,
    (commits, writes): (Counter, Counter),
) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let held = tokio::time::timeout(Duration::from_secs(10), turn.lock()).await;
        let Ok(_turn) = held else {
            for job in jobs {
                (job.fail)(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
            }
            continue;
        };
        if let Err(err) = conn.run("BEGIN IMMEDIATE") {
            for job in jobs {
                (job.fail)(copy(&err));
            }
            conn = fresh_if_stuck(conn, &opener);
            continue;
        }
        let batch = Batch::default();
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Err(err) = conn.run("SAVEPOINT request") {
                (job.fail)(err);
                continue;
            }
            let (ok, done) = (job.run)(conn.exec(), &batch).await;
            let end = if ok {
                conn.run("RELEASE request")
            } else {
                conn.run("ROLLBACK TO request; RELEASE request")
            };
            match end {
                Ok(()) => answers.push(done),
                Err(err) => done(Err(err)),
            }
        }
        let committed = conn.run("COMMIT");
        if committed.is_err() {
            let _ = conn.run("ROLLBACK");
        } else {
            commits.inc();
            writes.inc_by(answers.len() as u64);
        }
        for done in answers {
            done(committed.as_ref().map_err(copy).copied());
        }
        conn = fresh_if_stuck(conn, &opener);
    }
}

/// The same error again, for each request of a batch that failed as a whole; errors
/// from SQLite keep their code (a full disk stays a full disk).
fn copy(err: &DbErr) -> DbErr {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Query(RuntimeErr::SqlxError(sqlx)) => {
            DbErr::Query(RuntimeErr::SqlxError(Arc::clone(sqlx)))
        }
        DbErr::ConnectionAcquire(_) => DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        other => DbErr::Custom(other.to_string()),
    }
}

/// A connection left inside a transaction (a failed COMMIT and ROLLBACK, as on a full
/// disk) is replaced by a fresh one, so no later batch nests inside a dead one.
fn fresh_if_stuck(conn: LiteConn, opener: &Opener) -> LiteConn {
    let stuck = conn.conn.lock().map_or(true, |c| !c.is_autocommit());
    if !stuck {
        return conn;
    }
    tracing::warn!("reopening the SQLite writer connection left inside a transaction");
    match opener.open() {
        Ok(fresh) => fresh,
        Err(err) => {
            tracing::error!(error = %err, "cannot reopen the SQLite writer connection");
            conn
        }
    }
}
