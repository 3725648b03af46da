//! The official `pocketbase` JS SDK, unchanged, against a running Basalt. The test
//! installs the SDK (version pinned in tests/sdk/package.json) into a folder of the
//! build's temp dir that it owns, and needs Node.js and npm: missing, it is skipped
//! loudly, or fails under CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;

use basalt_tests::{Backend, TestApp, require_tool};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// The pinned SDK and the scripts, installed once into a folder named after their
/// contents. Parallel test processes may race here: each installs into a private
/// folder and renames it into place; whoever loses uses the winner's.
fn install_sdk() -> PathBuf {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let files = ["package.json", "collections.mjs", "records.mjs"];
    let mut hasher = DefaultHasher::new();
    for file in files {
        std::fs::read(sdk_dir().join(file))
            .unwrap()
            .hash(&mut hasher);
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("pocketbase-sdk-{:016x}", hasher.finish()));
    if dir.join("node_modules/pocketbase").exists() {
        return dir;
    }
    let staging = root.join(format!("pocketbase-sdk-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    for file in files {
        std::fs::copy(sdk_dir().join(file), staging.join(file)).unwrap();
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&staging)
        .status()
        .expect("run npm");
    assert!(status.success(), "npm install of the PocketBase SDK failed");
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        dir.join("node_modules/pocketbase").exists(),
        "SDK installed"
    );
    dir
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
    run_script(backend, "records.mjs", 8).await;
}

basalt_tests::backend_tests!(
    sdk_collections_calls_work_unchanged,
    sdk_record_calls_work_unchanged
);
