//! WASM functions: user components deployed through the API, kept in `_functions`
//! (every version), compiled once (cached serialized on disk by digest) and run in
//! a fresh sandbox per call ([`runtime`]): as before-write hooks inside the record
//! pipeline (this service is the pipeline's [`Hooks`]) and as HTTP routes at
//! `/api/functions/{name}/…`. Every call is logged in `_invocations` (written in
//! batches off the request) and counted in `/metrics`.

pub mod cron;
pub mod manifest;
pub mod outbound;
pub mod runtime;
pub mod schedules;
pub mod triggers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Map, Value};

use crate::db::Db;
use crate::db::entities::{functions, invocations};
use crate::errors::{Code, Problem};
use crate::identity::{ApiKey, Identity};
use crate::records::{HookOp, Hooks, Pending, RecordService, Rejection, WriteCtx};
use crate::telemetry::FunctionMetrics;
use crate::validation::FieldErrors;
pub use manifest::{Limits, Manifest, Trigger};
use runtime::{CallCtx, HttpFailure, Outcome, Report, Runtime, Stop};

/// One deployed version, compiled and linked.
pub struct Deployed {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub manifest: Manifest,
    pub triggers: Vec<Trigger>,
    pub digest: String,
    pub size: usize,
    pub created: DateTime<Utc>,
    pub hooks: bool,
    pub http: bool,
    /// Whether it exports `triggers` (after-event and schedule calls).
    pub worker: bool,
    exports: runtime::Resolved,
    service: Option<Identity>,
    outbound: outbound::Outbound,
    /// The next hook call's instance, made ahead of it.
    warm_hook: runtime::WarmHook,
    /// The next HTTP call's instance, made ahead of it.
    warm_http: runtime::WarmHttp,
}

impl std::fmt::Debug for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployed")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Deployed {
    /// The function as the API shows it.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "enabled": self.manifest.enabled,
            "triggers": self.manifest.triggers,
            "scopes": self.manifest.scopes,
            "limits": self.manifest.limits,
            "exports": {"hooks": self.hooks, "http": self.http, "triggers": self.worker},
            "filter": self.manifest.filter,
            "retries": self.manifest.retries,
            "schedules": self.manifest.schedules.iter().zip(FunctionService::next_runs(self)).map(|(s, (_, next))| serde_json::json!({
                "cron": s.cron,
                "timezone": s.timezone,
                "catchUp": s.catch_up,
                "next": next.map(|n| n.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            })).collect::<Vec<_>>(),
            "outbound": self.manifest.outbound,
            "digest": self.digest,
            "size": self.size,
            "created": self.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

/// A failed deploy or change.
#[derive(Debug)]
pub enum DeployError {
    /// The manifest's fields (400 with per-field errors).
    Invalid(FieldErrors),
    /// The component (400 with the reason).
    Component(String),
    NotFound,
    Db(sea_orm::DbErr),
}

impl DeployError {
    pub fn problem(&self) -> Problem {
        match self {
            DeployError::Invalid(fields) => Problem::new(
                Code::ValidationFailed,
                "The function's manifest is not valid.",
            )
            .with_fields(fields.clone()),
            DeployError::Component(message) => Problem::new(Code::InvalidRequest, message.clone()),
            DeployError::NotFound => Problem::new(Code::NotFound, "No such function."),
            DeployError::Db(e) => Problem::from_db(e),
        }
    }
}

/// An HTTP function's answer.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

/// What an HTTP route call brings.
#[derive(Debug)]
pub struct HttpCall {
    pub caller: Identity,
    pub method: String,
    /// The path after `/api/functions/{name}`, with its query.
    pub path_and_query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    pub request: crate::filter::compile::Request,
}

/// Where functions live; see the module doc.
pub struct FunctionService {
    runtime: Arc<Runtime>,
    db: Db,
    records: OnceLock<(RecordService, Arc<crate::schema::SchemaService>)>,
    live: arc_swap::ArcSwap<HashMap<String, Arc<Deployed>>>,
    /// Whether any live function has a before-write trigger.
    any_hooks: AtomicBool,
    cache_dir: PathBuf,
    deploying: tokio::sync::Mutex<()>,
    metrics: FunctionMetrics,
    log: tokio::sync::mpsc::Sender<invocations::Model>,
    log_rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<invocations::Model>>>,
    /// When dropped invocation rows were last mentioned in the server's log (ms since
    /// the epoch).
    log_dropped_said: std::sync::atomic::AtomicI64,
    /// The functions queue's channel and names while the consumer is connected (for
    /// dead letters and the queue's binding).
    amqp_link: std::sync::Mutex<Option<triggers::Link>>,
    /// Whether the functions queue is bound to the events exchange now.
    queue_bound: AtomicBool,
    /// Woken when the live functions change (the queue's binding follows them).
    live_changed: tokio::sync::Notify,
    /// Bumped by each deploy, change or delete made through this instance (other
    /// instances are told of it).
    changed: tokio::sync::watch::Sender<u64>,
    /// Whether after-event triggers read the outbox by cursors (no broker).
    outbox_cursors: AtomicBool,
    /// The pool trigger, retry and schedule bookkeeping polls on (the events
    /// dispatcher's), so it never competes with requests or shows in their counts.
    poll_db: OnceLock<Db>,
}

impl std::fmt::Debug for FunctionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionService").finish_non_exhaustive()
    }
}

/// Invocation rows waiting to be written at most (more are dropped and counted).
const LOG_QUEUE: usize = 10_000;

/// Invocation rows written together at most.
const LOG_BATCH: usize = 500;

fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// An id for a row written often (an invocation, a delivery): time-ordered, so its
/// inserts append to the primary key's index instead of dirtying a random page of it
/// each time. Milliseconds, then this process's random tag, then a counter: unique
/// across instances without asking the kernel for randomness on every call.
fn ordered_id() -> String {
    use std::sync::atomic::AtomicU64;
    static TAG: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tag = *TAG.get_or_init(|| {
        // A v7 id's last bytes are random.
        let [.., a, b, c, d] = uuid::Uuid::now_v7().into_bytes();
        u32::from_le_bytes([a, b, c, d])
    });
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{millis:012x}{tag:08x}{:012x}", n & 0xffff_ffff_ffff)
}

fn random_id() -> String {
    crate::password::random_string(15)
        .unwrap_or_else(|_| format!("{:x}", Utc::now().timestamp_nanos_opt().unwrap_or(0)))
        .to_lowercase()
}

impl FunctionService {
    /// The service with no function loaded yet ([`FunctionService::refresh`] loads).
    ///
    /// Fails when the WASM engine cannot start.
    pub fn new(
        db: Db,
        data_dir: &std::path::Path,
        metrics: FunctionMetrics,
    ) -> Result<FunctionService, String> {
        let runtime = Arc::new(Runtime::new().map_err(|e| format!("the WASM engine: {e}"))?);
        let (log, log_rx) = tokio::sync::mpsc::channel(LOG_QUEUE);
        Ok(FunctionService {
            runtime,
            db,
            records: OnceLock::new(),
            live: arc_swap::ArcSwap::from_pointee(HashMap::new()),
            any_hooks: AtomicBool::new(false),
            cache_dir: data_dir.join("functions"),
            deploying: tokio::sync::Mutex::new(()),
            metrics,
            log,
            log_rx: std::sync::Mutex::new(Some(log_rx)),
            log_dropped_said: std::sync::atomic::AtomicI64::new(0),
            amqp_link: std::sync::Mutex::new(None),
            queue_bound: AtomicBool::new(false),
            live_changed: tokio::sync::Notify::new(),
            changed: tokio::sync::watch::Sender::new(0),
            outbox_cursors: AtomicBool::new(false),
            poll_db: OnceLock::new(),
        })
    }

    /// Whether after-event triggers read the outbox by cursors (there is no broker):
    /// then a deploy with such triggers starts its cursor at the newest event.
    pub fn set_outbox_cursors(&self, on: bool) {
        self.outbox_cursors.store(on, Ordering::Release);
    }

    /// The pool for trigger, retry and schedule bookkeeping (set once, at start;
    /// until then the main one).
    pub fn set_poll_db(&self, db: Db) {
        let _ = self.poll_db.set(db);
    }

    fn poll(&self) -> &Db {
        self.poll_db.get().unwrap_or(&self.db)
    }

    /// Give the service the records it calls into (set once, at start).
    pub fn attach(&self, records: RecordService, schema: Arc<crate::schema::SchemaService>) {
        let _ = self.records.set((records, schema));
    }

    fn records(&self) -> Result<RecordService, Problem> {
        self.records
            .get()
            .map(|(r, _)| r.clone())
            .ok_or_else(|| Problem::new(Code::Internal, "Functions are not ready yet."))
    }

    fn snapshot(&self) -> Result<Arc<crate::schema::Snapshot>, String> {
        self.records
            .get()
            .map(|(_, s)| s.snapshot())
            .ok_or_else(|| "Functions are not ready yet.".to_owned())
    }

    /// The call counters this service keeps (for `/metrics`).
    pub fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }

    /// Live functions, by name.
    pub fn live(&self) -> Arc<HashMap<String, Arc<Deployed>>> {
        self.live.load_full()
    }

    /// A component compiled: from the disk cache when this engine wrote it, else
    /// compiled now (off the async threads) and cached.
    async fn compiled(
        self: &Arc<Self>,
        digest: &str,
        bytes: Arc<Vec<u8>>,
    ) -> Result<wasmtime::component::Component, String> {
        let path = self.cache_dir.join(format!("{digest}.cwasm"));
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Ok(cached) = std::fs::read(&path)
                && let Some(component) = this.runtime.load(&cached)
            {
                return Ok(component);
            }
            let component = this
                .runtime
                .compile(&bytes)
                .map_err(|e| format!("The file is not a valid WASI component: {e:#}"))?;
            match component.serialize() {
                Ok(serialized) => {
                    let _ = std::fs::create_dir_all(&this.cache_dir);
                    // Written whole then renamed: a reader never sees half a file.
                    let tmp = path.with_extension(format!("tmp{}", random_id()));
                    if std::fs::write(&tmp, serialized).is_ok() {
                        let _ = std::fs::rename(&tmp, &path);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a compiled function cannot be cached"),
            }
            Ok(component)
        })
        .await
        .map_err(|e| format!("compiling stopped: {e}"))?
    }

    /// Compile, check against the world and link one stored version.
    async fn prepare(
        self: &Arc<Self>,
        row: &functions::Model,
        manifest: Manifest,
    ) -> Result<Deployed, String> {
        let triggers = manifest
            .check()
            .map_err(|e| format!("the manifest: {e:?}"))?;
        let bytes = Arc::new(row.component.clone());
        let component = self.compiled(&row.digest, Arc::clone(&bytes)).await?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.runtime.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let hooks = exports.iter().any(|e| e == runtime::HOOKS_EXPORT);
        let http = exports.iter().any(|e| e.starts_with(runtime::HTTP_EXPORT));
        let worker = exports.iter().any(|e| e == runtime::TRIGGERS_EXPORT);
        if !hooks && !http && !worker {
            return Err(format!(
                "The component exports none of `{}`, `wasi:http/incoming-handler@0.2.x` and `{}` (it exports: {}). Build it for a world of basalt:functions@0.1.0 (`hook`, `http`, `function`, `worker` or `all`).",
                runtime::HOOKS_EXPORT,
                runtime::TRIGGERS_EXPORT,
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            ));
        }
        for trigger in &triggers {
            match trigger {
                Trigger::Http if !http => {
                    return Err("The trigger `http` needs the export `wasi:http/incoming-handler@0.2.x`, which the component does not have.".into());
                }
                Trigger::Before { .. } if !hooks => {
                    return Err(format!(
                        "Before-write triggers need the export `{}`, which the component does not have.",
                        runtime::HOOKS_EXPORT
                    ));
                }
                Trigger::After { .. } if !worker => {
                    return Err(format!(
                        "After-event triggers need the export `{}`, which the component does not have.",
                        runtime::TRIGGERS_EXPORT
                    ));
                }
                _ => {}
            }
        }
        if !manifest.schedules.is_empty() && !worker {
            return Err(format!(
                "Schedules need the export `{}`, which the component does not have.",
                runtime::TRIGGERS_EXPORT
            ));
        }
        let pre = self
            .runtime
            .link(&component)
            .map_err(|e| format!("The component needs what Basalt does not give: {e:#}"))?;
        let resolved = runtime::resolve(&pre, hooks, http)?;
        let service = match &manifest.scopes {
            None => None,
            Some(scopes) => {
                let snapshot = self.snapshot()?;
                let scopes = crate::auth::keys::parse_scopes(scopes, &snapshot)
                    .map_err(|e| format!("the scopes: {:?}", e.into_map()))?;
                Some(Identity::ApiKey(Arc::new(ApiKey {
                    id: format!("fn:{}", row.name),
                    name: row.name.clone(),
                    scopes,
                })))
            }
        };
        let outbound = outbound::Outbound::new(&manifest.outbound);
        Ok(Deployed {
            id: row.id.clone(),
            name: row.name.clone(),
            version: u32::try_from(row.version).unwrap_or(0),
            manifest,
            triggers,
            digest: row.digest.clone(),
            size: row.component.len(),
            created: row.created,
            hooks,
            http,
            worker,
            exports: resolved,
            service,
            outbound,
            warm_hook: runtime::WarmSlot::new(&self.runtime),
            warm_http: runtime::WarmSlot::new(&self.runtime),
        })
    }

    fn publish(&self, live: HashMap<String, Arc<Deployed>>) {
        let hooks = live.values().any(|d| {
            d.manifest.enabled
                && d.triggers
                    .iter()
                    .any(|t| matches!(t, Trigger::Before { .. }))
        });
        self.live.store(Arc::new(live));
        self.any_hooks.store(hooks, Ordering::Release);
        self.live_changed.notify_one();
    }

    /// Each deploy, change or delete made through this instance, as it lands.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Load what `_functions` says is live (the newest row of each name unless
    /// deleted), reusing versions already loaded. Run at start and periodically,
    /// so every instance on one database serves the same versions.
    ///
    /// Fails when `_functions` cannot be read.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), sea_orm::DbErr> {
        // Held from reading the heads to publishing: a deploy of this instance cannot
        // land in between and be undone by a map built from older heads.
        let _deploying = self.deploying.lock().await;
        let heads: Vec<(String, String, i32, Option<DateTime<Utc>>)> = functions::Entity::find()
            .select_only()
            .column(functions::Column::Id)
            .column(functions::Column::Name)
            .column(functions::Column::Version)
            .column(functions::Column::Deleted)
            .order_by_asc(functions::Column::Name)
            .order_by_desc(functions::Column::Version)
            .into_tuple()
            .all(self.db.conn())
            .await?;
        let mut newest: HashMap<String, (String, i32, bool)> = HashMap::new();
        for (id, name, version, deleted) in heads {
            newest
                .entry(name)
                .or_insert((id, version, deleted.is_some()));
        }
        let current = self.live();
        let unchanged = current.len() == newest.values().filter(|(_, _, d)| !d).count()
            && newest.iter().all(|(name, (_, version, deleted))| {
                *deleted
                    || current
                        .get(name)
                        .is_some_and(|d| i64::from(d.version) == i64::from(*version))
            });
        if unchanged {
            return Ok(());
        }
        let mut live = HashMap::new();
        for (name, (id, version, deleted)) in newest {
            if deleted {
                continue;
            }
            if let Some(d) = current
                .get(&name)
                .filter(|d| i64::from(d.version) == i64::from(version))
            {
                live.insert(name, Arc::clone(d));
                continue;
            }
            let Some(row) = functions::Entity::find_by_id(id)
                .one(self.db.conn())
                .await?
            else {
                continue;
            };
            let manifest: Manifest = match serde_json::from_str(&row.manifest) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "a stored manifest does not parse");
                    continue;
                }
            };
            match self.prepare(&row, manifest).await {
                Ok(d) => {
                    live.insert(name, Arc::new(d));
                }
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "a stored function cannot be loaded")
                }
            }
        }
        self.publish(live);
        Ok(())
    }

    /// Deploy a new version of `manifest.name` with `component` (a first version, or
    /// one replacing the live one atomically: calls running finish on the old).
    ///
    /// Fails with `Invalid` for a bad manifest, `Component` for a component that is
    /// not one, lacks an export its triggers need or imports what Basalt does not
    /// give.
    pub async fn deploy(
        self: &Arc<Self>,
        manifest: Manifest,
        component: Vec<u8>,
    ) -> Result<Arc<Deployed>, DeployError> {
        manifest.check().map_err(DeployError::Invalid)?;
        self.store_version(manifest, component).await
    }

    async fn store_version(
        self: &Arc<Self>,
        manifest: Manifest,
        component: Vec<u8>,
    ) -> Result<Arc<Deployed>, DeployError> {
        if let Some(scopes) = &manifest.scopes {
            let snapshot = self.snapshot().map_err(DeployError::Component)?;
            crate::auth::keys::parse_scopes(scopes, &snapshot).map_err(DeployError::Invalid)?;
        }
        let _deploying = self.deploying.lock().await;
        let last: Option<i32> = functions::Entity::find()
            .select_only()
            .column(functions::Column::Version)
            .filter(functions::Column::Name.eq(&manifest.name))
            .order_by_desc(functions::Column::Version)
            .into_tuple()
            .one(self.db.conn())
            .await
            .map_err(DeployError::Db)?;
        let row = functions::Model {
            id: random_id(),
            name: manifest.name.clone(),
            version: last.unwrap_or(0) + 1,
            manifest: serde_json::to_string(&manifest).unwrap_or_default(),
            digest: digest(&component),
            component,
            enabled: manifest.enabled,
            deleted: None,
            created: now_ms(),
        };
        let deployed = Arc::new(
            self.prepare(&row, manifest)
                .await
                .map_err(DeployError::Component)?,
        );
        if self.outbox_cursors.load(Ordering::Acquire)
            && deployed
                .triggers
                .iter()
                .any(|t| matches!(t, Trigger::After { .. }))
        {
            // From its deploy on: every event committed after this point reaches it.
            self.start_cursor(&deployed.name)
                .await
                .map_err(DeployError::Db)?;
        }
        let active: functions::ActiveModel = row.into();
        active
            .insert(self.db.conn())
            .await
            .map_err(DeployError::Db)?;
        let mut live = (*self.live()).clone();
        live.insert(deployed.name.clone(), Arc::clone(&deployed));
        self.publish(live);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        // On RabbitMQ, the functions queue is bound before the deploy answers: the
        // next commit's event reaches the new trigger.
        self.sync_binding().await;
        Ok(deployed)
    }

    /// Change a live function's manifest (triggers, scopes, limits, enabled): a new
    /// version with the same component.
    ///
    /// Fails like [`FunctionService::deploy`], or `NotFound`.
    pub async fn change(
        self: &Arc<Self>,
        name: &str,
        patch: &Map<String, Value>,
    ) -> Result<Arc<Deployed>, DeployError> {
        let current = self
            .live()
            .get(name)
            .cloned()
            .ok_or(DeployError::NotFound)?;
        let mut manifest = serde_json::to_value(&current.manifest).unwrap_or_default();
        if let Some(object) = manifest.as_object_mut() {
            for (key, value) in patch {
                object.insert(key.clone(), value.clone());
            }
        }
        let manifest: Manifest = serde_json::from_value(manifest).map_err(|e| {
            let mut errors = FieldErrors::default();
            errors.add("manifest", "validation_invalid_value", e.to_string());
            DeployError::Invalid(errors)
        })?;
        if manifest.name != name {
            let mut errors = FieldErrors::default();
            errors.add(
                "name",
                "validation_invalid_value",
                "A function cannot be renamed; deploy it under the new name.".into(),
            );
            return Err(DeployError::Invalid(errors));
        }
        manifest.check().map_err(DeployError::Invalid)?;
        let row = functions::Entity::find_by_id(current.id.clone())
            .one(self.db.conn())
            .await
            .map_err(DeployError::Db)?
            .ok_or(DeployError::NotFound)?;
        self.store_version(manifest, row.component).await
    }

    /// Delete a function: its newest row is marked deleted (history stays).
    ///
    /// Fails with `NotFound`, or when `_functions` cannot be written.
    pub async fn delete(&self, name: &str) -> Result<(), DeployError> {
        let _deploying = self.deploying.lock().await;
        let current = self
            .live()
            .get(name)
            .cloned()
            .ok_or(DeployError::NotFound)?;
        let row = functions::Entity::find_by_id(current.id.clone())
            .one(self.db.conn())
            .await
            .map_err(DeployError::Db)?
            .ok_or(DeployError::NotFound)?;
        let mut active: functions::ActiveModel = row.into();
        active.deleted = Set(Some(now_ms()));
        active
            .update(self.db.conn())
            .await
            .map_err(DeployError::Db)?;
        let mut live = (*self.live()).clone();
        live.remove(name);
        self.publish(live);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Every version of `name`, newest first (without the components).
    ///
    /// Fails when `_functions` cannot be read.
    pub async fn history(&self, name: &str) -> Result<Vec<Value>, sea_orm::DbErr> {
        let rows: Vec<VersionRow> = functions::Entity::find()
            .select_only()
            .column(functions::Column::Id)
            .column(functions::Column::Version)
            .column(functions::Column::Manifest)
            .column(functions::Column::Digest)
            .column(functions::Column::Enabled)
            .column(functions::Column::Deleted)
            .column(functions::Column::Created)
            .filter(functions::Column::Name.eq(name))
            .order_by_desc(functions::Column::Version)
            .into_tuple()
            .all(self.db.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, version, manifest, digest, enabled, deleted, created)| {
                serde_json::json!({
                    "id": id,
                    "version": version,
                    "manifest": serde_json::from_str::<Value>(&manifest).unwrap_or(Value::Null),
                    "digest": digest,
                    "enabled": enabled,
                    "deleted": deleted.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
            })
            .collect())
    }

    /// The newest invocations, of one function or all.
    ///
    /// Fails when `_invocations` cannot be read.
    pub async fn invocations(
        &self,
        name: Option<&str>,
        limit: u64,
    ) -> Result<Vec<invocations::Model>, sea_orm::DbErr> {
        let mut query = invocations::Entity::find().order_by_desc(invocations::Column::Started);
        if let Some(name) = name {
            query = query.filter(invocations::Column::Function.eq(name));
        }
        query.limit(limit).all(self.db.conn()).await
    }

    fn record(
        &self,
        d: &Deployed,
        call: Finished,
        outcome: &str,
        error: Option<String>,
        report: &Report,
    ) {
        let Finished {
            trigger,
            invocation,
            started,
            elapsed,
        } = call;
        self.metrics.observe(&d.name, outcome, elapsed);
        let logs = if report.logs.is_empty() && report.dropped_logs == 0 {
            "[]".to_owned()
        } else {
            let mut logs = serde_json::to_value(&report.logs).unwrap_or(Value::Array(Vec::new()));
            if report.dropped_logs > 0
                && let Some(lines) = logs.as_array_mut()
            {
                lines.push(serde_json::json!({"level": "warn", "message": format!("{} more log lines dropped", report.dropped_logs)}));
            }
            logs.to_string()
        };
        let row = invocations::Model {
            id: invocation,
            function: d.name.clone(),
            version: i32::try_from(d.version).unwrap_or(i32::MAX),
            trigger,
            started,
            duration_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            outcome: outcome.to_owned(),
            error,
            logs,
        };
        if self.log.try_send(row).is_err() {
            self.log_row_dropped(&d.name);
        }
    }

    /// Count a row the invocation log had no room for; say so at most every 10 s.
    fn log_row_dropped(&self, function: &str) {
        let dropped = self.metrics.invocations_dropped.inc() + 1;
        let now = Utc::now().timestamp_millis();
        let said = self.log_dropped_said.load(Ordering::Relaxed);
        if now - said >= 10_000
            && self
                .log_dropped_said
                .compare_exchange(said, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                function,
                dropped_so_far = dropped,
                "the invocation log is behind; rows are being dropped (basalt_function_invocations_dropped_total counts them)"
            );
        }
    }

    /// Write `rows` to `_invocations`: on the SQLite record engine, as one job of
    /// its group commit (a cached one-row insert per row; no second writer polling
    /// for SQLite's lock), elsewhere as one multi-row insert.
    ///
    /// Fails when the database refuses them.
    async fn write_invocations(&self, rows: Vec<invocations::Model>) -> Result<(), sea_orm::DbErr> {
        if rows.is_empty() {
            return Ok(());
        }
        let Some(lite) = self.db.lite() else {
            return invocations::Entity::insert_many(
                rows.into_iter()
                    .map(|r| invocations::ActiveModel::from(r).reset_all()),
            )
            .exec(self.db.conn())
            .await
            .map(|_| ());
        };
        let statements: Vec<sea_orm::Statement> = rows.into_iter().map(lite_insert).collect();
        lite.writer
            .write(move |exec, _| {
                Box::pin(async move {
                    for statement in statements {
                        exec.execute(statement).await?;
                    }
                    Ok::<(), sea_orm::DbErr>(())
                })
            })
            .await
    }

    /// Write invocation rows in batches, and prune those older than `retention`,
    /// until `stop`.
    pub async fn run_log(
        self: Arc<Self>,
        retention: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(mut rx) = self.log_rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let mut last_prune = Instant::now() - Duration::from_secs(3600);
        let mut batch = Vec::new();
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, LOG_BATCH) => {
                    if n == 0 { break; }
                    n
                }
                () = stop.cancelled() => {
                    rx.close();
                    while rx.recv_many(&mut batch, LOG_QUEUE).await > 0 {}
                    let _ = self.write_invocations(std::mem::take(&mut batch)).await;
                    break;
                }
            };
            if let Err(e) = self.write_invocations(std::mem::take(&mut batch)).await {
                tracing::warn!(error = %e, rows = n, "invocation rows were not written");
            }
            if last_prune.elapsed() > retention.min(Duration::from_secs(600)) {
                last_prune = Instant::now();
                let cutoff = Utc::now()
                    - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
                if let Err(e) = invocations::Entity::delete_many()
                    .filter(invocations::Column::Started.lt(cutoff))
                    .exec(self.db.conn())
                    .await
                {
                    tracing::warn!(error = %e, "old invocation rows were not pruned");
                }
            }
            // Batches form while the last one is written; a full one means more are
            // waiting, so the next is written at once.
            if n < LOG_BATCH {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Reload from `_functions` every `every` (other instances' deploys), until `stop`.
    pub async fn run_refresh(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "functions were not reloaded");
            }
        }
    }

    fn call_ctx(
        &self,
        d: &Deployed,
        caller: Identity,
        request: crate::filter::compile::Request,
        in_hook: bool,
    ) -> Result<Arc<CallCtx>, Problem> {
        Ok(Arc::new(CallCtx {
            function: d.name.clone(),
            version: d.version,
            invocation: ordered_id(),
            caller,
            service: d.service.clone(),
            records: self.records()?,
            request,
            in_hook,
        }))
    }

    /// Call the HTTP function `name`.
    ///
    /// Fails with `NotFound` (no such enabled HTTP function), `FunctionTimeout` or
    /// `FunctionFailed` (logged in `_invocations` with the cause).
    pub async fn http(&self, name: &str, call: HttpCall) -> Result<HttpAnswer, Problem> {
        let d = self
            .live()
            .get(name)
            .filter(|d| d.manifest.enabled && d.triggers.contains(&Trigger::Http))
            .cloned()
            .ok_or_else(|| Problem::new(Code::NotFound, "No such function."))?;
        let Some(pre) = d.exports.http.clone() else {
            return Err(Problem::new(Code::NotFound, "No such function."));
        };
        let mut builder = hyper::Request::builder()
            .method(call.method.as_str())
            .uri(format!("http://localhost{}", call.path_and_query));
        for (k, v) in &call.headers {
            builder = builder.header(k.as_str(), v.as_slice());
        }
        let request = builder
            .body(http_body_util::Full::new(call.body))
            .map_err(|e| {
                Problem::new(
                    Code::InvalidRequest,
                    format!("The request cannot be passed on: {e}."),
                )
            })?;
        let ctx = self.call_ctx(&d, call.caller, call.request, false)?;
        let invocation = ctx.invocation.clone();
        let started_at = now_ms();
        let started = Instant::now();
        let permit = self.runtime.permit().await;
        let (store, proxy) =
            d.warm_http
                .store_for(&self.runtime, ctx, &d.manifest.limits, &d.outbound);
        if proxy.is_some() {
            self.metrics.warm_starts.inc();
        }
        let max = usize::try_from(d.manifest.limits.output_kb * 1024).unwrap_or(usize::MAX);
        // Epochs stop a guest running code; this stops one waiting on the host.
        let limit =
            Duration::from_millis(d.manifest.limits.timeout_ms) + Duration::from_millis(500);
        let (spent, mut spent_rx) = tokio::sync::oneshot::channel();
        let outcome = tokio::time::timeout(
            limit,
            runtime::call_http(store, &pre, proxy, request, max, spent),
        )
        .await;
        let elapsed = started.elapsed();
        self.after_call(&d, permit, spent_rx.try_recv().ok(), Export::Http);
        let (report, result) = match outcome {
            Ok(r) => r,
            Err(_) => (
                Report {
                    stopped: Some(Stop::Timeout),
                    ..Report::default()
                },
                Err(HttpFailure::NoResponse),
            ),
        };
        match result {
            Ok((parts, body)) => {
                self.record(
                    &d,
                    finished("http".into(), invocation, started_at, elapsed),
                    "ok",
                    None,
                    &report,
                );
                Ok(HttpAnswer {
                    status: parts.status.as_u16(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                        .collect(),
                    body,
                })
            }
            Err(failure) => {
                let (outcome, problem, cause) = failed(&report, &failure, max);
                self.record(
                    &d,
                    finished("http".into(), invocation, started_at, elapsed),
                    outcome,
                    Some(cause.clone()),
                    &report,
                );
                tracing::warn!(function = %d.name, version = d.version, cause = %cause, "a function call failed");
                Err(problem)
            }
        }
    }

    /// After a call: its store is dropped (its memory reset) and its slot freed off
    /// the caller's path, then the function's next instance of `export` is made
    /// ahead of its call (see [`runtime::WarmSlot`]).
    fn after_call(
        &self,
        d: &Arc<Deployed>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        spent: Option<wasmtime::Store<runtime::State>>,
        export: Export,
    ) {
        let claimed = match export {
            Export::Hooks => d.exports.hooks.is_some() && d.warm_hook.claim(),
            Export::Http => d.exports.http.is_some() && d.warm_http.claim(),
        };
        // Made as nobody, unable to write; the call's own context replaces it.
        let ahead = claimed.then(|| {
            self.records().ok().map(|records| {
                Arc::new(CallCtx {
                    function: d.name.clone(),
                    version: d.version,
                    invocation: String::new(),
                    caller: Identity::Anonymous,
                    service: d.service.clone(),
                    records,
                    request: crate::filter::compile::Request::default(),
                    in_hook: true,
                })
            })
        });
        let runtime = Arc::clone(&self.runtime);
        let d = Arc::clone(d);
        tokio::spawn(async move {
            drop(spent);
            drop(permit);
            let ahead = match ahead {
                None => return,
                Some(Some(ahead)) => ahead,
                // Claimed but not ready to serve: end the claim.
                Some(None) => {
                    match export {
                        Export::Hooks => d.warm_hook.fill(None),
                        Export::Http => d.warm_http.fill(None),
                    }
                    return;
                }
            };
            let (limits, outbound) = (&d.manifest.limits, &d.outbound);
            match (export, &d.exports.hooks, &d.exports.http) {
                (Export::Hooks, Some(pre), _) => {
                    d.warm_hook
                        .make(&runtime, ahead, limits, outbound, async |store| {
                            runtime::instantiate_hook(store, pre).await
                        })
                        .await;
                }
                (Export::Http, _, Some(pre)) => {
                    d.warm_http
                        .make(&runtime, ahead, limits, outbound, async |store| {
                            runtime::instantiate_http(store, pre).await
                        })
                        .await;
                }
                _ => {}
            }
        });
    }

    async fn run_hook(
        &self,
        d: &Arc<Deployed>,
        ctx: &WriteCtx<'_>,
        op: HookOp,
        write: runtime::Write,
    ) -> Result<Outcome, Rejection> {
        let op_name = match op {
            HookOp::Create => "before-create",
            HookOp::Update => "before-update",
            HookOp::Delete => "before-delete",
        };
        let trigger = format!("{}.{op_name}", write.collection);
        let Some(pre) = &d.exports.hooks else {
            return Ok(Outcome::Unchanged);
        };
        let call = match self.call_ctx(d, ctx.identity().clone(), ctx.request().clone(), true) {
            Ok(c) => c,
            Err(_) => return Err(hook_failed()),
        };
        let invocation = call.invocation.clone();
        let started_at = now_ms();
        let started = Instant::now();
        let permit = self.runtime.permit().await;
        let (mut store, hook) =
            d.warm_hook
                .store_for(&self.runtime, call, &d.manifest.limits, &d.outbound);
        if hook.is_some() {
            self.metrics.warm_starts.inc();
        }
        let limit =
            Duration::from_millis(d.manifest.limits.timeout_ms) + Duration::from_millis(500);
        let result =
            tokio::time::timeout(limit, runtime::call_hook(&mut store, pre, hook, op, write)).await;
        let report = runtime::report(&mut store);
        let elapsed = started.elapsed();
        self.after_call(d, permit, Some(store), Export::Hooks);
        let result = match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(trap)) => Err(HttpFailure::Trap(trap)),
            Err(_) => Err(HttpFailure::NoResponse),
        };
        match result {
            Ok(outcome) => {
                let label = if matches!(outcome, Outcome::Reject(_)) {
                    "rejected"
                } else {
                    "ok"
                };
                self.record(
                    d,
                    finished(trigger, invocation, started_at, elapsed),
                    label,
                    None,
                    &report,
                );
                Ok(outcome)
            }
            Err(failure) => {
                let (outcome, _, cause) = failed(&report, &failure, 0);
                tracing::warn!(function = %d.name, version = d.version, cause = %cause, "a before-hook failed; the write is refused");
                self.record(
                    d,
                    finished(trigger, invocation, started_at, elapsed),
                    outcome,
                    Some(cause),
                    &report,
                );
                Err(hook_failed())
            }
        }
    }
}

/// One invocation row's insert for the SQLite record engine: the statement's text is
/// built once (sea-query, every column given, so it is the same for every row and
/// SQLite's statement cache keeps it prepared); each row brings its values.
fn lite_insert(row: invocations::Model) -> sea_orm::Statement {
    use sea_orm::{Iterable, QueryTrait};
    static SQL: OnceLock<String> = OnceLock::new();
    let row = invocations::ActiveModel::from(row).reset_all();
    let sql = SQL.get_or_init(|| {
        invocations::Entity::insert(row.clone())
            .build(sea_orm::DatabaseBackend::Sqlite)
            .sql
    });
    sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Sqlite,
        sql.as_str(),
        invocations::Column::iter().filter_map(|c| row.get(c).into_value()),
    )
}

/// Which export a call used (the one made ahead for the next call).
#[derive(Clone, Copy, Debug)]
enum Export {
    Hooks,
    Http,
}

/// The refusal of a write whose hook failed (the cause goes to the invocation log).
fn hook_failed() -> Rejection {
    Rejection {
        message: "The write was refused: a function that checks it failed.".into(),
        errors: FieldErrors::default(),
    }
}

/// A finished call, for the invocation log.
struct Finished {
    trigger: String,
    invocation: String,
    started: DateTime<Utc>,
    elapsed: Duration,
}

fn finished(
    trigger: String,
    invocation: String,
    started: DateTime<Utc>,
    elapsed: Duration,
) -> Finished {
    Finished {
        trigger,
        invocation,
        started,
        elapsed,
    }
}

/// One `_invocations` row as the API shows it.
pub fn invocation_json(r: &invocations::Model) -> Value {
    serde_json::json!({
        "id": r.id,
        "function": r.function,
        "version": r.version,
        "trigger": r.trigger,
        "started": r.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "durationUs": r.duration_us,
        "outcome": r.outcome,
        "error": r.error,
        "logs": serde_json::from_str::<Value>(&r.logs).unwrap_or(Value::Null),
    })
}

/// A version row without its component: id, version, manifest, digest, enabled,
/// deleted, created.
type VersionRow = (
    String,
    i32,
    String,
    String,
    bool,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

/// A trap as the invocation log keeps it: what happened first, then the guest's
/// backtrace (bounded).
fn trap_cause(e: &wasmtime::Error) -> String {
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => e.root_cause().to_string(),
    };
    let mut trace = format!("{e:?}");
    if trace.len() > 2000 {
        let mut end = 2000;
        while !trace.is_char_boundary(end) {
            end -= 1;
        }
        trace.truncate(end);
        trace.push('…');
    }
    format!("{what}\n{trace}")
}

/// A failed call's outcome label, client-facing problem and logged cause.
fn failed(report: &Report, failure: &HttpFailure, max: usize) -> (&'static str, Problem, String) {
    if report.stopped == Some(Stop::Timeout)
        || matches!(failure, HttpFailure::Trap(e) if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt))
    {
        return (
            "timeout",
            Problem::new(
                Code::FunctionTimeout,
                "The function ran past its time limit and was stopped.",
            ),
            "stopped at its time limit".into(),
        );
    }
    let cause = match failure {
        HttpFailure::Trap(e) => trap_cause(e),
        HttpFailure::NoResponse => "the function answered nothing".into(),
        HttpFailure::ErrorCode(code) => format!("the function answered an error: {code}"),
        HttpFailure::Oversized => {
            format!("the response is larger than the function's limit of {max} bytes")
        }
        HttpFailure::Body(e) => format!("the response body failed: {e}"),
    };
    let message = match failure {
        HttpFailure::Oversized => "The function's response is larger than its limit.",
        _ => "The function failed; see its invocation log.",
    };
    ("error", Problem::new(Code::FunctionFailed, message), cause)
}

impl Hooks for FunctionService {
    fn active(&self) -> bool {
        self.any_hooks.load(Ordering::Acquire)
    }

    fn fires(&self, collection: &str, op: HookOp) -> bool {
        self.active()
            && self.live().values().any(|d| {
                d.manifest.enabled && d.hooks && d.triggers.iter().any(|t| t.fires(collection, op))
            })
    }

    /// Hooks only read: a guest's host writes are refused while a hook runs.
    fn writes(&self) -> bool {
        false
    }

    fn before<'a>(
        &'a self,
        ctx: &'a WriteCtx<'_>,
        pending: Pending<'a>,
    ) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            let live = self.live();
            let mut firing: Vec<&Arc<Deployed>> = live
                .values()
                .filter(|d| {
                    d.manifest.enabled
                        && d.hooks
                        && d.triggers
                            .iter()
                            .any(|t| t.fires(&pending.collection.name, pending.op))
                })
                .collect();
            if firing.is_empty() {
                return Ok(());
            }
            firing.sort_by(|a, b| a.name.cmp(&b.name));
            for d in firing {
                let write = runtime::Write {
                    collection: pending.collection.name.clone(),
                    id: pending.id.to_owned(),
                    values: serde_json::to_string(&*pending.values).unwrap_or_default(),
                    existing: pending
                        .existing
                        .map(|e| serde_json::to_string(e).unwrap_or_default()),
                };
                match self.run_hook(d, ctx, pending.op, write).await? {
                    Outcome::Unchanged => {}
                    Outcome::Changed(values)
                        if u64::try_from(values.len()).unwrap_or(u64::MAX)
                            > d.manifest.limits.output_kb * 1024 =>
                    {
                        tracing::warn!(function = %d.name, bytes = values.len(), "a before-hook's changed values are larger than its output limit");
                        return Err(hook_failed());
                    }
                    Outcome::Changed(values) if pending.op != HookOp::Delete => {
                        match serde_json::from_str::<Value>(&values) {
                            Ok(Value::Object(map)) => *pending.values = map,
                            _ => {
                                tracing::warn!(function = %d.name, "a before-hook changed the values to something not a JSON object");
                                return Err(Rejection {
                                    message:
                                        "The write was refused: a function that checks it failed."
                                            .into(),
                                    errors: FieldErrors::default(),
                                });
                            }
                        }
                    }
                    Outcome::Changed(_) => {}
                    Outcome::Reject(rejection) => {
                        let mut errors = FieldErrors::default();
                        for f in rejection.fields {
                            errors.add(f.field, &f.code, f.message);
                        }
                        return Err(Rejection {
                            message: rejection.message,
                            errors,
                        });
                    }
                }
            }
            Ok(())
        })
    }
}

/// Several hooks in turn (the first to refuse ends the write).
#[derive(Debug)]
pub struct HookChain(pub Vec<Arc<dyn Hooks>>);

impl Hooks for HookChain {
    fn active(&self) -> bool {
        self.0.iter().any(|h| h.active())
    }

    fn fires(&self, collection: &str, op: HookOp) -> bool {
        self.0.iter().any(|h| h.fires(collection, op))
    }

    fn writes(&self) -> bool {
        self.0.iter().any(|h| h.active() && h.writes())
    }

    fn before<'a>(
        &'a self,
        ctx: &'a WriteCtx<'_>,
        pending: Pending<'a>,
    ) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            let Pending {
                op,
                collection,
                id,
                values,
                existing,
            } = pending;
            for hooks in self.0.iter().filter(|h| h.active()) {
                hooks
                    .before(
                        ctx,
                        Pending {
                            op,
                            collection,
                            id,
                            values: &mut *values,
                            existing,
                        },
                    )
                    .await?;
            }
            Ok(())
        })
    }

    fn after_commit(&self, committed: &[crate::records::Committed]) {
        for hooks in &self.0 {
            hooks.after_commit(committed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ordered_id;

    #[test]
    fn ordered_ids_sort_as_they_were_made_and_never_repeat() {
        let ids: Vec<String> = (0..20_000).map(|_| ordered_id()).collect();
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        }));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids out of order: appends to the index would become random inserts"
        );
        let first_ms = u64::from_str_radix(&ids[0][..12], 16).unwrap();
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
        assert!(now_ms - first_ms < 60_000, "{first_ms} vs {now_ms}");
    }
}
