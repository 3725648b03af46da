//! The database connection, SQLite or PostgreSQL, and the few dialect switches the rest
//! of Basalt needs: how to start a write transaction, how to apply the system
//! migrations, how to ping. System entities (Basalt's own `_` tables) live under
//! [`entities`]. Imports only `config`.

pub mod entities;
pub mod exec;
pub mod lite;

use std::sync::Arc;
use std::time::Duration;

use basalt_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnAcquireErr, ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use crate::config::DatabaseUrl;

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const PG_PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);
/// Fixed key for the PostgreSQL advisory lock that serialises migrations across instances.
const MIGRATION_LOCK_KEY: i64 = 0x6261_7361_6c74; // "basalt"

/// The table function that yields the elements of a JSON array column as text, in a
/// column named `value`: `json_each` on SQLite, `jsonb_array_elements_text` on
/// PostgreSQL.
pub fn json_elements(
    backend: DatabaseBackend,
    column: sea_orm::sea_query::SimpleExpr,
) -> sea_orm::sea_query::FunctionCall {
    let name = match backend {
        DatabaseBackend::Postgres => "jsonb_array_elements_text",
        _ => "json_each",
    };
    sea_orm::sea_query::Func::cust(sea_orm::sea_query::Alias::new(name)).arg(column)
}

/// Whether an idle SQLite connection may be handed out: only outside any
/// transaction. When a statement or a COMMIT fails for a full disk, SQLite may roll
/// the transaction back by itself; the ROLLBACK that follows then fails and leaves
/// sqlx believing the connection is still inside a transaction. sea-orm would turn the
/// next `BEGIN` on it into a SAVEPOINT, and a write acknowledged there would vanish
/// (or commit with someone else's). Such a connection is closed instead, and the pool
/// opens a fresh one. By the time a connection is acquired again, the pool's release
/// ping has flushed the queued rollback, so the depth is exact.
fn sqlite_idle_ok(
    conn: &mut sea_orm::sqlx::SqliteConnection,
    _: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sea_orm::sqlx::Error>> {
    use sea_orm::sqlx::Connection;
    let stuck = conn.is_in_transaction();
    if stuck {
        tracing::warn!("closing a SQLite connection left inside a transaction");
    }
    Box::pin(std::future::ready(Ok(!stuck)))
}

/// Which engine is behind the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Database failures a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: DbErr },
    #[error("cannot create the folder {path} for the SQLite database: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("applying system migrations failed: {0}")]
    Migrate(DbErr),
    #[error(transparent)]
    Query(#[from] DbErr),
}

/// What kind of failure a database error is, for callers that answer a client: the
/// engines' codes read in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The database cannot be reached or dropped the connection: try again later.
    Unavailable,
    /// The disk under the database is full (SQLite `SQLITE_FULL`, PostgreSQL 53100).
    DiskFull,
    /// A lock was not granted within `lock_timeout` (PostgreSQL 55P03).
    LockTimeout,
    /// Text the engine cannot store: a NUL character, on PostgreSQL.
    BadText,
    /// The engine aborted the statement to break a deadlock (PostgreSQL 40P01).
    Deadlock,
    /// Anything else: a bug or an unexpected state, answered as a 500.
    Other,
}

/// Classify a database error; see [`Fault`].
pub fn fault(err: &DbErr) -> Fault {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match err {
        DbErr::ConnectionAcquire(_) => return Fault::Unavailable,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return Fault::Other,
    };
    let RuntimeErr::SqlxError(sqlx) = runtime else {
        return Fault::Other;
    };
    match sqlx.as_ref() {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::Protocol(_) => Fault::Unavailable,
        Sqlx::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
                || db.try_downcast_ref::<lite::LiteError>().is_some()
            {
                // SQLite's extended result code; the primary code is its low byte.
                return match code.parse::<i64>().unwrap_or_default() & 0xff {
                    13 => Fault::DiskFull,                 // SQLITE_FULL
                    10 | 14 | 5 | 6 => Fault::Unavailable, // IOERR, CANTOPEN, BUSY, LOCKED
                    _ => Fault::Other,
                };
            }
            // PostgreSQL's SQLSTATE.
            match code.as_ref() {
                "53100" => Fault::DiskFull,
                "55P03" => Fault::LockTimeout,
                "22021" | "22P05" => Fault::BadText,
                "40P01" => Fault::Deadlock,
                // admin/crash shutdown, cannot connect now, too many connections
                "57P01" | "57P02" | "57P03" | "53300" => Fault::Unavailable,
                c if c.starts_with("08") => Fault::Unavailable,
                _ => Fault::Other,
            }
        }
        _ => Fault::Other,
    }
}

/// A pooled connection to Basalt's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
    /// SQLite has one writer: write transactions take turns here, in arrival order,
    /// so the next one starts the moment the previous commits instead of sleeping
    /// and polling in SQLite's busy handler (which put 1.4 s tails on concurrent
    /// creates). `None` on PostgreSQL.
    write_turn: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Every statement run through this pool, transactions included.
    statements: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The SQLite record engine (a file database, once opened); see [`lite`].
    lite: Option<Arc<lite::Lite>>,
    /// SQLite: how commits sync, for the record engine's connections too.
    synchronous: lite::Synchronous,
}

/// A write transaction (see [`Db::begin_write`]); on SQLite it holds the writers'
/// turn until it is committed, rolled back or dropped.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    turn: WriteTurn,
}

/// The SQLite writers' turn, released when dropped.
pub struct WriteTurn {
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    /// Commit, then give the turn to the next writer.
    ///
    /// Fails when the database refuses the commit; nothing is kept then.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// The transaction and the writers' turn, for code that passes the transaction
    /// to sea-orm's generic executors: keep the turn alive until the commit.
    pub fn into_parts(self) -> (DatabaseTransaction, WriteTurn) {
        (self.txn, self.turn)
    }

    /// Roll back, then give the turn to the next writer.
    ///
    /// Fails when the database cannot be reached; it rolls back by itself then.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl Db {
    /// Open a pool. A SQLite file (and its folder) is created if missing and opened
    /// in WAL mode with a busy timeout, so readers never block the writer and writers
    /// queue for the lock instead of failing.
    ///
    /// Fails when the folder cannot be created or the server cannot be reached.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Db, DbError> {
        Db::connect_with(url, max_connections, lite::Synchronous::default()).await
    }

    /// [`Db::connect`], with SQLite's `synchronous` setting.
    ///
    /// Fails like [`Db::connect`].
    pub async fn connect_with(
        url: &DatabaseUrl,
        max_connections: u32,
        synchronous: lite::Synchronous,
    ) -> Result<Db, DbError> {
        let (mut options, backend) = match url {
            DatabaseUrl::Sqlite { path: Some(path) } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                // The URL only selects the driver; the path is set below so that names
                // with spaces or `?` need no escaping.
                let mut options = ConnectOptions::new("sqlite:basalt.db");
                let path = path.clone();
                // A connection to a local file cannot be dropped by anyone: no ping on
                // checkout (sqlx's default), which cost a round trip through the
                // connection's worker thread before every statement.
                options
                    .max_connections(max_connections)
                    .test_before_acquire(false)
                    .map_sqlx_sqlite_pool_opts(|pool| pool.before_acquire(sqlite_idle_ok))
                    .map_sqlx_sqlite_opts(move |o| {
                        o.filename(&path)
                            .in_memory(false)
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(match synchronous {
                                lite::Synchronous::Normal => SqliteSynchronous::Normal,
                                lite::Synchronous::Full => SqliteSynchronous::Full,
                            })
                            .busy_timeout(SQLITE_BUSY_TIMEOUT)
                            .foreign_keys(true)
                    });
                (options, Backend::Sqlite)
            }
            DatabaseUrl::Sqlite { path: None } => {
                // Every connection to :memory: is its own database: keep exactly one.
                let mut options = ConnectOptions::new("sqlite::memory:");
                options.max_connections(1).min_connections(1);
                (options, Backend::Sqlite)
            }
            DatabaseUrl::Postgres(url) => {
                let mut options = ConnectOptions::new(url.as_str());
                // sqlx pings a connection on every checkout by default: a network round
                // trip before each statement. Ping only one that sat idle long enough
                // to have been dropped by the server or a proxy.
                options
                    .max_connections(max_connections)
                    .test_before_acquire_if_idle_for(PG_PING_IF_IDLE_FOR);
                (options, Backend::Postgres)
            }
        };
        options
            .connect_timeout(Duration::from_secs(5))
            // A request waits this long for a connection before it is answered 503:
            // long enough for a burst, short enough to tell a client the database is away.
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let mut conn = sea_orm::Database::connect(options)
            .await
            .map_err(|source| DbError::Connect {
                url: url.redacted(),
                source,
            })?;
        let statements = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        Ok(Db {
            conn,
            write_turn: (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(()))),
            backend,
            statements,
            lite: None,
            synchronous,
        })
    }

    /// Open the SQLite record engine ([`lite`]) on this database's file and start its
    /// writer thread; PostgreSQL and in-memory SQLite keep to the pool. Call once, on
    /// the pool the record service uses.
    ///
    /// Fails when the file cannot be opened or the writer cannot start.
    pub fn with_record_engine(mut self, url: &DatabaseUrl) -> Result<Db, DbError> {
        if let (DatabaseUrl::Sqlite { path: Some(path) }, Some(turn)) = (url, &self.write_turn) {
            let engine = lite::Lite::open(
                path,
                self.synchronous,
                SQLITE_BUSY_TIMEOUT,
                Arc::clone(turn),
                Arc::clone(&self.statements),
            )?;
            self.lite = Some(Arc::new(engine));
        }
        Ok(self)
    }

    /// The SQLite record engine, when open.
    pub fn lite(&self) -> Option<&lite::Lite> {
        self.lite.as_deref()
    }

    /// Where record reads run: the engine's readers, or the pool.
    pub fn reads(&self) -> exec::Exec<'_> {
        match &self.lite {
            Some(lite) => lite.readers.exec(),
            None => exec::Exec::Pool(&self.conn),
        }
    }

    /// How many statements have run through this pool so far. Tests use the
    /// difference across one request to keep query counts bounded.
    pub fn statements(&self) -> u64 {
        self.statements.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sea-orm connection, for the services that own tables.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The sea-query dialect for building statements.
    pub fn database_backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Start a transaction that will write. On SQLite it takes the write lock at
    /// `BEGIN` (`BEGIN IMMEDIATE`): a deferred transaction that reads before it writes
    /// cannot be upgraded once another writer has committed, and fails with
    /// SQLITE_BUSY however long the busy timeout. Taken up front, concurrent writers
    /// wait their turn instead.
    ///
    /// Fails when no connection can be had or the lock is not granted within the
    /// busy timeout.
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        // Wait for the turn before taking a pooled connection, so queued writers hold
        // none that readers could use.
        let turn = self.write_turn().await?;
        let txn = match self.backend {
            Backend::Sqlite => {
                self.conn
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..TransactionOptions::default()
                    })
                    .await?
            }
            Backend::Postgres => self.conn.begin().await?,
        };
        Ok(WriteTxn { txn, turn })
    }

    /// The writers' turn, for a single write statement outside [`Db::begin_write`]
    /// (SQLite: so it queues with the transactions instead of polling for the lock
    /// while one of them waits; PostgreSQL: nothing to wait for).
    ///
    /// Fails when the turn does not come within the busy timeout.
    pub async fn write_turn(&self) -> Result<WriteTurn, DbErr> {
        let guard = match &self.write_turn {
            Some(turn) => Some(
                tokio::time::timeout(SQLITE_BUSY_TIMEOUT, Arc::clone(turn).lock_owned())
                    .await
                    .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?,
            ),
            None => None,
        };
        Ok(WriteTurn { _guard: guard })
    }

    /// SQLite: refresh the query planner's statistics, taking the writers' turn. With
    /// `everything`, every table is analyzed (after a schema change: new tables and
    /// indexes get numbers at once); otherwise `PRAGMA optimize` analyzes only where
    /// SQLite judges them stale (periodically). `analysis_limit` bounds the rows read
    /// per index either way. PostgreSQL's autovacuum does this itself.
    ///
    /// The outbox keeps no statistics: its size swings with the write load and the
    /// pruning, so any figure is soon wrong by orders of magnitude — analyzed while it
    /// held one row, SQLite scanned the whole table for the feed's `seq > ?` at every
    /// commit once it held sixty thousand. Without statistics the planner assumes a
    /// large table and uses the keys.
    ///
    /// Fails when the statement fails.
    pub async fn optimize(&self, everything: bool) -> Result<(), DbErr> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let _turn = self.write_turn().await?;
        let analyze = if everything {
            "PRAGMA analysis_limit = 1000; ANALYZE;"
        } else {
            "PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;"
        };
        self.conn.execute_unprepared(analyze).await?;
        // Reloading the statistics (`ANALYZE sqlite_schema`) makes every connection
        // plan with what is left.
        self.conn
            .execute_unprepared(
                "DELETE FROM sqlite_stat1 WHERE tbl = '_outbox'; ANALYZE sqlite_schema;",
            )
            .await
            .map(|_| ())
    }

    /// A round trip to the database.
    ///
    /// Fails when the database does not answer.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Apply the system migrations that are not applied yet and return how many ran.
    /// On PostgreSQL an advisory lock held by the migrating transaction keeps several
    /// instances starting at once from racing.
    ///
    /// Fails when a migration fails; nothing of that migration is kept.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        let txn = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await?;
        }
        let pending = Migrator::get_pending_migrations(&*txn)
            .await
            .map_err(DbError::Migrate)?
            .len();
        Migrator::up(&*txn, None).await.map_err(DbError::Migrate)?;
        txn.commit().await?;
        Ok(pending)
    }

    /// This installation's id: generated and stored on first start, the same on every
    /// later start against the same database.
    ///
    /// Fails when the `_settings` table cannot be read or written.
    pub async fn installation_id(&self) -> Result<String, DbErr> {
        let fresh = serde_json::Value::String(uuid::Uuid::now_v7().to_string());
        match self.setting_or_insert("installationId", fresh).await? {
            serde_json::Value::String(id) => Ok(id),
            _ => Err(DbErr::Type(
                "_settings.installationId is not a string".to_owned(),
            )),
        }
    }

    /// The setting `key`, stored as `fresh` first if it has no value yet. Concurrent
    /// first calls from several instances agree on one value.
    ///
    /// Fails when the `_settings` table cannot be read or written, or holds bad JSON.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        fresh: serde_json::Value,
    ) -> Result<serde_json::Value, DbErr> {
        use entities::settings;
        let insert = Query::insert()
            .into_table(settings::Entity)
            .columns([
                settings::Column::Key,
                settings::Column::Value,
                settings::Column::Updated,
            ])
            .values([
                key.into(),
                fresh.to_string().into(),
                chrono::Utc::now().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(
                OnConflict::column(settings::Column::Key)
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        self.conn.execute(&insert).await?;
        let row = settings::Entity::find_by_id(key)
            .one(&self.conn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(key.to_owned()))?;
        serde_json::from_str(&row.value)
            .map_err(|_| DbErr::Type(format!("_settings.{key} is not JSON")))
    }

    /// Store `value` as the setting `key`, replacing any earlier value.
    ///
    /// Fails when `_settings` cannot be written.
    pub async fn set_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), DbErr> {
        use entities::settings;
        let upsert = Query::insert()
            .into_table(settings::Entity)
            .columns([
                settings::Column::Key,
                settings::Column::Value,
                settings::Column::Updated,
            ])
            .values([
                key.into(),
                value.to_string().into(),
                chrono::Utc::now().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(
                OnConflict::column(settings::Column::Key)
                    .update_columns([settings::Column::Value, settings::Column::Updated])
                    .to_owned(),
            )
            .to_owned();
        self.conn.execute(&upsert).await.map(|_| ())
    }

    /// Close every pooled connection. Later calls on clones fail.
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }
}
