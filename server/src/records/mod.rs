//! THE record pipeline (DESIGN.md §2): the only code that reads or writes rows of
//! collections. So far it offers what auth needs — system-level reads by field, inserts,
//! updates and deletes, with values encoded and decoded by field type; rules,
//! validation and the REST adapter arrive with the records issue. Imports `schema`
//! and `db`.

pub mod batch;
pub mod ctx;
mod direct;
pub mod expand;
mod matching;
pub mod read;
pub mod related;
mod statements;
pub mod validate;
mod write;

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::BoxFuture;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, SelectStatement, SimpleExpr};
use sea_orm::{DbErr, Statement};
use serde_json::{Map, Value};
use statements::{Fields, Shape};

pub use ctx::{Committed, HookOp, Hooks, NoHooks, Pending, Rejection, WriteCtx};
pub use write::ExternalLink;

use crate::errors::{Code, Problem};
use crate::validation::FieldErrors;

use crate::db::exec::{Exec, Row};
use crate::db::{Backend, Db, WriteTxn};
use crate::events::outbox::Action;
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::schema::ddl::{Storage, storage};
use crate::schema::service::{format_time, read_version, read_version_on};
use crate::schema::{Collection, Field, FieldKind, SchemaError, SchemaService, Snapshot};

/// A record: field name → value, as the API shows it before hiding anything.
pub type Record = Map<String, Value>;

/// Outcomes of a record operation a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record not found")]
    NotFound,
    #[error("a value for `{0}` conflicts with an existing record")]
    Conflict(String),
    #[error("the schema kept changing during the write; try again")]
    SchemaChanging,
    #[error("schema error: {0}")]
    Schema(SchemaError),
    #[error("invalid filter: {0}")]
    Filter(crate::filter::FilterError),
    /// The `sort` parameter names something that cannot be sorted by.
    #[error("invalid sort: {0}")]
    Sort(crate::filter::FilterError),
    /// The `expand` parameter names something that cannot be expanded.
    #[error("invalid expand: {0}")]
    Expand(crate::filter::FilterError),
    /// The collection's rule for this action is `null`: superusers only.
    #[error("only superusers can perform this action")]
    Forbidden,
    /// An API key used outside its scopes.
    #[error("this API key may not {1} `{0}` records")]
    OutOfScope(String, &'static str),
    #[error("the record is invalid")]
    Validation(crate::validation::FieldErrors),
    /// A before-hook refused the write, with its message and field errors.
    #[error("rejected: {0}")]
    Rejected(String, crate::validation::FieldErrors),
    /// `If-Match` names another version of the record.
    #[error("the record has changed since it was read")]
    Stale,
    /// A request that is not what the endpoint takes (a batch item that is not a
    /// record request, say).
    #[error("{0}")]
    Invalid(String),
    /// A stored rule no longer compiles (the schema changed under it).
    #[error("the collection's rule cannot be evaluated: {0}")]
    BrokenRule(String),
    #[error("database error: {0}")]
    Db(DbErr),
}

impl RecordError {
    /// The error as every transport reports it (see [`crate::errors`]); a fault's
    /// cause is logged here.
    pub fn problem(&self) -> Problem {
        match self {
            RecordError::NotFound => {
                Problem::new(Code::NotFound, "The requested resource wasn't found.")
            }
            RecordError::Validation(errors) => {
                Problem::new(Code::ValidationFailed, "Failed to save the record.")
                    .with_fields(errors.clone())
            }
            RecordError::Conflict(field) => {
                let mut fields = FieldErrors::default();
                if field == "email" {
                    fields.add(
                        field,
                        "validation_invalid_email",
                        validate::EMAIL_INVALID_OR_TAKEN.to_owned(),
                    );
                } else {
                    fields.add(
                        field,
                        "validation_not_unique",
                        "Value must be unique.".into(),
                    );
                }
                Problem::new(Code::NotUnique, "Failed to save the record.").with_fields(fields)
            }
            RecordError::Rejected(message, errors) => {
                Problem::new(Code::Rejected, message.clone()).with_fields(errors.clone())
            }
            RecordError::Invalid(message) => {
                Problem::new(Code::InvalidRequest, format!("{message}."))
            }
            RecordError::Filter(e) => {
                Problem::new(Code::InvalidFilter, format!("Invalid filter: {e}."))
            }
            RecordError::Sort(e) => Problem::new(Code::InvalidSort, format!("Invalid sort: {e}.")),
            RecordError::Expand(e) => {
                Problem::new(Code::InvalidExpand, format!("Invalid expand: {e}."))
            }
            RecordError::Forbidden => {
                Problem::new(Code::Forbidden, "Only superusers can perform this action.")
            }
            RecordError::OutOfScope(collection, op) => Problem::new(
                Code::OutOfScope,
                format!("This API key may not {op} `{collection}` records."),
            ),
            RecordError::Stale => Problem::new(
                Code::Stale,
                "The record has changed since it was read; reload it and try again.",
            ),
            RecordError::SchemaChanging => {
                Problem::new(Code::SchemaChanging, "The schema is changing; try again.")
            }
            RecordError::BrokenRule(message) => {
                Problem::internal(&std::io::Error::other(message.clone()))
            }
            RecordError::Schema(cause) => Problem::internal(cause),
            RecordError::Db(cause) => Problem::from_db(cause),
        }
    }
}

/// API-key scopes, checked where each operation starts.
pub(crate) trait ScopeCheck {
    /// Fails with `OutOfScope` for an API key without `op` on `collection`.
    fn require_scope(&self, collection: &str, op: crate::identity::Op) -> Result<(), RecordError>;
}

impl ScopeCheck for crate::identity::Identity {
    fn require_scope(&self, collection: &str, op: crate::identity::Op) -> Result<(), RecordError> {
        if self.in_scope(collection, op) {
            Ok(())
        } else {
            Err(RecordError::OutOfScope(collection.to_owned(), op.as_str()))
        }
    }
}

/// Reads and writes records.
#[derive(Clone, Debug)]
pub struct RecordService {
    db: Db,
    schema: Arc<SchemaService>,
    /// Counts commits that wrote records (and so outbox rows); the event feed and
    /// dispatcher watch it.
    committed: Arc<tokio::sync::watch::Sender<u64>>,
    hooks: Arc<dyn Hooks>,
    /// Signed-in callers' records; dropped here when they change.
    identities: Arc<crate::identity::IdentityCache>,
    /// Whether events go to an external broker; without one the outbox rows are
    /// written as delivered (the in-process feed reads them all the same).
    external_broker: bool,
    /// The text of fixed-shape statements, built once per schema version.
    statements: Arc<statements::Statements>,
}

impl From<DbErr> for RecordError {
    fn from(err: DbErr) -> Self {
        RecordError::Db(err)
    }
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// How often a write retries when the schema changed under it.
const SCHEMA_RETRIES: usize = 5;

impl RecordService {
    pub fn new(db: Db, schema: Arc<SchemaService>) -> RecordService {
        RecordService {
            db,
            schema,
            committed: Arc::new(tokio::sync::watch::Sender::new(0)),
            hooks: Arc::new(NoHooks),
            identities: Arc::default(),
            external_broker: true,
            statements: Arc::default(),
        }
    }

    /// The same service, told whether events go to an external broker (the
    /// dispatcher marks rows sent as it publishes them) or not (rows are written as
    /// delivered). Defaults to an external broker.
    pub fn with_external_broker(mut self, external: bool) -> RecordService {
        self.external_broker = external;
        self
    }

    /// The cache of signed-in callers' records, which this service keeps current.
    pub fn identities(&self) -> &Arc<crate::identity::IdentityCache> {
        &self.identities
    }

    /// The same service with these hooks on every write.
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> RecordService {
        self.hooks = hooks;
        self
    }

    /// Changes after every commit that wrote records (and so outbox rows): the event
    /// feed and dispatcher wait on it.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// A statement for this engine, tagged with the schema version it was built
    /// against. The tag changes the statement's text when the schema changes, so no
    /// prepared statement of an older table shape is ever reused.
    fn statement<S: sea_orm::StatementBuilder>(&self, query: &S, version: i64) -> Statement {
        let mut statement = self.db.database_backend().build(query);
        statement.sql.push_str(" /* schema v");
        statement.sql.push_str(&version.to_string());
        statement.sql.push_str(" */");
        statement
    }

    /// A fixed-shape statement with `values` bound: its text kept from an earlier
    /// request of the same collection, shape and schema version, or `build`'s (then
    /// kept). `build` must bind exactly the `values` it is given, in order (checked in debug builds).
    fn cached(
        &self,
        version: i64,
        collection: &str,
        shape: statements::Shape,
        values: Vec<sea_orm::Value>,
        build: impl FnOnce(&[sea_orm::Value]) -> Result<Statement, RecordError>,
    ) -> Result<Statement, RecordError> {
        if let Some(text) = self.statements.get(version, collection, &shape) {
            return Ok(Statement::from_sql_and_values(
                self.db.database_backend(),
                text.as_ref(),
                values,
            ));
        }
        let statement = build(&values)?;
        debug_assert_eq!(
            statement.values.as_ref().map_or(&[][..], |v| &v.0[..]),
            &values[..],
            "the statement binds other values than its shape's: {}",
            statement.sql
        );
        self.statements
            .keep(version, collection, shape, &statement.sql);
        Ok(statement)
    }

    /// How many statement texts were built, not found among those kept (a count
    /// for tests).
    pub fn statement_texts_built(&self) -> u64 {
        self.statements.built()
    }

    /// The current snapshot, which must be of schema `version` (read inside the
    /// write's transaction): reloaded when it is behind.
    async fn snapshot_at(&self, version: i64) -> Result<Arc<Snapshot>, RecordError> {
        for _ in 0..SCHEMA_RETRIES {
            let snapshot = self.schema.snapshot();
            if snapshot.version() == version {
                return Ok(snapshot);
            }
            self.schema.reload().await.map_err(RecordError::Schema)?;
        }
        Err(RecordError::SchemaChanging)
    }

    /// Run `work` as one write: in a [`WriteCtx`] on a current schema snapshot, in one
    /// transaction — on SQLite a savepoint of the writer's next group commit, on
    /// PostgreSQL its own transaction with the schema version share-locked. Returns
    /// `work`'s result once committed, then runs the after-commit chain.
    ///
    /// Fails with `work`'s error (nothing of it is kept), `SchemaChanging`, or the
    /// database's error when the transaction cannot start or commit.
    pub(crate) async fn run_write<T, E, F>(
        &self,
        identity: Identity,
        request: Request,
        work: F,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<RecordError> + From<DbErr> + Send + 'static,
        F: for<'c> FnOnce(&'c WriteCtx<'c>) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (value, changes) = match self.db.lite() {
            Some(lite) => {
                let service = self.clone();
                lite.writer
                    .write(move |exec, batch| {
                        Box::pin(async move {
                            let cached = batch.schema_version.lock().ok().and_then(|v| *v);
                            let version = match cached {
                                Some(version) => version,
                                None => {
                                    let version =
                                        read_version_on(exec, service.db.database_backend(), true)
                                            .await
                                            .map_err(E::from)?;
                                    if let Ok(mut slot) = batch.schema_version.lock() {
                                        *slot = Some(version);
                                    }
                                    version
                                }
                            };
                            let snapshot = service.snapshot_at(version).await.map_err(E::from)?;
                            let ctx =
                                WriteCtx::new(exec, snapshot, version, identity, request, &service);
                            let value = work(&ctx).await?;
                            Ok::<_, E>((value, ctx.take_changes()))
                        })
                    })
                    .await?
            }
            None => {
                let (snapshot, version, txn) = self.begin_checked().await.map_err(E::from)?;
                let ctx =
                    WriteCtx::new(Exec::Txn(&txn), snapshot, version, identity, request, self);
                let value = work(&ctx).await?;
                let changes = ctx.take_changes();
                drop(ctx);
                txn.commit().await.map_err(E::from)?;
                (value, changes)
            }
        };
        self.after_commit(&changes).await;
        Ok(value)
    }

    /// [`RecordService::run_write`] for work that fails with a [`RecordError`].
    ///
    /// Fails like `run_write`.
    pub(crate) async fn in_write<T, F>(
        &self,
        identity: Identity,
        request: Request,
        work: F,
    ) -> Result<T, RecordError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c WriteCtx<'c>) -> BoxFuture<'c, Result<T, RecordError>>
            + Send
            + 'static,
    {
        self.run_write::<T, RecordError, F>(identity, request, work)
            .await
    }

    /// The after-commit chain: wake the event feed and dispatcher, then the hooks.
    async fn after_commit(&self, changes: &[Committed]) {
        if changes.is_empty() {
            return;
        }
        // First: a rotated token key is refused from the next request on, here and
        // (with a shared cache) on every other instance.
        for change in changes.iter().filter(|c| c.auth) {
            self.identities.forget(&change.collection, &change.id);
            self.identities
                .bump_shared(&change.collection, &change.id)
                .await;
        }
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
        self.hooks.after_commit(changes);
    }

    /// A write transaction on the current snapshot (PostgreSQL, and SQLite without
    /// the record engine): the schema version is share-locked (PostgreSQL) or
    /// exclusive (SQLite) for the whole transaction, and a snapshot found behind is
    /// reloaded first.
    async fn begin_checked(&self) -> Result<(Arc<Snapshot>, i64, WriteTxn), RecordError> {
        for _ in 0..SCHEMA_RETRIES {
            let snapshot = self.schema.snapshot();
            let txn = self.db.begin_write().await.map_err(RecordError::Db)?;
            let version = read_version(&*txn, true).await.map_err(RecordError::Db)?;
            if version == snapshot.version() {
                return Ok((snapshot, version, txn));
            }
            txn.rollback().await.map_err(RecordError::Db)?;
            self.schema.reload().await.map_err(RecordError::Schema)?;
        }
        Err(RecordError::SchemaChanging)
    }

    /// Run `read` (which takes the current snapshot); if it fails on the database
    /// because the schema moved on meanwhile — another instance renamed or dropped a
    /// column this one has not heard of yet — reload and run it once more.
    pub(super) async fn current_schema<T, Fut>(
        &self,
        read: impl Fn() -> Fut,
    ) -> Result<T, RecordError>
    where
        Fut: std::future::Future<Output = Result<T, RecordError>>,
    {
        let version = self.schema.snapshot().version();
        match read().await {
            Err(RecordError::Db(err)) => {
                let current = read_version(self.db.conn(), false)
                    .await
                    .map_err(RecordError::Db)?;
                if current == version {
                    return Err(RecordError::Db(err));
                }
                self.schema.reload().await.map_err(RecordError::Schema)?;
                read().await
            }
            other => other,
        }
    }

    /// Run a read against the current snapshot; if it fails because the schema moved
    /// on meanwhile, reload and run it once more.
    async fn read(
        &self,
        collection: &str,
        build: impl Fn(&Collection) -> Result<Option<SelectStatement>, RecordError>,
    ) -> Result<Option<(Arc<Collection>, Row)>, RecordError> {
        self.current_schema(|| async {
            let snapshot = self.schema.snapshot();
            let collection = snapshot
                .get(collection)
                .cloned()
                .ok_or(RecordError::NotFound)?;
            let Some(query) = build(&collection)? else {
                return Ok(None);
            };
            let statement = self.statement(&query, snapshot.version());
            let row = self
                .db
                .reads()
                .one(statement)
                .await
                .map_err(RecordError::Db)?;
            Ok(row.map(|row| (collection, row)))
        })
        .await
    }

    /// The first record of `collection` (id or name) whose `field` equals `value`;
    /// text comparisons on email fields ignore case.
    ///
    /// Fails with `NotFound` for an unknown collection, or when the query fails.
    pub async fn find_by_field(
        &self,
        collection: &str,
        field: &str,
        value: &Value,
    ) -> Result<Option<Record>, RecordError> {
        let found = self
            .read(collection, |collection| {
                let Some(def) = collection.field(field) else {
                    return Ok(None);
                };
                let condition: SimpleExpr = match (&def.kind, value) {
                    (FieldKind::Email { .. }, Value::String(s)) => {
                        Expr::expr(Func::lower(Expr::col(col(field)))).eq(s.to_lowercase())
                    }
                    _ => Expr::col(col(field)).eq(self.encode(def, value)),
                };
                Ok(Some(
                    Query::select()
                        .columns(collection.fields.iter().map(|f| col(&f.name)))
                        .from(col(&collection.name))
                        .and_where(condition)
                        .limit(1)
                        .to_owned(),
                ))
            })
            .await?;
        found
            .map(|(collection, row)| self.decode(&collection, &row))
            .transpose()
    }

    /// The record with this id.
    ///
    /// Fails with `NotFound` for an unknown collection, or when the query fails.
    pub async fn find_by_id(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<Record>, RecordError> {
        self.find_by_field(collection, "id", &Value::String(id.to_owned()))
            .await
    }

    async fn find_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
    ) -> Result<Record, RecordError> {
        self.find_in_locking(ctx, collection, id, false).await
    }

    /// Read one row inside the write; with `lock`, PostgreSQL locks it until the
    /// transaction ends (SQLite's write transactions are exclusive already).
    async fn find_in_locking(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        lock: bool,
    ) -> Result<Record, RecordError> {
        let lock = lock && self.db.backend() == Backend::Postgres;
        let shape = Shape::Find { lock };
        let statement = self.cached(
            ctx.version,
            &collection.name,
            shape,
            vec![id.into()],
            |_| {
                let mut query = Query::select();
                query
                    .columns(collection.fields.iter().map(|f| col(&f.name)))
                    .from(col(&collection.name))
                    .and_where(Expr::col(col("id")).eq(id));
                if lock {
                    query.lock_exclusive();
                }
                Ok(self.statement(&query, ctx.version))
            },
        )?;
        let row = ctx
            .exec
            .one(statement)
            .await
            .map_err(RecordError::Db)?
            .ok_or(RecordError::NotFound)?;
        self.decode(collection, &row)
    }

    /// `SELECT` of every field of row `id`, the table aliased
    /// [`BASE`](crate::filter::compile::BASE) for conditions to add.
    fn select_by_id(collection: &Collection, id: &str) -> SelectStatement {
        use crate::filter::compile::BASE;
        let mut query = Query::select();
        for field in &collection.fields {
            query.column((col(BASE), col(&field.name)));
        }
        query
            .from_as(col(&collection.name), col(BASE))
            .and_where(Expr::col((col(BASE), col("id"))).eq(id));
        query
    }

    /// [`Self::select_by_id`] with no condition, its text kept per schema version.
    fn view_by_id(
        &self,
        version: i64,
        collection: &Collection,
        id: &str,
    ) -> Result<Statement, RecordError> {
        self.cached(
            version,
            &collection.name,
            Shape::View,
            vec![id.into()],
            |_| Ok(self.statement(&Self::select_by_id(collection, id), version)),
        )
    }

    /// Read row `id` back inside the write and, in the same statement, evaluate each
    /// of `checks` on it (a rule condition on [`BASE`](crate::filter::compile::BASE);
    /// `None` always holds). One round trip where a write used to take one per check.
    ///
    /// Fails with `NotFound` when the row is gone, or when the query fails.
    pub(crate) async fn read_back<const N: usize>(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        checks: [Option<SimpleExpr>; N],
    ) -> Result<(Record, [bool; N]), RecordError> {
        let statement = if checks.iter().all(Option::is_none) {
            self.view_by_id(ctx.version, collection, id)?
        } else {
            let mut query = Self::select_by_id(collection, id);
            for (i, check) in checks.iter().enumerate() {
                if let Some(condition) = check {
                    query.expr_as(
                        Expr::case(condition.clone(), 1i64).finally(0i64),
                        col(&format!("__check{i}")),
                    );
                }
            }
            self.statement(&query, ctx.version)
        };
        let row = ctx
            .exec
            .one(statement)
            .await
            .map_err(RecordError::Db)?
            .ok_or(RecordError::NotFound)?;
        let mut held = [true; N];
        for (i, check) in checks.iter().enumerate() {
            if check.is_some()
                && let Some(slot) = held.get_mut(i)
            {
                let value: i64 = row.get(&format!("__check{i}")).map_err(RecordError::Db)?;
                *slot = value == 1;
            }
        }
        Ok((self.decode(collection, &row)?, held))
    }

    /// Run `work` as one write on `collection` (id or name), looked up in the write's
    /// own snapshot: the way in of every single-collection write.
    ///
    /// Fails like [`RecordService::run_write`], and with `NotFound` when the
    /// collection is gone.
    pub(crate) async fn write_on<T, F>(
        &self,
        collection: &str,
        identity: Identity,
        request: Request,
        work: F,
    ) -> Result<T, RecordError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c WriteCtx<'c>,
                Arc<Collection>,
            ) -> BoxFuture<'c, Result<T, RecordError>>
            + Send
            + 'static,
    {
        let name = collection.to_owned();
        self.in_write(identity, request, move |ctx| {
            Box::pin(async move {
                let collection = ctx
                    .snapshot
                    .get(&name)
                    .cloned()
                    .ok_or(RecordError::NotFound)?;
                work(ctx, collection).await
            })
        })
        .await
    }

    /// A system write (Basalt's own: auth flows; no rules, no hooks) on `collection`.
    async fn system_write<T, F>(&self, collection: &str, work: F) -> Result<T, RecordError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c WriteCtx<'c>,
                Arc<Collection>,
            ) -> BoxFuture<'c, Result<T, RecordError>>
            + Send
            + 'static,
    {
        self.write_on(collection, Identity::Anonymous, Request::new("POST"), work)
            .await
    }

    /// Insert a record with the given values; the id (UUIDv7 unless given), autodates
    /// and every unset field's default are filled in. Emails are stored in lower case.
    /// No rule, validation or hook is applied: callers are Basalt's own code.
    ///
    /// Fails with `NotFound` for an unknown collection, `Conflict` on a unique index, or
    /// when the statement fails.
    pub async fn insert_system(
        &self,
        collection: &str,
        values: Record,
    ) -> Result<Record, RecordError> {
        self.system_write(collection, move |ctx, collection| {
            Box::pin(async move {
                let id = ctx.service.insert_in(ctx, &collection, values).await?;
                ctx.service.find_in(ctx, &collection, &id).await
            })
        })
        .await
    }

    /// Insert inside the write: the id (UUIDv7 unless given) and autodates are filled
    /// in; returns the id.
    async fn insert_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        mut values: Record,
    ) -> Result<String, RecordError> {
        fill_new(collection, &mut values);
        self.insert_row(ctx, collection, values).await
    }

    /// Insert `values` as they are (id and autodates already filled in, see
    /// [`fill_new`]), with the outbox event; returns the id.
    async fn insert_row(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        values: Record,
    ) -> Result<String, RecordError> {
        let params: Vec<sea_orm::Value> = collection
            .fields
            .iter()
            .filter_map(|field| Some(self.param(field, values.get(&field.name)?)))
            .collect();
        let shape = Shape::Insert(Fields::of(collection, |name| values.contains_key(name)));
        let statement = self.cached(ctx.version, &collection.name, shape, params, |_| {
            let mut columns = Vec::new();
            let mut exprs = Vec::new();
            for field in &collection.fields {
                if let Some(value) = values.get(&field.name) {
                    columns.push(col(&field.name));
                    exprs.push(self.encode(field, value));
                }
            }
            let insert = Query::insert()
                .into_table(col(&collection.name))
                .columns(columns)
                .values(exprs)
                .map_err(|e| RecordError::Db(DbErr::Custom(e.to_string())))?
                .returning(Self::returning(collection))
                .to_owned();
            Ok(self.statement(&insert, ctx.version))
        })?;
        let row = ctx
            .exec
            .one(statement)
            .await
            .map_err(|e| conflict_or_db(e, collection))?
            .ok_or_else(|| RecordError::Db(DbErr::Custom("INSERT returned no row".into())))?;
        let record = self.decode(collection, &row)?;
        self.record_event(ctx, collection, Action::Created, &record, None)
            .await?;
        Ok(values
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// `RETURNING` every field, so a write yields the row it wrote.
    fn returning(collection: &Collection) -> sea_orm::sea_query::ReturningClause {
        Query::returning().columns(collection.fields.iter().map(|f| col(&f.name)))
    }

    /// The outbox event of a change, in the change's transaction (DESIGN.md §6):
    /// the record as any subscriber may see it — no hidden fields, password hashes
    /// or token keys — plus, beside the event and for in-process subscribers only,
    /// the hidden fields' values (realtime's view rules and superusers need them).
    /// The change is also noted for the after-commit chain.
    async fn record_event(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        action: Action,
        record: &Record,
        previous: Option<&Record>,
    ) -> Result<(), RecordError> {
        let (columns, values) = self.event_row(collection, action, record, previous);
        let statement = self.cached(ctx.version, "", Shape::Outbox, values.into(), |values| {
            let insert = Query::insert()
                .into_table(crate::db::entities::outbox::Entity)
                .columns(columns)
                .values(values.iter().cloned().map(Expr::val))
                .map_err(|e| RecordError::Db(DbErr::Custom(e.to_string())))?
                .to_owned();
            Ok(self.db.database_backend().build(&insert))
        })?;
        ctx.exec.execute(statement).await.map_err(RecordError::Db)?;
        ctx.note(Committed {
            collection: collection.name.clone(),
            collection_id: collection.id.clone(),
            id: record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            action,
            auth: collection.auth.is_some(),
        });
        Ok(())
    }

    /// The outbox row of a change: the record as any subscriber may see it — no
    /// hidden fields, password hashes or token keys — plus, beside the event and for
    /// in-process subscribers only, the hidden fields' values (realtime's view rules
    /// and superusers need them).
    fn event_row(
        &self,
        collection: &Collection,
        action: Action,
        record: &Record,
        previous: Option<&Record>,
    ) -> (
        [crate::db::entities::outbox::Column; 8],
        [sea_orm::Value; 8],
    ) {
        let view = |r: &Record| public_view(collection, r, false, true);
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let hidden: Map<String, Value> = collection
            .fields
            .iter()
            .filter(|f| f.hidden && !is_secret(f))
            .filter_map(|f| Some((f.name.clone(), record.get(&f.name)?.clone())))
            .collect();
        let values = crate::events::outbox::row(
            &collection.name,
            action,
            id,
            &view(record),
            previous.map(view).as_ref(),
            (!hidden.is_empty())
                .then_some(Value::Object(hidden))
                .as_ref(),
            !self.external_broker,
        );
        (crate::events::outbox::COLUMNS, values)
    }

    /// Set the given fields of one record (and its on-update autodates). No rule,
    /// validation or hook is applied: callers are Basalt's own code.
    ///
    /// Fails with `NotFound`, `Conflict` on a unique index, or when the statement fails.
    pub async fn update_system(
        &self,
        collection: &str,
        id: &str,
        values: Record,
    ) -> Result<Record, RecordError> {
        let id = id.to_owned();
        self.system_write(collection, move |ctx, collection| {
            Box::pin(async move {
                ctx.service
                    .update_in(ctx, &collection, &id, values, &[])
                    .await?;
                ctx.service.find_in(ctx, &collection, &id).await
            })
        })
        .await
    }

    /// Update inside the write: the given fields, number `increments` as `n = n + d`
    /// in SQL, and the on-update autodates.
    ///
    /// Fails with `NotFound` when no row has this id.
    async fn update_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        values: Record,
        increments: &[(String, f64)],
    ) -> Result<(), RecordError> {
        let previous = self.find_in(ctx, collection, id).await?;
        let now = format_time(Utc::now());
        let increment = |name: &str| increments.iter().find(|(field, _)| field == name);
        let mut params = Vec::new();
        for field in &collection.fields {
            if let Some((_, delta)) = increment(&field.name) {
                params.push(sea_orm::Value::from(*delta));
            } else if let Some(value) = values.get(&field.name) {
                params.push(self.param(field, value));
            } else if let FieldKind::Autodate {
                on_update: true, ..
            } = field.kind
            {
                params.push(now.clone().into());
            }
        }
        params.push(id.into());
        let shape = Shape::Update {
            set: Fields::of(collection, |name| values.contains_key(name)),
            add: Fields::of(collection, |name| increment(name).is_some()),
        };
        let statement = self.cached(ctx.version, &collection.name, shape, params, |_| {
            let mut update = Query::update();
            update.table(col(&collection.name));
            for field in &collection.fields {
                if let Some((_, delta)) = increment(&field.name) {
                    update.value(col(&field.name), Expr::col(col(&field.name)).add(*delta));
                } else if let Some(value) = values.get(&field.name) {
                    update.value(col(&field.name), self.encode(field, value));
                } else if let FieldKind::Autodate {
                    on_update: true, ..
                } = field.kind
                {
                    update.value(col(&field.name), now.clone());
                }
            }
            update
                .and_where(Expr::col(col("id")).eq(id))
                .returning(Self::returning(collection));
            Ok(self.statement(&update, ctx.version))
        })?;
        let row = ctx
            .exec
            .one(statement)
            .await
            .map_err(|e| conflict_or_db(e, collection))?
            .ok_or(RecordError::NotFound)?;
        let record = self.decode(collection, &row)?;
        self.record_event(ctx, collection, Action::Updated, &record, Some(&previous))
            .await
    }

    /// Delete `ids` of `collection` inside the write, with an outbox event per deleted
    /// record; returns how many there were.
    ///
    /// Fails when the statement or an event fails.
    async fn delete_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        ids: Vec<String>,
    ) -> Result<usize, RecordError> {
        if collection.auth.is_some() {
            // An account's external identities go with it, so signing in through
            // them later makes a new account instead of failing on a dangling link.
            let links = Query::delete()
                .from_table(col("_external_auths"))
                .and_where(Expr::col(col("collection_id")).eq(collection.id.as_str()))
                .and_where(Expr::col(col("record_id")).is_in(ids.iter().map(String::as_str)))
                .to_owned();
            ctx.exec
                .execute(self.statement(&links, ctx.version))
                .await
                .map_err(RecordError::Db)?;
        }
        let build = |ids: &[sea_orm::Value]| {
            let delete = Query::delete()
                .from_table(col(&collection.name))
                .and_where(Expr::col(col("id")).is_in(ids.iter().cloned()))
                .returning(Self::returning(collection))
                .to_owned();
            Ok(self.statement(&delete, ctx.version))
        };
        let ids: Vec<sea_orm::Value> = ids.into_iter().map(Into::into).collect();
        let statement = if ids.len() == 1 {
            self.cached(ctx.version, &collection.name, Shape::Delete, ids, build)?
        } else {
            build(&ids)?
        };
        let rows = ctx.exec.all(statement).await.map_err(RecordError::Db)?;
        for row in &rows {
            let record = self.decode(collection, row)?;
            self.record_event(ctx, collection, Action::Deleted, &record, None)
                .await?;
        }
        Ok(rows.len())
    }

    /// Delete one record; `false` when there was none. No rule or hook is applied.
    ///
    /// Fails with `NotFound` for an unknown collection, or when the statement fails.
    pub async fn delete_system(&self, collection: &str, id: &str) -> Result<bool, RecordError> {
        let id = id.to_owned();
        self.system_write(collection, move |ctx, collection| {
            Box::pin(async move {
                let deleted = ctx.service.delete_in(ctx, &collection, vec![id]).await?;
                Ok(deleted > 0)
            })
        })
        .await
    }

    /// The ids of the records of `collection` that match `filter`, sorted. The list
    /// pipeline builds on this; for now Basalt's own code and tests use it.
    ///
    /// Fails with `Filter` for a filter that does not parse or names what it may not
    /// see, `NotFound` for an unknown collection, or when the query fails.
    pub async fn ids_matching(
        &self,
        collection: &str,
        filter: &str,
        request: &crate::filter::compile::Request,
        scope: crate::filter::resolve::Scope,
    ) -> Result<Vec<String>, RecordError> {
        use crate::filter::compile::{BASE, compile};
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let mut query = Query::select();
        query
            .column((col(BASE), col("id")))
            .from_as(col(&collection.name), col(BASE))
            .order_by((col(BASE), col("id")), sea_orm::Order::Asc);
        if let Some(expr) = crate::filter::parse(filter).map_err(RecordError::Filter)? {
            let condition = compile(
                &expr,
                &collection,
                &snapshot,
                request,
                scope,
                self.db.database_backend(),
            )
            .map_err(RecordError::Filter)?;
            query.and_where(condition);
        }
        let rows = self
            .db
            .reads()
            .all(self.statement(&query, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        rows.iter()
            .map(|row| row.get::<String>("id").map_err(RecordError::Db))
            .collect()
    }

    /// How many records the collection holds.
    ///
    /// Fails with `NotFound` for an unknown collection, or when the query fails.
    pub async fn count(&self, collection: &str) -> Result<u64, RecordError> {
        let row = self
            .read(collection, |collection| {
                Ok(Some(
                    Query::select()
                        .expr_as(Expr::col(sea_orm::sea_query::Asterisk).count(), col("n"))
                        .from(col(&collection.name))
                        .to_owned(),
                ))
            })
            .await?;
        let n: i64 = match row {
            Some((_, row)) => row.get("n").map_err(RecordError::Db)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// A JSON value as the column of `field` stores it.
    fn encode(&self, field: &Field, value: &Value) -> SimpleExpr {
        self.wrap(field, self.param(field, value))
    }

    /// The expression a [`Self::param`] of `field` is bound as: PostgreSQL's json
    /// columns take text cast to `jsonb`. Its text depends on the field alone.
    fn wrap(&self, field: &Field, param: sea_orm::Value) -> SimpleExpr {
        match (storage(&field.kind), self.db.backend()) {
            (Storage::Json, Backend::Postgres) => Expr::val(param).cast_as(Alias::new("jsonb")),
            _ => Expr::val(param),
        }
    }

    /// The value bound for `value` in `field`'s column.
    fn param(&self, field: &Field, value: &Value) -> sea_orm::Value {
        // A null is typed as its column: PostgreSQL prepares a statement once per text,
        // with the parameters' types of its first run, so a parameter's type must not
        // depend on whether the value is null.
        match (storage(&field.kind), value) {
            (Storage::Number, Value::Null) if field.nullable => sea_orm::Value::Double(None),
            (Storage::Bool, Value::Null) if field.nullable => sea_orm::Value::Bool(None),
            (_, Value::Null) if field.nullable => sea_orm::Value::String(None),
            (Storage::Number, v) => v.as_f64().unwrap_or_default().into(),
            (Storage::Bool, v) => v.as_bool().unwrap_or_default().into(),
            (Storage::Json, v) => v.to_string().into(),
            (Storage::Text, Value::String(s)) if matches!(field.kind, FieldKind::Email { .. }) => {
                s.to_lowercase().into()
            }
            (Storage::Text, Value::String(s)) => s.clone().into(),
            (Storage::Text, Value::Null) => String::new().into(),
            (Storage::Text, v) => v.to_string().into(),
        }
    }

    /// `values` as the database gives them back once [`Self::encode`]d and stored:
    /// what [`Self::decode`] would read, without reading it.
    fn stored_record(&self, collection: &Collection, values: &Record) -> Record {
        collection
            .fields
            .iter()
            .filter_map(|field| {
                let value = values.get(&field.name)?;
                let stored = match (storage(&field.kind), value) {
                    (_, Value::Null) if field.nullable => Value::Null,
                    (Storage::Number, v) => {
                        crate::schema::model::number(v.as_f64().unwrap_or_default())
                    }
                    (Storage::Bool, v) => Value::Bool(v.as_bool().unwrap_or_default()),
                    (Storage::Json, v) => v.clone(),
                    (Storage::Text, Value::String(s))
                        if matches!(field.kind, FieldKind::Email { .. }) =>
                    {
                        Value::String(s.to_lowercase())
                    }
                    (Storage::Text, Value::String(s)) => Value::String(s.clone()),
                    (Storage::Text, Value::Null) => Value::String(String::new()),
                    (Storage::Text, v) => Value::String(v.to_string()),
                };
                Some((field.name.clone(), stored))
            })
            .collect()
    }

    /// A row back into JSON, by field type.
    fn decode(&self, collection: &Collection, row: &Row) -> Result<Record, RecordError> {
        let mut record = Record::new();
        for field in &collection.fields {
            let name = field.name.as_str();
            let value = match storage(&field.kind) {
                Storage::Text => row
                    .get::<Option<String>>(name)
                    .map(|v| v.map_or(Value::Null, Value::String)),
                Storage::Number => row
                    .get::<Option<f64>>(name)
                    .map(|v| v.map_or(Value::Null, crate::schema::model::number)),
                Storage::Bool => row
                    .get::<Option<bool>>(name)
                    .map(|v| v.map_or(Value::Null, Value::Bool)),
                Storage::Json => match (self.db.backend(), row) {
                    (Backend::Postgres, Row::Sea(row)) => row
                        .try_get::<Option<Value>>("", name)
                        .map(|v| v.unwrap_or(Value::Null)),
                    _ => row.get::<Option<String>>(name).map(|v| {
                        v.and_then(|text| serde_json::from_str(&text).ok())
                            .unwrap_or(Value::Null)
                    }),
                },
            }
            .map_err(RecordError::Db)?;
            record.insert(name.to_owned(), value);
        }
        Ok(record)
    }
}

/// A new record's id (UUIDv7 unless given) and on-create autodates.
fn fill_new(collection: &Collection, values: &mut Record) {
    let has_id = values
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_id {
        values.insert("id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
    }
    let mut now = None;
    for field in &collection.fields {
        if let FieldKind::Autodate {
            on_create: true, ..
        } = field.kind
        {
            let now = now.get_or_insert_with(|| format_time(Utc::now()));
            values.insert(field.name.clone(), Value::String(now.clone()));
        }
    }
}

/// The record's entity tag: a digest of everything stored, the same for every caller,
/// different after any change. Sent as `ETag`, checked against `If-Match`.
pub fn etag(record: &Record) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // The same bytes as the record's JSON text, without copying the record first.
    let text = serde_json::to_vec(record).unwrap_or_default();
    let digest = Sha256::digest(&text);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in digest.iter().take(16) {
        for nibble in [byte >> 4, byte & 0xf] {
            tag.push(HEX.get(usize::from(nibble)).map_or('0', |c| char::from(*c)));
        }
    }
    tag.push('"');
    tag
}

/// Whether an `If-Match` header allows a change to a record whose tag is `current`.
pub fn if_match_allows(if_match: Option<&str>, current: &str) -> bool {
    match if_match.map(str::trim) {
        None | Some("*") => true,
        Some(list) => list
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == current),
    }
}

/// A fresh token key: 50 random letters and digits.
pub(crate) fn random_key() -> String {
    crate::password::random_string(50).unwrap_or_else(|_| {
        // Randomness failing is beyond recovery here; UUIDv7s still differ per call.
        format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        )
    })
}

/// A unique-index violation, named by the field it is about; anything else is a
/// database error. SQLite says `UNIQUE constraint failed: table.column`; PostgreSQL
/// names the constraint, which is the primary key or one of the collection's indexes.
fn conflict_or_db(err: DbErr, collection: &Collection) -> RecordError {
    let text = err.to_string();
    if let Some(rest) = text.split("UNIQUE constraint failed: ").nth(1) {
        let column = rest
            .split([',', '"', ')', ' '])
            .next()
            .and_then(|qualified| qualified.rsplit('.').next())
            .unwrap_or("id");
        return RecordError::Conflict(column.to_owned());
    }
    if let Some(rest) = text
        .split("unique constraint \"")
        .nth(1)
        .or_else(|| text.split("unique constraint \\\"").nth(1))
    {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.ends_with("_pkey") {
            return RecordError::Conflict("id".to_owned());
        }
        let column = collection
            .indexes
            .iter()
            .filter_map(|i| crate::schema::index::parse_index(i).ok())
            .find(|i| i.name == name)
            .and_then(|i| i.columns.first().map(|c| c.name.clone()))
            .unwrap_or_else(|| "id".to_owned());
        return RecordError::Conflict(column);
    }
    RecordError::Db(err)
}

#[cfg(test)]
mod conflict_tests {
    use super::*;

    #[test]
    fn unique_violations_name_their_field() {
        let collection = crate::schema::Collection {
            id: "c".into(),
            name: "items".into(),
            kind: crate::schema::CollectionKind::Base,
            system: false,
            fields: vec![],
            indexes: vec!["CREATE UNIQUE INDEX `idx_items_code` ON `items` (`code`)".into()],
            rules: Default::default(),
            auth: None,
            created: String::new(),
            updated: String::new(),
        };
        let field = |message: &str| match conflict_or_db(DbErr::Custom(message.into()), &collection)
        {
            RecordError::Conflict(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field("SqliteError { code: 1555, message: \"UNIQUE constraint failed: items.id\" }"),
            "id"
        );
        assert_eq!(field("UNIQUE constraint failed: items.code"), "code");
        assert_eq!(
            field("duplicate key value violates unique constraint \"items_pkey\""),
            "id"
        );
        assert_eq!(
            field("duplicate key value violates unique constraint \"idx_items_code\""),
            "code"
        );
        assert!(matches!(
            conflict_or_db(DbErr::Custom("disk full".into()), &collection),
            RecordError::Db(_)
        ));
    }
}

/// The record as a client may see it: password hashes and token keys never, hidden
/// fields only for superusers, `email` only to its owner and superusers unless
/// `emailVisibility` is set. Adds `collectionId` and `collectionName`.
/// A password hash or a token key: never shown, published or kept beside an event.
pub fn is_secret(field: &Field) -> bool {
    matches!(field.kind, FieldKind::Password { .. }) || field.name == "tokenKey"
}

pub fn public_view(
    collection: &Collection,
    record: &Record,
    superuser: bool,
    owner: bool,
) -> Value {
    let mut out = Map::new();
    out.insert("collectionId".into(), Value::String(collection.id.clone()));
    out.insert(
        "collectionName".into(),
        Value::String(collection.name.clone()),
    );
    let email_visible =
        superuser || owner || record.get("emailVisibility").and_then(Value::as_bool) == Some(true);
    for field in &collection.fields {
        if is_secret(field) || (field.hidden && !superuser) {
            continue;
        }
        if collection.gates_email(field) && !email_visible {
            continue;
        }
        if let Some(value) = record.get(&field.name) {
            out.insert(field.name.clone(), value.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::model::{AuthOptions, CollectionKind, Rules};

    fn field(name: &str, kind: FieldKind, hidden: bool) -> Field {
        Field {
            id: name.into(),
            name: name.into(),
            system: false,
            hidden,
            presentable: false,
            required: false,
            nullable: false,
            default: None,
            kind,
        }
    }

    #[test]
    fn public_view_hides_secrets_hidden_fields_and_private_emails() {
        let text = || FieldKind::Text {
            min: 0,
            max: 0,
            pattern: String::new(),
            autogenerate_pattern: String::new(),
            primary_key: false,
        };
        let users = Collection {
            id: "c_users".into(),
            name: "users".into(),
            kind: CollectionKind::Auth,
            system: false,
            fields: vec![
                field("id", text(), false),
                field(
                    "password",
                    FieldKind::Password {
                        min: 8,
                        max: 0,
                        pattern: String::new(),
                        cost: 0,
                    },
                    true,
                ),
                field("tokenKey", text(), true),
                field(
                    "email",
                    FieldKind::Email {
                        except_domains: vec![],
                        only_domains: vec![],
                    },
                    false,
                ),
                field("emailVisibility", FieldKind::Bool, false),
                field("secretNote", text(), true),
            ],
            indexes: vec![],
            rules: Rules::default(),
            auth: Some(AuthOptions::default()),
            created: String::new(),
            updated: String::new(),
        };
        let record = json!({"id": "u1", "password": "$argon2id$x", "tokenKey": "k", "email": "a@b.co",
            "emailVisibility": false, "secretNote": "n"});
        let record = record.as_object().unwrap();

        let stranger = public_view(&users, record, false, false);
        assert_eq!(stranger["collectionName"], "users");
        assert_eq!(stranger["collectionId"], "c_users");
        for hidden in ["password", "tokenKey", "email", "secretNote"] {
            assert!(stranger.get(hidden).is_none(), "{hidden}: {stranger}");
        }
        let owner = public_view(&users, record, false, true);
        assert_eq!(owner["email"], "a@b.co");
        assert!(owner.get("secretNote").is_none());
        let superuser = public_view(&users, record, true, false);
        assert_eq!(superuser["email"], "a@b.co");
        assert_eq!(superuser["secretNote"], "n");
        assert!(superuser.get("password").is_none() && superuser.get("tokenKey").is_none());

        let mut visible = record.clone();
        visible.insert("emailVisibility".into(), json!(true));
        assert_eq!(
            public_view(&users, &visible, false, false)["email"],
            "a@b.co"
        );
    }
}
