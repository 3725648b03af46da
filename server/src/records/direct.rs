//! PostgreSQL creates in one round trip. A create on PostgreSQL used to take seven
//! (BEGIN, schema version, relation check, insert, outbox row, read-back, COMMIT);
//! when nothing needs a transaction open across statements — not an auth collection
//! (token keys, identity checks); a single create's before-hooks run ahead of it — it
//! is one statement, its own transaction:
//!
//! ```sql
//! WITH "__schema" AS (SELECT 1 FROM "_settings"
//!                     WHERE "key" = 'schemaVersion' AND "value" = $v
//!                     FOR SHARE NOWAIT),
//!      "__ins" AS (INSERT INTO "posts" (every column)
//!                  SELECT … FROM (SELECT CAST($1 AS text) AS "id", …) AS "base"
//!                  WHERE EXISTS (SELECT 1 FROM "__schema")
//!                    AND <each relation's ids exist> AND <create rule on "base">
//!                  RETURNING every column),
//!      "__event" AS (INSERT INTO "_outbox" (…) SELECT $…, … FROM "__ins")
//! SELECT "base".*, CASE WHEN <view rule> THEN 1 ELSE 0 END AS "__check0"
//! FROM "__ins" AS "base"
//! ```
//!
//! The row, its outbox event and the schema-version check commit or fail together.
//! The create rule is evaluated on the values about to be inserted (every column is
//! given, so they are the row as stored). When the statement writes nothing — the
//! schema moved on, a related record is missing, or the create rule refused — the
//! caller runs the full transactional path, which reloads the schema or names the
//! exact problem.
//!
//! `NOWAIT`: the statement holds the table's lock from its start and only then asks
//! for the version row, while a schema change takes that row first and the table's
//! lock after it. Waiting here would be a deadlock with a change in progress; instead
//! the statement fails at once (55P03), releases the table, and the full path — which
//! asks for the version row first, like the schema change — waits its turn.
//!
//! Every column is always given, so the statement's text depends only
//! on the collection, the rules' shape and the schema version, and PostgreSQL reuses
//! its prepared plan.

use std::sync::Arc;

use sea_orm::sea_query::{
    Alias, CommonTableExpression, Expr, ExprTrait, LockBehavior, LockType, Query, SimpleExpr,
    WithClause,
};
use serde_json::{Map, Value};

use super::{Committed, Record, RecordError, RecordService};
use crate::events::outbox::Action;
use crate::filter::compile::{BASE, Request};
use crate::filter::rules::RuleOp;
use crate::identity::Identity;
use crate::schema::ddl::{Storage, storage};
use crate::schema::{Collection, FieldKind, Snapshot};

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// PostgreSQL's type of a field's column, to type the inserted values.
pub(super) fn pg_type(kind: &FieldKind) -> &'static str {
    match storage(kind) {
        Storage::Text => "text",
        Storage::Number => "double precision",
        Storage::Bool => "boolean",
        Storage::Json => "jsonb",
    }
}

impl RecordService {
    /// Whether a create on `collection` can be one statement.
    pub(super) fn direct_create_fits(&self, collection: &Collection) -> bool {
        self.db.backend() == crate::db::Backend::Postgres && collection.auth.is_none()
    }

    /// Create in one statement (see the module) with `values`, validated and filled in
    /// (and through the before-hooks, which ran ahead of it). Returns the record and whether the
    /// caller may view it, or `None` when the statement wrote nothing and the full
    /// path must run.
    ///
    /// Fails with `Conflict` on a unique index, `BrokenRule`, or when the statement fails.
    pub(super) async fn create_direct(
        &self,
        snapshot: &Snapshot,
        collection: &Arc<Collection>,
        identity: &Identity,
        request: &Request,
        body: Map<String, Value>,
        mut values: Record,
    ) -> Result<Option<(Record, bool)>, RecordError> {
        for field in &collection.fields {
            values
                .entry(field.name.clone())
                .or_insert_with(|| blank(field));
        }
        let id = values
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut request = request.clone();
        request.body = body;
        let create =
            self.rule_condition(RuleOp::Create, identity, collection, snapshot, &request)?;
        let view = self.view_condition(identity, collection, snapshot, &request, true)?;
        let checks_view = view.is_some();
        // Every relation's ids exist; a gone target is for the full path to report.
        let mut relations = Vec::new();
        for lookup in super::write::relation_lookups(snapshot, collection, &values) {
            let Some(count) = lookup.count else {
                return Ok(None);
            };
            relations.push(
                Expr::expr(SimpleExpr::SubQuery(None, Box::new(count.into()))).eq(lookup.ids),
            );
        }

        // The values, typed as their columns, as one row named like the table.
        let mut row = Query::select();
        for field in &collection.fields {
            let value = values.get(&field.name).unwrap_or(&Value::Null);
            row.expr_as(
                self.encode(field, value).cast_as(col(pg_type(&field.kind))),
                col(&field.name),
            );
        }
        let version = snapshot.version();
        let schema = Query::select()
            .expr(Expr::val(1))
            .from(col("_settings"))
            .and_where(Expr::col(col("key")).eq("schemaVersion"))
            .and_where(Expr::col(col("value")).eq(version.to_string()))
            .lock_with_behavior(LockType::Share, LockBehavior::Nowait)
            .to_owned();
        let mut source = Query::select();
        source
            .columns(collection.fields.iter().map(|f| (col(BASE), col(&f.name))))
            .from_subquery(row, col(BASE))
            .and_where(Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(col("__schema"))
                    .to_owned(),
            ));
        for condition in relations.into_iter().chain(create) {
            source.and_where(condition);
        }
        let insert = Query::insert()
            .into_table(col(&collection.name))
            .columns(collection.fields.iter().map(|f| col(&f.name)))
            .select_from(source)
            .map_err(|e| RecordError::Db(sea_orm::DbErr::Custom(e.to_string())))?
            .returning(Self::returning(collection))
            .to_owned();
        let stored = self.stored_record(collection, &values);
        let (columns, event) = self.event_row(collection, Action::Created, &stored, None);
        let outbox = Query::insert()
            .into_table(crate::db::entities::outbox::Entity)
            .columns(columns)
            .select_from(
                Query::select()
                    .exprs(event.into_iter().map(Expr::val))
                    .from(col("__ins"))
                    .to_owned(),
            )
            .map_err(|e| RecordError::Db(sea_orm::DbErr::Custom(e.to_string())))?
            .to_owned();
        let mut result = Query::select();
        result
            .columns(collection.fields.iter().map(|f| (col(BASE), col(&f.name))))
            .from_as(col("__ins"), col(BASE));
        if let Some(condition) = view {
            result.expr_as(Expr::case(condition, 1i64).finally(0i64), col("__check0"));
        }
        let cte = |name: &str, query: sea_orm::sea_query::SubQueryStatement| {
            CommonTableExpression::new()
                .table_name(col(name))
                .query(query)
                .to_owned()
        };
        let with = WithClause::new()
            .cte(cte("__schema", schema.into()))
            .cte(cte("__ins", insert.into()))
            .cte(cte("__event", outbox.into()))
            .to_owned();
        let statement = self.statement(&result.with(with), version);
        let row = match self.db.reads().one(statement).await {
            Ok(row) => row,
            Err(err) => {
                // A schema change committed since the snapshot (another instance
                // renamed or dropped a column), or one in progress (the version row
                // is locked: NOWAIT, see the module): the full path reloads, waits
                // its turn and says what went wrong, if anything.
                let moved = crate::schema::service::read_version(self.db.conn(), false)
                    .await
                    .is_ok_and(|current| current != version);
                if moved
                    || matches!(
                        crate::db::fault(&err),
                        crate::db::Fault::Deadlock | crate::db::Fault::LockTimeout
                    )
                {
                    return Ok(None);
                }
                return Err(super::conflict_or_db(err, collection));
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let record = self.decode(collection, &row)?;
        let visible = !checks_view || row.get::<i64>("__check0").map_err(RecordError::Db)? == 1;
        self.after_commit(&[Committed {
            collection: collection.name.clone(),
            collection_id: collection.id.clone(),
            id,
            action: Action::Created,
            auth: false,
        }])
        .await;
        Ok(Some((record, visible)))
    }
}

/// The value a column not given in a create gets (its column default when it has
/// none of its own, see `schema::ddl::column_default`).
fn blank(field: &crate::schema::Field) -> Value {
    if field.nullable {
        return Value::Null;
    }
    match storage(&field.kind) {
        Storage::Text => Value::String(String::new()),
        Storage::Number => Value::from(0),
        Storage::Bool => Value::Bool(false),
        Storage::Json if field.kind.is_multi() => Value::Array(Vec::new()),
        Storage::Json => Value::Null,
    }
}
