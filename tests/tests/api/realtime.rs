//! Realtime over SSE, as PocketBase's SDK speaks it: PB_CONNECT, subscriptions set by
//! POST, events only for subscribers whose view rule (and filter) holds — deletes
//! included — with expand and fields under the subscriber's own rights, a password
//! change disconnects, and the limits.

use std::time::Duration;

use basalt_tests::sse::Stream;
use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    events_reach_only_those_allowed_to_see_them,
    rules_on_hidden_fields_hold_for_every_action,
    realtime_limits_hold,
    realtime_does_not_wait_for_the_broker,
    realtime_filters_cannot_probe_hidden_emails,
);

fn options(query: Value) -> String {
    let json = json!({"query": query}).to_string();
    format!(
        "?options={}",
        url::form_urlencoded::byte_serialize(json.as_bytes()).collect::<String>()
    )
}

const QUIET: Duration = Duration::from_millis(400);
const SOON: Duration = Duration::from_secs(10);

async fn events_reach_only_those_allowed_to_see_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann_record = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    app.create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let ann = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .sign_in("users", "bob@example.com", "bob-password")
        .await;
    let ann_id = ann_record["id"].as_str().unwrap().to_owned();
    let rule = "public = true || author = @request.auth.id";
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "posts", "listRule": rule, "viewRule": rule, "createRule": "@request.auth.id != ''",
                "updateRule": "author = @request.auth.id", "deleteRule": "author = @request.auth.id",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "public", "type": "bool"},
                    {"name": "n", "type": "number"},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"},
                    {"name": "secret", "type": "text", "hidden": true},
                ],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let all = vec!["posts/*".to_owned()];
    let mut s_anon = Stream::open(&app.client, &app.url("")).await;
    let mut s_ann = Stream::open(&app.client, &app.url("")).await;
    let mut s_bob = Stream::open(&app.client, &app.url("")).await;
    let mut s_admin = Stream::open(&app.client, &app.url("")).await;
    assert_eq!(
        s_anon
            .subscribe(&app.client, &app.url(""), None, &all)
            .await,
        204
    );
    assert_eq!(
        s_ann
            .subscribe(&app.client, &app.url(""), Some(&ann), &all)
            .await,
        204
    );
    assert_eq!(
        s_bob
            .subscribe(&app.client, &app.url(""), Some(&bob), &all)
            .await,
        204
    );
    assert_eq!(
        s_admin
            .subscribe(&app.client, &app.url(""), Some(&admin), &all)
            .await,
        204
    );
    // A client may not be taken over by another identity.
    assert_eq!(
        s_ann
            .subscribe(&app.client, &app.url(""), Some(&bob), &all)
            .await,
        403
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/api/realtime",
            None,
            Some(json!({"clientId": "nope", "subscriptions": []}))
        )
        .await
        .0,
        404
    );

    let create = |title: &str, public: bool| {
        let app = &app;
        let ann = ann.clone();
        let ann_id = ann_id.clone();
        let title = title.to_owned();
        async move {
            let (status, post) = app
                .call(
                    Method::POST,
                    "/api/collections/posts/records",
                    Some(&ann),
                    Some(
                        json!({"title": title, "public": public, "author": ann_id, "secret": "s"}),
                    ),
                )
                .await;
            assert_eq!(status, 200, "{post}");
            post["id"].as_str().unwrap().to_owned()
        }
    };

    // A private post: ann (the author) and the superuser hear of it; nobody else.
    let private = create("private", false).await;
    for stream in [&mut s_ann, &mut s_admin] {
        let (name, data) = stream.next(SOON).await.expect("an event");
        assert_eq!(name, "posts/*");
        assert_eq!(data["action"], "create");
        assert_eq!(data["record"]["id"], private.as_str());
    }
    assert!(s_bob.next(QUIET).await.is_none(), "bob may not see it");
    assert!(s_anon.next(QUIET).await.is_none(), "nor may anyone");

    // A public post reaches everyone; hidden fields only the superuser.
    let public = create("public", true).await;
    for stream in [&mut s_anon, &mut s_ann, &mut s_bob] {
        let (_, data) = stream.next(SOON).await.expect("the public post");
        assert_eq!(data["record"]["id"], public.as_str());
        assert!(data["record"].get("secret").is_none());
    }
    let (_, data) = s_admin.next(SOON).await.unwrap();
    assert_eq!(data["record"]["secret"], "s");

    // Deletes are checked too: bob never saw the private post, so he hears nothing.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/collections/posts/records/{private}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, data) = s_ann.next(SOON).await.expect("the delete");
    assert_eq!(data["action"], "delete");
    assert_eq!(data["record"]["id"], private.as_str());
    assert!(s_bob.next(QUIET).await.is_none());
    s_admin
        .next(SOON)
        .await
        .expect("the superuser sees the delete");

    // Options: a filter, expand and fields, with the subscriber's own rights; one record.
    let topics = vec![
        format!(
            "posts/*{}",
            options(
                json!({"filter": "n > 5", "expand": "author", "fields": "id,n,expand.author.email"})
            )
        ),
        format!("posts/{public}"),
    ];
    assert_eq!(
        s_bob
            .subscribe(&app.client, &app.url(""), Some(&bob), &topics)
            .await,
        204
    );
    assert_eq!(
        s_ann
            .subscribe(&app.client, &app.url(""), Some(&ann), &topics[..1])
            .await,
        204
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/posts/records/{public}"),
            Some(&ann),
            Some(json!({"n": 9})),
        )
        .await;
    assert_eq!(status, 200);
    let mut names = Vec::new();
    for _ in 0..2 {
        let (name, data) = s_bob.next(SOON).await.expect("two subscriptions match");
        assert_eq!(data["action"], "update");
        if name == topics[0] {
            assert_eq!(
                data["record"],
                json!({"id": public, "n": 9}),
                "users' view rule hides ann from bob: no expand"
            );
        }
        names.push(name);
    }
    names.sort();
    let mut expected = topics.clone();
    expected.sort();
    assert_eq!(names, expected);
    let (_, data) = s_ann.next(SOON).await.expect("ann's filtered subscription");
    assert_eq!(
        data["record"]["expand"]["author"]["email"],
        "ann@example.com"
    );
    assert!(data["record"].get("title").is_none(), "fields apply");
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/posts/records/{public}"),
            Some(&ann),
            Some(json!({"n": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let (name, _) = s_bob
        .next(SOON)
        .await
        .expect("the single-record subscription");
    assert_eq!(name, topics[1]);
    assert!(s_bob.next(QUIET).await.is_none(), "n > 5 no longer holds");

    // Each event carries the record as that change left it, even when a later change
    // committed before delivery (both writes of one batch commit together).
    while s_admin.next(QUIET).await.is_some() {} // the updates above
    let (status, body) = app
        .call(
            Method::POST,
            "/api/batch",
            Some(&ann),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/posts/records",
                 "body": {"id": "batchedpost0001", "title": "first", "public": true, "author": ann_id, "n": 7}},
                {"method": "PATCH", "url": "/api/collections/posts/records/batchedpost0001",
                 "body": {"title": "second", "n": 8}},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, data) = s_admin.next(SOON).await.expect("both batched changes");
        seen.push((data["action"].clone(), data["record"]["title"].clone()));
    }
    assert_eq!(
        seen,
        [
            (json!("create"), json!("first")),
            (json!("update"), json!("second"))
        ]
    );
    for _ in 0..2 {
        let (_, data) = s_ann.next(SOON).await.expect("ann's n > 5 subscription");
        assert!(data["record"]["n"] == 7 || data["record"]["n"] == 8);
    }
    while s_bob.next(QUIET).await.is_some() {}

    // Access is judged as each change was made, too: a draft that a later change of
    // the same commit makes public never reaches anyone as a draft, and a record
    // created and deleted before delivery still reaches those who could see it.
    while s_anon.next(QUIET).await.is_some() {}
    while s_ann.next(QUIET).await.is_some() {}
    let (status, body) = app
        .call(
            Method::POST,
            "/api/batch",
            Some(&ann),
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/posts/records",
                 "body": {"id": "turnspublic0001", "title": "draft", "public": false, "author": ann_id}},
                {"method": "PATCH", "url": "/api/collections/posts/records/turnspublic0001",
                 "body": {"title": "out", "public": true}},
                {"method": "POST", "url": "/api/collections/posts/records",
                 "body": {"id": "shortlived00001", "title": "brief", "public": false, "author": ann_id, "n": 6}},
                {"method": "DELETE", "url": "/api/collections/posts/records/shortlived00001"},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, data) = s_anon.next(SOON).await.expect("the post once public");
    assert_eq!(
        (&data["action"], &data["record"]["title"]),
        (&json!("update"), &json!("out"))
    );
    assert!(
        s_anon.next(QUIET).await.is_none(),
        "the draft was private when it was made"
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, data) = s_ann
            .next(SOON)
            .await
            .expect("the short-lived post's events");
        seen.push((data["action"].clone(), data["record"]["id"].clone()));
    }
    assert_eq!(
        seen,
        [
            (json!("create"), json!("shortlived00001")),
            (json!("delete"), json!("shortlived00001"))
        ]
    );
    while s_admin.next(QUIET).await.is_some() {}

    // A password change rotates ann's token key: her stream is closed.
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/collections/users/records/{ann_id}"),
            Some(&ann),
            Some(json!({"password": "ann-new-password", "passwordConfirm": "ann-new-password", "oldPassword": "ann-password"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(s_ann.closed(SOON).await, "ann is disconnected");
    assert!(!s_bob.closed(QUIET).await, "bob is not");
}

/// A view rule may name a hidden field: creates, updates and deletes are all judged
/// with its value, and only superusers see it.
async fn rules_on_hidden_fields_hold_for_every_action(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "drafts", "listRule": "code = 'open'", "viewRule": "code = 'open'",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "code", "type": "text", "hidden": true},
                ],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let topics = vec!["drafts/*".to_owned()];
    let mut anon = Stream::open(&app.client, &app.url("")).await;
    let mut root = Stream::open(&app.client, &app.url("")).await;
    assert_eq!(
        anon.subscribe(&app.client, &app.url(""), None, &topics)
            .await,
        204
    );
    assert_eq!(
        root.subscribe(&app.client, &app.url(""), Some(&admin), &topics)
            .await,
        204
    );
    let mut ids = Vec::new();
    for code in ["open", "closed"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/drafts/records",
                Some(&admin),
                Some(json!({"title": code, "code": code})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
        let (_, data) = root.next(SOON).await.expect("the superuser sees all");
        assert_eq!(data["record"]["code"], code, "with the hidden value");
    }
    let (_, data) = anon.next(SOON).await.expect("the open draft");
    assert_eq!(data["record"]["title"], "open");
    assert!(
        data["record"].get("code").is_none(),
        "hidden from anyone else"
    );
    assert!(anon.next(QUIET).await.is_none(), "not the closed one");
    for id in &ids {
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/api/collections/drafts/records/{id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
    let (_, data) = anon.next(SOON).await.expect("the open draft's delete");
    assert_eq!(
        (data["action"].as_str(), data["record"]["id"].as_str()),
        (Some("delete"), ids.first().map(String::as_str))
    );
    assert!(data["record"].get("code").is_none());
    assert!(anon.next(QUIET).await.is_none(), "not the closed one's");
    for _ in 0..2 {
        let (_, data) = root.next(SOON).await.expect("both deletes");
        assert_eq!(data["action"], "delete");
    }
}

async fn realtime_limits_hold(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("realtime_max_subscriptions", "2")
        .setting("realtime_max_connections_per_ip", "2")
        .setting("realtime_keepalive", "1s")
        .setting("realtime_idle_timeout", "2s")
        .spawn()
        .await;
    let mut first = Stream::open(&app.client, &app.url("")).await;
    let second = Stream::open(&app.client, &app.url("")).await;
    let third = app
        .client
        .get(app.url("/api/realtime"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429, "two connections per address");
    let three = vec!["a/*".to_owned(), "b/*".to_owned(), "c/*".to_owned()];
    assert_eq!(
        second
            .subscribe(&app.client, &app.url(""), None, &three)
            .await,
        400
    );
    assert_eq!(
        second
            .subscribe(&app.client, &app.url(""), None, &three[..2])
            .await,
        204
    );
    assert_eq!(
        second
            .subscribe(&app.client, &app.url(""), None, &["/bad".to_owned()])
            .await,
        400
    );
    // Keep-alive comments flow; a client without subscriptions is dropped when idle.
    let started = std::time::Instant::now();
    let mut saw_comment = false;
    while started.elapsed() < Duration::from_millis(1800) {
        if let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(Duration::from_millis(1500), first.response.chunk()).await
        {
            saw_comment |= String::from_utf8_lossy(&bytes).contains(":keep-alive");
        }
    }
    assert!(saw_comment, "a keep-alive within a second or so");
    assert!(
        first.closed(Duration::from_secs(10)).await,
        "idle without subscriptions"
    );
    // The freed slot can be used again.
    let _again = Stream::open(&app.client, &app.url("")).await;
}

/// Issue #12 point 5: realtime never waits for the broker. With RabbitMQ configured
/// but unreachable, subscribers still hear each change as soon as it commits, while
/// the events wait in the outbox for the broker.
async fn realtime_does_not_wait_for_the_broker(backend: Backend) {
    let app = TestApp::builder(backend)
        // Nothing listens on port 1: every publish attempt fails.
        .setting("amqp_url", "amqp://guest:guest@127.0.0.1:1/%2f")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "posts", "listRule": "", "viewRule": "", "createRule": "",
               "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    let mut stream = Stream::open(&app.client, &app.url("")).await;
    assert_eq!(
        stream
            .subscribe(&app.client, &app.url(""), None, &["posts".to_owned()])
            .await,
        204
    );
    for title in ["one", "two", "three"] {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": title})),
            )
            .await;
        assert_eq!(status, 200);
        let (name, data) = stream
            .next(SOON)
            .await
            .expect("an event while the broker is away");
        assert_eq!(name, "posts");
        assert_eq!(data["action"], "create");
        assert_eq!(data["record"]["title"], title);
    }
    assert!(
        app.state.events.backlog().await >= 3,
        "the events still wait for the broker"
    );
}

/// Issue #12 point 1: a realtime subscription's filter on an auth collection's email
/// matches only emails the subscriber may see, like a list filter.
async fn realtime_filters_cannot_probe_hidden_emails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"listRule": "", "viewRule": ""})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let bob_path = format!(
        "/api/collections/users/records/{}",
        bob["id"].as_str().unwrap()
    );
    let ann_path = format!(
        "/api/collections/users/records/{}",
        ann["id"].as_str().unwrap()
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &bob_path,
            Some(&admin),
            Some(json!({"emailVisibility": true})),
        )
        .await;
    assert_eq!(status, 200);
    let mut hidden = Stream::open(&app.client, &app.url("")).await;
    let topic = |email: &str| {
        format!(
            "users/*{}",
            options(json!({"filter": format!("email = '{email}'")}))
        )
    };
    assert_eq!(
        hidden
            .subscribe(&app.client, &app.url(""), None, &[topic("ann@example.com")])
            .await,
        204
    );
    let mut visible = Stream::open(&app.client, &app.url("")).await;
    assert_eq!(
        visible
            .subscribe(&app.client, &app.url(""), None, &[topic("bob@example.com")])
            .await,
        204
    );
    for path in [&ann_path, &bob_path] {
        let (status, _) = app
            .call(
                Method::PATCH,
                path,
                Some(&admin),
                Some(json!({"name": "changed"})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (name, data) = visible.next(SOON).await.expect("bob's change");
    assert!(name.starts_with("users/*"), "{name}");
    assert_eq!(data["record"]["id"], bob["id"]);
    assert!(
        hidden.next(QUIET).await.is_none(),
        "a filter on a hidden email matched"
    );
}
