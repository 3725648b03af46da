//! Collections: the API's access and shapes, real tables and their DDL, names,
//! relations, the snapshot under concurrent writes, history, export and import.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    changes_that_would_break_another_collections_rule_are_refused,
    only_superusers_reach_the_collections_api,
    collections_are_listed_paged_and_filtered_by_name,
    every_field_type_round_trips_with_its_options,
    a_collection_is_a_real_table_with_its_indexes,
    renames_keep_data_and_removed_fields_drop_their_columns,
    type_changes_convert_when_lossless_and_are_refused_otherwise,
    adding_a_required_field_to_a_non_empty_table_needs_a_default,
    bad_names_and_definitions_get_field_errors,
    system_fields_may_be_listed_but_not_redefined,
    relations_are_checked_both_ways,
    schema_changes_under_concurrent_writes_lose_nothing,
    history_and_import_are_idempotent,
    the_users_collection_exists_with_pocketbase_rules,
);

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, created) = app
        .call(Method::POST, "/api/collections", Some(token), Some(body))
        .await;
    assert_eq!(status, 200, "{created}");
    created
}

async fn patch(app: &TestApp, token: &str, name: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::PATCH,
        &format!("/api/collections/{name}"),
        Some(token),
        Some(body),
    )
    .await
}

fn field<'a>(collection: &'a Value, name: &str) -> &'a Value {
    collection["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {collection}"))
}

async fn insert(app: &TestApp, collection: &str, values: Value) -> Value {
    let record = app
        .state
        .records
        .insert_system(collection, values.as_object().unwrap().clone())
        .await
        .expect("insert");
    Value::Object(record)
}

async fn get_record(app: &TestApp, collection: &str, id: &str) -> Value {
    Value::Object(
        app.state
            .records
            .find_by_id(collection, id)
            .await
            .unwrap()
            .expect("record exists"),
    )
}

async fn only_superusers_reach_the_collections_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let user = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let admin = app.superuser_token().await;
    let body = json!({"name": "posts"});
    let cases: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/api/collections", None),
        (Method::POST, "/api/collections", Some(body.clone())),
        (Method::GET, "/api/collections/users", None),
        (Method::PATCH, "/api/collections/users", Some(json!({}))),
        (Method::DELETE, "/api/collections/users", None),
        (
            Method::PUT,
            "/api/collections/import",
            Some(json!({"collections": []})),
        ),
    ];
    for (method, path, body) in cases {
        let (status, err) = app.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(status, 401, "anonymous {method} {path}: {err}");
        assert_eq!(err["status"], 401);
        let (status, err) = app
            .call(method.clone(), path, Some(&user), body.clone())
            .await;
        assert_eq!(status, 403, "user {method} {path}: {err}");
        assert_eq!(err["status"], 403);
    }
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(
            Method::GET,
            "/api/collections",
            Some(&format!("Bearer {admin}")),
            None,
        )
        .await;
    assert_eq!(status, 200, "Bearer prefix accepted");
}

async fn collections_are_listed_paged_and_filtered_by_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    for name in ["alpha", "beta", "alphabet"] {
        create(&app, &token, json!({"name": name})).await;
    }
    let (status, page) = app
        .call(
            Method::GET,
            "/api/collections?page=1&perPage=2",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    // _superusers, users, alpha, beta, alphabet
    assert_eq!(page["totalItems"], 5, "{page}");
    assert_eq!(page["totalPages"], 3);
    assert_eq!(page["perPage"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, filtered) = app
        .call(
            Method::GET,
            "/api/collections?filter=name~'alpha'",
            Some(&token),
            None,
        )
        .await;
    let names: Vec<&str> = filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "alphabet"]);
    let (_, exact) = app
        .call(
            Method::GET,
            "/api/collections?filter=name%3D'beta'",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(exact["totalItems"], 1);
    let (status, err) = app
        .call(
            Method::GET,
            "/api/collections?filter=views>1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (_, one) = app
        .call(Method::GET, "/api/collections/alpha", Some(&token), None)
        .await;
    let (_, by_id) = app
        .call(
            Method::GET,
            &format!("/api/collections/{}", one["id"].as_str().unwrap()),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(one, by_id, "by name and by id");
    let (status, _) = app
        .call(Method::GET, "/api/collections/nope", Some(&token), None)
        .await;
    assert_eq!(status, 404);
}

async fn every_field_type_round_trips_with_its_options(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let target = create(&app, &token, json!({"name": "authors"})).await;
    let target_id = target["id"].as_str().unwrap();
    let fields = json!([
        {"name": "title", "type": "text", "min": 2, "max": 80, "pattern": "^[A-Z]", "autogeneratePattern": "", "required": true, "presentable": true},
        {"name": "views", "type": "number", "min": 0, "max": 1000000, "onlyInt": true, "default": 0},
        {"name": "published", "type": "bool", "hidden": true},
        {"name": "contact", "type": "email", "exceptDomains": ["spam.test"], "onlyDomains": null},
        {"name": "site", "type": "url", "onlyDomains": ["example.com"]},
        {"name": "due", "type": "date", "min": "2020-01-01 00:00:00.000Z", "max": ""},
        {"name": "stamp", "type": "autodate", "onCreate": true, "onUpdate": true},
        {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 2},
        {"name": "meta", "type": "json", "maxSize": 2000, "nullable": true},
        {"name": "author", "type": "relation", "collectionId": target_id, "maxSelect": 1, "minSelect": 0, "cascadeDelete": true},
        {"name": "score", "type": "number", "nullable": true}
    ]);
    let created = create(&app, &token, json!({"name": "posts", "fields": fields})).await;
    for input in fields.as_array().unwrap() {
        let output = field(&created, input["name"].as_str().unwrap());
        for (key, value) in input.as_object().unwrap() {
            if value.is_null() {
                assert!(output[key].is_null(), "{key} of {input}");
            } else {
                assert_eq!(&output[key], value, "{key} of {input}: {output}");
            }
        }
        assert!(
            output["id"].as_str().is_some_and(|id| !id.is_empty()),
            "stable id: {output}"
        );
    }
    // The same definition comes back from GET.
    let (_, again) = app
        .call(Method::GET, "/api/collections/posts", Some(&token), None)
        .await;
    assert_eq!(again["fields"], created["fields"]);
}

async fn a_collection_is_a_real_table_with_its_indexes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    create(
        &app,
        &token,
        json!({
            "name": "posts",
            "fields": [{"name": "title", "type": "text"}, {"name": "slug", "type": "text"}],
            "indexes": [
                "CREATE UNIQUE INDEX idx_slug ON posts (slug)",
                "CREATE INDEX `idx_title_slug` ON `posts` (`title` DESC, `slug`)"
            ]
        }),
    )
    .await;
    assert_eq!(
        app.columns("posts").await,
        ["id", "title", "slug", "created", "updated"]
    );
    assert_eq!(
        app.index_names("posts").await,
        ["idx_slug", "idx_title_slug"]
    );
    insert(&app, "posts", json!({"title": "a", "slug": "s1"})).await;
    // The unique index holds.
    let dup = app
        .state
        .records
        .insert_system("posts", json!({"slug": "s1"}).as_object().unwrap().clone())
        .await;
    assert!(
        matches!(dup, Err(basalt_server::records::RecordError::Conflict(ref f)) if f == "slug"),
        "{dup:?}"
    );

    // Dropping an index from the definition drops it from the table.
    let (status, body) = patch(
        &app,
        &token,
        "posts",
        json!({"indexes": ["CREATE UNIQUE INDEX idx_slug ON posts (slug)"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.index_names("posts").await, ["idx_slug"]);

    // Index strings are parsed and rebuilt, never executed as given.
    for evil in [
        "CREATE INDEX idx_x ON posts (title); DROP TABLE posts",
        "CREATE INDEX idx_x ON posts (title) WHERE 1=1",
        "CREATE INDEX idx_x ON posts (nope)",
    ] {
        let (status, err) = patch(&app, &token, "posts", json!({"indexes": [evil]})).await;
        assert_eq!(status, 400, "{evil}: {err}");
        assert!(err["data"]["indexes.0"].is_object(), "{err}");
    }
    assert_eq!(app.columns("posts").await.len(), 5, "table intact");

    let (status, _) = app
        .call(Method::DELETE, "/api/collections/posts", Some(&token), None)
        .await;
    assert_eq!(status, 204);
    assert!(app.columns("posts").await.is_empty(), "table dropped");
}

async fn renames_keep_data_and_removed_fields_drop_their_columns(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let created = create(
        &app,
        &token,
        json!({"name": "posts", "fields": [
            {"name": "title", "type": "text"}, {"name": "body", "type": "text"},
            {"name": "views", "type": "number"}
        ], "indexes": ["CREATE INDEX idx_title ON posts (title)"]}),
    )
    .await;
    let record = insert(
        &app,
        "posts",
        json!({"title": "Hello", "body": "text", "views": 7}),
    )
    .await;
    let id = record["id"].as_str().unwrap().to_owned();

    let mut fields = created["fields"].as_array().unwrap().clone();
    for f in &mut fields {
        if f["name"] == "title" {
            f["name"] = json!("headline");
        }
    }
    fields.retain(|f| f["name"] != "body");
    let (status, updated) = patch(
        &app,
        &token,
        "posts",
        json!({"name": "articles", "fields": fields, "indexes": ["CREATE INDEX idx_title ON articles (headline)"]}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        field(&updated, "headline")["id"],
        field(&created, "title")["id"],
        "same field id"
    );
    assert_eq!(
        app.columns("articles").await,
        ["id", "headline", "views", "created", "updated"]
    );
    assert!(app.columns("posts").await.is_empty());
    assert_eq!(app.index_names("articles").await, ["idx_title"]);
    let record = get_record(&app, "articles", &id).await;
    assert_eq!(record["headline"], "Hello");
    assert_eq!(record["views"], 7.0);
}

async fn type_changes_convert_when_lossless_and_are_refused_otherwise(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let created = create(
        &app,
        &token,
        json!({"name": "items", "fields": [
            {"name": "code", "type": "number"}, {"name": "label", "type": "text"}
        ], "indexes": ["CREATE INDEX idx_code ON items (code)"]}),
    )
    .await;
    let record = insert(&app, "items", json!({"code": 42, "label": "x"})).await;
    let id = record["id"].as_str().unwrap();

    let mut fields = created["fields"].as_array().unwrap().clone();
    for f in &mut fields {
        if f["name"] == "code" {
            *f = json!({"id": f["id"], "name": "code", "type": "text"});
        }
    }
    let (status, body) = patch(&app, &token, "items", json!({"fields": fields})).await;
    assert_eq!(status, 200, "{body}");
    let converted = get_record(&app, "items", id).await;
    assert!(
        converted["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("42")),
        "{converted}"
    );
    assert_eq!(converted["label"], "x");
    assert_eq!(
        app.index_names("items").await,
        ["idx_code"],
        "indexes rebuilt"
    );

    for f in &mut fields {
        if f["name"] == "label" {
            *f = json!({"id": f["id"], "name": "label", "type": "number"});
        }
    }
    let (status, err) = patch(&app, &token, "items", json!({"fields": fields})).await;
    assert_eq!(status, 400, "{err}");
    let message = err["data"]["fields.label"]["message"].as_str().unwrap();
    assert!(
        message.contains("label") && message.contains("lose data"),
        "{message}"
    );
    assert_eq!(
        get_record(&app, "items", id).await["label"],
        "x",
        "nothing changed"
    );
}

async fn adding_a_required_field_to_a_non_empty_table_needs_a_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    create(
        &app,
        &token,
        json!({"name": "notes", "fields": [{"name": "a", "type": "text"}]}),
    )
    .await;
    // On an empty table it is fine.
    let (status, _) = patch(
        &app,
        &token,
        "notes",
        json!({"fields": [
            {"name": "a", "type": "text"}, {"name": "b", "type": "text", "required": true}
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    insert(&app, "notes", json!({"a": "1", "b": "2"})).await;
    let (status, err) = patch(
        &app,
        &token,
        "notes",
        json!({"fields": [
            {"name": "a", "type": "text"}, {"name": "b", "type": "text", "required": true},
            {"name": "c", "type": "text", "required": true}
        ]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let message = err["data"]["fields.3"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
        + err["data"].to_string().as_str();
    assert!(message.contains("default"), "{err}");
    assert!(!app.columns("notes").await.contains(&"c".to_owned()));
    let (status, body) = patch(
        &app,
        &token,
        "notes",
        json!({"fields": [
            {"name": "a", "type": "text"}, {"name": "b", "type": "text", "required": true},
            {"name": "c", "type": "text", "required": true, "default": "none"}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn bad_names_and_definitions_get_field_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let cases = [
        (json!({"name": "Posts"}), "name"),
        (json!({"name": "_posts"}), "name"),
        (json!({"name": "select"}), "name"),
        (json!({"name": "a".repeat(64)}), "name"),
        (json!({"name": "users"}), "name"),
        (
            json!({"name": "p", "fields": [{"name": "expand", "type": "text"}]}),
            "fields.1.name",
        ),
        (
            json!({"name": "p", "fields": [{"name": "Title", "type": "text"}]}),
            "fields.1.name",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "bool"}]}),
            "fields.2.name",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "wat"}]}),
            "fields.0.type",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "number", "max": "9"}]}),
            "fields.0.max",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "text", "pattern": "(["}]}),
            "fields.1.pattern",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "select", "values": []}]}),
            "fields.1.values",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "password"}]}),
            "fields.1.type",
        ),
        (
            json!({"name": "p", "fields": [{"name": "a", "type": "bool", "default": "yes"}]}),
            "fields.1.default",
        ),
        (json!({"name": "p", "listRule": 3}), "listRule"),
        (json!({"name": "p", "colour": "red"}), "colour"),
        (json!({"name": "p", "type": "view"}), "type"),
    ];
    for (body, path) in cases {
        let (status, err) = app
            .call(
                Method::POST,
                "/api/collections",
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["status"], 400);
        let problem = &err["data"][path];
        assert!(
            problem["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("validation_")),
            "{body} → {path}: {err}"
        );
        assert!(problem["message"].is_string(), "{err}");
    }
    // Malformed JSON and a non-object body are 400s too.
    let res = app
        .client
        .post(app.url("/api/collections"))
        .header("Authorization", &token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&token),
            Some(json!([1])),
        )
        .await;
    assert_eq!(status, 400);
    // Rules are parsed and checked against the schema when saved: 400s naming the
    // rule and the character, never a 500 later.
    for (rule, words) in [
        ("views >", "expected a value or a field (at character 8)"),
        ("nope = 1", "unknown field `nope`"),
        ("(views > 1", "never closed"),
    ] {
        let body = json!({"name": "ruled", "fields": [{"name": "views", "type": "number"}], "listRule": rule});
        let (status, err) = app
            .call(Method::POST, "/api/collections", Some(&token), Some(body))
            .await;
        assert_eq!(status, 400, "{rule}: {err}");
        let message = err["data"]["listRule"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(words), "{rule}: {err}");
    }
    let created = create(
        &app,
        &token,
        json!({"name": "ruled", "fields": [{"name": "views", "type": "number"}],
               "listRule": "views > 1 && @request.auth.id != ''", "viewRule": ""}),
    )
    .await;
    assert_eq!(created["listRule"], "views > 1 && @request.auth.id != ''");
    assert_eq!(created["viewRule"], "");
    assert!(
        created["createRule"].is_null(),
        "superusers only by default"
    );
    assert_eq!(
        app.state.schema.snapshot().all().len(),
        3,
        "nothing half-created"
    );
}

async fn system_fields_may_be_listed_but_not_redefined(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let implicit = create(
        &app,
        &token,
        json!({"name": "a", "fields": [{"name": "x", "type": "text"}]}),
    )
    .await;
    let explicit = create(
        &app,
        &token,
        json!({"name": "b", "fields": [
            {"name": "id", "type": "text", "primaryKey": true, "system": true},
            {"name": "x", "type": "text"},
            {"name": "created", "type": "autodate", "onCreate": true},
            {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
        ]}),
    )
    .await;
    let names = |c: &Value| -> Vec<String> {
        c["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&implicit), names(&explicit));
    assert_eq!(app.columns("a").await, app.columns("b").await);
    let (status, err) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&token),
            Some(json!({"name": "c", "fields": [{"name": "created", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["data"]["fields.0.type"].is_object(), "{err}");
}

async fn relations_are_checked_both_ways(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let (status, err) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&token),
            Some(json!({"name": "posts", "fields": [
                {"name": "author", "type": "relation", "collectionId": "nope"}
            ]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["data"]["fields.1.collectionId"].is_object(), "{err}");

    let authors = create(&app, &token, json!({"name": "authors"})).await;
    let posts = create(
        &app,
        &token,
        json!({"name": "posts", "fields": [
            {"name": "author", "type": "relation", "collectionId": authors["id"]}
        ]}),
    )
    .await;
    let (status, err) = app
        .call(
            Method::DELETE,
            "/api/collections/authors",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("posts.author"), "{err}");

    let mut fields = posts["fields"].as_array().unwrap().clone();
    fields.retain(|f| f["name"] != "author");
    let (status, _) = patch(&app, &token, "posts", json!({"fields": fields})).await;
    assert_eq!(status, 200);
    assert!(!app.columns("authors").await.is_empty(), "target intact");
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/collections/authors",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, err) = app
        .call(
            Method::DELETE,
            "/api/collections/_superusers",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 400, "system collections stay: {err}");
}

async fn schema_changes_under_concurrent_writes_lose_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let created = create(
        &app,
        &token,
        json!({"name": "events", "fields": [
            {"name": "label", "type": "text"}, {"name": "n", "type": "number"}
        ]}),
    )
    .await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let state = app.state.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let values = json!({"n": w * 100 + i}).as_object().unwrap().clone();
                    let record = state
                        .records
                        .insert_system("events", values)
                        .await
                        .expect("insert during schema change");
                    ids.push((
                        record["id"].as_str().unwrap().to_owned(),
                        f64::from(w * 100 + i),
                    ));
                    tokio::task::yield_now().await;
                }
                ids
            })
        })
        .collect();
    let mut fields = created["fields"].as_array().unwrap().clone();
    for f in &mut fields {
        if f["name"] == "label" {
            f["name"] = json!("title");
        }
    }
    fields.push(json!({"name": "extra", "type": "bool"}));
    let (status, body) = patch(&app, &token, "events", json!({"fields": fields})).await;
    assert_eq!(status, 200, "{body}");
    let mut expected = Vec::new();
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }
    assert_eq!(expected.len(), 100);
    assert_eq!(app.state.records.count("events").await.unwrap(), 100);
    for (id, n) in expected {
        let record = get_record(&app, "events", &id).await;
        assert_eq!(record["n"].as_f64(), Some(n), "{record}");
    }
}

async fn history_and_import_are_idempotent(backend: Backend) {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let history = || async {
        basalt_server::db::entities::schema_history::Entity::find()
            .count(app.state.db.conn())
            .await
            .unwrap()
    };
    let before = history().await;
    create(&app, &token, json!({"name": "authors"})).await;
    let (_, _) = patch(&app, &token, "authors", json!({"listRule": ""})).await;
    assert_eq!(history().await, before + 2);
    let last = basalt_server::db::entities::schema_history::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|h| h.created)
        .unwrap();
    assert_eq!(last.action, "update");
    assert!(
        last.actor
            .as_deref()
            .is_some_and(|a| a.starts_with("superuser:"))
    );
    let diff: Value = serde_json::from_str(&last.diff).unwrap();
    assert!(
        diff["before"]["listRule"].is_null() && diff["after"]["listRule"] == "",
        "{diff}"
    );

    // A PATCH that changes nothing records nothing.
    patch(&app, &token, "authors", json!({"listRule": ""})).await;
    assert_eq!(history().await, before + 2);

    // Import: a new collection relating to an existing one and to one in the same file.
    let (_, authors) = app
        .call(Method::GET, "/api/collections/authors", Some(&token), None)
        .await;
    let import = json!({"collections": [
        authors,
        {"id": "tags_id", "name": "tags"},
        {"name": "posts", "fields": [
            {"name": "author", "type": "relation", "collectionId": authors["id"]},
            {"name": "tags", "type": "relation", "collectionId": "tags_id", "maxSelect": 5}
        ]}
    ]});
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(&token),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let after_first = history().await;
    assert_eq!(after_first, before + 4);
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(&token),
            Some(import.clone()),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        history().await,
        after_first,
        "the same import twice changes nothing"
    );

    // Export → import with deleteMissing round-trips; a bad import changes nothing.
    let exported = app.state.schema.export();
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(&token),
            Some(json!({"collections": exported, "deleteMissing": true})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(history().await, after_first);
    let (status, err) = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(&token),
            Some(json!({"collections": [{"name": "ok1"}, {"name": "Bad"}]})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["data"]["collections.1.name"].is_object(), "{err}");
    assert!(
        app.state.schema.snapshot().get("ok1").is_none(),
        "all or nothing"
    );
}

async fn the_users_collection_exists_with_pocketbase_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let (status, users) = app
        .call(Method::GET, "/api/collections/users", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(users["type"], "auth");
    assert_eq!(users["system"], false);
    assert_eq!(users["createRule"], "");
    for rule in ["listRule", "viewRule", "updateRule", "deleteRule"] {
        assert_eq!(users[rule], "id = @request.auth.id", "{rule}");
    }
    for name in [
        "id",
        "email",
        "emailVisibility",
        "verified",
        "password",
        "tokenKey",
        "created",
        "updated",
    ] {
        field(&users, name);
    }
    assert_eq!(field(&users, "password")["hidden"], true);
    assert_eq!(field(&users, "tokenKey")["hidden"], true);
    let (_, superusers) = app
        .call(
            Method::GET,
            "/api/collections/_superusers",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(superusers["system"], true);
    assert!(superusers["listRule"].is_null());
    // A field added to users becomes a column.
    let mut fields = users["fields"].as_array().unwrap().clone();
    fields.push(json!({"name": "nickname", "type": "text"}));
    let (status, _) = patch(&app, &token, "users", json!({"fields": fields})).await;
    assert_eq!(status, 200);
    assert!(app.columns("users").await.contains(&"nickname".to_owned()));
}

async fn changes_that_would_break_another_collections_rule_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.superuser_token().await;
    let authors = create(
        &app,
        &token,
        json!({"name": "authors", "fields": [{"name": "nick", "type": "text"}]}),
    )
    .await;
    create(
        &app,
        &token,
        json!({"name": "posts", "fields": [
        {"name": "author", "type": "relation", "collectionId": authors["id"]}
    ], "listRule": "author.nick != ''", "viewRule": "@collection.authors.nick ?= 'x'"}),
    )
    .await;
    // Renaming `nick` would leave posts' rules naming a field that is gone.
    let mut fields = authors["fields"].as_array().unwrap().clone();
    for f in &mut fields {
        if f["name"] == "nick" {
            f["name"] = json!("handle");
        }
    }
    let (status, err) = patch(&app, &token, "authors", json!({"fields": fields})).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["data"]["posts.listRule"]["message"]
            .as_str()
            .unwrap()
            .contains("nick"),
        "{err}"
    );
    assert!(err["data"]["posts.viewRule"].is_object(), "{err}");
    assert!(
        app.columns("authors").await.contains(&"nick".to_owned()),
        "nothing changed"
    );
    // Fixing the rules and renaming in one import is fine.
    let (_, posts) = app
        .call(Method::GET, "/api/collections/posts", Some(&token), None)
        .await;
    let mut posts = posts;
    posts["listRule"] = json!("author.handle != ''");
    posts["viewRule"] = json!("");
    let mut renamed = authors.clone();
    renamed["fields"] = json!(fields);
    let (status, err) = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(&token),
            Some(json!({"collections": [renamed, posts]})),
        )
        .await;
    assert_eq!(status, 204, "{err}");
    assert!(app.columns("authors").await.contains(&"handle".to_owned()));
}
