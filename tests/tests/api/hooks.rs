//! The write context's hook points (issue #13): a before-hook changes values, rejects
//! with a message and field errors, and makes host calls in the same transaction that
//! roll back with it; cascaded deletes pass the hooks; only committed changes reach the
//! after-commit chain; and in a SQLite group commit one request's failure rolls back
//! only that request.

use std::sync::Arc;

use basalt_tests::hooks::TestHooks;
use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    hooks_modify_reject_and_roll_back,
    concurrent_writes_fail_alone
);

async fn total(app: &TestApp, token: &str, collection: &str) -> u64 {
    let (status, page) = app
        .call(
            Method::GET,
            &format!("/api/collections/{collection}/records"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["totalItems"].as_u64().unwrap()
}

async fn setup(app: &TestApp) -> String {
    let admin = app.superuser_token().await;
    let open = |name: &str, fields: Value| {
        json!({"name": name, "listRule": "", "viewRule": "", "createRule": "",
               "updateRule": "", "deleteRule": "", "fields": fields})
    };
    let hooked = app
        .create_collection(
            &admin,
            open(
                "hooked",
                json!([{"name": "title", "type": "text"}, {"name": "stamp", "type": "text"}]),
            ),
        )
        .await;
    app.create_collection(
        &admin,
        open(
            "hooked_child",
            json!([{"name": "title", "type": "text"}, {"name": "stamp", "type": "text"},
                   {"name": "parent", "type": "relation", "collectionId": hooked["id"],
                    "maxSelect": 1, "cascadeDelete": true}]),
        ),
    )
    .await;
    app.create_collection(
        &admin,
        open(
            "audit",
            json!([{"name": "note", "type": "text", "required": true}]),
        ),
    )
    .await;
    admin
}

async fn create(app: &TestApp, collection: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::POST,
        &format!("/api/collections/{collection}/records"),
        None,
        Some(body),
    )
    .await
}

async fn hooks_modify_reject_and_roll_back(backend: Backend) {
    let hooks = Arc::new(TestHooks::default());
    let app = TestApp::builder(backend).hooks(hooks.clone()).spawn().await;
    let admin = setup(&app).await;

    // Modify: the hook's values are what is stored, answered and published.
    let (status, hello) = create(&app, "hooked", json!({"title": "hello"})).await;
    assert_eq!(status, 200, "{hello}");
    assert_eq!(hello["title"], "HELLO");
    assert_eq!(hello["stamp"], "hooked");
    let id = hello["id"].as_str().unwrap().to_owned();
    let (status, updated) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/hooked/records/{id}"),
            None,
            Some(json!({"title": "changed"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["title"], "CHANGED");
    // Collections the hook leaves alone are untouched.
    let (status, note) = create(&app, "audit", json!({"note": "plain"})).await;
    assert_eq!(status, 200, "{note}");
    assert!(note.get("stamp").is_none());

    // Reject: 400 with the hook's message and field errors; nothing stored.
    let (status, refused) = create(&app, "hooked", json!({"title": "reject"})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["message"], "Titles may not say reject.");
    assert_eq!(refused["data"]["title"]["code"], "hook_rejected");
    assert_eq!(total(&app, &admin, "hooked").await, 1);
    let (status, refused) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/hooked/records/{id}"),
            None,
            Some(json!({"title": "reject"})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");

    // A host call commits with its write...
    let (status, audited) = create(&app, "hooked", json!({"title": "audit"})).await;
    assert_eq!(status, 200, "{audited}");
    assert_eq!(total(&app, &admin, "audit").await, 2);
    // ...and rolls back with it.
    let (status, refused) = create(&app, "hooked", json!({"title": "audit-then-reject"})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(total(&app, &admin, "audit").await, 2);
    assert_eq!(total(&app, &admin, "hooked").await, 2);

    // Deletes pass the hooks, cascaded ones too.
    let (status, keep) = create(&app, "hooked", json!({"title": "keep"})).await;
    assert_eq!(status, 200, "{keep}");
    let keep_id = keep["id"].as_str().unwrap();
    let (status, refused) = app
        .call(
            Method::DELETE,
            &format!("/api/collections/hooked/records/{keep_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let (status, child) =
        create(&app, "hooked_child", json!({"title": "keep", "parent": id})).await;
    assert_eq!(status, 200, "{child}");
    let (status, refused) = app
        .call(
            Method::DELETE,
            &format!("/api/collections/hooked/records/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(
        status, 400,
        "a cascade to a kept child is refused: {refused}"
    );
    assert_eq!(total(&app, &admin, "hooked").await, 3);
    assert_eq!(total(&app, &admin, "hooked_child").await, 1);

    // The after-commit chain saw exactly the committed changes.
    let log = hooks.committed.lock().unwrap().clone();
    let created: Vec<_> = log
        .iter()
        .filter(|(c, _, a)| c == "hooked" && *a == "created")
        .collect();
    assert_eq!(created.len(), 3, "{log:?}");
    assert_eq!(
        log.iter().filter(|(c, _, _)| c == "audit").count(),
        2,
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|(c, _, a)| c.starts_with("hooked") && *a == "deleted"),
        "{log:?}"
    );
}

/// Many writes at once (on SQLite, one group commit): the ones that fail — a hook's
/// refusal, a unique value taken by another request of the same batch — roll back
/// alone; every other one is stored and answered.
async fn concurrent_writes_fail_alone(backend: Backend) {
    let app = TestApp::builder(backend)
        .hooks(Arc::new(TestHooks::default()))
        .spawn()
        .await;
    let admin = setup(&app).await;
    let (status, res) = app
        .call(
            Method::PATCH,
            "/api/collections/hooked",
            Some(&admin),
            Some(json!({"indexes": ["CREATE UNIQUE INDEX idx_hooked_stamp_title ON hooked (title)"]})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..48 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let title = match i % 4 {
                0 => "reject".to_owned(),
                1 => "same".to_owned(),
                _ => format!("t{i}"),
            };
            let (status, body) = create(&app, "hooked", json!({"title": title})).await;
            (i, status, body)
        }));
    }
    let mut stored = Vec::new();
    let mut same = 0;
    for task in tasks {
        let (i, status, body) = task.await.unwrap();
        match i % 4 {
            0 => assert_eq!(status, 400, "{body}"),
            1 => {
                if status == 200 {
                    same += 1;
                    stored.push(body["id"].as_str().unwrap().to_owned());
                } else {
                    assert_eq!(status, 400, "{body}");
                    assert_eq!(
                        body["data"]["title"]["code"], "validation_not_unique",
                        "{body}"
                    );
                }
            }
            _ => {
                assert_eq!(status, 200, "{body}");
                stored.push(body["id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(same, 1, "exactly one of the equal titles is stored");
    assert_eq!(total(&app, &admin, "hooked").await, stored.len() as u64);
    for id in stored {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/collections/hooked/records/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}
