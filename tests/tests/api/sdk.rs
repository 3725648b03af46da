//! The official `pocketbase` JS SDK, unchanged, against a running Basalt. The test
//! installs the SDK (version pinned in tests/sdk/package.json) into a folder of the
//! build's temp dir that it owns, and needs Node.js and npm: missing, it is skipped
//! loudly, or fails under CI=true.

use std::path::{Path, PathBuf};

use basalt_tests::{Backend, TestApp, require_tool};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// The pinned SDK and the scripts, installed once per content (see `tools`).
pub(crate) fn install_sdk() -> PathBuf {
    basalt_tests::tools::npm_once(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "pocketbase-sdk",
        &sdk_dir(),
        &[
            "package.json",
            "collections.mjs",
            "records.mjs",
            "auth.mjs",
            "realtime.mjs",
            "scaleout.mjs",
        ],
        "node_modules/pocketbase",
    )
}

/// Run one SDK script against a fresh Basalt; `checks` is how many must print `ok`.
async fn run_script(backend: Backend, script: &str, checks: usize) {
    let test = format!("sdk {script}");
    if !require_tool("node", &test) || !require_tool("npm", &test) {
        return;
    }
    let dir = install_sdk();
    let app = TestApp::spawn(backend).await;
    let snapshot = app.state.schema.snapshot();
    app.state
        .auth
        .upsert_superuser(&snapshot, "sdk@example.com", "sdk-password-1")
        .await
        .unwrap();
    let output = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .env("BASALT_URL", format!("http://{}", app.addr))
        .env("EMAIL", "sdk@example.com")
        .env("PASSWORD", "sdk-password-1")
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        checks,
        "{stdout}"
    );
}

async fn sdk_collections_calls_work_unchanged(backend: Backend) {
    run_script(backend, "collections.mjs", 10).await;
}

async fn sdk_record_calls_work_unchanged(backend: Backend) {
    run_script(backend, "records.mjs", 10).await;
}

async fn sdk_auth_calls_work_unchanged(backend: Backend) {
    run_script(backend, "auth.mjs", 5).await;
}

async fn sdk_realtime_subscribe_works_unchanged(backend: Backend) {
    run_script(backend, "realtime.mjs", 2).await;
}

basalt_tests::backend_tests!(
    sdk_collections_calls_work_unchanged,
    sdk_record_calls_work_unchanged,
    sdk_auth_calls_work_unchanged,
    sdk_realtime_subscribe_works_unchanged
);
