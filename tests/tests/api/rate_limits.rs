//! Rate limits: password attempts per identity and address, requests to the auth
//! endpoints per address, an optional limit on everything per address, 429 with
//! `Retry-After`, and `X-Forwarded-For` believed only from trusted proxies.

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::json;

backend_tests!(
    password_attempts_are_limited_per_identity,
    auth_endpoints_and_everything_are_limited_per_address,
);

async fn attempt(app: &TestApp, identity: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/collections/users/auth-with-password"))
        .json(&json!({"identity": identity, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn password_attempts_are_limited_per_identity(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("rate_limit_auth", "3/1m")
        .spawn()
        .await;
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    for _ in 0..3 {
        assert_eq!(
            attempt(&app, "ann@example.com", "guess").await.status(),
            400
        );
    }
    // The fourth guess is refused before the password is even checked, right or not.
    let res = attempt(&app, "ANN@example.com", "ann-password").await;
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], 429);
    // Another identity from the same address is not held back.
    assert_eq!(
        attempt(&app, "bob@example.com", "guess").await.status(),
        400
    );

    // The default allows ten a minute.
    let app = TestApp::spawn(backend).await;
    for _ in 0..10 {
        assert_eq!(
            attempt(&app, "eve@example.com", "guess").await.status(),
            400
        );
    }
    assert_eq!(
        attempt(&app, "eve@example.com", "guess").await.status(),
        429
    );
}

async fn auth_endpoints_and_everything_are_limited_per_address(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("rate_limit_auth_ip", "4/1m")
        .spawn()
        .await;
    // Everything else is unlimited by default.
    for _ in 0..50 {
        assert_eq!(app.get("/api/health").await.status(), 200);
    }
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/users/request-password-reset",
                None,
                Some(json!({"email": format!("u{i}@example.com")})),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [204, 204, 204, 204, 429]);
    let (status, _) = app
        .call(
            Method::GET,
            "/api/collections/users/auth-methods",
            None,
            None,
        )
        .await;
    assert_eq!(
        status, 429,
        "every auth endpoint shares the per-address count"
    );
    let (status, _) = app.get_json("/api/collections/users/records").await;
    assert_ne!(status, 429, "record endpoints are not auth endpoints");

    // A general limit; X-Forwarded-For is believed only from a trusted proxy.
    let get = |app: &TestApp, forwarded: &'static str| {
        let request = app
            .client
            .get(app.url("/api/health"))
            .header("x-forwarded-for", forwarded);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let app = TestApp::builder(backend)
        .setting("rate_limit", "2/1m")
        .spawn()
        .await;
    let statuses = [
        get(&app, "1.1.1.1").await,
        get(&app, "2.2.2.2").await,
        get(&app, "3.3.3.3").await,
    ];
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the header is ignored: all one client"
    );

    let app = TestApp::builder(backend)
        .setting("rate_limit", "2/1m")
        .setting("trusted_proxies", "127.0.0.1, ::1")
        .spawn()
        .await;
    let statuses = [
        get(&app, "1.1.1.1").await,
        get(&app, "1.1.1.1").await,
        get(&app, "1.1.1.1").await,
        get(&app, "9.9.9.9, 2.2.2.2").await,
    ];
    assert_eq!(
        statuses,
        [200, 200, 429, 200],
        "one count per forwarded client"
    );
}
