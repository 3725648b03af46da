//! The write context: what one write request runs in — its transaction (a savepoint
//! of a group commit on SQLite), the schema snapshot and version it was planned
//! against, the caller and the request — and the hook points a function plugs into.
//!
//! Hooks ([`Hooks`]) run inside the write's transaction after validation and before
//! the row is written; one may change the values or reject the write with a message
//! and field errors, which rolls back everything the request did (host calls made
//! through [`WriteCtx`] included: they run in the same transaction, so on SQLite
//! they never wait on the request's own write lock). One exception keeps creates
//! fast: when the hooks only read ([`Hooks::writes`] is false, as for WASM
//! functions), a single create (not one inside a batch) runs its before-hooks just
//! ahead of its transaction, on a context over the read pool — nothing of the request
//! is written before a create's hooks, so what they see and decide is the same, while
//! no write lock or transaction is held across the guest's call.
//! After the commit, the after-commit chain sees what changed.
//!
//! Which writes fire hooks: creates, updates and deletes made by callers (REST, batch,
//! GraphQL, functions' host calls), including each record a delete cascades to
//! (`cascadeDelete` relations): a hook that guards deletes of a collection is not
//! bypassed by deleting a parent. Basalt's own system writes (token key rotation,
//! verification, password reset, OAuth2 links, the first superuser) do not fire
//! before-hooks, so a function cannot lock users out of signing in; they still
//! produce events, which after-event functions see.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{Record, RecordError, RecordService};
use crate::db::exec::Exec;
use crate::events::outbox::Action;
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::schema::{Collection, Snapshot};
use crate::validation::FieldErrors;

/// What a hook is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOp {
    Create,
    Update,
    Delete,
}

/// A write about to happen, as a before-hook sees it.
#[derive(Debug)]
pub struct Pending<'a> {
    pub op: HookOp,
    pub collection: &'a Collection,
    /// The record's id (a create's, once generated or given).
    pub id: &'a str,
    /// The values to be written, validated: a hook may change them (create and
    /// update). For a delete, the record as stored (changes are ignored).
    pub values: &'a mut Record,
    /// An update's record as stored before it.
    pub existing: Option<&'a Record>,
}

/// A hook's refusal: the write fails with 400, this message and these field errors,
/// and nothing of the request is kept.
#[derive(Debug, Default)]
pub struct Rejection {
    pub message: String,
    pub errors: FieldErrors,
}

/// A committed change, for the after-commit chain.
#[derive(Clone, Debug)]
pub struct Committed {
    pub collection: String,
    pub collection_id: String,
    pub id: String,
    pub action: Action,
    /// Whether the collection is an auth collection (its records are identities).
    pub auth: bool,
}

/// The hook points of the record pipeline. Basalt ships [`NoHooks`]; WASM functions
/// plug in here.
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// Whether any before-hook may run at all; when not, the pipeline skips the
    /// work of preparing them (reading rows a cascade deletes, say).
    fn active(&self) -> bool {
        true
    }

    /// Whether a before-hook may run for `op` on `collection` (so a create on a
    /// collection no hook watches keeps the one-statement path).
    fn fires(&self, _collection: &str, _op: HookOp) -> bool {
        self.active()
    }

    /// Whether a before-hook may write records through its [`WriteCtx`]. Hooks that
    /// only read (WASM functions: their host writes are refused in hooks) answer
    /// `false`, which lets a single create run them ahead of its transaction.
    fn writes(&self) -> bool {
        true
    }

    /// Called inside the write's transaction, after validation, before the row is
    /// written.
    ///
    /// Fails with a [`Rejection`] to refuse the write (and roll the request back).
    fn before<'a>(
        &'a self,
        ctx: &'a WriteCtx<'_>,
        pending: Pending<'a>,
    ) -> BoxFuture<'a, Result<(), Rejection>>;

    /// Called after a commit with what it changed (never for a write rolled back).
    fn after_commit(&self, _committed: &[Committed]) {}
}

/// No hooks: every write goes through as validated.
#[derive(Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn active(&self) -> bool {
        false
    }

    fn writes(&self) -> bool {
        false
    }

    fn before<'a>(
        &'a self,
        _ctx: &'a WriteCtx<'_>,
        _pending: Pending<'a>,
    ) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One write request's context; see the module doc.
pub struct WriteCtx<'c> {
    pub(crate) exec: Exec<'c>,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) version: i64,
    pub(crate) identity: Identity,
    pub(crate) request: Request,
    pub(crate) service: &'c RecordService,
    /// Changes made so far, for the after-commit chain.
    pub(crate) changes: Mutex<Vec<Committed>>,
}

impl std::fmt::Debug for WriteCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteCtx")
            .field("exec", &self.exec)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<'c> WriteCtx<'c> {
    pub(crate) fn new(
        exec: Exec<'c>,
        snapshot: Arc<Snapshot>,
        version: i64,
        identity: Identity,
        request: Request,
        service: &'c RecordService,
    ) -> WriteCtx<'c> {
        WriteCtx {
            exec,
            snapshot,
            version,
            identity,
            request,
            service,
            changes: Mutex::new(Vec::new()),
        }
    }

    /// The schema snapshot the write runs on.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The schema version the snapshot belongs to.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Who the write acts as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The request the write came with (as rules see it).
    pub fn request(&self) -> &Request {
        &self.request
    }

    pub(crate) fn note(&self, change: Committed) {
        if let Ok(mut changes) = self.changes.lock() {
            changes.push(change);
        }
    }

    pub(crate) fn take_changes(&self) -> Vec<Committed> {
        self.changes
            .lock()
            .map(|mut changes| std::mem::take(&mut *changes))
            .unwrap_or_default()
    }

    /// A host call: create a record of `collection` in this same transaction, as this
    /// context's caller, with every rule, validation and hook a create has. Returns
    /// the stored record.
    ///
    /// Fails like [`RecordService::create`]; the calling hook may pass the failure on.
    pub fn create<'a>(
        &'a self,
        collection: &'a str,
        body: serde_json::Map<String, Value>,
    ) -> BoxFuture<'a, Result<Record, RecordError>> {
        Box::pin(async move {
            let planned = self
                .snapshot
                .get(collection)
                .cloned()
                .ok_or(RecordError::NotFound)?;
            let preset = self
                .service
                .prepare_create(&planned, &self.identity, &body)
                .await?;
            let (record, _) = self.service.create_in(self, &planned, body, preset).await?;
            Ok(record)
        })
    }
}
