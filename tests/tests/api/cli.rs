//! The CLI's schema and superuser commands, and the first-start setup link.

use std::time::Duration;

use basalt_tests::process::{self, BasaltProcess};

async fn run(dir: &std::path::Path, args: &[&str]) -> (bool, Vec<String>, Vec<String>) {
    let mut cmd = process::command(dir);
    cmd.args(args);
    let (status, stdout, stderr) = process::run(cmd, Duration::from_secs(60)).await;
    (status.success(), stdout, stderr)
}

async fn sign_in(url: &str, email: &str, password: &str) -> reqwest::Response {
    basalt_tests::client()
        .post(format!(
            "{url}/api/collections/_superusers/auth-with-password"
        ))
        .json(&serde_json::json!({"identity": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_logs_a_setup_link_that_works_until_a_superuser_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = BasaltProcess::start(process::command(dir.path())).await;
    let line = basalt_tests::eventually(Duration::from_secs(10), "the setup link", || {
        let line = server.json_logs().into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("/_/setup/"))
        });
        async move { line }
    })
    .await;
    let message = line["message"].as_str().unwrap();
    let token = message.rsplit("/_/setup/").next().unwrap().trim();
    let collections = |token: String| {
        let url = url.clone();
        async move {
            basalt_tests::client()
                .get(format!("{url}/api/collections"))
                .header("Authorization", token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        collections(token.to_owned()).await,
        200,
        "the setup token works through the API"
    );

    // The CLI against the same data dir, while the server runs.
    let (ok, stdout, stderr) = run(
        dir.path(),
        &["superuser", "upsert", "root@example.com", "root-password"],
    )
    .await;
    assert!(ok, "{stderr:?}");
    assert_eq!(stdout, ["created superuser root@example.com"]);
    assert_eq!(
        collections(token.to_owned()).await,
        401,
        "the setup token dies with its placeholder"
    );
    assert_eq!(
        sign_in(&url, "root@example.com", "root-password")
            .await
            .status(),
        200
    );

    // Upsert again: a new password; the old one stops working.
    let (ok, stdout, _) = run(
        dir.path(),
        &["superuser", "upsert", "root@example.com", "new-password"],
    )
    .await;
    assert!(ok);
    assert_eq!(stdout, ["updated superuser root@example.com"]);
    assert_eq!(
        sign_in(&url, "root@example.com", "root-password")
            .await
            .status(),
        400
    );
    assert_eq!(
        sign_in(&url, "root@example.com", "new-password")
            .await
            .status(),
        200
    );

    // Bad input: one clear line, non-zero exit.
    let (ok, _, stderr) = run(
        dir.path(),
        &["superuser", "upsert", "not-an-email", "short"],
    )
    .await;
    assert!(!ok);
    let last = stderr.last().unwrap();
    assert!(
        last.contains("email") && last.contains("password"),
        "{stderr:?}"
    );

    let (ok, stdout, _) = run(dir.path(), &["superuser", "delete", "root@example.com"]).await;
    assert!(ok);
    assert_eq!(stdout, ["deleted superuser root@example.com"]);
    assert_eq!(
        sign_in(&url, "root@example.com", "new-password")
            .await
            .status(),
        400
    );
    let (ok, _, stderr) = run(dir.path(), &["superuser", "delete", "root@example.com"]).await;
    assert!(!ok, "{stderr:?}");

    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).await.success());

    // With a superuser in place, a restart logs no setup link.
    run(
        dir.path(),
        &["superuser", "upsert", "root@example.com", "root-password"],
    )
    .await;
    let (mut again, _) = BasaltProcess::start(process::command(dir.path())).await;
    assert!(
        !again.logs().iter().any(|l| l.contains("/_/setup/")),
        "no setup link once a superuser exists"
    );
    again.signal("TERM");
    assert!(again.wait_exit(Duration::from_secs(15)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_export_and_import_round_trip_through_files() {
    let source = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let definition = serde_json::json!([
        {"name": "tags"},
        {"name": "posts", "listRule": "", "fields": [
            {"name": "title", "type": "text", "required": true},
            {"name": "views", "type": "number", "onlyInt": true}
        ], "indexes": ["CREATE INDEX idx_posts_title ON posts (title)"]}
    ]);
    let file = source.path().join("schema.json");
    std::fs::write(&file, definition.to_string()).unwrap();
    let file = file.to_str().unwrap();

    let (ok, stdout, stderr) = run(source.path(), &["schema", "import", file]).await;
    assert!(ok, "{stderr:?}");
    assert_eq!(
        stdout,
        [format!("imported {file}: 2 collection(s) changed")]
    );
    let (ok, stdout, _) = run(source.path(), &["schema", "import", file]).await;
    assert!(ok);
    assert_eq!(
        stdout,
        [format!("imported {file}: 0 collection(s) changed")],
        "idempotent"
    );

    let exported = source.path().join("exported.json");
    let (ok, _, stderr) = run(
        source.path(),
        &["schema", "export", exported.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{stderr:?}");
    let text = std::fs::read_to_string(&exported).unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["posts", "tags", "users"],
        "user collections, not system ones"
    );

    // Into a fresh installation: the same schema, then importing again changes nothing.
    let exported = exported.to_str().unwrap();
    let (ok, stdout, stderr) = run(target.path(), &["schema", "import", exported]).await;
    assert!(ok, "{stderr:?}");
    // `users` has the same id and definition on every installation: only two are new.
    assert_eq!(
        stdout,
        [format!("imported {exported}: 2 collection(s) changed")]
    );
    let (ok, stdout, _) = run(target.path(), &["schema", "import", exported]).await;
    assert!(ok);
    assert_eq!(
        stdout,
        [format!("imported {exported}: 0 collection(s) changed")]
    );
    let (ok, stdout, _) = run(target.path(), &["schema", "export", "-"]).await;
    assert!(ok);
    let again: serde_json::Value = serde_json::from_str(&stdout.join("\n")).unwrap();
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        for c in v.as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("created");
            c.as_object_mut().unwrap().remove("updated");
        }
        v
    };
    assert_eq!(
        strip(&again),
        strip(&list),
        "the same schema on both installations"
    );

    // A broken file is refused with one line and changes nothing.
    std::fs::write(source.path().join("bad.json"), r#"[{"name": "Bad Name"}]"#).unwrap();
    let (ok, _, stderr) = run(source.path(), &["schema", "import", "bad.json"]).await;
    assert!(!ok);
    assert!(
        stderr.last().unwrap().contains("collections.0.name"),
        "{stderr:?}"
    );
}

/// `basalt graphql schema` prints the SDL of the database's schema: the collections
/// imported a moment before are in it, hidden fields are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_schema_prints_the_sdl() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    let definition = serde_json::json!([{"name": "posts", "listRule": "", "fields": [
        {"name": "title", "type": "text", "required": true},
        {"name": "secret", "type": "text", "hidden": true}
    ]}]);
    std::fs::write(&file, definition.to_string()).unwrap();
    let (ok, _, stderr) = run(dir.path(), &["schema", "import", file.to_str().unwrap()]).await;
    assert!(ok, "{stderr:?}");
    let (ok, stdout, stderr) = run(dir.path(), &["graphql", "schema"]).await;
    assert!(ok, "{stderr:?}");
    let sdl = stdout.join("\n");
    assert!(sdl.contains("type Post {"), "{sdl}");
    assert!(sdl.contains("posts(where: PostWhere"), "{sdl}");
    assert!(
        sdl.contains("createPost(input: PostCreateInput!): Post"),
        "{sdl}"
    );
    assert!(!sdl.contains("secret"), "{sdl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_deploy_then_serve_from_the_compiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("faults.wasm");
    std::fs::write(&wasm, basalt_tests::guest("faults")).unwrap();
    let wasm = wasm.to_str().unwrap();

    // Refusals name what is wrong.
    let (ok, _, stderr) = run(
        dir.path(),
        &["functions", "deploy", wasm, "--name", "Bad Name"],
    )
    .await;
    assert!(!ok);
    assert!(stderr.join("\n").contains("name:"), "{stderr:?}");
    let (ok, _, stderr) = run(
        dir.path(),
        &[
            "functions",
            "deploy",
            wasm,
            "--name",
            "faults",
            "--trigger",
            "posts.after-create",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.join("\n").contains("posts.after-create"),
        "{stderr:?}"
    );

    let (ok, stdout, stderr) = run(
        dir.path(),
        &[
            "functions",
            "deploy",
            wasm,
            "--name",
            "faults",
            "--trigger",
            "http",
            "--limits",
            r#"{"timeoutMs": 300}"#,
        ],
    )
    .await;
    assert!(ok, "{stderr:?}");
    assert!(
        stdout.join("\n").contains("deployed faults version 1"),
        "{stdout:?}"
    );
    let (ok, stdout, _) = run(dir.path(), &["functions", "list"]).await;
    assert!(ok);
    assert!(
        stdout.join("\n").contains("faults\tv1\tenabled\thttp"),
        "{stdout:?}"
    );

    // Compiled once at deploy, kept in the data dir by digest.
    let cache: Vec<_> = std::fs::read_dir(dir.path().join("basalt_data/functions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let compiled_at = std::fs::metadata(&cache[0]).unwrap().modified().unwrap();

    // Two starts serve it from that cache: the file is not written again.
    for _ in 0..2 {
        let (mut server, url) = BasaltProcess::start(process::command(dir.path())).await;
        let res = basalt_tests::client()
            .get(format!("{url}/api/functions/faults/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = basalt_tests::client()
            .get(format!("{url}/api/functions/faults/spin"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500, "the deployed limits hold");
        server.signal("TERM");
        assert!(server.wait_exit(Duration::from_secs(15)).await.success());
        assert_eq!(
            std::fs::metadata(&cache[0]).unwrap().modified().unwrap(),
            compiled_at
        );
    }
}
