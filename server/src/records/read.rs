//! Reading records as a caller: list (filter, sort, pages, total) and view, with the
//! collection's rule joined into the query, so a caller only ever sees what the rule
//! lets them see — `totalItems` included.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement, SimpleExpr};
use serde_json::Value;

use super::{RecordError, RecordService, public_view};
use crate::filter::compile::{BASE, Request, compile};
use crate::filter::resolve::Scope;
use crate::identity::Identity;
use crate::schema::{Collection, Snapshot};

/// Most records one page may hold.
pub const MAX_PER_PAGE: u64 = 1000;
/// Records per page when the client does not say.
pub const DEFAULT_PER_PAGE: u64 = 30;

/// A list request, as PocketBase's query parameters give it.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub page: Option<u64>,
    pub per_page: Option<u64>,
    pub sort: Option<String>,
    pub filter: Option<String>,
    pub skip_total: bool,
    /// `expand=author,comments_via_post.user`
    pub expand: Option<String>,
}

/// One page of records, PocketBase-shaped.
#[derive(Clone, Debug)]
pub struct Page {
    pub page: u64,
    pub per_page: u64,
    /// -1 when the total was skipped.
    pub total_items: i64,
    pub total_pages: i64,
    pub items: Vec<Value>,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// The caller as the filter language sees it.
pub fn request_auth(identity: &Identity) -> Option<(String, super::Record)> {
    match identity {
        Identity::Anonymous => None,
        Identity::Record { collection, record } => Some((collection.name.clone(), record.clone())),
        Identity::Superuser { record } => {
            Some((crate::identity::SUPERUSERS.to_owned(), record.clone()))
        }
    }
}

impl RecordService {
    /// The condition a rule puts on a non-superuser: `None` when there is none (`""`).
    ///
    /// Fails with `Forbidden` for a superusers-only (`null`) rule.
    pub(super) fn rule_condition(
        &self,
        rule: Option<&String>,
        identity: &Identity,
        collection: &Collection,
        snapshot: &Snapshot,
        request: &Request,
    ) -> Result<Option<SimpleExpr>, RecordError> {
        if identity.is_superuser() {
            return Ok(None);
        }
        let Some(rule) = rule else {
            return Err(RecordError::Forbidden);
        };
        let Some(expr) = crate::filter::parse(rule).map_err(RecordError::Filter)? else {
            return Ok(None);
        };
        // Rules were checked when saved; one that fails now is a server-side problem.
        compile(
            &expr,
            collection,
            snapshot,
            request,
            Scope { hidden: true },
            self.db.database_backend(),
        )
        .map(Some)
        .map_err(|e| RecordError::BrokenRule(e.to_string()))
    }

    fn select_fields(collection: &Collection) -> SelectStatement {
        let mut query = Query::select();
        for field in &collection.fields {
            query.column((col(BASE), col(&field.name)));
        }
        query.from_as(col(&collection.name), col(BASE));
        query
    }

    /// A page of records the caller may list.
    ///
    /// Fails with `Forbidden` when listing is for superusers only, `Filter` for a bad
    /// filter or sort (with its position), `NotFound` for an unknown collection.
    pub async fn list(
        &self,
        collection: &str,
        identity: &Identity,
        request: &Request,
        query: &ListQuery,
    ) -> Result<Page, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let scope = Scope {
            hidden: identity.is_superuser(),
        };
        let mut conditions = Vec::new();
        if let Some(rule) = self.rule_condition(
            collection.rules.list.as_ref(),
            identity,
            &collection,
            &snapshot,
            request,
        )? {
            conditions.push(rule);
        }
        if let Some(text) = query.filter.as_deref()
            && let Some(expr) = crate::filter::parse(text).map_err(RecordError::Filter)?
        {
            conditions.push(
                compile(
                    &expr,
                    &collection,
                    &snapshot,
                    request,
                    scope,
                    self.db.database_backend(),
                )
                .map_err(RecordError::Filter)?,
            );
        }
        let per_page = Ord::clamp(query.per_page.unwrap_or(DEFAULT_PER_PAGE), 1, MAX_PER_PAGE);
        let page = Ord::max(query.page.unwrap_or(1), 1);
        let mut select = Self::select_fields(&collection);
        for condition in &conditions {
            select.and_where(condition.clone());
        }
        self.sort(&mut select, &collection, query.sort.as_deref(), scope)?;
        select
            .limit(per_page)
            .offset((page - 1).saturating_mul(per_page));
        let rows = self
            .db
            .conn()
            .query_all_raw(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        let records = rows
            .iter()
            .map(|row| self.decode(&collection, row))
            .collect::<Result<Vec<_>, _>>()?;
        let tree = super::expand::parse(query.expand.as_deref().unwrap_or_default())
            .map_err(RecordError::Filter)?;
        let items = self
            .expand_records(&snapshot, &collection, records, &tree, identity, request)
            .await?;
        let (total_items, total_pages) = if query.skip_total {
            (-1, -1)
        } else {
            let mut count = Query::select();
            count
                .expr_as(Expr::col(sea_orm::sea_query::Asterisk).count(), col("n"))
                .from_as(col(&collection.name), col(BASE));
            for condition in conditions {
                count.and_where(condition);
            }
            let row = self
                .db
                .conn()
                .query_one_raw(self.statement(&count, snapshot.version()))
                .await
                .map_err(RecordError::Db)?;
            let total: i64 = match row {
                Some(row) => row.try_get("", "n").map_err(RecordError::Db)?,
                None => 0,
            };
            let pages = (total + per_page as i64 - 1) / per_page as i64;
            (total, pages)
        };
        Ok(Page {
            page,
            per_page,
            total_items,
            total_pages,
            items,
        })
    }

    /// One record the caller may view, with its entity tag. A record the view rule
    /// hides is `NotFound`, exactly like one that does not exist.
    ///
    /// Fails with `Forbidden` when viewing is for superusers only, `NotFound` otherwise.
    pub async fn view(
        &self,
        collection: &str,
        id: &str,
        identity: &Identity,
        request: &Request,
        expand: Option<&str>,
    ) -> Result<(Value, String), RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let mut select = Self::select_fields(&collection);
        select.and_where(Expr::col((col(BASE), col("id"))).eq(id));
        if let Some(rule) = self.rule_condition(
            collection.rules.view.as_ref(),
            identity,
            &collection,
            &snapshot,
            request,
        )? {
            select.and_where(rule);
        }
        let row = self
            .db
            .conn()
            .query_one_raw(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?
            .ok_or(RecordError::NotFound)?;
        let record = self.decode(&collection, &row)?;
        let tag = super::etag(&record);
        let tree = super::expand::parse(expand.unwrap_or_default()).map_err(RecordError::Filter)?;
        let mut shaped = self
            .expand_records(
                &snapshot,
                &collection,
                vec![record],
                &tree,
                identity,
                request,
            )
            .await?;
        Ok((shaped.pop().unwrap_or(Value::Null), tag))
    }

    /// Whether the record `id` of `collection` satisfies `rule` (a rule of the
    /// collection itself, such as an auth collection's `authRule`), with no caller.
    /// `None` (superusers only) never holds; `""` always does.
    ///
    /// Fails when the rule no longer compiles or the query fails.
    pub async fn satisfies(
        &self,
        collection: &str,
        id: &str,
        rule: Option<&str>,
    ) -> Result<bool, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let rule = rule.map(str::to_owned);
        let request = Request::new("POST");
        match self.rule_condition(
            rule.as_ref(),
            &Identity::Anonymous,
            &collection,
            &snapshot,
            &request,
        ) {
            Err(RecordError::Forbidden) => Ok(false),
            Err(other) => Err(other),
            Ok(None) => Ok(true),
            Ok(Some(condition)) => {
                self.row_matches(
                    self.db.conn(),
                    &collection,
                    snapshot.version(),
                    id,
                    condition,
                )
                .await
            }
        }
    }

    /// Whether the row `id` of `collection` meets `condition`, on `conn` (the pool,
    /// or a transaction that must see its own writes).
    ///
    /// Fails when the query fails.
    pub(super) async fn row_matches(
        &self,
        conn: &impl ConnectionTrait,
        collection: &Collection,
        version: i64,
        id: &str,
        condition: SimpleExpr,
    ) -> Result<bool, RecordError> {
        let query = Query::select()
            .expr(Expr::val(1))
            .from_as(col(&collection.name), col(BASE))
            .and_where(Expr::col((col(BASE), col("id"))).eq(id))
            .and_where(condition)
            .to_owned();
        let row = conn
            .query_one_raw(self.statement(&query, version))
            .await
            .map_err(RecordError::Db)?;
        Ok(row.is_some())
    }

    /// `sort=-created,title` or `@random`; only fields the caller may see.
    fn sort(
        &self,
        select: &mut SelectStatement,
        collection: &Collection,
        sort: Option<&str>,
        scope: Scope,
    ) -> Result<(), RecordError> {
        let Some(sort) = sort.filter(|s| !s.trim().is_empty()) else {
            select.order_by((col(BASE), col("id")), Order::Asc);
            return Ok(());
        };
        let mut offset = 0;
        for part in sort.split(',') {
            let trimmed = part.trim();
            let position = offset + part.len() - part.trim_start().len();
            offset += part.len() + 1;
            if trimmed == "@random" {
                select.order_by_expr(Func::random().into(), Order::Asc);
                continue;
            }
            let (name, order) = match trimmed.strip_prefix('-') {
                Some(name) => (name, Order::Desc),
                None => (trimmed.strip_prefix('+').unwrap_or(trimmed), Order::Asc),
            };
            let visible = collection.field(name).filter(|f| {
                let secret = matches!(f.kind, crate::schema::FieldKind::Password { .. })
                    || f.name == "tokenKey";
                !secret && (!f.hidden || scope.hidden)
            });
            if visible.is_none() {
                return Err(RecordError::Filter(crate::filter::FilterError::new(
                    position,
                    format!("cannot sort by `{name}`"),
                )));
            }
            select.order_by((col(BASE), col(name)), order);
        }
        // Ties are broken by id so pages never overlap.
        select.order_by((col(BASE), col("id")), Order::Asc);
        Ok(())
    }
}

/// The record as this caller may see it.
pub fn shape(collection: &Collection, record: &super::Record, identity: &Identity) -> Value {
    let owner = match identity {
        Identity::Record {
            collection: own,
            record: me,
        } => own.id == collection.id && me.get("id") == record.get("id"),
        Identity::Superuser { record: me } => {
            collection.name == crate::identity::SUPERUSERS && me.get("id") == record.get("id")
        }
        Identity::Anonymous => false,
    };
    public_view(collection, record, identity.is_superuser(), owner)
}

/// Keep only the listed top-level keys of a record (`fields=id,title`; `*` keeps all).
pub fn pick_fields(record: Value, fields: Option<&str>) -> Value {
    let Some(fields) = fields.map(str::trim).filter(|f| !f.is_empty()) else {
        return record;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    if wanted.contains(&"*") {
        return record;
    }
    match record {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| wanted.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}
