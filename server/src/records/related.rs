//! Reads for adapters that resolve relations lazily and in batches (GraphQL): the
//! records of one collection among many ids, the records pointing back at many
//! parents with a per-parent limit, and aggregates. Each is one statement whatever
//! the number of parents, and applies the caller's view (or list) rule like every
//! other read.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, OverStatement, Query, WindowStatement};
use serde_json::Value;

use super::read::shape;
use super::{RecordError, RecordService, ScopeCheck};
use crate::filter::compile::{BASE, Request};
use crate::filter::resolve::Scope;
use crate::filter::rules::RuleOp;
use crate::identity::{Identity, Op};
use crate::schema::FieldKind;

/// Most records a back-relation yields per parent.
pub const MAX_BACK_LIMIT: u64 = 1000;

/// Aggregates of the records a caller may list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregate {
    pub count: i64,
    /// Per number field: `[sum, avg, min, max]` (each `None` over no records).
    pub numbers: BTreeMap<String, [Option<f64>; 4]>,
}

/// Which records point back at their parents, and how many of them per parent.
#[derive(Clone, Copy, Debug)]
pub struct BackQuery<'a> {
    /// The collection holding the relation field.
    pub source: &'a str,
    /// The relation field pointing at the parents.
    pub via: &'a str,
    pub condition: Option<&'a crate::filter::Expr>,
    pub sort: Option<&'a str>,
    pub limit: u64,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

impl RecordService {
    /// The records of `collection` among `ids` that the caller may view, shaped for
    /// them, in no particular order. One statement.
    ///
    /// Fails with `NotFound` for an unknown collection, or when the query fails.
    pub async fn related(
        &self,
        collection: &str,
        ids: &[String],
        identity: &Identity,
        request: &Request,
    ) -> Result<Vec<Value>, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot.get(collection).ok_or(RecordError::NotFound)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(rule) = self.visible_rule(collection, &snapshot, identity, request)? else {
            return Ok(Vec::new());
        };
        let mut select = Self::select_fields(collection);
        select.and_where(Expr::col((col(BASE), col("id"))).is_in(ids.iter().cloned()));
        if let Some(rule) = rule {
            select.and_where(rule);
        }
        let rows = self
            .db
            .reads()
            .all(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        rows.iter()
            .map(|row| Ok(shape(collection, &self.decode(collection, row)?, identity)))
            .collect()
    }

    /// The records of `back.source` whose relation field `back.via` points at one of
    /// `parents`, that the caller may view and that match `back.condition`, in
    /// `back.sort` order, at most `back.limit` per parent: `(parent id, record)`
    /// pairs. One statement (a window over the parents), whatever their number.
    ///
    /// Fails with `NotFound` for an unknown collection, `Expand` when `via` is not a
    /// relation field, `Filter`/`Sort` for a bad condition or sort, or when the query
    /// fails.
    pub async fn back_related(
        &self,
        back: &BackQuery<'_>,
        parents: &[String],
        identity: &Identity,
        request: &Request,
    ) -> Result<Vec<(String, Value)>, RecordError> {
        let BackQuery {
            source,
            via,
            condition,
            sort,
            limit,
        } = *back;
        let snapshot = self.schema.snapshot();
        let source = snapshot.get(source).ok_or(RecordError::NotFound)?;
        let field = source
            .field(via)
            .filter(|f| matches!(f.kind, FieldKind::Relation { .. }))
            .filter(|f| !f.hidden || identity.is_superuser())
            .ok_or_else(|| {
                RecordError::Expand(crate::filter::FilterError::new(
                    0,
                    format!("`{via}` is not a relation of `{}`", source.name),
                ))
            })?;
        if parents.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let Some(rule) = self.visible_rule(source, &snapshot, identity, request)? else {
            return Ok(Vec::new());
        };
        let client = self.client_filter(source, &snapshot, identity, request, condition)?;
        let mut inner = Self::select_fields(source);
        let parent = if field.kind.is_multi() {
            let column = Expr::col((col(BASE), col(via)));
            inner.from_function(
                crate::db::json_elements(self.db.database_backend(), column),
                col("e"),
            );
            Expr::col((col("e"), col("value")))
        } else {
            Expr::col((col(BASE), col(via)))
        };
        inner.and_where(parent.clone().is_in(parents.iter().cloned()));
        for condition in rule.into_iter().chain(client) {
            inner.and_where(condition);
        }
        let mut window = WindowStatement::new();
        window.add_partition_by(parent.clone());
        self.sort(
            &mut window,
            source,
            sort,
            Scope {
                hidden: identity.is_superuser(),
            },
            request,
        )?;
        inner.expr_as(parent, col("_parent")).expr_window_as(
            Func::cust(col("ROW_NUMBER")),
            window,
            col("_rn"),
        );
        let mut outer = Query::select();
        outer
            .column(sea_orm::sea_query::Asterisk)
            .from_subquery(inner, col("t"))
            .and_where(Expr::col(col("_rn")).lte(Ord::min(limit, MAX_BACK_LIMIT) as i64))
            .order_by(col("_parent"), sea_orm::Order::Asc)
            .order_by(col("_rn"), sea_orm::Order::Asc);
        let rows = self
            .db
            .reads()
            .all(self.statement(&outer, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        rows.iter()
            .map(|row| {
                let parent: String = row.get("_parent").map_err(RecordError::Db)?;
                let record = self.decode(source, row)?;
                Ok((parent, shape(source, &record, identity)))
            })
            .collect()
    }

    /// How many records of `collection` the caller may list that match `condition`,
    /// and the sum, average, minimum and maximum of each of `numbers` over them. One
    /// statement.
    ///
    /// Fails like [`RecordService::list`], and with `Filter` when one of `numbers` is
    /// not a number field the caller may read.
    pub async fn aggregate(
        &self,
        collection: &str,
        identity: &Identity,
        request: &Request,
        condition: Option<&crate::filter::Expr>,
        numbers: &[String],
    ) -> Result<Aggregate, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot.get(collection).ok_or(RecordError::NotFound)?;
        identity.require_scope(&collection.name, Op::List)?;
        let rule = self.rule_condition(RuleOp::List, identity, collection, &snapshot, request)?;
        let client = self.client_filter(collection, &snapshot, identity, request, condition)?;
        let mut select = Query::select();
        select
            .expr_as(Expr::col(sea_orm::sea_query::Asterisk).count(), col("n"))
            .from_as(col(&collection.name), col(BASE));
        for (i, name) in numbers.iter().enumerate() {
            let readable = collection.field(name).is_some_and(|f| {
                matches!(f.kind, FieldKind::Number { .. }) && (!f.hidden || identity.is_superuser())
            });
            if !readable {
                return Err(RecordError::Filter(crate::filter::FilterError::new(
                    0,
                    format!("`{name}` is not a number field"),
                )));
            }
            let column = || Expr::col((col(BASE), col(name)));
            select
                .expr_as(column().sum(), col(&format!("s{i}")))
                .expr_as(Func::avg(column()), col(&format!("a{i}")))
                .expr_as(column().min(), col(&format!("l{i}")))
                .expr_as(column().max(), col(&format!("h{i}")));
        }
        for condition in rule.into_iter().chain(client) {
            select.and_where(condition);
        }
        let row = self
            .db
            .reads()
            .one(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        let Some(row) = row else {
            return Ok(Aggregate::default());
        };
        let mut out = Aggregate {
            count: row.get("n").map_err(RecordError::Db)?,
            numbers: BTreeMap::new(),
        };
        for (i, name) in numbers.iter().enumerate() {
            let get = |prefix: &str| -> Result<Option<f64>, RecordError> {
                row.get(&format!("{prefix}{i}")).map_err(RecordError::Db)
            };
            out.numbers
                .insert(name.clone(), [get("s")?, get("a")?, get("l")?, get("h")?]);
        }
        Ok(out)
    }
}
