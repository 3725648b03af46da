//! The admin UI at `/_/` as a browser without JavaScript uses it: plain forms, cookies,
//! redirects. First-run setup, sessions (cookie flags, idle and absolute expiry,
//! revocation, CSRF), security headers, escaping, and the collections and records
//! pages over the same services as the API.

use std::collections::HashMap;

use basalt_tests::{Backend, TestApp, backend_tests};
use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

backend_tests!(
    first_run_setup_creates_the_superuser_once,
    sessions_are_httponly_strict_and_end,
    pages_are_locked_down_and_escape_what_users_stored,
    collections_and_records_through_the_forms,
    keys_history_import_and_mails,
    settings_apply_without_a_restart,
    functions_are_deployed_toggled_and_logged,
    function_triggers_schedules_and_dead_letters_are_shown
);

/// A cookie-keeping client that does not follow redirects.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf input in:\n{}", self.body))
            + "name=\"csrf\" value=\"".len();
        self.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.client.request(method, self.app.url(path));
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", header.join("; "));
        }
        if let Some(form) = form {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for cookie in headers.get_all(SET_COOKIE).iter() {
            let cookie = cookie.to_str().unwrap();
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    /// Post a `multipart/form-data` form (text fields and one file).
    async fn upload(&mut self, path: &str, fields: &[(&str, &str)], file: (&str, Vec<u8>)) -> Page {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        form = form.part(
            file.0.to_owned(),
            reqwest::multipart::Part::bytes(file.1).file_name("component.wasm"),
        );
        let header: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = self
            .client
            .post(self.app.url(path))
            .header("cookie", header.join("; "))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Post `form` with the CSRF token of the form page at `page`.
    async fn submit(&mut self, page: &str, action: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.get(page).await.csrf();
        let mut with: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        with.extend_from_slice(form);
        self.post(action, &with).await
    }

    /// A browser signed in as the superuser `TestApp::superuser_token` made (call that
    /// first: it sets the password again, which ends earlier sessions).
    async fn superuser(app: &'a TestApp) -> Browser<'a> {
        let mut browser = Browser::new(app);
        let page = browser
            .sign_in("admin@basalt.test", "admin-password-1")
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        browser
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let csrf = self.get("/_/login").await.csrf();
        self.post(
            "/_/login",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }
}

async fn superuser_count(app: &TestApp) -> u64 {
    app.state.records.count("_superusers").await.unwrap()
}

async fn first_run_setup_creates_the_superuser_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app
        .state
        .auth
        .setup_token(&app.state.schema.snapshot())
        .await
        .unwrap()
        .expect("no superuser yet: a setup token");
    let link = format!("/_/setup/{token}");
    let mut browser = Browser::new(&app);
    let page = browser.get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Create superuser"));
    let csrf = page.csrf();

    // Without the form's token: refused, nothing created (only the placeholder).
    let before = superuser_count(&app).await;
    let refused = browser
        .post(
            &link,
            &[
                ("email", "owner@example.com"),
                ("password", "owner-password-1"),
                ("passwordConfirm", "owner-password-1"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Passwords that differ, and a short one: the form again with the reason.
    let differ = browser
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("email", "owner@example.com"),
                ("password", "owner-password-1"),
                ("passwordConfirm", "owner-password-2"),
            ],
        )
        .await;
    assert_eq!(differ.status, 400);
    assert!(differ.body.contains("The passwords differ."));
    let short = browser
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("email", "owner@example.com"),
                ("password", "short"),
                ("passwordConfirm", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, 400, "{}", short.body);
    assert!(short.body.contains("8 to 256"), "{}", short.body);
    assert_eq!(superuser_count(&app).await, before);

    let done = browser
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("email", "owner@example.com"),
                ("password", "owner-password-1"),
                ("passwordConfirm", "owner-password-1"),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/_/collections");
    let collections = browser.get("/_/collections").await;
    assert_eq!(collections.status, 200);
    assert!(collections.body.contains("owner@example.com"));
    // The placeholder is gone: one superuser, the real one.
    assert_eq!(superuser_count(&app).await, 1);

    // The link worked once.
    let used = Browser::new(&app).get(&link).await;
    assert_eq!(used.status, 410);
    assert!(used.body.contains("already used or has expired"));
    let again = browser
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("email", "intruder@example.com"),
                ("password", "intruder-password-1"),
                ("passwordConfirm", "intruder-password-1"),
            ],
        )
        .await;
    assert_eq!(again.status, 410);
    assert_eq!(superuser_count(&app).await, 1);

    // Sign out, then in.
    let csrf = collections.csrf();
    let out = browser.post("/_/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let locked = browser.get("/_/collections").await;
    assert_eq!(locked.status, 303);
    assert!(locked.location().starts_with("/_/login"));
    let wrong = browser
        .sign_in("owner@example.com", "not-the-password")
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("Wrong email or password."));
    let right = browser
        .sign_in("owner@example.com", "owner-password-1")
        .await;
    assert_eq!(right.status, 303, "{}", right.body);
    assert_eq!(browser.get("/_/collections").await.status, 200);
}

async fn sessions_are_httponly_strict_and_end(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("app_url", "https://admin.example.com")
        .setting("rate_limit_auth", "3/60s")
        .spawn()
        .await;
    let _ = app.superuser_token().await;
    let mut browser = Browser::new(&app);
    let signed_in = browser
        .sign_in("admin@basalt.test", "admin-password-1")
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in
        .set_cookie("basalt_admin")
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/_/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    let session = browser.cookies["basalt_admin"].clone();

    // The session cookie is no API token.
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&session), None)
        .await;
    assert_eq!(status, 401);

    // A forged or mangled cookie is sent to sign-in.
    let mut forged = Browser::new(&app);
    forged
        .cookies
        .insert("basalt_admin".into(), format!("{session}x"));
    let page = forged.get("/_/collections/users").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/_/login?next=%2F_%2Fcollections%2Fusers");

    // Idle too long, or past its absolute life: sent to sign-in.
    let snapshot = app.state.schema.snapshot();
    let record = app
        .state
        .records
        .find_by_field(
            &snapshot.get("_superusers").unwrap().id,
            "email",
            &json!("admin@basalt.test"),
        )
        .await
        .unwrap()
        .unwrap();
    let idle = basalt_server::auth::admin::SESSION_IDLE;
    let absolute = basalt_server::auth::admin::SESSION_ABSOLUTE;
    for (age, started_ago, live) in [
        (10, 10, true),
        (idle + 1, idle + 1, false),
        (10, absolute + 1, false),
    ] {
        let token = app
            .state
            .auth
            .admin_session_aged(&snapshot, record.clone(), age, started_ago)
            .unwrap();
        let mut aged = Browser::new(&app);
        aged.cookies.insert("basalt_admin".into(), token);
        let page = aged.get("/_/collections").await;
        assert_eq!(
            page.status == 200,
            live,
            "age {age}, started {started_ago} s ago: {}",
            page.status
        );
    }
    // A session issued over a minute ago is renewed with the same life.
    let token = app
        .state
        .auth
        .admin_session_aged(&snapshot, record.clone(), 120, 120)
        .unwrap();
    let mut renewed = Browser::new(&app);
    renewed.cookies.insert("basalt_admin".into(), token.clone());
    let page = renewed.get("/_/collections").await;
    assert_eq!(page.status, 200);
    assert!(page.set_cookie("basalt_admin").is_some(), "renewed");
    assert_ne!(renewed.cookies["basalt_admin"], token);

    // A new password ends every session at once.
    app.state
        .auth
        .upsert_superuser(&snapshot, "admin@basalt.test", "admin-password-2")
        .await
        .unwrap();
    let page = browser.get("/_/collections").await;
    assert_eq!(page.status, 303, "the old session is refused");

    // Sign-in is rate-limited like the API's (3 a minute here).
    let mut guesser = Browser::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            guesser
                .sign_in("guess@example.com", "guess-password")
                .await
                .status,
        );
    }
    assert_eq!(statuses, vec![400, 400, 400, 429, 429]);
}

async fn pages_are_locked_down_and_escape_what_users_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "notes", "listRule": "", "viewRule": "",
               "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    let payload = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/notes/records",
            Some(&admin),
            Some(json!({"title": payload})),
        )
        .await;
    assert_eq!(status, 200);
    let mut browser = Browser::superuser(&app).await;
    for path in [
        "/_/collections",
        "/_/collections/notes",
        "/_/collections/notes/records",
        "/_/collections/new",
        "/_/events",
        "/_/instances",
        "/_/mails",
        "/_/settings",
        "/_/schema",
        "/_/login",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["referrer-policy"], "same-origin");
        assert!(
            !page.body.contains("<script>alert"),
            "{path} runs stored script"
        );
        assert!(!page.body.contains("<img src=x"), "{path}");
        assert!(!page.body.contains(" style=\""), "{path} has inline style");
    }
    let records = browser.get("/_/collections/notes/records").await;
    assert!(
        records.body.contains("&#60;script&#62;alert"),
        "shown, escaped"
    );

    // Assets: content-hashed URLs, cached for a year; others are 404.
    let css = basalt_admin_ui::assets::CSS.url;
    let response = app.get(css).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        app.get("/_/assets/admin.0000000000000000.css")
            .await
            .status(),
        404
    );
    assert_eq!(app.get("/_/no-such-page").await.status(), 404);
}

async fn collections_and_records_through_the_forms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let mut browser = Browser::superuser(&app).await;
    let posts = [
        ("name", "posts"),
        ("type", "base"),
        ("field.0.id", ""),
        ("field.0.name", "title"),
        ("field.0.type", "text"),
        ("field.0.required", "1"),
        ("field.0.options", ""),
        ("field.1.id", ""),
        ("field.1.name", "views"),
        ("field.1.type", "number"),
        ("field.1.options", ""),
        ("field.2.id", ""),
        ("field.2.name", "kind"),
        ("field.2.type", "select"),
        (
            "field.2.options",
            r#"{"values": ["news", "blog"], "maxSelect": 1}"#,
        ),
        ("field.3.id", ""),
        ("field.3.name", "author"),
        ("field.3.type", "relation"),
        (
            "field.3.options",
            r#"{"collectionId": "_pb_users_auth_", "maxSelect": 1}"#,
        ),
        ("listRule", ""),
        ("viewRule", ""),
        ("createRule_locked", "1"),
        ("createRule", ""),
        ("updateRule_locked", "1"),
        ("updateRule", ""),
        ("deleteRule_locked", "1"),
        ("deleteRule", ""),
        ("indexes", ""),
    ];
    // A form without its CSRF token changes nothing.
    let refused = browser.post("/_/collections/new", &posts).await;
    assert_eq!(refused.status, 403);
    assert!(app.state.schema.snapshot().get("posts").is_none());

    // A rule that does not compile: the error, with its position, beside the rule.
    let mut broken = posts.to_vec();
    broken.retain(|(k, _)| *k != "listRule");
    broken.push(("listRule", "views >"));
    let page = browser
        .submit("/_/collections/new", "/_/collections/new", &broken)
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    let error_at = page.body.find("id=\"listRule-error\">").unwrap();
    assert!(
        page.body[error_at..]
            .split("</p>")
            .next()
            .unwrap()
            .contains("character"),
        "the rule's error names its position: {}",
        &page.body[error_at..error_at + 200]
    );
    assert!(app.state.schema.snapshot().get("posts").is_none());

    let created = browser
        .submit("/_/collections/new", "/_/collections/new", &posts)
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(created.location(), "/_/collections/posts?done=created");
    let list = browser.get("/_/collections").await;
    assert!(list.body.contains("/_/collections/posts/records"));

    // Records through the generated form: a select and a relation picker.
    let (user, _) = app.user("ann@example.com", "ann-password").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let form = browser.get("/_/collections/posts/records/new").await;
    assert!(form.body.contains("<option value=\"news\""));
    assert!(
        form.body.contains(&format!("<option value=\"{user_id}\"")),
        "relation picker"
    );
    for (title, views) in [("first", "1"), ("second", "2"), ("third", "3")] {
        let page = browser
            .submit(
                "/_/collections/posts/records/new",
                "/_/collections/posts/records/new",
                &[
                    ("title", title),
                    ("views", views),
                    ("kind", "news"),
                    ("author", &user_id),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
    }
    // A required field left empty: the form again, with the field's error.
    let page = browser
        .submit(
            "/_/collections/posts/records/new",
            "/_/collections/posts/records/new",
            &[("title", ""), ("views", "4"), ("kind", "blog")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("class=\"error\""));

    // An anonymous client sees exactly what the rules allow: list and view, no create.
    let (status, body) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?sort=views",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["totalItems"], 3);
    assert_eq!(body["items"][0]["title"], "first");
    assert_eq!(body["items"][0]["author"], user_id.as_str());
    let (status, _) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "anon"})),
        )
        .await;
    assert_eq!(status, 403);

    // The table: a filter error inline, a filter that works.
    let page = browser
        .get("/_/collections/posts/records?filter=views+%3E%3E+1")
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("id=\"filter-error\" role=\"alert\">")
            && !page
                .body
                .contains("id=\"filter-error\" role=\"alert\"></p>")
    );
    let page = browser
        .get("/_/collections/posts/records?filter=views+%3E%3D+2&sort=-views")
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("2 record(s)"), "{}", page.body);
    let third = page.body.find(">third<").unwrap();
    let second = page.body.find(">second<").unwrap();
    assert!(third < second, "sorted by -views");

    // Rename a field in the editor: the API shows it renamed, the data kept.
    let editor = browser.get("/_/collections/posts").await;
    let collection = app.state.schema.snapshot().get("posts").unwrap().clone();
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), editor.csrf()),
        ("name".into(), "posts".into()),
        ("listRule".into(), String::new()),
        ("viewRule".into(), String::new()),
        ("createRule_locked".into(), "1".into()),
        ("updateRule_locked".into(), "1".into()),
        ("deleteRule_locked".into(), "1".into()),
    ];
    for (i, field) in collection.fields.iter().enumerate() {
        let options = field.to_json();
        let options: serde_json::Map<String, serde_json::Value> = options
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                ![
                    "id",
                    "name",
                    "type",
                    "system",
                    "hidden",
                    "required",
                    "presentable",
                    "nullable",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let name = if field.name == "title" {
            "headline".to_owned()
        } else {
            field.name.clone()
        };
        form.push((format!("field.{i}.id"), field.id.clone()));
        form.push((format!("field.{i}.name"), name));
        form.push((format!("field.{i}.type"), field.kind.type_name().to_owned()));
        form.push((
            format!("field.{i}.options"),
            serde_json::Value::Object(options).to_string(),
        ));
        if field.required {
            form.push((format!("field.{i}.required"), "1".into()));
        }
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = browser.post("/_/collections/posts", &pairs).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (_, body) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?sort=views",
            None,
            None,
        )
        .await;
    assert_eq!(body["items"][0]["headline"], "first");
    assert!(body["items"][0].get("title").is_none());

    // Removing a field asks first and names it; only the confirmation removes it.
    let editor = browser.get("/_/collections/posts").await;
    let mut removing: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| k != "csrf")
        .map(|(k, v)| {
            if v == "views" {
                (k.clone(), String::new())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    removing.push(("csrf".into(), editor.csrf()));
    let pairs: Vec<(&str, &str)> = removing
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ask = browser.post("/_/collections/posts", &pairs).await;
    assert_eq!(ask.status, 200);
    assert!(
        ask.body
            .contains("field `views` and its values in 3 record(s)"),
        "{}",
        ask.body
    );
    assert!(
        app.state
            .schema
            .snapshot()
            .get("posts")
            .unwrap()
            .field("views")
            .is_some()
    );
    let mut confirmed = pairs.clone();
    confirmed.push(("confirmed", "1"));
    let done = browser.post("/_/collections/posts", &confirmed).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        app.state
            .schema
            .snapshot()
            .get("posts")
            .unwrap()
            .field("views")
            .is_none()
    );

    // Bulk delete: the selection asks first, the confirmation deletes.
    let (_, body) = app
        .call(Method::GET, "/api/collections/posts/records", None, None)
        .await;
    let ids: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let table = browser.get("/_/collections/posts/records").await;
    let csrf = table.csrf();
    let select = [("csrf", csrf.as_str()), ("ids", &ids[0]), ("ids", &ids[1])];
    let ask = browser
        .post("/_/collections/posts/records/delete", &select)
        .await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Delete 2 record(s)"));
    assert_eq!(app.state.records.count("posts").await.unwrap(), 3);
    let mut confirm = select.to_vec();
    confirm.push(("confirmed", "1"));
    let done = browser
        .post("/_/collections/posts/records/delete", &confirm)
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(app.state.records.count("posts").await.unwrap(), 1);

    // The event of each change is on the events page; the raw JSON view works.
    let events = browser.get("/_/events").await;
    assert!(events.body.contains("posts.deleted"), "{}", events.body);
    let left = body["items"][2]["id"].as_str().unwrap().to_owned();
    let raw = browser
        .get(&format!("/_/collections/posts/records/{left}/json"))
        .await;
    assert_eq!(raw.status, 200);
    assert!(raw.body.contains(&left));

    // Deleting the collection asks for its name.
    let page = browser
        .submit(
            "/_/collections/posts/delete",
            "/_/collections/posts/delete",
            &[("confirm", "wrong")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(app.state.schema.snapshot().get("posts").is_some());
    let page = browser
        .submit(
            "/_/collections/posts/delete",
            "/_/collections/posts/delete",
            &[("confirm", "posts")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(app.state.schema.snapshot().get("posts").is_none());
    let (status, _) = app
        .call(Method::GET, "/api/collections/posts", Some(&admin), None)
        .await;
    assert_eq!(status, 404);
}

async fn keys_history_import_and_mails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let _ = app.superuser_token().await;
    let mut browser = Browser::superuser(&app).await;

    // An API key: its secret shown once, usable at once, never listed, revocable.
    let created = browser
        .submit(
            "/_/keys",
            "/_/keys",
            &[
                ("name", "deploy"),
                ("scopes", "\"superuser\""),
                ("expires", ""),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let start = created.body.find("<pre id=\"new-key\">").unwrap() + "<pre id=\"new-key\">".len();
    let secret = created.body[start..].split('<').next().unwrap().to_owned();
    assert!(
        secret.starts_with(basalt_server::auth::keys::PREFIX),
        "{secret}"
    );
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&secret), None)
        .await;
    assert_eq!(status, 200, "the new key works");
    let listed = browser.get("/_/keys").await;
    assert!(listed.body.contains("deploy") && !listed.body.contains(&secret));
    let bad = browser
        .submit("/_/keys", "/_/keys", &[("name", ""), ("scopes", "[1")])
        .await;
    assert_eq!(bad.status, 400);
    let id = app.state.auth.keys.list().await.unwrap()[0].id.clone();
    let revoked = browser
        .submit("/_/keys", &format!("/_/keys/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, 303);
    let (status, _) = app
        .call(Method::GET, "/api/collections", Some(&secret), None)
        .await;
    assert_eq!(status, 401, "a revoked key is refused");

    // Import: a preview of what changes, and only "apply" applies it.
    let import =
        r#"[{"name": "tags", "type": "base", "fields": [{"name": "label", "type": "text"}]}]"#;
    let preview = browser
        .submit("/_/schema", "/_/schema/import", &[("import", import)])
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("create collection `tags` ("),
        "{}",
        preview.body
    );
    assert!(
        app.state.schema.snapshot().get("tags").is_none(),
        "a preview changes nothing"
    );
    let bad = browser
        .submit("/_/schema", "/_/schema/import", &[("import", "{not json")])
        .await;
    assert_eq!(bad.status, 400);
    let applied = browser
        .submit(
            "/_/schema",
            "/_/schema/import",
            &[("import", import), ("apply", "1")],
        )
        .await;
    assert_eq!(applied.status, 303, "{}", applied.body);
    assert!(app.state.schema.snapshot().get("tags").is_some());
    let export = browser.get("/_/schema/export").await;
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let exported: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert!(
        exported
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "tags")
    );

    // The history shows the import's change.
    let history = browser.get("/_/schema/history").await;
    assert_eq!(history.status, 200);
    assert!(
        history.body.contains("<code>create</code> tags"),
        "{}",
        history.body
    );

    // An account's verification mail, sent from its record page, is stored (no SMTP).
    let (user, _) = app.user("mia@example.com", "mia-password").await;
    let id = user["id"].as_str().unwrap();
    let page = format!("/_/collections/users/records/{id}");
    let csrf = browser.get(&page).await.csrf();
    let unverify = browser
        .post(
            &page,
            &[
                ("csrf", csrf.as_str()),
                ("email", "mia@example.com"),
                ("verified", "false"),
            ],
        )
        .await;
    assert_eq!(unverify.status, 303, "{}", unverify.body);
    let sent = browser
        .post(
            &format!("{page}/mail"),
            &[("csrf", csrf.as_str()), ("kind", "verification")],
        )
        .await;
    assert_eq!(sent.status, 303);
    let mails = basalt_tests::eventually(
        std::time::Duration::from_secs(10),
        "the verification mail",
        || {
            let app = &app;
            async move {
                let (items, _) = app.state.auth.mails(1, 10).await.unwrap();
                items.into_iter().find(|m| m.recipient == "mia@example.com")
            }
        },
    )
    .await;
    let listed = browser.get("/_/mails").await;
    assert!(listed.body.contains(&format!("/_/mails/{}", mails.id)));
    let one = browser.get(&format!("/_/mails/{}", mails.id)).await;
    assert_eq!(one.status, 200);
    assert!(one.body.contains("mia@example.com"));
}

async fn settings_apply_without_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({"name": "notes", "createRule": "", "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    let mut browser = Browser::superuser(&app).await;
    let page = browser.get("/_/settings").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("placeholder=\"Basalt\""),
        "the configured name"
    );

    // An invalid value: refused with its reason, nothing stored.
    let bad = browser
        .submit(
            "/_/settings",
            "/_/settings",
            &[("rateLimit", "lots"), ("appUrl", "ftp://x")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("N/WINDOW"), "{}", bad.body);
    assert_eq!(app.state.live.stored().rate_limit, None);

    let saved = browser
        .submit(
            "/_/settings",
            "/_/settings",
            &[
                ("appName", "Acme Notes"),
                ("rateLimitAuth", "2/1m"),
                ("batchMaxRequests", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);

    // In force at once: the sign-in limit, the batch limit, the name in mails.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/collections/users/auth-with-password",
                None,
                Some(json!({"identity": "nobody@example.com", "password": "wrong-password"})),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, vec![400, 400, 429]);
    let create = |title: &str| json!({"method": "POST", "url": "/api/collections/notes/records", "body": {"title": title}});
    let (status, body) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [create("a"), create("b")]})),
        )
        .await;
    assert_eq!(status, 400, "two requests over a limit of one: {body}");
    let sent = browser
        .submit(
            "/_/settings",
            "/_/settings/test-mail",
            &[("to", "ops@example.com")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let (mails, _) = app.state.auth.mails(1, 10).await.unwrap();
    let test = mails
        .iter()
        .find(|m| m.recipient == "ops@example.com")
        .expect("the test mail is stored (no SMTP)");
    assert_eq!(test.subject, "Acme Notes: test mail");

    // Stored: a server started on this database starts with them.
    let reloaded =
        basalt_server::config::live::LiveSettings::load(&app.state.settings, app.state.db.clone())
            .await
            .unwrap();
    assert_eq!(reloaded.current().app_name, "Acme Notes");
    assert_eq!(reloaded.current().batch_max_requests, 1);

    // Cleared: back to the configured values.
    let cleared = browser.submit("/_/settings", "/_/settings", &[]).await;
    assert_eq!(cleared.status, 303);
    assert_eq!(app.state.live.current().app_name, "Basalt");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [create("a"), create("b")]})),
        )
        .await;
    assert_eq!(status, 200);
}

/// Settings saved through one instance's admin UI apply on another instance of the
/// same installation at once (PostgreSQL and Redis shared: the save is announced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_saved_on_one_instance_apply_on_the_others() {
    let test = "admin::settings_saved_on_one_instance_apply_on_the_others";
    if !basalt_tests::postgres::available_or_skip(test).await
        || !basalt_tests::require_service("Redis", "127.0.0.1:6379", test).await
    {
        return;
    }
    let redis = "redis://127.0.0.1:6379";
    let a = TestApp::builder(Backend::Postgres)
        .setting("redis_url", redis)
        .spawn()
        .await;
    let admin = a.superuser_token().await;
    a.create_collection(
        &admin,
        json!({"name": "notes", "createRule": "", "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    let b = TestApp::builder(Backend::Postgres)
        .database_of(&a)
        .setting("redis_url", redis)
        .spawn()
        .await;
    let create = |title: &str| json!({"method": "POST", "url": "/api/collections/notes/records", "body": {"title": title}});
    let two = json!({"requests": [create("a"), create("b")]});
    let (status, body) = b
        .call(Method::POST, "/api/batch", None, Some(two.clone()))
        .await;
    assert_eq!(status, 200, "{body}");

    let mut browser = Browser::superuser(&a).await;
    let saved = browser
        .submit(
            "/_/settings",
            "/_/settings",
            &[("appName", "Acme Notes"), ("batchMaxRequests", "1")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    basalt_tests::eventually(
        std::time::Duration::from_secs(1),
        "the batch limit saved on A in force on B",
        || async {
            let (status, _) = b
                .call(Method::POST, "/api/batch", None, Some(two.clone()))
                .await;
            (status == 400).then_some(())
        },
    )
    .await;
    assert_eq!(b.state.live.current().app_name, "Acme Notes");

    // Cleared on A: B is back to the configured values too.
    let cleared = browser.submit("/_/settings", "/_/settings", &[]).await;
    assert_eq!(cleared.status, 303);
    basalt_tests::eventually(
        std::time::Duration::from_secs(1),
        "the cleared settings on B",
        || async { (b.state.live.current().app_name == "Basalt").then_some(()) },
    )
    .await;
    let (status, body) = b.call(Method::POST, "/api/batch", None, Some(two)).await;
    assert_eq!(status, 200, "{body}");
}

/// The whole story in Debian's Chromium (headless) driven by `playwright-core`,
/// against a real `basalt` process on SQLite: see `tests/browser/story.mjs`.
/// Screenshots go to the build's temp dir, or to `docs/admin/` with
/// `UPDATE_SCREENSHOTS=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_story_in_a_real_browser() {
    use basalt_tests::process::{BasaltProcess, command};
    use std::path::Path;
    let test = "admin_story_in_a_real_browser";
    if !basalt_tests::require_tool("node", test)
        || !basalt_tests::require_tool("npm", test)
        || !basalt_tests::require_tool("chromium", test)
    {
        return;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let tools = basalt_tests::tools::npm_once(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "browser",
        &source,
        &["package.json", "story.mjs"],
        "node_modules/playwright-core",
    );
    let data = tempfile::tempdir().unwrap();
    let (process, url) = BasaltProcess::start(command(data.path())).await;
    let link = basalt_tests::eventually(
        std::time::Duration::from_secs(10),
        "the first start to log a setup link",
        || {
            let link = process
                .json_logs()
                .iter()
                .filter_map(|l| l["message"].as_str().map(str::to_owned))
                .find_map(|m| {
                    let start = m.find("http://")?;
                    let link = m[start..].split_whitespace().next()?.to_owned();
                    link.contains("/_/setup/").then_some(link)
                });
            async move { link }
        },
    )
    .await;
    assert!(link.starts_with(&url), "{link} is on {url}");
    let shots = if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let pages = [
        "setup",
        "collections",
        "collection-editor",
        "records",
        "record-form",
        "events",
        "mails",
        "settings",
        "schema",
        "schema-history",
        "keys",
        "record-json",
        "collection-delete",
        "login",
        "records-390px",
        "graphql-explorer",
    ];
    // Every screenshot is this run's.
    for page in pages {
        let _ = std::fs::remove_file(shots.join(format!("{page}.png")));
    }
    let output = tokio::process::Command::new("node")
        .arg("story.mjs")
        .current_dir(&tools)
        .env("BASE", &url)
        .env("SETUP_LINK", &link)
        .env("SHOTS", &shots)
        .env("CHROMIUM", "/usr/bin/chromium")
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser story failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        process.logs().join("\n")
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        10,
        "{stdout}"
    );
    for page in pages {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }
}

async fn functions_are_deployed_toggled_and_logged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let _ = app.superuser_token().await;
    let mut browser = Browser::superuser(&app).await;
    let page = browser.get("/_/functions").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("No functions yet"), "{}", page.body);
    let csrf = page.csrf();

    // Without the session's CSRF token: refused, nothing deployed.
    let refused = browser
        .upload(
            "/_/functions",
            &[("csrf", "nope"), ("name", "faults"), ("triggers", "http")],
            ("component", basalt_tests::guest("faults")),
        )
        .await;
    assert_eq!(refused.status, 403);
    // A bad component: the page says why.
    let bad = browser
        .upload(
            "/_/functions",
            &[("csrf", &csrf), ("name", "faults"), ("triggers", "http")],
            ("component", b"nope".to_vec()),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("not a valid WASI component"),
        "{}",
        bad.body
    );

    let deployed = browser
        .upload(
            "/_/functions",
            &[
                ("csrf", &csrf),
                ("name", "faults"),
                ("triggers", "http"),
                ("limits", r#"{"timeoutMs": 200}"#),
                ("scopes", ""),
            ],
            ("component", basalt_tests::guest("faults")),
        )
        .await;
    assert_eq!(
        (deployed.status, deployed.location()),
        (303, "/_/functions?done=deployed"),
        "{}",
        deployed.body
    );
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 200);
    assert_eq!(app.get_json("/api/functions/faults/spin").await.0, 500);

    // The list and the invocation log, the failure's cause readable.
    let page = basalt_tests::eventually(
        std::time::Duration::from_secs(5),
        "both calls logged",
        || async {
            let page = browser_get(&app, &browser.cookies, "/_/functions").await;
            (page.matches("<td class=\"outcome-").count() >= 2).then_some(page)
        },
    )
    .await;
    assert!(page.contains(r#"data-function="faults""#), "{page}");
    assert!(
        page.contains("outcome-timeout") && page.contains("stopped at its time limit"),
        "{page}"
    );

    // Disable, enable, delete.
    let off = browser
        .submit("/_/functions", "/_/functions/faults/toggle", &[])
        .await;
    assert_eq!(off.status, 303);
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 404);
    assert!(
        browser
            .get("/_/functions")
            .await
            .body
            .contains(">Enable</button>")
    );
    browser
        .submit("/_/functions", "/_/functions/faults/toggle", &[])
        .await;
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 200);
    let gone = browser
        .submit("/_/functions", "/_/functions/faults/delete", &[])
        .await;
    assert_eq!(gone.status, 303);
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 404);
}

/// Issue #18 point 7: the functions page shows after-event triggers with their
/// filter and retries, schedules with their next run, and dead letters, which can be
/// replayed (and then retried) from there.
async fn function_triggers_schedules_and_dead_letters_are_shown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    for (name, fields) in [
        ("posts", json!([{"name": "title", "type": "text"}])),
        (
            "ticks",
            json!([{"name": "function", "type": "text"}, {"name": "schedule", "type": "text"},
                         {"name": "due", "type": "text"}, {"name": "late", "type": "bool"}]),
        ),
    ] {
        app.create_collection(
            &admin,
            json!({"name": name, "listRule": "", "viewRule": "", "createRule": "", "fields": fields}),
        )
        .await;
    }
    let mut browser = Browser::superuser(&app).await;
    let csrf = browser.get("/_/functions").await.csrf();
    let deployed = browser
        .upload(
            "/_/functions",
            &[
                ("csrf", &csrf),
                ("name", "watcher"),
                ("triggers", "posts.created"),
                ("filter", "title != 'quiet'"),
                ("retries", r#"{"maxAttempts": 2, "backoffMs": 20}"#),
                (
                    "schedules",
                    r#"[{"cron": "0 9 * * 1", "timezone": "Europe/Paris"}]"#,
                ),
                ("outbound", "https://api.example.com"),
            ],
            ("component", basalt_tests::guest("faults")),
        )
        .await;
    assert_eq!(deployed.status, 303, "{}", deployed.body);
    let page = browser.get("/_/functions").await.body;
    for shown in [
        "posts.created",
        "title != &#39;quiet&#39;",
        "2 attempts, back-off from 20 ms",
        "0 9 * * 1 (Europe/Paris) → ",
        "https://api.example.com",
        "No retries waiting and no dead letters.",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    // A poisoned event is dead-lettered and listed; replayed, it fails again.
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "poison"})),
        )
        .await;
    assert_eq!(status, 200);
    let page = basalt_tests::eventually(
        std::time::Duration::from_secs(20),
        "the dead letter on the page",
        || async {
            let page = browser_get(&app, &browser.cookies, "/_/functions").await;
            page.contains("class=\"state-dead\"").then_some(page)
        },
    )
    .await;
    assert!(page.contains("poison, every time"), "{page}");
    let id = page
        .split("data-delivery=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let replayed = browser
        .submit(
            "/_/functions",
            &format!("/_/functions/deliveries/{id}/replay"),
            &[],
        )
        .await;
    assert_eq!(replayed.status, 303, "{}", replayed.body);
    basalt_tests::eventually(
        std::time::Duration::from_secs(20),
        "the replay's attempts to run",
        || async {
            let (_, body) = app
                .call(
                    reqwest::Method::GET,
                    "/api/functions/deliveries?state=dead",
                    Some(&admin),
                    None,
                )
                .await;
            (body["items"][0]["attempts"] == 4).then_some(())
        },
    )
    .await;
    let discarded = browser
        .submit(
            "/_/functions",
            &format!("/_/functions/deliveries/{id}/discard"),
            &[],
        )
        .await;
    assert_eq!(discarded.status, 303);
    assert!(
        browser
            .get("/_/functions")
            .await
            .body
            .contains("No retries waiting and no dead letters.")
    );
}

/// A page's HTML with these cookies (for polling without a `&mut` browser).
async fn browser_get(app: &TestApp, cookies: &HashMap<String, String>, path: &str) -> String {
    let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    app.client
        .get(app.url(path))
        .header("cookie", header.join("; "))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Issue #19 point 7: the instances page lists this instance (and every other one
/// with a heartbeat in Redis) with its version, address, uptime and heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_page_lists_live_instances() {
    let test = "admin::instances_page_lists_live_instances";
    if !basalt_tests::require_service("Redis", "127.0.0.1:6379", test).await {
        return;
    }
    let app = TestApp::builder(Backend::Sqlite)
        .setting("redis_url", "redis://127.0.0.1:6379")
        .spawn()
        .await;
    let me = app.state.cache.instance().to_owned();
    let _ = app.superuser_token().await;
    let mut browser = Browser::superuser(&app).await;
    // The heartbeat is written within 2 s of the start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let page = loop {
        let page = browser.get("/_/instances").await;
        if page.status == 200 && page.body.contains(&me) {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "this instance's heartbeat never showed: {}",
            page.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.body.contains("(this one)"), "{}", page.body);
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")), "the version");
    assert!(page.body.contains(&app.addr.to_string()), "the address");
    assert!(
        page.body.contains("reachable"),
        "Redis is up: {}",
        page.body
    );
    assert!(page.body.contains("Last heartbeat"));
}
