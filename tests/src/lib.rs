//! The shared test harness for Basalt's black-box suites (CONVENTIONS.md, Tests).
//!
//! - [`TestApp`] starts the real app through `App::build` on port 0 with a fresh
//!   database: a temp SQLite file, or a new PostgreSQL database copied from a migrated
//!   template and dropped afterwards ([`postgres`]).
//! - [`backend_tests!`] runs a suite once per backend. With `CI=true` an unreachable
//!   PostgreSQL fails the run; without it, the PostgreSQL half says loudly that it was
//!   skipped.
//! - [`process`] runs the `basalt` binary itself, for what only a process shows:
//!   start-up, logs, exit codes and signals.
//! - [`eventually`] polls with a deadline; tests never sleep to wait.

// Test support code: a failed expectation should panic with a message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod faults;
pub mod hooks;
pub mod instances;
pub mod postgres;
pub mod process;
mod services;
pub mod sse;
pub mod tools;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use basalt_server::config::Layers;
use basalt_server::{App, AppState};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use services::{
    OwnRedis, RabbitRestart, ci, free_port, rabbitmqctl, require_service, require_tool,
};

/// The database engine a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run each named `async fn(Backend)` as two tests, `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::postgres::available_or_skip(module_path!()).await {
                    return;
                }
                super::$name($crate::Backend::Postgres).await;
            }
        }
    )+};
}

/// Builds a [`TestApp`] with extra settings, given by their file names (`body_limit`).
pub struct TestAppBuilder {
    backend: Backend,
    settings: Vec<(&'static str, String)>,
    database_url: Option<String>,
    database_port: Option<u16>,
    hooks: Option<std::sync::Arc<dyn basalt_server::records::Hooks>>,
}

impl TestAppBuilder {
    /// Run these hooks on every record write (see [`hooks::TestHooks`]).
    pub fn hooks(mut self, hooks: std::sync::Arc<dyn basalt_server::records::Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Set one setting as if from a command-line flag.
    pub fn setting(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.settings.push((name, value.into()));
        self
    }

    /// Reach PostgreSQL through this loopback port (a [`faults::Proxy`]) instead of
    /// its own; the database is still a fresh one.
    pub fn database_port(mut self, port: u16) -> Self {
        self.database_port = Some(port);
        self
    }

    /// Use `other`'s database instead of a fresh one, as a second instance of one
    /// installation. `other` must outlive this app (it drops the database).
    pub fn database_of(mut self, other: &TestApp) -> Self {
        self.database_url = Some(other.database_url.clone());
        self
    }

    pub async fn spawn(self) -> TestApp {
        self.try_spawn().await.expect("the app starts")
    }

    /// Start, or say why the app refused to.
    pub async fn try_spawn(self) -> Result<TestApp, basalt_server::StartError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = match (self.backend, &self.database_url) {
            (Backend::Postgres, None) => Some(postgres::TestDatabase::create().await),
            _ => None,
        };
        let database_url = match (&self.database_url, &pg) {
            (Some(url), _) => url.clone(),
            (None, Some(db)) => db.url.clone(),
            (None, None) => format!("sqlite:{}", dir.path().join("data.db").display()),
        };
        let served_url = match self.database_port {
            Some(port) => {
                let mut url = url::Url::parse(&database_url).expect("a PostgreSQL URL");
                url.set_host(Some("127.0.0.1")).expect("host");
                url.set_port(Some(port)).expect("port");
                url.to_string()
            }
            None => database_url.clone(),
        };
        let mut flags = vec![
            ("http", "127.0.0.1:0".to_owned()),
            ("data_dir", dir.path().display().to_string()),
            ("database_url", served_url),
            ("database_max_connections", "5".to_owned()),
            ("shutdown_timeout", "5".to_owned()),
        ];
        flags.extend(self.settings);
        // Settings go through the same layers and validation as the binary's.
        let settings = Layers::default()
            .flags(flags.iter().map(|(k, v)| (*k, v.clone())))
            .resolve()
            .expect("test settings are valid");
        basalt_server::install_crypto_provider();
        let app = match self.hooks {
            Some(hooks) => App::build_with_hooks(settings, hooks).await?,
            None => App::build(settings).await?,
        };
        let addr = app.addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until_stopped());
        Ok(TestApp {
            addr,
            database_url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            backend: self.backend,
            state,
            shutdown,
            server: Some(server),
            _dir: dir,
            _pg: pg,
        })
    }
}

/// A running Basalt on a free port with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub backend: Backend,
    /// The `database_url` it was started with.
    pub database_url: String,
    /// The app's services, for tests that check what a request left behind.
    pub state: AppState,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    // Dropped after the server: drops the PostgreSQL database.
    _pg: Option<postgres::TestDatabase>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::builder(backend).spawn().await
    }

    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            settings: Vec::new(),
            database_url: None,
            database_port: None,
            hooks: None,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET and parse the body as JSON; returns the status too.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        json(self.get(path).await).await
    }

    /// Send `method path` with an optional token and JSON body; status and JSON back.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.header("Authorization", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        json(req.send().await.expect("request")).await
    }

    /// Create (or reset) a superuser and sign in over HTTP; returns the token.
    pub async fn superuser_token(&self) -> String {
        let email = "admin@basalt.test";
        let password = "admin-password-1";
        let snapshot = self.state.schema.snapshot();
        self.state
            .auth
            .upsert_superuser(&snapshot, email, password)
            .await
            .expect("superuser");
        self.sign_in("_superusers", email, password).await
    }

    /// Create a collection from its PocketBase-shaped definition as superuser `token`;
    /// returns the stored definition (panics unless the server answers 200).
    pub async fn create_collection(
        &self,
        token: &str,
        definition: serde_json::Value,
    ) -> serde_json::Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/collections",
                Some(token),
                Some(definition),
            )
            .await;
        assert_eq!(status, 200, "create collection: {body}");
        body
    }

    /// Create a record in auth collection `collection` with this email and password.
    pub async fn create_auth_record(
        &self,
        collection: &str,
        email: &str,
        password: &str,
    ) -> serde_json::Value {
        let hash = basalt_server::auth::password::hash(password.to_owned())
            .await
            .unwrap();
        let values = serde_json::json!({
            "email": email, "password": hash,
            "tokenKey": uuid::Uuid::now_v7().simple().to_string(),
        });
        let record = self
            .state
            .records
            .insert_system(collection, values.as_object().unwrap().clone())
            .await
            .expect("insert auth record");
        serde_json::Value::Object(record)
    }

    /// A `users` record with this email and password, signed in: (record, token).
    pub async fn user(&self, email: &str, password: &str) -> (serde_json::Value, String) {
        let record = self.create_auth_record("users", email, password).await;
        let token = self.sign_in("users", email, password).await;
        (record, token)
    }

    /// Sign in over HTTP; returns the token (panics on failure).
    pub async fn sign_in(&self, collection: &str, identity: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/collections/{collection}/auth-with-password"),
                None,
                Some(serde_json::json!({"identity": identity, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "sign in to {collection}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// How many rows `table` holds, read straight from the database.
    pub async fn count_rows(&self, table: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let db = &self.state.db;
        use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query};
        let count = Query::select()
            .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
            .from(Alias::new(table))
            .to_owned();
        let row = db
            .conn()
            .query_one_raw(db.database_backend().build(&count))
            .await
            .expect("count query")
            .expect("a count row");
        row.try_get::<i64>("", "n").expect("a count")
    }

    /// Column names of a table, from the database's catalog.
    pub async fn columns(&self, table: &str) -> Vec<String> {
        use sea_orm::ConnectionTrait;
        let db = &self.state.db;
        let (sql, values): (&str, Vec<sea_orm::Value>) = match self.backend {
            Backend::Sqlite => (
                "SELECT name FROM pragma_table_info(?) ORDER BY cid",
                vec![table.into()],
            ),
            Backend::Postgres => (
                "SELECT column_name AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                vec![table.into()],
            ),
        };
        let rows = db
            .conn()
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                db.database_backend(),
                sql,
                values,
            ))
            .await
            .expect("catalog query");
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect()
    }

    /// Index names of a table (excluding primary keys), from the database's catalog.
    pub async fn index_names(&self, table: &str) -> Vec<String> {
        use sea_orm::ConnectionTrait;
        let db = &self.state.db;
        let (sql, values): (&str, Vec<sea_orm::Value>) = match self.backend {
            Backend::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name",
                vec![table.into()],
            ),
            Backend::Postgres => (
                "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = $1 AND indexname NOT LIKE '%_pkey' ORDER BY indexname",
                vec![table.into()],
            ),
        };
        let rows = db
            .conn()
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                db.database_backend(),
                sql,
                values,
            ))
            .await
            .expect("catalog query");
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect()
    }

    /// Stop gracefully and wait for the server to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A response's status and JSON body (`Null` when the body is not JSON).
pub async fn json(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Poll `check` until it returns `Some`, or panic after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// An HTTP client for the tests (TLS set up the way the server sets it up).
pub fn client() -> reqwest::Client {
    basalt_server::install_crypto_provider();
    reqwest::Client::new()
}

/// A guest component built from `functions-sdk/examples` (`tests/run` builds them with
/// `cargo build --target wasm32-wasip2 --release -p basalt-functions --examples`).
pub fn guest(name: &str) -> Vec<u8> {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/api-HASH → target
    let target = exe
        .parent()
        .and_then(std::path::Path::parent)
        .and_then(std::path::Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = target
        .join("wasm32-wasip2/release/examples")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the guests with `cargo build --target wasm32-wasip2 --release -p basalt-functions --examples` (tests/run does)",
            path.display()
        )
    })
}
