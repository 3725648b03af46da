//! THE record pipeline (DESIGN.md §2): the only code that reads or writes rows of
//! collections. So far it offers what auth needs — system-level reads by field, inserts,
//! updates and deletes, with values encoded and decoded by field type; rules,
//! validation and the REST adapter arrive with the records issue. Imports `schema`
//! and `db`.

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde_json::{Map, Value};

use crate::db::{Backend, Db};
use crate::schema::ddl::{Storage, storage};
use crate::schema::service::format_time;
use crate::schema::{Collection, Field, FieldKind};

/// A record: field name → value, as the API shows it before hiding anything.
pub type Record = Map<String, Value>;

/// Outcomes of a record operation a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record not found")]
    NotFound,
    #[error("a value for `{0}` conflicts with an existing record")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(DbErr),
}

/// Reads and writes records.
#[derive(Clone, Debug)]
pub struct RecordService {
    db: Db,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

impl RecordService {
    pub fn new(db: Db) -> RecordService {
        RecordService { db }
    }

    /// The first record whose `field` equals `value`; text comparisons on email fields
    /// ignore case.
    ///
    /// Fails when the query fails.
    pub async fn find_by_field(
        &self,
        collection: &Collection,
        field: &str,
        value: &Value,
    ) -> Result<Option<Record>, RecordError> {
        let Some(def) = collection.field(field) else {
            return Ok(None);
        };
        let condition: SimpleExpr = match (&def.kind, value) {
            (FieldKind::Email { .. }, Value::String(s)) => {
                Expr::expr(Func::lower(Expr::col(col(field)))).eq(s.to_lowercase())
            }
            _ => Expr::col(col(field)).eq(self.encode(def, value)),
        };
        let query = Query::select()
            .columns(collection.fields.iter().map(|f| col(&f.name)))
            .from(col(&collection.name))
            .and_where(condition)
            .limit(1)
            .to_owned();
        let row = self
            .db
            .conn()
            .query_one(&query)
            .await
            .map_err(RecordError::Db)?;
        row.map(|row| self.decode(collection, &row)).transpose()
    }

    /// The record with this id.
    ///
    /// Fails when the query fails.
    pub async fn find_by_id(
        &self,
        collection: &Collection,
        id: &str,
    ) -> Result<Option<Record>, RecordError> {
        self.find_by_field(collection, "id", &Value::String(id.to_owned()))
            .await
    }

    /// Insert a record with the given values; the id (UUIDv7 unless given), autodates
    /// and every unset field's default are filled in. Emails are stored in lower case.
    /// No rule or validation is applied: callers are Basalt's own code.
    ///
    /// Fails with `Conflict` on a unique index, or when the statement fails.
    pub async fn insert_system(
        &self,
        collection: &Collection,
        mut values: Record,
    ) -> Result<Record, RecordError> {
        let now = format_time(Utc::now());
        let has_id = values
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !has_id {
            values.insert("id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
        }
        for field in &collection.fields {
            if let FieldKind::Autodate {
                on_create: true, ..
            } = field.kind
            {
                values.insert(field.name.clone(), Value::String(now.clone()));
            }
        }
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
            .to_owned();
        self.db
            .conn()
            .execute(&insert)
            .await
            .map_err(|e| conflict_or_db(e, collection))?;
        let id = values.get("id").cloned().unwrap_or_default();
        self.find_by_field(collection, "id", &id)
            .await?
            .ok_or(RecordError::NotFound)
    }

    /// Set the given fields of one record (and its on-update autodates).
    ///
    /// Fails with `NotFound`, `Conflict` on a unique index, or when the statement fails.
    pub async fn update_system(
        &self,
        collection: &Collection,
        id: &str,
        values: Record,
    ) -> Result<Record, RecordError> {
        let now = format_time(Utc::now());
        let mut update = Query::update();
        update.table(col(&collection.name));
        for field in &collection.fields {
            if let Some(value) = values.get(&field.name) {
                update.value(col(&field.name), self.encode(field, value));
            } else if let FieldKind::Autodate {
                on_update: true, ..
            } = field.kind
            {
                update.value(col(&field.name), now.clone());
            }
        }
        update.and_where(Expr::col(col("id")).eq(id));
        let result = self
            .db
            .conn()
            .execute(&update)
            .await
            .map_err(|e| conflict_or_db(e, collection))?;
        if result.rows_affected() == 0 {
            return Err(RecordError::NotFound);
        }
        self.find_by_id(collection, id)
            .await?
            .ok_or(RecordError::NotFound)
    }

    /// Delete one record; `false` when there was none.
    ///
    /// Fails when the statement fails.
    pub async fn delete_system(
        &self,
        collection: &Collection,
        id: &str,
    ) -> Result<bool, RecordError> {
        let delete = Query::delete()
            .from_table(col(&collection.name))
            .and_where(Expr::col(col("id")).eq(id))
            .to_owned();
        let result = self
            .db
            .conn()
            .execute(&delete)
            .await
            .map_err(RecordError::Db)?;
        Ok(result.rows_affected() > 0)
    }

    /// How many records the collection holds.
    ///
    /// Fails when the query fails.
    pub async fn count(&self, collection: &Collection) -> Result<u64, RecordError> {
        let query = Query::select()
            .expr_as(Expr::col(sea_orm::sea_query::Asterisk).count(), col("n"))
            .from(col(&collection.name))
            .to_owned();
        let row = self
            .db
            .conn()
            .query_one(&query)
            .await
            .map_err(RecordError::Db)?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n").map_err(RecordError::Db)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// A JSON value as the column of `field` stores it.
    fn encode(&self, field: &Field, value: &Value) -> SimpleExpr {
        let json_column = |v: &Value| -> SimpleExpr {
            let text = v.to_string();
            match self.db.backend() {
                Backend::Postgres => Expr::val(text).cast_as(Alias::new("jsonb")),
                Backend::Sqlite => Expr::val(text),
            }
        };
        match (storage(&field.kind), value) {
            (_, Value::Null) if field.nullable => Expr::val(sea_orm::Value::String(None)),
            (Storage::Number, v) => Expr::val(v.as_f64().unwrap_or_default()),
            (Storage::Bool, v) => Expr::val(v.as_bool().unwrap_or_default()),
            (Storage::Json, v) => json_column(v),
            (Storage::Text, Value::String(s)) if matches!(field.kind, FieldKind::Email { .. }) => {
                Expr::val(s.to_lowercase())
            }
            (Storage::Text, Value::String(s)) => Expr::val(s.clone()),
            (Storage::Text, Value::Null) => Expr::val(String::new()),
            (Storage::Text, v) => Expr::val(v.to_string()),
        }
    }

    /// A row back into JSON, by field type.
    fn decode(&self, collection: &Collection, row: &QueryResult) -> Result<Record, RecordError> {
        let mut record = Record::new();
        for field in &collection.fields {
            let name = field.name.as_str();
            let value = match storage(&field.kind) {
                Storage::Text => row
                    .try_get::<Option<String>>("", name)
                    .map(|v| v.map_or(Value::Null, Value::String)),
                Storage::Number => row.try_get::<Option<f64>>("", name).map(|v| {
                    v.and_then(serde_json::Number::from_f64)
                        .map_or(Value::Null, Value::Number)
                }),
                Storage::Bool => row
                    .try_get::<Option<bool>>("", name)
                    .map(|v| v.map_or(Value::Null, Value::Bool)),
                Storage::Json => match self.db.backend() {
                    Backend::Postgres => row
                        .try_get::<Option<Value>>("", name)
                        .map(|v| v.unwrap_or(Value::Null)),
                    Backend::Sqlite => row.try_get::<Option<String>>("", name).map(|v| {
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

/// A unique-index violation names the collection's first unique field involved;
/// anything else is a database error.
fn conflict_or_db(err: DbErr, collection: &Collection) -> RecordError {
    let text = err.to_string().to_lowercase();
    let unique = text.contains("unique") || text.contains("duplicate key");
    if !unique {
        return RecordError::Db(err);
    }
    let field = collection
        .fields
        .iter()
        .find(|f| text.contains(&f.name.to_lowercase()) && f.name != "id")
        .map_or_else(|| "id".to_owned(), |f| f.name.clone());
    RecordError::Conflict(field)
}

/// The record as a client may see it: password hashes and token keys never, hidden
/// fields only for superusers, `email` only to its owner and superusers unless
/// `emailVisibility` is set. Adds `collectionId` and `collectionName`.
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
        let secret = matches!(field.kind, FieldKind::Password { .. }) || field.name == "tokenKey";
        if secret || (field.hidden && !superuser) {
            continue;
        }
        if collection.auth.is_some() && field.name == "email" && !email_visible {
            continue;
        }
        if let Some(value) = record.get(&field.name) {
            out.insert(field.name.clone(), value.clone());
        }
    }
    Value::Object(out)
}
