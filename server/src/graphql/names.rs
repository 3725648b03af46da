//! GraphQL names for collections. `posts` gives the list field `posts`, the single
//! field `post`, the types `Post`, `PostsPage`, `PostWhere`, … and the mutations
//! `createPost`, `updatePost`, `deletePost`. Names are claimed in a fixed order
//! (collections by creation, list fields before single ones), and a name already
//! taken — `post` and `posts` both exist, or a collection called `string` — falls
//! back to a longer one that cannot collide, so every schema is valid.

use std::collections::HashSet;

use crate::schema::{Collection, Snapshot};

/// Type names the schema defines itself.
pub const BUILTIN_TYPES: &[&str] = &[
    "Query",
    "Mutation",
    "Subscription",
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
    "JSON",
    "DateTime",
    "StringFilter",
    "FloatFilter",
    "BooleanFilter",
    "DateTimeFilter",
    "OrderDirection",
    "RecordAction",
    "BatchOperation",
    "BatchResult",
    "BatchUpdate",
    "BatchDelete",
];

/// Query fields the schema defines itself.
pub const BUILTIN_QUERIES: &[&str] = &["schemaVersion"];
/// Mutations the schema defines itself.
pub const BUILTIN_MUTATIONS: &[&str] = &["batch"];

/// `blog_posts` → `BlogPosts`.
pub fn pascal(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `blog_posts` → `blogPosts`.
pub fn camel(name: &str) -> String {
    let pascal = pascal(name);
    let mut chars = pascal.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// An English singular good enough for names: `categories` → `category`,
/// `posts` → `post`, `news` stays (`s` after `s`, `u`, `i` is kept).
pub fn singular(name: &str) -> String {
    if matches!(
        name,
        "news" | "series" | "species" | "status" | "data" | "media"
    ) {
        return name.to_owned();
    }
    if let Some(stem) = name.strip_suffix("ies")
        && !stem.is_empty()
    {
        return format!("{stem}y");
    }
    if let Some(stem) = name.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    if let Some(stem) = name.strip_suffix('s')
        && !stem.is_empty()
        && !stem.ends_with(['s', 'u', 'i'])
    {
        return stem.to_owned();
    }
    name.to_owned()
}

/// Every generated name of one collection.
#[derive(Clone, Debug)]
pub struct CollectionNames {
    pub list: String,
    pub single: String,
    pub aggregate: String,
    pub create: String,
    pub update: String,
    pub delete: String,
    /// The record's object type.
    pub record: String,
    pub page: String,
    pub aggregate_type: String,
    pub numbers: String,
    pub filter: String,
    pub order: String,
    pub create_input: String,
    pub update_input: String,
    pub event: String,
    /// The input of an update inside `batch`.
    pub batch_update: String,
    /// Enum types of select fields whose values make valid enum values, by field.
    pub enums: Vec<(String, String)>,
}

impl CollectionNames {
    /// The enum type of select field `field`, if it has one.
    pub fn enum_of(&self, field: &str) -> Option<String> {
        self.enums
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, e)| e.clone())
    }
}

/// Names already given out, per namespace.
#[derive(Default)]
struct Claims {
    types: HashSet<String>,
    query: HashSet<String>,
    mutation: HashSet<String>,
}

fn claim(taken: &mut HashSet<String>, candidates: &[String]) -> String {
    for candidate in candidates {
        if taken.insert(candidate.clone()) {
            return candidate.clone();
        }
    }
    // The last candidate always embeds the collection's unique name; numbering is
    // only a guard.
    let base = candidates.last().cloned().unwrap_or_default();
    let mut n = 2;
    loop {
        let name = format!("{base}{n}");
        if taken.insert(name.clone()) {
            return name;
        }
        n += 1;
    }
}

/// Whether a collection is part of the GraphQL schema: Basalt's own (`_superusers`)
/// are not.
pub fn exposed(collection: &Collection) -> bool {
    !collection.name.starts_with('_')
}

/// Names for every collection of `snapshot`, in its order.
pub fn assign(snapshot: &Snapshot) -> Vec<(std::sync::Arc<Collection>, CollectionNames)> {
    let mut claims = Claims::default();
    claims
        .types
        .extend(BUILTIN_TYPES.iter().map(|s| (*s).to_owned()));
    claims
        .query
        .extend(BUILTIN_QUERIES.iter().map(|s| (*s).to_owned()));
    claims
        .mutation
        .extend(BUILTIN_MUTATIONS.iter().map(|s| (*s).to_owned()));
    let collections: Vec<_> = snapshot
        .all()
        .iter()
        .filter(|c| exposed(c))
        .cloned()
        .collect();
    // List fields first: a collection's own name beats another's singular.
    let lists: Vec<String> = collections
        .iter()
        .map(|c| claim(&mut claims.query, &[camel(&c.name), c.name.clone()]))
        .collect();
    let mut out = Vec::with_capacity(collections.len());
    for (collection, list) in collections.into_iter().zip(lists) {
        let n = &collection.name;
        let one = singular(n);
        let single_candidates = if one == *n {
            vec![format!("{}ById", camel(n)), format!("{n}_by_id")]
        } else {
            vec![
                camel(&one),
                format!("{}ById", camel(n)),
                format!("{n}_by_id"),
            ]
        };
        let single = claim(&mut claims.query, &single_candidates);
        let aggregate = claim(
            &mut claims.query,
            &[format!("{}Aggregate", camel(n)), format!("{n}_aggregate")],
        );
        let record = claim(
            &mut claims.types,
            &[
                pascal(&one),
                format!("{}Record", pascal(n)),
                format!("Record_{n}"),
            ],
        );
        let mut ty = |suffix: &str| {
            claim(
                &mut claims.types,
                &[format!("{record}{suffix}"), format!("Record_{n}_{suffix}")],
            )
        };
        let filter = ty("Where");
        let order = ty("OrderBy");
        let create_input = ty("CreateInput");
        let update_input = ty("UpdateInput");
        let event = ty("Event");
        let page = claim(
            &mut claims.types,
            &[format!("{}Page", pascal(n)), format!("Record_{n}_Page")],
        );
        let aggregate_type = claim(
            &mut claims.types,
            &[
                format!("{}Aggregate", pascal(n)),
                format!("Record_{n}_Aggregate"),
            ],
        );
        let numbers = claim(
            &mut claims.types,
            &[
                format!("{}Numbers", pascal(n)),
                format!("Record_{n}_Numbers"),
            ],
        );
        // Mutations carry the record type's name, unique by construction.
        let mut mutation = |verb: &str| {
            claim(
                &mut claims.mutation,
                &[format!("{verb}{record}"), format!("{verb}_{n}")],
            )
        };
        let create = mutation("create");
        let update = mutation("update");
        let delete = mutation("delete");
        out.push((
            collection,
            CollectionNames {
                list,
                single,
                aggregate,
                create,
                update,
                delete,
                record,
                page,
                aggregate_type,
                numbers,
                filter,
                order,
                create_input,
                update_input,
                event,
                batch_update: String::new(),
                enums: Vec::new(),
            },
        ));
    }
    // After every collection's own types, so these never take one of those names.
    for (collection, names) in &mut out {
        let n = &collection.name;
        names.batch_update = claim(
            &mut claims.types,
            &[
                format!("{}BatchUpdate", names.record),
                format!("Record_{n}_BatchUpdate"),
            ],
        );
        for field in &collection.fields {
            if let crate::schema::FieldKind::Select { values, .. } = &field.kind
                && enum_values(values).is_some()
            {
                let name = claim(
                    &mut claims.types,
                    &[
                        format!("{}{}", names.record, pascal(&field.name)),
                        format!("Record_{n}_{}", field.name),
                    ],
                );
                names.enums.push((field.name.clone(), name));
            }
        }
    }
    out
}

/// A select field's enum: its name and values, when every value is a valid,
/// distinct GraphQL enum value (else the field is a plain `String`).
pub fn enum_values(values: &[String]) -> Option<Vec<String>> {
    let valid = |v: &str| {
        let mut chars = v.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !matches!(v, "true" | "false" | "null")
            && !v.starts_with("__")
    };
    let mut seen = HashSet::new();
    (!values.is_empty() && values.iter().all(|v| valid(v) && seen.insert(v.as_str())))
        .then(|| values.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(pascal("blog_posts"), "BlogPosts");
        assert_eq!(camel("blog_posts"), "blogPosts");
        assert_eq!(singular("posts"), "post");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("news"), "news");
        assert_eq!(singular("status"), "status");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("s"), "s");
        assert!(enum_values(&["draft".into(), "live".into()]).is_some());
        assert!(enum_values(&["a b".into()]).is_none());
        assert!(enum_values(&["1st".into()]).is_none());
        assert!(enum_values(&["true".into()]).is_none());
    }
}
