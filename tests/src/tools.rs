//! Tools the suites install for themselves (the `pocketbase` npm SDK, schemathesis from
//! PyPI), once per content of their pinned inputs, into a folder of the build's temp
//! dir. Parallel test processes may race here: each installs into a private staging
//! folder and renames it into place; whoever loses uses the winner's.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// Copy `files` (from `source`) into a folder under `root` named after `name` and a
/// hash of their contents, run `install` there, and return the folder. A folder that
/// already holds `marker` (a path inside it) is reused as it is.
pub fn install_once(
    root: &Path,
    name: &str,
    source: &Path,
    files: &[&str],
    marker: &str,
    install: impl FnOnce(&Path),
) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(source.join(file))
            .unwrap_or_else(|e| panic!("read {}: {e}", source.join(file).display()))
            .hash(&mut hasher);
    }
    let dir = root.join(format!("{name}-{:016x}", hasher.finish()));
    if dir.join(marker).exists() {
        return dir;
    }
    let staging = root.join(format!("{name}-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("create {staging:?}: {e}"));
    for file in files {
        std::fs::copy(source.join(file), staging.join(file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    install(&staging);
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        dir.join(marker).exists(),
        "{name}: installed, but {marker} is missing"
    );
    dir
}

/// [`install_once`] of an npm project: `files` (a `package.json` with pinned
/// versions, and scripts) from `source`, `npm install`ed.
pub fn npm_once(root: &Path, name: &str, source: &Path, files: &[&str], marker: &str) -> PathBuf {
    install_once(root, name, source, files, marker, |staging| {
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(staging)
            .status()
            .expect("run npm");
        assert!(status.success(), "npm install for {name} failed");
    })
}

/// A Python virtualenv under `root` holding `requirements.txt` from `source` (pinned
/// versions), installed with pip from PyPI. Returns the venv's interpreter; run tools
/// as `python -m module` (the venv was moved after install, so the scripts' `#!`
/// lines point at the staging folder).
pub fn python_venv(root: &Path, name: &str, source: &Path) -> PathBuf {
    let dir = install_once(
        root,
        name,
        source,
        &["requirements.txt"],
        "venv/bin/.installed",
        |staging| {
            let run = |program: &Path, args: &[&str]| {
                let status = std::process::Command::new(program)
                    .args(args)
                    .current_dir(staging)
                    .status()
                    .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
                assert!(status.success(), "{} {args:?} failed", program.display());
            };
            run(Path::new("python3"), &["-m", "venv", "venv"]);
            run(
                &staging.join("venv/bin/pip"),
                &[
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    "requirements.txt",
                ],
            );
            std::fs::write(staging.join("venv/bin/.installed"), b"")
                .unwrap_or_else(|e| panic!("mark venv: {e}"));
        },
    );
    dir.join("venv/bin/python3")
}
