//! Reading records through the REST API as anonymous, an owner, another user and a
//! superuser: rules decide what is listed (totals included) and what is viewable.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    rules_decide_what_each_caller_reads,
    lists_filter_sort_and_page,
    expand_follows_relations_under_each_view_rule,
    statements_per_request_do_not_grow_with_the_page,
    prepared_statements_are_reused,
);

struct World {
    app: TestApp,
    admin: String,
    ann: String,
    bob: String,
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann_record = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let bob_record = app
        .create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let ann = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .sign_in("users", "bob@example.com", "bob-password")
        .await;
    let rule = "published = true || author = @request.auth.id";
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "posts", "listRule": rule, "viewRule": rule,
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "published", "type": "bool"},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"},
                    {"name": "secret", "type": "text", "hidden": true}
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "private", "fields": [{"name": "x", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 200);
    for (id, title, published, author) in [
        ("p1", "Alpha", true, &ann_record),
        ("p2", "Beta", false, &ann_record),
        ("p3", "Gamma", false, &bob_record),
        ("p4", "Delta", true, &bob_record),
    ] {
        app.state
            .records
            .insert_system(
                "posts",
                json!({"id": id, "title": title, "published": published, "author": author["id"], "secret": format!("s-{id}")})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
    }
    app.state
        .records
        .insert_system(
            "private",
            json!({"id": "x1", "x": "hush"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    World {
        app,
        admin,
        ann,
        bob,
    }
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

async fn rules_decide_what_each_caller_reads(backend: Backend) {
    let World {
        app,
        admin,
        ann,
        bob,
    } = world(backend).await;
    let list = |token: Option<String>| {
        let app = &app;
        async move {
            app.call(
                Method::GET,
                "/api/collections/posts/records",
                token.as_deref(),
                None,
            )
            .await
        }
    };
    for (who, token, expected) in [
        ("anonymous", None, vec!["p1", "p4"]),
        (
            "ann (owner of p1, p2)",
            Some(ann.clone()),
            vec!["p1", "p2", "p4"],
        ),
        (
            "bob (owner of p3, p4)",
            Some(bob.clone()),
            vec!["p1", "p3", "p4"],
        ),
        (
            "superuser",
            Some(admin.clone()),
            vec!["p1", "p2", "p3", "p4"],
        ),
    ] {
        let (status, page) = list(token).await;
        assert_eq!(status, 200, "{who}: {page}");
        assert_eq!(ids(&page), expected, "{who}");
        assert_eq!(
            page["totalItems"],
            expected.len(),
            "{who}: totals respect the rule"
        );
        let first = &page["items"][0];
        assert_eq!(first["collectionName"], "posts");
        assert!(first["collectionId"].is_string());
        assert_eq!(
            first.get("secret").is_some(),
            who == "superuser",
            "{who}: hidden field"
        );
    }

    // View: a record the rule hides is a 404, the same as one that does not exist.
    let view = |id: &str, token: Option<&str>| {
        let app = &app;
        let path = format!("/api/collections/posts/records/{id}");
        let token = token.map(str::to_owned);
        async move { app.call(Method::GET, &path, token.as_deref(), None).await }
    };
    for (who, token, id, status) in [
        ("anonymous", None, "p2", 404),
        ("anonymous", None, "p1", 200),
        ("ann", Some(ann.as_str()), "p2", 200),
        ("bob", Some(bob.as_str()), "p2", 404),
        ("superuser", Some(admin.as_str()), "p2", 200),
    ] {
        let (got, body) = view(id, token).await;
        assert_eq!(got, status, "{who} viewing {id}: {body}");
    }
    let (_, hidden) = view("p2", Some(&bob)).await;
    let (_, missing) = view("nope", Some(&bob)).await;
    assert_eq!(hidden, missing, "indistinguishable from a missing id");

    // `null` rules: superusers only.
    for (who, token, status) in [
        ("anonymous", None, 403),
        ("ann", Some(ann.as_str()), 403),
        ("superuser", Some(admin.as_str()), 200),
    ] {
        let (got, body) = app
            .call(Method::GET, "/api/collections/private/records", token, None)
            .await;
        assert_eq!(got, status, "{who}: {body}");
        let (got, _) = app
            .call(
                Method::GET,
                "/api/collections/private/records/x1",
                token,
                None,
            )
            .await;
        assert_eq!(got, status, "{who} view");
    }

    // The default users rules: each user sees only themself, with their own email.
    let (_, page) = app
        .call(
            Method::GET,
            "/api/collections/users/records",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(page["totalItems"], 1);
    assert_eq!(page["items"][0]["email"], "ann@example.com");
    assert!(
        page["items"][0].get("password").is_none() && page["items"][0].get("tokenKey").is_none()
    );
    let (_, page) = app
        .call(Method::GET, "/api/collections/users/records", None, None)
        .await;
    assert_eq!(page["totalItems"], 0, "anonymous sees no user");
    let (_, all) = app
        .call(
            Method::GET,
            "/api/collections/users/records",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(all["totalItems"], 2);
    let bob_id = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "bob@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/collections/users/records/{bob_id}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A caller cannot filter or sort by what they may not see.
    for path in [
        "/api/collections/posts/records?filter=secret%3D's-p2'",
        "/api/collections/posts/records?sort=secret",
        "/api/collections/posts/records?filter=author.password!%3D''",
    ] {
        let (status, body) = app.call(Method::GET, path, Some(&ann), None).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, page) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?filter=secret%3D's-p2'",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["p2"]);
}

async fn lists_filter_sort_and_page(backend: Backend) {
    let World { app, admin, .. } = world(backend).await;
    let get = |path: &str| {
        let app = &app;
        let admin = admin.clone();
        let path = path.to_owned();
        async move { app.call(Method::GET, &path, Some(&admin), None).await }
    };
    // Absurd pages are empty pages, not overflows (found by schemathesis).
    for path in [
        "/api/collections/posts/records?page=18446744073709551615&perPage=1000",
        "/api/collections?page=18446744073709551615&perPage=1000",
    ] {
        let (status, page) = get(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["items"], json!([]), "{path}");
    }
    let (_, page) = get("/api/collections/posts/records?sort=-title").await;
    assert_eq!(ids(&page), ["p3", "p4", "p2", "p1"]);
    let (_, page) = get("/api/collections/posts/records?sort=published,-title").await;
    assert_eq!(ids(&page), ["p3", "p2", "p4", "p1"]);
    // Alpha p1, Beta p2, Delta p4, Gamma p3: the second page of two.
    let (_, page) = get("/api/collections/posts/records?sort=title&perPage=2&page=2").await;
    assert_eq!(ids(&page), ["p4", "p3"]);
    assert_eq!(page["page"], 2);
    assert_eq!(page["perPage"], 2);
    assert_eq!(page["totalItems"], 4);
    assert_eq!(page["totalPages"], 2);
    let (_, page) = get(
        "/api/collections/posts/records?filter=title~'ta'%20%26%26%20published%3Dtrue&skipTotal=1",
    )
    .await;
    assert_eq!(ids(&page), ["p4"]);
    assert_eq!(page["totalItems"], -1);
    assert_eq!(page["totalPages"], -1);
    let (_, page) = get("/api/collections/posts/records?fields=id,title&perPage=1").await;
    assert_eq!(page["items"][0], json!({"id": "p1", "title": "Alpha"}));
    let (_, page) = get("/api/collections/posts/records?sort=@random").await;
    assert_eq!(page["totalItems"], 4);
    let (_, page) = get("/api/collections/posts/records?perPage=5000").await;
    assert_eq!(page["perPage"], 1000, "perPage is capped");

    let (status, body) = get("/api/collections/posts/records?filter=title%20%3D").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("at character"),
        "{body}"
    );
    let (status, body) = get("/api/collections/posts/records?sort=nope").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get("/api/collections/nope/records").await;
    assert_eq!(status, 404);
}

async fn expand_follows_relations_under_each_view_rule(backend: Backend) {
    let World {
        app, admin, ann, ..
    } = world(backend).await;
    let posts_id = app.state.schema.snapshot().get("posts").unwrap().id.clone();
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "comments", "listRule": "", "viewRule": "",
                "fields": [
                    {"name": "text", "type": "text"},
                    {"name": "post", "type": "relation", "collectionId": posts_id},
                    {"name": "writer", "type": "relation", "collectionId": "_pb_users_auth_"}
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let author_of = |post: &str| {
        let app = &app;
        let post = post.to_owned();
        async move {
            let record = app
                .state
                .records
                .find_by_id("posts", &post)
                .await
                .unwrap()
                .unwrap();
            record["author"].as_str().unwrap().to_owned()
        }
    };
    let ann_id = author_of("p1").await;
    let bob_id = author_of("p4").await;
    for (id, post, text, by) in [
        ("c1", "p1", "first!", &bob_id),
        ("c2", "p1", "nice", &ann_id),
        ("c3", "p4", "hm", &ann_id),
    ] {
        app.state
            .records
            .insert_system(
                "comments",
                json!({"id": id, "post": post, "text": text, "writer": by})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
    }

    // As ann: her own author record expands (users' view rule lets her see herself),
    // bob's does not; back-relations come as lists, nested paths expand too.
    let (status, page) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?expand=author,comments_via_post.writer&sort=title",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let alpha = items.iter().find(|p| p["id"] == "p1").unwrap();
    assert_eq!(
        alpha["expand"]["author"]["email"], "ann@example.com",
        "{alpha}"
    );
    let comments = alpha["expand"]["comments_via_post"].as_array().unwrap();
    let texts: Vec<&str> = comments
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first!", "nice"]);
    let nice = comments.iter().find(|c| c["id"] == "c2").unwrap();
    assert_eq!(
        nice["expand"]["writer"]["id"],
        ann_id.as_str(),
        "nested expand: {nice}"
    );
    let first = comments.iter().find(|c| c["id"] == "c1").unwrap();
    assert!(
        first
            .get("expand")
            .is_none_or(|e| e.get("writer").is_none()),
        "bob is not visible to ann: {first}"
    );
    let delta = items.iter().find(|p| p["id"] == "p4").unwrap();
    assert!(
        delta
            .get("expand")
            .is_none_or(|e| e.get("author").is_none()),
        "{delta}"
    );
    assert_eq!(delta["expand"]["comments_via_post"][0]["id"], "c3");

    // `fields` reaches into expansions: nested paths, lists of records, `*`.
    let (status, one) = app
        .call(
            Method::GET,
            "/api/collections/posts/records/p1?expand=author,comments_via_post.writer\
             &fields=id,expand.author.email,expand.comments_via_post.text,expand.comments_via_post.expand.writer.*",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one,
        json!({"id": "p1", "expand": {
            "author": {"email": "ann@example.com"},
            "comments_via_post": [
                {"text": "first!"},
                {"text": "nice", "expand": {"writer": nice["expand"]["writer"]}},
            ],
        }}),
    );

    // A superuser sees every expansion; view takes expand too.
    let (_, one) = app
        .call(
            Method::GET,
            "/api/collections/posts/records/p4?expand=author",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(one["expand"]["author"]["email"], "bob@example.com");
    for bad in ["title", "nope", "author.nope", "a.b.c.d.e.f.g"] {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/collections/posts/records?expand={bad}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// A view by id and a list with an indexed filter and a rule each run a bounded
/// number of statements, the same for 2 or 200 rows; expand adds one per relation.
async fn statements_per_request_do_not_grow_with_the_page(backend: Backend) {
    let World { app, admin, .. } = world(backend).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/collections/posts",
            Some(&admin),
            Some(json!({
                "indexes": ["CREATE INDEX idx_posts_title ON posts (title)"]
            })),
        )
        .await;
    assert_eq!(status, 200);
    let author = app
        .state
        .records
        .find_by_id("posts", "p1")
        .await
        .unwrap()
        .unwrap()["author"]
        .clone();
    for i in 0..200 {
        app.state
            .records
            .insert_system(
                "posts",
                json!({"title": format!("bulk {i:03}"), "published": true, "author": author})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
    }
    // Anonymous, so the count is the record queries alone (no caller lookup).
    let statements = |path: String| {
        let app = &app;
        async move {
            let before = app.state.db.statements();
            let (status, body) = app.call(Method::GET, &path, None, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            app.state.db.statements() - before
        }
    };
    let view = statements("/api/collections/posts/records/p1".into()).await;
    assert_eq!(view, 1, "a view is one statement, rule included");
    let list = "/api/collections/posts/records?filter=title~'bulk'";
    let small = statements(format!("{list}&perPage=2")).await;
    let large = statements(format!("{list}&perPage=200")).await;
    assert_eq!(small, large, "independent of the page size");
    assert_eq!(small, 2, "the page and its total");
    assert_eq!(
        statements(format!("{list}&perPage=200&skipTotal=1")).await,
        1
    );
    let expanded = statements(format!("{list}&perPage=200&skipTotal=1&expand=author")).await;
    assert_eq!(
        expanded, 2,
        "expand costs one query per relation, not one per row"
    );
}

/// Statements cached on the one pooled connection (sqlx prepares each distinct SQL
/// text once per connection and keeps it).
async fn cached_statements(app: &TestApp, backend: Backend) -> usize {
    use sea_orm::sqlx::Connection;
    let conn = app.state.db.conn();
    match backend {
        Backend::Sqlite => conn
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .unwrap()
            .cached_statements_size(),
        Backend::Postgres => conn
            .get_postgres_connection_pool()
            .acquire()
            .await
            .unwrap()
            .cached_statements_size(),
    }
}

async fn prepared_statements_are_reused(backend: Backend) {
    // One connection, so every request below runs on the connection we inspect.
    let app = TestApp::builder(backend)
        .setting("database_max_connections", "1")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "notes", "listRule": "n >= 0", "viewRule": "n >= 0",
                "fields": [{"name": "title", "type": "text"}, {"name": "n", "type": "number"}],
                "indexes": ["CREATE INDEX idx_notes_n ON notes (n)"],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..30 {
        app.state
            .records
            .insert_system(
                "notes",
                json!({"id": format!("note{i:04}"), "title": format!("t{i}"), "n": i})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
    }
    let requests = |round: usize| {
        let app = &app;
        async move {
            for i in 0..10 {
                let k = round * 10 + i;
                let (status, body) = app
                    .call(
                        Method::GET,
                        &format!("/api/collections/notes/records/note{k:04}"),
                        None,
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
                let (status, body) = app
                    .call(
                        Method::GET,
                        &format!(
                            "/api/collections/notes/records?filter=n>{k}&perPage={}",
                            i + 1
                        ),
                        None,
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
            }
        }
    };
    // The first round prepares what views and lists need; later rounds, with other
    // ids, filter values and page sizes, prepare nothing new.
    requests(0).await;
    let warm = cached_statements(&app, backend).await;
    assert!(warm > 0, "statements are cached at all");
    requests(1).await;
    requests(2).await;
    assert_eq!(
        cached_statements(&app, backend).await,
        warm,
        "new values must reuse the prepared statements"
    );
}
