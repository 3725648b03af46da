//! Leaks found by attacking Basalt (issue #12): emails recovered through filters and
//! sorts, and write responses that echo what the caller may not view.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    hidden_emails_cannot_be_matched_or_sorted,
    writes_answer_only_what_the_caller_may_view,
    an_id_names_one_identity,
    users_end_their_own_sessions,
);

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn hidden_emails_cannot_be_matched_or_sorted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    // Created in this order, so cat's id sorts before ann's while ann's email sorts first.
    let cat = app
        .create_auth_record("users", "cat@example.com", "cat-password")
        .await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let bob_id = bob["id"].as_str().unwrap();
    let (status, res) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/users/records/{bob_id}"),
            Some(&admin),
            Some(json!({"emailVisibility": true})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"listRule": "", "viewRule": ""})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let posts = app.create_collection(
        &admin,
        json!({
            "name": "posts", "listRule": "", "viewRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                {"name": "readers", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 5}
            ]
        }),
    )
    .await;
    for (title, author) in [("by ann", &ann), ("by bob", &bob)] {
        let (status, res) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                Some(&admin),
                Some(json!({"title": title, "author": author["id"], "readers": [author["id"]]})),
            )
            .await;
        assert_eq!(status, 200, "{res}");
    }
    let ann_token = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let list = |collection: &'static str, query: String, token: Option<String>| {
        let app = &app;
        async move {
            let path = format!("/api/collections/{collection}/records?{query}",);
            let (status, page) = app.call(Method::GET, &path, token.as_deref(), None).await;
            assert_eq!(status, 200, "{path}: {page}");
            page
        }
    };
    let filter = |f: &str| format!("filter={}", urlencode(f));

    // Anonymous: a hidden email matches nothing, whatever the operator or the path.
    for f in [
        "email ~ 'ann'",
        "email ~ 'a%'",
        "email = 'ann@example.com'",
        "email > 'a'",
        "email:lower = 'ann@example.com'",
    ] {
        let page = list("users", filter(f), None).await;
        assert!(
            !ids(&page).contains(&ann["id"].as_str().unwrap().to_owned()),
            "anonymous `{f}` matched ann: {page}"
        );
    }
    let page = list("users", filter("email ~ 'bob'"), None).await;
    assert_eq!(
        ids(&page),
        vec![bob_id.to_owned()],
        "a visible email matches"
    );
    // A negation does not reveal hidden rows either.
    let page = list("users", filter("email != 'nobody@example.com'"), None).await;
    assert_eq!(
        ids(&page),
        vec![bob_id.to_owned()],
        "only visible emails: {page}"
    );
    for f in [
        "author.email = 'ann@example.com'",
        "author.email ~ 'ann'",
        "readers.email ?= 'ann@example.com'",
        "readers.email ?~ 'ann'",
    ] {
        let page = list("posts", filter(f), None).await;
        assert_eq!(
            ids(&page).len(),
            0,
            "anonymous `{f}` through a relation: {page}"
        );
    }
    let page = list("posts", filter("author.email = 'bob@example.com'"), None).await;
    assert_eq!(
        ids(&page).len(),
        1,
        "a visible email through a relation: {page}"
    );

    // The owner matches their own email; superusers match every email.
    let page = list(
        "users",
        filter("email = 'ann@example.com'"),
        Some(ann_token.clone()),
    )
    .await;
    assert_eq!(ids(&page), vec![ann["id"].as_str().unwrap().to_owned()]);
    let page = list(
        "posts",
        filter("author.email = 'ann@example.com'"),
        Some(ann_token),
    )
    .await;
    assert_eq!(
        ids(&page).len(),
        1,
        "ann's own email through a relation: {page}"
    );
    let page = list("users", filter("email ~ 'a%'"), Some(admin.clone())).await;
    assert_eq!(ids(&page), vec![ann["id"].as_str().unwrap().to_owned()]);

    // Sorting by email: hidden emails tie (and fall back to id order) both ways, so
    // the order reveals nothing about them.
    let hidden = [cat["id"].as_str().unwrap(), ann["id"].as_str().unwrap()];
    for sort in ["email", "-email"] {
        let page = list("users", format!("sort={sort}"), None).await;
        let order: Vec<String> = ids(&page)
            .into_iter()
            .filter(|id| hidden.contains(&id.as_str()))
            .collect();
        assert_eq!(order, hidden, "anonymous sort={sort}: {page}");
    }
    let page = list("users", "sort=email".to_owned(), Some(admin.clone())).await;
    let order: Vec<String> = ids(&page)
        .into_iter()
        .filter(|id| hidden.contains(&id.as_str()))
        .collect();
    assert_eq!(
        order,
        [hidden[1], hidden[0]],
        "superusers sort by the real email"
    );

    // Through a back-relation: members (another auth collection) point at posts.
    app.create_collection(
        &admin,
        json!({"name": "members", "type": "auth", "createRule": "", "listRule": "", "viewRule": "",
               "fields": [{"name": "post", "type": "relation", "collectionId": posts["id"], "maxSelect": 1}]}),
    )
    .await;
    let (_, by_bob) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?filter=title%3D'by%20bob'",
            None,
            None,
        )
        .await;
    let (status, mia) = app
        .call(
            Method::POST,
            "/api/collections/members/records",
            None,
            Some(
                json!({"email": "mia@example.com", "password": "mia-password",
                        "passwordConfirm": "mia-password", "post": by_bob["items"][0]["id"]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{mia}");
    let back = filter("members_via_post.email ?= 'mia@example.com'");
    let page = list("posts", back.clone(), None).await;
    assert_eq!(
        ids(&page).len(),
        0,
        "a hidden email through a back-relation: {page}"
    );
    let page = list("posts", back, Some(admin.clone())).await;
    assert_eq!(ids(&page).len(), 1, "superusers match it: {page}");
}

async fn writes_answer_only_what_the_caller_may_view(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password").await;
    let (_, bob_token) = app.user("bob@example.com", "bob-password").await;
    let owner = "author = @request.auth.id";
    app.create_collection(
        &admin,
        json!({
            "name": "posts", "listRule": owner, "viewRule": owner,
            "createRule": "@request.auth.id != ''", "updateRule": "@request.auth.id != ''",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "secret", "type": "text"},
                {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1}
            ]
        }),
    )
    .await;
    let (status, post) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            Some(&ann_token),
            Some(json!({"title": "ann's", "secret": "s3cret", "author": ann["id"]})),
        )
        .await;
    assert_eq!(status, 200, "the owner sees what she created: {post}");
    assert_eq!(post["secret"], "s3cret");
    let path = format!(
        "/api/collections/posts/records/{}",
        post["id"].as_str().unwrap()
    );

    // Bob may update it but not view it: 204, no body.
    let res = app
        .client
        .patch(app.url(&path))
        .header("Authorization", &bob_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(res.text().await.unwrap(), "", "nothing echoed");
    let (status, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob_token),
            Some(json!({"title": "bob was here"})),
        )
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, stored) = app.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(stored["title"], "bob was here", "the update took effect");
    let (status, mine) = app
        .call(
            Method::PATCH,
            &path,
            Some(&ann_token),
            Some(json!({"title": "ann's again"})),
        )
        .await;
    assert_eq!((status, mine["title"].clone()), (200, json!("ann's again")));

    // Bob creates a post for Ann: created, but he cannot view it.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            Some(&bob_token),
            Some(json!({"title": "gift", "secret": "for ann", "author": ann["id"]})),
        )
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (_, all) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?filter=title='gift'",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(all["totalItems"], 1, "the create took effect: {all}");

    // The same through a batch.
    let (status, results) = app
        .call(
            Method::POST,
            "/api/batch",
            Some(&bob_token),
            Some(json!({"requests": [
                {"method": "PATCH", "url": path, "body": {"title": "batched"}},
                {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "b2", "author": ann["id"]}}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{results}");
    for result in results.as_array().unwrap() {
        assert_eq!(result["status"], 204, "{results}");
        assert_eq!(result["body"], Value::Null, "{results}");
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Issue #12 point 3: a client-chosen id of a new auth record may not be the id of a
/// record in another auth collection.
async fn an_id_names_one_identity(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (_, me) = app
        .call(
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            Some(&admin),
            None,
        )
        .await;
    let superuser_id = me["record"]["id"].as_str().unwrap().to_owned();
    app.create_collection(
        &admin,
        json!({"name": "members", "type": "auth", "createRule": "",
               "fields": [{"name": "nick", "type": "text"}]}),
    )
    .await;
    let (status, user) = app
        .call(
            Method::POST,
            "/api/collections/users/records",
            None,
            Some(json!({"id": "shared-id-1", "email": "ann@example.com",
                        "password": "ann-password", "passwordConfirm": "ann-password"})),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    for (collection, id) in [("members", "shared-id-1"), ("users", superuser_id.as_str())] {
        let (status, err) = app
            .call(
                Method::POST,
                &format!("/api/collections/{collection}/records"),
                None,
                Some(json!({"id": id, "email": "zed@example.com",
                            "password": "zed-password", "passwordConfirm": "zed-password"})),
            )
            .await;
        assert_eq!(status, 400, "{collection}/{id}: {err}");
        assert!(err["data"]["id"].is_object(), "{err}");
    }
    // A base collection may reuse it: records there are not identities.
    app.create_collection(
        &admin,
        json!({"name": "notes", "createRule": "", "viewRule": "", "fields": [{"name": "t", "type": "text"}]}),
    )
    .await;
    let (status, note) = app
        .call(
            Method::POST,
            "/api/collections/notes/records",
            None,
            Some(json!({"id": "shared-id-1"})),
        )
        .await;
    assert_eq!(status, 200, "{note}");
}

/// Issue #12 point 4: a user can sign out everywhere, and revoke their own sessions;
/// nobody else but a superuser can revoke them.
async fn users_end_their_own_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ann, phone) = app.user("ann@example.com", "ann-password").await;
    let (_, bob) = app.user("bob@example.com", "bob-password").await;
    let ann_id = ann["id"].as_str().unwrap();
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/collections/users/auth-refresh",
                Some(&token),
                None,
            )
            .await
            .0
        }
    };
    let laptop = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    assert_eq!(refresh(phone.clone()).await, 200);

    let logout = "/api/collections/users/auth-logout";
    assert_eq!(app.call(Method::POST, logout, None, None).await.0, 401);
    assert_eq!(
        app.call(
            Method::POST,
            "/api/collections/_superusers/auth-logout",
            Some(&phone),
            None
        )
        .await
        .0,
        403,
        "a users token signs nobody out of _superusers"
    );
    assert_eq!(
        app.call(Method::POST, logout, Some(&phone), None).await.0,
        204
    );
    assert_eq!(refresh(phone).await, 401, "signed out");
    assert_eq!(refresh(laptop).await, 401, "signed out everywhere");
    assert_eq!(refresh(bob.clone()).await, 200, "bob is not affected");

    let revoke = format!("/api/collections/users/records/{ann_id}/revoke-sessions");
    let fresh = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    assert_eq!(
        app.call(Method::POST, &revoke, Some(&bob), None).await.0,
        403
    );
    assert_eq!(app.call(Method::POST, &revoke, None, None).await.0, 401);
    assert_eq!(
        refresh(fresh.clone()).await,
        200,
        "untouched by the refused calls"
    );
    assert_eq!(
        app.call(Method::POST, &revoke, Some(&fresh), None).await.0,
        204
    );
    assert_eq!(refresh(fresh).await, 401);
}
