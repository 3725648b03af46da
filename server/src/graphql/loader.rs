//! Batching of nested reads within one operation. GraphQL resolves the fields of a
//! list's items concurrently, inside one task: each relation resolver registers the
//! id it needs, yields once so its siblings can register theirs, and the first to
//! run again loads the whole batch in one statement for all of them. No timers, no
//! extra task: a page of 20 posts with authors and comments is three statements, and
//! so is a page of 1,000.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::filter::Expr;

/// What one batch loads: records of a collection by id, or the records of `source`
/// pointing back through `via`, filtered, sorted and limited per parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Ids {
        collection: String,
    },
    Back {
        source: String,
        via: String,
        /// The `where` argument, printed: batches share a condition.
        condition: String,
        sort: Option<String>,
        limit: u64,
    },
}

type Loaded = Result<Arc<HashMap<String, Vec<Value>>>, async_graphql::Error>;

struct Batch {
    ids: Vec<String>,
    condition: Option<Expr>,
    result: Arc<OnceCell<Loaded>>,
}

/// One operation's batches; lives in the operation's data.
#[derive(Default)]
pub struct Loader {
    pending: Mutex<HashMap<Key, Batch>>,
}

impl Loader {
    /// The records `key` gives for `ids` (record ids, in their order; or a parent's
    /// id for a back-relation), loaded together with every sibling's.
    ///
    /// Fails when the batch's query fails.
    pub async fn load(
        &self,
        ctx: &super::Ctx,
        key: Key,
        ids: &[String],
        condition: Option<&Expr>,
    ) -> Result<Vec<Value>, async_graphql::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cell = {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| async_graphql::Error::new("the loader is broken"))?;
            let batch = pending.entry(key.clone()).or_insert_with(|| Batch {
                ids: Vec::new(),
                condition: condition.cloned(),
                result: Arc::new(OnceCell::new()),
            });
            batch.ids.extend(ids.iter().cloned());
            Arc::clone(&batch.result)
        };
        // Let the siblings register their ids before anyone loads.
        tokio::task::yield_now().await;
        let loaded = cell
            .get_or_init(|| async {
                let batch = self.take(&key, &cell);
                match batch {
                    Some(batch) => Self::run(ctx, &key, batch).await,
                    None => Err(async_graphql::Error::new("the batch was lost")),
                }
            })
            .await
            .clone()?;
        Ok(ids
            .iter()
            .filter_map(|id| loaded.get(id))
            .flatten()
            .cloned()
            .collect())
    }

    /// The batch of `key` whose result is `cell`, taken out of the pending ones, so
    /// ids registered from now on start a new batch.
    fn take(&self, key: &Key, cell: &Arc<OnceCell<Loaded>>) -> Option<Batch> {
        let mut pending = self.pending.lock().ok()?;
        match pending.get(key) {
            Some(batch) if Arc::ptr_eq(&batch.result, cell) => pending.remove(key),
            _ => None,
        }
    }

    async fn run(ctx: &super::Ctx, key: &Key, mut batch: Batch) -> Loaded {
        batch.ids.sort();
        batch.ids.dedup();
        let mut out: HashMap<String, Vec<Value>> = HashMap::new();
        match key {
            Key::Ids { collection } => {
                let found = ctx
                    .records
                    .related(collection, &batch.ids, &ctx.identity, &ctx.base)
                    .await
                    .map_err(super::error)?;
                for record in found {
                    if let Some(id) = record.get("id").and_then(Value::as_str) {
                        out.entry(id.to_owned()).or_default().push(record.clone());
                    }
                }
            }
            Key::Back {
                source,
                via,
                sort,
                limit,
                ..
            } => {
                let back = crate::records::related::BackQuery {
                    source,
                    via,
                    condition: batch.condition.as_ref(),
                    sort: sort.as_deref(),
                    limit: *limit,
                };
                let found = ctx
                    .records
                    .back_related(&back, &batch.ids, &ctx.identity, &ctx.base)
                    .await
                    .map_err(super::error)?;
                for (parent, record) in found {
                    out.entry(parent).or_default().push(record);
                }
            }
        }
        Ok(Arc::new(out))
    }
}
