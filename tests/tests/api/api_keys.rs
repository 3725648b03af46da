//! API keys: created by superusers with scopes and an optional expiry, the secret
//! shown once and stored hashed, used as `Authorization: Bearer <key>`; 403 outside
//! the scopes, 401 once revoked or expired; last use recorded.

use std::time::Duration;

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(keys_act_within_their_scopes);

async fn keys_act_within_their_scopes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "posts", "fields": [{"name": "title", "type": "text"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.state
        .records
        .insert_system(
            "posts",
            json!({"id": "p1", "title": "one"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .await
        .unwrap();
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let ann = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;

    // Only superusers manage keys; bad definitions are refused field by field.
    let create = |token: Option<String>, body: Value| {
        let app = &app;
        async move {
            app.call(Method::POST, "/api/keys", token.as_deref(), Some(body))
                .await
        }
    };
    let scoped = json!({"name": "importer", "scopes": [{"collection": "posts", "operations": ["list", "view", "create"]}]});
    assert_eq!(create(None, scoped.clone()).await.0, 401);
    assert_eq!(create(Some(ann.clone()), scoped.clone()).await.0, 403);
    let (status, body) = create(
        Some(admin.clone()),
        json!({"name": "", "scopes": [{"collection": "nope", "operations": ["nuke"]}], "expires": "2001-01-01 00:00:00.000Z", "extra": 1}),
    )
    .await;
    assert_eq!(status, 400);
    for field in ["name", "scopes.0.collection", "expires", "extra"] {
        assert!(body["data"][field].is_object(), "{field}: {body}");
    }

    let (status, key) = create(Some(admin.clone()), scoped).await;
    assert_eq!(status, 200, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("bsk_"));
    let bearer = format!("Bearer {secret}");
    let (status, listed) = app.call(Method::GET, "/api/keys", Some(&admin), None).await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        !text.contains(&secret[12..]),
        "the secret is shown once: {text}"
    );
    assert!(!text.contains("hash"), "{text}");
    assert_eq!(listed["items"][0]["lastUsed"], Value::Null);
    let stored = format!("{:?}", app.state.auth.keys.list().await.unwrap());
    assert!(!stored.contains(&secret[12..]), "only a hash is stored");

    // Within scope it acts past the rules (posts are superusers-only); outside, 403.
    let call = |method: Method, path: &str, body: Option<Value>| {
        let app = &app;
        let bearer = bearer.clone();
        let path = path.to_owned();
        async move { app.call(method, &path, Some(&bearer), body).await }
    };
    let (status, page) = call(Method::GET, "/api/collections/posts/records", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["totalItems"], 1);
    assert_eq!(
        call(Method::GET, "/api/collections/posts/records/p1", None)
            .await
            .0,
        200
    );
    let (status, made) = call(
        Method::POST,
        "/api/collections/posts/records",
        Some(json!({"title": "two"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let (status, body) = call(
        Method::PATCH,
        "/api/collections/posts/records/p1",
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("update"),
        "{body}"
    );
    assert_eq!(
        call(Method::DELETE, "/api/collections/posts/records/p1", None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(Method::GET, "/api/collections/users/records", None)
            .await
            .0,
        403
    );
    assert_eq!(call(Method::GET, "/api/collections", None).await.0, 403);
    assert_eq!(call(Method::GET, "/api/keys", None).await.0, 403);
    let (status, body) = call(
        Method::POST,
        "/api/batch",
        Some(json!({"requests": [
            {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "three"}},
            {"method": "DELETE", "url": "/api/collections/posts/records/p1"},
        ]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let stored = app.state.records.find_by_id("posts", "p1").await.unwrap();
    assert!(stored.is_some(), "the batch was rolled back");

    let (_, listed) = app.call(Method::GET, "/api/keys", Some(&admin), None).await;
    assert!(listed["items"][0]["lastUsed"].is_string(), "{listed}");

    // Wrong secrets and revoked keys are 401.
    // The last character changed (to another one: a key may end in `x` itself).
    let last = if secret.ends_with('x') { "y" } else { "x" };
    let wrong = format!("Bearer {}{last}", &secret[..secret.len() - 1]);
    assert_eq!(
        app.call(
            Method::GET,
            "/api/collections/posts/records",
            Some(&wrong),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        app.call(
            Method::GET,
            "/api/collections/posts/records",
            Some("Bearer bsk_nope"),
            None
        )
        .await
        .0,
        401
    );
    let id = key["id"].as_str().unwrap();
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/api/keys/{id}"),
            Some(&admin),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(Method::GET, "/api/collections/posts/records", None)
            .await
            .0,
        401
    );
    assert_eq!(
        app.call(Method::DELETE, "/api/keys/nope", Some(&admin), None)
            .await
            .0,
        404
    );

    // A whole-superuser key manages collections; an expired one is refused.
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%d %H:%M:%S%.3fZ")
        .to_string();
    let (status, admin_key) = create(
        Some(admin.clone()),
        json!({"name": "ops", "scopes": "superuser", "expires": expires}),
    )
    .await;
    assert_eq!(status, 200, "{admin_key}");
    let admin_bearer = format!("Bearer {}", admin_key["key"].as_str().unwrap());
    assert_eq!(
        app.call(Method::GET, "/api/collections", Some(&admin_bearer), None)
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.call(Method::GET, "/api/collections", Some(&admin_bearer), None)
            .await
            .0,
        401
    );
}
