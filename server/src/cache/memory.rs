//! The in-memory store: the embedded default, and every instance's fallback while
//! Redis is down. Its pub/sub is the [`super::Cache`]'s local delivery.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::{CacheError, Store};

/// Keys past this many are swept of expired entries before adding more.
const SWEEP_AT: usize = 50_000;

#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    value: String,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, e| e.live(now));
        }
        f(&mut entries, now)
    }

    fn value(entries: &HashMap<String, Entry>, key: &str, now: Instant) -> Option<String> {
        entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>> {
        let value = self.with(|entries, now| Self::value(entries, key, now));
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        self.with(|entries, now| {
            entries.insert(
                key.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires: ttl.map(|ttl| now + ttl),
                },
            )
        });
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        self.with(|entries, _| entries.remove(key));
        Box::pin(async { Ok(()) })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(u64, Duration), CacheError>> {
        let counted = self.with(|entries, now| {
            let entry = entries
                .entry(key.to_owned())
                .and_modify(|e| {
                    if !e.live(now) {
                        *e = Entry {
                            value: "0".into(),
                            expires: Some(now + window),
                        };
                    }
                })
                .or_insert_with(|| Entry {
                    value: "0".into(),
                    expires: Some(now + window),
                });
            let count = entry.value.parse::<u64>().unwrap_or(0) + 1;
            entry.value = count.to_string();
            let left = entry
                .expires
                .map_or(window, |at| at.saturating_duration_since(now));
            (count, left)
        });
        Box::pin(async move { Ok(counted) })
    }

    fn scan<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, CacheError>> {
        let mut found: Vec<(String, String)> = self.with(|entries, now| {
            entries
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect()
        });
        found.sort();
        Box::pin(async move { Ok(found) })
    }

    /// Local delivery is the [`super::Cache`]'s own: nothing to do here.
    fn publish<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async { Ok(()) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), CacheError>> {
        Box::pin(async { Ok(()) })
    }
}
