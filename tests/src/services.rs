//! Real services the suites use (PostgreSQL, Redis, RabbitMQ), and what happens when
//! one is missing: with `CI=true` the test fails; otherwise it is skipped, loudly.

use std::time::Duration;

/// True when running under CI (`CI=true`), where a missing service is a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `name` accepts TCP connections at `addr`. When it does not: panic under CI,
/// else print a SKIPPED line naming the test and return false.
pub async fn require_service(name: &str, addr: &str, test: &str) -> bool {
    let reachable =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
            .await
            .is_ok_and(|r| r.is_ok());
    if reachable {
        return true;
    }
    skip_or_fail(name, addr, test, "connection refused or timed out");
    false
}

/// Whether the program `name` runs (`name --version`); see [`require_service`] for
/// what happens when it does not.
pub fn require_tool(name: &str, test: &str) -> bool {
    let runs = std::process::Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        skip_or_fail(name, "PATH", test, "not installed");
    }
    runs
}

/// Run `rabbitmqctl` with `args` (the machine's real broker); panics when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("run rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts the broker's app again however the test that stopped it ends.
pub struct RabbitRestart;

impl Drop for RabbitRestart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

pub(crate) fn skip_or_fail(name: &str, addr: &str, test: &str, why: &str) {
    assert!(
        !ci(),
        "{name} at {addr} is unreachable ({why}) and CI=true: {test} cannot run"
    );
    let line = format!(
        "SKIPPED {test}: {name} at {addr} is unreachable ({why}). \
         Start it, or set CI=true to make this a failure."
    );
    eprintln!("\n*** {line} ***\n");
    // The test runner hides a passing test's output; tests/run prints this file last.
    if let Ok(path) = std::env::var("TEST_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// A Redis server of the test's own on a free port (the machine's shared one is never
/// stopped), killed when dropped.
pub struct OwnRedis {
    pub port: u16,
    pub child: std::process::Child,
}

impl OwnRedis {
    /// Start one on `port`.
    pub fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        OwnRedis { port, child }
    }

    /// Send signal `name` (`STOP`, `CONT`, `KILL`) to it.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
