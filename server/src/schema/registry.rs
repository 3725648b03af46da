//! The current schema as an immutable snapshot, swapped atomically after each
//! committed change. A request takes one snapshot and uses it throughout; no lock is
//! held across an `.await`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::model::Collection;

/// Every collection at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The schema version these definitions belong to (`_settings.schemaVersion`).
    version: i64,
    collections: Vec<Arc<Collection>>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    /// What is derived from these definitions once and kept with them: the compiled
    /// access rules (`filter::rules`), which this module cannot name.
    extension: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Snapshot {
    pub fn new(version: i64, mut collections: Vec<Collection>) -> Snapshot {
        collections.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        let collections: Vec<Arc<Collection>> = collections.into_iter().map(Arc::new).collect();
        let by_name = collections
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let by_id = collections
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        Snapshot {
            version,
            collections,
            by_name,
            by_id,
            extension: std::sync::OnceLock::new(),
        }
    }

    /// The slot for what is derived from this snapshot once (see the field).
    pub fn extension(&self) -> &std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>> {
        &self.extension
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// By id or by name, as the API's `{idOrName}` takes it.
    pub fn get(&self, id_or_name: &str) -> Option<&Arc<Collection>> {
        self.by_id
            .get(id_or_name)
            .or_else(|| self.by_name.get(id_or_name))
            .and_then(|&i| self.collections.get(i))
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Collection>> {
        self.by_id.get(id).and_then(|&i| self.collections.get(i))
    }

    pub fn all(&self) -> &[Arc<Collection>] {
        &self.collections
    }
}

/// Holds the current [`Snapshot`].
#[derive(Debug, Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
