//! The database layer on both engines: system migrations, the installation id, and
//! SQLite's write lock taken up front.

use std::sync::Arc;

use basalt_migrations::{Migrator, MigratorTrait};
use basalt_server::config::DatabaseUrl;
use basalt_server::db::Db;
use basalt_tests::postgres::TestDatabase;
use basalt_tests::{Backend, backend_tests};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

backend_tests!(
    migrations_apply_once_and_are_idempotent,
    installation_id_is_stable_across_connections,
);

/// A fresh, empty database for `backend`; the guards keep it alive.
async fn empty_database(
    backend: Backend,
) -> (DatabaseUrl, tempfile::TempDir, Option<TestDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => (
            DatabaseUrl::Sqlite {
                path: Some(dir.path().join("nested/dir/data.db")),
            },
            dir,
            None,
        ),
        Backend::Postgres => {
            let db = TestDatabase::create_empty().await;
            (db.database_url(), dir, Some(db))
        }
    }
}

async fn count(db: &Db, table: &str) -> i64 {
    use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query};
    let query = Query::select()
        .expr_as(Expr::col(Asterisk).count(), Alias::new("n"))
        .from(Alias::new(table))
        .to_owned();
    let row = db.conn().query_one(&query).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn migrations_apply_once_and_are_idempotent(backend: Backend) {
    let (url, _dir, _pg) = empty_database(backend).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let all = Migrator::migrations().len();
    assert!(all >= 1);
    assert_eq!(
        db.migrate().await.unwrap(),
        all,
        "first run applies every migration"
    );
    assert_eq!(db.migrate().await.unwrap(), 0, "second run applies none");
    assert_eq!(count(&db, "_migrations").await, all as i64);
    assert_eq!(count(&db, "_settings").await, 0);
    db.close().await.unwrap();

    // A second process (a restart) finds everything applied.
    let again = Db::connect(&url, 2).await.unwrap();
    assert_eq!(again.migrate().await.unwrap(), 0);
    assert_eq!(count(&again, "_migrations").await, all as i64);
}

async fn installation_id_is_stable_across_connections(backend: Backend) {
    let (url, _dir, _pg) = empty_database(backend).await;
    let first = Db::connect(&url, 2).await.unwrap();
    first.migrate().await.unwrap();
    let id = first.installation_id().await.unwrap();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(first.installation_id().await.unwrap(), id);
    first.close().await.unwrap();

    let second = Db::connect(&url, 2).await.unwrap();
    assert_eq!(second.installation_id().await.unwrap(), id);
    assert_eq!(count(&second, "_settings").await, 1);
}

/// Sixteen tasks each read a counter and write it back, ten times, in write
/// transactions. A deferred SQLite transaction that reads first cannot upgrade to a
/// writer once another has committed (SQLITE_BUSY regardless of the busy timeout);
/// `begin_write` takes the lock at BEGIN, so every increment must land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers_wait_for_the_lock_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::Sqlite {
        path: Some(dir.path().join("data.db")),
    };
    let db = Arc::new(Db::connect(&url, 8).await.unwrap());
    db.conn()
        .execute_unprepared(
            "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             INSERT INTO counter (id, n) VALUES (1, 0);",
        )
        .await
        .unwrap();
    let journal = db
        .conn()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(journal, "wal");

    let mut tasks = Vec::new();
    for _ in 0..16 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let txn = db.begin_write().await?;
                let n: i64 = txn
                    .query_one_raw(Statement::from_string(
                        DatabaseBackend::Sqlite,
                        "SELECT n FROM counter WHERE id = 1",
                    ))
                    .await?
                    .expect("row")
                    .try_get_by_index(0)?;
                tokio::task::yield_now().await;
                txn.execute_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Sqlite,
                    "UPDATE counter SET n = ? WHERE id = 1",
                    [(n + 1).into()],
                ))
                .await?;
                txn.commit().await?;
            }
            Ok::<_, sea_orm::DbErr>(())
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("no writer fails with SQLITE_BUSY");
    }
    let n: i64 = db
        .conn()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT n FROM counter WHERE id = 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(n, 160, "no increment lost");

    // `begin_write` is a real transaction: a rollback leaves nothing behind.
    let txn = db.begin_write().await.unwrap();
    txn.execute_unprepared("UPDATE counter SET n = -1")
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let still = db.conn().begin().await.unwrap();
    let n: i64 = still
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT n FROM counter",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(n, 160);
}

/// PostgreSQL: a one-statement create holds its table's lock before it asks for the
/// schema version row; a schema change takes that row first, then the table. The
/// create must not wait on the row while holding the table (a deadlock, which
/// PostgreSQL breaks by failing one side — the schema change, when it looks first):
/// it gives the table up and waits its turn on the full path, and both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_never_deadlock_with_a_schema_change_in_progress() {
    use basalt_tests::TestApp;
    let test = "db::creates_never_deadlock_with_a_schema_change_in_progress";
    if !basalt_tests::postgres::available_or_skip(test).await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        serde_json::json!({"name": "notes", "createRule": "", "viewRule": "",
                           "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    // A schema change in progress: the version row is taken, as `apply` does first.
    let change = app.state.db.conn().begin().await.unwrap();
    for sql in [
        // This side looks for deadlocks first, so a cycle would fail the change.
        "SET LOCAL deadlock_timeout = '50ms'",
        "SET LOCAL lock_timeout = '5s'",
        "UPDATE \"_settings\" SET \"updated\" = now() WHERE \"key\" = 'schemaVersion'",
    ] {
        change.execute_unprepared(sql).await.unwrap();
    }
    let client = app.client.clone();
    let url = app.url("/api/collections/notes/records");
    let create = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&serde_json::json!({"title": "during the change"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    });
    // The create is waiting on a lock (the change's row) before the change goes on.
    basalt_tests::eventually(
        std::time::Duration::from_secs(5),
        "the create to wait on the change",
        || async {
            let waiting = app
                .state
                .db
                .conn()
                .query_one_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                ))
                .await
                .unwrap()
                .and_then(|row| row.try_get::<i64>("", "n").ok())
                .unwrap_or(0);
            (waiting > 0).then_some(())
        },
    )
    .await;
    assert!(!create.is_finished(), "the create waits for the change");
    // Then the change takes the table, as its ALTER would.
    let locked = change
        .execute_unprepared("LOCK TABLE \"notes\" IN ACCESS EXCLUSIVE MODE")
        .await;
    assert!(
        locked.is_ok(),
        "the schema change deadlocked with a create: {locked:?}"
    );
    change.commit().await.unwrap();
    let (status, body) = create.await.unwrap();
    assert_eq!(status, 200, "{body}");
}
