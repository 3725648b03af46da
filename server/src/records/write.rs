//! Writing records as a caller: create, update and delete, each one transaction on a
//! current schema, with validation, relation checks and the collection's rules.
//!
//! The create rule is evaluated on the row as inserted, inside the transaction, so it
//! can follow relations of the new record; if it fails the insert is rolled back.
//! Update and delete rules are evaluated on the existing row; a record they hide is a
//! 404, like one that does not exist.

use std::sync::Arc;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query, SimpleExpr};
use serde_json::{Map, Value};

use super::ScopeCheck;
use super::validate::{Mode, validate};
use super::{HookOp, Pending, Record, RecordError, RecordService, WriteCtx};
use crate::filter::compile::{BASE, Request};
use crate::filter::rules::RuleOp;
use crate::identity::{Identity, Op};
use crate::schema::{Collection, FieldKind, Snapshot};
use crate::validation::FieldErrors;

/// An external identity (OAuth2 provider and its user id) to link to a record.
#[derive(Debug, Clone)]
pub struct ExternalLink {
    pub provider: String,
    pub provider_id: String,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// A PATCH modifier: `n+`/`n-` on numbers, `f+`/`+f`/`f-` on multi-valued fields.
pub(super) enum Modifier {
    Add(f64),
    Append(Vec<Value>),
    Prepend(Vec<Value>),
    Remove(Vec<Value>),
}

/// What an update prepared before its transaction.
pub(super) struct PreparedUpdate {
    plain: Map<String, Value>,
    modifiers: Vec<(String, Modifier)>,
    new_password: Option<String>,
}

/// Plain values, and modifiers by field name.
type Split = (Map<String, Value>, Vec<(String, Modifier)>);

/// Split `body` into plain values and modifiers, by field name.
///
/// Fails for a modifier on a field it does not suit, or with a value of the wrong type.
fn split_modifiers(
    collection: &Collection,
    body: &Map<String, Value>,
) -> Result<Split, RecordError> {
    let mut plain = Map::new();
    let mut modifiers = Vec::new();
    let mut errors = FieldErrors::default();
    for (key, value) in body {
        let (name, sign) = if let Some(name) = key.strip_suffix('+') {
            (name, '+')
        } else if let Some(name) = key.strip_prefix('+') {
            (name, '<')
        } else if let Some(name) = key.strip_suffix('-') {
            (name, '-')
        } else {
            plain.insert(key.clone(), value.clone());
            continue;
        };
        let Some(field) = collection.field(name) else {
            errors.add(
                key.clone(),
                "validation_unknown_field",
                format!("Unknown field `{name}`."),
            );
            continue;
        };
        let items = || match value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        let modifier = match (&field.kind, sign) {
            (FieldKind::Number { .. }, '+' | '-') => match value.as_f64() {
                Some(n) if value.is_number() => Modifier::Add(if sign == '-' { -n } else { n }),
                _ => {
                    errors.add(
                        key.clone(),
                        "validation_invalid_number",
                        "Must be a number.".into(),
                    );
                    continue;
                }
            },
            (kind, '+') if kind.is_multi() => Modifier::Append(items()),
            (kind, '<') if kind.is_multi() => Modifier::Prepend(items()),
            (kind, '-') if kind.is_multi() => Modifier::Remove(items()),
            _ => {
                errors.add(
                    key.clone(),
                    "validation_invalid_modifier",
                    format!("`{key}` does not apply to this field."),
                );
                continue;
            }
        };
        modifiers.push((name.to_owned(), modifier));
    }
    errors.into_result().map_err(RecordError::Validation)?;
    Ok((plain, modifiers))
}

/// The values modifiers lead to from the locked row `existing`, for validation, and the
/// number increments to write as SQL.
fn apply_modifiers(
    existing: &Record,
    modifiers: Vec<(String, Modifier)>,
) -> (Map<String, Value>, Vec<(String, f64)>) {
    let mut results = Map::new();
    let mut increments = Vec::new();
    for (name, modifier) in modifiers {
        let current = results
            .get(&name)
            .or_else(|| existing.get(&name))
            .cloned()
            .unwrap_or(Value::Null);
        let value = match modifier {
            Modifier::Add(delta) => {
                increments.push((name.clone(), delta));
                crate::schema::model::number(current.as_f64().unwrap_or_default() + delta)
            }
            Modifier::Append(items) => {
                let mut list = current.as_array().cloned().unwrap_or_default();
                list.extend(
                    items
                        .into_iter()
                        .filter(|i| !current.as_array().is_some_and(|c| c.contains(i))),
                );
                Value::Array(list)
            }
            Modifier::Prepend(items) => {
                let old = current.as_array().cloned().unwrap_or_default();
                let mut list: Vec<Value> = items.into_iter().filter(|i| !old.contains(i)).collect();
                list.extend(old);
                Value::Array(list)
            }
            Modifier::Remove(items) => {
                let list = current.as_array().cloned().unwrap_or_default();
                Value::Array(list.into_iter().filter(|v| !items.contains(v)).collect())
            }
        };
        results.insert(name, value);
    }
    (results, increments)
}

fn one_error(field: &str, code: &str, message: &str) -> RecordError {
    let mut errors = FieldErrors::default();
    errors.add(field, code, message.to_owned());
    RecordError::Validation(errors)
}

/// The relation ids a write names in one field, and how to count those that exist.
pub(super) struct RelationLookup<'a> {
    pub field: &'a str,
    /// How many ids the field names.
    pub ids: i64,
    /// `SELECT COUNT(*) AS n` of those ids in the target; `None` when the target
    /// collection is gone.
    pub count: Option<sea_orm::sea_query::SelectStatement>,
}

/// One lookup per relation field of `collection` that names ids in `values`: the one
/// definition of "the related records exist", for the transactional and the
/// one-statement create alike.
pub(super) fn relation_lookups<'a>(
    snapshot: &crate::schema::Snapshot,
    collection: &'a Collection,
    values: &Record,
) -> Vec<RelationLookup<'a>> {
    let mut lookups = Vec::new();
    for field in &collection.fields {
        let FieldKind::Relation { collection_id, .. } = &field.kind else {
            continue;
        };
        let ids: Vec<String> = match values.get(&field.name) {
            Some(Value::String(id)) if !id.is_empty() => vec![id.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => continue,
        };
        if ids.is_empty() {
            continue;
        }
        lookups.push(RelationLookup {
            field: &field.name,
            ids: ids.len() as i64,
            count: snapshot.by_id(collection_id).map(|target| {
                Query::select()
                    .expr_as(Expr::col(sea_orm::sea_query::Asterisk).count(), col("n"))
                    .from(col(&target.name))
                    .and_where(Expr::col(col("id")).is_in(ids))
                    .to_owned()
            }),
        });
    }
    lookups
}

/// The `id` among a create's values (filled in by then).
fn id_of(values: &Record) -> String {
    values
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A create's values after its before-hooks ran ahead of the write, on schema
/// version `version` (see [`RecordService::hook_create_early`]).
struct Hooked {
    version: i64,
    values: Record,
}

impl RecordService {
    /// Whether the row `id` passes `rule` for this write's caller, with `request` as
    /// the rule's `@request`.
    ///
    /// Fails with `Forbidden` for a `null` rule (superusers only).
    async fn passes(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        op: RuleOp,
        id: &str,
        request: &Request,
    ) -> Result<bool, RecordError> {
        match self.rule_condition(op, &ctx.identity, collection, &ctx.snapshot, request)? {
            None => Ok(true),
            Some(condition) => {
                self.row_matches(&ctx.exec, collection, ctx.version, id, condition)
                    .await
            }
        }
    }

    /// The condition under which the writer may view the record it just wrote, for
    /// [`RecordService::read_back`]: `None` when always, `Some(false)` when never (a
    /// superusers-only view rule, an API key without `view`). A write never echoes what
    /// its writer may not read: such a write is answered 204. A new auth record is the
    /// exception: signing up answers with the new account (shaped, so its email shows
    /// only if visible), as PocketBase and its SDKs' sign-up flow expect.
    pub(super) fn view_condition(
        &self,
        identity: &Identity,
        collection: &Collection,
        snapshot: &crate::schema::Snapshot,
        request: &Request,
        created: bool,
    ) -> Result<Option<SimpleExpr>, RecordError> {
        if created && collection.auth.is_some() {
            return Ok(None);
        }
        if !identity.in_scope(&collection.name, Op::View) {
            return Ok(Some(Expr::val(false)));
        }
        match self.rule_condition(RuleOp::View, identity, collection, snapshot, request) {
            Err(RecordError::Forbidden) => Ok(Some(Expr::val(false))),
            other => other,
        }
    }

    /// The existing row `id` may be changed by this caller: the rule must hold (else
    /// `NotFound`, like a missing record) and `If-Match` must name its tag (else `Stale`).
    #[expect(clippy::too_many_arguments, reason = "one call site per operation")]
    async fn guard_existing(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        op: RuleOp,
        id: &str,
        request: &Request,
        tag: &str,
        if_match: Option<&str>,
    ) -> Result<(), RecordError> {
        if !self.passes(ctx, collection, op, id, request).await? {
            return Err(RecordError::NotFound);
        }
        if !super::if_match_allows(if_match, tag) {
            return Err(RecordError::Stale);
        }
        Ok(())
    }

    /// Every relation id in `values` must name an existing record of its target.
    async fn check_relations(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        values: &Record,
    ) -> Result<(), RecordError> {
        let mut errors = FieldErrors::default();
        for lookup in relation_lookups(&ctx.snapshot, collection, values) {
            let Some(count) = lookup.count else {
                errors.add(
                    lookup.field.to_owned(),
                    "validation_missing_rel_records",
                    "The related collection is gone.".into(),
                );
                continue;
            };
            let found: i64 = match ctx
                .exec
                .one(self.statement(&count, ctx.version))
                .await
                .map_err(RecordError::Db)?
            {
                Some(row) => row.get("n").map_err(RecordError::Db)?,
                None => 0,
            };
            if found != lookup.ids {
                errors.add(
                    lookup.field.to_owned(),
                    "validation_missing_rel_records",
                    "Some related records do not exist.".into(),
                );
            }
        }
        errors.into_result().map_err(RecordError::Validation)
    }

    /// A client-chosen id for a new auth record must not name a record of another
    /// auth collection: an id names one identity, whatever the collection. On
    /// PostgreSQL a transaction-scoped advisory lock on the id keeps two such creates
    /// from passing the check at once (SQLite's writer is alone already).
    async fn refuse_id_of_another_identity(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
    ) -> Result<(), RecordError> {
        if self.db.backend() == crate::db::Backend::Postgres {
            ctx.exec
                .execute(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    [format!("basalt.identity.{id}").into()],
                ))
                .await
                .map_err(RecordError::Db)?;
        }
        for other in ctx.snapshot.all() {
            if other.auth.is_none() || other.id == collection.id {
                continue;
            }
            let query = Query::select()
                .expr(Expr::val(1))
                .from(col(&other.name))
                .and_where(Expr::col(col("id")).eq(id))
                .limit(1)
                .to_owned();
            let taken = ctx
                .exec
                .one(self.statement(&query, ctx.version))
                .await
                .map_err(RecordError::Db)?
                .is_some();
            if taken {
                return Err(RecordError::Conflict("id".to_owned()));
            }
        }
        Ok(())
    }

    /// Fields only superusers (and Basalt) may set on auth records.
    fn refuse_protected(
        collection: &Collection,
        body: &Map<String, Value>,
        identity: &Identity,
        mode: Mode,
    ) -> Result<(), RecordError> {
        if collection.auth.is_none() || identity.is_superuser() {
            return Ok(());
        }
        let mut errors = FieldErrors::default();
        for key in ["verified", "tokenKey"] {
            if body.contains_key(key) {
                errors.add(
                    key,
                    "validation_forbidden",
                    "Only superusers may set this field.".into(),
                );
            }
        }
        if mode == Mode::Update && body.contains_key("email") {
            errors.add(
                "email",
                "validation_forbidden",
                "Change the email with the email-change flow.".into(),
            );
        }
        errors.into_result().map_err(RecordError::Validation)
    }

    /// Run the before-hooks on a pending write; a hook that changed the values has
    /// them validated again.
    ///
    /// Fails with `Rejected` when a hook refuses, or `Validation` for values a hook
    /// made invalid.
    async fn before_hooks(
        &self,
        ctx: &WriteCtx<'_>,
        op: HookOp,
        collection: &Collection,
        id: &str,
        values: &mut Record,
        existing: Option<&Record>,
    ) -> Result<(), RecordError> {
        if !self.hooks.active() {
            return Ok(());
        }
        let before = (op != HookOp::Delete).then(|| values.clone());
        self.hooks
            .before(
                ctx,
                Pending {
                    op,
                    collection,
                    id,
                    values,
                    existing,
                },
            )
            .await
            .map_err(|r| RecordError::Rejected(r.message, r.errors))?;
        if let Some(before) = before
            && before != *values
        {
            let mode = if op == HookOp::Create {
                Mode::Create
            } else {
                Mode::Update
            };
            let mut checked =
                validate(collection, values, mode).map_err(RecordError::Validation)?;
            // Values Basalt set itself (a password hash, a token key) stay as set.
            for (name, value) in values.iter() {
                checked.entry(name.clone()).or_insert_with(|| value.clone());
            }
            *values = checked;
            self.check_relations(ctx, collection, values).await?;
        }
        Ok(())
    }

    /// The checks and password work a create needs before its transaction; returns
    /// the values Basalt sets itself (a password's hash).
    pub(super) async fn prepare_create(
        &self,
        planned: &Collection,
        identity: &Identity,
        body: &Map<String, Value>,
    ) -> Result<Record, RecordError> {
        identity.require_scope(&planned.name, Op::Create)?;
        Self::require_rule(identity, planned, &self.schema.snapshot(), RuleOp::Create)?;
        Self::refuse_protected(planned, body, identity, Mode::Create)?;
        // Hash before the transaction: argon2 must not hold SQLite's write lock.
        match (
            planned.auth.is_some(),
            body.get("password").and_then(Value::as_str),
        ) {
            (true, Some(password)) => {
                validate(planned, body, Mode::Create).map_err(RecordError::Validation)?;
                let hash = crate::password::hash(password.to_owned())
                    .await
                    .map_err(|e| RecordError::Db(sea_orm::DbErr::Custom(e)))?;
                Ok(Record::from_iter([(
                    "password".to_owned(),
                    Value::String(hash),
                )]))
            }
            _ => Ok(Record::new()),
        }
    }

    /// Create inside the write; `preset` holds values Basalt sets itself after
    /// validation (a password's hash, `verified` for an OAuth2 sign-up). Returns the
    /// stored record and whether its creator may view it.
    pub(crate) async fn create_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        body: Map<String, Value>,
        preset: Record,
    ) -> Result<(Record, bool), RecordError> {
        self.create_hooked_in(ctx, collection, body, preset, None)
            .await
    }

    /// A create's values, validated, with what Basalt sets itself (`preset`, an auth
    /// record's token key, the id, autodates).
    fn create_values(
        collection: &Collection,
        body: &Map<String, Value>,
        preset: Record,
    ) -> Result<Record, RecordError> {
        let mut values =
            validate(collection, body, Mode::Create).map_err(RecordError::Validation)?;
        if collection.auth.is_some() {
            values.insert("tokenKey".into(), Value::String(super::random_key()));
        }
        values.extend(preset);
        super::fill_new(collection, &mut values);
        Ok(values)
    }

    /// Run a single create's before-hooks ahead of its transaction: a hook only reads
    /// (through the pool, as it would inside), and a create has written nothing before
    /// its hooks, so the outcome is the same while neither SQLite's write lock nor a
    /// PostgreSQL transaction is held across the guest's call, and PostgreSQL keeps
    /// its one-statement create. Returns the values the write uses.
    ///
    /// Fails like the hooks inside the write (`Rejected`, `Validation`).
    async fn hook_create_early(
        &self,
        snapshot: &Arc<Snapshot>,
        collection: &Collection,
        identity: &Identity,
        request: &Request,
        body: &Map<String, Value>,
        preset: Record,
    ) -> Result<Hooked, RecordError> {
        let mut values = Self::create_values(collection, body, preset)?;
        let id = id_of(&values);
        let ctx = WriteCtx::new(
            self.db.reads(),
            snapshot.clone(),
            snapshot.version(),
            identity.clone(),
            request.clone(),
            self,
        );
        self.before_hooks(&ctx, HookOp::Create, collection, &id, &mut values, None)
            .await?;
        Ok(Hooked {
            version: snapshot.version(),
            values,
        })
    }

    /// [`Self::create_in`], with the values of [`Self::hook_create_early`] when the
    /// hooks already ran on this write's schema version (on another, they run again:
    /// the values were checked against a collection that changed).
    async fn create_hooked_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        body: Map<String, Value>,
        preset: Record,
        hooked: Option<Hooked>,
    ) -> Result<(Record, bool), RecordError> {
        let values = match hooked {
            Some(hooked) if hooked.version == ctx.version => {
                self.check_relations(ctx, collection, &hooked.values)
                    .await?;
                hooked.values
            }
            _ => {
                let mut values = Self::create_values(collection, &body, preset)?;
                self.check_relations(ctx, collection, &values).await?;
                let id = id_of(&values);
                self.before_hooks(ctx, HookOp::Create, collection, &id, &mut values, None)
                    .await?;
                values
            }
        };
        let id = id_of(&values);
        if collection.auth.is_some() && body.get("id").is_some_and(|v| v.as_str() == Some(&id)) {
            self.refuse_id_of_another_identity(ctx, collection, &id)
                .await?;
        }
        let id = self.insert_row(ctx, collection, values).await?;
        let mut request = ctx.request.clone();
        request.body = body;
        // One statement reads the row back and evaluates the create rule and the view
        // rule on it.
        let create = self.rule_condition(
            RuleOp::Create,
            &ctx.identity,
            collection,
            &ctx.snapshot,
            &request,
        )?;
        let view = self.view_condition(&ctx.identity, collection, &ctx.snapshot, &request, true)?;
        let (record, [allowed, visible]) =
            self.read_back(ctx, collection, &id, [create, view]).await?;
        if !allowed {
            // The write fails, which rolls the insert back.
            return Err(one_error(
                "",
                "validation_create_rule",
                "The create rule does not allow this record.",
            ));
        }
        Ok((record, visible))
    }

    /// Create a record as `identity`; returns it as the caller may see it (`None`
    /// when the view rule hides it from them).
    ///
    /// Fails with `Validation` (per-field problems, a missing related record, or a
    /// failed create rule), `Forbidden` for a superusers-only collection, `Conflict`
    /// on a unique index, `Rejected` by a hook.
    pub async fn create(
        &self,
        collection: &str,
        identity: &Identity,
        request: &Request,
        body: Map<String, Value>,
    ) -> Result<Option<Value>, RecordError> {
        let planned = self
            .schema
            .snapshot()
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let preset = self.prepare_create(&planned, identity, &body).await?;
        let snapshot = self.schema.snapshot();
        let current = snapshot
            .get(&planned.name)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let fires = self.hooks.fires(&current.name, HookOp::Create);
        let hooked = if fires && !self.hooks.writes() {
            Some(
                self.hook_create_early(
                    &snapshot,
                    &current,
                    identity,
                    request,
                    &body,
                    preset.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        if self.direct_create_fits(&current) && (hooked.is_some() || !fires) {
            let values = match &hooked {
                Some(hooked) => hooked.values.clone(),
                None => Self::create_values(&current, &body, Record::new())?,
            };
            if let Some((record, visible)) = self
                .create_direct(&snapshot, &current, identity, request, body.clone(), values)
                .await?
            {
                return Ok(visible.then(|| super::read::shape(&current, &record, identity)));
            }
        }
        let (collection, record, visible) = self
            .write_on(
                &planned.name,
                identity.clone(),
                request.clone(),
                move |ctx, collection| {
                    Box::pin(async move {
                        let (record, visible) = ctx
                            .service
                            .create_hooked_in(ctx, &collection, body, preset, hooked)
                            .await?;
                        Ok((collection, record, visible))
                    })
                },
            )
            .await?;
        Ok(visible.then(|| super::read::shape(&collection, &record, identity)))
    }

    /// An account made by an external sign-in (OAuth2) on auth collection
    /// `collection`: created as an anonymous caller through the same path as any
    /// create (create rule with `@request.context = "oauth2"`, required fields,
    /// relations, protected fields, hooks) plus `preset` values only Basalt sets,
    /// with `link` written in the same write, so no account exists without its link.
    /// Returns the stored record.
    ///
    /// Fails like [`RecordService::create`].
    pub async fn create_linked(
        &self,
        collection: &str,
        request: &Request,
        body: Map<String, Value>,
        preset: Record,
        link: ExternalLink,
    ) -> Result<Record, RecordError> {
        let planned = self
            .schema
            .snapshot()
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let mut preset_all = self
            .prepare_create(&planned, &Identity::Anonymous, &body)
            .await?;
        preset_all.extend(preset);
        self.write_on(
            &planned.name,
            Identity::Anonymous,
            request.clone(),
            move |ctx, collection| {
                Box::pin(async move {
                    let (record, _) = ctx
                        .service
                        .create_in(ctx, &collection, body, preset_all)
                        .await?;
                    let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
                    ctx.service.link_in(ctx, &collection, id, &link).await?;
                    Ok(record)
                })
            },
        )
        .await
    }

    /// Link an external identity to the existing record `id` of `collection` (a
    /// system write).
    ///
    /// Fails with `NotFound` for an unknown collection, or when the statement fails.
    pub async fn link_external(
        &self,
        collection: &str,
        id: &str,
        link: ExternalLink,
    ) -> Result<(), RecordError> {
        let id = id.to_owned();
        self.system_write(collection, move |ctx, collection| {
            Box::pin(async move { ctx.service.link_in(ctx, &collection, &id, &link).await })
        })
        .await
    }

    /// Write `link` for record `id` inside the write, replacing a stale link of the
    /// same external identity.
    async fn link_in(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        link: &ExternalLink,
    ) -> Result<(), RecordError> {
        let table = col("_external_auths");
        let stale = Query::delete()
            .from_table(table.clone())
            .and_where(Expr::col(col("collection_id")).eq(collection.id.as_str()))
            .and_where(Expr::col(col("provider")).eq(link.provider.as_str()))
            .and_where(Expr::col(col("provider_id")).eq(link.provider_id.as_str()))
            .to_owned();
        let insert = Query::insert()
            .into_table(table)
            .columns(
                [
                    "id",
                    "collection_id",
                    "record_id",
                    "provider",
                    "provider_id",
                    "created",
                ]
                .map(col),
            )
            .values([
                super::random_key()[..15].to_lowercase().into(),
                collection.id.as_str().into(),
                id.into(),
                link.provider.as_str().into(),
                link.provider_id.as_str().into(),
                chrono::Utc::now().into(),
            ])
            .map_err(|e| RecordError::Db(sea_orm::DbErr::Custom(e.to_string())))?
            .to_owned();
        for statement in [
            self.statement(&stale, ctx.version),
            self.statement(&insert, ctx.version),
        ] {
            ctx.exec.execute(statement).await.map_err(RecordError::Db)?;
        }
        Ok(())
    }

    /// The checks and password work an update needs before its transaction: the plain
    /// values, the modifiers, and the new password's hash.
    pub(super) async fn prepare_update(
        &self,
        planned: &Collection,
        id: &str,
        identity: &Identity,
        body: &Map<String, Value>,
    ) -> Result<PreparedUpdate, RecordError> {
        identity.require_scope(&planned.name, Op::Update)?;
        Self::require_rule(identity, planned, &self.schema.snapshot(), RuleOp::Update)?;
        Self::refuse_protected(planned, body, identity, Mode::Update)?;
        let (plain, modifiers) = split_modifiers(planned, body)?;
        let new_password = match (
            planned.auth.is_some(),
            body.get("password").and_then(Value::as_str),
        ) {
            (true, Some(password)) => {
                validate(planned, &plain, Mode::Update).map_err(RecordError::Validation)?;
                if !identity.is_superuser() {
                    let current = self
                        .find_by_id(&planned.name, id)
                        .await?
                        .ok_or(RecordError::NotFound)?;
                    let hash = current
                        .get("password")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let old = body
                        .get("oldPassword")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if !crate::password::verify(old, hash).await {
                        return Err(one_error(
                            "oldPassword",
                            "validation_invalid_old_password",
                            "Missing or invalid old password.",
                        ));
                    }
                }
                Some(
                    crate::password::hash(password.to_owned())
                        .await
                        .map_err(|e| RecordError::Db(sea_orm::DbErr::Custom(e)))?,
                )
            }
            _ => None,
        };
        Ok(PreparedUpdate {
            plain,
            modifiers,
            new_password,
        })
    }

    /// Update inside the write; returns the stored record and whether the caller may
    /// view it.
    pub(super) async fn update_in_txn(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        body: Map<String, Value>,
        prepared: PreparedUpdate,
        if_match: Option<&str>,
    ) -> Result<(Record, bool), RecordError> {
        // Locked: modifiers read and write the row, and must not interleave.
        let existing = self.find_in_locking(ctx, collection, id, true).await?;
        let mut request = ctx.request.clone();
        request.body = body;
        request.existing = Some(existing.clone());
        let tag = super::etag(&existing);
        self.guard_existing(
            ctx,
            collection,
            RuleOp::Update,
            id,
            &request,
            &tag,
            if_match,
        )
        .await?;
        let mut values =
            validate(collection, &prepared.plain, Mode::Update).map_err(RecordError::Validation)?;
        let (results, increments) = apply_modifiers(&existing, prepared.modifiers);
        // The results are checked like any value: maxSelect, allowed values, min/max.
        let checked =
            validate(collection, &results, Mode::Update).map_err(RecordError::Validation)?;
        for (name, value) in checked {
            if !increments.iter().any(|(n, _)| *n == name) {
                values.insert(name, value);
            }
        }
        if let Some(hash) = prepared.new_password {
            values.insert("password".into(), Value::String(hash));
            // A new password signs every earlier session out.
            values.insert("tokenKey".into(), Value::String(super::random_key()));
        }
        self.check_relations(ctx, collection, &values).await?;
        self.before_hooks(
            ctx,
            HookOp::Update,
            collection,
            id,
            &mut values,
            Some(&existing),
        )
        .await?;
        self.update_in(ctx, collection, id, values, &increments)
            .await?;
        let view =
            self.view_condition(&ctx.identity, collection, &ctx.snapshot, &request, false)?;
        let (record, [visible]) = self.read_back(ctx, collection, id, [view]).await?;
        Ok((record, visible))
    }

    /// Update a record as `identity`; only the fields in `body` change. Returns the
    /// record as the caller may see it (`None` when the view rule hides it from them)
    /// and its entity tag.
    ///
    /// Fails with `NotFound` (missing, or hidden by the update rule), `Forbidden`,
    /// `Validation`, `Stale` when `if_match` names another version, `Conflict` on a
    /// unique index, or `Rejected` by a hook.
    pub async fn update(
        &self,
        collection: &str,
        id: &str,
        identity: &Identity,
        request: &Request,
        body: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<(Option<Value>, String), RecordError> {
        let planned = self
            .schema
            .snapshot()
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        let prepared = self.prepare_update(&planned, id, identity, &body).await?;
        let id = id.to_owned();
        let if_match = if_match.map(str::to_owned);
        let (collection, record, visible) = self
            .write_on(
                &planned.name,
                identity.clone(),
                request.clone(),
                move |ctx, collection| {
                    Box::pin(async move {
                        let (record, visible) = ctx
                            .service
                            .update_in_txn(
                                ctx,
                                &collection,
                                &id,
                                body,
                                prepared,
                                if_match.as_deref(),
                            )
                            .await?;
                        Ok((collection, record, visible))
                    })
                },
            )
            .await?;
        let tag = super::etag(&record);
        Ok((
            visible.then(|| super::read::shape(&collection, &record, identity)),
            tag,
        ))
    }

    /// Ids of `source` records whose relation `field` points at any of `ids`.
    async fn referencing(
        &self,
        ctx: &WriteCtx<'_>,
        source: &Collection,
        field: &crate::schema::Field,
        ids: &[String],
    ) -> Result<Vec<String>, RecordError> {
        let mut query = Query::select();
        query
            .column((col(BASE), col("id")))
            .from_as(col(&source.name), col(BASE));
        let column = Expr::col((col(BASE), col(&field.name)));
        if field.kind.is_multi() {
            let function = crate::db::json_elements(self.db.database_backend(), column);
            let elements = Query::select()
                .expr(Expr::val(1))
                .from_function(function, col("e"))
                .and_where(Expr::col((col("e"), col("value"))).is_in(ids.to_vec()))
                .to_owned();
            query.and_where(Expr::exists(elements));
        } else {
            query.and_where(column.is_in(ids.to_vec()));
        }
        let rows = ctx
            .exec
            .all(self.statement(&query, ctx.version))
            .await
            .map_err(RecordError::Db)?;
        rows.iter()
            .map(|row| row.get::<String>("id").map_err(RecordError::Db))
            .collect()
    }

    /// Delete `ids` of `collection` and deal with every relation pointing at them:
    /// `cascadeDelete` relations delete their records too (recursively), others lose
    /// the reference; a required reference without cascade refuses the delete. Every
    /// record deleted, cascaded ones included, passes the before-delete hooks.
    fn delete_cascading<'s>(
        &'s self,
        ctx: &'s WriteCtx<'s>,
        collection: &'s Collection,
        ids: Vec<String>,
        seen: &'s mut std::collections::HashSet<(String, String)>,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), RecordError>> + Send + 's>>
    {
        Box::pin(async move {
            const MAX_DEPTH: usize = 16;
            let ids: Vec<String> = ids
                .into_iter()
                .filter(|id| seen.insert((collection.id.clone(), id.clone())))
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            if depth > MAX_DEPTH {
                return Err(one_error(
                    "",
                    "validation_cascade_too_deep",
                    "Deleting this record would cascade too deep.",
                ));
            }
            if self.hooks.active() {
                for id in &ids {
                    let mut record = self.find_in(ctx, collection, id).await?;
                    self.before_hooks(ctx, HookOp::Delete, collection, id, &mut record, None)
                        .await?;
                }
            }
            let snapshot = Arc::clone(&ctx.snapshot);
            for source in snapshot.all() {
                for field in &source.fields {
                    let FieldKind::Relation {
                        collection_id,
                        cascade_delete,
                        ..
                    } = &field.kind
                    else {
                        continue;
                    };
                    if *collection_id != collection.id {
                        continue;
                    }
                    let referencing = self.referencing(ctx, source, field, &ids).await?;
                    if referencing.is_empty() {
                        continue;
                    }
                    if *cascade_delete {
                        self.delete_cascading(ctx, source, referencing, seen, depth + 1)
                            .await?;
                        continue;
                    }
                    if field.required {
                        return Err(one_error(
                            "",
                            "validation_required_reference",
                            &format!(
                                "`{}.{}` requires this record; delete or change those records first.",
                                source.name, field.name
                            ),
                        ));
                    }
                    for reference in referencing {
                        let mut values = Map::new();
                        if field.kind.is_multi() {
                            let record = self.find_in(ctx, source, &reference).await?;
                            let kept: Vec<Value> = record
                                .get(&field.name)
                                .and_then(Value::as_array)
                                .map(|items| {
                                    items
                                        .iter()
                                        .filter(|v| {
                                            !v.as_str().is_some_and(|s| ids.iter().any(|i| i == s))
                                        })
                                        .cloned()
                                        .collect()
                                })
                                .unwrap_or_default();
                            values.insert(field.name.clone(), Value::Array(kept));
                        } else {
                            values.insert(field.name.clone(), Value::String(String::new()));
                        }
                        self.update_in(ctx, source, &reference, values, &[]).await?;
                    }
                }
            }
            self.delete_in(ctx, collection, ids).await?;
            Ok(())
        })
    }

    /// Delete inside the write, with everything relations demand.
    pub(super) async fn delete_in_txn(
        &self,
        ctx: &WriteCtx<'_>,
        collection: &Collection,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), RecordError> {
        let existing = self.find_in(ctx, collection, id).await?;
        let tag = super::etag(&existing);
        let mut request = ctx.request.clone();
        request.existing = Some(existing);
        self.guard_existing(
            ctx,
            collection,
            RuleOp::Delete,
            id,
            &request,
            &tag,
            if_match,
        )
        .await?;
        let mut seen = std::collections::HashSet::new();
        self.delete_cascading(ctx, collection, vec![id.to_owned()], &mut seen, 0)
            .await
    }

    /// Delete a record as `identity`.
    ///
    /// Fails with `NotFound` (missing, or hidden by the delete rule), `Forbidden`,
    /// `Stale`, `Validation` when a required reference blocks it, or `Rejected` by a
    /// hook.
    pub async fn delete(
        &self,
        collection: &str,
        id: &str,
        identity: &Identity,
        request: &Request,
        if_match: Option<&str>,
    ) -> Result<(), RecordError> {
        let planned = self
            .schema
            .snapshot()
            .get(collection)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        identity.require_scope(&planned.name, Op::Delete)?;
        Self::require_rule(identity, &planned, &self.schema.snapshot(), RuleOp::Delete)?;
        let id = id.to_owned();
        let if_match = if_match.map(str::to_owned);
        self.write_on(
            &planned.name,
            identity.clone(),
            request.clone(),
            move |ctx, collection| {
                Box::pin(async move {
                    ctx.service
                        .delete_in_txn(ctx, &collection, &id, if_match.as_deref())
                        .await
                })
            },
        )
        .await
    }
}
