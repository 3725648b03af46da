//! Subscriptions: a stream of one collection's record events from the same feed as
//! SSE realtime, each checked with the subscriber's view rule and `where` and
//! shaped with their field rights.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::Error;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::Ctx;
use crate::filter::Expr;

/// One subscription held on a connection; freed when its stream is dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot of `count`, or `None` when `max` are held already.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type Delivered = Result<(&'static str, Value), Error>;

/// The events of `collection` the caller may see that match `condition`.
///
/// Fails when subscriptions are not available on this transport, or the connection
/// holds its most subscriptions already.
pub fn events(
    ctx: &Ctx,
    collection: String,
    condition: Option<Expr>,
) -> Result<BoxStream<'static, Delivered>, Error> {
    let Some(session) = &ctx.session else {
        return Err(super::problem_error(crate::errors::Problem::new(
            crate::errors::Code::InvalidRequest,
            "Subscriptions are served over WebSocket (graphql-transport-ws) at /graphql.",
        )));
    };
    let slot = Slot::take(&session.subscriptions, session.max_subscriptions).ok_or_else(|| {
        super::problem_error(crate::errors::Problem::new(
            crate::errors::Code::InvalidRequest,
            format!(
                "At most {} subscriptions per connection.",
                session.max_subscriptions
            ),
        ))
    })?;
    let receiver = session.events.subscribe();
    let records = ctx.records.clone();
    let identity = ctx.identity.clone();
    let request = ctx.request("GET").into_owned();
    let state = (receiver, slot);
    Ok(futures_util::stream::unfold(state, move |(mut receiver, slot)| {
        let records = records.clone();
        let identity = identity.clone();
        let request = request.clone();
        let collection = collection.clone();
        let condition = condition.clone();
        async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a GraphQL subscription fell behind the event bus");
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                };
                if event.collection != collection {
                    continue;
                }
                let Some(record) = crate::realtime::event_record(&event) else {
                    continue;
                };
                let (action, shaped) = if event.action == "deleted" {
                    let shaped = records
                        .view_gone(&collection, &record, &identity, &request, condition.as_ref())
                        .await;
                    ("DELETE", shaped)
                } else {
                    let shaped = records
                        .view_event(&collection, &record, &identity, &request, condition.as_ref(), None)
                        .await;
                    let action = if event.action == "created" { "CREATE" } else { "UPDATE" };
                    (action, shaped)
                };
                match shaped {
                    Ok(Some(record)) => return Some((Ok((action, record)), (receiver, slot))),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "a GraphQL subscription could not check an event");
                    }
                }
            }
        }
    })
    .boxed())
}
