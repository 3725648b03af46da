//! App-user auth over HTTP: sign-up rules, refresh, auth-methods, verification,
//! password reset and email change through mails (stored in `_mails`, or sent to a
//! real SMTP listener), impersonation, revoked sessions, one-time tokens, and no
//! account enumeration.

use std::time::{Duration, Instant};

use basalt_server::auth::token::Kind;
use basalt_tests::{Backend, TestApp, backend_tests, eventually};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    sign_up_cannot_set_what_only_flows_may,
    verification_reset_and_email_change_through_mail,
    tokens_are_typed_revocable_and_per_collection,
    failures_do_not_reveal_accounts,
    mails_go_to_the_smtp_server_when_configured,
);

/// The newest stored mail to `to` after `seen` mails, and the token in its link.
async fn mail_token(app: &TestApp, admin: &str, to: &str, seen: u64) -> (Value, String) {
    let mail = eventually(
        Duration::from_secs(10),
        &format!("a mail to {to}"),
        || async {
            let (status, page) = app
                .call(Method::GET, "/api/mails?perPage=100", Some(admin), None)
                .await;
            assert_eq!(status, 200, "{page}");
            if page["totalItems"].as_u64().unwrap() <= seen {
                return None;
            }
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["to"] == to)
                .cloned()
        },
    )
    .await;
    (mail.clone(), token_in(mail["body"].as_str().unwrap()))
}

/// The token at the end of a `/_/#/auth/confirm-…/TOKEN` link.
fn token_in(body: &str) -> String {
    let start = body.find("/_/#/auth/confirm-").expect("a confirm link");
    let rest = &body[start..];
    let link_end = rest.find('"').unwrap_or(rest.len());
    rest[..link_end].rsplit('/').next().unwrap().to_owned()
}

async fn mail_count(app: &TestApp, admin: &str) -> u64 {
    let (_, page) = app.call(Method::GET, "/api/mails", Some(admin), None).await;
    page["totalItems"].as_u64().unwrap()
}

async fn sign_up(app: &TestApp, email: &str, password: &str) -> (u16, Value) {
    app.call(
        Method::POST,
        "/api/collections/users/records",
        None,
        Some(json!({"email": email, "password": password, "passwordConfirm": password})),
    )
    .await
}

async fn password_auth(app: &TestApp, identity: &str, password: &str) -> (u16, Value) {
    app.call(
        Method::POST,
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": identity, "password": password})),
    )
    .await
}

async fn sign_up_cannot_set_what_only_flows_may(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = sign_up(&app, "ann@example.com", "short").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["data"]["password"]["code"], "validation_min_text_constraint",
        "{body}"
    );
    let (status, body) = sign_up(&app, "ann@example.com", &"x".repeat(257)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["data"]["password"].is_object(), "{body}");
    let (status, ann) = sign_up(&app, "ann@example.com", "ann-password").await;
    assert_eq!(status, 200, "{ann}");
    assert_eq!(ann["verified"], false);

    // Taken (in any case) and malformed look the same.
    let (status, taken) = sign_up(&app, "ANN@Example.com", "other-password").await;
    assert_eq!(status, 400);
    let (_, malformed) = sign_up(&app, "ann@", "other-password").await;
    assert_eq!(
        taken["data"]["email"], malformed["data"]["email"],
        "{taken} {malformed}"
    );
    assert_eq!(taken["data"]["email"]["code"], "validation_invalid_email");

    for extra in [json!({"verified": true}), json!({"tokenKey": "mine"})] {
        let mut body = json!({"email": "eve@example.com", "password": "eve-password", "passwordConfirm": "eve-password"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, res) = app
            .call(
                Method::POST,
                "/api/collections/users/records",
                None,
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{extra}: {res}");
    }
    let token = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let id = ann["id"].as_str().unwrap();
    for change in [
        json!({"verified": true}),
        json!({"tokenKey": "mine"}),
        json!({"email": "ann2@example.com"}),
    ] {
        let (status, res) = app
            .call(
                Method::PATCH,
                &format!("/api/collections/users/records/{id}"),
                Some(&token),
                Some(change.clone()),
            )
            .await;
        assert_eq!(status, 400, "{change}: {res}");
    }
    let stored = app
        .state
        .records
        .find_by_id("users", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["verified"], false);
    assert_eq!(stored["email"], "ann@example.com");
    // The password hash is never shown, and setting `password` hashes it.
    assert!(ann.get("password").is_none());
    assert!(stored["password"].as_str().unwrap().starts_with("$argon2"));
}

async fn verification_reset_and_email_change_through_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, ann) = sign_up(&app, "ann@example.com", "ann-password").await;
    assert_eq!(status, 200, "{ann}");
    let id = ann["id"].as_str().unwrap().to_owned();
    let call = |method: Method, action: &str, token: Option<String>, body: Value| {
        let app = &app;
        let path = format!("/api/collections/users/{action}");
        async move { app.call(method, &path, token.as_deref(), Some(body)).await }
    };

    // Mail templates are settings of the collection.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"verificationTemplate": {
                "subject": "Welcome to {APP_NAME}, {RECORD:email}",
                "body": "<a href=\"{APP_URL}/_/#/auth/confirm-verification/{TOKEN}\">go</a>",
            }})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Verification.
    let seen = mail_count(&app, &admin).await;
    let (status, _) = call(
        Method::POST,
        "request-verification",
        None,
        json!({"email": "ANN@example.com"}),
    )
    .await;
    assert_eq!(status, 204);
    let (mail, token) = mail_token(&app, &admin, "ann@example.com", seen).await;
    assert_eq!(mail["kind"], "verification");
    assert_eq!(mail["subject"], "Welcome to Basalt, ann@example.com");
    let (status, body) = call(
        Method::POST,
        "confirm-verification",
        None,
        json!({"token": token}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let stored = app
        .state
        .records
        .find_by_id("users", &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["verified"], true);
    let (status, body) = call(
        Method::POST,
        "confirm-verification",
        None,
        json!({"token": token}),
    )
    .await;
    assert_eq!(status, 400, "a second use: {body}");
    assert_eq!(body["data"]["token"]["code"], "validation_invalid_token");
    // A verified account gets no more verification mails.
    let seen = mail_count(&app, &admin).await;
    let (status, _) = call(
        Method::POST,
        "request-verification",
        None,
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 204);

    // Password reset: the old password and every earlier session stop working.
    let session = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    let (status, _) = call(
        Method::POST,
        "request-password-reset",
        None,
        json!({"email": "ann@example.com"}),
    )
    .await;
    assert_eq!(status, 204);
    let (mail, token) = mail_token(&app, &admin, "ann@example.com", seen).await;
    assert_eq!(
        mail["kind"], "passwordReset",
        "no verification mail was sent"
    );
    let (status, body) = call(
        Method::POST,
        "confirm-password-reset",
        None,
        json!({"token": token, "password": "new-password", "passwordConfirm": "other"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["data"]["passwordConfirm"].is_object(), "{body}");
    let (status, body) = call(
        Method::POST,
        "confirm-password-reset",
        None,
        json!({"token": token, "password": "new-password", "passwordConfirm": "new-password"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(
        Method::POST,
        "confirm-password-reset",
        None,
        json!({"token": token, "password": "newer-password", "passwordConfirm": "newer-password"}),
    )
    .await;
    assert_eq!(status, 400, "a reset token works once");
    assert_eq!(
        password_auth(&app, "ann@example.com", "ann-password")
            .await
            .0,
        400
    );
    assert_eq!(
        password_auth(&app, "ann@example.com", "new-password")
            .await
            .0,
        200
    );
    let (status, _) = call(Method::POST, "auth-refresh", Some(session), json!({})).await;
    assert_eq!(status, 401, "sessions from before the reset are over");

    // Email change: asked for while signed in, confirmed with the password.
    let session = app
        .sign_in("users", "ann@example.com", "new-password")
        .await;
    let (status, _) = call(
        Method::POST,
        "request-email-change",
        None,
        json!({"newEmail": "ann@new.example"}),
    )
    .await;
    assert_eq!(status, 401, "needs a signed-in user");
    let (_, bob) = sign_up(&app, "bob@example.com", "bob-password").await;
    let (status, body) = call(
        Method::POST,
        "request-email-change",
        Some(session.clone()),
        json!({"newEmail": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, 400, "taken: {body}");
    let seen = mail_count(&app, &admin).await;
    let (status, body) = call(
        Method::POST,
        "request-email-change",
        Some(session.clone()),
        json!({"newEmail": "Ann@New.example"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (mail, token) = mail_token(&app, &admin, "ann@new.example", seen).await;
    assert_eq!(mail["kind"], "emailChange");
    let (status, body) = call(
        Method::POST,
        "confirm-email-change",
        None,
        json!({"token": token, "password": "wrong-password"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["data"]["password"]["code"],
        "validation_invalid_password"
    );
    let (status, body) = call(
        Method::POST,
        "confirm-email-change",
        None,
        json!({"token": token, "password": "new-password"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(
        Method::POST,
        "confirm-email-change",
        None,
        json!({"token": token, "password": "new-password"}),
    )
    .await;
    assert_eq!(status, 400, "an email-change token works once");
    assert_eq!(
        password_auth(&app, "ann@new.example", "new-password")
            .await
            .0,
        200
    );
    assert_eq!(
        password_auth(&app, "ann@example.com", "new-password")
            .await
            .0,
        400
    );
    let (status, _) = call(Method::POST, "auth-refresh", Some(session), json!({})).await;
    assert_eq!(status, 401);
    assert!(bob.is_object());

    // Expired and forged one-time tokens.
    let collection = app.state.schema.snapshot().get("users").unwrap().clone();
    let record = app
        .state
        .records
        .find_by_id("users", &id)
        .await
        .unwrap()
        .unwrap();
    let expired = app
        .state
        .auth
        .issue(Kind::PasswordReset, &collection, &record, -10, false, None)
        .unwrap();
    let (status, _) = call(
        Method::POST,
        "confirm-password-reset",
        None,
        json!({"token": expired, "password": "x-password", "passwordConfirm": "x-password"}),
    )
    .await;
    assert_eq!(status, 400, "expired");
    let auth_token = app
        .state
        .auth
        .issue_token(&collection, &record, 3600)
        .unwrap();
    let (status, _) = call(
        Method::POST,
        "confirm-password-reset",
        None,
        json!({"token": auth_token, "password": "x-password", "passwordConfirm": "x-password"}),
    )
    .await;
    assert_eq!(status, 400, "an auth token is not a reset token");
    assert_eq!(
        password_auth(&app, "ann@new.example", "new-password")
            .await
            .0,
        200
    );
}

async fn tokens_are_typed_revocable_and_per_collection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (_, ann) = sign_up(&app, "ann@example.com", "ann-password").await;
    let id = ann["id"].as_str().unwrap().to_owned();
    let token = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;

    let (status, refreshed) = app
        .call(
            Method::POST,
            "/api/collections/users/auth-refresh",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["record"]["id"], id.as_str());
    assert_eq!(refreshed["record"]["email"], "ann@example.com");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);

    // Another auth collection's token is refused here, and the other way round.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "members", "type": "auth", "listRule": "", "viewRule": ""})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.create_auth_record("members", "mia@example.com", "mia-password")
        .await;
    let member = app
        .sign_in("members", "mia@example.com", "mia-password")
        .await;
    for (collection, token) in [
        ("users", &member),
        ("members", &token),
        ("_superusers", &token),
    ] {
        let (status, _) = app
            .call(
                Method::POST,
                &format!("/api/collections/{collection}/auth-refresh"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 401, "{collection}");
    }

    // auth-methods, PocketBase's shape.
    let (status, methods) = app.get_json("/api/collections/users/auth-methods").await;
    assert_eq!(status, 200);
    assert_eq!(
        methods["password"],
        json!({"enabled": true, "identityFields": ["email"]})
    );
    assert_eq!(methods["oauth2"]["enabled"], false);

    // Impersonation: superusers only; the token is not refreshable by design.
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/collections/users/impersonate/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, imp) = app
        .call(
            Method::POST,
            &format!("/api/collections/users/impersonate/{id}"),
            Some(&admin),
            Some(json!({"duration": 60})),
        )
        .await;
    assert_eq!(status, 200, "{imp}");
    let claims = basalt_server::auth::token::peek(imp["token"].as_str().unwrap()).unwrap();
    assert!(!claims.refreshable);
    assert!(claims.exp <= jsonwebtoken_now() + 61);
    let (status, me) = app
        .call(
            Method::GET,
            &format!("/api/collections/users/records/{id}"),
            imp["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200, "{me}");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/users/impersonate/nobody",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Revoking sessions ends every token at once, impersonated ones too. Only the
    // record itself and superusers may (the owner's own case is in security.rs).
    sign_up(&app, "bob@example.com", "bob-password").await;
    let bob = app
        .sign_in("users", "bob@example.com", "bob-password")
        .await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/collections/users/records/{id}/revoke-sessions"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/collections/users/records/{id}/revoke-sessions"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    for token in [
        refreshed["token"].as_str().unwrap(),
        imp["token"].as_str().unwrap(),
        &token,
    ] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/api/collections/users/records/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        password_auth(&app, "ann@example.com", "ann-password")
            .await
            .0,
        200
    );
}

fn jsonwebtoken_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn failures_do_not_reveal_accounts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    sign_up(&app, "ann@example.com", "ann-password").await;

    // Unknown identity and wrong password: same status, same body, similar time.
    let mut timings = [Duration::ZERO; 2];
    let mut answers = Vec::new();
    for _ in 0..3 {
        for (i, identity) in ["nobody@example.com", "ann@example.com"].iter().enumerate() {
            let started = Instant::now();
            answers.push(password_auth(&app, identity, "wrong-password").await);
            timings[i] += started.elapsed();
        }
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 400);
    let (unknown, wrong) = (timings[0], timings[1]);
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "unknown {unknown:?} vs wrong password {wrong:?}: the argon2 work must be the same"
    );

    // The request-* endpoints answer alike for accounts that exist and not.
    for action in ["request-verification", "request-password-reset"] {
        let mut answers = Vec::new();
        for email in ["nobody@example.com", "ann@example.com"] {
            let res = app
                .client
                .post(app.url(&format!("/api/collections/users/{action}")))
                .json(&json!({"email": email}))
                .send()
                .await
                .unwrap();
            answers.push((res.status().as_u16(), res.text().await.unwrap()));
        }
        assert_eq!(answers[0], answers[1], "{action}");
        assert_eq!(answers[0].0, 204);
    }
    // ...and only the real account gets mail.
    let mails = eventually(Duration::from_secs(10), "two mails", || async {
        let (_, page) = app
            .call(Method::GET, "/api/mails", Some(&admin), None)
            .await;
        (page["totalItems"] == 2).then_some(page)
    })
    .await;
    assert!(
        mails["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["to"] == "ann@example.com")
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/users/request-password-reset",
            None,
            Some(json!({"email": "not-an-email"})),
        )
        .await;
    assert_eq!(status, 400);
    // Absurd pages are empty, not a crash (found by schemathesis).
    let (status, page) = app
        .call(
            Method::GET,
            "/api/mails?page=307445734561825862&perPage=1000",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"], json!([]));
    // Mails are for superusers.
    let ann = app
        .sign_in("users", "ann@example.com", "ann-password")
        .await;
    assert_eq!(
        app.call(Method::GET, "/api/mails", Some(&ann), None)
            .await
            .0,
        403
    );
    assert_eq!(app.call(Method::GET, "/api/mails", None, None).await.0, 401);
}

/// A minimal SMTP server on loopback that accepts every mail and hands over its data.
async fn smtp_listener() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(buffer) = data.as_mut() {
                        if line == "." {
                            tx.send(data.take().unwrap()).unwrap();
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            buffer.push_str(&line);
                            buffer.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-test\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

async fn mails_go_to_the_smtp_server_when_configured(backend: Backend) {
    let (port, mut received) = smtp_listener().await;
    let app = TestApp::builder(backend)
        .setting("smtp_url", format!("smtp+plain://127.0.0.1:{port}"))
        .setting("mail_from", "App <app@example.com>")
        .setting("app_url", "https://app.example.com")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    sign_up(&app, "ann@example.com", "ann-password").await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/users/request-password-reset",
            None,
            Some(json!({"email": "ann@example.com"})),
        )
        .await;
    assert_eq!(status, 204);
    let mail = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("a mail within 10 s")
        .unwrap();
    assert!(mail.contains("To: ann@example.com"), "{mail}");
    assert!(mail.contains("From: App <app@example.com>"), "{mail}");
    let unfolded = mail.replace("=\n", "").replace("=3D", "=");
    assert!(
        unfolded.contains("https://app.example.com/_/#/auth/confirm-password-reset/"),
        "{mail}"
    );
    // Sent, not stored.
    assert_eq!(mail_count(&app, &admin).await, 0);
}
