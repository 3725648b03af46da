//! Reading records as a caller: list (filter, sort, pages, total) and view, with the
//! collection's rule joined into the query, so a caller only ever sees what the rule
//! lets them see — `totalItems` included.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement, SimpleExpr};
use serde_json::Value;

use super::ScopeCheck;
use super::{RecordError, RecordService, public_view};
use crate::filter::compile::{BASE, Request, compile};
use crate::filter::resolve::Scope;
use crate::filter::rules::{self, Rule, RuleOp};
use crate::identity::{Identity, Op};
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
    /// A condition already in the filter language's syntax tree (GraphQL's `where`),
    /// held with `filter` when both are given.
    pub condition: Option<crate::filter::Expr>,
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
        Identity::Anonymous | Identity::ApiKey(_) => None,
        Identity::Record { collection, record } => Some((collection.name.clone(), record.clone())),
        Identity::Superuser { record } => {
            Some((crate::identity::SUPERUSERS.to_owned(), record.clone()))
        }
    }
}

impl RecordService {
    /// The one answer to "may this identity do `op` on `collection`, and under what
    /// condition": `None` when unconditionally (a superuser, a `""` rule), a condition
    /// on [`BASE`] otherwise. The rule comes compiled with the snapshot
    /// ([`crate::filter::rules`]); only the binding of `@request` happens here.
    ///
    /// Fails with `Forbidden` for a superusers-only (`null`) rule, `BrokenRule` for a
    /// stored rule that no longer compiles.
    pub(crate) fn rule_condition(
        &self,
        op: RuleOp,
        identity: &Identity,
        collection: &Collection,
        snapshot: &Snapshot,
        request: &Request,
    ) -> Result<Option<SimpleExpr>, RecordError> {
        if identity.is_superuser() {
            return Ok(None);
        }
        let expr = match rules::rule(snapshot, collection, op) {
            Rule::Locked => return Err(RecordError::Forbidden),
            Rule::Public => return Ok(None),
            Rule::Broken(message) => return Err(RecordError::BrokenRule(message)),
            Rule::Expr(expr) => expr,
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

    /// Fails with `Forbidden` when `op` on `collection` is for superusers only and
    /// `identity` is not one: checked before any work.
    pub(crate) fn require_rule(
        identity: &Identity,
        collection: &Collection,
        snapshot: &Snapshot,
        op: RuleOp,
    ) -> Result<(), RecordError> {
        if !identity.is_superuser() && matches!(rules::rule(snapshot, collection, op), Rule::Locked)
        {
            return Err(RecordError::Forbidden);
        }
        Ok(())
    }

    pub(super) fn select_fields(collection: &Collection) -> SelectStatement {
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
        self.current_schema(|| self.list_once(collection, identity, request, query))
            .await
    }

    async fn list_once(
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
        identity.require_scope(&collection.name, Op::List)?;
        let scope = Scope {
            hidden: identity.is_superuser(),
        };
        let mut conditions = Vec::new();
        if let Some(rule) =
            self.rule_condition(RuleOp::List, identity, &collection, &snapshot, request)?
        {
            conditions.push(rule);
        }
        let parsed = match query.filter.as_deref() {
            Some(text) => crate::filter::parse(text).map_err(RecordError::Filter)?,
            None => None,
        };
        for expr in parsed.iter().chain(query.condition.as_ref()) {
            conditions.extend(self.client_filter(
                &collection,
                &snapshot,
                identity,
                request,
                Some(expr),
            )?);
        }
        let per_page = Ord::clamp(query.per_page.unwrap_or(DEFAULT_PER_PAGE), 1, MAX_PER_PAGE);
        let page = Ord::max(query.page.unwrap_or(1), 1);
        let mut select = Self::select_fields(&collection);
        for condition in &conditions {
            select.and_where(condition.clone());
        }
        self.sort(
            &mut select,
            &collection,
            query.sort.as_deref(),
            scope,
            request,
        )?;
        select.limit(per_page).offset(Ord::min(
            (page - 1).saturating_mul(per_page),
            i64::MAX as u64,
        ));
        let rows = self
            .db
            .reads()
            .all(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        let records = rows
            .iter()
            .map(|row| self.decode(&collection, row))
            .collect::<Result<Vec<_>, _>>()?;
        let tree = super::expand::parse(query.expand.as_deref().unwrap_or_default())
            .map_err(RecordError::Expand)?;
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
                .reads()
                .one(self.statement(&count, snapshot.version()))
                .await
                .map_err(RecordError::Db)?;
            let total: i64 = match row {
                Some(row) => row.get("n").map_err(RecordError::Db)?,
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
        let (record, tag) = self
            .current_schema(|| {
                self.view_inner(collection, id, identity, request, None, expand, true)
            })
            .await?;
        Ok((record, tag.unwrap_or_default()))
    }

    /// [`RecordService::view`] without the entity tag, for adapters that have no use
    /// for it (GraphQL): hashing the record is a good part of a view's CPU.
    ///
    /// Fails like `view`.
    pub async fn view_untagged(
        &self,
        collection: &str,
        id: &str,
        identity: &Identity,
        request: &Request,
    ) -> Result<Value, RecordError> {
        let (record, _) = self
            .current_schema(|| {
                self.view_inner(collection, id, identity, request, None, None, false)
            })
            .await?;
        Ok(record)
    }

    /// [`RecordService::view`], and only if the record also matches a client's
    /// `filter`, with its tag when `tagged`.
    ///
    /// Fails like `view`, and with `Filter` for a bad filter.
    #[expect(
        clippy::too_many_arguments,
        reason = "private; the public views are narrow"
    )]
    async fn view_inner(
        &self,
        collection: &str,
        id: &str,
        identity: &Identity,
        request: &Request,
        filter: Option<&str>,
        expand: Option<&str>,
        tagged: bool,
    ) -> Result<(Value, Option<String>), RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        identity.require_scope(&collection.name, Op::View)?;
        let filter =
            crate::filter::parse(filter.unwrap_or_default()).map_err(RecordError::Filter)?;
        let conditions: Vec<_> = [
            self.client_filter(&collection, &snapshot, identity, request, filter.as_ref())?,
            self.rule_condition(RuleOp::View, identity, &collection, &snapshot, request)?,
        ]
        .into_iter()
        .flatten()
        .collect();
        let statement = if conditions.is_empty() {
            self.view_by_id(snapshot.version(), &collection, id)?
        } else {
            let mut select = Self::select_by_id(&collection, id);
            for condition in conditions {
                select.and_where(condition);
            }
            self.statement(&select, snapshot.version())
        };
        let row = self
            .db
            .reads()
            .one(statement)
            .await
            .map_err(RecordError::Db)?
            .ok_or(RecordError::NotFound)?;
        let record = self.decode(&collection, &row)?;
        let tag = tagged.then(|| super::etag(&record));
        let tree = super::expand::parse(expand.unwrap_or_default()).map_err(RecordError::Expand)?;
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

    /// A client's filter as a condition on [`BASE`], checked with the caller's rights.
    pub(super) fn client_filter(
        &self,
        collection: &Collection,
        snapshot: &Snapshot,
        identity: &Identity,
        request: &Request,
        filter: Option<&crate::filter::Expr>,
    ) -> Result<Option<SimpleExpr>, RecordError> {
        let Some(expr) = filter else {
            return Ok(None);
        };
        compile(
            expr,
            collection,
            snapshot,
            request,
            Scope {
                hidden: identity.is_superuser(),
            },
            self.db.database_backend(),
        )
        .map(Some)
        .map_err(RecordError::Filter)
    }

    /// The view rule as a condition, or `None` when the caller may see nothing of
    /// `collection` (outside an API key's scopes, or superusers only) — which a read
    /// beside the caller's own (expand, nested relations, realtime) answers with no
    /// records rather than an error.
    ///
    /// Fails when the rule no longer compiles.
    pub(super) fn visible_rule(
        &self,
        collection: &Collection,
        snapshot: &Snapshot,
        identity: &Identity,
        request: &Request,
    ) -> Result<Option<Option<SimpleExpr>>, RecordError> {
        if !identity.in_scope(&collection.name, Op::View) {
            return Ok(None);
        }
        match self.rule_condition(RuleOp::View, identity, collection, snapshot, request) {
            Ok(rule) => Ok(Some(rule)),
            Err(RecordError::Forbidden) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// A changed record, as carried by its event, shaped for `identity` with `expand` —
    /// or `None` when `identity` may not see it. Access (the view rule and the
    /// client's `filter`, parsed) is decided on the event's own values, hidden ones
    /// included, as of its commit — as PocketBase decides it in the request — so an
    /// event delivered late is judged as it was made, not by a later change (a create
    /// whose record was deleted since still reaches those who could see it).
    ///
    /// Fails with `Filter` for a bad filter or expand, or when a query fails.
    pub async fn view_event(
        &self,
        collection: &str,
        record: &super::Record,
        identity: &Identity,
        request: &Request,
        filter: Option<&crate::filter::Expr>,
        expand: Option<&str>,
    ) -> Result<Option<Value>, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        if !self
            .event_visible(&collection, &snapshot, record, identity, request, filter)
            .await?
        {
            return Ok(None);
        }
        let tree = super::expand::parse(expand.unwrap_or_default()).map_err(RecordError::Expand)?;
        let mut shaped = self
            .expand_records(
                &snapshot,
                &collection,
                vec![record.clone()],
                &tree,
                identity,
                request,
            )
            .await?;
        Ok(shaped.pop())
    }

    /// Whether a record that no longer exists (a deleted one, from its event) was
    /// visible to `identity` — its view rule and the client's `filter` evaluated on
    /// the values themselves — and if so, as that identity may see it.
    ///
    /// Fails with `Filter` for a bad filter, or when the query fails.
    pub async fn view_gone(
        &self,
        collection: &str,
        record: &super::Record,
        identity: &Identity,
        request: &Request,
        filter: Option<&crate::filter::Expr>,
    ) -> Result<Option<Value>, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        if !self
            .event_visible(&collection, &snapshot, record, identity, request, filter)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(shape(&collection, record, identity)))
    }

    /// Whether `identity` may see `record` as an event carries it: its view rule and
    /// the client's `filter` evaluated on the values themselves, as a one-row table
    /// named like the real one (relation paths still join the stored tables).
    async fn event_visible(
        &self,
        collection: &Collection,
        snapshot: &Snapshot,
        record: &super::Record,
        identity: &Identity,
        request: &Request,
        filter: Option<&crate::filter::Expr>,
    ) -> Result<bool, RecordError> {
        let Some(rule) = self.visible_rule(collection, snapshot, identity, request)? else {
            return Ok(false);
        };
        let filter = self.client_filter(collection, snapshot, identity, request, filter)?;
        if rule.is_none() && filter.is_none() {
            return Ok(true);
        }
        let mut row = Query::select();
        for field in &collection.fields {
            let value = record.get(&field.name).cloned().unwrap_or(Value::Null);
            row.expr_as(self.encode(field, &value), col(&field.name));
        }
        let mut select = Query::select();
        select.expr(Expr::val(1)).from_subquery(row, col(BASE));
        for condition in rule.into_iter().chain(filter) {
            select.and_where(condition);
        }
        let found = self
            .db
            .reads()
            .one(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        Ok(found.is_some())
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
        op: RuleOp,
    ) -> Result<bool, RecordError> {
        let snapshot = self.schema.snapshot();
        let collection = snapshot
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let request = Request::new("POST");
        match self.rule_condition(op, &Identity::Anonymous, &collection, &snapshot, &request) {
            Err(RecordError::Forbidden) => Ok(false),
            Err(other) => Err(other),
            Ok(None) => Ok(true),
            Ok(Some(condition)) => {
                self.row_matches(
                    &self.db.reads(),
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
        exec: &crate::db::exec::Exec<'_>,
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
        let row = exec
            .one(self.statement(&query, version))
            .await
            .map_err(RecordError::Db)?;
        Ok(row.is_some())
    }

    /// `sort=-created,title` or `@random`; only fields the caller may see.
    pub(super) fn sort<S: sea_orm::sea_query::OrderedStatement>(
        &self,
        select: &mut S,
        collection: &Collection,
        sort: Option<&str>,
        scope: Scope,
        request: &Request,
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
            let Some(field) = collection
                .field(name)
                .filter(|f| !super::is_secret(f) && (!f.hidden || scope.hidden))
            else {
                return Err(RecordError::Sort(crate::filter::FilterError::new(
                    position,
                    format!("cannot sort by `{name}`"),
                )));
            };
            if !scope.hidden && collection.gates_email(field) {
                // Emails the caller may not see sort as if blank, so their order
                // reveals nothing.
                let visible = crate::filter::compile::email_visible(BASE, collection, request);
                let shown = Expr::case(visible, Expr::col((col(BASE), col(name))))
                    .finally(Expr::val(sea_orm::Value::String(None)));
                select.order_by_expr(shown.into(), order);
                continue;
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
        Identity::Anonymous | Identity::ApiKey(_) => false,
    };
    public_view(collection, record, identity.is_superuser(), owner)
}

/// Keep only the fields a client asked for: `fields=id,title,expand.author.name`.
/// A path walks into objects (and through arrays of them, as multi-relation expands
/// are); `*` keeps every key at its depth; `name:excerpt(200,true)` keeps a plain-text
/// excerpt of a text value. Unknown names are simply absent, as in PocketBase.
pub fn pick_fields(record: Value, fields: Option<&str>) -> Value {
    let Some(spec) = fields.map(str::trim).filter(|f| !f.is_empty()) else {
        return record;
    };
    let mut tree = FieldTree::default();
    for path in split_top_level(spec) {
        tree.insert(path.trim());
    }
    tree.apply(record)
}

/// The paths of a `fields` parameter as a tree.
#[derive(Debug, Default)]
struct FieldTree {
    /// `*` at this depth.
    all: bool,
    /// A path ends here: keep the whole value.
    whole: bool,
    /// `:excerpt(max, ellipsis)` on this key.
    excerpt: Option<(usize, bool)>,
    children: BTreeMap<String, FieldTree>,
}

impl FieldTree {
    fn insert(&mut self, path: &str) {
        if path.is_empty() {
            return;
        }
        let (path, modifier) = match path.split_once(':') {
            Some((path, modifier)) => (path, Some(modifier)),
            None => (path, None),
        };
        let mut node = self;
        for segment in path.split('.') {
            if segment == "*" {
                node.all = true;
                return;
            }
            node = node.children.entry(segment.to_owned()).or_default();
        }
        node.whole = true;
        node.excerpt = modifier.and_then(parse_excerpt);
    }

    fn apply(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter_map(|(key, value)| match self.children.get(&key) {
                        Some(child) if child.whole => {
                            let value = match (child.excerpt, value) {
                                (Some((max, ellipsis)), Value::String(text)) => {
                                    Value::String(excerpt(&text, max, ellipsis))
                                }
                                (_, value) => value,
                            };
                            Some((key, value))
                        }
                        Some(child) => Some((key, child.apply(value))),
                        None if self.all => Some((key, value)),
                        None => None,
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.apply(v)).collect()),
            other => other,
        }
    }
}

/// Split on commas outside parentheses (`a,b:excerpt(10,true)` is two paths).
fn split_top_level(spec: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(spec.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(spec.get(start..).unwrap_or_default());
    parts
}

/// `excerpt(200)` or `excerpt(200,true)`; anything else is ignored.
fn parse_excerpt(modifier: &str) -> Option<(usize, bool)> {
    let args = modifier
        .trim()
        .strip_prefix("excerpt(")?
        .strip_suffix(')')?;
    let mut args = args.split(',').map(str::trim);
    let max = args.next()?.parse().ok()?;
    let ellipsis = matches!(args.next(), Some("true" | "1"));
    Some((max, ellipsis))
}

/// The text without HTML tags, whitespace collapsed, cut to `max` characters.
fn excerpt(text: &str, max: usize, ellipsis: bool) -> String {
    let mut plain = String::with_capacity(text.len().min(max * 4));
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            _ => plain.push(c),
        }
    }
    let words: Vec<&str> = plain.split_whitespace().collect();
    let plain = words.join(" ");
    if plain.chars().count() <= max {
        return plain;
    }
    let mut cut: String = plain.chars().take(max).collect();
    cut = cut.trim_end().to_owned();
    if ellipsis {
        cut.push_str("...");
    }
    cut
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::pick_fields;

    #[test]
    fn fields_pick_paths_through_expand() {
        let record = json!({
            "id": "p1", "title": "Hello", "body": "<p>Some <b>long</b> text here</p>",
            "expand": {
                "author": {"id": "u1", "name": "Ann", "email": "a@x.io"},
                "tags": [{"id": "t1", "label": "x", "n": 1}, {"id": "t2", "label": "y", "n": 2}],
            }
        });
        assert_eq!(pick_fields(record.clone(), None), record);
        assert_eq!(pick_fields(record.clone(), Some(" ")), record);
        assert_eq!(pick_fields(record.clone(), Some("*")), record);
        assert_eq!(
            pick_fields(
                record.clone(),
                Some("id,expand.author.name,expand.tags.label")
            ),
            json!({"id": "p1", "expand": {"author": {"name": "Ann"}, "tags": [{"label": "x"}, {"label": "y"}]}})
        );
        assert_eq!(
            pick_fields(
                record.clone(),
                Some("*,expand.author.*,body:excerpt(9,true)")
            )
            .get("expand"),
            Some(&json!({"author": {"id": "u1", "name": "Ann", "email": "a@x.io"}}))
        );
        assert_eq!(
            pick_fields(
                record.clone(),
                Some("body:excerpt(9,true),title:excerpt(100)")
            ),
            json!({"body": "Some long...", "title": "Hello"})
        );
        assert_eq!(
            pick_fields(record.clone(), Some("id,expand")).get("expand"),
            record.get("expand")
        );
        assert_eq!(
            pick_fields(record, Some("nope,expand.nope.x")),
            json!({"expand": {}})
        );
    }
}
