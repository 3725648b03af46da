//! Who a request acts as. `auth` works it out from a token; `records` (and every later
//! way in) decides with it. Imports only `schema`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schema::Collection;

/// The collection of Basalt's administrators.
pub const SUPERUSERS: &str = "_superusers";

/// Who a request acts as.
#[derive(Clone, Debug)]
pub enum Identity {
    Anonymous,
    /// A record of an auth collection other than `_superusers`.
    Record {
        collection: Arc<Collection>,
        record: Map<String, Value>,
    },
    Superuser {
        record: Map<String, Value>,
    },
    /// A service account: an API key with its scopes.
    ApiKey(Arc<ApiKey>),
}

/// A record operation, as API-key scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    List,
    View,
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::List, Op::View, Op::Create, Op::Update, Op::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::View => "view",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

/// An API key as a request presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Scopes,
}

/// What an API key may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scopes {
    /// Everything a superuser may.
    Superuser,
    /// These operations on these collections (by name), bypassing their rules;
    /// nothing else.
    Collections(Vec<(String, Vec<Op>)>),
}

impl Identity {
    /// Superusers, and API keys (which act as superusers within their scopes; see
    /// [`Identity::in_scope`]).
    pub fn is_superuser(&self) -> bool {
        matches!(self, Identity::Superuser { .. } | Identity::ApiKey(_))
    }

    /// Whether a superuser's whole power: superusers and whole-superuser keys.
    pub fn is_full_superuser(&self) -> bool {
        match self {
            Identity::Superuser { .. } => true,
            Identity::ApiKey(key) => key.scopes == Scopes::Superuser,
            _ => false,
        }
    }

    /// Whether this identity may do `op` on `collection` at all: always for people
    /// (rules decide), for API keys only within their scopes.
    pub fn in_scope(&self, collection: &str, op: Op) -> bool {
        match self {
            Identity::ApiKey(key) => match &key.scopes {
                Scopes::Superuser => true,
                Scopes::Collections(scopes) => scopes
                    .iter()
                    .any(|(name, ops)| name == collection && ops.contains(&op)),
            },
            _ => true,
        }
    }

    /// The record id behind the identity, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Identity::Anonymous | Identity::ApiKey(_) => None,
            Identity::Record { record, .. } | Identity::Superuser { record } => {
                record.get("id").and_then(Value::as_str)
            }
        }
    }
}

/// Signed-in callers' records, so an authenticated request does not read its caller's
/// row every time. An entry is dropped when the record changes (the record pipeline's
/// after-commit chain on this instance; the event feed for changes made by other
/// instances) and is never older than [`IdentityCache::MAX_AGE`], nor of another
/// schema version. A record read before a change but stored after it is not stored:
/// every change bumps a generation the reader checked before reading.
///
/// With a shared cache (Redis), each record also has a shared generation that every
/// change bumps before its request is answered; an entry is used only while the
/// generation it was read under is current, so a change made through one instance
/// holds on all of them from the next request on.
#[derive(Debug, Default)]
pub struct IdentityCache {
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), Cached>>,
    generation: std::sync::atomic::AtomicU64,
    shared: std::sync::OnceLock<crate::cache::Cache>,
}

#[derive(Debug)]
struct Cached {
    version: i64,
    shared: Option<String>,
    record: Map<String, Value>,
    at: std::time::Instant,
}

/// How long a shared generation outlives its last change (far longer than an entry).
const SHARED_GENERATION_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

impl IdentityCache {
    /// The longest an entry is trusted without a change event.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);
    /// Entries kept at most; the cache starts over when full.
    const MAX_ENTRIES: usize = 50_000;

    /// Check entries against `cache`'s shared generations (once, at start).
    pub fn share(&self, cache: crate::cache::Cache) {
        let _ = self.shared.set(cache);
    }

    fn shared_key(collection: &str, id: &str) -> String {
        format!("identity:{collection}:{id}")
    }

    /// The shared generation of record `id` of `collection`: read it before
    /// [`IdentityCache::get`] and [`IdentityCache::generation`]. `None` without a
    /// shared cache (or while Redis is down: entries read meanwhile are not trusted
    /// once it is back).
    pub async fn shared_generation(&self, collection: &str, id: &str) -> Option<String> {
        let cache = self.shared.get().filter(|c| c.is_shared())?;
        let current = cache.get(&Self::shared_key(collection, id)).await;
        // A failure answered from memory meanwhile: not a shared answer.
        cache
            .is_shared()
            .then(|| current.unwrap_or_else(|| "0".to_owned()))
    }

    /// Tell every instance that record `id` of `collection` changed.
    pub async fn bump_shared(&self, collection: &str, id: &str) {
        if let Some(cache) = self.shared.get().filter(|c| c.external_name().is_some()) {
            cache
                .incr(&Self::shared_key(collection, id), SHARED_GENERATION_TTL)
                .await;
        }
    }

    /// The cached record `id` of `collection` (a name), read under schema `version`
    /// and shared generation `shared`.
    pub fn get(
        &self,
        collection: &str,
        id: &str,
        version: i64,
        shared: Option<&str>,
    ) -> Option<Map<String, Value>> {
        let entries = self.entries.lock().ok()?;
        let cached = entries.get(&(collection.to_owned(), id.to_owned()))?;
        (cached.version == version
            && cached.shared.as_deref() == shared
            && cached.at.elapsed() < Self::MAX_AGE)
            .then(|| cached.record.clone())
    }

    /// The generation to pass to [`IdentityCache::put`]: read it before reading the row.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Keep `record`, read after [`IdentityCache::generation`] returned `generation`
    /// and [`IdentityCache::shared_generation`] returned `shared`; nothing is kept if
    /// any record changed here since.
    pub fn put(
        &self,
        collection: &str,
        id: &str,
        version: i64,
        (generation, shared): (u64, Option<String>),
        record: Map<String, Value>,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation() != generation {
            return;
        }
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            (collection.to_owned(), id.to_owned()),
            Cached {
                version,
                shared,
                record,
                at: std::time::Instant::now(),
            },
        );
    }

    /// Drop every entry (events about changes were missed).
    pub fn clear(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Drop record `id` of `collection` (a name): it changed.
    pub fn forget(&self, collection: &str, id: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(collection.to_owned(), id.to_owned()));
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn entries_go_on_change_and_stale_reads_are_not_kept() {
        let cache = IdentityCache::default();
        let record = |key: &str| {
            let mut map = Map::new();
            map.insert("tokenKey".into(), Value::String(key.into()));
            map
        };
        let seen = cache.generation();
        cache.put("users", "u1", 3, (seen, None), record("a"));
        assert_eq!(cache.get("users", "u1", 3, None), Some(record("a")));
        assert_eq!(
            cache.get("users", "u1", 4, None),
            None,
            "another schema version"
        );
        cache.forget("users", "u1");
        assert_eq!(cache.get("users", "u1", 3, None), None);
        // Read before a change, stored after it: not kept.
        let seen = cache.generation();
        cache.forget("users", "u1");
        cache.put("users", "u1", 3, (seen, None), record("old"));
        assert_eq!(cache.get("users", "u1", 3, None), None);
        // Read under one shared generation, used under another: not trusted.
        let seen = cache.generation();
        cache.put("users", "u1", 3, (seen, Some("4".into())), record("b"));
        assert_eq!(cache.get("users", "u1", 3, Some("4")), Some(record("b")));
        assert_eq!(
            cache.get("users", "u1", 3, Some("5")),
            None,
            "changed elsewhere"
        );
        assert_eq!(cache.get("users", "u1", 3, None), None, "Redis away");
    }
}
