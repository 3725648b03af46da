//! `GET /api/openapi.json`: generated from the live schema, valid OpenAPI 3.1 (checked
//! by openapi-spec-validator), regenerated on every schema change, and true to what the
//! server answers (schemathesis fuzzes every operation against it). Both tools come
//! from PyPI, pinned in tests/openapi/requirements.txt, installed by the tests into a
//! venv of their own; without python3 the tests are skipped loudly, or fail under CI.

use std::path::{Path, PathBuf};

use basalt_tests::{Backend, TestApp, backend_tests, require_tool};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    openapi_follows_the_live_schema,
    schemathesis_finds_no_server_error_and_no_spec_break,
);

/// The venv's python, or `None` when python3 is missing (and not under CI).
fn tools(test: &str) -> Option<PathBuf> {
    if !require_tool("python3", test) {
        return None;
    }
    Some(basalt_tests::tools::python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "openapi-tools",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi"),
    ))
}

/// Run openapi-spec-validator on `spec`; its verdict and output.
fn validate(python: &Path, spec: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn spec(app: &TestApp) -> Value {
    let res = app.get("/api/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    res.json().await.unwrap()
}

async fn openapi_follows_the_live_schema(backend: Backend) {
    let Some(bin) = tools("openapi_follows_the_live_schema") else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;

    let first = spec(&app).await;
    assert_eq!(first["openapi"], "3.1.0");
    let (valid, output) = validate(&bin, &first);
    assert!(valid, "{output}");
    // The validator can fail: a document without `info` is refused.
    let mut broken = first.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validate(&bin, &broken).0, "the validator accepts anything");

    for path in [
        "/api/collections",
        "/api/collections/{collection}",
        "/api/collections/import",
        "/api/batch",
        "/api/collections/users/records",
        "/api/collections/users/records/{id}",
        "/api/collections/users/auth-with-password",
        "/api/collections/_superusers/auth-with-password",
    ] {
        assert!(first["paths"][path].is_object(), "{path} missing");
    }
    let error = &first["components"]["schemas"]["Error"];
    assert_eq!(error["required"], json!(["status", "message", "data"]));
    let users = &first["components"]["schemas"]["UsersRecord"]["properties"];
    assert_eq!(users["email"]["type"], "string");
    assert_eq!(users["verified"]["type"], "boolean");
    assert!(users.get("password").is_none() && users.get("tokenKey").is_none());
    let users_create = &first["components"]["schemas"]["UsersCreate"];
    assert!(users_create["properties"]["passwordConfirm"].is_object());
    assert!(users_create["properties"].get("tokenKey").is_none());

    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(&admin),
            Some(json!({
                "name": "blog_posts", "listRule": "", "viewRule": "",
                "fields": [
                    {"name": "title", "type": "text", "required": true, "max": 200},
                    {"name": "views", "type": "number", "onlyInt": true, "min": 0},
                    {"name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2},
                    {"name": "state", "type": "select", "values": ["draft", "live"]},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"},
                    {"name": "note", "type": "text", "hidden": true, "nullable": true},
                ]
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = spec(&app).await;
    let (valid, output) = validate(&bin, &second);
    assert!(valid, "{output}");
    let paths = &second["paths"];
    assert!(paths["/api/collections/blog_posts/records"]["get"].is_object());
    assert!(paths["/api/collections/blog_posts/records/{id}"]["patch"].is_object());
    assert!(
        paths
            .get("/api/collections/blog_posts/auth-with-password")
            .is_none()
    );
    let schemas = &second["components"]["schemas"];
    let record = &schemas["BlogPostsRecord"]["properties"];
    assert_eq!(record["collectionName"]["const"], "blog_posts");
    assert_eq!(record["title"]["type"], "string");
    assert_eq!(record["views"]["type"], "number");
    assert_eq!(record["tags"]["type"], "array");
    assert_eq!(record["tags"]["items"]["enum"], json!(["a", "b"]));
    assert_eq!(record["state"]["enum"], json!(["draft", "live", ""]));
    assert_eq!(record["note"]["type"], json!(["string", "null"]));
    assert_eq!(
        record["expand"]["properties"]["author"]["$ref"],
        "#/components/schemas/UsersRecord"
    );
    let create = &schemas["BlogPostsCreate"];
    assert_eq!(create["required"], json!(["title"]));
    assert_eq!(create["additionalProperties"], false);
    assert_eq!(create["properties"]["title"]["minLength"], 1);
    assert_eq!(create["properties"]["title"]["maxLength"], 200);
    assert_eq!(create["properties"]["views"]["type"], "integer");
    assert!(create["properties"].get("created").is_none());
    let update = &schemas["BlogPostsUpdate"]["properties"];
    assert!(update["views+"].is_object() && update["tags-"].is_object());
    assert!(update["+tags"].is_object() && update.get("title+").is_none());

    // A rename shows at once; so does a deletion.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/collections/blog_posts",
            Some(&admin),
            Some(json!({"fields": [
                {"id": body["fields"][1]["id"], "name": "headline", "type": "text", "required": true, "max": 200},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let third = spec(&app).await;
    let record = &third["components"]["schemas"]["BlogPostsRecord"]["properties"];
    assert!(record["headline"].is_object() && record.get("title").is_none());
    assert!(record.get("views").is_none(), "fields left out are dropped");
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/collections/blog_posts",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let fourth = spec(&app).await;
    assert!(
        fourth["paths"]
            .get("/api/collections/blog_posts/records")
            .is_none()
    );
    assert!(
        fourth["components"]["schemas"]
            .get("BlogPostsRecord")
            .is_none()
    );
}

/// A sample app: posts owned by users, comments cascading from posts, a few rows.
async fn sample_schema(app: &TestApp, admin: &str) {
    let user = app
        .create_auth_record("users", "ann@example.com", "ann-password")
        .await;
    let owner = "author = @request.auth.id";
    let (status, posts) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(admin),
            Some(json!({
                "name": "posts", "listRule": "", "viewRule": "",
                "createRule": "@request.auth.id != ''", "updateRule": owner, "deleteRule": owner,
                "fields": [
                    {"name": "title", "type": "text", "required": true, "max": 200},
                    {"name": "views", "type": "number", "onlyInt": true, "min": 0},
                    {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                    {"name": "published", "type": "bool"},
                    {"name": "meta", "type": "json"},
                    {"name": "link", "type": "url"},
                    {"name": "due", "type": "date"},
                    {"name": "contact", "type": "email"},
                    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_"},
                    {"name": "note", "type": "text", "hidden": true, "nullable": true},
                ],
                "indexes": ["CREATE INDEX idx_posts_views ON posts (views)"],
            })),
        )
        .await;
    assert_eq!(status, 200, "{posts}");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections",
            Some(admin),
            Some(json!({
                "name": "comments", "listRule": "", "viewRule": "", "createRule": "",
                "fields": [
                    {"name": "post", "type": "relation", "collectionId": posts["id"], "cascadeDelete": true},
                    {"name": "body", "type": "text", "max": 500},
                ],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..3 {
        let (status, post) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                Some(admin),
                Some(json!({"title": format!("Post {i}"), "views": i, "tags": ["a"], "author": user["id"]})),
            )
            .await;
        assert_eq!(status, 200, "{post}");
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/comments/records",
                None,
                Some(json!({"post": post["id"], "body": "nice"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn schemathesis_finds_no_server_error_and_no_spec_break(backend: Backend) {
    let test = "schemathesis_finds_no_server_error_and_no_spec_break";
    let Some(bin) = tools(test) else {
        return;
    };
    // Fuzzing signs in thousands of times: limits would answer most of it with 429.
    let app = TestApp::builder(backend)
        .setting("rate_limit_auth", "0")
        .setting("rate_limit_auth_ip", "0")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    sample_schema(&app, &admin).await;
    let reports = tempfile::tempdir().unwrap();
    // A fixed seed keeps CI deterministic; SCHEMATHESIS_SEED explores further.
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261123".to_owned());
    let output = tokio::process::Command::new(bin)
        .args(["-m", "schemathesis.cli", "run", &app.url("/api/openapi.json")])
        .args(["--header", &format!("Authorization: {admin}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        // Deleting the superuser it signs in as would leave nothing but 401s to test.
        .args(["--exclude-path-regex", "_superusers/records"])
        // One worker: CPython 3.11's ast module is not thread-safe and schemathesis
        // compiles patterns on its workers ("AST constructor recursion depth mismatch").
        .args(["--max-examples", "25", "--workers", "1", "--seed", &seed])
        .args(["--report", "ndjson", "--report-dir"])
        .arg(reports.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems (seed {seed}):\n{stdout}\n{stderr}"
    );
    // It really exercised the API: many cases, every collection's record paths.
    let summary = stdout
        .lines()
        .find(|l| l.contains("generated,"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    let generated: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable summary `{summary}`"));
    assert!(generated >= 500, "only {generated} cases: {summary}");
    for path in [
        "/api/collections/posts/records/{id}",
        "/api/collections/comments/records",
        "/api/batch",
    ] {
        assert!(stdout.contains(path), "{path} was not tested:\n{stdout}");
    }
    // The server is still healthy and consistent afterwards.
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
}
