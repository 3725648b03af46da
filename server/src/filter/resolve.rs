//! Names in a filter, checked against the schema: every path must reach a field —
//! through relations (`author.name`), back-relations (`comments_via_post.text`) and
//! `@collection.NAME` — and every modifier must suit its field. Secrets (password
//! hashes, token keys) are never filterable; hidden fields only where allowed.

use super::FilterError;
use super::ast::{Expr, Modifier, Operand, Path, Root};
use crate::schema::{Collection, Field, FieldKind, Snapshot};

/// What a filter may see.
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    /// Hidden fields may be named (rules written by superusers; superusers' filters).
    pub hidden: bool,
}

/// A field a path ends on, and whether reaching it went through a to-many hop.
#[derive(Clone, Debug)]
pub struct Reached<'a> {
    pub collection: &'a Collection,
    pub field: &'a Field,
    pub through_many: bool,
}

/// Check every path of `expr` for a filter on `collection`.
///
/// Fails with the position of the first path that names no field, or a modifier that
/// does not fit.
pub fn check(
    expr: &Expr,
    collection: &Collection,
    snapshot: &Snapshot,
    scope: Scope,
) -> Result<(), FilterError> {
    for comparison in expr.comparisons() {
        for operand in [&comparison.left, &comparison.right] {
            if let Operand::Path(path) = operand {
                check_path(path, collection, snapshot, scope)?;
            }
        }
    }
    Ok(())
}

fn check_path(
    path: &Path,
    collection: &Collection,
    snapshot: &Snapshot,
    scope: Scope,
) -> Result<(), FilterError> {
    let unknown = |name: &str| FilterError::new(path.pos, format!("unknown field `{name}`"));
    match &path.root {
        Root::Query | Root::Headers => {
            if path.segments.len() != 1 {
                return Err(FilterError::new(
                    path.pos,
                    "query parameters and headers have no fields",
                ));
            }
            modifier_fits(path, None)
        }
        Root::Auth => {
            // The caller's collection is only known per request: the first field must
            // exist on some auth collection (or be one every record has).
            let first = path
                .segments
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let common = matches!(first, "id" | "collectionId" | "collectionName");
            let auth_collections = snapshot.all().iter().filter(|c| c.auth.is_some());
            let mut found = None;
            for auth in auth_collections {
                if let Some(field) = auth.field(first) {
                    found = Some((auth.as_ref(), field));
                    break;
                }
            }
            match found {
                Some((auth, _)) => {
                    let reached = walk(path, auth, snapshot, scope)?;
                    modifier_fits(path, Some(&reached))
                }
                None if common && path.segments.len() == 1 => modifier_fits(path, None),
                None => Err(unknown(first)),
            }
        }
        Root::Body => {
            let first = path
                .segments
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            if collection.field(first).is_none()
                && !matches!(first, "passwordConfirm" | "oldPassword")
            {
                return Err(unknown(first));
            }
            if path.segments.len() == 1 {
                return modifier_fits(
                    path,
                    collection
                        .field(first)
                        .map(|field| Reached {
                            collection,
                            field,
                            through_many: false,
                        })
                        .as_ref(),
                );
            }
            let reached = walk(path, collection, snapshot, scope)?;
            modifier_fits(path, Some(&reached))
        }
        Root::Collection { name, .. } => {
            let other = snapshot.get(name).ok_or_else(|| {
                FilterError::new(path.pos, format!("unknown collection `{name}`"))
            })?;
            let reached = walk(path, other, snapshot, scope)?;
            modifier_fits(path, Some(&reached))
        }
        Root::Record => {
            let reached = walk(path, collection, snapshot, scope)?;
            modifier_fits(path, Some(&reached))
        }
    }
}

/// Follow `path.segments` from `start`.
///
/// Fails naming the first segment that is not a field (or back-relation) of the
/// collection reached so far, or that cannot be followed further.
pub fn walk<'a>(
    path: &Path,
    start: &'a Collection,
    snapshot: &'a Snapshot,
    scope: Scope,
) -> Result<Reached<'a>, FilterError> {
    let mut current: &'a Collection = start;
    let mut through_many = false;
    let last = path.segments.len().saturating_sub(1);
    for (i, segment) in path.segments.iter().enumerate() {
        let field = match current.field(segment) {
            Some(field) => field,
            None => {
                // `comments_via_post`: records of `comments` whose `post` points here.
                let (name, via) = segment.split_once("_via_").ok_or_else(|| {
                    FilterError::new(
                        path.pos,
                        format!("unknown field `{segment}` in `{}`", current.name),
                    )
                })?;
                let source = snapshot.get(name).ok_or_else(|| {
                    FilterError::new(
                        path.pos,
                        format!("unknown collection `{name}` in `{segment}`"),
                    )
                })?;
                let relation = source.field(via).filter(|f| {
                    matches!(&f.kind, FieldKind::Relation { collection_id, .. } if *collection_id == current.id)
                });
                if relation.is_none() {
                    return Err(FilterError::new(
                        path.pos,
                        format!(
                            "`{segment}`: `{name}.{via}` is not a relation to `{}`",
                            current.name
                        ),
                    ));
                }
                if i == last {
                    return Err(FilterError::new(
                        path.pos,
                        format!("`{segment}` needs a field after it"),
                    ));
                }
                through_many = true;
                current = source.as_ref();
                continue;
            }
        };
        let secret = matches!(field.kind, FieldKind::Password { .. }) || field.name == "tokenKey";
        if secret || (field.hidden && !scope.hidden) {
            return Err(FilterError::new(
                path.pos,
                format!("unknown field `{segment}` in `{}`", current.name),
            ));
        }
        if i == last {
            return Ok(Reached {
                collection: current,
                field,
                through_many,
            });
        }
        match &field.kind {
            FieldKind::Relation { collection_id, .. } => {
                through_many |= field.kind.is_multi();
                current = snapshot
                    .by_id(collection_id)
                    .map(AsRef::as_ref)
                    .ok_or_else(|| {
                        FilterError::new(
                            path.pos,
                            format!("`{segment}` points at a missing collection"),
                        )
                    })?;
            }
            _ => {
                return Err(FilterError::new(
                    path.pos,
                    format!("`{segment}` is not a relation, so it has no fields"),
                ));
            }
        }
    }
    Err(FilterError::new(path.pos, "empty path"))
}

fn modifier_fits(path: &Path, reached: Option<&Reached<'_>>) -> Result<(), FilterError> {
    let Some(modifier) = path.modifier else {
        return Ok(());
    };
    let multi = reached.is_some_and(|r| r.field.kind.is_multi() || r.through_many);
    let fits = match modifier {
        Modifier::Isset | Modifier::Changed => path.root == Root::Body && path.segments.len() == 1,
        Modifier::Length | Modifier::Each => multi,
        Modifier::Lower => reached.is_none_or(|r| {
            !matches!(
                r.field.kind,
                FieldKind::Number { .. } | FieldKind::Bool | FieldKind::Json { .. }
            )
        }),
    };
    if fits {
        Ok(())
    } else {
        Err(FilterError::new(
            path.pos,
            format!("`:{}` does not apply here", modifier_name(modifier)),
        ))
    }
}

fn modifier_name(modifier: Modifier) -> &'static str {
    match modifier {
        Modifier::Isset => "isset",
        Modifier::Changed => "changed",
        Modifier::Length => "length",
        Modifier::Each => "each",
        Modifier::Lower => "lower",
    }
}

/// Check one access rule of `collection` (`""` and absent rules are always fine).
/// Rules are written by superusers, so hidden fields may be named.
///
/// Fails with a message naming the character where the rule goes wrong.
pub fn check_rule(rule: &str, collection: &Collection, snapshot: &Snapshot) -> Result<(), String> {
    let expr = match super::parse(rule) {
        Ok(Some(expr)) => expr,
        Ok(None) => return Ok(()),
        Err(err) => return Err(err.to_string()),
    };
    check(&expr, collection, snapshot, Scope { hidden: true }).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse;

    fn snapshot() -> Snapshot {
        crate::filter::test_snapshot()
    }

    fn run(filter: &str, hidden: bool) -> Result<(), FilterError> {
        let snapshot = snapshot();
        let posts = snapshot.get("posts").unwrap().clone();
        let expr = parse(filter)?.unwrap();
        check(&expr, &posts, &snapshot, Scope { hidden })
    }

    #[test]
    fn paths_that_resolve() {
        for ok in [
            "title ~ 'x'",
            "author.email = 'a@b.co'",
            "author.role = 'admin' && views > 3",
            "comments_via_post.text ?~ 'hi'",
            "tags:length > 1",
            "tags:each = 'a'",
            "title:lower = 'x'",
            "@request.auth.id != '' && author = @request.auth.id",
            "@request.auth.role = 'admin'",
            "@request.body.title:isset = true",
            "@request.body.views:changed = false",
            "@request.query.q = title",
            "@collection.users:u.email = @request.auth.email",
            "@collection.comments.post.author.email = 'x@y.z'",
            "comments_via_post.post.author.role = 'x'",
        ] {
            assert!(run(ok, false).is_ok(), "{ok}: {:?}", run(ok, false));
        }
    }

    #[test]
    fn paths_that_do_not() {
        for (bad, words) in [
            ("nope = 1", "unknown field `nope`"),
            ("title.name = 1", "not a relation"),
            ("author.password = 'x'", "unknown field `password`"),
            ("author.tokenKey = 'x'", "unknown field `tokenKey`"),
            ("secret = 'x'", "unknown field `secret`"),
            ("comments_via_title.text = 1", "not a relation"),
            ("nothing_via_post.text = 1", "unknown collection"),
            ("comments_via_post = 1", "needs a field"),
            ("title:length = 1", "does not apply"),
            ("views:lower = 1", "does not apply"),
            ("title:isset = true", "does not apply"),
            ("@request.body.nope = 1", "unknown field"),
            ("@request.auth.nope = 1", "unknown field"),
            ("@collection.nope.id = 1", "unknown collection"),
            ("@request.query.a.b = 1", "no fields"),
        ] {
            let err = run(bad, false).unwrap_err();
            assert!(err.message.contains(words), "{bad}: {err}");
        }
        // A hidden field is fine where hidden fields may be seen (rules, superusers).
        assert!(run("secret = 'x'", true).is_ok());
        assert!(run("author.password = 'x'", true).is_err(), "secrets never");
    }
}
