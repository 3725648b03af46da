//! The `basalt` binary as a user runs it: start-up on the embedded default, restarts,
//! logs, config errors, `migrate`, and graceful shutdown on signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use basalt_migrations::{Migrator, MigratorTrait};
use basalt_tests::eventually;
use basalt_tests::process::{self, BasaltProcess};

fn listening(process: &BasaltProcess) -> serde_json::Value {
    process
        .json_logs()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Basalt is listening"))
        })
        .expect("listening line")
}

async fn health(url: &str) -> u16 {
    basalt_tests::client()
        .get(format!("{url}/api/health"))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_the_default_starts_fast_and_reuses_its_data() {
    let dir = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let (mut first, url) = BasaltProcess::start(process::command(dir.path())).await;
    assert_eq!(health(&url).await, 200);
    let ready_in = started.elapsed();
    assert!(ready_in < Duration::from_secs(1), "ready in {ready_in:?}");

    let line = listening(&first);
    assert_eq!(line["database"], "sqlite:./basalt_data/data.db");
    assert_eq!(line["cache"], "memory");
    assert_eq!(line["broker"], "in-process");
    assert_eq!(line["migrations_applied"], Migrator::migrations().len());
    let installation = line["installation_id"].as_str().unwrap().to_owned();
    assert!(dir.path().join("basalt_data/data.db").is_file());

    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(15)).await.success());

    let mut cmd = process::command(dir.path());
    cmd.arg("serve");
    let (mut second, url) = BasaltProcess::start(cmd).await;
    assert_eq!(health(&url).await, 200);
    let line = listening(&second);
    assert_eq!(line["installation_id"], installation.as_str(), "same data");
    assert_eq!(line["migrations_applied"], 0, "nothing to apply twice");
    second.signal("INT");
    let status = second.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "SIGINT exits 0: {status}");
    assert!(
        second.json_logs().iter().any(|l| l["message"] == "stopped"),
        "pools closed and reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let (process, url) = BasaltProcess::start(process::command(dir.path())).await;
    let client = basalt_tests::client();
    client
        .get(format!("{url}/api/health"))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    let line = eventually(Duration::from_secs(10), "the request's log line", || {
        let line = process
            .json_logs()
            .into_iter()
            .find(|l| l["span"]["request_id"] == "trace-me-7");
        async move { line }
    })
    .await;
    assert_eq!(line["message"], "request completed");
    assert_eq!(line["span"]["route"], "/api/health");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].is_number());
    assert_eq!(line["level"], "INFO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_logs_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_LOG_FORMAT", "pretty");
    let process = BasaltProcess::spawn(cmd);
    let url = eventually(Duration::from_secs(30), "the listening line", || {
        let url = process.logs().iter().find_map(|l| {
            let rest = l.split("Basalt is listening on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        });
        async move { url }
    })
    .await;
    assert_eq!(health(&url).await, 200);
    let line = eventually(Duration::from_secs(10), "the request line", || {
        let line = process
            .logs()
            .into_iter()
            .find(|l| l.contains("request completed"));
        async move { line }
    })
    .await;
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
    assert!(line.contains("route=/api/health"), "{line}");
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes when not on a terminal: {line}"
    );
}

/// Exit code, and stderr must be exactly one line.
async fn fails_with_one_line(cmd: std::process::Command) -> (i32, String) {
    let (status, _stdout, stderr) = process::run(cmd, Duration::from_secs(30)).await;
    assert!(!status.success(), "must fail: {stderr:?}");
    assert_eq!(stderr.len(), 1, "exactly one line: {stderr:#?}");
    (status.code().unwrap(), stderr[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_non_zero_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();

    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_DATABASE_URL", "mysql://db.example/app");
    let (code, line) = fails_with_one_line(cmd).await;
    assert_eq!(code, 2);
    assert!(
        line.contains("`database_url`") && line.contains("BASALT_DATABASE_URL"),
        "{line}"
    );

    let mut cmd = process::command(dir.path());
    cmd.args(["--redis-url", "not a url"]);
    let (_, line) = fails_with_one_line(cmd).await;
    assert!(
        line.contains("`redis_url`") && line.contains("--redis-url"),
        "{line}"
    );

    std::fs::write(dir.path().join("basalt.toml"), "htp = '127.0.0.1:9'\n").unwrap();
    let (code, line) = fails_with_one_line(process::command(dir.path())).await;
    assert_eq!(code, 2);
    assert!(
        line.contains("unknown key `htp`") && line.contains("basalt.toml"),
        "{line}"
    );
    std::fs::remove_file(dir.path().join("basalt.toml")).unwrap();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_HTTP", taken.local_addr().unwrap().to_string());
    let (_, line) = fails_with_one_line(cmd).await;
    assert!(line.contains("`http`") && line.contains("in use"), "{line}");
    assert!(
        !dir.path().join("basalt_data").exists(),
        "a port in use is found before anything is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_env_and_env_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(
        &file,
        "http = 'nowhere'\ndata_dir = 'from_file'\nbody_limit = '4KiB'\n",
    )
    .unwrap();

    // File says an unusable address, env fixes it; data_dir comes from the file.
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_CONFIG", &file);
    let (mut process, url) = BasaltProcess::start(cmd).await;
    assert_eq!(health(&url).await, 200);
    assert_eq!(listening(&process)["database"], "sqlite:from_file/data.db");
    process.signal("TERM");
    assert!(process.wait_exit(Duration::from_secs(15)).await.success());

    // Env says an unusable address, the flag fixes it.
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_HTTP", "nowhere").args([
        "--config",
        file.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
    ]);
    let (mut process, url) = BasaltProcess::start(cmd).await;
    assert_eq!(health(&url).await, 200);
    process.signal("TERM");
    assert!(process.wait_exit(Duration::from_secs(15)).await.success());

    // A named config file that does not exist is an error, not a silent default.
    let mut cmd = process::command(dir.path());
    cmd.args(["--config", "missing.toml"]);
    let (_, line) = fails_with_one_line(cmd).await;
    assert!(line.contains("missing.toml"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_command_applies_pending_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = process::command(dir.path());
    cmd.args(["migrate", "--data-dir", "state"]);
    let (status, stdout, stderr) = process::run(cmd, Duration::from_secs(30)).await;
    assert!(status.success(), "{stderr:#?}");
    let all = Migrator::migrations().len();
    assert_eq!(
        stdout,
        [format!(
            "applied {all} migration(s) to sqlite:state/data.db"
        )]
    );

    let mut cmd = process::command(dir.path());
    cmd.args(["migrate", "--data-dir", "state"]);
    let (status, stdout, _) = process::run(cmd, Duration::from_secs(30)).await;
    assert!(status.success());
    assert_eq!(stdout, ["applied 0 migration(s) to sqlite:state/data.db"]);
}

/// A request is held in flight by a "Redis" that accepts and never answers; SIGTERM
/// must stop new connections at once, let that request finish, close and exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_REDIS_URL", format!("redis://{silent_addr}"))
        .env("BASALT_SHUTDOWN_TIMEOUT", "20");
    let (mut process, url) = BasaltProcess::start(cmd).await;
    let server_addr = url.trim_start_matches("http://").to_owned();

    let in_flight = tokio::spawn(async move {
        let res = basalt_tests::client()
            .get(format!("{url}/api/ready"))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json::<serde_json::Value>().await.unwrap())
    });
    eventually(
        Duration::from_secs(10),
        "the ready check to reach Redis",
        || {
            let n = accepted.load(Ordering::SeqCst);
            async move { (n > 0).then_some(()) }
        },
    )
    .await;
    // The cache's own monitor connects too: give the ready request time to be
    // accepted and to wait on its ping (2 s against a Redis that never answers).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!in_flight.is_finished(), "the ready check waits on Redis");

    process.signal("TERM");
    eventually(
        Duration::from_secs(10),
        "new connections to be refused",
        || {
            let addr = server_addr.clone();
            async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .is_err()
                    .then_some(())
            }
        },
    )
    .await;
    assert!(
        !in_flight.is_finished(),
        "the request was still in flight when accepting stopped"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("redis"),
        "{body}"
    );
    let exit = process.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");
    assert!(
        process
            .json_logs()
            .iter()
            .any(|l| l["message"] == "stopped")
    );
}

/// `basalt health` (the image's healthcheck) exits 0 when the server on `http`
/// answers, non-zero when nothing does; the setup link starts with `app_url` when it
/// is set (a container's published address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_command_and_the_setup_link_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = process::command(dir.path());
    cmd.env("BASALT_HTTP", format!("0.0.0.0:{port}"))
        .env("BASALT_APP_URL", "https://basalt.example.com");
    let (mut server, _) = BasaltProcess::start(cmd).await;
    let link = eventually(Duration::from_secs(10), "the setup link", || {
        let link = server
            .json_logs()
            .iter()
            .filter_map(|l| l["message"].as_str().map(str::to_owned))
            .find(|m| m.contains("/_/setup/"));
        async move { link }
    })
    .await;
    assert!(
        link.contains("https://basalt.example.com/_/setup/"),
        "{link}"
    );

    let check = |port: u16| {
        let mut cmd = process::command(dir.path());
        cmd.env("BASALT_HTTP", format!("0.0.0.0:{port}"))
            .arg("health");
        cmd.output().unwrap()
    };
    let up = check(port);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&up.stdout).trim(), "ok");
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).await.success());
    let down = check(port);
    assert!(!down.status.success(), "nothing listens: unhealthy");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
