//! The schema service: the one way collections are created, changed, deleted,
//! imported and exported. Each change is validated against the current schema, planned
//! as DDL, and applied in one write transaction together with its `_collections` row
//! and a `_schema_history` entry; the registry's snapshot is swapped after commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait,
    Set, Statement,
};
use serde_json::{Value, json};

use super::ddl::{self, Storage, storage};
use super::model::{
    AuthOptions, Collection, CollectionInput, CollectionKind, Field, FieldInput, FieldKind, Rules,
    parse_collection,
};
use super::names::{is_reserved, name_problem, system_column_problem};
use super::registry::{Registry, Snapshot};
use crate::db::entities::{collections, schema_history};
use crate::db::{Backend, Db};
use crate::validation::FieldErrors;

/// Fixed key of the PostgreSQL advisory lock that serialises schema changes.
const SCHEMA_LOCK_KEY: i64 = 0x6261_7361_6c74_7363; // "basaltsc"
/// The `_settings` key of the schema version, bumped by every committed change.
const VERSION_KEY: &str = "schemaVersion";

/// The query for the committed schema version; with `lock` (inside a write
/// transaction) the row is share-locked on PostgreSQL, so a schema change cannot commit
/// until the caller's transaction ends; SQLite's write transactions are exclusive
/// already.
fn version_query(backend: DatabaseBackend, lock: bool) -> sea_orm::Statement {
    use crate::db::entities::settings;
    let mut query = Query::select();
    query
        .column(settings::Column::Value)
        .from(settings::Entity)
        .and_where(Expr::col(settings::Column::Key).eq(VERSION_KEY));
    if lock && backend == DatabaseBackend::Postgres {
        query.lock_shared();
    }
    backend.build(&query)
}

/// The version as stored.
fn parse_version(text: Option<String>) -> Result<i64, DbErr> {
    text.ok_or_else(|| DbErr::RecordNotFound(VERSION_KEY.to_owned()))?
        .trim()
        .parse()
        .map_err(|_| DbErr::Type(format!("_settings.{VERSION_KEY} is not a number")))
}

/// The committed schema version (see [`version_query`] for `lock`).
///
/// Fails when `_settings` cannot be read or holds no version.
pub async fn read_version(conn: &impl ConnectionTrait, lock: bool) -> Result<i64, DbErr> {
    let statement = version_query(conn.get_database_backend(), lock);
    let row = conn.query_one_raw(statement).await?;
    parse_version(row.map(|row| row.try_get("", "value")).transpose()?)
}

/// [`read_version`] through the record pipeline's executor.
///
/// Fails when the query fails or the stored version is not a number.
pub async fn read_version_on(
    exec: crate::db::exec::Exec<'_>,
    backend: DatabaseBackend,
    lock: bool,
) -> Result<i64, DbErr> {
    let row = exec.one(version_query(backend, lock)).await?;
    parse_version(row.map(|row| row.get("value")).transpose()?)
}

/// Outcomes of a schema change a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("collection not found")]
    NotFound,
    #[error("the collection definition is invalid")]
    Validation(FieldErrors),
    #[error("the schema was changed by someone else meanwhile; reload and retry")]
    Conflict,
    #[error("database error: {0}")]
    Db(DbErr),
}

impl SchemaError {
    /// The error as every transport reports it (see [`crate::errors`]).
    pub fn problem(&self) -> crate::errors::Problem {
        use crate::errors::{Code, Problem};
        match self {
            SchemaError::NotFound => {
                Problem::new(Code::NotFound, "The requested resource wasn't found.")
            }
            SchemaError::Validation(errors) => Problem::new(
                Code::ValidationFailed,
                "The collection definition is invalid.",
            )
            .with_fields(errors.clone()),
            SchemaError::Conflict => Problem::new(Code::SchemaConflict, capitalized(self)),
            SchemaError::Db(cause) => Problem::from_db(cause),
        }
    }

    fn one(path: &str, code: &str, message: impl Into<String>) -> SchemaError {
        let mut errors = FieldErrors::default();
        errors.add(path, code, message.into());
        SchemaError::Validation(errors)
    }
}

fn db_err(err: DbErr) -> SchemaError {
    SchemaError::Db(err)
}

/// Who changed the schema, recorded in the history.
#[derive(Clone, Debug)]
pub enum Actor {
    System,
    Cli,
    Superuser(String),
}

impl Actor {
    /// Who acts for `identity`: a superuser by id, anyone else as the system.
    pub fn of(identity: &crate::identity::Identity) -> Actor {
        match identity.id() {
            Some(id) if identity.is_superuser() => Actor::Superuser(id.to_owned()),
            _ => Actor::System,
        }
    }

    fn label(&self) -> String {
        match self {
            Actor::System => "system".to_owned(),
            Actor::Cli => "cli".to_owned(),
            Actor::Superuser(id) => format!("superuser:{id}"),
        }
    }
}

/// PocketBase's datetime format, millisecond precision, UTC.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

fn random_suffix() -> u32 {
    // The low bits of a UUIDv7 are random.
    (uuid::Uuid::now_v7().as_u128() & 0xffff_ffff) as u32
}

fn new_field_id(kind: &FieldKind) -> String {
    format!("{}{}", kind.type_name(), random_suffix())
}

fn text_kind(min: u64, max: u64, pattern: &str, autogenerate: &str, primary: bool) -> FieldKind {
    FieldKind::Text {
        min,
        max,
        pattern: pattern.to_owned(),
        autogenerate_pattern: autogenerate.to_owned(),
        primary_key: primary,
    }
}

fn system_field(name: &str, kind: FieldKind, hidden: bool, required: bool) -> Field {
    Field {
        id: String::new(),
        name: name.to_owned(),
        system: true,
        hidden,
        presentable: false,
        required,
        nullable: false,
        default: None,
        kind,
    }
}

/// The fields every collection of `kind` has, in order: those that lead, those that
/// trail.
fn system_fields(kind: CollectionKind) -> (Vec<Field>, Vec<Field>) {
    let mut lead = vec![system_field(
        "id",
        text_kind(1, 64, "^[a-zA-Z0-9_-]+$", "", true),
        false,
        true,
    )];
    if kind == CollectionKind::Auth {
        lead.push(system_field(
            "password",
            FieldKind::Password {
                min: 8,
                max: 256,
                pattern: String::new(),
                cost: 0,
            },
            true,
            true,
        ));
        lead.push(system_field(
            "tokenKey",
            text_kind(30, 60, "", "[a-zA-Z0-9]{50}", false),
            true,
            true,
        ));
        lead.push(system_field(
            "email",
            FieldKind::Email {
                except_domains: Vec::new(),
                only_domains: Vec::new(),
            },
            false,
            true,
        ));
        lead.push(system_field(
            "emailVisibility",
            FieldKind::Bool,
            false,
            false,
        ));
        lead.push(system_field("verified", FieldKind::Bool, false, false));
    }
    let trail = vec![
        system_field(
            "created",
            FieldKind::Autodate {
                on_create: true,
                on_update: false,
            },
            false,
            false,
        ),
        system_field(
            "updated",
            FieldKind::Autodate {
                on_create: true,
                on_update: true,
            },
            false,
            false,
        ),
    ];
    (lead, trail)
}

/// Checks one rule of a collection against a schema; `Err` is a message for the
/// client. The filter language provides it (`filter::resolve::check_rule`); it is
/// passed in because `filter` builds on `schema`, not the other way round.
pub type RuleCheck = fn(&str, &Collection, &Snapshot) -> Result<(), String>;

/// The schema service; one per process, shared by every request.
#[derive(Debug)]
pub struct SchemaService {
    db: Db,
    registry: Registry,
    rule_check: RuleCheck,
    /// PostgreSQL: the longest a change waits for a lock (`SET LOCAL lock_timeout`).
    lock_timeout: std::time::Duration,
    /// The version of the last change made through this instance (other instances
    /// are told of it).
    changed: tokio::sync::watch::Sender<i64>,
}

/// The schema changes' lock timeout unless configured.
const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

enum Change {
    Create(Collection),
    Update {
        old: Arc<Collection>,
        new: Collection,
    },
    Delete(Arc<Collection>),
}

impl SchemaService {
    /// Read every collection from `_collections` into the first snapshot.
    ///
    /// Fails when the table cannot be read or a stored definition does not parse.
    pub async fn load(db: Db, rule_check: RuleCheck) -> Result<SchemaService, SchemaError> {
        db.setting_or_insert(VERSION_KEY, json!(0))
            .await
            .map_err(db_err)?;
        let service = SchemaService {
            db,
            registry: Registry::default(),
            rule_check,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            changed: tokio::sync::watch::Sender::new(0),
        };
        service.reload().await?;
        Ok(service)
    }

    /// Make schema changes on PostgreSQL give up (409) after waiting `timeout` for a
    /// table lock, instead of queueing every record write behind them meanwhile.
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> SchemaService {
        self.lock_timeout = timeout;
        self
    }

    /// The version of each change made through this instance, as it commits.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changed.subscribe()
    }

    /// The current schema. Take it once per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.registry.snapshot()
    }

    /// Read the committed schema again and swap it in. Called after every change made
    /// here, and by `records` when it finds its snapshot behind the database.
    ///
    /// Fails when `_collections` cannot be read or a stored definition does not parse.
    pub async fn reload(&self) -> Result<(), SchemaError> {
        // The version is read before and after the definitions: equal means they belong
        // together (a change in between bumps it).
        for _ in 0..5 {
            let before = read_version(self.db.conn(), false).await.map_err(db_err)?;
            let rows = collections::Entity::find()
                .all(self.db.conn())
                .await
                .map_err(db_err)?;
            let after = read_version(self.db.conn(), false).await.map_err(db_err)?;
            if before != after {
                continue;
            }
            let mut list = Vec::with_capacity(rows.len());
            for row in rows {
                list.push(from_row(row)?);
            }
            if self.registry.snapshot().version() <= after
                || self.registry.snapshot().all().is_empty()
            {
                self.registry.replace(Snapshot::new(after, list));
            }
            return Ok(());
        }
        Err(SchemaError::Conflict)
    }

    /// Create the collections Basalt needs: `_superusers` (system) and, on first start,
    /// `users` with PocketBase's default rules. Returns how many were created.
    ///
    /// Fails when a database statement fails.
    pub async fn ensure_defaults(&self) -> Result<usize, SchemaError> {
        let snapshot = self.snapshot();
        let mut created = 0;
        if snapshot.get("_superusers").is_none() {
            let mut collection = self.resolve_new(
                &json!({"id": "pbc_superusers", "name": "_superusers", "type": "auth"}),
                &snapshot,
                &[],
                true,
            )?;
            collection.system = true;
            if let Some(auth) = &mut collection.auth {
                auth.token_duration = 86_400;
            }
            self.apply(vec![Change::Create(collection)], &Actor::System)
                .await?;
            created += 1;
        }
        if self.snapshot().all().len() == 1 {
            // A fresh installation: PocketBase's default `users` collection.
            let owner = "id = @request.auth.id";
            let collection = self.resolve_new(
                &json!({
                    // PocketBase's id for it: the same on every installation, so schema
                    // files move between installations and from PocketBase.
                    "id": "_pb_users_auth_",
                    "name": "users", "type": "auth",
                    "listRule": owner, "viewRule": owner, "createRule": "",
                    "updateRule": owner, "deleteRule": owner,
                    "fields": [{"id": "text_name", "name": "name", "type": "text", "max": 255}]
                }),
                &self.snapshot(),
                &[],
                false,
            )?;
            self.apply(vec![Change::Create(collection)], &Actor::System)
                .await?;
            created += 1;
        }
        Ok(created)
    }

    /// Create a collection from a PocketBase-shaped body.
    ///
    /// Fails with `Validation` for any problem in the definition.
    pub async fn create(
        &self,
        body: &Value,
        actor: &Actor,
    ) -> Result<Arc<Collection>, SchemaError> {
        let snapshot = self.snapshot();
        let collection = self.resolve_new(body, &snapshot, &[], false)?;
        let id = collection.id.clone();
        self.apply(vec![Change::Create(collection)], actor).await?;
        self.snapshot()
            .by_id(&id)
            .cloned()
            .ok_or(SchemaError::NotFound)
    }

    /// Change a collection; keys absent from `body` keep their current value.
    ///
    /// Fails with `NotFound`, `Validation` (including a lossy type change), or
    /// `Conflict` when another change committed since the snapshot was taken.
    pub async fn update(
        &self,
        id_or_name: &str,
        body: &Value,
        actor: &Actor,
    ) -> Result<Arc<Collection>, SchemaError> {
        let snapshot = self.snapshot();
        let old = snapshot
            .get(id_or_name)
            .cloned()
            .ok_or(SchemaError::NotFound)?;
        let mut errors = FieldErrors::default();
        let input = parse_collection(body, &mut errors);
        let new = resolve(input, Some(&old), &snapshot, &[], &mut errors, old.system);
        errors.into_result().map_err(SchemaError::Validation)?;
        let id = old.id.clone();
        if !same_definition(&old, &new) {
            self.apply(vec![Change::Update { old, new }], actor).await?;
        }
        self.snapshot()
            .by_id(&id)
            .cloned()
            .ok_or(SchemaError::NotFound)
    }

    /// Delete a collection and its table.
    ///
    /// Fails with `NotFound`, or `Validation` for a system collection or one that
    /// another collection's relation field points at.
    pub async fn delete(&self, id_or_name: &str, actor: &Actor) -> Result<(), SchemaError> {
        let snapshot = self.snapshot();
        let old = snapshot
            .get(id_or_name)
            .cloned()
            .ok_or(SchemaError::NotFound)?;
        if old.system {
            return Err(SchemaError::one(
                "name",
                "validation_system_collection",
                "A system collection cannot be deleted.",
            ));
        }
        if let Some(relating) = relating_fields(&snapshot, &old.id).first() {
            return Err(SchemaError::one(
                "name",
                "validation_collection_referenced",
                format!(
                    "The relation field `{relating}` points at this collection; remove it first."
                ),
            ));
        }
        self.apply(vec![Change::Delete(old)], actor).await
    }

    /// Bring the schema to the given collections in one transaction: each is created or
    /// updated (matched by id, then name); with `delete_missing`, user collections not
    /// listed are deleted. Returns how many collections changed; importing the same
    /// definitions twice changes nothing the second time.
    ///
    /// Fails with `Validation` (paths prefixed `collections.N.`) for any problem.
    pub async fn import(
        &self,
        definitions: &[Value],
        delete_missing: bool,
        actor: &Actor,
    ) -> Result<usize, SchemaError> {
        let plan = plan_import(&self.snapshot(), definitions, delete_missing)?;
        let changed = plan.changes.len();
        if changed > 0 {
            self.apply(plan.changes, actor).await?;
        }
        Ok(changed)
    }

    /// The collections matching a collections-list `filter`: `name = 'x'`,
    /// `name ~ 'x'` (contains, any case) and `type = 'base'|'auth'`, joined by `&&`
    /// (the API's list and the admin UI share it).
    ///
    /// Fails with `Validation` for any other filter.
    pub fn list(&self, filter: &str) -> Result<Vec<Arc<Collection>>, SchemaError> {
        let terms = name_filter(filter)
            .map_err(|message| SchemaError::one("filter", "validation_invalid_filter", message))?;
        Ok(self
            .snapshot()
            .all()
            .iter()
            .filter(|c| {
                terms.iter().all(|(field, op, value)| {
                    let actual = if field == "name" {
                        c.name.as_str()
                    } else {
                        c.kind.as_str()
                    };
                    match op {
                        '~' => actual.to_lowercase().contains(&value.to_lowercase()),
                        _ => actual == value,
                    }
                })
            })
            .cloned()
            .collect())
    }

    /// The collections whose name contains `text` (any case); all for "".
    pub fn search(&self, text: &str) -> Vec<Arc<Collection>> {
        let text = text.trim().to_lowercase();
        self.snapshot()
            .all()
            .iter()
            .filter(|c| c.name.to_lowercase().contains(&text))
            .cloned()
            .collect()
    }

    /// The latest `limit` schema changes, newest first; of one collection (by id)
    /// when given.
    ///
    /// Fails when the history cannot be read.
    pub async fn history(
        &self,
        collection_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<schema_history::Model>, SchemaError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
        let mut query = schema_history::Entity::find()
            .order_by_desc(schema_history::Column::Created)
            .order_by_desc(schema_history::Column::Id)
            .limit(limit);
        if let Some(id) = collection_id {
            query = query.filter(schema_history::Column::CollectionId.eq(id));
        }
        query.all(self.db.conn()).await.map_err(SchemaError::Db)
    }

    /// What [`SchemaService::import`] of these definitions would change, without
    /// changing anything.
    ///
    /// Fails with `Validation` like the import.
    pub fn plan_import(
        &self,
        definitions: &[Value],
        delete_missing: bool,
    ) -> Result<ImportPlan, SchemaError> {
        plan_import(&self.snapshot(), definitions, delete_missing)
    }

    /// Every user collection (not Basalt's system ones), as PocketBase exports them.
    pub fn export(&self) -> Value {
        Value::Array(
            self.snapshot()
                .all()
                .iter()
                .filter(|c| !c.system)
                .map(|c| c.to_json())
                .collect(),
        )
    }

    fn resolve_new(
        &self,
        body: &Value,
        snapshot: &Snapshot,
        batch: &[(String, String)],
        system: bool,
    ) -> Result<Collection, SchemaError> {
        let mut errors = FieldErrors::default();
        let input = parse_collection(body, &mut errors);
        let mut collection = resolve(input, None, snapshot, batch, &mut errors, system);
        errors.into_result().map_err(SchemaError::Validation)?;
        if collection.id.is_empty() {
            collection.id = format!("pbc_{}", random_suffix());
        }
        Ok(collection)
    }

    /// Check the rules of every created or updated collection against the schema as it
    /// will be after `changes`, so a rule may name collections created alongside.
    fn check_rules(&self, changes: &[Change]) -> Result<(), SchemaError> {
        check_rules(&self.snapshot(), changes, self.rule_check)
    }

    async fn apply(&self, changes: Vec<Change>, actor: &Actor) -> Result<(), SchemaError> {
        self.check_rules(&changes)?;
        let backend = self.db.database_backend();
        // `turn` (SQLite's writer turn) lives until the commit.
        let (txn, turn) = self.db.begin_write().await.map_err(db_err)?.into_parts();
        if self.db.backend() == Backend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [SCHEMA_LOCK_KEY.into()],
            ))
            .await
            .map_err(db_err)?;
            // An ALTER waiting for its lock makes every later statement on the table
            // wait behind it: wait only so long, then fail (409) and let the client
            // retry. Set after the advisory lock, which only other schema changes take.
            let millis = u64::try_from(self.lock_timeout.as_millis()).unwrap_or(u64::MAX);
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT set_config('lock_timeout', $1, true)",
                [format!("{millis}ms").into()],
            ))
            .await
            .map_err(db_err)?;
        }
        let version = read_version(&txn, false).await.map_err(db_err)?;
        let bump = Query::update()
            .table(crate::db::entities::settings::Entity)
            .value(
                crate::db::entities::settings::Column::Value,
                (version + 1).to_string(),
            )
            .value(crate::db::entities::settings::Column::Updated, Utc::now())
            .and_where(Expr::col(crate::db::entities::settings::Column::Key).eq(VERSION_KEY))
            .to_owned();
        // On PostgreSQL this takes the row lock that record writers share-lock.
        txn.execute(&bump).await.map_err(db_err)?;
        let now = Utc::now();
        for change in &changes {
            let (old, new) = match change {
                Change::Create(new) => (None, Some(new)),
                Change::Update { old, new } => (Some(old.as_ref()), Some(new)),
                Change::Delete(old) => (Some(old.as_ref()), None),
            };
            if let Some(old) = old {
                ensure_unchanged(&txn, old).await?;
            }
            if let (Some(old), Some(new)) = (old, new) {
                refuse_required_without_default(&txn, old, new).await?;
            }
            let steps = ddl::plan(old, new, backend).map_err(|e| {
                SchemaError::one(&e.path, "validation_invalid_schema_change", e.message)
            })?;
            for step in steps {
                txn.execute_raw(step.sql).await.map_err(db_err)?;
            }
            match (old, new) {
                (_, Some(new)) => {
                    let row = to_row(new, now);
                    if old.is_some() {
                        collections::Entity::delete_by_id(new.id.clone())
                            .exec(&txn)
                            .await
                            .map_err(db_err)?;
                    }
                    collections::Entity::insert(row)
                        .exec(&txn)
                        .await
                        .map_err(db_err)?;
                }
                (Some(old), None) => {
                    collections::Entity::delete_by_id(old.id.clone())
                        .exec(&txn)
                        .await
                        .map_err(db_err)?;
                }
                (None, None) => {}
            }
            let action = match change {
                Change::Create(_) => "create",
                Change::Update { .. } => "update",
                Change::Delete(_) => "delete",
            };
            let subject = new.or(old);
            schema_history::ActiveModel {
                id: Set(uuid::Uuid::now_v7().to_string()),
                collection_id: Set(subject.map(|c| c.id.clone()).unwrap_or_default()),
                collection_name: Set(subject.map(|c| c.name.clone()).unwrap_or_default()),
                action: Set(action.to_owned()),
                actor: Set(Some(actor.label())),
                diff: Set(json!({
                    "before": old.map(Collection::to_json),
                    "after": new.map(|c| stored(c, now).to_json()),
                })
                .to_string()),
                created: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(db_err)?;
        }
        txn.commit().await.map_err(db_err)?;
        drop(turn);
        self.reload().await?;
        self.changed.send_replace(self.snapshot().version());
        // New tables and indexes get statistics, so the planner picks the right index
        // for rule-filtered lists from the start.
        if let Err(err) = self.db.optimize(true).await {
            tracing::warn!(error = %err, "PRAGMA optimize after a schema change failed");
        }
        Ok(())
    }
}

/// `collection` with the timestamps it is stored with.
fn stored(collection: &Collection, now: DateTime<Utc>) -> Collection {
    let mut c = collection.clone();
    if c.created.is_empty() {
        c.created = format_time(now);
    }
    c.updated = format_time(now);
    c
}

/// Refuse a change based on a definition that someone else has changed since.
async fn ensure_unchanged(txn: &DatabaseTransaction, old: &Collection) -> Result<(), SchemaError> {
    let row = collections::Entity::find_by_id(old.id.clone())
        .one(txn)
        .await
        .map_err(db_err)?;
    match row {
        Some(row) if format_time(row.updated) == old.updated => Ok(()),
        _ => Err(SchemaError::Conflict),
    }
}

async fn refuse_required_without_default(
    txn: &DatabaseTransaction,
    old: &Collection,
    new: &Collection,
) -> Result<(), SchemaError> {
    let added: Vec<&Field> = new
        .fields
        .iter()
        .filter(|f| {
            f.required && f.default.is_none() && !f.system && old.field_by_id(&f.id).is_none()
        })
        .collect();
    let Some(first) = added.first() else {
        return Ok(());
    };
    let probe = Query::select()
        .expr(Expr::val(1))
        .from(sea_orm::sea_query::Alias::new(&old.name))
        .limit(1)
        .to_owned();
    let has_rows = txn.query_one(&probe).await.map_err(db_err)?.is_some();
    if has_rows {
        let path = format!(
            "fields.{}",
            new.fields
                .iter()
                .position(|f| f.id == first.id)
                .unwrap_or_default()
        );
        return Err(SchemaError::one(
            &path,
            "validation_required_without_default",
            format!(
                "The collection already has records, which would have no `{}`: give the field a default or add it as optional first.",
                first.name
            ),
        ));
    }
    Ok(())
}

/// Relation fields of other collections that point at `target_id`, as `coll.field`.
fn relating_fields(snapshot: &Snapshot, target_id: &str) -> Vec<String> {
    snapshot
        .all()
        .iter()
        .filter(|c| c.id != target_id)
        .flat_map(|c| {
            c.fields.iter().filter_map(move |f| match &f.kind {
                FieldKind::Relation { collection_id, .. } if collection_id == target_id => {
                    Some(format!("{}.{}", c.name, f.name))
                }
                _ => None,
            })
        })
        .collect()
}

/// What an import would change, checked as [`SchemaService::import`] checks it, without
/// touching the database. The fuzzer runs it on arbitrary input.
pub struct ImportPlan {
    changes: Vec<Change>,
}

impl ImportPlan {
    /// How many collections would change.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One line per change, for a person to read before applying it: what is
    /// created, which fields an update adds, removes, renames or changes, what is
    /// deleted (with its data).
    pub fn describe(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|change| match change {
                Change::Create(new) => format!(
                    "create collection `{}` ({} fields)",
                    new.name,
                    new.fields.len()
                ),
                Change::Delete(old) => {
                    format!("delete collection `{}` and all its records", old.name)
                }
                Change::Update { old, new } => {
                    let mut parts = Vec::new();
                    if old.name != new.name {
                        parts.push(format!("rename to `{}`", new.name));
                    }
                    for field in &new.fields {
                        match old.fields.iter().find(|f| f.id == field.id) {
                            None => parts.push(format!("add field `{}`", field.name)),
                            Some(before) if before.name != field.name => parts.push(format!(
                                "rename field `{}` to `{}`",
                                before.name, field.name
                            )),
                            Some(before) if before != field => {
                                parts.push(format!("change field `{}`", field.name))
                            }
                            Some(_) => {}
                        }
                    }
                    for field in &old.fields {
                        if !new.fields.iter().any(|f| f.id == field.id) {
                            parts.push(format!("remove field `{}` and its values", field.name));
                        }
                    }
                    if old.rules != new.rules {
                        parts.push("change rules".into());
                    }
                    if old.indexes != new.indexes {
                        parts.push("change indexes".into());
                    }
                    if parts.is_empty() {
                        parts.push("change options".into());
                    }
                    format!("update collection `{}`: {}", old.name, parts.join(", "))
                }
            })
            .collect()
    }

    /// The schema as the import would leave `current`.
    pub fn snapshot_after(&self, current: &Snapshot) -> Snapshot {
        after(current, &self.changes)
    }

    /// Check every rule against the schema as the import leaves it, and plan the DDL
    /// of every change for `backend`; how many statements that makes.
    ///
    /// Fails with `Validation` for a rule that does not compile or a change the DDL
    /// planner refuses.
    pub fn check(
        &self,
        current: &Snapshot,
        rule_check: RuleCheck,
        backend: DatabaseBackend,
    ) -> Result<usize, SchemaError> {
        check_rules(current, &self.changes, rule_check)?;
        let mut statements = 0;
        for change in &self.changes {
            let (old, new) = match change {
                Change::Create(new) => (None, Some(new)),
                Change::Update { old, new } => (Some(old.as_ref()), Some(new)),
                Change::Delete(old) => (Some(old.as_ref()), None),
            };
            statements += super::ddl::plan(old, new, backend)
                .map_err(|e| SchemaError::one(&e.path, "validation_invalid_schema", e.message))?
                .len();
        }
        Ok(statements)
    }
}

/// The terms of a collections-list filter (see [`SchemaService::list`]).
fn name_filter(filter: &str) -> Result<Vec<(String, char, String)>, String> {
    let mut terms = Vec::new();
    for part in filter.split("&&").map(str::trim).filter(|p| !p.is_empty()) {
        let (field, op, value) = ["~", "="]
            .iter()
            .find_map(|op| {
                let (field, value) = part.split_once(op)?;
                Some((field.trim(), op.chars().next()?, value.trim()))
            })
            .ok_or_else(|| format!("Unsupported filter `{part}`."))?;
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')));
        match (field, unquoted) {
            ("name" | "type", Some(value)) => terms.push((field.to_owned(), op, value.to_owned())),
            _ => {
                return Err(format!(
                    "Unsupported filter `{part}`: collections can be filtered by name = '…', name ~ '…' or type = '…'."
                ));
            }
        }
    }
    Ok(terms)
}

/// Plan an import of `definitions` over `snapshot` (see [`SchemaService::import`]).
///
/// Fails with `Validation` (paths prefixed `collections.N.`) for any problem.
pub fn plan_import(
    snapshot: &Snapshot,
    definitions: &[Value],
    delete_missing: bool,
) -> Result<ImportPlan, SchemaError> {
    let mut errors = FieldErrors::default();
    let mut inputs = Vec::new();
    for (i, body) in definitions.iter().enumerate() {
        let mut own = FieldErrors::default();
        let input = parse_collection(body, &mut own);
        prefix_errors(&mut errors, own, &format!("collections.{i}"));
        inputs.push(input);
    }
    // Relations may point at collections created by this same import.
    let batch: Vec<(String, String)> = inputs
        .iter()
        .filter_map(|i| Some((i.id.clone()?, i.name.clone()?)))
        .chain(inputs.iter().filter_map(|i| {
            let name = i.name.clone()?;
            Some((name.clone(), name))
        }))
        .collect();
    let mut changes = Vec::new();
    let mut listed = HashSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let existing = input
            .id
            .as_deref()
            .and_then(|id| snapshot.by_id(id))
            .or_else(|| input.name.as_deref().and_then(|n| snapshot.get(n)))
            .cloned();
        let mut own = FieldErrors::default();
        let system = existing.as_ref().is_some_and(|c| c.system);
        let mut new = resolve(
            input,
            existing.as_deref(),
            snapshot,
            &batch,
            &mut own,
            system,
        );
        prefix_errors(&mut errors, own, &format!("collections.{i}"));
        listed.insert(new.name.clone());
        match existing {
            Some(old) => {
                listed.insert(old.name.clone());
                if !same_definition(&old, &new) {
                    changes.push(Change::Update { old, new });
                }
            }
            None => {
                if new.id.is_empty() {
                    new.id = format!("pbc_{}", random_suffix());
                }
                changes.push(Change::Create(new));
            }
        }
    }
    if delete_missing {
        for old in snapshot.all() {
            if !old.system && !listed.contains(&old.name) {
                changes.push(Change::Delete(old.clone()));
            }
        }
    }
    errors.into_result().map_err(SchemaError::Validation)?;
    Ok(ImportPlan { changes })
}

/// The schema as `changes` leave `current`.
fn after(current: &Snapshot, changes: &[Change]) -> Snapshot {
    let mut collections: Vec<Collection> =
        current.all().iter().map(|c| c.as_ref().clone()).collect();
    for change in changes {
        match change {
            Change::Create(new) | Change::Update { new, .. } => {
                collections.retain(|c| c.id != new.id);
                collections.push(new.clone());
            }
            Change::Delete(old) => collections.retain(|c| c.id != old.id),
        }
    }
    Snapshot::new(current.version(), collections)
}

/// Every collection's rules must compile against the schema as `changes` leave it.
fn check_rules(
    current: &Snapshot,
    changes: &[Change],
    rule_check: RuleCheck,
) -> Result<(), SchemaError> {
    let changed: Vec<String> = changes
        .iter()
        .filter_map(|change| match change {
            Change::Create(new) | Change::Update { new, .. } => Some(new.id.clone()),
            Change::Delete(_) => None,
        })
        .collect();
    let provisional = after(current, changes);
    let mut errors = FieldErrors::default();
    // Every collection's rules, not only the changed ones: renaming or removing a
    // field another collection's rule names must be refused here, not fail later.
    for collection in provisional.all() {
        let rules = [
            ("listRule", &collection.rules.list),
            ("viewRule", &collection.rules.view),
            ("createRule", &collection.rules.create),
            ("updateRule", &collection.rules.update),
            ("deleteRule", &collection.rules.delete),
        ];
        let auth_rules = collection
            .auth
            .as_ref()
            .map(|a| [("authRule", &a.auth_rule), ("manageRule", &a.manage_rule)]);
        for (key, rule) in rules.into_iter().chain(auth_rules.into_iter().flatten()) {
            if let Some(rule) = rule
                && let Err(message) = rule_check(rule, collection, &provisional)
            {
                // The changed collection's own rules by key, as a client sent them;
                // another collection's by `name.key`.
                let own = changes.len() == 1 && changed.contains(&collection.id);
                let path = if own {
                    key.to_owned()
                } else {
                    format!("{}.{key}", collection.name)
                };
                errors.add(path, "validation_invalid_rule", message);
            }
        }
    }
    errors.into_result().map_err(SchemaError::Validation)
}

fn prefix_errors(into: &mut FieldErrors, errors: FieldErrors, prefix: &str) {
    for (path, error) in errors.into_map() {
        let path = if path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path}")
        };
        into.add(path, &error.code, error.message);
    }
}

/// Equal definitions, ignoring timestamps: nothing to apply.
fn same_definition(a: &Collection, b: &Collection) -> bool {
    let strip = |c: &Collection| {
        let mut c = c.clone();
        c.created.clear();
        c.updated.clear();
        c
    };
    strip(a) == strip(b)
}

/// Turn a parsed body into a full definition: keys absent keep `old`'s values, system
/// fields are put in place, field ids kept or made, and everything is checked against
/// the schema. `system` relaxes the naming rules for Basalt's own collections.
fn resolve(
    input: CollectionInput,
    old: Option<&Collection>,
    snapshot: &Snapshot,
    batch: &[(String, String)],
    errors: &mut FieldErrors,
    system: bool,
) -> Collection {
    let name = input
        .name
        .clone()
        .or_else(|| old.map(|o| o.name.clone()))
        .unwrap_or_default();
    if name.is_empty() {
        errors.add(
            "name",
            "validation_required",
            "Missing collection name.".into(),
        );
    } else if !(system && name.starts_with('_'))
        && let Some(problem) = name_problem(&name)
    {
        errors.add("name", "validation_invalid_name", problem);
    }
    if system && old.is_some_and(|o| o.name != name) {
        errors.add(
            "name",
            "validation_system_collection",
            "A system collection cannot be renamed.".into(),
        );
    }
    let own_id = old.map(|o| o.id.as_str()).or(input.id.as_deref());
    if snapshot
        .all()
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(&name) && Some(c.id.as_str()) != own_id)
    {
        errors.add(
            "name",
            "validation_collection_name_exists",
            format!("A collection named `{name}` already exists."),
        );
    }
    let mut id = old.map(|o| o.id.clone()).unwrap_or_default();
    if old.is_none()
        && let Some(given) = &input.id
    {
        let valid = (1..=64).contains(&given.len())
            && given.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            errors.add(
                "id",
                "validation_invalid_id",
                "Must be 1–64 characters of a-z, A-Z, 0-9 and _.".into(),
            );
        } else if snapshot.by_id(given).is_some() {
            errors.add(
                "id",
                "validation_id_exists",
                "A collection with this id already exists.".into(),
            );
        }
        id = given.clone();
    }
    if id.is_empty() {
        id = format!("pbc_{}", random_suffix());
    }
    let kind = match (old, input.kind) {
        (Some(o), Some(k)) if o.kind != k => {
            errors.add(
                "type",
                "validation_invalid_value",
                "The type of a collection cannot be changed.".into(),
            );
            o.kind
        }
        (Some(o), _) => o.kind,
        (None, k) => k.unwrap_or(CollectionKind::Base),
    };

    let rules = input.rules_over(&old.map(|o| o.rules.clone()).unwrap_or_default());
    let merged_auth = (kind == CollectionKind::Auth)
        .then(|| input.auth_over(old.and_then(|o| o.auth.clone()).unwrap_or_default()));
    let given: Vec<FieldInput> = match input.fields {
        Some(fields) => fields,
        None => old
            .map(|o| {
                o.fields
                    .iter()
                    .map(|f| FieldInput {
                        id: Some(f.id.clone()),
                        field: f.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let fields = place_fields(given, old, kind, errors);
    check_fields(&fields, kind, snapshot, batch, errors);

    if let Some(auth) = &merged_auth {
        for (i, name) in auth.identity_fields.iter().enumerate() {
            if !fields.iter().any(|f| &f.name == name) {
                errors.add(
                    format!("passwordAuth.identityFields.{i}"),
                    "validation_unknown_field",
                    format!("No field named `{name}`."),
                );
            }
        }
        if auth.token_duration == 0 {
            errors.add(
                "authToken.duration",
                "validation_invalid_value",
                "Must be at least 1 second.".into(),
            );
        }
    }
    let auth = merged_auth;

    let mut indexes = input
        .indexes
        .clone()
        .unwrap_or_else(|| old.map(|o| o.indexes.clone()).unwrap_or_default());
    if kind == CollectionKind::Auth {
        // Emails and token keys are unique: add the index unless one already says so.
        for column in ["email", "tokenKey"] {
            let covered = indexes.iter().any(|text| {
                super::index::parse_index(text).is_ok_and(|def| {
                    def.unique
                        && def.columns.len() == 1
                        && def.columns.iter().all(|c| c.name == column)
                })
            });
            if !covered {
                indexes.push(format!(
                    "CREATE UNIQUE INDEX `idx_{column}_{}` ON `{name}` (`{column}`)",
                    index_suffix(&id, &name)
                ));
            }
        }
    }
    let mut canonical = Vec::new();
    let mut index_names = HashSet::new();
    for (i, text) in indexes.iter().enumerate() {
        match super::index::parse_index(text) {
            Ok(mut def) => {
                def.table = name.clone();
                if !index_names.insert(def.name.to_ascii_lowercase()) {
                    errors.add(
                        format!("indexes.{i}"),
                        "validation_duplicated_index",
                        format!("Index `{}` is listed twice.", def.name),
                    );
                }
                let taken_elsewhere = snapshot.all().iter().any(|c| {
                    Some(c.id.as_str()) != own_id
                        && c.indexes.iter().any(|other| {
                            super::index::parse_index(other)
                                .is_ok_and(|o| o.name.eq_ignore_ascii_case(&def.name))
                        })
                });
                if taken_elsewhere {
                    errors.add(
                        format!("indexes.{i}"),
                        "validation_index_name_exists",
                        format!("Another collection has an index named `{}`.", def.name),
                    );
                }
                for column in &def.columns {
                    if !fields.iter().any(|f| f.name == column.name) {
                        errors.add(
                            format!("indexes.{i}"),
                            "validation_unknown_field",
                            format!("Unknown field `{}` in index.", column.name),
                        );
                    }
                }
                canonical.push(def.to_definition());
            }
            Err(message) => errors.add(format!("indexes.{i}"), "validation_invalid_index", message),
        }
    }

    Collection {
        id,
        name,
        kind,
        system,
        fields,
        indexes: canonical,
        rules,
        auth,
        created: old.map(|o| o.created.clone()).unwrap_or_default(),
        updated: old.map(|o| o.updated.clone()).unwrap_or_default(),
    }
}

/// A short, stable, unique suffix for the system indexes of an auth collection.
fn index_suffix(id: &str, name: &str) -> String {
    let source = if id.is_empty() { name } else { id };
    source
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
}

/// Put system fields in place and give every field its id.
fn place_fields(
    given: Vec<FieldInput>,
    old: Option<&Collection>,
    kind: CollectionKind,
    errors: &mut FieldErrors,
) -> Vec<Field> {
    let (lead, trail) = system_fields(kind);
    let specs: HashMap<String, Field> = lead
        .iter()
        .chain(trail.iter())
        .map(|f| (f.name.clone(), f.clone()))
        .collect();
    let mut out: Vec<Field> = Vec::new();
    let mut seen_ids = HashSet::new();
    for (i, FieldInput { id, field }) in given.into_iter().enumerate() {
        let mut field = field;
        if let Some(spec) = specs.get(&field.name) {
            if spec.kind.type_name() != field.kind.type_name() {
                errors.add(
                    format!("fields.{i}.type"),
                    "validation_system_field",
                    format!(
                        "`{}` is a system field of type {}.",
                        spec.name,
                        spec.kind.type_name()
                    ),
                );
            }
            // System fields keep Basalt's definition; a listed one only fixes its place.
            field = Field {
                id: field.id,
                ..spec.clone()
            };
        } else if field.system {
            errors.add(
                format!("fields.{i}.system"),
                "validation_invalid_value",
                "Only Basalt's own fields are system fields.".into(),
            );
        }
        let from_old = old.and_then(|o| {
            id.as_deref()
                .and_then(|id| o.field_by_id(id))
                .or_else(|| o.field(&field.name))
        });
        field.id = match (from_old, id) {
            (Some(existing), _) => existing.id.clone(),
            (None, Some(id))
                if (1..=100).contains(&id.len())
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                id
            }
            (None, Some(_)) => {
                errors.add(
                    format!("fields.{i}.id"),
                    "validation_invalid_id",
                    "Must be 1–100 characters of a-z, A-Z, 0-9 and _.".into(),
                );
                String::new()
            }
            (None, None) => new_field_id(&field.kind),
        };
        if !seen_ids.insert(field.id.clone()) {
            errors.add(
                format!("fields.{i}.id"),
                "validation_duplicated_field_id",
                "Two fields have the same id.".into(),
            );
        }
        out.push(field);
    }
    let mut missing_lead: Vec<Field> = Vec::new();
    for spec in lead {
        if !out.iter().any(|f| f.name == spec.name) {
            missing_lead.push(spec);
        }
    }
    for spec in trail {
        if !out.iter().any(|f| f.name == spec.name) {
            out.push(spec);
        }
    }
    let mut fields = missing_lead;
    fields.extend(out);
    for field in &mut fields {
        if field.id.is_empty() && field.system {
            field.id = old
                .and_then(|o| o.field(&field.name))
                .map(|f| f.id.clone())
                .unwrap_or_else(|| {
                    format!(
                        "{}_{}",
                        field.kind.type_name(),
                        field.name.to_ascii_lowercase()
                    )
                });
        }
    }
    fields
}

fn check_fields(
    fields: &[Field],
    kind: CollectionKind,
    snapshot: &Snapshot,
    batch: &[(String, String)],
    errors: &mut FieldErrors,
) {
    let mut names = HashSet::new();
    for (i, field) in fields.iter().enumerate() {
        let path = |key: &str| format!("fields.{i}.{key}");
        if !field.system {
            if let Some(problem) =
                name_problem(&field.name).or_else(|| system_column_problem(&field.name))
            {
                errors.add(path("name"), "validation_invalid_name", problem);
            }
        } else if is_reserved(&field.name) {
            errors.add(
                path("name"),
                "validation_invalid_name",
                "Reserved name.".into(),
            );
        }
        if !names.insert(field.name.to_ascii_lowercase()) {
            errors.add(
                path("name"),
                "validation_duplicated_field_name",
                format!("Another field is named `{}`.", field.name),
            );
        }
        match &field.kind {
            FieldKind::Text {
                min,
                max,
                pattern,
                autogenerate_pattern,
                primary_key,
            } => {
                if *max > 0 && min > max {
                    errors.add(
                        path("min"),
                        "validation_invalid_value",
                        "Must not be greater than max.".into(),
                    );
                }
                check_pattern(pattern, &path("pattern"), errors);
                check_pattern(autogenerate_pattern, &path("autogeneratePattern"), errors);
                if *primary_key && field.name != "id" {
                    errors.add(
                        path("primaryKey"),
                        "validation_invalid_value",
                        "Only the id field is the primary key.".into(),
                    );
                }
            }
            FieldKind::Password {
                min, max, pattern, ..
            } => {
                if kind != CollectionKind::Auth {
                    errors.add(
                        path("type"),
                        "validation_invalid_type",
                        "Password fields belong to auth collections.".into(),
                    );
                }
                if *max > 0 && min > max {
                    errors.add(
                        path("min"),
                        "validation_invalid_value",
                        "Must not be greater than max.".into(),
                    );
                }
                check_pattern(pattern, &path("pattern"), errors);
            }
            FieldKind::Number {
                min: Some(min),
                max: Some(max),
                ..
            } if min > max => {
                errors.add(
                    path("min"),
                    "validation_invalid_value",
                    "Must not be greater than max.".into(),
                );
            }
            FieldKind::Select { values, max_select } => {
                if values.is_empty() {
                    errors.add(
                        path("values"),
                        "validation_required",
                        "A select field needs at least one value.".into(),
                    );
                }
                let unique: HashSet<&String> = values.iter().collect();
                if unique.len() != values.len() {
                    errors.add(
                        path("values"),
                        "validation_invalid_value",
                        "Values must be unique.".into(),
                    );
                }
                if *max_select as usize > values.len().max(1) {
                    errors.add(
                        path("maxSelect"),
                        "validation_invalid_value",
                        "Must not exceed the number of values.".into(),
                    );
                }
            }
            FieldKind::Relation {
                collection_id,
                min_select,
                max_select,
                ..
            } => {
                let known = snapshot.by_id(collection_id).is_some()
                    || batch.iter().any(|(id, _)| id == collection_id);
                if !known {
                    errors.add(
                        path("collectionId"),
                        "validation_missing_collection",
                        format!("No collection with id `{collection_id}`."),
                    );
                }
                if min_select > max_select {
                    errors.add(
                        path("minSelect"),
                        "validation_invalid_value",
                        "Must not be greater than maxSelect.".into(),
                    );
                }
            }
            _ => {}
        }
        if let Some(default) = &field.default
            && !default_fits(&field.kind, default)
        {
            errors.add(
                path("default"),
                "validation_invalid_value",
                format!("Not a valid {} value.", field.kind.type_name()),
            );
        }
    }
}

fn check_pattern(pattern: &str, path: &str, errors: &mut FieldErrors) {
    if !pattern.is_empty()
        && let Err(err) = regex::Regex::new(pattern)
    {
        let message = format!(
            "Not a valid regular expression: {}",
            err.to_string().lines().last().unwrap_or_default()
        );
        errors.add(path, "validation_invalid_pattern", message);
    }
}

fn default_fits(kind: &FieldKind, value: &Value) -> bool {
    match (storage(kind), value) {
        (_, Value::Null) => false,
        (Storage::Number, v) => v.is_number(),
        (Storage::Bool, v) => v.is_boolean(),
        (Storage::Json, v) if kind.is_multi() => v
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        (Storage::Json, _) => true,
        (Storage::Text, v) => v.is_string() && !matches!(kind, FieldKind::Password { .. }),
    }
}

fn to_row(collection: &Collection, now: DateTime<Utc>) -> collections::ActiveModel {
    let created = DateTime::parse_from_str(
        &collection.created.replace('Z', "+00:00"),
        "%Y-%m-%d %H:%M:%S%.3f%:z",
    )
    .map(|t| t.with_timezone(&Utc))
    .unwrap_or(now);
    collections::ActiveModel {
        id: Set(collection.id.clone()),
        name: Set(collection.name.clone()),
        r#type: Set(collection.kind.as_str().to_owned()),
        system: Set(collection.system),
        fields: Set(
            Value::Array(collection.fields.iter().map(Field::to_json).collect()).to_string(),
        ),
        indexes: Set(json!(collection.indexes).to_string()),
        list_rule: Set(collection.rules.list.clone()),
        view_rule: Set(collection.rules.view.clone()),
        create_rule: Set(collection.rules.create.clone()),
        update_rule: Set(collection.rules.update.clone()),
        delete_rule: Set(collection.rules.delete.clone()),
        options: Set(collection
            .auth
            .as_ref()
            .map_or_else(|| json!({}), AuthOptions::to_json)
            .to_string()),
        created: Set(created),
        updated: Set(now),
    }
}

fn from_row(row: collections::Model) -> Result<Collection, SchemaError> {
    let corrupt = |what: &str| {
        SchemaError::Db(DbErr::Type(format!(
            "_collections row `{}`: bad {what}",
            row.name
        )))
    };
    let mut body = json!({
        "id": row.id,
        "name": row.name,
        "type": row.r#type,
        "fields": serde_json::from_str::<Value>(&row.fields).map_err(|_| corrupt("fields"))?,
        "indexes": serde_json::from_str::<Value>(&row.indexes).map_err(|_| corrupt("indexes"))?,
        "listRule": row.list_rule,
        "viewRule": row.view_rule,
        "createRule": row.create_rule,
        "updateRule": row.update_rule,
        "deleteRule": row.delete_rule,
    });
    if let (Value::Object(body), Ok(Value::Object(options))) =
        (&mut body, serde_json::from_str::<Value>(&row.options))
    {
        body.extend(options);
    }
    let mut errors = FieldErrors::default();
    let input = parse_collection(&body, &mut errors);
    if !errors.is_empty() {
        return Err(corrupt("definition"));
    }
    let fields = input
        .fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|f| Field {
            id: f.id.unwrap_or_default(),
            ..f.field
        })
        .collect();
    let kind = input.kind.unwrap_or(CollectionKind::Base);
    let auth = (kind == CollectionKind::Auth).then(|| input.auth_over(AuthOptions::default()));
    let rules = input.rules_over(&Rules::default());
    Ok(Collection {
        id: row.id.clone(),
        name: row.name.clone(),
        kind,
        system: row.system,
        fields,
        indexes: input.indexes.clone().unwrap_or_default(),
        rules,
        auth,
        created: format_time(row.created),
        updated: format_time(row.updated),
    })
}

/// An error's message as a sentence.
fn capitalized(err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().collect::<String>() + chars.as_str() + "."
    })
}

#[cfg(test)]
mod list_filter_tests {
    use super::name_filter;

    #[test]
    fn collection_list_filters() {
        assert_eq!(name_filter("").unwrap(), vec![]);
        assert_eq!(
            name_filter("name = 'posts'").unwrap(),
            vec![("name".to_owned(), '=', "posts".to_owned())]
        );
        assert_eq!(name_filter("name~\"po\" && type='base'").unwrap().len(), 2);
        assert!(name_filter("views > 3").is_err());
        assert!(name_filter("name = posts").is_err());
    }
}
