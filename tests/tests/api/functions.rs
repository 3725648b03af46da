//! WASM functions (#17): deploy and versions, before-hooks at every door, HTTP
//! routes with the caller's identity, and limits that fail only the call at fault.
//! Guests are the SDK's examples (`functions-sdk/examples`), built for wasm32-wasip2
//! by `tests/run`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use basalt_tests::{Backend, TestApp, backend_tests, guest, json as read_json};
use reqwest::Method;
use serde_json::{Value, json};

backend_tests!(
    deploys_are_checked_versioned_and_replaced,
    hooks_change_or_refuse_writes_at_every_door,
    http_functions_get_the_request_and_the_caller,
    limits_fail_only_the_call_at_fault,
    javascript_and_python_functions_run_like_rust_ones,
    invocations_are_pruned_after_their_retention,
    a_slow_hook_holds_up_no_other_write,
    instances_made_ahead_serve_one_call_each,
);

/// Deploy `component` with `manifest`; the status and body.
async fn deploy(
    app: &TestApp,
    token: Option<&str>,
    manifest: Value,
    component: Vec<u8>,
) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .part(
            "component",
            reqwest::multipart::Part::bytes(component).file_name("f.wasm"),
        );
    let mut req = app.client.post(app.url("/api/functions")).multipart(form);
    if let Some(token) = token {
        req = req.header("authorization", token);
    }
    read_json(req.send().await.unwrap()).await
}

async fn deployed(app: &TestApp, admin: &str, manifest: Value, name: &str) -> Value {
    let (status, body) = deploy(app, Some(admin), manifest, guest(name)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn posts(app: &TestApp, admin: &str) {
    app.create_collection(
        admin,
        json!({
            "name": "posts",
            "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "slug", "type": "text"},
                {"name": "body", "type": "text"},
            ],
        }),
    )
    .await;
}

async fn invocations(app: &TestApp, admin: &str, function: &str) -> Vec<Value> {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/functions/invocations?function={function}&limit=100"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Wait until `n` invocations of `function` are logged (rows are written in batches).
async fn logged(app: &TestApp, admin: &str, function: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let rows = invocations(app, admin, function).await;
        if rows.len() >= n || started.elapsed() > Duration::from_secs(5) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploys_are_checked_versioned_and_replaced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    let (_, user) = app.user("ann@example.com", "ann-password-1").await;
    let faults = json!({"name": "faults", "triggers": ["http"]});

    // Superusers only.
    let (status, _) = deploy(&app, None, faults.clone(), guest("faults")).await;
    assert_eq!(status, 401);
    let (status, _) = deploy(&app, Some(&user), faults.clone(), guest("faults")).await;
    assert_eq!(status, 403);

    // A bad manifest: per-field errors.
    let (status, body) = deploy(
        &app,
        Some(&admin),
        json!({"name": "Bad Name", "triggers": ["posts.after"], "limits": {"timeoutMs": 0}}),
        guest("faults"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    for field in ["name", "triggers.0", "limits.timeoutMs"] {
        assert!(body["data"][field]["code"].is_string(), "{field}: {body}");
    }
    // Not a component, a component exporting nothing, one importing what Basalt does
    // not give: each a 400 that says what is wrong.
    let (status, body) = deploy(&app, Some(&admin), faults.clone(), b"\0asm nope".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a valid WASI component"),
        "{body}"
    );
    let empty = wat::parse_str("(component)").unwrap();
    let (status, body) = deploy(&app, Some(&admin), faults.clone(), empty).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("basalt:functions/hooks@0.1.0") && message.contains("incoming-handler"),
        "{body}"
    );
    let foreign = wat::parse_str(
        r#"(component
            (import "acme:thing/api@1.0.0" (instance (export "go" (func))))
            (core module $m (func (export "handle")))
            (core instance $i (instantiate $m))
            (func $h (canon lift (core func $i "handle")))
            (instance $e (export "handle" (func $h)))
            (export "basalt:functions/hooks@0.1.0" (instance $e)))"#,
    )
    .unwrap();
    let (status, body) = deploy(&app, Some(&admin), json!({"name": "foreign"}), foreign).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("acme:thing/api"),
        "{body}"
    );
    assert_eq!(
        app.count_rows("_functions").await,
        0,
        "nothing stored from failed deploys"
    );

    // Version 1, then 2 replacing it; the history keeps both.
    let v1 = deployed(&app, &admin, faults.clone(), "faults").await;
    assert_eq!(v1["version"], 1);
    assert_eq!(
        v1["exports"],
        json!({"hooks": true, "http": true, "triggers": true})
    );
    let (status, body) = app.get_json("/api/functions/faults/hello").await;
    assert_eq!((status, &body["ok"]), (200, &json!(true)), "{body}");
    let v2 = deployed(&app, &admin, faults.clone(), "faults").await;
    assert_eq!(v2["version"], 2);
    let (status, body) = app
        .call(Method::GET, "/api/functions/faults", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    let versions: Vec<_> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].clone())
        .collect();
    assert_eq!(versions, vec![json!(2), json!(1)]);

    // A new version replaces the old while a call of the old one is in flight: that
    // call finishes on the old, the next runs the new.
    let slow = {
        let client = app.client.clone();
        let url = app.url("/api/functions/faults/version?ms=800");
        tokio::spawn(async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let v3 = deployed(&app, &admin, faults.clone(), "faults").await;
    assert_eq!(v3["version"], 3);
    let (_, now) = app.get_json("/api/functions/faults/version").await;
    assert_eq!(now["version"], 3);
    assert_eq!(
        slow.await.unwrap()["version"],
        2,
        "the call in flight finished on its version"
    );

    // Disabled: the route is gone; enabled again: back, as a new version.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/functions/faults",
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)), "{body}");
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 404);
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/functions/faults",
            Some(&admin),
            Some(json!({"enabled": true, "name": "other"})),
        )
        .await;
    assert_eq!(status, 400, "a function is not renamed: {body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/functions/faults",
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!((status, &body["version"]), (200, &json!(5)), "{body}");
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 200);

    // A superuser-scoped key may deploy; a collection-scoped one may not.
    let (_, key) = app
        .call(
            Method::POST,
            "/api/keys",
            Some(&admin),
            Some(json!({"name": "ci", "scopes": "superuser"})),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let (status, body) = deploy(
        &app,
        Some(&key),
        json!({"name": "by-key", "triggers": ["http"]}),
        guest("faults"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Deleted: gone from the list and the routes; the history stays in _functions.
    let (status, _) = app
        .call(Method::DELETE, "/api/functions/faults", Some(&admin), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 404);
    let (_, list) = app
        .call(Method::GET, "/api/functions", Some(&admin), None)
        .await;
    let names: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("by-key")]);
    assert_eq!(app.count_rows("_functions").await, 6, "every version kept");

    // Another instance on the same PostgreSQL serves what this one deployed.
    if backend == Backend::Postgres {
        let other = TestApp::builder(backend).database_of(&app).spawn().await;
        assert_eq!(other.get_json("/api/functions/by-key/x").await.0, 200);
        deployed(&app, &admin, faults, "faults").await;
        basalt_tests::eventually(
            Duration::from_secs(5),
            "the other instance loads the new function",
            || async {
                (other.get_json("/api/functions/faults/hello").await.0 == 200).then_some(())
            },
        )
        .await;
        other.stop().await;
    }
}

async fn hooks_change_or_refuse_writes_at_every_door(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    posts(&app, &admin).await;
    deployed(
        &app,
        &admin,
        json!({"name": "slug", "triggers": ["posts.before-create"]}),
        "slug",
    )
    .await;
    deployed(
        &app,
        &admin,
        json!({"name": "no-spam", "triggers": ["posts.before-create", "posts.before-update"]}),
        "no_spam",
    )
    .await;

    // REST, GraphQL and batch creates all get a slug.
    let (status, post) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "Hello World"})),
        )
        .await;
    assert_eq!(
        (status, &post["slug"]),
        (200, &json!("hello-world")),
        "{post}"
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/graphql",
            None,
            Some(json!({"query": r#"mutation { createPost(input: {title: "From GraphQL"}) { slug } }"#})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["createPost"]["slug"], "from-graphql", "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [{"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "In A Batch"}}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["body"]["slug"], "in-a-batch", "{body}");
    // A slug given is kept.
    let (_, kept) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "T", "slug": "mine"})),
        )
        .await;
    assert_eq!(kept["slug"], "mine");

    // A rejection: 400 with the function's message and field error; nothing written.
    let before = app.count_rows("posts").await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "Cheap spam here"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "Posts may not advertise spam.");
    assert_eq!(
        body["data"]["title"]["code"], "validation_no_spam",
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!(
                "/api/collections/posts/records/{}",
                post["id"].as_str().unwrap()
            ),
            None,
            Some(json!({"body": "now with spam"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"]["body"]["code"], "validation_no_spam", "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/graphql",
            None,
            Some(json!({"query": r#"mutation { createPost(input: {title: "spam"}) { id } }"#})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "rejected",
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/api/batch",
            None,
            Some(json!({"requests": [
                {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "fine"}},
                {"method": "POST", "url": "/api/collections/posts/records", "body": {"title": "spam"}},
            ]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        app.count_rows("posts").await,
        before,
        "nothing of a refused write is kept"
    );
    let (_, stored) = app
        .get_json(&format!(
            "/api/collections/posts/records/{}",
            post["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        stored["body"], "",
        "the refused update left the record as it was"
    );

    // A hook's changed values are validated again; a hook that fails refuses the
    // write with a generic message (details in its invocation log).
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["posts.before-create"], "limits": {"timeoutMs": 200}}),
        "faults",
    )
    .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "bad-json"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["data"]["title"].is_object(), "{body}");
    for title in ["spin", "trap", "memory"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                None,
                Some(json!({"title": title})),
            )
            .await;
        assert_eq!(status, 400, "{title}: {body}");
        assert_eq!(
            body["message"], "The write was refused: a function that checks it failed.",
            "{body}"
        );
    }
    assert_eq!(app.count_rows("posts").await, before);

    // Every call is logged: outcome, trigger, captured log lines.
    let slug = logged(&app, &admin, "slug", 4).await;
    assert!(
        slug.iter().all(|i| i["trigger"] == "posts.before-create"),
        "{slug:?}"
    );
    assert!(
        slug.iter().any(|i| i["logs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["message"] == "slug filled"))),
        "{slug:?}"
    );
    let spam = logged(&app, &admin, "no-spam", 1).await;
    assert!(spam.iter().any(|i| i["outcome"] == "rejected"), "{spam:?}");
    let faults = logged(&app, &admin, "faults", 4).await;
    let outcomes: Vec<_> = faults
        .iter()
        .map(|i| i["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"timeout") && outcomes.contains(&"error"),
        "{outcomes:?}"
    );
}

async fn http_functions_get_the_request_and_the_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    app.create_collection(
        &admin,
        json!({
            "name": "posts",
            "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
            "createRule": "@request.auth.id != ''",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
            ],
        }),
    )
    .await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password-1").await;
    let (bob, bob_token) = app.user("bob@example.com", "bob-password-1").await;
    for (owner, token, title) in [
        (&ann, &ann_token, "ann 1"),
        (&ann, &ann_token, "ann 2"),
        (&bob, &bob_token, "bob 1"),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                Some(token),
                Some(json!({"title": title, "owner": owner["id"]})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    deployed(
        &app,
        &admin,
        json!({"name": "posts-api", "triggers": ["http"]}),
        "posts_api",
    )
    .await;
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["http"]}),
        "faults",
    )
    .await;

    // Records are read as the caller: each sees their own, anonymous none.
    let (status, body) = app
        .call(
            Method::GET,
            "/api/functions/posts-api/latest?n=5",
            Some(&ann_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["caller"],
        format!("users/{}", ann["id"].as_str().unwrap())
    );
    assert_eq!(body["total"], 2);
    let (_, body) = app
        .call(
            Method::GET,
            "/api/functions/posts-api/latest",
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(body["titles"], json!(["bob 1"]));
    let (_, body) = app.get_json("/api/functions/posts-api/latest").await;
    assert_eq!(
        (&body["caller"], &body["total"]),
        (&json!("anonymous"), &json!(0)),
        "{body}"
    );
    let (status, _) = app.get_json("/api/functions/posts-api/other").await;
    assert_eq!(status, 404, "the function's own status");
    // Not deployed, or without the http trigger: 404.
    assert_eq!(app.get_json("/api/functions/nothing/x").await.0, 404);

    // Method, query, headers and body in; status, headers and body out. The caller's
    // token is not passed on (the function asks `context.caller`).
    let res = app
        .client
        .put(app.url("/api/functions/faults/echo?a=1&b=two"))
        .header("x-test", "yes")
        .header("authorization", &ann_token)
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-function"], "faults");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["query"], "a=1&b=two");
    assert_eq!(body["x-test"], "yes");
    assert_eq!(body["authorization"], Value::Null);
    assert_eq!(body["body"], "payload");
    assert!(
        body["caller"]
            .as_str()
            .unwrap()
            .contains(ann["id"].as_str().unwrap()),
        "{body}"
    );
    let (status, _) = app
        .call(
            Method::GET,
            "/api/functions/faults/echo",
            Some("forged.token.here"),
            None,
        )
        .await;
    assert_eq!(
        status, 401,
        "a forged token is refused before the function runs"
    );

    // Metrics count the calls.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"basalt_function_calls_total{function="posts-api",outcome="ok"} 4"#),
        "{metrics}"
    );
    // Every call found room in the invocation log.
    assert!(
        metrics.contains("basalt_function_invocations_dropped_total 0\n"),
        "{metrics}"
    );
}

async fn limits_fail_only_the_call_at_fault(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["http"], "limits": {"timeoutMs": 500, "memoryMb": 32, "outputKb": 512, "hostCalls": 100}}),
        "faults",
    )
    .await;
    for (path, code, message) in [
        ("spin", "function_timeout", "time limit"),
        ("memory", "function_failed", "invocation log"),
        ("trap", "function_failed", "invocation log"),
        ("stack", "function_failed", "invocation log"),
        ("big", "function_failed", "larger than its limit"),
        ("chatty", "function_failed", "invocation log"),
    ] {
        let started = Instant::now();
        let (status, body) = app.get_json(&format!("/api/functions/faults/{path}")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (500, Some(code)),
            "{path}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{path}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let rows = logged(&app, &admin, "faults", 6).await;
    let errors: Vec<String> = rows
        .iter()
        .map(|r| r["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    for expected in ["time limit", "out of bounds", "host calls", "larger than"] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }

    // Spinning calls of a function do not stop others — of the same function too —
    // being served meanwhile: all of these answer while the spinners still run.
    deployed(
        &app,
        &admin,
        json!({"name": "spinner", "triggers": ["http"], "limits": {"timeoutMs": 3000}}),
        "faults",
    )
    .await;
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/functions/spinner/spin");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..10 {
        let (status, body) = app.get_json("/api/functions/spinner/hello").await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = app.get_json("/api/health").await;
        assert_eq!(status, 200);
    }
    let served_in = started.elapsed();
    assert!(
        spinning.iter().all(|s| !s.is_finished()),
        "the healthy calls ({served_in:?}) should have been served while the spinners ran"
    );
    for call in spinning {
        assert_eq!(call.await.unwrap().unwrap(), 500);
    }
    // Nothing leaks: more failed calls than the instance pool holds, then a healthy one.
    for _ in 0..110 {
        assert_eq!(app.get_json("/api/functions/faults/trap").await.0, 500);
    }
    assert_eq!(app.get_json("/api/functions/faults/hello").await.0, 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"basalt_function_calls_total{function="faults",outcome="timeout"} 1"#),
        "{metrics}"
    );
    // The server is whole: a slow but healthy call still answers.
    let (status, _) = app.get_json("/api/functions/faults/sleepy").await;
    assert_eq!(status, 200);
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions-sdk")
}

/// Build (once per content of its inputs) a component from a non-Rust example:
/// `build` writes it to the path it is given.
fn built_once(name: &str, inputs: &[PathBuf], build: impl FnOnce(&Path)) -> Vec<u8> {
    let mut hasher = DefaultHasher::new();
    for input in inputs {
        std::fs::read(input).unwrap().hash(&mut hasher);
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = root.join(format!("{name}-{:016x}.wasm", hasher.finish()));
    if !out.exists() {
        let staging = root.join(format!("{name}-{}.wasm.tmp", std::process::id()));
        build(&staging);
        std::fs::rename(&staging, &out).unwrap();
    }
    std::fs::read(&out).unwrap()
}

fn run(program: &Path, args: &[&str], dir: &Path) {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `functions-sdk/examples/js/slug_api.js` built with componentize-js from npm.
fn javascript_guest() -> Vec<u8> {
    let sdk = sdk_dir();
    let example = sdk.join("examples/js");
    let tools = basalt_tests::tools::npm_once(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "componentize-js",
        &example,
        &["package.json"],
        "node_modules/.bin/componentize-js",
    );
    let source = example.join("slug_api.js");
    let wit = sdk.join("wit/basalt.wit");
    built_once(
        "slug_api_js",
        &[source.clone(), wit, example.join("package.json")],
        |out| {
            run(
                Path::new("node"),
                &[
                    tools
                        .join("node_modules/.bin/componentize-js")
                        .to_str()
                        .unwrap(),
                    source.to_str().unwrap(),
                    "--wit",
                    sdk.join("wit").to_str().unwrap(),
                    "--world-name",
                    "function",
                    "--disable",
                    "stdio",
                    "random",
                    "clocks",
                    "http",
                    "fetch-event",
                    "-o",
                    out.to_str().unwrap(),
                ],
                &tools,
            );
        },
    )
}

/// `functions-sdk/examples/python/no_spam_api.py` built with componentize-py from PyPI.
fn python_guest() -> Vec<u8> {
    let sdk = sdk_dir();
    let example = sdk.join("examples/python");
    let python = basalt_tests::tools::python_venv(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "componentize-py",
        &example,
    );
    let source = example.join("no_spam_api.py");
    let wit = sdk.join("wit/basalt.wit");
    built_once(
        "no_spam_api_py",
        &[source, wit, example.join("requirements.txt")],
        |out| {
            run(
                &python,
                &[
                    "-c",
                    "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
                    "-d",
                    sdk.join("wit").to_str().unwrap(),
                    "-w",
                    "function",
                    "componentize",
                    "no_spam_api",
                    "-p",
                    example.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                ],
                &example,
            );
        },
    )
}

async fn javascript_and_python_functions_run_like_rust_ones(backend: Backend) {
    if !basalt_tests::require_tool(
        "node",
        "functions::javascript_and_python_functions_run_like_rust_ones",
    ) || !basalt_tests::require_tool(
        "python3",
        "functions::javascript_and_python_functions_run_like_rust_ones",
    ) {
        return;
    }
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    posts(&app, &admin).await;
    let js = javascript_guest();
    let py = python_guest();
    let (status, body) = deploy(
        &app,
        Some(&admin),
        json!({"name": "slug-js", "triggers": ["posts.before-create", "http"]}),
        js,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["exports"],
        json!({"hooks": true, "http": true, "triggers": false})
    );
    let (status, body) = deploy(
        &app,
        Some(&admin),
        json!({"name": "no-spam-py", "triggers": ["posts.before-create", "posts.before-update", "http"]}),
        py,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The JavaScript hook fills the slug; the Python one refuses spam.
    let (status, post) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "Hello JS World"})),
        )
        .await;
    assert_eq!(
        (status, &post["slug"]),
        (200, &json!("hello-js-world")),
        "{post}"
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/api/collections/posts/records",
            None,
            Some(json!({"title": "more spam"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "Posts may not advertise spam.");
    assert_eq!(
        body["data"]["title"]["code"], "validation_no_spam",
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!(
                "/api/collections/posts/records/{}",
                post["id"].as_str().unwrap()
            ),
            None,
            Some(json!({"body": "spam inside"})),
        )
        .await;
    assert_eq!(
        (status, &body["data"]["body"]["code"]),
        (400, &json!("validation_no_spam")),
        "{body}"
    );

    // Their HTTP endpoints read records as the caller.
    let (status, body) = app.get_json("/api/functions/slug-js/latest").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"caller": "anonymous", "total": 1, "titles": ["Hello JS World"]})
    );
    let (status, body) = app.get_json("/api/functions/no-spam-py/stats").await;
    assert_eq!((status, body), (200, json!({"visible": 1})));
    let (status, _) = app.get_json("/api/functions/no-spam-py/other").await;
    assert_eq!(status, 404);

    let logs = logged(&app, &admin, "slug-js", 1).await;
    assert!(
        logs.iter()
            .any(|i| i["logs"][0]["fields"]["slug"] == "hello-js-world"),
        "{logs:?}"
    );
}

async fn invocations_are_pruned_after_their_retention(backend: Backend) {
    let app = TestApp::builder(backend)
        .setting("functions_log_retention", "1s")
        .spawn()
        .await;
    let admin = app.superuser_token().await;
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["http"]}),
        "faults",
    )
    .await;
    assert_eq!(app.get_json("/api/functions/faults/first").await.0, 200);
    let first = logged(&app, &admin, "faults", 1).await;
    assert_eq!(first.len(), 1);
    let first = first[0]["id"].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.get_json("/api/functions/faults/second").await.0, 200);
    basalt_tests::eventually(
        Duration::from_secs(5),
        "the first call pruned, the second kept",
        || async {
            let rows = invocations(&app, &admin, "faults").await;
            (rows.len() == 1 && rows[0]["id"] != first).then_some(())
        },
    )
    .await;
}

/// A single create runs its before-hooks ahead of its transaction: a hook spinning
/// to its deadline holds no write lock (SQLite's group commit keeps committing other
/// writes, of the same collection too) and, on PostgreSQL, a hooked create is still
/// the one-statement create.
async fn a_slow_hook_holds_up_no_other_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    posts(&app, &admin).await;
    app.create_collection(
        &admin,
        json!({"name": "notes", "createRule": "", "viewRule": "", "fields": [{"name": "title", "type": "text"}]}),
    )
    .await;
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["posts.before-create"], "limits": {"timeoutMs": 3000}}),
        "faults",
    )
    .await;
    let create = |collection: &str, title: &str| {
        let client = app.client.clone();
        let url = app.url(&format!("/api/collections/{collection}/records"));
        let body = json!({"title": title});
        async move { read_json(client.post(url).json(&body).send().await.unwrap()).await }
    };
    let spinning = tokio::spawn(create("posts", "spin"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        let (status, body) = create("notes", &format!("n{i}")).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = create("posts", &format!("p{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        !spinning.is_finished(),
        "the other creates should have committed while the hook spun"
    );
    let (status, body) = spinning.await.unwrap();
    assert_eq!(
        status, 400,
        "a hook at its deadline refuses the write: {body}"
    );
    let (status, page) = app
        .call(
            Method::GET,
            "/api/collections/posts/records?filter=title='spin'",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, page["totalItems"].as_u64()),
        (200, Some(0)),
        "{page}"
    );

    if backend == Backend::Postgres {
        let before = app.state.db.statements();
        for i in 0..20 {
            let (status, body) = create("posts", &format!("counted {i}")).await;
            assert_eq!(status, 200, "{body}");
        }
        let statements = app.state.db.statements() - before;
        // One statement per create, plus what runs beside them on the pool (the
        // invocation log's batched insert; 22 measured). The transactional path
        // (BEGIN, schema version, insert, outbox row, read-back, COMMIT) measured 82.
        assert!(
            statements <= 40,
            "20 hooked creates took {statements} statements"
        );
    }
}

/// Each call's instance is made ahead of it, off its latency, and still serves that
/// one call only, as that call's caller.
async fn instances_made_ahead_serve_one_call_each(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.superuser_token().await;
    posts(&app, &admin).await;
    let (ann, ann_token) = app.user("ann@example.com", "ann-password-1").await;
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    deployed(
        &app,
        &admin,
        json!({"name": "faults", "triggers": ["http", "posts.before-create"]}),
        "faults",
    )
    .await;

    let mut invocations_seen = std::collections::HashSet::new();
    for i in 0..6 {
        // Time for the next instance to be made between calls.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let token = (i % 2 == 1).then_some(ann_token.as_str());
        let (status, body) = app
            .call(Method::GET, "/api/functions/faults/calls", token, None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["calls"], 1, "call {i} ran on a used instance: {body}");
        let caller = body["caller"].as_str().unwrap();
        if token.is_some() {
            assert!(caller.contains(&ann_id), "call {i}: {body}");
        } else {
            assert!(caller.contains("Anonymous"), "call {i}: {body}");
        }
        assert!(
            invocations_seen.insert(body["invocation"].as_str().unwrap().to_owned()),
            "call {i} saw another call's invocation id: {body}"
        );
    }
    // The hook refuses a write when its instance served a call before.
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = app
            .call(
                Method::POST,
                "/api/collections/posts/records",
                Some(&ann_token),
                Some(json!({"title": format!("post {i}")})),
            )
            .await;
        assert_eq!(status, 200, "write {i}: {body}");
    }

    // All but the first call of each export ran on an instance made ahead.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let warm: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("basalt_function_warm_starts_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no warm-start counter in {metrics}"));
    assert_eq!(warm, 5 + 4, "{metrics}");
}
