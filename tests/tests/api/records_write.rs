//! Writing records through the REST API: sign-up, validation, relations, and the
//! create, update and delete rules for each kind of caller.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    forms_are_typed_by_field,
    batches_are_all_or_nothing,
    if_match_prevents_lost_updates,
    deletes_follow_relations_in_one_transaction,
    patch_modifiers_apply_atomically,
    users_sign_up_through_create,
    rules_guard_create_update_and_delete,
    bad_records_are_refused_whole,
);

async fn users_sign_up_through_create(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, user) = app
        .call(Method::POST, "/api/collections/users/records", None, Some(json!({
            "email": "Zoe@Example.com", "password": "zoe-password", "passwordConfirm": "zoe-password",
            "name": "Zoe", "emailVisibility": true
        })))
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "zoe@example.com");
    assert_eq!(user["verified"], false);
    assert!(
        user.get("password").is_none() && user.get("tokenKey").is_none(),
        "{user}"
    );
    let token = app
        .sign_in("users", "zoe@example.com", "zoe-password")
        .await;

    for (body, field) in [
        (
            json!({"email": "a@example.com", "password": "long-enough", "passwordConfirm": "long-enough", "verified": true}),
            "verified",
        ),
        (
            json!({"email": "b@example.com", "password": "long-enough", "passwordConfirm": "long-enough", "tokenKey": "x".repeat(40)}),
            "tokenKey",
        ),
        (
            json!({"email": "c@example.com", "password": "long-enough", "passwordConfirm": "different"}),
            "passwordConfirm",
        ),
        (
            json!({"email": "d@example.com", "password": "short", "passwordConfirm": "short"}),
            "password",
        ),
        (
            json!({"email": "zoe@example.com", "password": "long-enough", "passwordConfirm": "long-enough"}),
            "email",
        ),
        (
            json!({"email": "not-an-email", "password": "long-enough", "passwordConfirm": "long-enough"}),
            "email",
        ),
        (
            json!({"password": "long-enough", "passwordConfirm": "long-enough"}),
            "email",
        ),
    ] {
        let (status, err) = app
            .call(
                Method::POST,
                "/api/collections/users/records",
                None,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["data"][field]["code"].is_string(),
            "{body} → {field}: {err}"
        );
    }
    let (_, all) = app
        .call(
            Method::GET,
            "/api/collections/users/records",
            Some(&app.superuser_token().await),
            None,
        )
        .await;
    assert_eq!(all["totalItems"], 1, "no refused sign-up wrote anything");

    // Changing the password needs the old one, and signs earlier sessions out.
    let me = format!(
        "/api/collections/users/records/{}",
        user["id"].as_str().unwrap()
    );
    let (status, err) = app
        .call(
            Method::PATCH,
            &me,
            Some(&token),
            Some(json!({"password": "new-password", "passwordConfirm": "new-password"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["data"]["oldPassword"].is_object());
    let (status, body) = app
        .call(Method::PATCH, &me, Some(&token), Some(json!({"oldPassword": "zoe-password", "password": "new-password", "passwordConfirm": "new-password", "name": "Zoë"})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Zoë");
    let (status, _) = app.call(Method::GET, &me, Some(&token), None).await;
    assert_eq!(status, 401, "the old token is revoked");
    let token = app
        .sign_in("users", "zoe@example.com", "new-password")
        .await;
    let (status, err) = app
        .call(
            Method::PATCH,
            &me,
            Some(&token),
            Some(json!({"email": "other@example.com"})),
        )
        .await;
    assert_eq!(
        status, 400,
        "email changes take the email-change flow: {err}"
    );
    let (status, err) = app
        .call(
            Method::PATCH,
            &me,
            Some(&token),
            Some(json!({"verified": true})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
}

async fn rules_guard_create_update_and_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let ann_token = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let bob_token = app
        .sign_in("users", "bob@example.com", "bob-password")
        .await;
    let owner = "author = @request.auth.id";
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "posts", "listRule": "", "viewRule": "",
                "createRule": "@request.auth.id != '' && author = @request.auth.id",
                "updateRule": owner, "deleteRule": owner,
                "fields": [
                    {"name": "title", "type": "text", "required": true},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"}
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let posts = "/api/collections/posts/records";
    let count = || async {
        let (_, page) = app
            .call(Method::GET, "/api/collections/posts/records", None, None)
            .await;
        page["totalItems"].as_i64().unwrap()
    };

    // Create: the rule sees the new record.
    let (status, err) = app
        .call(
            Method::POST,
            posts,
            None,
            Some(json!({"title": "x", "author": ann["id"]})),
        )
        .await;
    assert_eq!(status, 400, "anonymous: {err}");
    let (status, err) = app
        .call(
            Method::POST,
            posts,
            Some(&ann_token),
            Some(json!({"title": "x", "author": bob["id"]})),
        )
        .await;
    assert_eq!(status, 400, "ann writing as bob: {err}");
    assert_eq!(count().await, 0, "a failed create rule writes nothing");
    let (status, post) = app
        .call(
            Method::POST,
            posts,
            Some(&ann_token),
            Some(json!({"title": "Hello", "author": ann["id"]})),
        )
        .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["collectionName"], "posts");
    let one = format!("{posts}/{}", post["id"].as_str().unwrap());

    // Update and delete: another user gets a 404, as for a missing record.
    let (status, _) = app
        .call(
            Method::PATCH,
            &one,
            Some(&bob_token),
            Some(json!({"title": "Mine"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(Method::PATCH, &one, None, Some(json!({"title": "Mine"})))
        .await;
    assert_eq!(status, 404);
    let (status, updated) = app
        .call(
            Method::PATCH,
            &one,
            Some(&ann_token),
            Some(json!({"title": "Hello again"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["title"], "Hello again");
    assert_ne!(updated["updated"], post["updated"], "updated moves on");
    assert_eq!(updated["created"], post["created"]);
    let (status, updated) = app
        .call(
            Method::PATCH,
            &one,
            Some(&admin),
            Some(json!({"title": "By admin"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, _) = app.call(Method::DELETE, &one, Some(&bob_token), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.call(Method::DELETE, &one, Some(&ann_token), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.call(Method::GET, &one, Some(&admin), None).await;
    assert_eq!(status, 404);

    // Superusers-only collections.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "private", "fields": [{"name": "x", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/private/records",
            Some(&ann_token),
            Some(json!({"x": "1"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, created) = app
        .call(
            Method::POST,
            "/api/collections/private/records",
            Some(&admin),
            Some(json!({"x": "1"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let private = format!(
        "/api/collections/private/records/{}",
        created["id"].as_str().unwrap()
    );
    for method in [Method::PATCH, Method::DELETE] {
        let (status, _) = app
            .call(method.clone(), &private, Some(&ann_token), Some(json!({})))
            .await;
        assert_eq!(status, 403, "{method}");
    }
}

async fn bad_records_are_refused_whole(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "items", "createRule": "", "listRule": "", "viewRule": "",
                "fields": [
                    {"name": "name", "type": "text", "required": true, "max": 10},
                    {"name": "views", "type": "number"},
                    {"name": "done", "type": "bool"},
                    {"name": "kind", "type": "select", "values": ["a", "b"]},
                    {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_"},
                    {"name": "code", "type": "text"}
                ],
                "indexes": ["CREATE UNIQUE INDEX idx_items_code ON items (code)"]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let items = "/api/collections/items/records";
    for (body, field, code) in [
        (
            json!({"name": "x", "views": "lots"}),
            "views",
            "validation_invalid_number",
        ),
        (
            json!({"name": "x", "done": "true"}),
            "done",
            "validation_invalid_bool",
        ),
        (
            json!({"name": "x", "kind": "c"}),
            "kind",
            "validation_invalid_value",
        ),
        (
            json!({"name": "this is too long"}),
            "name",
            "validation_max_text_constraint",
        ),
        (json!({"views": 1}), "name", "validation_required"),
        (
            json!({"name": "x", "nope": 1}),
            "nope",
            "validation_unknown_field",
        ),
        (
            json!({"name": "x", "owner": "no-such-user"}),
            "owner",
            "validation_missing_rel_records",
        ),
        (
            json!({"name": "x", "id": "bad id!"}),
            "id",
            "validation_invalid_id",
        ),
    ] {
        let (status, err) = app
            .call(Method::POST, items, None, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["data"][field]["code"], code, "{body}: {err}");
    }
    let (status, created) = app
        .call(
            Method::POST,
            items,
            None,
            Some(json!({"id": "my-id_1", "name": "ok", "code": "c1"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["id"], "my-id_1", "a valid client id is kept");
    let (status, err) = app
        .call(
            Method::POST,
            items,
            None,
            Some(json!({"id": "my-id_1", "name": "again"})),
        )
        .await;
    assert_eq!(status, 400, "duplicate id: {err}");
    assert_eq!(err["data"]["id"]["code"], "validation_not_unique", "{err}");
    let (status, err) = app
        .call(
            Method::POST,
            items,
            None,
            Some(json!({"name": "dup", "code": "c1"})),
        )
        .await;
    assert_eq!(status, 400, "unique index: {err}");
    assert_eq!(
        err["data"]["code"]["code"], "validation_not_unique",
        "{err}"
    );
    let (_, page) = app.call(Method::GET, items, None, None).await;
    assert_eq!(page["totalItems"], 1, "nothing half-written");
    let _: Value = page;
}

async fn patch_modifiers_apply_atomically(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(Method::POST, "/api/collections", Some(&admin), Some(json!({
            "name": "counters", "createRule": "", "updateRule": "", "viewRule": "",
            "fields": [
                {"name": "n", "type": "number", "max": 1000},
                {"name": "tags", "type": "select", "values": ["a", "b", "c", "d"], "maxSelect": 3}
            ]
        })))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, created) = app
        .call(
            Method::POST,
            "/api/collections/counters/records",
            None,
            Some(json!({"n": 0, "tags": ["a"]})),
        )
        .await;
    let one = format!(
        "/api/collections/counters/records/{}",
        created["id"].as_str().unwrap()
    );

    // 50 concurrent increments land exactly.
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let req = app.client.patch(app.url(&one)).json(&json!({"n+": 1}));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    let (_, record) = app.call(Method::GET, &one, None, None).await;
    assert_eq!(record["n"], 50, "{record}");

    for (body, tags) in [
        (json!({"tags+": "b"}), json!(["a", "b"])),
        (json!({"+tags": "c"}), json!(["c", "a", "b"])),
        (json!({"tags-": "a"}), json!(["c", "b"])),
        (json!({"tags+": ["b", "d"]}), json!(["c", "b", "d"])),
    ] {
        let (status, record) = app
            .call(Method::PATCH, &one, None, Some(body.clone()))
            .await;
        assert_eq!(status, 200, "{body}: {record}");
        assert_eq!(record["tags"], tags, "{body}");
    }
    let (status, record) = app
        .call(Method::PATCH, &one, None, Some(json!({"n-": 5})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(record["n"], 45);
    for (body, field) in [
        (json!({"tags+": "a"}), "tags"),
        (json!({"tags+": "z"}), "tags"),
        (json!({"n+": "one"}), "n+"),
        (json!({"n+": 2000}), "n"),
        (json!({"+n": 1}), "+n"),
        (json!({"nope+": 1}), "nope+"),
    ] {
        let (status, err) = app
            .call(Method::PATCH, &one, None, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["data"][field].is_object(), "{body} → {field}: {err}");
    }
    let (_, record) = app.call(Method::GET, &one, None, None).await;
    assert_eq!(
        (record["n"].clone(), record["tags"].clone()),
        (json!(45), json!(["c", "b", "d"])),
        "refused changes change nothing"
    );
}

async fn deletes_follow_relations_in_one_transaction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let create = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let (status, created) = app
                .call(Method::POST, "/api/collections", Some(&admin), Some(body))
                .await;
            assert_eq!(status, 200, "{created}");
            created["id"].as_str().unwrap().to_owned()
        }
    };
    let authors =
        create(json!({"name": "authors", "fields": [{"name": "name", "type": "text"}]})).await;
    let tags = create(json!({"name": "tags", "fields": [{"name": "label", "type": "text"}]})).await;
    let posts = create(json!({"name": "posts", "fields": [
        {"name": "author", "type": "relation", "collectionId": authors, "cascadeDelete": true},
        {"name": "tags", "type": "relation", "collectionId": tags, "maxSelect": 5}
    ]}))
    .await;
    create(json!({"name": "comments", "fields": [{"name": "post", "type": "relation", "collectionId": posts, "cascadeDelete": true}]})).await;
    create(json!({"name": "likes", "fields": [{"name": "post", "type": "relation", "collectionId": posts}]})).await;
    create(json!({"name": "pins", "fields": [{"name": "post", "type": "relation", "collectionId": posts, "required": true}]})).await;

    let add = |collection: &'static str, body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let path = format!("/api/collections/{collection}/records");
            let (status, record) = app
                .call(Method::POST, &path, Some(&admin), Some(body))
                .await;
            assert_eq!(status, 200, "{record}");
        }
    };
    add("authors", json!({"id": "a1", "name": "Ann"})).await;
    add("authors", json!({"id": "a2", "name": "Bob"})).await;
    add("tags", json!({"id": "t1"})).await;
    add("tags", json!({"id": "t2"})).await;
    add(
        "posts",
        json!({"id": "p1", "author": "a1", "tags": ["t1", "t2"]}),
    )
    .await;
    add("posts", json!({"id": "p2", "author": "a1"})).await;
    add("posts", json!({"id": "p3", "author": "a2", "tags": ["t1"]})).await;
    add("comments", json!({"id": "c1", "post": "p1"})).await;
    add("comments", json!({"id": "c2", "post": "p3"})).await;
    add("likes", json!({"id": "l1", "post": "p2"})).await;
    add("pins", json!({"id": "n1", "post": "p3"})).await;

    let ids = |collection: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let path = format!("/api/collections/{collection}/records?sort=id");
            let (_, page) = app.call(Method::GET, &path, Some(&admin), None).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    // a1 → its posts p1, p2 → p1's comment c1; the like of p2 loses its reference.
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/collections/authors/records/a1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(ids("posts").await, ["p3"]);
    assert_eq!(ids("comments").await, ["c2"]);
    assert_eq!(ids("likes").await, ["l1"]);
    let (_, like) = app
        .call(
            Method::GET,
            "/api/collections/likes/records/l1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(like["post"], "");

    // A deleted tag leaves the posts' lists.
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/collections/tags/records/t1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, post) = app
        .call(
            Method::GET,
            "/api/collections/posts/records/p3",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(post["tags"], json!([]));

    // A required reference without cascade blocks the delete, whole.
    let (status, err) = app
        .call(
            Method::DELETE,
            "/api/collections/authors/records/a2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("pins.post"), "{err}");
    assert_eq!(ids("authors").await, ["a2"]);
    assert_eq!(ids("posts").await, ["p3"]);
    assert_eq!(
        ids("comments").await,
        ["c2"],
        "nothing of the refused cascade happened"
    );
}

async fn if_match_prevents_lost_updates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, _) = app
        .call(Method::POST, "/api/collections", Some(&admin), Some(json!({
            "name": "docs", "createRule": "", "viewRule": "", "updateRule": "", "deleteRule": "",
            "fields": [{"name": "body", "type": "text"}, {"name": "note", "type": "text", "hidden": true}]
        })))
        .await;
    assert_eq!(status, 200);
    let (_, doc) = app
        .call(
            Method::POST,
            "/api/collections/docs/records",
            None,
            Some(json!({"body": "v1"})),
        )
        .await;
    let one = app.url(&format!(
        "/api/collections/docs/records/{}",
        doc["id"].as_str().unwrap()
    ));
    let tag_of = |res: &reqwest::Response| res.headers()["etag"].to_str().unwrap().to_owned();

    let first = app.client.get(&one).send().await.unwrap();
    let v1 = tag_of(&first);
    let as_admin = app
        .client
        .get(&one)
        .header("Authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        tag_of(&as_admin),
        v1,
        "the same version has one tag, whoever reads it"
    );

    let res = app
        .client
        .patch(&one)
        .header("If-Match", &v1)
        .json(&json!({"body": "v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v2 = tag_of(&res);
    assert_ne!(v1, v2);
    // A writer still holding v1 loses the race loudly instead of overwriting v2.
    let res = app
        .client
        .patch(&one)
        .header("If-Match", &v1)
        .json(&json!({"body": "stale"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 412);
    let res = app
        .client
        .delete(&one)
        .header("If-Match", &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let now = app.client.get(&one).send().await.unwrap();
    assert_eq!(tag_of(&now), v2);
    assert_eq!(
        now.json::<Value>().await.unwrap()["body"],
        "v2",
        "refused writes changed nothing"
    );

    let res = app
        .client
        .patch(&one)
        .header("If-Match", "*")
        .json(&json!({"body": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v3 = tag_of(&res);
    let res = app
        .client
        .patch(&one)
        .json(&json!({"body": "v4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "no If-Match, no check");
    let v4 = tag_of(&res);
    assert_ne!(v3, v4);
    let res = app
        .client
        .delete(&one)
        .header("If-Match", format!("{v3}, {v4}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "any listed tag matches");
}

async fn batches_are_all_or_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(Method::POST, "/api/collections", Some(&admin), Some(json!({
            "name": "items", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            "fields": [{"name": "name", "type": "text", "required": true}],
            "indexes": ["CREATE UNIQUE INDEX idx_items_name ON items (name)"]
        })))
        .await;
    assert_eq!(status, 200, "{body}");
    let names = || async {
        let (_, page) = app
            .call(
                Method::GET,
                "/api/collections/items/records?sort=name",
                None,
                None,
            )
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let url = "/api/collections/items/records";
    let (status, responses) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [
                {"method": "POST", "url": url, "body": {"id": "a", "name": "a"}},
                {"method": "POST", "url": url, "body": {"id": "b", "name": "b"}},
                {"method": "PATCH", "url": format!("{url}/a"), "body": {"name": "a2"}},
                {"method": "DELETE", "url": format!("{url}/b")},
                {"method": "PUT", "url": url, "body": {"id": "a", "name": "a3"}},
                {"method": "PUT", "url": url, "body": {"id": "c", "name": "c"}}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{responses}");
    let statuses: Vec<u64> = responses
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 204, 200, 200]);
    assert_eq!(responses[2]["body"]["name"], "a2");
    assert_eq!(names().await, ["a3", "c"]);

    // The second request fails on the unique index: the first is rolled back too.
    let (status, err) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [
                {"method": "POST", "url": url, "body": {"name": "d"}},
                {"method": "POST", "url": url, "body": {"name": "c"}},
                {"method": "POST", "url": url, "body": {"name": "e"}}
            ]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["data"]["requests.1"]["code"], "batch_request_failed",
        "{err}"
    );
    assert_eq!(
        err["data"]["requests.1.name"]["code"], "validation_not_unique",
        "{err}"
    );
    assert_eq!(
        names().await,
        ["a3", "c"],
        "nothing of the failed batch was kept"
    );

    for body in [
        json!({"requests": []}),
        json!({"requests": (0..51).map(|i| json!({"method": "POST", "url": url, "body": {"name": format!("n{i}")}})).collect::<Vec<_>>()}),
        json!({"requests": [{"method": "GET", "url": url}]}),
        json!({"requests": [{"method": "POST", "url": "/api/collections/nope/records", "body": {}}]}),
        json!({"nope": []}),
    ] {
        let (status, err) = app.call(Method::POST, "/api/batch", None, Some(body)).await;
        assert_eq!(status, 400, "{err}");
    }
    assert_eq!(names().await, ["a3", "c"]);
}

/// A multipart body: (name, optional filename, value) parts.
fn form(parts: &[(&str, Option<&str>, &str)]) -> (String, String) {
    let boundary = "basaltBoundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, filename, value) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(filename) = filename {
            body.push_str(&format!(
                "; filename=\"{filename}\"\r\nContent-Type: text/plain"
            ));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn forms_are_typed_by_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "widgets", "createRule": "", "viewRule": "",
                "fields": [
                    {"name": "name", "type": "text"}, {"name": "views", "type": "number"},
                    {"name": "done", "type": "bool"}, {"name": "meta", "type": "json"},
                    {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3}
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let post = |parts: Vec<(&'static str, Option<&'static str>, &'static str)>| {
        let app = &app;
        async move {
            let (content_type, body) = form(&parts);
            let res = app
                .client
                .post(app.url("/api/collections/widgets/records"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            basalt_tests::json(res).await
        }
    };
    let (status, record) = post(vec![
        ("name", None, "widget"),
        ("views", None, "12"),
        ("done", None, "true"),
        ("tags", None, "a"),
        ("tags", None, "c"),
        ("@jsonPayload", None, r#"{"meta": {"k": [1, 2]}}"#),
    ])
    .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["views"], 12);
    assert_eq!(record["done"], true);
    assert_eq!(record["tags"], json!(["a", "c"]));
    assert_eq!(record["meta"], json!({"k": [1, 2]}));
    assert_eq!(record["name"], "widget");

    let (status, err) = post(vec![("views", None, "lots")]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["data"]["views"]["code"], "validation_invalid_number");
    let (status, err) = post(vec![("@jsonPayload", None, r#"{"views": "12"}"#)]).await;
    assert_eq!(status, 400, "JSON stays strict inside a form: {err}");
    let (status, err) = post(vec![("name", Some("a.txt"), "file body")]).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("file"), "{err}");
}
