//! Run the real `basalt` binary: for start-up, logs, exit codes and signals.
//!
//! The binary is looked up beside the test executable (`target/<profile>/basalt`) or
//! taken from `TEST_BASALT_BIN`. `tests/run` builds it before the tests run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::eventually;

/// Path to the `basalt` binary under test.
pub fn basalt_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TEST_BASALT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/api-HASH → target/<profile>/basalt
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("basalt");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --all-targets` (tests/run does)",
        bin.display()
    );
    // The binary links the server library: a library built after it means the binary
    // is stale, and a test would silently exercise old code.
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let newest_lib = std::fs::read_dir(profile_dir.join("deps"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libbasalt_server-") && n.ends_with(".rlib"))
        })
        .filter_map(|path| modified(&path))
        .max();
    if let (Some(lib), Some(built)) = (newest_lib, modified(&bin)) {
        assert!(
            built >= lib,
            "{} is older than the server library: rebuild it with `cargo build --workspace --all-targets` (tests/run does)",
            bin.display()
        );
    }
    bin
}

/// A `basalt` command run in `dir`, with every inherited `BASALT_*` variable removed,
/// JSON logs, and port 0 so parallel tests never collide.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(basalt_bin());
    cmd.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("BASALT_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("BASALT_LOG_FORMAT", "json")
        .env("BASALT_HTTP", "127.0.0.1:0")
        .stdin(Stdio::null());
    cmd
}

/// A running (or finished) `basalt` process with its stderr collected line by line.
pub struct BasaltProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl BasaltProcess {
    /// Spawn `cmd`, collecting its output in the background.
    pub fn spawn(mut cmd: Command) -> BasaltProcess {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn basalt");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().expect("stderr"), lines.clone());
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        BasaltProcess {
            child,
            lines,
            stdout,
        }
    }

    /// Spawn `cmd` and wait until it logs the URL it listens on; returns that URL.
    pub async fn start(cmd: Command) -> (BasaltProcess, String) {
        let mut process = BasaltProcess::spawn(cmd);
        let url = process.wait_listening().await;
        (process, url)
    }

    /// Wait for the "listening" log line and return its `url` field. Panics with the
    /// output so far if the process exits first or takes longer than 30 s.
    pub async fn wait_listening(&mut self) -> String {
        let lines = self.lines.clone();
        let mut exited = None;
        let found = eventually(Duration::from_secs(30), "basalt to listen", || {
            let url = self
                .json_logs()
                .iter()
                .find(|l| {
                    l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Basalt is listening"))
                })
                .and_then(|l| l["url"].as_str().map(str::to_owned));
            if url.is_none() {
                exited = self.child.try_wait().ok().flatten();
            }
            let done = url.clone().map(Ok).or(exited.map(Err));
            async move { done }
        })
        .await;
        match found {
            Ok(url) => url,
            Err(status) => panic!(
                "basalt exited ({status}) before listening:\n{}",
                lines.lock().unwrap().join("\n")
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `INT`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        eventually(timeout, "basalt to exit", || {
            let status = self.child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The stderr lines that are JSON objects, parsed.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }
}

impl Drop for BasaltProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => into.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
}

/// Run `cmd` to completion with a deadline; returns its status, stdout and stderr.
pub async fn run(cmd: Command, timeout: Duration) -> (ExitStatus, Vec<String>, Vec<String>) {
    let mut process = BasaltProcess::spawn(cmd);
    let status = process.wait_exit(timeout).await;
    // The reader threads finish when the pipes close; wait for them to catch up.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..50 {
        tick.tick().await;
        if Arc::strong_count(&process.lines) == 1 && Arc::strong_count(&process.stdout) == 1 {
            break;
        }
    }
    (status, process.stdout(), process.logs())
}
