//! GraphQL arguments lowered to what `records` takes: `where` to the filter
//! language's syntax tree (the same one REST's `filter` parses to, so there is no
//! second SQL path), `orderBy` to a `sort`, inputs to record values.

use async_graphql::{Name, Value as Gql};
use serde_json::{Map, Value};

use crate::filter::ast::{CmpOp, Comparison, Expr, Literal, Operand, Path, Root};
use crate::schema::{Collection, FieldKind, Snapshot};

/// An input object's fields, in the order given.
type Object = async_graphql::indexmap::IndexMap<Name, Gql>;

/// Whether a field can be read through GraphQL at all, and by whom.
pub fn readable(field: &crate::schema::Field, superuser: bool) -> bool {
    !crate::records::is_secret(field) && (!field.hidden || superuser)
}

/// The collection and relation field of a back-relation key `{source}_via_{field}`
/// pointing at `target`.
pub fn back_relation<'s>(
    snapshot: &'s Snapshot,
    target: &Collection,
    key: &str,
) -> Option<(&'s Collection, &'s crate::schema::Field)> {
    let (name, via) = key.split_once("_via_")?;
    let source = snapshot.get(name)?;
    let field = source.field(via)?;
    match &field.kind {
        FieldKind::Relation { collection_id, .. } if *collection_id == target.id => {
            Some((source.as_ref(), field))
        }
        _ => None,
    }
}

/// `where` as a filter, `None` when it asks for nothing.
///
/// Fails with a message naming the bad part.
pub fn lower_where(
    snapshot: &Snapshot,
    collection: &Collection,
    value: &Gql,
) -> Result<Option<Expr>, String> {
    match value {
        Gql::Null => Ok(None),
        Gql::Object(object) => {
            let parts = lower_object(snapshot, collection, object, &[], false)?;
            Ok(join(parts))
        }
        _ => Err("`where` must be an object".into()),
    }
}

fn join(mut parts: Vec<Expr>) -> Option<Expr> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Expr::All(parts)),
    }
}

fn lower_object(
    snapshot: &Snapshot,
    collection: &Collection,
    object: &Object,
    prefix: &[String],
    any: bool,
) -> Result<Vec<Expr>, String> {
    let mut parts = Vec::new();
    for (key, value) in object {
        let key = key.as_str();
        match key {
            "_and" | "_or" => {
                let Gql::List(items) = value else {
                    if matches!(value, Gql::Null) {
                        continue;
                    }
                    return Err(format!("`{key}` takes a list"));
                };
                let mut group = Vec::new();
                for item in items {
                    let Gql::Object(item) = item else {
                        return Err(format!("`{key}` takes a list of objects"));
                    };
                    let inner = lower_object(snapshot, collection, item, prefix, any)?;
                    group.push(join(inner).unwrap_or(Expr::All(Vec::new())));
                }
                parts.push(if key == "_and" {
                    Expr::All(group)
                } else {
                    Expr::Any(group)
                });
            }
            "_not" => match value {
                Gql::Null => {}
                Gql::Object(inner) => {
                    let inner = lower_object(snapshot, collection, inner, prefix, any)?;
                    parts.push(Expr::Not(Box::new(
                        join(inner).unwrap_or(Expr::All(Vec::new())),
                    )));
                }
                _ => return Err("`_not` takes an object".into()),
            },
            _ => {
                if matches!(value, Gql::Null) {
                    continue;
                }
                let mut path = prefix.to_vec();
                path.push(key.to_owned());
                if let Some(field) = collection.field(key) {
                    if let FieldKind::Relation { collection_id, .. } = &field.kind {
                        let target = snapshot
                            .by_id(collection_id)
                            .ok_or_else(|| format!("`{key}` points at a missing collection"))?;
                        let Gql::Object(inner) = value else {
                            return Err(format!("`{key}` takes an object"));
                        };
                        parts.extend(lower_object(
                            snapshot,
                            target,
                            inner,
                            &path,
                            any || field.kind.is_multi(),
                        )?);
                    } else {
                        let Gql::Object(ops) = value else {
                            return Err(format!("`{key}` takes an object of operators"));
                        };
                        let is_date = matches!(
                            field.kind,
                            FieldKind::Date { .. } | FieldKind::Autodate { .. }
                        );
                        parts.extend(lower_ops(
                            ops,
                            &path,
                            any || field.kind.is_multi(),
                            is_date,
                        )?);
                    }
                } else if let Some((source, _)) = back_relation(snapshot, collection, key) {
                    let Gql::Object(inner) = value else {
                        return Err(format!("`{key}` takes an object"));
                    };
                    parts.extend(lower_object(snapshot, source, inner, &path, true)?);
                } else {
                    return Err(format!("`{}` has no field `{key}`", collection.name));
                }
            }
        }
    }
    Ok(parts)
}

fn literal(value: &Gql, is_date: bool) -> Result<Literal, String> {
    Ok(match value {
        Gql::Null => Literal::Null,
        Gql::Boolean(b) => Literal::Bool(*b),
        Gql::Number(n) => Literal::Number(n.as_f64().unwrap_or_default()),
        Gql::String(s) if is_date => match crate::records::validate::parse_date(s) {
            Some(date) => Literal::String(crate::records::validate::format_date(date)),
            None => return Err(format!("`{s}` is not a date")),
        },
        Gql::String(s) => Literal::String(s.clone()),
        Gql::Enum(name) => Literal::String(name.to_string()),
        _ => return Err("operators take scalar values".into()),
    })
}

fn compare(path: &[String], op: CmpOp, any: bool, value: Literal) -> Expr {
    Expr::Compare(Comparison {
        left: Operand::Path(Path {
            root: Root::Record,
            segments: path.to_vec(),
            modifier: None,
            pos: 0,
        }),
        op,
        any,
        right: Operand::Literal { value, pos: 0 },
        pos: 0,
    })
}

fn lower_ops(ops: &Object, path: &[String], any: bool, is_date: bool) -> Result<Vec<Expr>, String> {
    let mut parts = Vec::new();
    for (op, value) in ops {
        let simple = match op.as_str() {
            "_eq" => Some(CmpOp::Eq),
            "_neq" => Some(CmpOp::Neq),
            "_gt" => Some(CmpOp::Gt),
            "_gte" => Some(CmpOp::Gte),
            "_lt" => Some(CmpOp::Lt),
            "_lte" => Some(CmpOp::Lte),
            // `~`: case-insensitive, `%` and `_` are wildcards; a pattern without `%`
            // matches anywhere in the value, as the filter language's `~` does.
            "_like" | "_ilike" => Some(CmpOp::Like),
            _ => None,
        };
        if let Some(cmp) = simple {
            if matches!(value, Gql::Null) {
                continue;
            }
            parts.push(compare(path, cmp, any, literal(value, is_date)?));
            continue;
        }
        match (op.as_str(), value) {
            (_, Gql::Null) => {}
            ("_in" | "_nin", Gql::List(items)) => {
                let eq = op.as_str() == "_in";
                let each = items
                    .iter()
                    .map(|item| {
                        let cmp = if eq { CmpOp::Eq } else { CmpOp::Neq };
                        Ok(compare(path, cmp, any, literal(item, is_date)?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                parts.push(if eq { Expr::Any(each) } else { Expr::All(each) });
            }
            ("_is_null", Gql::Boolean(null)) => {
                let cmp = if *null { CmpOp::Eq } else { CmpOp::Neq };
                parts.push(compare(path, cmp, any, Literal::Null));
            }
            (other, _) => return Err(format!("`{other}` is not an operator here")),
        }
    }
    Ok(parts)
}

/// `orderBy: [{title: DESC}, {created: ASC}]` as `-title,created`.
///
/// Fails on a value that is not a list of objects of directions.
pub fn lower_order(value: &Gql) -> Result<Option<String>, String> {
    let items: Vec<&Gql> = match value {
        Gql::Null => return Ok(None),
        Gql::List(items) => items.iter().collect(),
        Gql::Object(_) => vec![value],
        _ => return Err("`orderBy` takes a list of objects".into()),
    };
    let mut parts = Vec::new();
    for item in items {
        let Gql::Object(object) = item else {
            return Err("`orderBy` takes a list of objects".into());
        };
        for (field, direction) in object {
            match direction {
                Gql::Enum(d) if d.as_str() == "DESC" => parts.push(format!("-{field}")),
                Gql::Enum(_) => parts.push(field.to_string()),
                Gql::Null => {}
                _ => return Err(format!("`{field}` takes ASC or DESC")),
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(",")))
}

/// An input object as record values (enums as their names, dates as given).
pub fn values(input: &Gql) -> Map<String, Value> {
    match input.clone().into_json() {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// A record value as GraphQL shows it: dates as RFC 3339 (`T`, not a space), blank
/// dates and selects as `null`.
pub fn output(kind: &FieldKind, value: &Value) -> Gql {
    match (kind, value) {
        (FieldKind::Date { .. } | FieldKind::Autodate { .. }, Value::String(s)) => {
            if s.is_empty() {
                Gql::Null
            } else {
                Gql::String(s.replacen(' ', "T", 1))
            }
        }
        (FieldKind::Select { .. }, Value::String(s)) if s.is_empty() => Gql::Null,
        (FieldKind::Json { .. }, Value::Null) => Gql::Null,
        (FieldKind::Json { .. }, other) => json_scalar(other),
        (_, other) => Gql::from_json(other.clone()).unwrap_or(Gql::Null),
    }
}

/// A JSON value as the `JSON` scalar carries it.
pub fn json_scalar(value: &Value) -> Gql {
    Gql::from_json(value.clone()).unwrap_or(Gql::Null)
}

/// A name as an enum value.
pub fn enum_value(name: &str) -> Gql {
    Gql::Enum(Name::new(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gql(text: &str) -> Gql {
        Gql::from_json(serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn order_lowers_to_a_sort() {
        let mut order = gql(r#"[{"title": "DESC"}, {"created": "ASC"}]"#);
        // Enums arrive as enums, not strings.
        if let Gql::List(items) = &mut order {
            for item in items {
                if let Gql::Object(o) = item {
                    for v in o.values_mut() {
                        if let Gql::String(s) = v {
                            *v = enum_value(&s.clone());
                        }
                    }
                }
            }
        }
        assert_eq!(
            lower_order(&order).unwrap().as_deref(),
            Some("-title,created")
        );
        assert_eq!(lower_order(&Gql::Null).unwrap(), None);
    }
}
