//! `expand`: related records inlined under `expand`, through relations and
//! back-relations, up to six levels. Each level costs one query per relation for the
//! whole page, never one per record, and every expanded record must pass its own
//! collection's view rule for the caller.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Map, Value};

use super::read::shape;
use super::{Record, RecordError, RecordService};
use crate::filter::FilterError;
use crate::filter::compile::{BASE, Request};
use crate::identity::Identity;
use crate::schema::{Collection, FieldKind, Snapshot};

/// Deepest expand accepted.
pub const MAX_EXPAND_DEPTH: usize = 6;

/// Expand paths as a tree: `author,comments_via_post.user` → {author: {}, comments_via_post: {user: {}}}.
#[derive(Debug, Default)]
pub struct Tree(BTreeMap<String, Tree>);

/// Parse the `expand` parameter.
///
/// Fails on an empty segment or a path deeper than [`MAX_EXPAND_DEPTH`].
pub fn parse(text: &str) -> Result<Tree, FilterError> {
    let mut tree = Tree::default();
    for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > MAX_EXPAND_DEPTH {
            return Err(FilterError::new(
                0,
                format!("`{path}` expands deeper than {MAX_EXPAND_DEPTH} levels"),
            ));
        }
        let mut node = &mut tree;
        for segment in segments {
            if segment.is_empty() {
                return Err(FilterError::new(0, format!("`{path}` has an empty part")));
            }
            node = node.0.entry(segment.to_owned()).or_default();
        }
    }
    Ok(tree)
}

type Shaped<'a> = Pin<Box<dyn Future<Output = Result<Vec<Value>, RecordError>> + Send + 'a>>;

impl RecordService {
    /// Shape `records` of `collection` for the caller, with `tree` expanded into each.
    pub(crate) fn expand_records<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        collection: &'a Collection,
        records: Vec<Record>,
        tree: &'a Tree,
        identity: &'a Identity,
        request: &'a Request,
    ) -> Shaped<'a> {
        Box::pin(async move {
            let mut shaped: Vec<Value> = records
                .iter()
                .map(|r| shape(collection, r, identity))
                .collect();
            for (key, subtree) in &tree.0 {
                let (target, children, links) = self
                    .load_related(snapshot, collection, key, &records, identity, request)
                    .await?;
                let child_ids: Vec<String> = children
                    .iter()
                    .map(|c| {
                        c.get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect();
                let raw_children = children.clone();
                let child_values = self
                    .expand_records(snapshot, target, children, subtree, identity, request)
                    .await?;
                let by_id: BTreeMap<&str, &Value> = child_ids
                    .iter()
                    .map(String::as_str)
                    .zip(child_values.iter())
                    .collect();
                for (parent, value) in records.iter().zip(shaped.iter_mut()) {
                    let parent_id = parent.get("id").and_then(Value::as_str).unwrap_or_default();
                    let entry = match &links {
                        Links::Single(field) => parent
                            .get(field)
                            .and_then(Value::as_str)
                            .and_then(|id| by_id.get(id))
                            .map(|v| (*v).clone()),
                        Links::Many(field) => {
                            let list: Vec<Value> = parent
                                .get(field)
                                .and_then(Value::as_array)
                                .map(|ids| {
                                    ids.iter()
                                        .filter_map(|id| {
                                            id.as_str()
                                                .and_then(|id| by_id.get(id))
                                                .map(|v| (*v).clone())
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            (!list.is_empty()).then_some(Value::Array(list))
                        }
                        Links::Back { via } => {
                            let list: Vec<Value> = raw_children
                                .iter()
                                .zip(child_values.iter())
                                .filter(|(raw, _)| match raw.get(via) {
                                    Some(Value::String(id)) => id == parent_id,
                                    Some(Value::Array(ids)) => {
                                        ids.iter().any(|v| v.as_str() == Some(parent_id))
                                    }
                                    _ => false,
                                })
                                .map(|(_, v)| v.clone())
                                .collect();
                            (!list.is_empty()).then_some(Value::Array(list))
                        }
                    };
                    if let (Some(entry), Value::Object(object)) = (entry, value) {
                        let expand = object
                            .entry("expand")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(expand) = expand {
                            expand.insert(key.clone(), entry);
                        }
                    }
                }
            }
            Ok(shaped)
        })
    }

    /// The records `key` reaches from `parents`, that the caller may view.
    async fn load_related<'a>(
        &self,
        snapshot: &'a Snapshot,
        collection: &Collection,
        key: &str,
        parents: &[Record],
        identity: &Identity,
        request: &Request,
    ) -> Result<(&'a Collection, Vec<Record>, Links), RecordError> {
        let unknown = || {
            RecordError::Expand(FilterError::new(
                0,
                format!("cannot expand `{key}` of `{}`", collection.name),
            ))
        };
        let (target, links, condition): (&Collection, Links, _) = if let Some(field) =
            collection.field(key)
        {
            let FieldKind::Relation { collection_id, .. } = &field.kind else {
                return Err(unknown());
            };
            if field.hidden && !identity.is_superuser() {
                return Err(unknown());
            }
            let target = snapshot
                .by_id(collection_id)
                .map(AsRef::as_ref)
                .ok_or_else(unknown)?;
            let mut ids: Vec<String> = Vec::new();
            for parent in parents {
                match parent.get(key) {
                    Some(Value::String(id)) if !id.is_empty() => ids.push(id.clone()),
                    Some(Value::Array(items)) => {
                        ids.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                    }
                    _ => {}
                }
            }
            ids.sort();
            ids.dedup();
            let links = if field.kind.is_multi() {
                Links::Many(key.to_owned())
            } else {
                Links::Single(key.to_owned())
            };
            (
                target,
                links,
                Expr::col((Alias::new(BASE), Alias::new("id"))).is_in(ids),
            )
        } else {
            let (name, via) = key.split_once("_via_").ok_or_else(unknown)?;
            let source = snapshot.get(name).map(AsRef::as_ref).ok_or_else(unknown)?;
            let via_field = source
                .field(via)
                .filter(|f| matches!(&f.kind, FieldKind::Relation { collection_id, .. } if *collection_id == collection.id))
                .ok_or_else(unknown)?;
            let parent_ids: Vec<String> = parents
                .iter()
                .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect();
            let column = Expr::col((Alias::new(BASE), Alias::new(via)));
            let condition = if via_field.kind.is_multi() {
                let function = crate::db::json_elements(self.db.database_backend(), column);
                Expr::exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from_function(function, Alias::new("e"))
                        .and_where(
                            Expr::col((Alias::new("e"), Alias::new("value"))).is_in(parent_ids),
                        )
                        .to_owned(),
                )
            } else {
                column.is_in(parent_ids)
            };
            let links = Links::Back {
                via: via.to_owned(),
            };
            (source, links, condition)
        };
        let mut select = Query::select();
        for field in &target.fields {
            select.column((Alias::new(BASE), Alias::new(&field.name)));
        }
        select
            .from_as(Alias::new(&target.name), Alias::new(BASE))
            .and_where(condition)
            .order_by((Alias::new(BASE), Alias::new("id")), sea_orm::Order::Asc);
        // Outside a key's scopes or superusers only: nothing to show, and no error.
        let Some(rule) = self.visible_rule(target, snapshot, identity, request)? else {
            return Ok((target, Vec::new(), links));
        };
        if let Some(condition) = rule {
            select.and_where(condition);
        }
        let rows = self
            .db
            .reads()
            .all(self.statement(&select, snapshot.version()))
            .await
            .map_err(RecordError::Db)?;
        let records = rows
            .iter()
            .map(|row| self.decode(target, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((target, records, links))
    }
}

/// How expanded records attach to their parents.
enum Links {
    /// The parent's single relation field holds the child's id.
    Single(String),
    /// The parent's multi relation field lists the children's ids (kept in its order).
    Many(String),
    /// The child's relation field `via` points at the parent.
    Back { via: String },
}
