//! `App::build`: settings in, a bound server with its services out. The binary and the
//! test harness both start Basalt through here.

use std::net::{SocketAddr, TcpListener};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{HttpServer, web};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, AuthService};
use crate::cache::{Cache, CacheError};
use crate::config::Settings;
use crate::db::{Db, DbError};
use crate::events::Broker;
use crate::http;
use crate::records::RecordService;
use crate::schema::{SchemaError, SchemaService};
use crate::telemetry::Metrics;

/// The services every request can reach. One per process, shared by all workers.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Services>);

#[derive(Debug)]
pub struct Services {
    pub settings: Settings,
    pub db: Db,
    pub cache: Cache,
    pub broker: Broker,
    pub schema: Arc<SchemaService>,
    pub records: RecordService,
    pub auth: AuthService,
    pub metrics: Metrics,
    pub openapi: crate::openapi::OpenApi,
    /// Record events after they were published (realtime and other subscribers).
    pub events: crate::events::Events,
    pub realtime: Arc<crate::realtime::Hub>,
    pub graphql: Arc<crate::graphql::GraphqlService>,
    pub functions: Arc<crate::functions::FunctionService>,
    pub limiter: crate::ratelimit::RateLimiter,
    /// The other instances of this installation, as the cache connects them.
    pub cluster: Arc<crate::cluster::Cluster>,
    pub installation_id: String,
    /// Settings the admin UI may change while the server runs: read these, not
    /// `settings`, for the application's name and URL, SMTP, rate, batch and
    /// realtime limits.
    pub live: Arc<crate::config::live::LiveSettings>,
}

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Why the server could not start. Each message is one line naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data dir {path} (setting `data_dir`): {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} (setting `database_url`)")]
    Database(#[from] DbError),
    #[error(
        "another Basalt is serving the SQLite database {path} (setting `database_url`); \
         one SQLite file takes one server: stop the other, or use PostgreSQL for several"
    )]
    SqliteInUse { path: String },
    #[error("cannot lock the SQLite database {path} (setting `database_url`): {source}")]
    SqliteLock {
        path: String,
        source: std::io::Error,
    },
    #[error("reading the installation id failed: {0}")]
    Installation(sea_orm::DbErr),
    #[error("loading the schema failed: {0}")]
    Schema(#[from] SchemaError),
    #[error("preparing auth failed: {0}")]
    Auth(#[from] AuthError),
    #[error("{0} (setting `redis_url`)")]
    Cache(#[from] CacheError),
    #[error("mail: {0}")]
    Mail(String),
    #[error("{0}")]
    Functions(String),
    #[error("cannot listen on {addr} (setting `http`, BASALT_HTTP, --http): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Basalt's services without HTTP: the database open and migrated, the schema loaded
/// with its default collections, records and auth ready. The CLI commands use this.
pub struct Core {
    pub db: Db,
    /// How many system migrations this start applied.
    pub applied: usize,
    pub installation_id: String,
    pub schema: Arc<SchemaService>,
    pub records: RecordService,
    pub auth: AuthService,
    /// Settings the admin UI may change while the server runs.
    pub live: Arc<crate::config::live::LiveSettings>,
    /// WASM functions, the record pipeline's before-hooks. None is loaded until
    /// `refresh` (the server does at start; CLI commands that need them do).
    pub functions: Arc<crate::functions::FunctionService>,
}

impl Core {
    /// Open everything but HTTP.
    ///
    /// Fails when the data dir cannot be created, the database cannot be opened or
    /// migrated, or the schema or auth secret cannot be loaded.
    pub async fn open(settings: &Settings) -> Result<Core, StartError> {
        Core::open_with_hooks(settings, Arc::new(crate::records::NoHooks)).await
    }

    /// [`Core::open`], with these hooks on every record write.
    ///
    /// Fails like [`Core::open`].
    pub async fn open_with_hooks(
        settings: &Settings,
        hooks: Arc<dyn crate::records::Hooks>,
    ) -> Result<Core, StartError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
        let db = Db::connect_with(
            &settings.database,
            settings.database_max_connections,
            settings.sqlite_synchronous,
        )
        .await?
        .with_record_engine(&settings.database)?;
        let applied = db.migrate().await?;
        let installation_id = db
            .installation_id()
            .await
            .map_err(StartError::Installation)?;
        let schema = Arc::new(
            SchemaService::load(db.clone(), crate::filter::resolve::check_rule)
                .await?
                .with_lock_timeout(settings.schema_lock_timeout),
        );
        let created = schema.ensure_defaults().await?;
        if let Err(err) = db.optimize(false).await {
            tracing::warn!(error = %err, "PRAGMA optimize at start failed");
        }
        if created > 0 {
            tracing::info!(created, "created the default collections");
        }
        // Functions hook into the record service, which they call back into: built
        // first, given the records once those exist.
        let functions = Arc::new(
            crate::functions::FunctionService::new(
                db.clone(),
                &settings.data_dir,
                crate::telemetry::FunctionMetrics::default(),
            )
            .map_err(StartError::Functions)?,
        );
        let chain: Arc<dyn crate::records::Hooks> = Arc::new(crate::functions::HookChain(vec![
            hooks,
            Arc::clone(&functions) as Arc<dyn crate::records::Hooks>,
        ]));
        let records = RecordService::new(db.clone(), schema.clone())
            .with_hooks(chain)
            .with_external_broker(settings.amqp_url.is_some());
        functions.attach(records.clone(), Arc::clone(&schema));
        functions.set_outbox_cursors(settings.amqp_url.is_none());
        let live = Arc::new(
            crate::config::live::LiveSettings::load(settings, db.clone())
                .await
                .map_err(StartError::Installation)?,
        );
        let mailer =
            crate::mail::Mailer::new(Arc::clone(&live), db.clone()).map_err(StartError::Mail)?;
        let auth = AuthService::new(&db, records.clone(), mailer, Arc::clone(&live)).await?;
        Ok(Core {
            db,
            applied,
            installation_id,
            schema,
            records,
            auth,
            live,
            functions,
        })
    }
}

/// A started Basalt: database open and migrated, socket bound, not yet serving.
pub struct App {
    state: AppState,
    server: Server,
    addr: SocketAddr,
    shutdown: CancellationToken,
    dispatcher: tokio::task::JoinHandle<()>,
    /// Held while serving a SQLite file: a second server on it is refused.
    _sqlite_lock: Option<std::fs::File>,
}

/// Lock `{path}.lock` beside a SQLite database for as long as the file is kept: two
/// servers on one file would both drain its outbox and publish every event twice
/// (PostgreSQL has row locks for that; SQLite has one writer and no `SKIP LOCKED`).
fn lock_sqlite(settings: &Settings) -> Result<Option<std::fs::File>, StartError> {
    let crate::config::DatabaseUrl::Sqlite { path: Some(path) } = &settings.database else {
        return Ok(None);
    };
    let lock_path = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.lock", ext.to_string_lossy()),
        None => "lock".to_owned(),
    });
    let failed = |source| StartError::SqliteLock {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::SqliteInUse {
            path: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(failed(source)),
    }
}

/// This machine's name (a container's id in Docker), for the instances page.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// How often SQLite's planner statistics are refreshed while serving.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// `PRAGMA optimize` every [`OPTIMIZE_EVERY`] (SQLite's advice for long-lived
/// connections), so statistics follow the data as tables grow.
async fn optimize_periodically(db: Db, stop: CancellationToken) {
    let mut every = tokio::time::interval(OPTIMIZE_EVERY);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = db.optimize(false).await {
            tracing::warn!(error = %err, "periodic PRAGMA optimize failed");
        }
    }
}

/// Drop cached identities whose records changed, as the event feed reports them: this
/// is how a change made by another instance (PostgreSQL) reaches this one's cache.
/// Changes made here are dropped at commit already.
async fn forget_changed_identities(
    mut events: tokio::sync::broadcast::Receiver<Arc<crate::events::Event>>,
    cache: Arc<crate::identity::IdentityCache>,
    schema: Arc<SchemaService>,
    stop: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                let auth = schema
                    .snapshot()
                    .get(&event.collection)
                    .is_some_and(|c| c.auth.is_some());
                let id = event
                    .payload
                    .get("subject")
                    .and_then(serde_json::Value::as_str);
                if let (true, Some(id)) = (auth, id) {
                    cache.forget(&event.collection, id);
                }
            }
            // Missed events: forget everything rather than trust what may be stale.
            Err(RecvError::Lagged(_)) => cache.clear(),
            Err(RecvError::Closed) => return,
        }
    }
}

impl App {
    /// Open the database and apply pending system migrations, choose the cache and
    /// broker, and bind the HTTP socket. Port 0 binds a free port; see [`App::addr`].
    ///
    /// Fails when the data dir cannot be created, the database cannot be opened or
    /// migrated, a URL is rejected by its client, or the address cannot be bound.
    pub async fn build(settings: Settings) -> Result<App, StartError> {
        App::build_with_hooks(settings, Arc::new(crate::records::NoHooks)).await
    }

    /// [`App::build`], with these hooks on every record write (WASM functions plug
    /// in here; tests pass their own).
    ///
    /// Fails like [`App::build`].
    pub async fn build_with_hooks(
        settings: Settings,
        hooks: Arc<dyn crate::records::Hooks>,
    ) -> Result<App, StartError> {
        let started = Instant::now();
        // Bind first: a port in use is reported before any other work is done.
        let listener =
            TcpListener::bind(settings.http_addr).map_err(|source| StartError::Listen {
                addr: settings.http_addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: settings.http_addr,
            source,
        })?;
        let sqlite_lock = lock_sqlite(&settings)?;
        let Core {
            db,
            applied,
            installation_id,
            schema,
            records,
            auth,
            live,
            functions,
        } = Core::open_with_hooks(&settings, hooks).await?;
        // The random tail of a v7 id: unique enough to tell instances apart.
        let id = uuid::Uuid::now_v7().simple().to_string();
        let instance = id.get(20..).unwrap_or(&id).to_owned();
        let cache = Cache::new(settings.redis_url.as_ref(), &installation_id, &instance)?;
        records.identities().share(cache.clone());
        let broker = Broker::new(settings.amqp_url.as_ref());
        // The live functions, compiled (or loaded from the disk cache) before serving.
        functions
            .refresh()
            .await
            .map_err(|e| StartError::Functions(format!("loading functions failed: {e}")))?;
        let mut metrics = Metrics::new();
        metrics.register_functions(functions.metrics());
        if let Some(lite) = db.lite() {
            metrics.register_group_commits(
                lite.group_commits.clone(),
                lite.group_commit_writes.clone(),
            );
        }
        // The dispatcher polls on a small pool of its own; an in-memory SQLite
        // database exists only on its one pool, so it shares that.
        let events_db = match &settings.database {
            crate::config::DatabaseUrl::Sqlite { path: None } => db.clone(),
            url => Db::connect_with(url, 2, settings.sqlite_synchronous).await?,
        };
        functions.set_poll_db(events_db.clone());
        let events = crate::events::Events::new(
            events_db,
            records.commits(),
            settings.amqp_url.clone(),
            settings.amqp_exchange.clone(),
            settings.outbox_retention,
            metrics.events.clone(),
        );
        let shutdown = CancellationToken::new();
        let dispatcher = tokio::spawn(events.clone().run(shutdown.child_token()));
        tokio::spawn(events.clone().run_feed(shutdown.child_token()));
        tokio::spawn(optimize_periodically(db.clone(), shutdown.child_token()));
        tokio::spawn(forget_changed_identities(
            events.subscribe(),
            Arc::clone(records.identities()),
            schema.clone(),
            shutdown.child_token(),
        ));
        let realtime = Arc::new(crate::realtime::Hub::new(live.current().realtime));
        tokio::spawn(Arc::clone(&realtime).run(
            events.clone(),
            records.clone(),
            shutdown.child_token(),
        ));

        tokio::spawn(
            Arc::clone(&functions)
                .run_log(settings.functions_log_retention, shutdown.child_token()),
        );
        tokio::spawn(
            Arc::clone(&functions)
                .run_refresh(std::time::Duration::from_secs(2), shutdown.child_token()),
        );
        // After-event triggers: from RabbitMQ's work queue when there is a broker,
        // else from the outbox by durable cursors; retries and schedules either way.
        match &settings.amqp_url {
            Some(url) => tokio::spawn(Arc::clone(&functions).run_queue(
                url.clone(),
                settings.amqp_exchange.clone(),
                shutdown.child_token(),
            )),
            None => tokio::spawn(Arc::clone(&functions).run_cursors(
                format!("{}-{}", std::process::id(), uuid::Uuid::now_v7()),
                shutdown.child_token(),
            )),
        };
        tokio::spawn(Arc::clone(&functions).run_retries(shutdown.child_token()));
        tokio::spawn(Arc::clone(&functions).run_schedules(shutdown.child_token()));
        let graphql = Arc::new(crate::graphql::GraphqlService::new(
            records.clone(),
            Arc::clone(&schema),
            settings.graphql,
        ));
        let shown = if addr.ip().is_unspecified() {
            format!("{}:{}", hostname(), addr.port())
        } else {
            addr.to_string()
        };
        let cluster = Arc::new(crate::cluster::Cluster::new(cache.clone(), shown));
        tokio::spawn(cache.clone().run(shutdown.child_token()));
        let state = AppState(Arc::new(Services {
            settings,
            db,
            limiter: crate::ratelimit::RateLimiter::new(cache.clone()),
            cluster,
            cache,
            broker,
            schema,
            records,
            auth,
            metrics,
            openapi: crate::openapi::OpenApi::default(),
            events,
            realtime,
            graphql,
            functions,
            installation_id,
            live,
        }));
        tokio::spawn(crate::cluster::run(state.clone(), shutdown.child_token()));
        let factory_state = state.clone();
        let server = HttpServer::new(move || {
            let limit = factory_state.settings.body_limit;
            actix_web::App::new()
                .app_data(web::Data::new(factory_state.clone()))
                .app_data(http::json::json_config(limit))
                .app_data(http::json::payload_config(limit))
                .wrap(from_fn(http::middleware::observe))
                .configure(http::routes)
                .configure(http::admin::routes)
                .default_service(web::to(http::not_found))
        })
        .disable_signals()
        .shutdown_timeout(state.settings.shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|source| StartError::Listen { addr, source })?
        .run();

        tracing::info!(
            url = %format!("http://{addr}"),
            database = %state.settings.database.redacted(),
            cache = state.cache.external_name().unwrap_or("memory"),
            instance = state.cache.instance(),
            broker = state.broker.external_name().unwrap_or("in-process"),
            migrations_applied = applied,
            installation_id = %state.installation_id,
            startup_ms = started.elapsed().as_millis() as u64,
            "Basalt is listening on http://{addr}"
        );
        // The setup link starts with `app_url` when one was set (a container's
        // published address, a proxy's); else with the address bound, a wildcard
        // shown as localhost.
        let url = if state.settings.app_url == format!("http://{}", state.settings.http) {
            let mut shown = addr;
            if shown.ip().is_unspecified() {
                shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{shown}")
        } else {
            state.settings.app_url.clone()
        };
        if let Some(token) = state.auth.setup_token(&state.schema.snapshot()).await? {
            tracing::warn!(
                "No superuser yet. Create one with `basalt superuser upsert EMAIL PASSWORD`, \
                 or open this one-time setup link within an hour: {url}/_/setup/{token}"
            );
        }
        Ok(App {
            state,
            server,
            addr,
            shutdown,
            dispatcher,
            _sqlite_lock: sqlite_lock,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancel it to stop the server gracefully: no new connections, in-flight requests
    /// get `shutdown_timeout` to finish, then pools close.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serve until the shutdown token is cancelled, then drain and close.
    ///
    /// Fails when the server stops on an I/O error.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let App {
            state,
            server,
            shutdown,
            dispatcher,
            _sqlite_lock: sqlite_lock,
            ..
        } = self;
        let handle = server.handle();
        // The server runs on its own task: a graceful stop is a command that its future
        // must be polled to carry out.
        let mut running = tokio::spawn(server);
        let served = tokio::select! {
            result = &mut running => result,
            () = shutdown.cancelled() => {
                state.realtime.close_all();
                tracing::info!(
                    timeout_s = state.settings.shutdown_timeout.as_secs(),
                    "shutting down: no new connections, waiting for in-flight requests"
                );
                handle.stop(true).await;
                running.await
            }
        };
        // The dispatcher's token is a child of `shutdown`: it stops after its round.
        shutdown.cancel();
        let _ = dispatcher.await;
        state.db.clone().close().await?;
        // Only now may another server open the SQLite file.
        drop(sqlite_lock);
        tracing::info!("stopped");
        served??;
        Ok(())
    }
}
