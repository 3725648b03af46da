//! The dynamic schema of one schema snapshot: per collection a record type, a page,
//! aggregates, `where`/`orderBy`/input types, queries, mutations and a
//! subscription. Every resolver calls `records`; none builds SQL or checks a rule.

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::{Error, ValidationMode, Value as Gql};
use serde_json::Value;

use super::limits::{DEFAULT_BACK_LIMIT, Limits, ListFields};
use super::loader::Key;
use super::lower::{self, readable};
use super::names;
use super::{Ctx, error};
use crate::records::read::ListQuery;
use crate::records::related::Aggregate;
use crate::schema::{Field as SchemaField, FieldKind, Snapshot};

/// A built schema and what the limits need to know of it.
#[derive(Clone)]
pub struct Built {
    pub snapshot: Arc<Snapshot>,
    pub schema: Schema,
    /// The same schema with async-graphql's `Fast` validation, for operations whose
    /// text already passed the strict one here (see `GraphqlService::prepare`).
    pub trusted: Schema,
    /// Operations (name and text) that passed the strict validation of `schema`.
    pub validated: Arc<super::Validated>,
    pub lists: Arc<ListFields>,
}

/// One page of records, as the `…Page` types resolve it.
struct PageValue(crate::records::read::Page);

/// A subscription's event.
struct EventValue {
    action: &'static str,
    record: Value,
}

/// Aggregates and which of `[sum, avg, min, max]` a `…Numbers` object shows.
struct NumbersValue(Arc<Aggregate>, usize);

fn record_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Value, Error> {
    ctx.parent_value.try_downcast_ref::<Value>()
}

fn str_arg(ctx: &ResolverContext<'_>, name: &str) -> Option<String> {
    ctx.args
        .get(name)
        .and_then(|v| v.string().ok().map(str::to_owned))
}

fn u64_arg(ctx: &ResolverContext<'_>, name: &str) -> Option<u64> {
    ctx.args.get(name).and_then(|v| v.u64().ok())
}

fn raw_arg(ctx: &ResolverContext<'_>, name: &str) -> Gql {
    ctx.args
        .get(name)
        .map(|v| v.as_value().clone())
        .unwrap_or(Gql::Null)
}

fn bad_input(message: String) -> Error {
    super::problem_error(crate::errors::Problem::new(
        crate::errors::Code::InvalidFilter,
        message,
    ))
}

/// The scalar (or enum) type of a field's values, and whether it is a list.
fn value_type(field: &SchemaField, enums: &dyn Fn(&str) -> Option<String>) -> (String, bool) {
    let multi = field.kind.is_multi();
    let name = match &field.kind {
        FieldKind::Number { .. } => "Float".to_owned(),
        FieldKind::Bool => "Boolean".to_owned(),
        FieldKind::Date { .. } | FieldKind::Autodate { .. } => "DateTime".to_owned(),
        FieldKind::Json { .. } => "JSON".to_owned(),
        FieldKind::Select { .. } => enums(&field.name).unwrap_or_else(|| "String".to_owned()),
        FieldKind::Text {
            primary_key: true, ..
        } => "ID".to_owned(),
        _ => "String".to_owned(),
    };
    (name, multi)
}

/// The `…Filter` input for a field's values, if it can be filtered.
fn filter_type(field: &SchemaField) -> Option<&'static str> {
    Some(match &field.kind {
        FieldKind::Number { .. } => "FloatFilter",
        FieldKind::Bool => "BooleanFilter",
        FieldKind::Date { .. } | FieldKind::Autodate { .. } => "DateTimeFilter",
        FieldKind::Json { .. } | FieldKind::Password { .. } | FieldKind::Relation { .. } => {
            return None;
        }
        _ => "StringFilter",
    })
}

/// Whether a create must give the field.
fn required_on_create(field: &SchemaField) -> bool {
    let generated = match &field.kind {
        FieldKind::Text {
            autogenerate_pattern,
            primary_key,
            ..
        } => !autogenerate_pattern.is_empty() || *primary_key,
        FieldKind::Bool | FieldKind::Autodate { .. } => true,
        _ => false,
    };
    field.required && field.default.is_none() && !generated
}

fn shared_types(
    mut builder: async_graphql::dynamic::SchemaBuilder,
) -> async_graphql::dynamic::SchemaBuilder {
    builder = builder
        .register(Scalar::new("JSON").description("Any JSON value."))
        .register(
            Scalar::new("DateTime")
                .description("A UTC date and time, RFC 3339 (`2026-01-02T03:04:05.678Z`).")
                .specified_by_url("https://datatracker.ietf.org/doc/html/rfc3339")
                .validator(|v| match v {
                    Gql::String(s) => crate::records::validate::parse_date(s).is_some(),
                    _ => false,
                }),
        )
        .register(Enum::new("OrderDirection").item("ASC").item("DESC"))
        .register(
            Enum::new("RecordAction")
                .item("CREATE")
                .item("UPDATE")
                .item("DELETE"),
        );
    for (name, scalar, like) in [
        ("StringFilter", "String", true),
        ("FloatFilter", "Float", false),
        ("DateTimeFilter", "DateTime", false),
    ] {
        let mut input = InputObject::new(name);
        for op in ["_eq", "_neq", "_gt", "_gte", "_lt", "_lte"] {
            input = input.field(InputValue::new(op, TypeRef::named(scalar)));
        }
        input = input
            .field(InputValue::new("_in", TypeRef::named_nn_list(scalar)))
            .field(InputValue::new("_nin", TypeRef::named_nn_list(scalar)));
        if like {
            input = input
                .field(
                    InputValue::new("_like", TypeRef::named(scalar)).description(
                        "Contains, case-insensitive; `%` and `_` are wildcards (with a `%`, the \
                         pattern must match the whole value).",
                    ),
                )
                .field(InputValue::new("_ilike", TypeRef::named(scalar)));
        }
        input = input.field(InputValue::new(
            "_is_null",
            TypeRef::named(TypeRef::BOOLEAN),
        ));
        builder = builder.register(input);
    }
    builder.register(
        InputObject::new("BooleanFilter")
            .field(InputValue::new("_eq", TypeRef::named(TypeRef::BOOLEAN)))
            .field(InputValue::new("_neq", TypeRef::named(TypeRef::BOOLEAN)))
            .field(InputValue::new(
                "_is_null",
                TypeRef::named(TypeRef::BOOLEAN),
            )),
    )
}

/// Build the schema of `snapshot` for superusers (hidden fields included) or for
/// everyone else.
///
/// Fails when async-graphql refuses the schema (a bug: names are checked here).
pub fn build(snapshot: Arc<Snapshot>, superuser: bool, limits: &Limits) -> Result<Built, String> {
    let (schema, lists) = schema_of(&snapshot, superuser, limits, ValidationMode::Strict)?;
    let (trusted, _) = schema_of(&snapshot, superuser, limits, ValidationMode::Fast)?;
    Ok(Built {
        snapshot,
        schema,
        trusted,
        validated: Arc::default(),
        lists: Arc::new(lists),
    })
}

fn schema_of(
    snapshot: &Arc<Snapshot>,
    superuser: bool,
    limits: &Limits,
    mode: ValidationMode,
) -> Result<(Schema, ListFields), String> {
    let snapshot = Arc::clone(snapshot);
    let assigned = names::assign(&snapshot);
    let exposed = |id: &str| {
        assigned
            .iter()
            .find(|(c, _)| c.id == id)
            .map(|(_, n)| n.clone())
    };
    let mut lists = ListFields::default();
    let mut query = Object::new("Query").field(Field::new(
        "schemaVersion",
        TypeRef::named_nn(TypeRef::INT),
        |ctx| {
            FieldFuture::new(async move {
                let ctx = ctx.ctx.data::<Ctx>()?;
                Ok(Some(Gql::from(ctx.snapshot.version())))
            })
        },
    ));
    let mut mutation = Object::new("Mutation");
    let mut subscription = async_graphql::dynamic::Subscription::new("Subscription");
    let mut batch_op = InputObject::new("BatchOperation")
        .oneof()
        .description("One write of a batch: exactly one field set.");
    let mut builder = Schema::build(
        "Query",
        (!assigned.is_empty()).then_some("Mutation"),
        (!assigned.is_empty()).then_some("Subscription"),
    );
    builder = shared_types(builder);
    builder = builder
        .register(
            InputObject::new("BatchDelete").field(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))),
        )
        .register(
            Object::new("BatchResult")
                .description("One write's outcome: its HTTP-like status and the record (null when deleted or hidden by the view rule).")
                .field(Field::new("status", TypeRef::named_nn(TypeRef::INT), |ctx| {
                    let status = ctx
                        .parent_value
                        .downcast_ref::<(u16, Value)>()
                        .map(|(s, _)| Gql::from(*s));
                    FieldFuture::from_value(status)
                }))
                .field(Field::new("record", TypeRef::named("JSON"), |ctx| {
                    let record = ctx
                        .parent_value
                        .downcast_ref::<(u16, Value)>()
                        .map(|(_, r)| lower::json_scalar(r));
                    FieldFuture::from_value(record)
                })),
        );

    for (c, n) in &assigned {
        for (field, enum_name) in &n.enums {
            if let Some(FieldKind::Select { values, .. }) = c.field(field).map(|f| &f.kind) {
                builder = builder.register(Enum::new(enum_name).items(values.iter().cloned()));
            }
        }
        let enums = |f: &str| n.enum_of(f);

        // The record type.
        let mut record = Object::new(&n.record).description(format!("A record of `{}`.", c.name));
        let mut filter = InputObject::new(&n.filter)
            .description(format!(
                "Conditions on `{}` records; all must hold.",
                c.name
            ))
            .field(InputValue::new("_and", TypeRef::named_nn_list(&n.filter)))
            .field(InputValue::new("_or", TypeRef::named_nn_list(&n.filter)))
            .field(InputValue::new("_not", TypeRef::named(&n.filter)));
        let mut order = InputObject::new(&n.order);
        let mut create = InputObject::new(&n.create_input);
        let mut update = InputObject::new(&n.update_input);
        let mut numbers: Vec<String> = Vec::new();
        let field_names: std::collections::HashSet<&str> =
            c.fields.iter().map(|f| f.name.as_str()).collect();
        for field in c.fields.iter().filter(|f| readable(f, superuser)) {
            let name = field.name.clone();
            let kind = field.kind.clone();
            if let FieldKind::Relation { collection_id, .. } = &field.kind {
                let multi = field.kind.is_multi();
                // The ids, under `{name}Id`/`{name}Ids` unless a field has that name.
                let id_field = format!("{name}{}", if multi { "Ids" } else { "Id" });
                if !field_names.contains(id_field.as_str()) {
                    let key = name.clone();
                    let ty = if multi {
                        TypeRef::named_nn_list_nn(TypeRef::STRING)
                    } else {
                        TypeRef::named(TypeRef::STRING)
                    };
                    record = record.field(Field::new(id_field, ty, move |ctx| {
                        let value =
                            record_of(&ctx)
                                .ok()
                                .and_then(|r| r.get(&key))
                                .map(|v| match v {
                                    Value::String(s) if s.is_empty() => Gql::Null,
                                    other => lower::json_scalar(other),
                                });
                        FieldFuture::from_value(value)
                    }));
                }
                if let Some(target) = exposed(collection_id) {
                    if multi {
                        lists.multi.insert(name.clone());
                    }
                    let ty = if multi {
                        TypeRef::named_nn_list_nn(&target.record)
                    } else {
                        TypeRef::named(&target.record)
                    };
                    let target_name = snapshot
                        .by_id(collection_id)
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    let key = name.clone();
                    record = record.field(Field::new(name.clone(), ty, move |ctx| {
                        let key = key.clone();
                        let target_name = target_name.clone();
                        FieldFuture::new(async move {
                            let parent = record_of(&ctx)?;
                            let ids: Vec<String> = match parent.get(&key) {
                                Some(Value::String(id)) if !id.is_empty() => vec![id.clone()],
                                Some(Value::Array(ids)) => ids
                                    .iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect(),
                                _ => Vec::new(),
                            };
                            let data = ctx.ctx.data::<Ctx>()?;
                            let found = data
                                .loader
                                .load(
                                    data,
                                    Key::Ids {
                                        collection: target_name,
                                    },
                                    &ids,
                                    None,
                                )
                                .await?;
                            if multi {
                                Ok(Some(FieldValue::list(
                                    found.into_iter().map(FieldValue::owned_any),
                                )))
                            } else {
                                Ok(found.into_iter().next().map(FieldValue::owned_any))
                            }
                        })
                    }));
                    filter =
                        filter.field(InputValue::new(&field.name, TypeRef::named(&target.filter)));
                    if !multi {
                        order = order.field(InputValue::new(
                            &field.name,
                            TypeRef::named("OrderDirection"),
                        ));
                    }
                }
            } else {
                let (ty, multi) = value_type(field, &enums);
                let nullable = field.nullable
                    || matches!(
                        field.kind,
                        FieldKind::Date { .. }
                            | FieldKind::Autodate { .. }
                            | FieldKind::Json { .. }
                            | FieldKind::Select { .. }
                    );
                let out_ty = if multi {
                    TypeRef::named_nn_list_nn(&ty)
                } else if nullable && field.name != "id" {
                    TypeRef::named(&ty)
                } else {
                    TypeRef::named_nn(&ty)
                };
                let key = name.clone();
                record = record.field(Field::new(name.clone(), out_ty, move |ctx| {
                    let value = record_of(&ctx)
                        .ok()
                        .map(|r| lower::output(&kind, r.get(&key).unwrap_or(&Value::Null)));
                    FieldFuture::from_value(value)
                }));
                if let Some(filter_ty) = filter_type(field) {
                    filter = filter.field(InputValue::new(&field.name, TypeRef::named(filter_ty)));
                }
                if !multi && !matches!(field.kind, FieldKind::Json { .. }) {
                    order = order.field(InputValue::new(
                        &field.name,
                        TypeRef::named("OrderDirection"),
                    ));
                }
                if matches!(field.kind, FieldKind::Number { .. }) {
                    numbers.push(field.name.clone());
                }
            }
        }
        for system in ["collectionId", "collectionName"] {
            if !field_names.contains(system) {
                record = record.field(Field::new(
                    system,
                    TypeRef::named_nn(TypeRef::STRING),
                    move |ctx| {
                        FieldFuture::from_value(
                            record_of(&ctx)
                                .ok()
                                .and_then(|r| r.get(system))
                                .map(lower::json_scalar),
                        )
                    },
                ));
            }
        }
        // Inputs: every field a client may write.
        for field in c.fields.iter().filter(|f| !f.hidden || superuser) {
            let writable = match &field.kind {
                FieldKind::Autodate { .. } => false,
                FieldKind::Password { .. } => false,
                _ => field.name != "tokenKey",
            };
            if !writable {
                continue;
            }
            let (ty, multi) = match &field.kind {
                FieldKind::Relation { .. } => ("String".to_owned(), field.kind.is_multi()),
                FieldKind::Text {
                    primary_key: true, ..
                } => ("String".to_owned(), false),
                _ => value_type(field, &enums),
            };
            let (create_ty, update_ty) = if multi {
                (TypeRef::named_nn_list(&ty), TypeRef::named_nn_list(&ty))
            } else if required_on_create(field) {
                (TypeRef::named_nn(&ty), TypeRef::named(&ty))
            } else {
                (TypeRef::named(&ty), TypeRef::named(&ty))
            };
            create = create.field(InputValue::new(&field.name, create_ty));
            if field.name != "id" {
                update = update.field(InputValue::new(&field.name, update_ty));
            }
        }
        if c.auth.is_some() {
            for extra in ["password", "passwordConfirm", "oldPassword"] {
                if extra != "oldPassword" {
                    create = create.field(InputValue::new(extra, TypeRef::named(TypeRef::STRING)));
                }
                update = update.field(InputValue::new(extra, TypeRef::named(TypeRef::STRING)));
            }
        }
        // Back-relations: records of other collections pointing here.
        for (source, source_names) in &assigned {
            for via in source.fields.iter().filter(|f| readable(f, superuser)) {
                let FieldKind::Relation { collection_id, .. } = &via.kind else {
                    continue;
                };
                if *collection_id != c.id {
                    continue;
                }
                let key = format!("{}_via_{}", source.name, via.name);
                if field_names.contains(key.as_str()) {
                    continue;
                }
                filter = filter.field(InputValue::new(&key, TypeRef::named(&source_names.filter)));
                let source_name = source.name.clone();
                let via_name = via.name.clone();
                let source_snapshot = Arc::clone(&snapshot);
                let source_arc = Arc::clone(source);
                record = record.field(
                    Field::new(
                        key,
                        TypeRef::named_nn_list_nn(&source_names.record),
                        move |ctx| {
                            let source_name = source_name.clone();
                            let via_name = via_name.clone();
                            let snapshot = Arc::clone(&source_snapshot);
                            let source = Arc::clone(&source_arc);
                            FieldFuture::new(async move {
                                let parent = record_of(&ctx)?;
                                let id = parent
                                    .get("id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned();
                                let condition =
                                    lower::lower_where(&snapshot, &source, &raw_arg(&ctx, "where"))
                                        .map_err(bad_input)?;
                                let sort = lower::lower_order(&raw_arg(&ctx, "orderBy"))
                                    .map_err(bad_input)?;
                                let limit = u64_arg(&ctx, "limit").unwrap_or(DEFAULT_BACK_LIMIT);
                                let data = ctx.ctx.data::<Ctx>()?;
                                let found = data
                                    .loader
                                    .load(
                                        data,
                                        Key::Back {
                                            source: source_name,
                                            via: via_name,
                                            condition: format!("{condition:?}"),
                                            sort,
                                            limit,
                                        },
                                        &[id],
                                        condition.as_ref(),
                                    )
                                    .await?;
                                Ok(Some(FieldValue::list(
                                    found.into_iter().map(FieldValue::owned_any),
                                )))
                            })
                        },
                    )
                    .argument(InputValue::new(
                        "where",
                        TypeRef::named(&source_names.filter),
                    ))
                    .argument(InputValue::new(
                        "orderBy",
                        TypeRef::named_nn_list(&source_names.order),
                    ))
                    .argument(
                        InputValue::new("limit", TypeRef::named(TypeRef::INT))
                            .default_value(DEFAULT_BACK_LIMIT as i64),
                    ),
                );
            }
        }
        builder = builder
            .register(record)
            .register(filter)
            .register(order)
            .register(create)
            .register(update);

        // The page.
        builder = builder.register(
            Object::new(&n.page)
                .field(Field::new(
                    "items",
                    TypeRef::named_nn_list_nn(&n.record),
                    |ctx| {
                        let items = ctx.parent_value.downcast_ref::<PageValue>().map(|p| {
                            FieldValue::list(p.0.items.iter().cloned().map(FieldValue::owned_any))
                        });
                        FieldFuture::Value(items)
                    },
                ))
                .field(page_number("page", |p| p.page as i64))
                .field(page_number("perPage", |p| p.per_page as i64))
                .field(page_number("totalItems", |p| p.total_items))
                .field(page_number("totalPages", |p| p.total_pages)),
        );

        // Aggregates.
        let mut aggregate = Object::new(&n.aggregate_type).field(Field::new(
            "count",
            TypeRef::named_nn(TypeRef::INT),
            |ctx| {
                FieldFuture::from_value(
                    ctx.parent_value
                        .downcast_ref::<Arc<Aggregate>>()
                        .map(|a| Gql::from(a.count)),
                )
            },
        ));
        if !numbers.is_empty() {
            let mut object = Object::new(&n.numbers);
            for number in &numbers {
                let key = number.clone();
                object = object.field(Field::new(
                    number.clone(),
                    TypeRef::named(TypeRef::FLOAT),
                    move |ctx| {
                        let value = ctx.parent_value.downcast_ref::<NumbersValue>().and_then(
                            |NumbersValue(a, i)| {
                                a.numbers
                                    .get(&key)
                                    .and_then(|v| v.get(*i).copied().flatten())
                                    .map(Gql::from)
                            },
                        );
                        FieldFuture::from_value(value)
                    },
                ));
            }
            builder = builder.register(object);
            for (i, stat) in ["sum", "avg", "min", "max"].into_iter().enumerate() {
                aggregate = aggregate.field(Field::new(
                    stat,
                    TypeRef::named_nn(&n.numbers),
                    move |ctx| {
                        FieldFuture::Value(
                            ctx.parent_value
                                .downcast_ref::<Arc<Aggregate>>()
                                .map(|a| FieldValue::owned_any(NumbersValue(Arc::clone(a), i))),
                        )
                    },
                ));
            }
        }
        builder = builder.register(aggregate);

        // Subscription events.
        builder = builder.register(
            Object::new(&n.event)
                .field(Field::new(
                    "action",
                    TypeRef::named_nn("RecordAction"),
                    |ctx| {
                        FieldFuture::from_value(
                            ctx.parent_value
                                .downcast_ref::<EventValue>()
                                .map(|e| lower::enum_value(e.action)),
                        )
                    },
                ))
                .field(Field::new("record", TypeRef::named_nn(&n.record), |ctx| {
                    FieldFuture::Value(
                        ctx.parent_value
                            .downcast_ref::<EventValue>()
                            .map(|e| FieldValue::owned_any(e.record.clone())),
                    )
                })),
        );

        // Root fields.
        lists.paged.insert(n.list.clone());
        let name = c.name.clone();
        let where_snapshot = Arc::clone(&snapshot);
        let where_collection = Arc::clone(c);
        query = query.field(
            Field::new(&n.list, TypeRef::named_nn(&n.page), move |ctx| {
                let name = name.clone();
                let snapshot = Arc::clone(&where_snapshot);
                let collection = Arc::clone(&where_collection);
                FieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let condition =
                        lower::lower_where(&snapshot, &collection, &raw_arg(&ctx, "where"))
                            .map_err(bad_input)?;
                    let query = ListQuery {
                        page: u64_arg(&ctx, "page"),
                        per_page: u64_arg(&ctx, "perPage"),
                        sort: lower::lower_order(&raw_arg(&ctx, "orderBy")).map_err(bad_input)?,
                        filter: None,
                        skip_total: ctx
                            .args
                            .get("skipTotal")
                            .and_then(|v| v.boolean().ok())
                            .unwrap_or(false),
                        expand: None,
                        condition,
                    };
                    let page = data
                        .records
                        .list(&name, &data.identity, &data.request("GET"), &query)
                        .await
                        .map_err(error)?;
                    Ok(Some(FieldValue::owned_any(PageValue(page))))
                })
            })
            .argument(InputValue::new("where", TypeRef::named(&n.filter)))
            .argument(InputValue::new("orderBy", TypeRef::named_nn_list(&n.order)))
            .argument(InputValue::new("page", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("perPage", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new(
                "skipTotal",
                TypeRef::named(TypeRef::BOOLEAN),
            )),
        );
        let name = c.name.clone();
        query = query.field(
            Field::new(&n.single, TypeRef::named(&n.record), move |ctx| {
                let name = name.clone();
                FieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let id = str_arg(&ctx, "id").unwrap_or_default();
                    match data
                        .records
                        .view_untagged(&name, &id, &data.identity, &data.request("GET"))
                        .await
                    {
                        Ok(record) => Ok(Some(FieldValue::owned_any(record))),
                        // Hidden by the view rule, or absent: the same null.
                        Err(crate::records::RecordError::NotFound) => Ok(None),
                        Err(other) => Err(error(other)),
                    }
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))),
        );
        let name = c.name.clone();
        let where_snapshot = Arc::clone(&snapshot);
        let where_collection = Arc::clone(c);
        let aggregate_numbers = numbers.clone();
        query = query.field(
            Field::new(
                &n.aggregate,
                TypeRef::named_nn(&n.aggregate_type),
                move |ctx| {
                    let name = name.clone();
                    let snapshot = Arc::clone(&where_snapshot);
                    let collection = Arc::clone(&where_collection);
                    let numbers = aggregate_numbers.clone();
                    FieldFuture::new(async move {
                        let data = ctx.ctx.data::<Ctx>()?;
                        let condition =
                            lower::lower_where(&snapshot, &collection, &raw_arg(&ctx, "where"))
                                .map_err(bad_input)?;
                        // Only the number fields asked for are computed.
                        let asked: Vec<String> = numbers
                            .iter()
                            .filter(|f| {
                                let ahead = ctx.look_ahead();
                                ["sum", "avg", "min", "max"]
                                    .iter()
                                    .any(|stat| ahead.field(stat).field(f).exists())
                            })
                            .cloned()
                            .collect();
                        let aggregate = data
                            .records
                            .aggregate(
                                &name,
                                &data.identity,
                                &data.request("GET"),
                                condition.as_ref(),
                                &asked,
                            )
                            .await
                            .map_err(error)?;
                        Ok(Some(FieldValue::owned_any(Arc::new(aggregate))))
                    })
                },
            )
            .argument(InputValue::new("where", TypeRef::named(&n.filter))),
        );

        // Mutations.
        let name = c.name.clone();
        mutation = mutation.field(
            Field::new(&n.create, TypeRef::named(&n.record), move |ctx| {
                let name = name.clone();
                FieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let values = lower::values(&raw_arg(&ctx, "input"));
                    let record = data
                        .records
                        .create(&name, &data.identity, &data.request("POST"), values)
                        .await
                        .map_err(error)?;
                    Ok(record.map(FieldValue::owned_any))
                })
            })
            .argument(InputValue::new("input", TypeRef::named_nn(&n.create_input))),
        );
        let name = c.name.clone();
        mutation = mutation.field(
            Field::new(&n.update, TypeRef::named(&n.record), move |ctx| {
                let name = name.clone();
                FieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let id = str_arg(&ctx, "id").unwrap_or_default();
                    let values = lower::values(&raw_arg(&ctx, "input"));
                    let if_match = str_arg(&ctx, "ifMatch");
                    let (record, _) = data
                        .records
                        .update(
                            &name,
                            &id,
                            &data.identity,
                            &data.request("PATCH"),
                            values,
                            if_match.as_deref(),
                        )
                        .await
                        .map_err(error)?;
                    Ok(record.map(FieldValue::owned_any))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("input", TypeRef::named_nn(&n.update_input)))
            .argument(InputValue::new("ifMatch", TypeRef::named(TypeRef::STRING))),
        );
        let name = c.name.clone();
        mutation = mutation.field(
            Field::new(&n.delete, TypeRef::named_nn(TypeRef::BOOLEAN), move |ctx| {
                let name = name.clone();
                FieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let id = str_arg(&ctx, "id").unwrap_or_default();
                    let if_match = str_arg(&ctx, "ifMatch");
                    data.records
                        .delete(
                            &name,
                            &id,
                            &data.identity,
                            &data.request("DELETE"),
                            if_match.as_deref(),
                        )
                        .await
                        .map_err(error)?;
                    Ok(Some(Gql::from(true)))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("ifMatch", TypeRef::named(TypeRef::STRING))),
        );
        builder = builder.register(
            InputObject::new(&n.batch_update)
                .field(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
                .field(InputValue::new("input", TypeRef::named_nn(&n.update_input))),
        );
        batch_op = batch_op
            .field(InputValue::new(&n.create, TypeRef::named(&n.create_input)))
            .field(InputValue::new(&n.update, TypeRef::named(&n.batch_update)))
            .field(InputValue::new(&n.delete, TypeRef::named("BatchDelete")));

        // The subscription.
        let name = c.name.clone();
        let where_snapshot = Arc::clone(&snapshot);
        let where_collection = Arc::clone(c);
        subscription = subscription.field(
            SubscriptionField::new(&n.list, TypeRef::named_nn(&n.event), move |ctx| {
                let name = name.clone();
                let snapshot = Arc::clone(&where_snapshot);
                let collection = Arc::clone(&where_collection);
                SubscriptionFieldFuture::new(async move {
                    let data = ctx.ctx.data::<Ctx>()?;
                    let condition =
                        lower::lower_where(&snapshot, &collection, &raw_arg(&ctx, "where"))
                            .map_err(bad_input)?;
                    let stream = super::subscribe::events(data, name, condition)?;
                    Ok(futures_util::StreamExt::map(stream, |event| {
                        event.map(|(action, record)| {
                            FieldValue::owned_any(EventValue { action, record })
                        })
                    }))
                })
            })
            .argument(InputValue::new("where", TypeRef::named(&n.filter))),
        );
    }

    // The batch: creates, updates and deletes of any collections, in one transaction.
    if !assigned.is_empty() {
        let routes: Vec<(String, String, String, String)> = assigned
            .iter()
            .map(|(c, n)| {
                (
                    c.name.clone(),
                    n.create.clone(),
                    n.update.clone(),
                    n.delete.clone(),
                )
            })
            .collect();
        let routes = Arc::new(routes);
        mutation = mutation.field(
            Field::new(
                "batch",
                TypeRef::named_nn_list_nn("BatchResult"),
                move |ctx| {
                    let routes = Arc::clone(&routes);
                    FieldFuture::new(async move {
                        let data = ctx.ctx.data::<Ctx>()?;
                        let operations = raw_arg(&ctx, "operations");
                        let requests =
                            super::batch::requests(&routes, &operations).map_err(bad_input)?;
                        let results = super::batch::run(data, requests).await?;
                        Ok(Some(FieldValue::list(
                            results.into_iter().map(FieldValue::owned_any),
                        )))
                    })
                },
            )
            .description("Run several writes in one transaction: all take effect, or none.")
            .argument(InputValue::new(
                "operations",
                TypeRef::named_nn_list_nn("BatchOperation"),
            )),
        );
        builder = builder
            .register(batch_op)
            .register(mutation)
            .register(subscription);
    }
    // Depth, cost and aliases are checked before execution (`limits`), with
    // introspection exempt; the parser's own recursion guard stays.
    builder = builder
        .register(query)
        .limit_recursive_depth(64)
        .validation_mode(mode);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    let schema = builder.finish().map_err(|e| e.to_string())?;
    Ok((schema, lists))
}

fn page_number(name: &str, get: fn(&crate::records::read::Page) -> i64) -> Field {
    Field::new(name, TypeRef::named_nn(TypeRef::INT), move |ctx| {
        FieldFuture::from_value(
            ctx.parent_value
                .downcast_ref::<PageValue>()
                .map(|p| Gql::from(get(&p.0))),
        )
    })
}
