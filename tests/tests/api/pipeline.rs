//! The record pipeline's costs and caches (issue #13): a signed-in request reads no row
//! of its caller, yet a rotated token key is refused from the next request on; and the
//! statements a view and a create take are counted.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::json;

backend_tests!(
    signed_in_requests_skip_the_caller_row,
    a_create_event_carries_the_record_as_stored,
    a_refused_create_writes_nothing,
    fixed_shape_statements_are_built_once_per_schema_version
);

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
    // PostgreSQL: one statement, its own transaction (schema version, relation check,
    // insert, outbox row and the rules in one round trip).
    let most = match backend {
        Backend::Sqlite => 9,
        Backend::Postgres => 1,
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

/// The last outbox event's `data.record`.
async fn last_event_record(app: &TestApp) -> serde_json::Value {
    use sea_orm::ConnectionTrait;
    let db = &app.state.db;
    let row = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            db.database_backend(),
            "SELECT payload FROM _outbox ORDER BY seq DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .expect("an outbox row");
    let payload: String = row.try_get("", "payload").unwrap();
    let event: serde_json::Value = serde_json::from_str(&payload).unwrap();
    event["data"]["record"].clone()
}

/// A create's outbox event carries exactly the record the API answers with, for every
/// kind of field, given or left to its default (on PostgreSQL the event is built
/// before the one statement that writes both).
async fn a_create_event_carries_the_record_as_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "kinds", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "n", "type": "number"},
            {"name": "maybe", "type": "number", "nullable": true},
            {"name": "flag", "type": "bool"},
            {"name": "mail", "type": "email"},
            {"name": "site", "type": "url"},
            {"name": "due", "type": "date"},
            {"name": "doc", "type": "json"},
            {"name": "tags", "type": "select", "maxSelect": 3, "values": ["a", "b", "c"]},
            {"name": "kind", "type": "select", "values": ["x", "y"]},
            {"name": "created", "type": "autodate", "onCreate": true},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
        ]}),
    )
    .await;
    for body in [
        json!({}),
        json!({"title": "Hello", "n": 2.5, "maybe": 7, "flag": true, "mail": "Ann@Example.COM",
               "site": "https://example.com/x", "due": "2026-12-02 10:00:00.000Z",
               "doc": {"b": [1, 2.5, null], "a": "ü"}, "tags": ["b", "a"], "kind": "y"}),
        json!({"n": 3, "doc": 1e3, "tags": [], "maybe": null}),
    ] {
        let (status, record) = app
            .call(
                Method::POST,
                "/api/collections/kinds/records",
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 200, "{body}: {record}");
        let mut event = last_event_record(&app).await;
        let mut answered = record.clone();
        // The API adds the collection's name and id; the event has them in its source.
        for shaped in ["collectionName", "collectionId"] {
            answered.as_object_mut().unwrap().remove(shaped);
            event.as_object_mut().unwrap().remove(shaped);
        }
        assert_eq!(event, answered, "{body}");
        let (_, fetched) = app
            .get_json(&format!(
                "/api/collections/kinds/records/{}",
                record["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(fetched, record, "{body}");
    }
}

/// A create the create rule refuses, or whose relation is missing, or that breaks a
/// unique index, leaves neither a row nor an event, and says why.
async fn a_refused_create_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "posts", "listRule": "", "viewRule": "",
               "createRule": "@request.auth.id != '' && owner = @request.auth.id && title != 'no'",
               "fields": [{"name": "title", "type": "text"},
                          {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_",
                           "maxSelect": 1}],
               "indexes": ["CREATE UNIQUE INDEX idx_posts_title ON posts (title)"]}),
    )
    .await;
    let (user, token) = app.user("ann@example.com", "ann-password").await;
    let id = user["id"].as_str().unwrap();
    let outbox = app.count_rows("_outbox").await;
    let create = |body: serde_json::Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.call(
                Method::POST,
                "/api/collections/posts/records",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (status, body) = create(json!({"title": "no", "owner": id})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"][""]["code"], "validation_create_rule", "{body}");
    let (status, body) = create(json!({"title": "x", "owner": "nosuchuser0000"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["data"]["owner"]["code"], "validation_missing_rel_records",
        "{body}"
    );
    assert_eq!(app.count_rows("posts").await, 0);
    assert_eq!(app.count_rows("_outbox").await, outbox, "no event either");
    let (status, body) = create(json!({"title": "yes", "owner": id})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = create(json!({"title": "yes", "owner": id})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["data"]["title"]["code"], "validation_not_unique",
        "{body}"
    );
    assert_eq!(app.count_rows("posts").await, 1);
    assert_eq!(app.count_rows("_outbox").await, outbox + 1);
}

/// The text of a create's insert and outbox row, an update, a delete and a view by id
/// is built once per collection, shape and schema version; a schema change makes new
/// texts with the new columns.
async fn fixed_shape_statements_are_built_once_per_schema_version(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let collection = app
        .create_collection(
            &admin,
            json!({"name": "posts", "listRule": "", "viewRule": "", "createRule": "",
                   "updateRule": "", "deleteRule": "",
                   "fields": [{"name": "title", "type": "text"},
                              {"name": "n", "type": "number"},
                              {"name": "meta", "type": "json"}]}),
        )
        .await;
    let built = || app.state.records.statement_texts_built();
    let round = |i: i64| {
        let app = &app;
        async move {
            let (status, post) = app
                .call(
                    Method::POST,
                    "/api/collections/posts/records",
                    None,
                    Some(json!({"title": format!("t{i}"), "n": i, "meta": {"i": i}})),
                )
                .await;
            assert_eq!(status, 200, "{post}");
            let path = format!(
                "/api/collections/posts/records/{}",
                post["id"].as_str().unwrap()
            );
            let (status, updated) = app
                .call(
                    Method::PATCH,
                    &path,
                    None,
                    Some(json!({"n+": 10, "meta": null})),
                )
                .await;
            assert_eq!(status, 200, "{updated}");
            assert_eq!(updated["n"], i + 10);
            assert_eq!(updated["meta"], serde_json::Value::Null);
            let (status, viewed) = app.call(Method::GET, &path, None, None).await;
            assert_eq!(status, 200, "{viewed}");
            assert_eq!(viewed["title"], format!("t{i}"));
            assert_eq!(viewed["n"], i + 10);
            let (status, _) = app.call(Method::DELETE, &path, None, None).await;
            assert_eq!(status, 204);
            let (status, _) = app.call(Method::GET, &path, None, None).await;
            assert_eq!(status, 404);
        }
    };
    round(1).await;
    let before = built();
    round(2).await;
    round(3).await;
    assert_eq!(
        built(),
        before,
        "the same shapes again build no statement text"
    );

    // A new column: the next writes build texts that name it.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/{}", collection["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"fields": [{"name": "title", "type": "text"},
                                   {"name": "n", "type": "number"},
                                   {"name": "meta", "type": "json"},
                                   {"name": "extra", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = built();
    let (status, post) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "after", "n": 1, "meta": [1], "extra": "kept"})),
        )
        .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["extra"], "kept");
    let path = format!(
        "/api/collections/posts/records/{}",
        post["id"].as_str().unwrap()
    );
    let (status, viewed) = app.call(Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{viewed}");
    assert_eq!(viewed["extra"], "kept");
    assert_eq!(viewed["meta"], json!([1]));
    assert!(built() > before, "a new schema version builds new texts");
}
