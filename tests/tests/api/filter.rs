//! The filter language compiled to SQL and run on both engines: operators, any/every
//! forms on multi values and to-many relations, blank/null semantics, relations and
//! back-relations, macros and request data, and what a filter may not see.

use basalt_server::filter::compile::Request;
use basalt_server::filter::resolve::Scope;
use basalt_server::records::RecordError;
use basalt_server::schema::Actor;
use basalt_tests::{Backend, TestApp, backend_tests};
use serde_json::{Value, json};

backend_tests!(filters_select_the_right_records);

async fn insert(app: &TestApp, collection: &str, values: Value) -> String {
    let record = app
        .state
        .records
        .insert_system(collection, values.as_object().unwrap().clone())
        .await
        .unwrap();
    record["id"].as_str().unwrap().to_owned()
}

async fn filters_select_the_right_records(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let schema = &app.state.schema;
    let posts = schema
        .create(
            &json!({"name": "posts", "viewRule": "", "fields": [
                {"name": "title", "type": "text"},
                {"name": "views", "type": "number"},
                {"name": "published", "type": "bool"},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"},
                {"name": "due", "type": "date"},
                {"name": "secret", "type": "text", "hidden": true}
            ]}),
            &Actor::System,
        )
        .await
        .unwrap();
    schema
        .create(
            &json!({"name": "comments", "viewRule": "", "fields": [
                {"name": "text", "type": "text"},
                {"name": "post", "type": "relation", "collectionId": posts.id}
            ]}),
            &Actor::System,
        )
        .await
        .unwrap();

    schema
        .create(
            &json!({"name": "notes", "viewRule": "", "fields": [{"name": "body", "type": "text"}]}),
            &Actor::System,
        )
        .await
        .unwrap();

    schema
        .create(
            &json!({"name": "vaults", "fields": [
                {"name": "code", "type": "text"},
                {"name": "post", "type": "relation", "collectionId": posts.id}
            ]}),
            &Actor::System,
        )
        .await
        .unwrap();

    let ann = insert(
        &app,
        "users",
        json!({"id": "ann", "email": "ann@x.io", "name": "Ann", "tokenKey": "k1"}),
    )
    .await;
    insert(
        &app,
        "users",
        json!({"id": "bob", "email": "bob@x.io", "name": "Bob", "tokenKey": "k2"}),
    )
    .await;
    insert(
        &app,
        "posts",
        json!({"id": "p1", "title": "Hello World", "views": 10, "published": true,
        "tags": ["a", "b"], "author": "ann", "due": "2024-01-10 00:00:00.000Z", "secret": "s1"}),
    )
    .await;
    insert(
        &app,
        "posts",
        json!({"id": "p2", "title": "Rust tips_50%", "views": 3, "published": false,
        "tags": ["b"], "author": "bob", "due": "2025-06-01 00:00:00.000Z"}),
    )
    .await;
    insert(
        &app,
        "posts",
        json!({"id": "p3", "title": "", "views": 0, "published": false, "tags": []}),
    )
    .await;
    for (post, text) in [("p1", "great"), ("p1", "meh"), ("p2", "great")] {
        insert(&app, "comments", json!({"post": post, "text": text})).await;
    }

    let mut request = Request::new("GET");
    request.query.insert("q".into(), "rust".into());
    let users_record = app
        .state
        .records
        .find_by_id("users", &ann)
        .await
        .unwrap()
        .unwrap();
    request.auth = Some(("users".into(), users_record));
    let scope = Scope { hidden: false };

    let cases: &[(&str, &[&str])] = &[
        ("", &["p1", "p2", "p3"]),
        ("views > 5", &["p1"]),
        ("views >= 3 && published = false", &["p2"]),
        ("views < 3 || title = 'Hello World'", &["p1", "p3"]),
        ("title ~ 'WORLD'", &["p1"]),
        ("title ~ 'tips_5'", &["p2"]),
        ("title ~ 'rust%'", &["p2"]),
        ("title !~ 'o'", &["p2", "p3"]),
        ("title = ''", &["p3"]),
        ("title != ''", &["p1", "p2"]),
        ("title = null", &["p3"]),
        ("tags ?= 'a'", &["p1"]),
        ("tags ?= 'b'", &["p1", "p2"]),
        ("tags = 'b'", &["p2", "p3"]),
        ("tags != 'a'", &["p2", "p3"]),
        ("tags:length = 2", &["p1"]),
        ("tags:length > 0 && tags:each = 'b'", &["p2"]),
        // `:each` needs at least one element: an empty value matches nothing.
        ("tags:each = 'b'", &["p2"]),
        ("tags:each != 'a'", &["p2"]),
        ("tags = ''", &["p3"]),
        ("author.name = 'Ann'", &["p1"]),
        ("author.name != 'Ann'", &["p2", "p3"]),
        ("author.email ~ 'ann'", &["p1"]),
        // users' view rule (`id = @request.auth.id`) hides bob from ann: a filter
        // through the relation finds nothing of him, so it cannot probe his email.
        ("author.email ~ 'bob'", &[]),
        ("author.name = 'Bob'", &[]),
        ("author = @request.auth.id", &["p1"]),
        ("@request.auth.id = author", &["p1"]),
        ("@request.auth.name = 'Ann' && views > 5", &["p1"]),
        ("comments_via_post.text ?= 'meh'", &["p1"]),
        ("comments_via_post.text ?= 'great'", &["p1", "p2"]),
        ("comments_via_post.text = 'great'", &["p2", "p3"]),
        ("title:lower ~ @request.query.q", &["p2"]),
        ("due < '2025-01-01'", &["p1"]),
        ("due > @now", &[]),
        ("due < @now && due != ''", &["p1", "p2"]),
        ("@request.method = 'GET' && views = 0", &["p3"]),
        ("@request.method = 'POST'", &[]),
        ("@collection.comments.post ?= id", &["p1", "p2"]),
        (
            "@collection.users.name ?= 'Ann' && views < 5",
            &["p2", "p3"],
        ),
        ("@collection.users.name ?= 'Bob'", &[]),
        // Without `?`, every row of the collection must match — every row the
        // caller may read: only ann's own.
        ("@collection.users.name = 'Ann'", &["p1", "p2", "p3"]),
        ("@collection.comments.text = 'great'", &[]),
        ("@collection.comments.text != 'nope'", &["p1", "p2", "p3"]),
        // One `@collection.NAME` is one row for the whole filter: the comment on this
        // post must itself say 'meh'.
        (
            "@collection.comments.post ?= id && @collection.comments.text ?= 'meh'",
            &["p1"],
        ),
        (
            "@collection.comments.post ?= id && @collection.comments.text ?= 'great'",
            &["p1", "p2"],
        ),
        // Aliases name independent rows.
        (
            "@collection.comments:a.post ?= id && @collection.comments:b.text ?= 'meh'",
            &["p1", "p2"],
        ),
        (
            "@collection.comments:a.post ?= id && @collection.comments:a.text ?= 'meh'",
            &["p1"],
        ),
        // An empty collection does not make the rest of the filter false.
        ("views = 0 || @collection.notes.body ?= 'x'", &["p3"]),
        ("@collection.notes.body ?= 'x'", &[]),
        (
            "@collection.comments.post.author ?= @request.auth.id && @collection.comments.text ?= 'meh'",
            &["p1", "p2", "p3"],
        ),
        ("(views > 5 || views = 0) && published = false", &["p3"]),
    ];
    for (filter, expected) in cases {
        let ids = app
            .state
            .records
            .ids_matching("posts", filter, &request, scope)
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(ids, *expected, "{filter}");
    }

    // Hidden fields and secrets cannot be filtered by: no guessing their values.
    for filter in [
        "secret = 's1'",
        "author.password != ''",
        "author.tokenKey = 'k1'",
    ] {
        let err = app
            .state
            .records
            .ids_matching("posts", filter, &request, scope)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RecordError::Filter(ref e) if e.message.contains("unknown field")),
            "{filter}: {err}"
        );
    }
    let superuser = Scope { hidden: true };
    let ids = app
        .state
        .records
        .ids_matching("posts", "secret = 's1'", &request, superuser)
        .await
        .unwrap();
    assert_eq!(ids, ["p1"]);
    // Superusers (and rules) see through every view rule.
    for (filter, expected) in [
        ("author.email ~ 'bob'", &["p2"][..]),
        (
            "@collection.users.name ?= 'Bob' && views < 5",
            &["p2", "p3"],
        ),
        ("@collection.vaults.code ?= 'x'", &[]),
    ] {
        let ids = app
            .state
            .records
            .ids_matching("posts", filter, &request, superuser)
            .await
            .unwrap();
        assert_eq!(ids, expected, "{filter}");
    }
    // A superusers-only collection cannot be filtered through by anyone else.
    for filter in [
        "@collection.vaults.code ?= 'x'",
        "title = 'x' || @collection.vaults.code ?= 'x'",
        "vaults_via_post.code ?= 'x'",
    ] {
        let err = app
            .state
            .records
            .ids_matching("posts", filter, &request, scope)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RecordError::Filter(ref e) if e.message.contains("only superusers may read it")),
            "{filter}: {err}"
        );
    }

    // Hostile strings are values, never SQL.
    for filter in [
        "title = 'x'' OR 1=1 --'",
        "title = \"'); DROP TABLE posts; --\"",
        "title ~ '%' && title = '\\' OR 1=1'",
    ] {
        // Either refused as a filter (a 400 with a position) or a value matching nothing.
        match app
            .state
            .records
            .ids_matching("posts", filter, &request, scope)
            .await
        {
            Ok(ids) => assert!(ids.is_empty(), "{filter}: {ids:?}"),
            Err(RecordError::Filter(_)) => {}
            Err(other) => panic!("{filter}: {other}"),
        }
    }
    assert_eq!(
        app.state.records.count("posts").await.unwrap(),
        3,
        "table intact"
    );
}
