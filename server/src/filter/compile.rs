//! A checked filter into a sea-query condition on a record table aliased [`BASE`].
//! Identifiers come only from the schema (quoted by sea-query); every value — literals,
//! macros, request data — is a bound parameter.
//!
//! Semantics follow PocketBase: `~` is a case-insensitive "contains" (`%` in the value
//! is a wildcard); `null` and a blank value compare as equal; on a to-many path (a
//! multi-valued field, a multi relation, a back-relation) the `?` forms hold if any
//! element matches and the plain forms if every element does.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use sea_orm::DatabaseBackend;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, SelectStatement, SimpleExpr};
use serde_json::{Map, Value};

use super::FilterError;
use super::ast::{
    CmpOp, Comparison, Expr as Filter, Literal, Macro, Modifier, Operand, Path, Root,
};
use super::resolve::{Scope, check};
use crate::schema::ddl::{Storage, storage};
use crate::schema::{Collection, Field, FieldKind, Snapshot};

/// The alias of the filtered table in the query the condition is used in.
pub const BASE: &str = "r";

/// What a filter can see of the request.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The caller's own record (`@request.auth.*`); `None` for anonymous.
    pub auth: Option<(String, Map<String, Value>)>,
    pub body: Map<String, Value>,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub method: String,
    pub context: String,
    pub now: DateTime<Utc>,
    /// The record before the change, for `:changed` in update rules.
    pub existing: Option<Map<String, Value>>,
}

impl Request {
    /// A request with this method, made now, with no caller, body or query.
    pub fn new(method: &str) -> Request {
        Request {
            method: method.to_owned(),
            context: "default".to_owned(),
            now: Utc::now(),
            ..Request::default()
        }
    }
}

/// Compile `filter` for `collection`, checking its names first.
///
/// Fails with a position for an unknown field, a modifier that does not fit, a value
/// that cannot be compared with its field, or a comparison of two relation paths.
pub fn compile(
    filter: &Filter,
    collection: &Collection,
    snapshot: &Snapshot,
    request: &Request,
    scope: Scope,
    backend: DatabaseBackend,
) -> Result<SimpleExpr, FilterError> {
    check(filter, collection, snapshot, scope)?;
    let compiler = Compiler {
        snapshot,
        request,
        backend,
        next_alias: Rc::new(Cell::new(0)),
        rows: RefCell::new(Vec::new()),
        base: BASE.to_owned(),
        guard: !scope.hidden,
    };
    compiler.top(filter, collection)
}

impl Compiler<'_> {
    /// The whole condition, with the `@collection` rows it names.
    fn top(self, filter: &Filter, collection: &Collection) -> Result<SimpleExpr, FilterError> {
        let condition = self.expr(filter, collection)?;
        Ok(with_rows(condition, self.rows.into_inner()))
    }
}

fn with_rows(condition: SimpleExpr, rows: Vec<CollectionRow>) -> SimpleExpr {
    if rows.is_empty() {
        return condition;
    }
    // `@collection.NAME[:alias]` names one row of NAME for the whole filter: the filter
    // holds if some choice of those rows makes it true. As in PocketBase (a LEFT JOIN
    // per alias), an empty collection still offers one row of NULLs, so
    // `views = 0 || @collection.x.y ?= 1` does not depend on x having rows.
    let mut select = Query::select();
    select.expr(Expr::val(1)).from_subquery(
        Query::select().expr(Expr::val(1)).to_owned(),
        Alias::new("one"),
    );
    for row in rows {
        select.join_as(
            sea_orm::sea_query::JoinType::LeftJoin,
            Alias::new(&row.table),
            Alias::new(&row.alias),
            row.on.unwrap_or_else(|| Expr::val(1).eq(1)),
        );
    }
    select.and_where(condition);
    Expr::exists(select)
}

/// A row of another collection that `@collection` paths name.
struct CollectionRow {
    /// The collection's name and the `:alias` it was given, if any.
    key: (String, Option<String>),
    table: String,
    /// Its SQL alias.
    alias: String,
    /// Which of its rows may be used: the view rule, for a client's filter.
    on: Option<SimpleExpr>,
}

struct Compiler<'a> {
    snapshot: &'a Snapshot,
    request: &'a Request,
    backend: DatabaseBackend,
    /// Shared with the compilers of view rules nested in this filter: aliases stay
    /// unique in the whole statement.
    next_alias: Rc<Cell<usize>>,
    /// `@collection` rows named so far, shared by every comparison that names them.
    rows: RefCell<Vec<CollectionRow>>,
    /// The alias of the row the filter is about ([`BASE`], or a joined row when this
    /// compiles a view rule inside a filter).
    base: String,
    /// A client's filter, not a rule: every row it reaches in another collection
    /// (relations, back-relations, `@collection`) must pass that collection's view
    /// rule for the caller, so a filter cannot probe what the caller may not read.
    guard: bool,
}

/// One hop of a path from one table to another.
enum Hop<'a> {
    /// `field` of the current table points at `target` (single or multi).
    Forward {
        field: &'a Field,
        target: &'a Collection,
    },
    /// Records of `source` whose `via` points at the current table.
    Back {
        source: &'a Collection,
        via: &'a Field,
    },
}

/// A side of a comparison. Short-lived and built a few times per filter: the size of
/// the column variant does not matter.
#[expect(
    clippy::large_enum_variant,
    reason = "built a few times per filter, never stored"
)]
enum Term {
    Value(Value),
    /// A column of the current row, or a scalar derived from one.
    Column {
        expr: SimpleExpr,
        storage: Storage,
        date: bool,
        multi: Option<SimpleExpr>,
        /// When only some rows may be matched on this column: a condition on the row
        /// ANDed into every comparison that names the column. An auth record's email
        /// in a client's filter holds only where it is visible; `:each` holds only on
        /// a non-empty value ("every element" needs at least one, as in PocketBase).
        only_if: Option<SimpleExpr>,
    },
}

/// The rows of `collection` (aliased `table`) whose `email` this request may see and
/// so match: `emailVisibility` set, or the caller's own record.
pub fn email_visible(table: &str, collection: &Collection, request: &Request) -> SimpleExpr {
    let public = col(table, "emailVisibility").eq(true);
    match &request.auth {
        Some((name, record)) if *name == collection.name => match record.get("id") {
            Some(Value::String(id)) => public.or(col(table, "id").eq(id.clone())),
            _ => public,
        },
        _ => public,
    }
}

fn col(table: &str, column: &str) -> SimpleExpr {
    Expr::col((Alias::new(table), Alias::new(column)))
}

impl<'a> Compiler<'a> {
    fn alias(&self, prefix: &str) -> String {
        let n = self.next_alias.get() + 1;
        self.next_alias.set(n);
        format!("{prefix}{n}")
    }

    /// The SQL alias of the row `@collection.NAME[:alias]` names, the same for every
    /// comparison that names it.
    fn collection_row(
        &self,
        target: &Collection,
        label: Option<&str>,
        pos: usize,
    ) -> Result<String, FilterError> {
        let key = (target.name.clone(), label.map(str::to_owned));
        if let Some(row) = self.rows.borrow().iter().find(|r| r.key == key) {
            return Ok(row.alias.clone());
        }
        let alias = self.alias("c");
        let on = self.visible(target, &alias, pos)?;
        self.rows.borrow_mut().push(CollectionRow {
            key,
            table: target.name.clone(),
            alias: alias.clone(),
            on,
        });
        Ok(alias)
    }

    /// For a client's filter, the condition on row `alias` of `target` that its view
    /// rule sets for this caller (`None`: no condition). A superusers-only collection
    /// cannot be filtered through at all.
    fn visible(
        &self,
        target: &Collection,
        alias: &str,
        pos: usize,
    ) -> Result<Option<SimpleExpr>, FilterError> {
        if !self.guard {
            return Ok(None);
        }
        let rule = match super::rules::rule(self.snapshot, target, super::rules::RuleOp::View) {
            super::rules::Rule::Locked => None,
            super::rules::Rule::Public => return Ok(None),
            super::rules::Rule::Broken(message) => Some(Err(FilterError::new(0, message))),
            super::rules::Rule::Expr(expr) => Some(Ok(expr)),
        };
        let Some(rule) = rule else {
            return Err(FilterError::new(
                pos,
                format!(
                    "cannot filter through `{}`: only superusers may read it",
                    target.name
                ),
            ));
        };
        let broken = |e: FilterError| {
            FilterError::new(
                pos,
                format!(
                    "cannot filter through `{}`: its view rule: {e}",
                    target.name
                ),
            )
        };
        let rule = rule.map_err(broken)?;
        let nested = Compiler {
            snapshot: self.snapshot,
            request: self.request,
            backend: self.backend,
            next_alias: Rc::clone(&self.next_alias),
            rows: RefCell::new(Vec::new()),
            base: alias.to_owned(),
            // A rule is the collection owner's own condition: it sees everything.
            guard: false,
        };
        nested.top(&rule, target).map(Some).map_err(broken)
    }

    fn expr(&self, filter: &Filter, collection: &Collection) -> Result<SimpleExpr, FilterError> {
        match filter {
            Filter::All(parts) => {
                let mut out: Option<SimpleExpr> = None;
                for part in parts {
                    let next = self.expr(part, collection)?;
                    out = Some(match out {
                        Some(acc) => acc.and(next),
                        None => next,
                    });
                }
                Ok(out.unwrap_or_else(|| Expr::val(true)))
            }
            Filter::Any(parts) => {
                let mut out: Option<SimpleExpr> = None;
                for part in parts {
                    let next = self.expr(part, collection)?;
                    out = Some(match out {
                        Some(acc) => acc.or(next),
                        None => next,
                    });
                }
                Ok(out.unwrap_or_else(|| Expr::val(false)))
            }
            Filter::Not(inner) => Ok(self.expr(inner, collection)?.not()),
            Filter::Compare(c) => self.comparison(c, collection),
        }
    }

    /// The hops and final field of a record path, from `start`.
    fn route(
        &self,
        path: &Path,
        start: &'a Collection,
    ) -> Result<(Vec<Hop<'a>>, &'a Field, &'a Collection), FilterError> {
        let mut hops = Vec::new();
        let mut current = start;
        let last = path.segments.len().saturating_sub(1);
        for (i, segment) in path.segments.iter().enumerate() {
            if let Some(field) = current.field(segment) {
                if i == last {
                    return Ok((hops, field, current));
                }
                if let FieldKind::Relation { collection_id, .. } = &field.kind {
                    let target = self
                        .snapshot
                        .by_id(collection_id)
                        .map(AsRef::as_ref)
                        .ok_or_else(|| {
                            FilterError::new(path.pos, "relation to a missing collection")
                        })?;
                    hops.push(Hop::Forward { field, target });
                    current = target;
                    continue;
                }
            } else if let Some((name, via)) = segment.split_once("_via_")
                && let Some(source) = self.snapshot.get(name)
                && let Some(via) = source.field(via)
            {
                hops.push(Hop::Back {
                    source: source.as_ref(),
                    via,
                });
                current = source.as_ref();
                continue;
            }
            return Err(FilterError::new(
                path.pos,
                format!("cannot follow `{segment}`"),
            ));
        }
        Err(FilterError::new(path.pos, "empty path"))
    }

    fn comparison(
        &self,
        c: &Comparison,
        collection: &'a Collection,
    ) -> Result<SimpleExpr, FilterError> {
        // A relation path on the left (or, mirrored, on the right) becomes a subquery
        // with the comparison inside it.
        for (path_side, other, flipped) in [(&c.left, &c.right, false), (&c.right, &c.left, true)] {
            if let Operand::Path(path) = path_side
                && path.root == Root::Record
            {
                let (hops, field, _) = self.route(path, collection)?;
                if hops.is_empty() {
                    continue;
                }
                if matches!(other, Operand::Path(p) if p.root == Root::Record && p.segments.len() > 1)
                {
                    return Err(FilterError::new(
                        c.pos,
                        "comparing two relation paths is not supported",
                    ));
                }
                let any = c.any;
                return self.through(
                    &hops, &self.base, field, path, c, other, flipped, any, collection,
                );
            }
            if let Operand::Path(path) = path_side
                && let Root::Collection { name, alias } = &path.root
            {
                let target = self.snapshot.get(name).map(AsRef::as_ref).ok_or_else(|| {
                    FilterError::new(path.pos, format!("unknown collection `{name}`"))
                })?;
                let row = self.collection_row(target, alias.as_deref(), path.pos)?;
                let on_row = |row: &str| {
                    let (hops, field, _) = self.route(path, target)?;
                    if hops.is_empty() {
                        let term = self.column_term(row, target, field, path)?;
                        let other = self.term(other, collection, &self.base)?;
                        let (l, r) = if flipped {
                            (other, term)
                        } else {
                            (term, other)
                        };
                        self.compare(l, c.op, r, c.any, c.pos)
                    } else {
                        self.through(
                            &hops, row, field, path, c, other, flipped, c.any, collection,
                        )
                    }
                };
                let shared = on_row(&row)?;
                if c.any {
                    return Ok(shared);
                }
                // Without `?`, the comparison holds for every row of the collection
                // (PocketBase's multi-match): no row may break it.
                let every = self.alias("m");
                let mut breaking = Query::select();
                breaking
                    .expr(Expr::val(1))
                    .from_as(Alias::new(&target.name), Alias::new(&every))
                    .and_where(on_row(&every)?.not());
                if let Some(visible) = self.visible(target, &every, path.pos)? {
                    breaking.and_where(visible);
                }
                return Ok(shared.and(Expr::not_exists(breaking)));
            }
        }
        let left = self.term(&c.left, collection, &self.base)?;
        let right = self.term(&c.right, collection, &self.base)?;
        self.compare(left, c.op, right, c.any, c.pos)
    }

    /// EXISTS (or, for "every", NOT EXISTS … NOT) over the hops from `from`, with the
    /// comparison of the final field against `other` inside.
    #[allow(clippy::too_many_arguments)]
    fn through(
        &self,
        hops: &[Hop<'a>],
        from: &str,
        field: &'a Field,
        path: &Path,
        c: &Comparison,
        other: &Operand,
        flipped: bool,
        any: bool,
        base: &'a Collection,
    ) -> Result<SimpleExpr, FilterError> {
        let mut select = Query::select();
        let mut previous = from.to_owned();
        let mut owner = base;
        let mut to_many = false;
        let mut links: Vec<SimpleExpr> = Vec::new();
        for (i, hop) in hops.iter().enumerate() {
            let alias = self.alias("j");
            let (reached, link) = match hop {
                Hop::Forward { field, target } => {
                    let here = col(&alias, "id");
                    let link = if field.kind.is_multi() {
                        to_many = true;
                        here.in_subquery(self.elements(col(&previous, &field.name)))
                    } else {
                        here.eq(col(&previous, &field.name))
                    };
                    (*target, link)
                }
                Hop::Back { source, via } => {
                    to_many = true;
                    let there = col(&previous, "id");
                    let link = if via.kind.is_multi() {
                        there.in_subquery(self.elements(col(&alias, &via.name)))
                    } else {
                        col(&alias, &via.name).eq(there)
                    };
                    (*source, link)
                }
            };
            let table = reached.name.clone();
            owner = reached;
            if let Some(visible) = self.visible(reached, &alias, path.pos)? {
                links.push(visible);
            }
            if i == 0 {
                select.from_as(Alias::new(&table), Alias::new(&alias));
            } else {
                select.join_as(
                    sea_orm::sea_query::JoinType::InnerJoin,
                    Alias::new(&table),
                    Alias::new(&alias),
                    Expr::val(1).eq(1),
                );
            }
            links.push(link);
            previous = alias;
        }
        for link in links {
            select.and_where(link);
        }
        let term = self.column_term(&previous, owner, field, path)?;
        // The other side is about the filtered record, wherever the path started.
        let other = self.term(other, base, &self.base)?;
        if !to_many
            && let Term::Column {
                expr,
                storage,
                date,
                multi: None,
                only_if: None,
            } = term
        {
            // Only to-one hops: the value is a scalar subquery, NULL when a relation is
            // empty, and compares like a column (a missing author's name is not 'Ann').
            select.expr(expr).limit(1);
            let value = Term::Column {
                expr: Expr::SubQuery(None, Box::new(select.into())),
                storage,
                date,
                multi: None,
                only_if: None,
            };
            let (l, r) = if flipped {
                (other, value)
            } else {
                (value, other)
            };
            return self.compare(l, c.op, r, c.any, c.pos);
        }
        select.expr(Expr::val(1));
        let (l, r) = if flipped {
            (other, term)
        } else {
            (term, other)
        };
        let cond = self.compare(l, c.op, r, c.any, c.pos)?;
        if any || !to_many {
            select.and_where(cond);
            Ok(Expr::exists(select))
        } else {
            select.and_where(cond.not());
            Ok(Expr::not_exists(select))
        }
    }

    /// `SELECT value FROM <elements of the JSON array column>`.
    fn elements(&self, column: SimpleExpr) -> SelectStatement {
        let alias = self.alias("e");
        let function = crate::db::json_elements(self.backend, column);
        Query::select()
            .expr(col(&alias, "value"))
            .from_function(function, Alias::new(&alias))
            .to_owned()
    }

    /// The column `field` of `owner`, aliased `table`, as one side of a comparison.
    fn column_term(
        &self,
        table: &str,
        owner: &Collection,
        field: &Field,
        path: &Path,
    ) -> Result<Term, FilterError> {
        let column = col(table, &field.name);
        let only_if = (self.guard && owner.gates_email(field))
            .then(|| email_visible(table, owner, self.request));
        let date = matches!(
            field.kind,
            FieldKind::Date { .. } | FieldKind::Autodate { .. }
        );
        if field.kind.is_multi() {
            return Ok(match path.modifier {
                Some(Modifier::Length) => Term::Column {
                    expr: self.array_length(column),
                    storage: Storage::Number,
                    date: false,
                    multi: None,
                    only_if,
                },
                Some(Modifier::Each) => {
                    let nonempty = self.array_length(column.clone()).gt(0);
                    Term::Column {
                        expr: column.clone(),
                        storage: Storage::Text,
                        date: false,
                        multi: Some(column),
                        only_if: Some(match only_if {
                            Some(condition) => condition.and(nonempty),
                            None => nonempty,
                        }),
                    }
                }
                _ => Term::Column {
                    expr: column.clone(),
                    storage: Storage::Text,
                    date: false,
                    multi: Some(column),
                    only_if,
                },
            });
        }
        let (expr, kind) = match path.modifier {
            Some(Modifier::Lower) => (Func::lower(column).into(), Storage::Text),
            _ => (column, storage(&field.kind)),
        };
        Ok(Term::Column {
            expr,
            storage: kind,
            date,
            multi: None,
            only_if,
        })
    }

    fn array_length(&self, column: SimpleExpr) -> SimpleExpr {
        match self.backend {
            DatabaseBackend::Postgres => Func::cust(Alias::new("jsonb_array_length"))
                .arg(column)
                .into(),
            _ => Func::cust(Alias::new("json_array_length"))
                .arg(column)
                .into(),
        }
    }

    fn term(
        &self,
        operand: &Operand,
        collection: &'a Collection,
        table: &str,
    ) -> Result<Term, FilterError> {
        match operand {
            Operand::Literal { value, .. } => Ok(Term::Value(match value {
                Literal::String(s) => Value::String(s.clone()),
                Literal::Number(n) => crate::schema::model::number(*n),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Null => Value::Null,
            })),
            Operand::Macro { name, .. } => Ok(Term::Value(self.macro_value(*name))),
            Operand::Path(path) => match &path.root {
                Root::Record => {
                    let (hops, field, owner) = self.route(path, collection)?;
                    if !hops.is_empty() {
                        return Err(FilterError::new(
                            path.pos,
                            "comparing two relation paths is not supported",
                        ));
                    }
                    self.column_term(table, owner, field, path)
                }
                Root::Auth => Ok(Term::Value(self.auth_value(path))),
                Root::Body => Ok(Term::Value(self.body_value(path, collection))),
                Root::Query => Ok(Term::Value(
                    self.request
                        .query
                        .get(
                            path.segments
                                .first()
                                .map(String::as_str)
                                .unwrap_or_default(),
                        )
                        .map_or(Value::Null, |v| Value::String(v.clone())),
                )),
                Root::Headers => {
                    let name = path
                        .segments
                        .first()
                        .map(String::as_str)
                        .unwrap_or_default();
                    Ok(Term::Value(
                        self.request
                            .headers
                            .get(&name.to_ascii_lowercase().replace('_', "-"))
                            .map_or(Value::Null, |v| Value::String(v.clone())),
                    ))
                }
                Root::Collection { .. } => Err(FilterError::new(
                    path.pos,
                    "compare `@collection` paths with values or fields of this record",
                )),
            },
        }
    }

    fn auth_value(&self, path: &Path) -> Value {
        let Some((collection_name, record)) = &self.request.auth else {
            return Value::Null;
        };
        let first = path
            .segments
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let value = match first {
            "collectionName" => Value::String(collection_name.clone()),
            _ => record.get(first).cloned().unwrap_or(Value::Null),
        };
        apply_value_modifier(value, path.modifier)
    }

    fn body_value(&self, path: &Path, collection: &Collection) -> Value {
        let key = path
            .segments
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let given = self.request.body.get(key);
        match path.modifier {
            Some(Modifier::Isset) => Value::Bool(given.is_some()),
            Some(Modifier::Changed) => {
                let before = self.request.existing.as_ref().and_then(|r| r.get(key));
                Value::Bool(given.is_some() && given != before)
            }
            modifier => {
                let _ = collection;
                apply_value_modifier(given.cloned().unwrap_or(Value::Null), modifier)
            }
        }
    }

    fn macro_value(&self, name: Macro) -> Value {
        let now = self.request.now;
        let time = |t: DateTime<Utc>| Value::String(crate::schema::service::format_time(t));
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        match name {
            Macro::Now => time(now),
            Macro::Second => Value::from(now.second()),
            Macro::Minute => Value::from(now.minute()),
            Macro::Hour => Value::from(now.hour()),
            Macro::Weekday => Value::from(now.weekday().num_days_from_sunday()),
            Macro::Day => Value::from(now.day()),
            Macro::Month => Value::from(now.month()),
            Macro::Year => Value::from(now.year()),
            Macro::Yesterday => time(now - Duration::days(1)),
            Macro::Tomorrow => time(now + Duration::days(1)),
            Macro::TodayStart => time(day_start),
            Macro::TodayEnd => time(day_start + Duration::days(1) - Duration::milliseconds(1)),
            Macro::MonthStart => time(
                now.date_naive()
                    .with_day(1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(now, |d| d.and_utc()),
            ),
            Macro::MonthEnd => {
                let next = if now.month() == 12 {
                    chrono::NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
                } else {
                    chrono::NaiveDate::from_ymd_opt(now.year(), now.month() + 1, 1)
                };
                time(
                    next.and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map_or(now, |d| d.and_utc())
                        - Duration::milliseconds(1),
                )
            }
            Macro::YearStart => time(
                chrono::NaiveDate::from_ymd_opt(now.year(), 1, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(now, |d| d.and_utc()),
            ),
            Macro::YearEnd => time(
                chrono::NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map_or(now, |d| d.and_utc())
                    - Duration::milliseconds(1),
            ),
            Macro::Method => Value::String(self.request.method.clone()),
            Macro::Context => Value::String(self.request.context.clone()),
        }
    }

    /// `left op right`, with PocketBase's blank/null and multi-value semantics; a
    /// column only some rows may be matched on holds on those rows alone.
    fn compare(
        &self,
        left: Term,
        op: CmpOp,
        right: Term,
        any: bool,
        pos: usize,
    ) -> Result<SimpleExpr, FilterError> {
        let gates: Vec<SimpleExpr> = [&left, &right]
            .into_iter()
            .filter_map(|term| match term {
                Term::Column {
                    only_if: Some(condition),
                    ..
                } => Some(condition.clone()),
                _ => None,
            })
            .collect();
        let compared = self.compare_terms(left, op, right, any, pos)?;
        Ok(gates.into_iter().fold(compared, |acc, gate| acc.and(gate)))
    }

    fn compare_terms(
        &self,
        left: Term,
        op: CmpOp,
        right: Term,
        any: bool,
        pos: usize,
    ) -> Result<SimpleExpr, FilterError> {
        match (left, right) {
            (Term::Value(a), Term::Value(b)) => Ok(Expr::val(values_compare(&a, op, &b))),
            (
                Term::Column {
                    expr,
                    storage,
                    date,
                    multi,
                    ..
                },
                Term::Value(v),
            ) => self.column_vs_value(expr, storage, date, multi, op, v, any, pos),
            (
                Term::Value(v),
                Term::Column {
                    expr,
                    storage,
                    date,
                    multi,
                    ..
                },
            ) => self.column_vs_value(expr, storage, date, multi, mirror(op), v, any, pos),
            (
                Term::Column {
                    expr: a,
                    multi: None,
                    ..
                },
                Term::Column {
                    expr: b,
                    multi: None,
                    ..
                },
            ) => binary(a, op, b)
                .ok_or_else(|| FilterError::new(pos, "`~` and `!~` compare a field with a value")),
            _ => Err(FilterError::new(
                pos,
                "comparing two multi-valued fields is not supported",
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn column_vs_value(
        &self,
        column: SimpleExpr,
        kind: Storage,
        date: bool,
        multi: Option<SimpleExpr>,
        op: CmpOp,
        value: Value,
        any: bool,
        pos: usize,
    ) -> Result<SimpleExpr, FilterError> {
        if let Some(array) = multi {
            // Each element of the JSON array, as text.
            let alias = self.alias("e");
            let function = crate::db::json_elements(self.backend, array.clone());
            let element = col(&alias, "value");
            let blank = Value::is_null(&value) || value.as_str() == Some("");
            if blank && matches!(op, CmpOp::Eq | CmpOp::Neq) {
                let empty = self.array_length(array.clone()).eq(0).or(array.is_null());
                return Ok(if op == CmpOp::Eq { empty } else { empty.not() });
            }
            let cond =
                self.column_vs_value(element, Storage::Text, false, None, op, value, false, pos)?;
            let mut select = Query::select();
            select
                .expr(Expr::val(1))
                .from_function(function, Alias::new(&alias));
            return Ok(if any {
                select.and_where(cond);
                Expr::exists(select)
            } else {
                select.and_where(cond.not());
                Expr::not_exists(select)
            });
        }
        if Value::is_null(&value) || (value.as_str() == Some("") && kind == Storage::Text) {
            let blank = match kind {
                Storage::Text => column.clone().is_null().or(column.clone().eq("")),
                _ => column.clone().is_null(),
            };
            return match op {
                CmpOp::Eq => Ok(blank),
                CmpOp::Neq => Ok(blank.not()),
                CmpOp::Like | CmpOp::NotLike if value.as_str() == Some("") => {
                    Ok(Expr::val(op == CmpOp::Like))
                }
                _ => Err(FilterError::new(
                    pos,
                    "only = and != compare with null or a blank value",
                )),
            };
        }
        if matches!(op, CmpOp::Like | CmpOp::NotLike) {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let pattern = if text.contains('%') {
                text
            } else {
                format!("%{}%", escape_like(&text))
            };
            let lowered: SimpleExpr = Func::lower(column.clone()).into();
            let like = lowered
                .like(sea_orm::sea_query::LikeExpr::new(pattern.to_lowercase()).escape('\\'));
            return Ok(if op == CmpOp::Like {
                like
            } else {
                like.not().or(column.is_null())
            });
        }
        let bound: SimpleExpr = match (kind, &value) {
            (Storage::Number, Value::Number(n)) => Expr::val(n.as_f64().unwrap_or_default()),
            (Storage::Number, Value::Bool(b)) => Expr::val(if *b { 1.0 } else { 0.0 }),
            (Storage::Bool, Value::Bool(b)) => Expr::val(*b),
            (Storage::Bool, Value::Number(n)) => Expr::val(n.as_f64() != Some(0.0)),
            (Storage::Text, Value::String(s)) if date => Expr::val(
                crate::records::validate::parse_date(s)
                    .map_or_else(|| s.clone(), crate::records::validate::format_date),
            ),
            (Storage::Text, Value::String(s)) => Expr::val(s.clone()),
            (Storage::Text, Value::Number(n)) => Expr::val(n.to_string()),
            (Storage::Text, Value::Bool(b)) => Expr::val(b.to_string()),
            (Storage::Json, v) => Expr::val(v.to_string()),
            (_, v) => {
                return Err(FilterError::new(
                    pos,
                    format!("cannot compare this field with {v}"),
                ));
            }
        };
        let compared = binary(column.clone(), op, bound)
            .ok_or_else(|| FilterError::new(pos, "`~` and `!~` compare a field with a value"))?;
        // SQL's NULL makes `x != 1` unknown when x is null; a filter means "not 1".
        if op == CmpOp::Neq {
            return Ok(compared.or(column.is_null()));
        }
        // A blank date is stored as '' and would sort before every date: a record
        // without a date is neither before nor after one.
        if date && matches!(op, CmpOp::Gt | CmpOp::Gte | CmpOp::Lt | CmpOp::Lte) {
            return Ok(compared.and(column.ne("")));
        }
        Ok(compared)
    }
}

/// An ordering or equality comparison; `None` for `~`/`!~`, which take a value.
fn binary(left: SimpleExpr, op: CmpOp, right: SimpleExpr) -> Option<SimpleExpr> {
    Some(match op {
        CmpOp::Eq => left.eq(right),
        CmpOp::Neq => left.ne(right),
        CmpOp::Gt => left.gt(right),
        CmpOp::Gte => left.gte(right),
        CmpOp::Lt => left.lt(right),
        CmpOp::Lte => left.lte(right),
        CmpOp::Like | CmpOp::NotLike => return None,
    })
}

fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Gte => CmpOp::Lte,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Lte => CmpOp::Gte,
        other => other,
    }
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('_', "\\_")
}

fn apply_value_modifier(value: Value, modifier: Option<Modifier>) -> Value {
    match (modifier, value) {
        (Some(Modifier::Lower), Value::String(s)) => Value::String(s.to_lowercase()),
        (Some(Modifier::Length), Value::Array(items)) => Value::from(items.len()),
        (Some(Modifier::Length), Value::Null) => Value::from(0),
        (_, value) => value,
    }
}

/// Both sides known: decided here, and bound as a constant.
fn values_compare(a: &Value, op: CmpOp, b: &Value) -> bool {
    let blank = |v: &Value| v.is_null() || v.as_str() == Some("");
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    };
    match op {
        CmpOp::Eq => (blank(a) && blank(b)) || a == b,
        CmpOp::Neq => !((blank(a) && blank(b)) || a == b),
        CmpOp::Gt => ordering == Some(std::cmp::Ordering::Greater),
        CmpOp::Gte => matches!(
            ordering,
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        ),
        CmpOp::Lt => ordering == Some(std::cmp::Ordering::Less),
        CmpOp::Lte => matches!(
            ordering,
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ),
        CmpOp::Like | CmpOp::NotLike => {
            let hay = a.as_str().unwrap_or_default().to_lowercase();
            let needle = b
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .replace('%', "");
            (op == CmpOp::Like) == hay.contains(&needle)
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::Query;

    use super::*;
    use crate::filter::ast::{Expr as Filter, Literal, Operand};
    use crate::filter::{parse, test_snapshot};

    fn strings(expr: &Filter) -> Vec<String> {
        let mut out = Vec::new();
        for c in expr.comparisons() {
            for operand in [&c.left, &c.right] {
                if let Operand::Literal {
                    value: Literal::String(s),
                    ..
                } = operand
                {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Random filters over the test schema's fields, with hostile string values: the
    /// compiler never panics, and no value ever appears in the SQL text — every one is
    /// a bound parameter.
    #[test]
    fn arbitrary_filters_never_panic_and_never_inline_a_value() {
        const FIELDS: &[&str] = &[
            "title",
            "views",
            "tags",
            "tags:length",
            "tags:each",
            "author",
            "author.email",
            "author.role",
            "comments_via_post.text",
            "title:lower",
            "@request.auth.id",
            "@request.body.title",
            "@request.body.title:isset",
            "@request.query.q",
            "@collection.comments.text",
            "@now",
            "id",
            "nope",
            "secret",
        ];
        const OPS: &[&str] = &[
            "=", "!=", ">", ">=", "<", "<=", "~", "!~", "?=", "?!=", "?~", "?>",
        ];
        const VALUES: &[&str] = &[
            "'zq1'' OR ''1''=''1'",
            "'zq2; DROP TABLE posts; --'",
            "\"zq3\\\" OR 1=1\"",
            "'zq4%_\\\\'",
            "'zq5 é 🦀'",
            "42",
            "-1.5",
            "true",
            "null",
            "''",
            "'2024-01-01'",
        ];
        let snapshot = test_snapshot();
        let posts = snapshot.get("posts").unwrap().clone();
        let mut request = Request::new("GET");
        request.query.insert("q".into(), "zq-query-value".into());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pick = |n: u64, list: &[&'static str]| list[(n % list.len() as u64) as usize];
        let mut compiled = 0;
        for _ in 0..5000 {
            let mut text = String::new();
            for i in 0..(1 + next() % 4) {
                if i > 0 {
                    text.push_str(if next() % 2 == 0 { " && " } else { " || " });
                }
                let (a, b) = if next() % 3 == 0 {
                    (pick(next(), VALUES), pick(next(), FIELDS))
                } else {
                    (pick(next(), FIELDS), pick(next(), VALUES))
                };
                text.push_str(&format!("{a} {} {b}", pick(next(), OPS)));
            }
            let Ok(Some(expr)) = parse(&text) else {
                continue;
            };
            for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
                let Ok(condition) = compile(
                    &expr,
                    &posts,
                    &snapshot,
                    &request,
                    Scope { hidden: false },
                    backend,
                ) else {
                    continue;
                };
                compiled += 1;
                let query = Query::select()
                    .column((Alias::new(BASE), Alias::new("id")))
                    .from_as(Alias::new("posts"), Alias::new(BASE))
                    .and_where(condition)
                    .to_owned();
                let statement = backend.build(&query);
                for value in strings(&expr).iter().filter(|s| s.starts_with("zq")) {
                    assert!(
                        !statement.sql.contains(value.as_str()),
                        "{text}\n{}",
                        statement.sql
                    );
                }
                assert!(
                    !statement.sql.contains("zq-query-value"),
                    "{}",
                    statement.sql
                );
                assert!(!statement.sql.contains("DROP"), "{}", statement.sql);
            }
        }
        assert!(
            compiled > 1000,
            "the generator must produce compilable filters ({compiled})"
        );
    }
}
