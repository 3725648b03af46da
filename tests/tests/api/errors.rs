//! Every domain error carries its stable code from the one table (`basalt_server::errors`)
//! beside the PocketBase-shaped body, and HTTP maps each code to one status. Sort,
//! expand and batch routing mistakes are named as what they are, not as filter errors.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(domain_errors_carry_their_code);

async fn domain_errors_carry_their_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({
            "name": "posts", "listRule": "", "viewRule": "", "createRule": "",
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "slug", "type": "text"},
            ],
            "indexes": ["CREATE UNIQUE INDEX idx_posts_slug ON posts (slug)"],
        }),
    )
    .await;
    app.create_collection(&admin, json!({"name": "vault"}))
        .await;
    let (status, post) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "One", "slug": "one"})),
        )
        .await;
    assert_eq!(status, 200, "{post}");
    let id = post["id"].as_str().unwrap();

    let expect = |status: u16, code: &'static str, res: (u16, Value)| {
        assert_eq!(res.0, status, "{code}: {}", res.1);
        assert_eq!(res.1["status"], status, "{}", res.1);
        assert_eq!(res.1["code"], code, "{}", res.1);
        assert!(res.1["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(res.1["data"].is_object(), "{}", res.1);
        res.1
    };
    let list = |query: &'static str| {
        let app = &app;
        async move {
            app.get_json(&format!("/api/collections/posts/records?{query}"))
                .await
        }
    };

    let body = expect(400, "invalid_filter", list("filter=title%3D%3D").await);
    assert!(
        body["message"].as_str().unwrap().contains("filter"),
        "{body}"
    );
    for (query, code) in [
        ("sort=-nope", "invalid_sort"),
        ("expand=title", "invalid_expand"),
        ("expand=a..b", "invalid_expand"),
    ] {
        let body = expect(400, code, list(query).await);
        let message = body["message"].as_str().unwrap();
        assert!(!message.contains("filter"), "{query}: {body}");
    }
    let body = expect(
        400,
        "validation_failed",
        app.call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"slug": "two"})),
        )
        .await,
    );
    assert_eq!(body["data"]["title"]["code"], "validation_required");
    let body = expect(
        400,
        "not_unique",
        app.call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "Again", "slug": "one"})),
        )
        .await,
    );
    assert_eq!(body["data"]["slug"]["code"], "validation_not_unique");
    expect(
        404,
        "not_found",
        app.get_json("/api/collections/posts/records/nosuchrecord00")
            .await,
    );
    expect(
        403,
        "forbidden",
        app.get_json("/api/collections/vault/records").await,
    );
    let stale = basalt_tests::client()
        .patch(app.url(&format!("/api/collections/posts/records/{id}")))
        .bearer_auth(&admin)
        .header("if-match", "\"not-the-etag\"")
        .json(&json!({"title": "Changed"}))
        .send()
        .await
        .unwrap();
    expect(412, "stale", basalt_tests::json(stale).await);
    expect(
        400,
        "invalid_credentials",
        app.call(
            Method::POST,
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": "nobody@example.com", "password": "wrong-password"})),
        )
        .await,
    );
    expect(
        401,
        "unauthorized",
        app.call(
            Method::POST,
            "/api/collections/users/auth-refresh",
            Some("not.a.token"),
            None,
        )
        .await,
    );
    // A batch item that is no record request: a routing mistake, not a filter error.
    let body = expect(
        400,
        "invalid_request",
        app.call(
            Method::POST,
            "/api/batch",
            Some(&admin),
            Some(json!({"requests": [{"method": "POST", "url": "/api/collections/posts/nowhere", "body": {}}]})),
        )
        .await,
    );
    assert!(!body.to_string().contains("filter"), "{body}");
}
