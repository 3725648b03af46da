//! SQL text of the pipeline's fixed-shape statements — the insert of a create, the
//! update and delete by id, the outbox row, the read of one record by id — built once
//! per collection, shape and schema version and kept here; a request only binds its
//! values. The text carries the schema version (see `RecordService::statement`), so
//! the database's prepared-statement caches reuse one plan per text.
//!
//! Statements whose text depends on the request beyond its values (a rule or a
//! client's filter, whose SQL varies with the caller and with the values bound —
//! a null `@request.auth`, a list's length) are built per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::schema::Collection;

/// What a statement does, which fields it names and how: with the collection and the
/// schema version, it decides the statement's text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    /// `SELECT base.<every field> FROM <t> AS base WHERE base.id = ?`.
    View,
    /// `SELECT <every field> FROM <t> WHERE id = ?`, `FOR UPDATE` when locking.
    Find { lock: bool },
    /// `INSERT` of these fields, `RETURNING` every field.
    Insert(Fields),
    /// `UPDATE` by id: `set` from values, `add` as increments (on-update autodates
    /// follow from the collection), `RETURNING` every field.
    Update { set: Fields, add: Fields },
    /// `DELETE` of one id, `RETURNING` every field.
    Delete,
    /// The outbox row of a change (the same for every collection).
    Outbox,
}

/// A set of a collection's fields, by position.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fields(Box<[u64]>);

impl Fields {
    /// The fields of `collection` for which `pick` holds.
    pub(crate) fn of(collection: &Collection, mut pick: impl FnMut(&str) -> bool) -> Fields {
        let mut words = vec![0u64; collection.fields.len().div_ceil(64)];
        for (i, field) in collection.fields.iter().enumerate() {
            if pick(&field.name)
                && let Some(word) = words.get_mut(i / 64)
            {
                *word |= 1 << (i % 64);
            }
        }
        Fields(words.into_boxed_slice())
    }
}

/// Shapes kept per collection: a bound on what unusual write patterns (every subset
/// of fields of a wide collection) can make the cache hold.
const SHAPES_PER_COLLECTION: usize = 256;

/// The statement texts of one schema version.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    cache: RwLock<Texts>,
    built: AtomicU64,
}

#[derive(Debug, Default)]
struct Texts {
    version: i64,
    by_collection: HashMap<String, HashMap<Shape, Arc<str>>>,
}

impl Statements {
    /// The text of `shape` on `collection` at schema `version`, if built already.
    pub(crate) fn get(&self, version: i64, collection: &str, shape: &Shape) -> Option<Arc<str>> {
        let texts = self.cache.read().unwrap_or_else(|e| e.into_inner());
        if texts.version != version {
            return None;
        }
        texts.by_collection.get(collection)?.get(shape).cloned()
    }

    /// Keep a text just built. A newer version drops every text of older ones; a
    /// text of an older version than the kept ones is not kept.
    pub(crate) fn keep(&self, version: i64, collection: &str, shape: Shape, text: &str) {
        self.built.fetch_add(1, Ordering::Relaxed);
        let mut texts = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if version < texts.version {
            return;
        }
        if version > texts.version {
            texts.version = version;
            texts.by_collection.clear();
        }
        let shapes = texts
            .by_collection
            .entry(collection.to_owned())
            .or_default();
        if shapes.len() < SHAPES_PER_COLLECTION {
            shapes.insert(shape, Arc::from(text));
        }
    }

    /// How many texts were built (and not found here) since the start.
    pub(crate) fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_live_as_long_as_their_schema_version() {
        let statements = Statements::default();
        statements.keep(3, "posts", Shape::Delete, "DELETE v3");
        assert_eq!(
            statements.get(3, "posts", &Shape::Delete).as_deref(),
            Some("DELETE v3")
        );
        assert_eq!(statements.get(3, "posts", &Shape::View), None);
        assert_eq!(statements.get(3, "users", &Shape::Delete), None);
        assert_eq!(statements.get(4, "posts", &Shape::Delete), None);
        statements.keep(4, "posts", Shape::View, "SELECT v4");
        assert_eq!(statements.get(3, "posts", &Shape::Delete), None);
        // A request still on the older snapshot does not push the newer texts out.
        statements.keep(3, "posts", Shape::Delete, "DELETE v3");
        assert_eq!(statements.get(4, "posts", &Shape::Delete), None);
        assert_eq!(
            statements.get(4, "posts", &Shape::View).as_deref(),
            Some("SELECT v4")
        );
        assert_eq!(statements.built(), 3);
    }
}
