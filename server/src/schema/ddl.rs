//! The DDL planner: the difference between two definitions of a collection, as
//! sea-query statements for the connected engine. Fields are matched by id, so a
//! rename is `RENAME COLUMN`, not drop + add.
//!
//! What `ALTER TABLE` does well on both engines (rename the table, add, rename or
//! drop a column, indexes) is done with it. A change of a column's storage, nullability
//! or default rebuilds the table on both engines — create, copy every row, drop,
//! rename — which keeps one tested path and stays inside the caller's transaction.

use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{
    Alias, ColumnDef, Expr, ExprTrait, Index, IndexCreateStatement, Query, SimpleExpr, Table,
    TableCreateStatement,
};
use serde_json::Value;

use super::index::{IndexDef, parse_index};
use super::model::{Collection, Field, FieldKind};

/// How a field's values are stored; changes within a class need no DDL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Text,
    Number,
    Bool,
    Json,
}

pub fn storage(kind: &FieldKind) -> Storage {
    match kind {
        FieldKind::Number { .. } => Storage::Number,
        FieldKind::Bool => Storage::Bool,
        FieldKind::Json { .. } => Storage::Json,
        k if k.is_multi() => Storage::Json,
        _ => Storage::Text,
    }
}

/// The value a column holds when a record gives none, as stored.
pub fn column_default(field: &Field) -> Option<sea_orm::Value> {
    let stored = |value: &Value| -> sea_orm::Value {
        match (storage(&field.kind), value) {
            (Storage::Number, v) => v.as_f64().unwrap_or(0.0).into(),
            (Storage::Bool, v) => v.as_bool().unwrap_or(false).into(),
            (Storage::Json, v) => v.to_string().into(),
            (Storage::Text, Value::String(s)) => s.clone().into(),
            (Storage::Text, v) => v.to_string().into(),
        }
    };
    if let Some(default) = &field.default {
        return Some(stored(default));
    }
    if field.nullable {
        return None;
    }
    Some(match storage(&field.kind) {
        Storage::Text => String::new().into(),
        Storage::Number => 0.0f64.into(),
        Storage::Bool => false.into(),
        Storage::Json if field.kind.is_multi() => "[]".to_owned().into(),
        Storage::Json => "null".to_owned().into(),
    })
}

fn column_def(field: &Field, backend: DatabaseBackend) -> ColumnDef {
    let mut def = ColumnDef::new(Alias::new(&field.name));
    match storage(&field.kind) {
        Storage::Text => def.text(),
        Storage::Number => def.double(),
        Storage::Bool => def.boolean(),
        Storage::Json if backend == DatabaseBackend::Postgres => def.json_binary(),
        Storage::Json => def.text(),
    };
    if matches!(
        field.kind,
        FieldKind::Text {
            primary_key: true,
            ..
        }
    ) {
        def.not_null().primary_key();
        return def;
    }
    if field.nullable {
        def.null();
    } else {
        def.not_null();
    }
    if let Some(default) = column_default(field) {
        // Postgres needs the JSON default as jsonb, not text.
        if backend == DatabaseBackend::Postgres && storage(&field.kind) == Storage::Json {
            def.default(Expr::val(default).cast_as(Alias::new("jsonb")));
        } else {
            def.default(default);
        }
    }
    def
}

fn create_table(name: &str, fields: &[Field], backend: DatabaseBackend) -> TableCreateStatement {
    let mut table = Table::create();
    table.table(Alias::new(name));
    for field in fields {
        table.col(column_def(field, backend));
    }
    table.to_owned()
}

fn create_index(def: &IndexDef, table: &str) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(&def.name).table(Alias::new(table));
    if def.unique {
        index.unique();
    }
    for column in &def.columns {
        if column.descending {
            index.col((
                Alias::new(&column.name),
                sea_orm::sea_query::IndexOrder::Desc,
            ));
        } else {
            index.col(Alias::new(&column.name));
        }
    }
    index.to_owned()
}

/// Why a change cannot be planned, for a 400 naming the field.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

/// One statement to run, already built for the engine.
#[derive(Debug, Clone)]
pub struct Planned {
    pub sql: sea_orm::Statement,
}

fn build<S: sea_orm::StatementBuilder>(stmt: &S, backend: DatabaseBackend) -> Planned {
    Planned {
        sql: backend.build(stmt),
    }
}

/// Parse every index of `collection`; the table name in the string is ignored in
/// favour of the collection's own (so a rename carries its indexes along).
pub fn indexes_of(collection: &Collection) -> Result<Vec<IndexDef>, PlanError> {
    collection
        .indexes
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut def = parse_index(text).map_err(|message| PlanError {
                path: format!("indexes.{i}"),
                message,
            })?;
            def.table = collection.name.clone();
            for column in &def.columns {
                if collection.field(&column.name).is_none() {
                    return Err(PlanError {
                        path: format!("indexes.{i}"),
                        message: format!("Unknown field `{}` in index.", column.name),
                    });
                }
            }
            Ok(def)
        })
        .collect()
}

/// Whether an existing column can keep its data when its field changes from `old`
/// to `new`; `Err` says why not.
fn conversion(old: &Field, new: &Field) -> Result<Option<SimpleExpr>, String> {
    let (from, to) = (storage(&old.kind), storage(&new.kind));
    let source = Expr::col(Alias::new(&old.name));
    let same_column = from == to && old.nullable == new.nullable && old.default == new.default;
    if same_column {
        return Ok(None);
    }
    let expr = match (from, to) {
        (a, b) if a == b => source,
        (Storage::Number, Storage::Text) => source.cast_as(Alias::new("TEXT")),
        _ => {
            return Err(format!(
                "Changing `{}` from {} to {} could lose data; add a new field and copy the values instead.",
                new.name,
                old.kind.type_name(),
                new.kind.type_name()
            ));
        }
    };
    // A column that stops being nullable keeps its rows: NULL becomes the default.
    if old.nullable && !new.nullable {
        let fallback = column_default(new).unwrap_or(sea_orm::Value::String(None));
        return Ok(Some(Expr::expr(expr).if_null(fallback)));
    }
    Ok(Some(expr))
}

/// Plan the DDL that takes the table of `old` to that of `new` (either may be `None`
/// for a create or a delete).
///
/// Fails when an index is malformed or names a missing field, or a field's type
/// change could lose data.
pub fn plan(
    old: Option<&Collection>,
    new: Option<&Collection>,
    backend: DatabaseBackend,
) -> Result<Vec<Planned>, PlanError> {
    let mut steps = Vec::new();
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => {
            steps.push(build(
                &create_table(&new.name, &new.fields, backend),
                backend,
            ));
            for def in indexes_of(new)? {
                steps.push(build(&create_index(&def, &new.name), backend));
            }
        }
        (Some(old), None) => {
            steps.push(build(
                &Table::drop().table(Alias::new(&old.name)).to_owned(),
                backend,
            ));
        }
        (Some(old), Some(new)) => plan_alter(old, new, backend, &mut steps)?,
    }
    Ok(steps)
}

fn plan_alter(
    old: &Collection,
    new: &Collection,
    backend: DatabaseBackend,
    steps: &mut Vec<Planned>,
) -> Result<(), PlanError> {
    let old_indexes = indexes_of(old)?;
    let new_indexes = indexes_of(new)?;
    // Columns whose storage, nullability or default change need the table rebuilt.
    let mut conversions = Vec::new();
    let mut rebuild = false;
    for field in &new.fields {
        if let Some(before) = old.field_by_id(&field.id) {
            let converted = conversion(before, field).map_err(|message| PlanError {
                path: format!("fields.{}", field.name),
                message,
            })?;
            rebuild |= converted.is_some();
            conversions.push((field, before, converted));
        }
    }

    if rebuild {
        let temp = format!("_rebuild_{}", new.name);
        steps.push(build(&create_table(&temp, &new.fields, backend), backend));
        let mut insert = Query::insert();
        insert.into_table(Alias::new(&temp));
        let mut select = Query::select();
        select.from(Alias::new(&old.name));
        let mut columns = Vec::new();
        for (field, before, converted) in &conversions {
            columns.push(Alias::new(&field.name));
            select.expr(
                converted
                    .clone()
                    .unwrap_or_else(|| Expr::col(Alias::new(&before.name))),
            );
        }
        insert.columns(columns);
        insert.select_from(select).map_err(|e| PlanError {
            path: String::new(),
            message: format!("planning the copy failed: {e}"),
        })?;
        steps.push(Planned {
            sql: backend.build(&insert),
        });
        steps.push(build(
            &Table::drop().table(Alias::new(&old.name)).to_owned(),
            backend,
        ));
        steps.push(build(
            &Table::rename()
                .table(Alias::new(&temp), Alias::new(&new.name))
                .to_owned(),
            backend,
        ));
        for def in &new_indexes {
            steps.push(build(&create_index(def, &new.name), backend));
        }
        return Ok(());
    }

    // Indexes that go away or change are dropped first: SQLite refuses to drop or
    // rename a column an index uses.
    let renamed_columns = |def: &IndexDef| -> IndexDef {
        let mut def = def.clone();
        def.table = new.name.clone();
        for column in &mut def.columns {
            if let Some(field) = old.field(&column.name)
                && let Some(now) = new.field_by_id(&field.id)
            {
                column.name = now.name.clone();
            }
        }
        def
    };
    let kept: Vec<&IndexDef> = old_indexes
        .iter()
        .filter(|def| new_indexes.contains(&renamed_columns(def)))
        .collect();
    for def in &old_indexes {
        if !kept.contains(&def) {
            steps.push(build(
                &Index::drop()
                    .name(&def.name)
                    .table(Alias::new(&old.name))
                    .to_owned(),
                backend,
            ));
        }
    }
    if old.name != new.name {
        steps.push(build(
            &Table::rename()
                .table(Alias::new(&old.name), Alias::new(&new.name))
                .to_owned(),
            backend,
        ));
    }
    for field in &old.fields {
        if new.field_by_id(&field.id).is_none() {
            steps.push(build(
                &Table::alter()
                    .table(Alias::new(&new.name))
                    .drop_column(Alias::new(&field.name))
                    .to_owned(),
                backend,
            ));
        }
    }
    for field in &new.fields {
        match old.field_by_id(&field.id) {
            Some(before) if before.name != field.name => steps.push(build(
                &Table::alter()
                    .table(Alias::new(&new.name))
                    .rename_column(Alias::new(&before.name), Alias::new(&field.name))
                    .to_owned(),
                backend,
            )),
            Some(_) => {}
            None => steps.push(build(
                &Table::alter()
                    .table(Alias::new(&new.name))
                    .add_column(column_def(field, backend))
                    .to_owned(),
                backend,
            )),
        }
    }
    for def in &new_indexes {
        if !kept.iter().any(|k| renamed_columns(k) == *def) {
            steps.push(build(&create_index(def, &new.name), backend));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::model::{CollectionKind, Rules};

    fn text(id: &str, name: &str) -> Field {
        Field {
            id: id.into(),
            name: name.into(),
            system: false,
            hidden: false,
            presentable: false,
            required: false,
            nullable: false,
            default: None,
            kind: FieldKind::Text {
                min: 0,
                max: 0,
                pattern: String::new(),
                autogenerate_pattern: String::new(),
                primary_key: false,
            },
        }
    }

    fn number(id: &str, name: &str) -> Field {
        Field {
            kind: FieldKind::Number {
                min: None,
                max: None,
                only_int: false,
            },
            ..text(id, name)
        }
    }

    fn posts(fields: Vec<Field>, indexes: &[&str]) -> Collection {
        let mut id = text("f_id", "id");
        id.kind = FieldKind::Text {
            min: 1,
            max: 64,
            pattern: String::new(),
            autogenerate_pattern: String::new(),
            primary_key: true,
        };
        let mut all = vec![id];
        all.extend(fields);
        Collection {
            id: "c1".into(),
            name: "posts".into(),
            kind: CollectionKind::Base,
            system: false,
            fields: all,
            indexes: indexes.iter().map(|s| (*s).to_owned()).collect(),
            rules: Rules::default(),
            auth: None,
            created: String::new(),
            updated: String::new(),
        }
    }

    fn sql(steps: &[Planned]) -> Vec<String> {
        steps.iter().map(|s| s.sql.to_string()).collect()
    }

    #[test]
    fn create_quotes_every_identifier_and_builds_indexes() {
        let new = posts(
            vec![text("f1", "title"), number("f2", "views")],
            &["CREATE UNIQUE INDEX idx_title ON posts (title)"],
        );
        let steps = sql(&plan(None, Some(&new), DatabaseBackend::Postgres).unwrap());
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[0],
            r#"CREATE TABLE "posts" ( "id" text NOT NULL PRIMARY KEY, "title" text NOT NULL DEFAULT '', "views" double precision NOT NULL DEFAULT 0 )"#
        );
        assert_eq!(
            steps[1],
            r#"CREATE UNIQUE INDEX "idx_title" ON "posts" ("title")"#
        );
    }

    #[test]
    fn rename_is_a_rename_and_keeps_indexes() {
        let old = posts(
            vec![text("f1", "title"), text("f3", "body")],
            &["CREATE INDEX idx_body ON posts (body)"],
        );
        let mut new = posts(
            vec![
                text("f1", "headline"),
                text("f3", "body"),
                number("f4", "views"),
            ],
            &["CREATE INDEX idx_body ON posts (body)"],
        );
        new.name = "articles".into();
        let steps = sql(&plan(Some(&old), Some(&new), DatabaseBackend::Sqlite).unwrap());
        assert_eq!(
            steps,
            vec![
                r#"ALTER TABLE "posts" RENAME TO "articles""#.to_owned(),
                r#"ALTER TABLE "articles" RENAME COLUMN "title" TO "headline""#.to_owned(),
                r#"ALTER TABLE "articles" ADD COLUMN "views" double NOT NULL DEFAULT 0"#.to_owned(),
            ]
        );
    }

    #[test]
    fn an_indexed_column_is_dropped_after_its_index() {
        let old = posts(
            vec![text("f1", "title")],
            &["CREATE INDEX idx_title ON posts (title)"],
        );
        let new = posts(vec![], &[]);
        let steps = sql(&plan(Some(&old), Some(&new), DatabaseBackend::Sqlite).unwrap());
        assert_eq!(steps.len(), 2);
        assert!(steps[0].starts_with("DROP INDEX"), "{steps:?}");
        assert!(steps[1].contains("DROP COLUMN \"title\""), "{steps:?}");
    }

    #[test]
    fn lossless_type_change_rebuilds_and_lossy_one_is_refused() {
        let old = posts(vec![number("f1", "code")], &[]);
        let new = posts(vec![text("f1", "code")], &[]);
        let steps = sql(&plan(Some(&old), Some(&new), DatabaseBackend::Sqlite).unwrap());
        assert!(
            steps[0].contains("CREATE TABLE \"_rebuild_posts\""),
            "{steps:?}"
        );
        assert!(steps[1].contains("CAST(\"code\" AS TEXT)"), "{steps:?}");
        assert!(steps[2].starts_with("DROP TABLE \"posts\""), "{steps:?}");
        assert!(steps[3].contains("RENAME TO \"posts\""), "{steps:?}");

        let err = plan(Some(&new), Some(&old), DatabaseBackend::Sqlite).unwrap_err();
        assert_eq!(err.path, "fields.code");
        assert!(err.message.contains("could lose data"), "{}", err.message);
    }

    #[test]
    fn indexes_must_name_existing_fields() {
        let new = posts(
            vec![text("f1", "title")],
            &["CREATE INDEX idx ON posts (nope)"],
        );
        let err = plan(None, Some(&new), DatabaseBackend::Sqlite).unwrap_err();
        assert_eq!(err.path, "indexes.0");
        assert!(err.message.contains("nope"));
    }
}
