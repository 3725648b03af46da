//! `POST /api/batch`: several creates, updates, upserts and deletes in one transaction.
//! Either every request takes effect or none does; a failure names its index.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::ScopeCheck;
use super::{RecordError, RecordService, WriteCtx};
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::schema::Collection;

/// One request of a batch, PocketBase-shaped.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    pub method: String,
    pub url: String,
    pub body: Map<String, Value>,
}

/// Why a batch did not take effect.
#[derive(Debug)]
pub enum BatchError {
    /// More requests than the `batch_max_requests` setting allows (0: batches off).
    TooMany { max: usize },
    /// The request at `index` failed; nothing of the batch was kept.
    Failed { index: usize, error: RecordError },
}

enum Op {
    Create(String),
    Upsert(String),
    Update(String, String),
    Delete(String, String),
}

/// A batch request that failed, by index; a failure of the batch as a whole (the
/// transaction, the commit) is the first request's.
struct Failure {
    index: usize,
    error: RecordError,
}

impl From<RecordError> for Failure {
    fn from(error: RecordError) -> Self {
        Failure { index: 0, error }
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(err: sea_orm::DbErr) -> Self {
        Failure {
            index: 0,
            error: RecordError::Db(err),
        }
    }
}

/// What one request of a batch did.
enum Done {
    Written(Arc<Collection>, super::Record, bool),
    Deleted,
}

enum Resolved {
    Create,
    Update(String),
    Delete(String),
}

/// A written record's batch response: 200 with the record, or 204 when the view rule
/// hides it from the caller (as a single create or update answers).
fn written_response(
    collection: &Collection,
    record: &super::Record,
    identity: &Identity,
    visible: bool,
) -> (u16, Value) {
    if visible {
        (200, super::read::shape(collection, record, identity))
    } else {
        (204, Value::Null)
    }
}

/// `METHOD /api/collections/{c}/records[/{id}]` as an operation.
fn route(method: &str, url: &str) -> Option<Op> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let rest = path.strip_prefix("/api/collections/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match (method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", [collection, "records"]) => Some(Op::Create((*collection).to_owned())),
        ("PUT", [collection, "records"]) => Some(Op::Upsert((*collection).to_owned())),
        ("PATCH", [collection, "records", id]) => {
            Some(Op::Update((*collection).to_owned(), (*id).to_owned()))
        }
        ("DELETE", [collection, "records", id]) => {
            Some(Op::Delete((*collection).to_owned(), (*id).to_owned()))
        }
        _ => None,
    }
}

impl RecordService {
    /// Run `requests` in order in one transaction, as `identity`. Returns each
    /// response's status and body.
    ///
    /// Fails with `TooMany`, or `Failed` naming the first request that failed.
    pub async fn batch(
        &self,
        identity: &Identity,
        request: &Request,
        requests: Vec<BatchRequest>,
        max: usize,
    ) -> Result<Vec<(u16, Value)>, BatchError> {
        if requests.is_empty() || requests.len() > max {
            return Err(BatchError::TooMany { max });
        }
        let fail = |index: usize| move |error: RecordError| BatchError::Failed { index, error };
        let mut ops = Vec::with_capacity(requests.len());
        for (index, item) in requests.into_iter().enumerate() {
            let op = route(&item.method, &item.url).ok_or_else(|| {
                fail(index)(RecordError::Invalid(format!(
                    "`{} {}` is not a record request",
                    item.method, item.url
                )))
            })?;
            ops.push((op, item.body));
        }
        let shaper = identity.clone();
        let written = self
            .run_write(identity.clone(), request.clone(), move |ctx| {
                Box::pin(async move {
                    let mut out = Vec::with_capacity(ops.len());
                    for (index, (op, body)) in ops.into_iter().enumerate() {
                        let response = ctx
                            .service
                            .batch_one(ctx, op, body)
                            .await
                            .map_err(|error| Failure { index, error })?;
                        out.push(response);
                    }
                    Ok(out)
                })
            })
            .await
            .map_err(|failure: Failure| BatchError::Failed {
                index: failure.index,
                error: failure.error,
            })?;
        let responses = written
            .into_iter()
            .map(|done| match done {
                Done::Written(collection, record, visible) => {
                    written_response(&collection, &record, &shaper, visible)
                }
                Done::Deleted => (204, Value::Null),
            })
            .collect();
        Ok(responses)
    }

    /// One request of a batch, inside the batch's write.
    async fn batch_one(
        &self,
        ctx: &WriteCtx<'_>,
        op: Op,
        body: Map<String, Value>,
    ) -> Result<Done, RecordError> {
        let name = match &op {
            Op::Create(c) | Op::Upsert(c) | Op::Update(c, _) | Op::Delete(c, _) => c.clone(),
        };
        let collection = ctx
            .snapshot
            .get(&name)
            .cloned()
            .ok_or(RecordError::NotFound)?;
        // An upsert updates the record its body names, or creates it.
        let resolved = match op {
            Op::Create(_) => Resolved::Create,
            Op::Update(_, id) => Resolved::Update(id),
            Op::Delete(_, id) => Resolved::Delete(id),
            Op::Upsert(_) => {
                let id = body.get("id").and_then(Value::as_str).map(str::to_owned);
                let exists = match &id {
                    Some(id) => self.find_in(ctx, &collection, id).await.is_ok(),
                    None => false,
                };
                match id {
                    Some(id) if exists => Resolved::Update(id),
                    _ => Resolved::Create,
                }
            }
        };
        match resolved {
            Resolved::Create => {
                let preset = self
                    .prepare_create(&collection, &ctx.identity, &body)
                    .await?;
                let (record, visible) = self.create_in(ctx, &collection, body, preset).await?;
                Ok(Done::Written(collection, record, visible))
            }
            Resolved::Update(id) => {
                let prepared = self
                    .prepare_update(&collection, &id, &ctx.identity, &body)
                    .await?;
                let (record, visible) = self
                    .update_in_txn(ctx, &collection, &id, body, prepared, None)
                    .await?;
                Ok(Done::Written(collection, record, visible))
            }
            Resolved::Delete(id) => {
                ctx.identity
                    .require_scope(&collection.name, crate::identity::Op::Delete)?;
                Self::require_rule(
                    &ctx.identity,
                    &collection,
                    &ctx.snapshot,
                    crate::filter::rules::RuleOp::Delete,
                )?;
                self.delete_in_txn(ctx, &collection, &id, None).await?;
                Ok(Done::Deleted)
            }
        }
    }
}
