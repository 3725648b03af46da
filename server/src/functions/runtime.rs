//! The sandbox: one wasmtime engine (component model, pooling allocator, epoch
//! interruption), a linker with WASI 0.2 (no files, no environment, no sockets,
//! outgoing HTTP only through the function's allowlist, see `outbound`) and Basalt's host interfaces, and a fresh store per call
//! with that call's limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::manifest::Limits;
use crate::errors::Problem;
use crate::filter::compile::Request;
use crate::identity::Identity;
use crate::records::RecordService;
use crate::records::read::ListQuery;

wasmtime::component::bindgen!({
    path: "../functions-sdk/wit",
    world: "basalt:functions/hook",
    imports: { default: async | trappable },
    exports: { default: async },
});

use basalt::functions::types::{Error as HostError, Identity as GuestIdentity, UserRef};
pub use basalt::functions::types::{FieldError, Rejection};
pub use exports::basalt::functions::hooks::{Outcome, Write};

/// The export a hook function has.
pub const HOOKS_EXPORT: &str = "basalt:functions/hooks@0.1.0";
/// The export an after-event or scheduled function has.
pub const TRIGGERS_EXPORT: &str = "basalt:functions/triggers@0.1.0";
/// The export an HTTP function has (any 0.2.x).
pub const HTTP_EXPORT: &str = "wasi:http/incoming-handler@0.2";

/// How often the epoch advances: the granularity of time limits, and how often a
/// running guest yields to other tasks.
const TICK: Duration = Duration::from_millis(2);
/// Calls running at once at most (instances in the pool).
pub const MAX_CONCURRENT: u32 = 100;
/// Instances made ahead of their call, at most, across all functions (each holds
/// pool slots beside the `MAX_CONCURRENT` calls').
pub const MAX_WARM: u32 = 32;
/// Captured log bytes per call at most (lines past it are counted, not kept).
const MAX_LOG_BYTES: usize = 16 * 1024;
/// Captured log lines per call at most.
const MAX_LOG_LINES: usize = 100;

/// One captured log line.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// What a call runs for: who, with which records, under which limits.
pub struct CallCtx {
    pub function: String,
    pub version: u32,
    pub invocation: String,
    pub caller: Identity,
    /// The function's own identity (its declared scopes), if it has one.
    pub service: Option<Identity>,
    pub records: RecordService,
    pub request: Request,
    /// Inside a before-hook: record writes are refused (they would wait on the
    /// write the hook is part of).
    pub in_hook: bool,
}

/// The store's data for one call.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: super::outbound::Outbound,
    table: ResourceTable,
    limits: StoreLimits,
    deadline: Instant,
    host_calls: u32,
    max_host_calls: u32,
    pub logs: Vec<LogLine>,
    log_bytes: usize,
    pub dropped_logs: usize,
    stdout: MemoryOutputPipe,
    pub call: Arc<CallCtx>,
    /// Why the call was stopped by the host, when it was.
    pub stopped: Option<Stop>,
}

/// A host-side stop of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    HostCalls,
}

impl State {
    /// Captured stdout/stderr, as log lines.
    pub fn take_output(&mut self) {
        let out = self.stdout.contents();
        if out.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.is_empty())
        {
            self.push_log("info", line.to_owned(), Map::new());
        }
    }

    fn push_log(&mut self, level: &'static str, message: String, fields: Map<String, Value>) {
        let size = message.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len())
                .sum::<usize>();
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes + size > MAX_LOG_BYTES {
            self.dropped_logs += 1;
            return;
        }
        self.log_bytes += size;
        self.logs.push(LogLine {
            level,
            message,
            fields,
        });
    }

    fn count_call(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.max_host_calls {
            self.stopped = Some(Stop::HostCalls);
            return Err(wasmtime::format_err!(
                "the function made more than {} host calls",
                self.max_host_calls
            ));
        }
        Ok(())
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiHttpHooks for super::outbound::Outbound {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        hyper::Response<wasmtime_wasi_http::WasiBody>,
                        Box<
                            dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                                + Send,
                        >,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let outbound = self.clone();
        Box::new(async move { outbound.send(request).await })
    }
}

fn host_error(problem: Problem) -> HostError {
    HostError {
        status: crate::http::error::status_of(problem.code).as_u16(),
        code: problem.code.name().to_owned(),
        message: problem.message,
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, HostError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(HostError {
            status: 400,
            code: "invalid_request".into(),
            message: "The values are not a JSON object.".into(),
        }),
    }
}

impl State {
    fn acting(&self, acting: basalt::functions::records::Acting) -> Result<Identity, HostError> {
        match acting {
            basalt::functions::records::Acting::Caller => Ok(self.call.caller.clone()),
            basalt::functions::records::Acting::Service => {
                self.call.service.clone().ok_or(HostError {
                    status: 403,
                    code: "forbidden".into(),
                    message: "The function declares no scopes, so it has no service identity."
                        .into(),
                })
            }
        }
    }

    fn writable(&self) -> Result<(), HostError> {
        if self.call.in_hook {
            return Err(HostError {
                status: 400,
                code: "invalid_request".into(),
                message: "A before-hook cannot write records (the write it runs in holds them); read them, or write from an HTTP function.".into(),
            });
        }
        Ok(())
    }

    /// Who a write acts as and its values, or why it may not happen.
    fn writing(
        &self,
        acting: basalt::functions::records::Acting,
        values: &str,
    ) -> Result<(Identity, Map<String, Value>), HostError> {
        self.writable()?;
        Ok((self.acting(acting)?, parse_object(values)?))
    }

    fn request(&self, method: &str) -> Request {
        let mut request = self.call.request.clone();
        method.clone_into(&mut request.method);
        request
    }
}

impl basalt::functions::types::Host for State {}

impl basalt::functions::log::Host for State {
    async fn write(
        &mut self,
        level: basalt::functions::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        use basalt::functions::log::Level;
        self.count_call()?;
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        self.push_log(level, message, fields);
        Ok(())
    }
}

impl basalt::functions::context::Host for State {
    async fn caller(&mut self) -> wasmtime::Result<GuestIdentity> {
        self.count_call()?;
        Ok(match &self.call.caller {
            Identity::Anonymous => GuestIdentity::Anonymous,
            Identity::Record { collection, record } => GuestIdentity::User(UserRef {
                collection: collection.name.clone(),
                id: record
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            Identity::Superuser { record } => GuestIdentity::Superuser(
                record
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Identity::ApiKey(key) if key.id.starts_with("fn:") => {
                GuestIdentity::Service(key.name.clone())
            }
            Identity::ApiKey(key) => GuestIdentity::ApiKey(key.name.clone()),
        })
    }

    async fn function_name(&mut self) -> wasmtime::Result<String> {
        self.count_call()?;
        Ok(self.call.function.clone())
    }

    async fn function_version(&mut self) -> wasmtime::Result<u32> {
        self.count_call()?;
        Ok(self.call.version)
    }

    async fn invocation_id(&mut self) -> wasmtime::Result<String> {
        self.count_call()?;
        Ok(self.call.invocation.clone())
    }
}

impl basalt::functions::records::Host for State {
    async fn list(
        &mut self,
        acting: basalt::functions::records::Acting,
        collection: String,
        query: basalt::functions::records::ListQuery,
    ) -> wasmtime::Result<Result<basalt::functions::records::Page, HostError>> {
        self.count_call()?;
        let identity = match self.acting(acting) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let list = ListQuery {
            page: query.page.map(u64::from),
            per_page: query.per_page.map(u64::from),
            sort: query.sort,
            filter: query.filter,
            skip_total: false,
            expand: None,
            condition: None,
        };
        let request = self.request("GET");
        let records = self.call.records.clone();
        Ok(records
            .list(&collection, &identity, &request, &list)
            .await
            .map(|page| basalt::functions::records::Page {
                items: page.items.iter().map(Value::to_string).collect(),
                page: u32::try_from(page.page).unwrap_or(u32::MAX),
                per_page: u32::try_from(page.per_page).unwrap_or(u32::MAX),
                total_items: page.total_items,
                total_pages: page.total_pages,
            })
            .map_err(|e| host_error(e.problem())))
    }

    async fn get(
        &mut self,
        acting: basalt::functions::records::Acting,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<String, HostError>> {
        self.count_call()?;
        let identity = match self.acting(acting) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let request = self.request("GET");
        let records = self.call.records.clone();
        Ok(records
            .view_untagged(&collection, &id, &identity, &request)
            .await
            .map(|r| r.to_string())
            .map_err(|e| host_error(e.problem())))
    }

    async fn create(
        &mut self,
        acting: basalt::functions::records::Acting,
        collection: String,
        values: String,
    ) -> wasmtime::Result<Result<String, HostError>> {
        self.count_call()?;
        let (identity, body) = match self.writing(acting, &values) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let request = self.request("POST");
        let records = self.call.records.clone();
        Ok(records
            .create(&collection, &identity, &request, body)
            .await
            .map(|r| r.unwrap_or(Value::Null).to_string())
            .map_err(|e| host_error(e.problem())))
    }

    async fn update(
        &mut self,
        acting: basalt::functions::records::Acting,
        collection: String,
        id: String,
        values: String,
    ) -> wasmtime::Result<Result<String, HostError>> {
        self.count_call()?;
        let (identity, body) = match self.writing(acting, &values) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let request = self.request("PATCH");
        let records = self.call.records.clone();
        Ok(records
            .update(&collection, &id, &identity, &request, body, None)
            .await
            .map(|(r, _)| r.unwrap_or(Value::Null).to_string())
            .map_err(|e| host_error(e.problem())))
    }

    async fn delete(
        &mut self,
        acting: basalt::functions::records::Acting,
        collection: String,
        id: String,
    ) -> wasmtime::Result<Result<(), HostError>> {
        self.count_call()?;
        let identity = match self.writable().and_then(|()| self.acting(acting)) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let request = self.request("DELETE");
        let records = self.call.records.clone();
        Ok(records
            .delete(&collection, &id, &identity, &request, None)
            .await
            .map_err(|e| host_error(e.problem())))
    }
}

/// The engine and the linker every function is instantiated with.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<State>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Instances made ahead of their call, now.
    warm: Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// The engine (and its epoch ticker thread) and the linker.
    ///
    /// Fails when wasmtime refuses the configuration (a bug).
    pub fn new() -> wasmtime::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        // Calls running, plus the instances made ahead of their call.
        let slots = MAX_CONCURRENT + MAX_WARM;
        pool.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .total_memories(slots * 4)
            .total_tables(slots * 8)
            .total_stacks(slots)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(32)
            .table_elements(100_000)
            .max_memory_size(
                usize::try_from(super::manifest::MAX_MEMORY_MB << 20).unwrap_or(usize::MAX),
            )
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            .max_unused_warm_slots(MAX_CONCURRENT)
            // A fresh instance per call: reset the small memories and tables Rust,
            // JS and Python guests touch with memset (kept resident) rather than
            // madvise per call, which profiled as a quarter of a call's CPU; what
            // remains is decommitted in batches.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(256 << 10)
            .async_stack_keep_resident(256 << 10)
            .decommit_batch_size(32)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(pool);
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| wasmtime::format_err!("the epoch thread: {e}"))?;
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Hook::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        Ok(Runtime {
            engine,
            linker,
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT as usize)),
            warm: Arc::new(std::sync::atomic::AtomicU32::new(0)),
        })
    }

    /// Compile a component (slow: seconds for a big one; run it off the async
    /// threads).
    ///
    /// Fails when the bytes are not a valid component.
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.engine, bytes)
    }

    /// A component from its serialized compiled form, if this engine can load it.
    #[allow(unsafe_code)]
    pub fn load(&self, compiled: &[u8]) -> Option<Component> {
        // SAFETY: the bytes are this server's own cache, written by `serialize` of a
        // component it compiled; wasmtime checks the engine's compatibility header.
        unsafe { Component::deserialize(&self.engine, compiled) }.ok()
    }

    /// Link a component: every import it has must be one Basalt gives.
    ///
    /// Fails naming the first import Basalt does not provide.
    pub fn link(&self, component: &Component) -> wasmtime::Result<InstancePre<State>> {
        self.linker.instantiate_pre(component)
    }

    /// A fresh store for one call, with its limits.
    pub fn store(
        &self,
        call: Arc<CallCtx>,
        limits: &Limits,
        outbound: super::outbound::Outbound,
    ) -> Store<State> {
        let stdout = MemoryOutputPipe::new(MAX_LOG_BYTES);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stdout.clone());
        let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let state = State {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(64)
                .memories(16)
                .tables(32)
                .table_elements(100_000)
                .build(),
            deadline: Instant::now() + Duration::from_millis(limits.timeout_ms),
            host_calls: 0,
            max_host_calls: limits.host_calls,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            stdout,
            call,
            stopped: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.stopped = Some(Stop::Timeout);
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            // tokio's yield defers the wake-up until the runtime has polled its I/O
            // driver: a spinning guest cannot starve the sockets of its thread.
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// A slot to run one call in (waits while `MAX_CONCURRENT` run); `None` only if
    /// the semaphore was closed, which it never is.
    pub async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }
}

/// A hook export's instance, made ahead of its call.
pub type WarmHook = WarmSlot<Hook>;
/// An HTTP export's instance, made ahead of its call.
pub type WarmHttp = WarmSlot<wasmtime_wasi_http::p2::bindings::Proxy>;

/// One function version's export instantiated ahead of its next call, off the
/// request's path: a new store and instance that has run no call. A call takes it
/// (or makes its own when there is none), so isolation is the same as a fresh
/// instance per call — no instance ever serves a second call; only the
/// instantiation moves out of the call's latency.
pub struct WarmSlot<I> {
    ready: std::sync::Mutex<Option<(Store<State>, I)>>,
    /// Whether an instance is being made for this slot now.
    filling: std::sync::atomic::AtomicBool,
    /// The runtime's count of instances made ahead (bounded by `MAX_WARM`).
    count: Arc<std::sync::atomic::AtomicU32>,
}

impl<I> WarmSlot<I> {
    /// An empty slot counted against `runtime`'s bound.
    pub fn new(runtime: &Runtime) -> WarmSlot<I> {
        WarmSlot {
            ready: std::sync::Mutex::new(None),
            filling: std::sync::atomic::AtomicBool::new(false),
            count: Arc::clone(&runtime.warm),
        }
    }

    /// The instance made ahead, if there is one, for a call as `call` with `limits`.
    fn take(&self, call: Arc<CallCtx>, limits: &Limits) -> Option<(Store<State>, I)> {
        let (mut store, instance) = self.ready.lock().ok()?.take()?;
        self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        let state = store.data_mut();
        state.call = call;
        state.deadline = Instant::now() + Duration::from_millis(limits.timeout_ms);
        // Epochs passed while it waited: count from now, or the call would begin
        // with a yield.
        store.set_epoch_deadline(1);
        Some((store, instance))
    }

    /// Claim the right to fill this slot: it is empty, nobody fills it, and the
    /// runtime's bound has room. The claim ends with [`Self::fill`].
    pub fn claim(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.ready.lock().map_or(true, |r| r.is_some())
            || self.filling.swap(true, Ordering::AcqRel)
        {
            return false;
        }
        let room = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WARM).then_some(n + 1)
            })
            .is_ok();
        if !room {
            self.filling.store(false, Ordering::Release);
        }
        room
    }

    /// Take the instance made ahead for `call`, or a new store with none in it.
    pub fn store_for(
        &self,
        runtime: &Runtime,
        call: Arc<CallCtx>,
        limits: &Limits,
        outbound: &super::outbound::Outbound,
    ) -> (Store<State>, Option<I>) {
        match self.take(Arc::clone(&call), limits) {
            Some((store, instance)) => (store, Some(instance)),
            None => (runtime.store(call, limits, outbound.clone()), None),
        }
    }

    /// Fill a claimed slot (see [`Self::claim`]): a store for `ahead` (the context
    /// the call's own replaces) and `instantiate` run in it, within the limits.
    pub async fn make(
        &self,
        runtime: &Runtime,
        ahead: Arc<CallCtx>,
        limits: &Limits,
        outbound: &super::outbound::Outbound,
        instantiate: impl AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<I>,
    ) {
        let mut store = runtime.store(ahead, limits, outbound.clone());
        let made = tokio::time::timeout(
            Duration::from_millis(limits.timeout_ms),
            instantiate(&mut store),
        )
        .await;
        self.fill(made.ok().and_then(Result::ok).map(|i| (store, i)));
    }

    /// End a claim with the instance made, or `None` when making it failed.
    pub fn fill(&self, made: Option<(Store<State>, I)>) {
        use std::sync::atomic::Ordering;
        let kept = match (made, self.ready.lock()) {
            (Some(made), Ok(mut ready)) => {
                *ready = Some(made);
                true
            }
            _ => false,
        };
        if !kept {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        self.filling.store(false, Ordering::Release);
    }
}

impl<I> Drop for WarmSlot<I> {
    fn drop(&mut self) {
        if let Ok(mut ready) = self.ready.lock()
            && ready.take().is_some()
        {
            self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// A linked component's exports, resolved once: the hooks, the HTTP handler and the
/// triggers.
pub struct Resolved {
    pub hooks: Option<HookPre<State>>,
    pub http: Option<wasmtime_wasi_http::p2::bindings::ProxyPre<State>>,
    pub triggers: Option<TriggerExports>,
}

/// Resolve the component's exports, checking they have the world's shape
/// (functions and types).
///
/// Fails naming the export that does not match.
pub fn resolve(pre: &InstancePre<State>, hooks: bool, http: bool) -> Result<Resolved, String> {
    let hooks = hooks
        .then(|| {
            HookPre::new(pre.clone()).map_err(|e| {
                format!("The export `{HOOKS_EXPORT}` does not match basalt:functions@0.1.0: {e:#}")
            })
        })
        .transpose()?;
    let http = http
        .then(|| {
            wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()).map_err(|e| {
                format!(
                    "The export `wasi:http/incoming-handler` does not match wasi:http@0.2: {e:#}"
                )
            })
        })
        .transpose()?;
    let triggers = resolve_triggers(pre)?;
    Ok(Resolved {
        hooks,
        http,
        triggers,
    })
}

/// `basalt:functions/triggers.event`, as the guest gets it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub struct GuestEvent {
    pub id: String,
    #[component(name = "type")]
    pub kind: String,
    pub collection: String,
    pub subject: String,
    #[component(name = "cloud-event")]
    pub cloud_event: String,
    pub attempt: u32,
}

/// `basalt:functions/triggers.tick`, as the guest gets it.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub struct GuestTick {
    pub schedule: String,
    pub due: String,
    pub late: bool,
}

/// What a trigger call is about.
pub enum TriggerCall {
    Event(GuestEvent),
    Tick(GuestTick),
}

/// The `triggers` export's functions, found once per loaded version.
#[derive(Clone)]
pub struct TriggerExports {
    pre: InstancePre<State>,
    on_event: wasmtime::component::ComponentExportIndex,
    on_schedule: wasmtime::component::ComponentExportIndex,
}

/// The component's `triggers` export, if it has one.
///
/// Fails when the export is there without both functions.
pub fn resolve_triggers(pre: &InstancePre<State>) -> Result<Option<TriggerExports>, String> {
    let component = pre.component();
    let Some(interface) = component.get_export_index(None, TRIGGERS_EXPORT) else {
        return Ok(None);
    };
    let func = |name: &str| {
        component
            .get_export_index(Some(&interface), name)
            .ok_or_else(|| format!("The export `{TRIGGERS_EXPORT}` has no function `{name}`."))
    };
    Ok(Some(TriggerExports {
        on_event: func("on-event")?,
        on_schedule: func("on-schedule")?,
        pre: pre.clone(),
    }))
}

/// Run `on-event` or `on-schedule`; the guest's own error, if it returned one.
///
/// Fails when the guest traps, is stopped, or its export has another shape.
pub async fn call_trigger(
    store: &mut Store<State>,
    exports: &TriggerExports,
    call: TriggerCall,
) -> wasmtime::Result<Result<(), String>> {
    let instance = exports.pre.instantiate_async(&mut *store).await?;
    match call {
        TriggerCall::Event(event) => {
            let f = instance.get_typed_func::<(GuestEvent,), (Result<(), String>,)>(
                &mut *store,
                &exports.on_event,
            )?;
            Ok(f.call_async(&mut *store, (event,)).await?.0)
        }
        TriggerCall::Tick(tick) => {
            let f = instance.get_typed_func::<(GuestTick,), (Result<(), String>,)>(
                &mut *store,
                &exports.on_schedule,
            )?;
            Ok(f.call_async(&mut *store, (tick,)).await?.0)
        }
    }
}

/// Instantiate a hook export in `store`.
///
/// Fails when instantiation traps or is stopped.
pub async fn instantiate_hook(
    store: &mut Store<State>,
    pre: &HookPre<State>,
) -> wasmtime::Result<Hook> {
    pre.instantiate_async(&mut *store).await
}

/// Instantiate an HTTP export in `store`.
///
/// Fails when instantiation traps or is stopped.
pub async fn instantiate_http(
    store: &mut Store<State>,
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<State>,
) -> wasmtime::Result<wasmtime_wasi_http::p2::bindings::Proxy> {
    pre.instantiate_async(&mut *store).await
}

/// Run a before-hook export on `hook`, instantiated in `store` (made now when
/// `None`).
///
/// Fails when the guest traps, is stopped or answers nothing usable.
pub async fn call_hook(
    store: &mut Store<State>,
    pre: &HookPre<State>,
    hook: Option<Hook>,
    op: crate::records::HookOp,
    write: Write,
) -> wasmtime::Result<Outcome> {
    let hook = match hook {
        Some(hook) => hook,
        None => instantiate_hook(store, pre).await?,
    };
    let hooks = hook.basalt_functions_hooks();
    match op {
        crate::records::HookOp::Create => hooks.call_before_create(&mut *store, &write).await,
        crate::records::HookOp::Update => hooks.call_before_update(&mut *store, &write).await,
        crate::records::HookOp::Delete => hooks.call_before_delete(&mut *store, &write).await,
    }
}

/// What a call left behind: its log lines and why the host stopped it, if it did.
#[derive(Debug, Default)]
pub struct Report {
    pub logs: Vec<LogLine>,
    pub dropped_logs: usize,
    pub stopped: Option<Stop>,
}

/// Take the report out of a finished call's store.
pub fn report(store: &mut Store<State>) -> Report {
    let state = store.data_mut();
    state.take_output();
    Report {
        logs: std::mem::take(&mut state.logs),
        dropped_logs: state.dropped_logs,
        stopped: state.stopped,
    }
}

/// Run an HTTP export with `request` on `proxy`, instantiated in `store` (made now
/// when `None`); the response, its body read up to `max` bytes. When the guest
/// returns, the store's resources are dropped (which ends a body it left open); the
/// store itself goes to `spent`, to be dropped off the response's path.
pub async fn call_http(
    mut store: Store<State>,
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<State>,
    proxy: Option<wasmtime_wasi_http::p2::bindings::Proxy>,
    request: hyper::Request<http_body_util::Full<Bytes>>,
    max: usize,
    spent: tokio::sync::oneshot::Sender<Store<State>>,
) -> (
    Report,
    Result<(hyper::http::response::Parts, Bytes), HttpFailure>,
) {
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    let pre = pre.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let resources = (|| {
        let mut http = store.data_mut().http();
        let req = http.new_incoming_request(Scheme::Http, request)?;
        let out = http.new_response_outparam(tx)?;
        Ok::<_, wasmtime::Error>((req, out))
    })();
    let (req, out) = match resources {
        Ok(r) => r,
        Err(e) => return (report(&mut store), Err(HttpFailure::Trap(e))),
    };
    // The guest streams the body while it runs: run it beside the reading.
    let guest = async move {
        let result = async {
            let proxy = match proxy {
                Some(proxy) => proxy,
                None => instantiate_http(&mut store, &pre).await?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }
        .await;
        let report = report(&mut store);
        drop(std::mem::take(&mut store.data_mut().table));
        // The receiver is gone only when the call was abandoned: then it drops here.
        let _ = spent.send(store);
        (report, result)
    };
    let read = async move {
        let response = rx.await.map_err(|_| HttpFailure::NoResponse)?;
        let response = response.map_err(|code| HttpFailure::ErrorCode(format!("{code:?}")))?;
        let (parts, body) = response.into_parts();
        let limited = http_body_util::Limited::new(body, max);
        let bytes = http_body_util::BodyExt::collect(limited)
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpFailure::Oversized
                } else {
                    HttpFailure::Body(e.to_string())
                }
            })?
            .to_bytes();
        Ok((parts, bytes))
    };
    let ((report, guest_result), read_result) = futures_util::future::join(guest, read).await;
    let result = match (guest_result, read_result) {
        (Err(trap), Err(_)) => Err(HttpFailure::Trap(trap)),
        (_, read) => read,
    };
    (report, result)
}

/// Why an HTTP call failed.
#[derive(Debug)]
pub enum HttpFailure {
    Trap(wasmtime::Error),
    NoResponse,
    ErrorCode(String),
    Oversized,
    Body(String),
}
