//! The record pipeline's costs and caches (issue #13): a signed-in request reads no row
//! of its caller, yet a rotated token key is refused from the next request on; and the
//! statements a view and a create take are counted.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::json;

backend_tests!(signed_in_requests_skip_the_caller_row);

async fn signed_in_requests_skip_the_caller_row(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "notes", "listRule": "owner = @request.auth.id",
               "viewRule": "owner = @request.auth.id", "createRule": "owner = @request.auth.id",
               "fields": [{"name": "title", "type": "text"},
                          {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_",
                           "maxSelect": 1}]}),
    )
    .await;
    let (user, token) = app.user("ann@example.com", "ann-password").await;
    let id = user["id"].as_str().unwrap();
    let counted = |method: Method, path: String, token: String, body: Option<serde_json::Value>| {
        let app = &app;
        async move {
            let before = app.state.db.statements();
            let (status, res) = app.call(method, &path, Some(&token), body).await;
            (status, res, app.state.db.statements() - before)
        }
    };
    let create = |title: &str| {
        counted(
            Method::POST,
            "/api/collections/notes/records".into(),
            token.clone(),
            Some(json!({"title": title, "owner": id})),
        )
    };
    let (status, note, _) = create("warm").await;
    assert_eq!(status, 200, "{note}");
    let path = format!(
        "/api/collections/notes/records/{}",
        note["id"].as_str().unwrap()
    );
    // The first request may read the caller; the next one does not.
    let (status, _, _) = counted(Method::GET, path.clone(), token.clone(), None).await;
    assert_eq!(status, 200);
    let (status, body, statements) = counted(Method::GET, path.clone(), token.clone(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(statements, 1, "a signed-in view is the view alone");
    let (status, body, statements) = create("second").await;
    assert_eq!(status, 200, "{body}");
    // SQLite: savepoint, schema version, relation check, insert, outbox row, read-back
    // with the create and view rules, release, and the group's BEGIN and COMMIT.
    // PostgreSQL: BEGIN, schema version, relation check, insert, outbox row, read-back,
    // COMMIT.
    let most = match backend {
        Backend::Sqlite => 9,
        Backend::Postgres => 7,
    };
    assert!(statements <= most, "a create took {statements} statements");

    // A new password rotates the token key: the old token is refused at once.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/users/records/{id}"),
            Some(&token),
            Some(
                json!({"oldPassword": "ann-password", "password": "ann-password-2",
                        "passwordConfirm": "ann-password-2"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 401, "the old token is refused: {body}");
    let token = app
        .sign_in("users", "ann@example.com", "ann-password-2")
        .await;
    let (status, _) = app.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 200);
    // A superuser setting the key (not the owner) counts the same.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/users/records/{id}"),
            Some(&admin),
            Some(json!({"tokenKey": "k".repeat(50)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!(status, 401);
}

/// SQLite: a schema change refreshes the planner's statistics (`PRAGMA optimize`), so
/// a collection filled before an index or rule change is planned with real numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_refresh_sqlite_statistics() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "notes", "fields": [{"name": "category", "type": "number"}],
               "indexes": ["CREATE INDEX idx_notes_category ON notes (category)"]}),
    )
    .await;
    for i in 0..300 {
        app.state
            .records
            .insert_system(
                "notes",
                json!({"category": i % 10}).as_object().unwrap().clone(),
            )
            .await
            .unwrap();
    }
    let analyzed = || async {
        app.state
            .db
            .conn()
            .query_all_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Sqlite,
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'idx_notes_category'".to_owned(),
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "stat").unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        !analyzed().await.iter().any(|s| s.starts_with("300 ")),
        "the rows were inserted after the last statistics"
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/notes",
            Some(&admin),
            Some(json!({"listRule": ""})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stats = analyzed().await;
    assert!(
        stats.iter().any(|s| s.starts_with("300 ")),
        "statistics count the 300 rows after the change: {stats:?}"
    );
}
