//! GraphQL at `/graphql`: the generated schema, queries, mutations, aggregates and
//! relations over `records`; the same rule outcomes as REST for every caller; errors,
//! limits, schema swaps under load and the SDL snapshot. Real JS clients (urql,
//! graphql-ws, `buildClientSchema`) are in `graphql_clients`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use basalt_tests::{Backend, TestApp, backend_tests, require_tool};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    queries_mutations_aggregates_and_relations,
    nested_relations_take_a_bounded_number_of_statements,
    rules_agree_with_rest_for_every_caller,
    errors_follow_the_spec_with_codes,
    the_schema_follows_schema_changes_under_load,
    real_clients_query_mutate_and_subscribe,
);

/// POST an operation; the whole response body.
pub async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/graphql",
            token,
            Some(json!({"query": query, "variables": variables})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `data` of a response that must have no errors.
async fn data(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Value {
    let body = gql(app, token, query, variables).await;
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// users (the default auth collection), posts (title, views, status, author,
/// published, meta, secret: hidden) and comments (text, post, author).
async fn blog(app: &TestApp, admin: &str) -> (String, String) {
    let posts = app
        .create_collection(
            admin,
            json!({
                "name": "posts",
                "listRule": "", "viewRule": "", "createRule": "@request.auth.id != ''",
                "updateRule": "author = @request.auth.id", "deleteRule": "author = @request.auth.id",
                "fields": [
                    {"name": "title", "type": "text", "required": true},
                    {"name": "views", "type": "number"},
                    {"name": "status", "type": "select", "values": ["draft", "live"], "maxSelect": 1},
                    {"name": "tags", "type": "select", "values": ["rust", "go", "c"], "maxSelect": 3},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                    {"name": "published", "type": "date"},
                    {"name": "meta", "type": "json"},
                    {"name": "secret", "type": "text", "hidden": true},
                ],
            }),
        )
        .await;
    let posts_id = posts["id"].as_str().unwrap().to_owned();
    let comments = app
        .create_collection(
            admin,
            json!({
                "name": "comments",
                "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
                "fields": [
                    {"name": "text", "type": "text"},
                    {"name": "post", "type": "relation", "collectionId": posts_id, "maxSelect": 1},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                ],
            }),
        )
        .await;
    (posts_id, comments["id"].as_str().unwrap().to_owned())
}

async fn queries_mutations_aggregates_and_relations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    blog(&app, &admin).await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password-1").await;
    let ann_id = ann["id"].as_str().unwrap();

    // Creates through mutations, as a signed-in user; typed input (enum, list, date,
    // JSON) and the record back.
    let mut ids = Vec::new();
    for (i, (title, status)) in [("First", "live"), ("Second", "draft"), ("Third", "live")]
        .into_iter()
        .enumerate()
    {
        let created = data(
            &app,
            Some(&ann_token),
            r#"mutation($input: PostCreateInput!) {
                createPost(input: $input) { id title views status tags published meta author { id email } authorId collectionName }
            }"#,
            json!({"input": {
                "title": title, "views": i + 1, "status": status, "tags": ["rust", "go"],
                "author": ann_id, "published": format!("2026-01-0{}T10:00:00Z", i + 1),
                "meta": {"n": i},
            }}),
        )
        .await;
        let post = &created["createPost"];
        assert_eq!(post["title"], title);
        assert_eq!(post["status"], status, "select values are enums");
        assert_eq!(post["tags"], json!(["rust", "go"]));
        assert_eq!(
            post["published"],
            format!("2026-01-0{}T10:00:00.000Z", i + 1),
            "dates are RFC 3339"
        );
        assert_eq!(post["meta"], json!({"n": i}));
        assert_eq!(post["authorId"], ann_id);
        assert_eq!(post["collectionName"], "posts");
        // Ann may not view users other than herself: her own record shows.
        assert_eq!(post["author"]["id"], ann_id);
        ids.push(post["id"].as_str().unwrap().to_owned());
    }
    // A hidden field is in superusers' schema only.
    let body = gql(
        &app,
        Some(&ann_token),
        "mutation($id: ID!) { updatePost(id: $id, input: {secret: \"x\"}) { id } }",
        json!({"id": ids[0]}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("secret"),
        "{body}"
    );
    let set = data(
        &app,
        Some(&admin),
        "mutation($id: ID!) { updatePost(id: $id, input: {secret: \"never\"}) { secret } }",
        json!({"id": ids[0]}),
    )
    .await;
    assert_eq!(set["updatePost"]["secret"], "never");
    let stored = app
        .state
        .records
        .find_by_id("posts", &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["secret"], "never");
    let body = gql(
        &app,
        Some(&ann_token),
        "{ posts { items { secret } } }",
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("secret"),
        "{body}"
    );
    let admin_view = data(
        &app,
        Some(&admin),
        "{ posts(where: {secret: {_eq: \"never\"}}) { items { secret } } }",
        json!({}),
    )
    .await;
    assert_eq!(admin_view["posts"]["items"].as_array().unwrap().len(), 1);

    // Lists: where (typed, nested through a relation, _or/_not/_in), orderBy, pages.
    // (Filtering through `author` needs the caller to see that user, as in REST.)
    let page = data(
        &app,
        Some(&ann_token),
        r#"{ posts(where: {_or: [{status: {_eq: "live"}}, {views: {_gte: 2}}], _not: {title: {_like: "%ir%"}}, author: {id: {_eq: "ANN"}}},
                   orderBy: [{views: DESC}], page: 1, perPage: 1) {
               page perPage totalItems totalPages items { title views }
           } }"#
            .replace("ANN", ann_id)
            .as_str(),
        json!({}),
    )
    .await;
    // live or views >= 2: all three; not containing "ir": First and Third dropped.
    assert_eq!(page["posts"]["totalItems"], 1, "{page}");
    assert_eq!(page["posts"]["items"][0]["title"], "Second");
    assert_eq!(page["posts"]["perPage"], 1);
    let ordered = data(
        &app,
        None,
        r#"{ posts(orderBy: [{views: DESC}], skipTotal: true, where: {views: {_in: [1, 3]}, tags: {_eq: "rust"}, published: {_gt: "2026-01-01T12:00:00Z"}}) { totalItems items { title } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(ordered["posts"]["totalItems"], -1);
    assert_eq!(ordered["posts"]["items"], json!([{"title": "Third"}]));

    // Related records pass their own view rule: anonymous callers see the author's id
    // but not the user (users' view rule is the owner only).
    let anon = data(
        &app,
        None,
        "query($id: ID!) { post(id: $id) { authorId author { id } } }",
        json!({"id": ids[0]}),
    )
    .await;
    assert_eq!(anon["post"], json!({"authorId": ann_id, "author": null}));

    // Single fetch; absent is null with no error.
    let one = data(
        &app,
        None,
        "query($id: ID!) { post(id: $id) { title } none: post(id: \"nope\") { title } }",
        json!({"id": ids[1]}),
    )
    .await;
    assert_eq!(one, json!({"post": {"title": "Second"}, "none": null}));

    // Aggregates over what the list rule lets the caller see.
    let agg = data(
        &app,
        None,
        r#"{ postsAggregate(where: {status: {_eq: "live"}}) { count sum { views } avg { views } min { views } max { views } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        agg["postsAggregate"],
        json!({"count": 2, "sum": {"views": 4.0}, "avg": {"views": 2.0}, "min": {"views": 1.0}, "max": {"views": 3.0}})
    );

    // Back-relations with where, orderBy and limit; nested relations.
    for text in ["a", "b", "c"] {
        data(
            &app,
            Some(&ann_token),
            "mutation($i: CommentCreateInput!) { createComment(input: $i) { id } }",
            json!({"i": {"text": text, "post": ids[0], "author": ann_id}}),
        )
        .await;
    }
    let nested = data(
        &app,
        Some(&ann_token),
        r#"query($id: ID!) { post(id: $id) {
            latest: comments_via_post(orderBy: [{text: DESC}], limit: 2) { text author { email } post { title } }
            filtered: comments_via_post(where: {text: {_neq: "a"}}) { text }
        } }"#,
        json!({"id": ids[0]}),
    )
    .await;
    assert_eq!(
        nested["post"]["latest"],
        json!([
            {"text": "c", "author": {"email": "ann@example.com"}, "post": {"title": "First"}},
            {"text": "b", "author": {"email": "ann@example.com"}, "post": {"title": "First"}},
        ])
    );
    assert_eq!(
        nested["post"]["filtered"],
        json!([{"text": "b"}, {"text": "c"}])
    );
    let by_back = data(
        &app,
        None,
        r#"{ posts(where: {comments_via_post: {text: {_eq: "b"}}}) { items { title } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(by_back["posts"]["items"], json!([{"title": "First"}]));

    // Update with ifMatch (the REST ETag); a stale tag is refused with `stale`.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/collections/posts/records/{}", ids[2]),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let etag = app
        .get(&format!("/api/collections/posts/records/{}", ids[2]))
        .await
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let updated = data(
        &app,
        Some(&ann_token),
        "mutation($id: ID!, $tag: String) { updatePost(id: $id, input: {views: 30, status: draft}, ifMatch: $tag) { views status } }",
        json!({"id": ids[2], "tag": etag}),
    )
    .await;
    assert_eq!(
        updated["updatePost"],
        json!({"views": 30, "status": "draft"})
    );
    let stale = gql(
        &app,
        Some(&ann_token),
        "mutation($id: ID!, $tag: String) { updatePost(id: $id, input: {views: 31}, ifMatch: $tag) { views } }",
        json!({"id": ids[2], "tag": etag}),
    )
    .await;
    assert_eq!(code(&stale), "stale", "{stale}");

    // The batch: all or nothing.
    let batch = data(
        &app,
        Some(&ann_token),
        r#"mutation($id: ID!) { batch(operations: [
            {createPost: {title: "Fourth", author: "ANN"}},
            {updatePost: {id: $id, input: {title: "First!"}}},
            {deletePost: {id: $id}}
        ]) { status record } }"#
            .replace("ANN", ann_id)
            .as_str(),
        json!({"id": ids[1]}),
    )
    .await;
    let statuses: Vec<u64> = batch["batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 204], "{batch}");
    assert_eq!(batch["batch"][0]["record"]["title"], "Fourth");
    let before = app.count_rows("posts").await;
    let failed = gql(
        &app,
        Some(&ann_token),
        r#"mutation { batch(operations: [{createPost: {title: "Fifth"}}, {createPost: {title: ""}}]) { status } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&failed), "validation_failed", "{failed}");
    assert_eq!(failed["errors"][0]["extensions"]["index"], 1);
    assert_eq!(
        app.count_rows("posts").await,
        before,
        "nothing of a failed batch is kept"
    );

    // Delete.
    let deleted = data(
        &app,
        Some(&ann_token),
        "mutation($id: ID!) { deletePost(id: $id) }",
        json!({"id": ids[2]}),
    )
    .await;
    assert_eq!(deleted["deletePost"], true);
    assert!(
        app.state
            .records
            .find_by_id("posts", &ids[2])
            .await
            .unwrap()
            .is_none()
    );

    // GET runs queries, never writes.
    let (status, body) = app
        .get_json("/graphql?query=%7B%20postsAggregate%20%7B%20count%20%7D%20%7D")
        .await;
    assert_eq!(
        (status, body["data"]["postsAggregate"]["count"].clone()),
        (200, json!(2))
    );
    let (status, _) = app
        .get_json(&format!(
            "/graphql?query=mutation%7BdeletePost(id:%22{}%22)%7D",
            ids[0]
        ))
        .await;
    assert_eq!(status, 405);
    assert!(
        app.state
            .records
            .find_by_id("posts", &ids[0])
            .await
            .unwrap()
            .is_some()
    );
}

async fn nested_relations_take_a_bounded_number_of_statements(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    blog(&app, &admin).await;
    let (ann, _) = app.user("ann@example.com", "ann-password-1").await;
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    let (bob, _) = app.user("bob@example.com", "bob-password-1").await;
    let bob_id = bob["id"].as_str().unwrap().to_owned();
    for i in 0..40 {
        let author = if i % 2 == 0 { &ann_id } else { &bob_id };
        let post = format!("post{i:03}");
        app.state
            .records
            .insert_system(
                "posts",
                json!({"id": post, "title": format!("P{i}"), "author": author})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .await
            .unwrap();
        for j in 0..3 {
            app.state
                .records
                .insert_system(
                    "comments",
                    json!({"text": format!("c{j}"), "post": post, "author": author})
                        .as_object()
                        .unwrap()
                        .clone(),
                )
                .await
                .unwrap();
        }
    }
    let query = "query($n: Int) { posts(perPage: $n) { items { title author { email } comments_via_post(limit: 2) { text author { email } } } } }";
    let mut counts = Vec::new();
    for n in [5, 20, 40] {
        let before = app.state.db.statements();
        let page = data(&app, Some(&admin), query, json!({"n": n})).await;
        counts.push(app.state.db.statements() - before);
        let items = page["posts"]["items"].as_array().unwrap();
        assert_eq!(items.len(), n as usize);
        assert!(
            items.iter().all(|p| p["author"]["email"].is_string()),
            "{page}"
        );
        assert!(
            items
                .iter()
                .all(|p| p["comments_via_post"].as_array().unwrap().len() == 2
                    && p["comments_via_post"][0]["author"]["email"].is_string()),
            "{page}"
        );
    }
    // The caller's superuser row, list, count, authors, comments, comment authors:
    // the same whatever the page size.
    assert!(
        counts.iter().all(|c| *c <= 6),
        "statements per page size: {counts:?}"
    );
    assert_eq!(
        counts[0], counts[2],
        "the same for 5 and 40 posts: {counts:?}"
    );
}

/// Outcome of an operation, comparable between REST and GraphQL.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// REST 404 / GraphQL null (or not_found on writes).
    Hidden,
    Refused(String),
}

fn rest_outcome(status: u16, body: &Value) -> Outcome {
    match status {
        200 | 204 => Outcome::Ok,
        404 => Outcome::Hidden,
        _ => Outcome::Refused(body["code"].as_str().unwrap_or_default().to_owned()),
    }
}

fn gql_outcome(body: &Value, field: &str) -> Outcome {
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some("not_found") => Outcome::Hidden,
        Some(code) => Outcome::Refused(code.to_owned()),
        None if body["data"][field].is_null() => Outcome::Hidden,
        None => Outcome::Ok,
    }
}

async fn rules_agree_with_rest_for_every_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password-1").await;
    let (_, bob_token) = app.user("bob@example.com", "bob-password-1").await;
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    let owner = "owner = @request.auth.id";
    for (name, rule) in [
        ("locked", Value::Null),
        ("open", json!("")),
        ("owned", json!(owner)),
    ] {
        app.create_collection(
            &admin,
            json!({
                "name": name,
                "listRule": rule, "viewRule": rule, "createRule": rule,
                "updateRule": rule, "deleteRule": rule,
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_"},
                ],
            }),
        )
        .await;
    }
    let (status, key) = app
        .call(
            Method::POST,
            "/api/keys",
            Some(&admin),
            Some(json!({"name": "reader", "scopes": [{"collection": "open", "operations": ["list", "view"]}]})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let scoped = format!("Bearer {}", key["key"].as_str().unwrap());
    let callers: [(&str, Option<&str>); 5] = [
        ("anonymous", None),
        ("owner", Some(&ann_token)),
        ("other", Some(&bob_token)),
        ("superuser", Some(&admin)),
        ("scoped key", Some(&scoped)),
    ];
    let singular = |c: &str| match c {
        "locked" => "Locked",
        "open" => "Open",
        _ => "Owned",
    };
    for c in ["locked", "open", "owned"] {
        let s = singular(c);
        for (i, (who, token)) in callers.iter().enumerate() {
            // Two records per caller and path, so REST and GraphQL act on equal ones.
            let rec = |path: &str| {
                let id = format!("{c}{i}{path}");
                let app = &app;
                let ann_id = ann_id.clone();
                async move {
                    app.state
                        .records
                        .insert_system(
                            c,
                            json!({"id": id, "title": "original", "owner": ann_id})
                                .as_object()
                                .unwrap()
                                .clone(),
                        )
                        .await
                        .unwrap();
                    id
                }
            };
            let (rest_id, gql_id) = (rec("r").await, rec("g").await);
            let what = format!("{c} as {who}");

            // list: the same records, the same totals, or the same refusal.
            let (status, page) = app
                .call(
                    Method::GET,
                    &format!("/api/collections/{c}/records?perPage=500"),
                    *token,
                    None,
                )
                .await;
            let body = gql(
                &app,
                *token,
                &format!("{{ {c}(perPage: 500) {{ totalItems items {{ id }} }} }}"),
                json!({}),
            )
            .await;
            match rest_outcome(status, &page) {
                Outcome::Ok => {
                    assert_eq!(
                        body["data"][c]["totalItems"], page["totalItems"],
                        "list {what}: {body}"
                    );
                    let rest: Vec<&Value> = page["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| &r["id"])
                        .collect();
                    let graph: Vec<&Value> = body["data"][c]["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| &r["id"])
                        .collect();
                    assert_eq!(rest, graph, "list {what}");
                }
                other => assert_eq!(gql_outcome(&body, c), other, "list {what}: {body}"),
            }

            // view
            let (status, rest) = app
                .call(
                    Method::GET,
                    &format!("/api/collections/{c}/records/{rest_id}"),
                    *token,
                    None,
                )
                .await;
            let body = gql(
                &app,
                *token,
                &format!("{{ {c}ById(id: \"{gql_id}\") {{ id }} }}"),
                json!({}),
            )
            .await;
            assert_eq!(
                gql_outcome(&body, &format!("{c}ById")),
                rest_outcome(status, &rest),
                "view {what}: {body}"
            );

            // create
            let (status, rest) = app
                .call(
                    Method::POST,
                    &format!("/api/collections/{c}/records"),
                    *token,
                    Some(json!({"id": format!("{rest_id}n"), "title": "created", "owner": ann_id})),
                )
                .await;
            let body = gql(
                &app,
                *token,
                &format!("mutation($i: {s}CreateInput!) {{ create{s}(input: $i) {{ id }} }}"),
                json!({"i": {"id": format!("{gql_id}n"), "title": "created", "owner": ann_id}}),
            )
            .await;
            let rest_result = rest_outcome(status, &rest);
            let gql_result = gql_outcome(&body, &format!("create{s}"));
            // A create the view rule hides answers REST 204 and GraphQL null.
            let created = app
                .state
                .records
                .find_by_id(c, &format!("{gql_id}n"))
                .await
                .unwrap()
                .is_some();
            if rest_result == Outcome::Ok {
                assert!(created, "create {what}: {body}");
            } else {
                assert_eq!(gql_result, rest_result, "create {what}: {body}");
                assert!(!created, "a refused create stores nothing: {what}");
            }

            // update
            let (status, rest) = app
                .call(
                    Method::PATCH,
                    &format!("/api/collections/{c}/records/{rest_id}"),
                    *token,
                    Some(json!({"title": "changed"})),
                )
                .await;
            let body = gql(
                &app,
                *token,
                &format!("mutation {{ update{s}(id: \"{gql_id}\", input: {{title: \"changed\"}}) {{ id }} }}"),
                json!({}),
            )
            .await;
            let rest_result = rest_outcome(status, &rest);
            let stored = app
                .state
                .records
                .find_by_id(c, &gql_id)
                .await
                .unwrap()
                .unwrap();
            if rest_result == Outcome::Ok {
                assert_eq!(stored["title"], "changed", "update {what}: {body}");
            } else {
                assert_eq!(
                    gql_outcome(&body, &format!("update{s}")),
                    rest_result,
                    "update {what}: {body}"
                );
                assert_eq!(stored["title"], "original", "update {what}");
            }

            // delete
            let (status, rest) = app
                .call(
                    Method::DELETE,
                    &format!("/api/collections/{c}/records/{rest_id}"),
                    *token,
                    None,
                )
                .await;
            let body = gql(
                &app,
                *token,
                &format!("mutation {{ delete{s}(id: \"{gql_id}\") }}"),
                json!({}),
            )
            .await;
            let rest_result = rest_outcome(status, &rest);
            let gone = app
                .state
                .records
                .find_by_id(c, &gql_id)
                .await
                .unwrap()
                .is_none();
            if rest_result == Outcome::Ok {
                assert!(gone, "delete {what}: {body}");
                assert_eq!(body["data"][format!("delete{s}")], true);
            } else {
                assert_eq!(
                    gql_outcome(&body, &format!("delete{s}")),
                    rest_result,
                    "delete {what}: {body}"
                );
                assert!(!gone, "delete {what}");
            }
        }
    }
}

async fn errors_follow_the_spec_with_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    blog(&app, &admin).await;
    let (_, ann_token) = app.user("ann@example.com", "ann-password-1").await;

    // Validation: the shared code and per-field details.
    let body = gql(
        &app,
        Some(&ann_token),
        r#"mutation { createPost(input: {title: ""}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&body), "validation_failed");
    assert_eq!(
        body["errors"][0]["extensions"]["fields"]["title"]["code"], "validation_required",
        "{body}"
    );
    // A rule refusing a create: the same code as REST's.
    let body = gql(
        &app,
        None,
        r#"mutation { createPost(input: {title: "x"}) { id } }"#,
        json!({}),
    )
    .await;
    let (status, rest) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        code(&body),
        rest["code"].as_str().unwrap(),
        "{body} vs {rest}"
    );
    // Bad input types are GraphQL validation errors, nothing runs.
    let before = app.count_rows("posts").await;
    let body = gql(
        &app,
        Some(&ann_token),
        r#"mutation { createPost(input: {title: "x", views: "many"}) { id } }"#,
        json!({}),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("views"),
        "{body}"
    );
    let body = gql(
        &app,
        Some(&ann_token),
        r#"mutation { createPost(input: {title: "x", status: gone}) { id } }"#,
        json!({}),
    )
    .await;
    assert!(body["errors"].is_array(), "{body}");
    let body = gql(
        &app,
        Some(&ann_token),
        r#"{ posts(where: {published: {_gt: "not a date"}}) { totalItems } }"#,
        json!({}),
    )
    .await;
    assert!(body["errors"].is_array(), "{body}");
    assert_eq!(app.count_rows("posts").await, before);
    // Unknown fields, syntax errors.
    let body = gql(&app, None, "{ posts { items { nope } } }", json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{body}"
    );
    let body = gql(&app, None, "{ posts {", json!({})).await;
    assert!(body["errors"].is_array(), "{body}");
    // A text that passed validation once is still checked by value when it comes back
    // (texts seen before skip the full validation only with string variables).
    let by_id = "query($id: ID!) { post(id: $id) { title } }";
    let paged = "query($n: Int) { posts(perPage: $n) { perPage } }";
    for _ in 0..2 {
        assert!(data(&app, None, by_id, json!({"id": "nope"})).await["post"].is_null());
        let page = data(&app, None, paged, json!({"n": 2})).await;
        assert_eq!(page["posts"]["perPage"], 2, "{page}");
    }
    let body = gql(&app, None, by_id, json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("id"),
        "{body}"
    );
    let body = gql(&app, None, by_id, json!({"id": null})).await;
    assert!(body["errors"].is_array(), "{body}");
    let body = gql(&app, None, paged, json!({"n": "many"})).await;
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("n"),
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");
    // …and a text refused once is refused again.
    for _ in 0..2 {
        let body = gql(
            &app,
            None,
            "query($id: ID!) { post(id: $id) { nope } }",
            json!({"id": "x"}),
        )
        .await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("nope"),
            "{body}"
        );
    }
    // A body that is not a GraphQL request.
    let res = basalt_tests::client()
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Several operations in one body (Apollo's batching): one response each.
    let (status, answers) = app
        .call(
            Method::POST,
            "/graphql",
            None,
            Some(json!([{"query": "{ schemaVersion }"}, {"query": "{ posts { totalItems } }"}])),
        )
        .await;
    assert_eq!(status, 200);
    assert!(answers[0]["data"]["schemaVersion"].is_number(), "{answers}");
    assert!(
        answers[1]["data"]["posts"]["totalItems"].is_number(),
        "{answers}"
    );
    // Forged token: 401, never anonymous.
    let (status, _) = app
        .call(
            Method::POST,
            "/graphql",
            Some("Bearer forged"),
            Some(json!({"query": "{ schemaVersion }"})),
        )
        .await;
    assert_eq!(status, 401);

    // Hostile operations: refused before they run, quickly, with a clear code.
    let started = std::time::Instant::now();
    let deep = format!(
        "{{ comments {{ items {} }} }}",
        "{ post { author { id } comments_via_post ".repeat(4) + "{ id }" + &" } }".repeat(4)
    );
    let aliases: String = (0..200)
        .map(|i| format!("a{i}: post(id: \"x\") {{ id }} "))
        .collect();
    let roots: String = (0..25).map(|i| format!("r{i}: schemaVersion ")).collect();
    for hostile in [
        deep,
        format!("{{ {aliases} }}"),
        format!("{{ {roots} }}"),
        "{ posts(perPage: 1000) { items { comments_via_post(limit: 1000) { id } } } }".to_owned(),
        format!("{{ schemaVersion }} #{}", "x".repeat(40_000)),
    ] {
        let body = gql(&app, None, &hostile, json!({})).await;
        assert_eq!(code(&body), "query_too_complex", "{body}");
        assert!(body["data"].is_null());
    }
    assert!(
        started.elapsed().as_secs() < 3,
        "hostile operations are refused quickly"
    );
    // An ordinary request still works meanwhile.
    assert!(data(&app, None, "{ schemaVersion }", json!({})).await["schemaVersion"].is_number());

    // Introspection: on by default, switchable off.
    let on = data(&app, None, "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(on["__schema"]["queryType"]["name"], "Query");
    let off = TestApp::builder(backend)
        .setting("graphql_introspection", "false")
        .spawn()
        .await;
    let body = gql(&off, None, "{ __schema { queryType { name } } }", json!({})).await;
    assert!(body["errors"].is_array(), "{body}");
    assert!(data(&off, None, "{ schemaVersion }", json!({})).await["schemaVersion"].is_number());
}

async fn the_schema_follows_schema_changes_under_load(backend: Backend) {
    let app = Arc::new(TestApp::spawn(backend).await);
    let admin = app.superuser_token().await;
    blog(&app, &admin).await;
    app.state
        .records
        .insert_system(
            "posts",
            json!({"title": "Kept"}).as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (app, stop, served) = (Arc::clone(&app), Arc::clone(&stop), Arc::clone(&served));
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = gql(
                    &app,
                    None,
                    "{ posts { totalItems items { title } } }",
                    json!({}),
                )
                .await;
                if body.get("errors").is_some() || body["data"]["posts"]["totalItems"] != 1 {
                    failures.push(body);
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    // A new collection is queryable on the next request; a renamed field too.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "notes", "listRule": "", "fields": [{"name": "body", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        data(&app, None, "{ notes { totalItems } }", json!({})).await["notes"]["totalItems"],
        0
    );
    let (status, notes) = app
        .call(Method::GET, "/api/collections/notes", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let mut fields = notes["fields"].as_array().unwrap().clone();
    for field in &mut fields {
        if field["name"] == "body" {
            field["name"] = json!("text");
        }
    }
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/notes",
            Some(&admin),
            Some(json!({"fields": fields})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        data(&app, None, "{ notes { items { text } } }", json!({})).await["notes"]["items"]
            .is_array()
    );
    let body = gql(&app, None, "{ notes { items { body } } }", json!({})).await;
    assert!(body["errors"].is_array(), "the old name is gone: {body}");
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during the change: {failures:?}"
        );
    }
    assert!(served.load(Ordering::Relaxed) > 4, "the load ran");
}

/// Collection names whose GraphQL names would collide still give a valid schema:
/// `post` and `posts`, a collection called `string`, one called `batch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_names_still_give_a_valid_schema() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.superuser_token().await;
    for name in ["posts", "post", "string", "batch", "news"] {
        app.create_collection(
            &admin,
            json!({"name": name, "listRule": "", "viewRule": "", "createRule": "", "fields": [{"name": "title", "type": "text"}]}),
        )
        .await;
    }
    let written = data(
        &app,
        None,
        r#"mutation {
            a: createPost(input: {title: "in posts"}) { id collectionName }
            b: createPostRecord(input: {title: "in post"}) { id collectionName }
            c: createStringRecord(input: {title: "in string"}) { collectionName }
            d: createBatch(input: {title: "in batch"}) { collectionName }
            e: createNews(input: {title: "in news"}) { collectionName }
        }"#,
        json!({}),
    )
    .await;
    assert_eq!(written["a"]["collectionName"], "posts", "{written}");
    assert_eq!(written["b"]["collectionName"], "post", "{written}");
    let read = data(
        &app,
        None,
        "query($a: ID!, $b: ID!) { posts { totalItems } post { totalItems } postsById(id: $a) { title } postById(id: $b) { title } string { totalItems } batch { totalItems } news { totalItems } newsById(id: \"x\") { id } }",
        json!({"a": written["a"]["id"], "b": written["b"]["id"]}),
    )
    .await;
    assert_eq!(read["postsById"]["title"], "in posts", "{read}");
    assert_eq!(read["postById"]["title"], "in post", "{read}");
    assert_eq!(read["string"]["totalItems"], 1);
}

/// The SDL of a fixed schema, against the snapshot in `graphql.sdl`: an accidental
/// schema change fails here. `UPDATE_SNAPSHOTS=1` rewrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdl_matches_the_snapshot() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.superuser_token().await;
    blog(&app, &admin).await;
    let res = app.get("/graphql/schema.graphql").await;
    assert_eq!(res.status(), 200);
    let sdl = res.text().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/graphql.sdl");
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &sdl).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).expect("the snapshot (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        sdl, expected,
        "the SDL changed; if on purpose, rerun with UPDATE_SNAPSHOTS=1"
    );
    // Hidden fields and password hashes are not in it.
    assert!(!sdl.contains("secret") && !sdl.contains("tokenKey"));
    let user_type = sdl
        .split("type User {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    assert!(
        user_type.contains("email") && !user_type.contains("password"),
        "{user_type}"
    );
    // Superusers' schema has the hidden field.
    let res = basalt_tests::client()
        .get(app.url("/graphql/schema.graphql"))
        .header("Authorization", &admin)
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("secret"));
    // The explorer: a page from this binary, its script under the same origin.
    let res = basalt_tests::client()
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = res.text().await.unwrap();
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert!(script.starts_with("/_/assets/explorer."), "{script}");
    let res = app.get(&script).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("/graphql"));
}

/// The pinned GraphQL clients and the scripts, installed once per content.
pub(crate) fn install_clients() -> std::path::PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("graphql");
    basalt_tests::tools::npm_once(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "graphql-clients",
        &source,
        &["package.json", "clients.mjs", "scaleout.mjs"],
        "node_modules/graphql-ws",
    )
}

/// urql, graphql-ws and graphql-js, unchanged (versions pinned in
/// tests/graphql/package.json), against a running Basalt: introspection, queries,
/// mutations, error codes, subscriptions by view rule and `where` with auth by
/// `connection_init` and by header, the per-connection and per-address limits, and a
/// password change closing the socket.
async fn real_clients_query_mutate_and_subscribe(backend: Backend) {
    let test = "graphql clients";
    if !require_tool("node", test) || !require_tool("npm", test) {
        return;
    }
    let dir = install_clients();
    let app = TestApp::builder(backend)
        .setting("realtime_max_subscriptions", "3")
        .setting("realtime_max_connections_per_ip", "6")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    let rule = "owner = @request.auth.id";
    app.create_collection(
        &admin,
        json!({
            "name": "notes",
            "listRule": rule, "viewRule": rule, "createRule": "", "updateRule": rule, "deleteRule": rule,
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
            ],
        }),
    )
    .await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password-1").await;
    let (bob, bob_token) = app.user("bob@example.com", "bob-password-1").await;
    let output = tokio::process::Command::new("node")
        .arg("clients.mjs")
        .current_dir(&dir)
        .env("BASALT_URL", format!("http://{}", app.addr))
        .env("ADMIN", &admin)
        .env("ANN", &ann_token)
        .env("ANN_ID", ann["id"].as_str().unwrap())
        .env("BOB", &bob_token)
        .env("BOB_ID", bob["id"].as_str().unwrap())
        .env("MAX_SUBS", "3")
        .env("MAX_CONNECTIONS", "6")
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client checks failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{stdout}"
    );
}
