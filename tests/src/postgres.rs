//! One fresh PostgreSQL database per test, copied from a template that already has the
//! system migrations, and dropped when the test ends.
//!
//! The admin connection comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Test processes run in parallel, so
//! template creation is serialised with an advisory lock; the template's name carries
//! a hash of the migration list and sources, so a new or edited migration makes a new
//! template.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use basalt_migrations::{Migrator, MigratorTrait};
use basalt_server::config::DatabaseUrl;
use basalt_server::db::Db;
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, Statement};
use url::Url;

use crate::services::skip_or_fail;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK: i64 = 0x6261_7361_6c74_7470; // "basalttp"

pub fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

async fn admin() -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(admin_url());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false);
    sea_orm::Database::connect(options).await
}

/// Whether PostgreSQL can be used by `test`; see [`crate::require_service`] for what
/// happens when it cannot.
pub async fn available_or_skip(test: &str) -> bool {
    match admin().await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(err) => {
            skip_or_fail("PostgreSQL", &admin_url(), test, &err.to_string());
            false
        }
    }
}

/// The database's name quoted as an SQL identifier. Names here are generated from hex
/// digits and a fixed prefix, and `CREATE DATABASE` takes no bind parameters.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn url_for(name: &str) -> String {
    let mut url = Url::parse(&admin_url()).expect("TEST_POSTGRES_URL is a URL");
    url.set_path(name);
    url.to_string()
}

fn template_name() -> String {
    let mut hasher = DefaultHasher::new();
    for migration in Migrator::migrations() {
        migration.name().hash(&mut hasher);
    }
    // The migrations' sources, hashed by build.rs: an edited migration is a new template.
    env!("BASALT_MIGRATIONS_HASH").hash(&mut hasher);
    format!("basalt_tpl_{:016x}", hasher.finish())
}

async fn exec(conn: &DatabaseConnection, sql: &str) {
    conn.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A PostgreSQL database that exists for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A new database with the system migrations applied.
    pub async fn create() -> TestDatabase {
        let admin = admin().await.expect("PostgreSQL admin connection");
        let lock = Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_lock($1)",
            [TEMPLATE_LOCK.into()],
        );
        admin.execute_raw(lock).await.expect("advisory lock");
        let template = template_name();
        let exists = admin
            .query_one_raw(Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                [template.clone().into()],
            ))
            .await
            .expect("look up template")
            .is_some();
        if !exists {
            // Build under a temporary name and rename, so a crash midway never leaves a
            // half-migrated template behind under the real name.
            let building = format!("{template}_building");
            exec(
                &admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&building)),
            )
            .await;
            exec(&admin, &format!("CREATE DATABASE {}", ident(&building))).await;
            let db = Db::connect(
                &DatabaseUrl::Postgres(Url::parse(&url_for(&building)).expect("url")),
                1,
            )
            .await
            .expect("connect to template");
            db.migrate().await.expect("migrate template");
            db.close().await.expect("close template");
            exec(
                &admin,
                &format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(&building),
                    ident(&template)
                ),
            )
            .await;
        }
        let name = format!("basalt_test_{}", uuid::Uuid::now_v7().simple());
        exec(
            &admin,
            &format!(
                "CREATE DATABASE {} TEMPLATE {}",
                ident(&name),
                ident(&template)
            ),
        )
        .await;
        let unlock = Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_unlock($1)",
            [TEMPLATE_LOCK.into()],
        );
        admin.execute_raw(unlock).await.expect("advisory unlock");
        let _ = admin.close().await;
        let url = url_for(&name);
        TestDatabase { name, url }
    }

    /// A new database with nothing in it, for tests of the migrations themselves.
    pub async fn create_empty() -> TestDatabase {
        let admin = admin().await.expect("PostgreSQL admin connection");
        let name = format!("basalt_test_{}", uuid::Uuid::now_v7().simple());
        exec(&admin, &format!("CREATE DATABASE {}", ident(&name))).await;
        let _ = admin.close().await;
        let url = url_for(&name);
        TestDatabase { name, url }
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::Postgres(Url::parse(&self.url).expect("url"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async code: use a thread with a runtime of its own. FORCE
        // ends the connections a server that is still stopping may hold.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name));
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = admin().await?;
                admin.execute_unprepared(&sql).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
