//! Whether a filter matches a record given by its values (an event's record, which
//! may no longer be stored): the filter is compiled as for a list and evaluated on
//! the values as a one-row subquery named like the table, so relation paths
//! (`author.name = "ann"`) follow into the stored related records.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Map, Value};

use super::RecordService;
use crate::filter::compile::{BASE, Request, compile};
use crate::filter::resolve::Scope;

impl RecordService {
    /// Whether `filter` matches the record of `collection` with `values` (fields
    /// missing from `values` count as null).
    ///
    /// Fails when the collection is gone, the filter does not parse or compile for
    /// it, or the statement fails.
    pub async fn filter_matches(
        &self,
        collection: &str,
        values: &Map<String, Value>,
        filter: &str,
    ) -> Result<bool, String> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or_else(|| format!("the collection `{collection}` is gone"))?;
        let Some(expr) = crate::filter::parse(filter).map_err(|e| e.to_string())? else {
            return Ok(true);
        };
        let condition = compile(
            &expr,
            &collection,
            &snapshot,
            &Request::new("GET"),
            Scope { hidden: true },
            self.db.database_backend(),
        )
        .map_err(|e| e.to_string())?;
        let postgres = self.db.backend() == crate::db::Backend::Postgres;
        let mut row = Query::select();
        for field in &collection.fields {
            let value = values.get(&field.name).unwrap_or(&Value::Null);
            let encoded = self.encode(field, value);
            let encoded = if postgres {
                encoded.cast_as(Alias::new(super::direct::pg_type(&field.kind)))
            } else {
                encoded
            };
            row.expr_as(encoded, Alias::new(&field.name));
        }
        let query = Query::select()
            .expr(Expr::val(1))
            .from_subquery(row, Alias::new(BASE))
            .and_where(condition)
            .to_owned();
        let statement = self.db.database_backend().build(&query);
        let found = self
            .db
            .reads()
            .one(statement)
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.is_some())
    }
}
