//! A test implementation of the record pipeline's hooks, proving what a WASM
//! before-hook will rely on: it may change values, reject a write with a message and
//! field errors, and make host calls in the same write context that roll back with
//! it. It acts on collections whose name starts with `hooked`:
//!
//! - create and update: the `title` is upper-cased and `stamp` set to `hooked`;
//! - a title `reject` is refused (`data.title.code` = `hook_rejected`);
//! - a title `audit` creates an `audit` record through the context (a host call), and
//!   `audit-then-reject` does so and then refuses, which must leave no audit record;
//! - a delete of a record titled `KEEP` is refused (cascades included).
//!
//! After-commit calls are logged, so a test can check that only committed changes
//! reach the chain.

use std::sync::Mutex;

use basalt_server::records::{Committed, HookOp, Hooks, Pending, Rejection, WriteCtx};
use basalt_server::validation::FieldErrors;
use futures_util::future::BoxFuture;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct TestHooks {
    /// `(collection, id, action)` of every change the after-commit chain saw.
    pub committed: Mutex<Vec<(String, String, &'static str)>>,
}

fn reject(message: &str) -> Rejection {
    let mut errors = FieldErrors::default();
    errors.add("title", "hook_rejected", message.to_owned());
    Rejection {
        message: message.to_owned(),
        errors,
    }
}

impl Hooks for TestHooks {
    fn before<'a>(
        &'a self,
        ctx: &'a WriteCtx<'_>,
        pending: Pending<'a>,
    ) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            if !pending.collection.name.starts_with("hooked") {
                return Ok(());
            }
            let title = pending
                .values
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if pending.op == HookOp::Delete {
                return if title == "KEEP" {
                    Err(reject("This record is kept."))
                } else {
                    Ok(())
                };
            }
            if title == "audit" || title == "audit-then-reject" {
                let mut body = serde_json::Map::new();
                let note = format!("{} {}", pending.collection.name, pending.id);
                body.insert("note".into(), Value::String(note));
                ctx.create("audit", body)
                    .await
                    .map_err(|e| reject(&format!("the audit record failed: {e}")))?;
            }
            if title == "reject" || title == "audit-then-reject" {
                return Err(reject("Titles may not say reject."));
            }
            if pending.values.contains_key("title") {
                pending
                    .values
                    .insert("title".into(), Value::String(title.to_uppercase()));
            }
            pending
                .values
                .insert("stamp".into(), Value::String("hooked".into()));
            Ok(())
        })
    }

    fn after_commit(&self, committed: &[Committed]) {
        if let Ok(mut log) = self.committed.lock() {
            log.extend(
                committed
                    .iter()
                    .map(|c| (c.collection.clone(), c.id.clone(), c.action.as_str())),
            );
        }
    }
}
