//! The functions workloads' guest: the SDK's `faults` example (it answers `/hello`
//! with a small JSON body and passes ordinary writes through), built for
//! wasm32-wasip2 when missing, deployed before its workload and removed after.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The guest component, built with cargo if it is not there yet.
fn guest() -> anyhow::Result<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("wasm32-wasip2/release/examples/faults.wasm");
    if !path.exists() {
        eprintln!("bench: building the functions guest (wasm32-wasip2)");
        let status = std::process::Command::new("cargo")
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "basalt-functions",
                "--example",
                "faults",
            ])
            .current_dir(&root)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!(
                "building the guest failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
            );
        }
    }
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Deploy the guest as `name` with `triggers`.
pub async fn deploy(base: &str, admin: &str, name: &str, triggers: &[&str]) -> anyhow::Result<()> {
    let manifest = serde_json::json!({"name": name, "triggers": triggers});
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_string())
        .part(
            "component",
            reqwest::multipart::Part::bytes(guest()?).file_name("faults.wasm"),
        );
    let res = basalt_tests::client()
        .post(format!("{base}/api/functions"))
        .header("authorization", admin)
        .multipart(form)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!(
            "deploying {name}: {} {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Remove the function `name`.
pub async fn remove(base: &str, admin: &str, name: &str) -> anyhow::Result<()> {
    let res = basalt_tests::client()
        .delete(format!("{base}/api/functions/{name}"))
        .header("authorization", admin)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("removing {name}: {}", res.status());
    }
    Ok(())
}
