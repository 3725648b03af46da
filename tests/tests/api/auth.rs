//! Password sign-in for every auth collection, and what a token is worth.

use std::time::{Duration, Instant};

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    the_auth_rule_decides_who_may_sign_in,
    every_auth_collection_signs_in_with_password,
    wrong_password_and_unknown_identity_look_the_same,
    tokens_that_are_not_valid_get_401,
    a_password_change_revokes_earlier_tokens,
);

async fn sign_in(app: &TestApp, collection: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::POST,
        &format!("/api/collections/{collection}/auth-with-password"),
        None,
        Some(body),
    )
    .await
}

async fn every_auth_collection_signs_in_with_password(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "members", "type": "auth"})),
        )
        .await;
    assert_eq!(status, 200);
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    app.create_auth_record("members", "bob@example.com", "bob-password")
        .await;

    for (collection, identity, password) in [
        ("_superusers", "admin@basalt.test", "admin-password-1"),
        ("users", "ANN@example.com", "ann-password"),
        ("members", "bob@example.com", "bob-password"),
    ] {
        let (status, body) = sign_in(
            &app,
            collection,
            json!({"identity": identity, "password": password}),
        )
        .await;
        assert_eq!(status, 200, "{collection}: {body}");
        let token = body["token"].as_str().unwrap();
        assert_eq!(token.split('.').count(), 3, "a JWT");
        let record = &body["record"];
        assert_eq!(record["collectionName"], collection);
        assert_eq!(
            record["email"],
            identity.to_lowercase(),
            "the owner sees their email"
        );
        for secret in ["password", "tokenKey"] {
            assert!(
                record.get(secret).is_none(),
                "{secret} never returned: {record}"
            );
        }
        assert!(!body.to_string().contains("$argon2"), "no hash anywhere");
    }
    // Not an auth collection, or no collection at all.
    let (status, _) = sign_in(&app, "nope", json!({"identity": "a", "password": "b"})).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "posts"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(&app, "posts", json!({"identity": "a", "password": "b"})).await;
    assert_eq!(status, 400);
}

async fn wrong_password_and_unknown_identity_look_the_same(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let wrong = sign_in(
            &app,
            "users",
            json!({"identity": "ann@example.com", "password": "nope-nope"}),
        )
        .await;
        wrong_times.push(started.elapsed());
        let started = Instant::now();
        let unknown = sign_in(
            &app,
            "users",
            json!({"identity": "who@example.com", "password": "nope-nope"}),
        )
        .await;
        unknown_times.push(started.elapsed());
        bodies.push((wrong, unknown));
    }
    for ((ws, wb), (us, ub)) in &bodies {
        assert_eq!(*ws, 400);
        assert_eq!((ws, wb), (us, ub), "same status and body");
        assert_eq!(wb["message"], "Failed to authenticate.");
    }
    wrong_times.sort();
    unknown_times.sort();
    let (wrong, unknown) = (wrong_times[2], unknown_times[2]);
    // Both pay for one argon2 verification: an unknown identity must not answer in a
    // fraction of the time (that would tell an attacker the account does not exist).
    assert!(
        unknown.as_secs_f64() > wrong.as_secs_f64() * 0.4,
        "unknown {unknown:?} vs wrong password {wrong:?}"
    );
    assert!(wrong < Duration::from_secs(5));
}

async fn tokens_that_are_not_valid_get_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let user = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;

    let snapshot = app.state.schema.snapshot();
    let users = snapshot.get("users").unwrap().clone();
    let expired = app
        .state
        .auth
        .issue_token(&users, ann.as_object().unwrap(), -10)
        .unwrap();
    let parts: Vec<&str> = admin.split('.').collect();
    let claims: Value = serde_json::from_slice(&base64_url_decode(parts[1])).unwrap();
    assert_eq!(claims["type"], "auth");
    let encode = |v: &Value| base64_url_encode(v.to_string().as_bytes());
    let mut other_type = claims.clone();
    other_type["type"] = json!("verification");
    let mut other_collection = claims.clone();
    other_collection["collectionId"] = json!(users.id);
    let alg_none = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let cases = [
        ("garbage", "not-a-token".to_owned()),
        (
            "forged signature",
            format!("{}.{}.{}", parts[0], parts[1], "A".repeat(43)),
        ),
        ("alg none", alg_none),
        (
            "other type",
            format!("{}.{}.{}", parts[0], encode(&other_type), parts[2]),
        ),
        (
            "other collection",
            format!("{}.{}.{}", parts[0], encode(&other_collection), parts[2]),
        ),
        ("expired", expired),
    ];
    for (what, token) in cases {
        let (status, body) = app
            .call(Method::GET, "/api/collections", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["status"], 401, "{what}");
        assert!(body["data"].is_object());
    }
    // A user token is a valid identity, just not a superuser.
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&user), None)
        .await;
    assert_eq!(status, 403);
}

async fn a_password_change_revokes_earlier_tokens(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.superuser_token().await;
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&first), None)
        .await;
    assert_eq!(status, 200);
    // Upserting the same superuser again sets the password and rotates the token key.
    let second = app.superuser_token().await;
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&first), None)
        .await;
    assert_eq!(status, 401, "the old token is revoked at once");
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&second), None)
        .await;
    assert_eq!(status, 200);
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    let values: Vec<u32> = text
        .bytes()
        .map(|c| B64.iter().position(|&b| b == c).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in values.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    out
}

async fn the_auth_rule_decides_who_may_sign_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let ann = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    app.create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"authRule": "verified = true"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!(
        "/api/collections/users/records/{}",
        ann["id"].as_str().unwrap()
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"verified": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(
        &app,
        "users",
        json!({"identity": "ann@example.com", "password": "ann-password"}),
    )
    .await;
    assert_eq!(status, 200, "verified ann may sign in");
    let (status, refused) = sign_in(
        &app,
        "users",
        json!({"identity": "bob@example.com", "password": "bob-password"}),
    )
    .await;
    assert_eq!(status, 400, "unverified bob may not");
    let (_, wrong) = sign_in(
        &app,
        "users",
        json!({"identity": "bob@example.com", "password": "nope-nope"}),
    )
    .await;
    assert_eq!(refused, wrong, "indistinguishable from a wrong password");
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"authRule": null})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = sign_in(
        &app,
        "users",
        json!({"identity": "ann@example.com", "password": "ann-password"}),
    )
    .await;
    assert_eq!(status, 400, "a null authRule turns sign-in off");
}
