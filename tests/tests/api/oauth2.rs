//! OAuth2 sign-in (authorization code + PKCE) against a provider running on loopback
//! inside the test: a real HTTP server that issues codes, checks the PKCE verifier and
//! the client secret, and serves OpenID Connect user info.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

backend_tests!(
    oauth2_signs_in_links_and_creates_safely,
    oauth2_sign_up_is_a_create_with_its_link
);

/// The provider's users, by login name: (subject, email, email verified).
const USERS: [(&str, &str, &str, bool); 4] = [
    ("newbie", "sub-1", "New@Example.com", true),
    ("unverified", "sub-2", "nobody@example.com", false),
    ("squatter", "sub-3", "ann@example.com", true),
    ("owner", "sub-4", "bob@example.com", true),
];

#[derive(Default)]
struct Provider {
    /// code → (PKCE challenge, login, redirect URI)
    codes: HashMap<String, (String, String, String)>,
    /// access token → login
    tokens: HashMap<String, String>,
    next: u64,
}

type Shared = Arc<Mutex<Provider>>;

async fn authorize(
    state: web::Data<Shared>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let mut p = state.lock().unwrap();
    p.next += 1;
    let code = format!("code-{}", p.next);
    let q = &query;
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "basalt-client");
    p.codes.insert(
        code.clone(),
        (
            q["code_challenge"].clone(),
            q["login"].clone(),
            q["redirect_uri"].clone(),
        ),
    );
    let location = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    HttpResponse::Found()
        .insert_header(("location", location))
        .finish()
}

async fn token(state: web::Data<Shared>, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let mut p = state.lock().unwrap();
    let f = &form;
    let refuse =
        |why: &str| HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "why": why}));
    if f.get("client_secret").map(String::as_str) != Some("s3cret") {
        return refuse("client secret");
    }
    let Some((challenge, login, redirect)) = p.codes.remove(&f["code"]) else {
        return refuse("unknown or used code");
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    use base64::Engine;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return refuse("PKCE verifier");
    }
    if f["redirect_uri"] != redirect {
        return refuse("redirect URI");
    }
    p.next += 1;
    let access = format!("access-{}", p.next);
    p.tokens.insert(access.clone(), login);
    HttpResponse::Ok().json(json!({"access_token": access, "token_type": "Bearer"}))
}

async fn userinfo(state: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let p = state.lock().unwrap();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(login) = p.tokens.get(bearer) else {
        return HttpResponse::Unauthorized().finish();
    };
    let (name, sub, email, verified) = USERS.iter().find(|u| u.0 == login).unwrap();
    HttpResponse::Ok().json(json!({
        "sub": sub, "email": email, "email_verified": verified, "name": name.to_uppercase(),
        "preferred_username": name,
    }))
}

/// Start the provider; its base URL.
fn start_provider() -> String {
    let state: Shared = Arc::default();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token))
            .route("/userinfo", web::get().to(userinfo))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{addr}")
}

/// What a browser would do: follow `authURL` for `login`, return the code.
async fn authorize_as(methods: &Value, login: &str, redirect: &str) -> (String, String) {
    let provider = &methods["oauth2"]["providers"][0];
    let url = format!(
        "{}{}&login={login}",
        provider["authURL"].as_str().unwrap(),
        urlencode(redirect)
    );
    basalt_server::install_crypto_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let location = url::Url::parse(&location).unwrap();
    let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(
        pairs["state"],
        provider["state"].as_str().unwrap(),
        "state round-trips"
    );
    (
        pairs["code"].clone(),
        provider["codeVerifier"].as_str().unwrap().to_owned(),
    )
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn oauth2_signs_in_links_and_creates_safely(backend: Backend) {
    let provider = start_provider();
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({"name": "members", "type": "auth"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"oauth2": {"enabled": true, "providers": [{
                "name": "oidc", "displayName": "Test IdP",
                "clientId": "basalt-client", "clientSecret": "s3cret",
                "authURL": format!("{provider}/authorize"),
                "tokenURL": format!("{provider}/token"),
                "userInfoURL": format!("{provider}/userinfo"),
            }]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Presets fill in their URLs; a custom provider without them is refused.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/users",
            Some(&admin),
            Some(json!({"oauth2": {"enabled": true, "providers": [{"name": "custom", "clientId": "x"}]}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["data"]["oauth2.providers.0.authURL"].is_object(),
        "{body}"
    );

    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/members",
            Some(&admin),
            Some(json!({"oauth2": {"enabled": true, "providers": [
                {"name": "github", "clientId": "gh", "clientSecret": "x"},
                {"name": "google", "clientId": "gg", "clientSecret": "y"},
            ]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, methods) = app.get_json("/api/collections/members/auth-methods").await;
    let providers = methods["oauth2"]["providers"].as_array().unwrap();
    let url = |i: usize| providers[i]["authURL"].as_str().unwrap().to_owned();
    assert!(
        url(0).starts_with("https://github.com/login/oauth/authorize?client_id=gh"),
        "{}",
        url(0)
    );
    assert!(
        url(1).starts_with("https://accounts.google.com/o/oauth2/v2/auth?client_id=gg"),
        "{}",
        url(1)
    );
    assert_eq!(providers[0]["displayName"], "GitHub");
    assert!(
        url(1).contains("code_challenge_method=S256")
            && url(1).contains("scope=openid+email+profile")
    );

    // ann signed up with a password and never verified; bob is verified.
    app.create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let bob = app
        .create_auth_record("users", "bob@example.com", "bob-password")
        .await;
    let mut verified = serde_json::Map::new();
    verified.insert("verified".into(), json!(true));
    app.state
        .records
        .update_system("users", bob["id"].as_str().unwrap(), verified)
        .await
        .unwrap();

    let redirect = "http://app.example/callback";
    let sign_in = |login: &'static str, create_data: Value, tamper: bool| {
        let app = &app;
        async move {
            let (status, methods) = app.get_json("/api/collections/users/auth-methods").await;
            assert_eq!(status, 200);
            assert_eq!(methods["oauth2"]["enabled"], true, "{methods}");
            let (code, mut verifier) = authorize_as(&methods, login, redirect).await;
            if tamper {
                verifier.push('x');
            }
            app.call(
                Method::POST,
                "/api/collections/users/auth-with-oauth2",
                None,
                Some(json!({
                    "provider": "oidc", "code": code, "codeVerifier": verifier,
                    "redirectURL": redirect, "createData": create_data,
                })),
            )
            .await
        }
    };

    // A new user: created verified with the provider's email, whatever createData says.
    let (status, first) = sign_in(
        "newbie",
        json!({"name": "Newbie", "email": "evil@example.com", "verified": false}),
        false,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["record"]["email"], "new@example.com");
    assert_eq!(first["record"]["verified"], true);
    assert_eq!(first["record"]["name"], "Newbie");
    assert_eq!(first["meta"]["isNew"], true);
    assert_eq!(first["meta"]["id"], "sub-1");
    let (status, me) = app
        .call(
            Method::POST,
            "/api/collections/users/auth-refresh",
            first["token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, 200, "the token works: {me}");
    // The same provider identity signs in to the same record.
    let (status, again) = sign_in("newbie", json!({}), false).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["record"]["id"], first["record"]["id"]);
    assert_eq!(again["meta"]["isNew"], false);

    // A wrong PKCE verifier is refused by the provider, and so by Basalt.
    let (status, body) = sign_in("newbie", json!({}), true).await;
    assert_eq!(status, 400, "{body}");

    // No verified email: no new account.
    let (status, body) = sign_in("unverified", json!({}), false).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("verified email"),
        "{body}"
    );

    // A verified provider email never takes over an unverified account.
    let (status, body) = sign_in("squatter", json!({}), false).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = sign_in("squatter", json!({}), false).await;
    assert_eq!(status, 400, "still not linked");
    // ann still signs in with her password, and her account was not linked.
    assert!(
        !app.sign_in("users", "ann@example.com", "ann-password")
            .await
            .is_empty()
    );

    // ...but links to a verified one.
    let (status, linked) = sign_in("owner", json!({"name": "ignored?"}), false).await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["record"]["id"], bob["id"]);
    assert_eq!(linked["meta"]["isNew"], false);

    // Unknown or disabled providers.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/users/auth-with-oauth2",
            None,
            Some(json!({"provider": "github", "code": "x", "codeVerifier": "y", "redirectURL": redirect})),
        )
        .await;
    assert_eq!(status, 400);
}

/// An OAuth2 sign-up is a create like any other — create rule (with
/// `@request.context = "oauth2"`), required fields, rollback — and its external link
/// is written in the same write: never an account without its link, never a link
/// without its account. A deleted account takes its links with it.
async fn oauth2_sign_up_is_a_create_with_its_link(backend: Backend) {
    let provider = start_provider();
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "members", "type": "auth", "listRule": "", "viewRule": "",
                "fields": [{"name": "nickname", "type": "text", "required": true}],
                "oauth2": {"enabled": true, "providers": [{
                    "name": "oidc", "clientId": "basalt-client", "clientSecret": "s3cret",
                    "authURL": format!("{provider}/authorize"),
                    "tokenURL": format!("{provider}/token"),
                    "userInfoURL": format!("{provider}/userinfo"),
                }]},
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let redirect = "http://app.example/callback";
    let sign_up = |create_data: Value| {
        let app = &app;
        async move {
            let (_, methods) = app.get_json("/api/collections/members/auth-methods").await;
            let (code, verifier) = authorize_as(&methods, "newbie", redirect).await;
            app.call(
                Method::POST,
                "/api/collections/members/auth-with-oauth2",
                None,
                Some(json!({
                    "provider": "oidc", "code": code, "codeVerifier": verifier,
                    "redirectURL": redirect, "createData": create_data,
                })),
            )
            .await
        }
    };
    let nothing_written = |why: &'static str| {
        let app = &app;
        async move {
            assert_eq!(app.count_rows("members").await, 0, "{why}: no account");
            assert_eq!(app.count_rows("_external_auths").await, 0, "{why}: no link");
        }
    };

    // The create rule is locked (superusers only): no sign-up.
    let (status, body) = sign_up(json!({"nickname": "nb"})).await;
    assert_eq!(status, 403, "{body}");
    nothing_written("locked create rule").await;

    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/members",
            Some(&admin),
            Some(json!({"createRule": "@request.context = 'oauth2' && nickname != 'root'"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A required field createData does not fill: the field's own error.
    let (status, body) = sign_up(json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["data"]["nickname"]["code"], "validation_required",
        "{body}"
    );
    nothing_written("required field missing").await;
    // The create rule, evaluated on the inserted row, fails: all rolled back.
    let (status, body) = sign_up(json!({"nickname": "root"})).await;
    assert_eq!(status, 400, "{body}");
    nothing_written("create rule refused").await;
    // Outside OAuth2 the same rule refuses a plain sign-up.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/members/records",
            None,
            Some(
                json!({"email": "plain@example.com", "password": "plain-password",
                        "passwordConfirm": "plain-password", "nickname": "plain"}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, first) = sign_up(json!({"nickname": "nb"})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["meta"]["isNew"], true);
    assert_eq!(first["record"]["verified"], true);
    assert_eq!(first["record"]["nickname"], "nb");
    assert_eq!(app.count_rows("members").await, 1);
    assert_eq!(app.count_rows("_external_auths").await, 1);

    // Deleting the account deletes its link; the same identity then signs up anew.
    let id = first["record"]["id"].as_str().unwrap();
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/collections/members/records/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    nothing_written("account deleted").await;
    let (status, again) = sign_up(json!({"nickname": "nb2"})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["meta"]["isNew"], true);
    assert_ne!(again["record"]["id"], first["record"]["id"]);
    assert_eq!(app.count_rows("_external_auths").await, 1);
}
