//! The processes under load: the release `basalt` binary on a fresh SQLite data dir or
//! a fresh PostgreSQL database, and the ceiling (a bare actix-web handler), each on
//! loopback, each watched for its peak RSS.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use basalt_tests::postgres::TestDatabase;

/// Which database the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Build the release `basalt` (a no-op when it is fresh) and return its path.
pub fn build_basalt() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("bench: building the release basalt binary");
    let output = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "basalt-server",
            "--bin",
            "basalt",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !output.status.success() {
        bail!("building basalt failed");
    }
    // The last artifact line that names the executable.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|msg| msg.get("executable")?.as_str().map(PathBuf::from))
        .next_back()
        .context("cargo named no basalt executable")
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process serving HTTP on loopback.
pub struct Served {
    pub addr: SocketAddr,
    child: Child,
    _dir: Option<tempfile::TempDir>,
    // Dropped after the process: drops the PostgreSQL database.
    _pg: Option<TestDatabase>,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        status_kib(self.pid(), "VmRSS:").map(|k| k * 1024)
    }

    /// Forget the peak so far (`/proc/PID/clear_refs`); later [`Served::peak_rss`]
    /// reads the peak since.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// Peak resident memory since start or the last reset, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        status_kib(self.pid(), "VmHWM:").map(|k| k * 1024)
    }

    /// SIGTERM, then wait for a graceful exit (SIGKILL after 10 s).
    pub fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Wait until `GET path` answers 200.
async fn wait_ready(addr: SocketAddr, path: &str, child: &mut Child) -> anyhow::Result<()> {
    let client = basalt_tests::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the server exited at start: {status}");
        }
        if let Ok(response) = client.get(format!("http://{addr}{path}")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not answer on {addr} within 60 s")
}

/// The environment of a benchmarked `basalt`: fresh storage, quiet logs, and the
/// limits that would throttle a load test (password attempts, realtime connections
/// per address) lifted.
fn basalt_command(bin: &Path, dir: &Path, database_url: &str, addr: SocketAddr) -> Command {
    let mut cmd = Command::new(bin);
    for (name, _) in std::env::vars() {
        if name.starts_with("BASALT_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .env("BASALT_HTTP", addr.to_string())
        .env("BASALT_DATA_DIR", dir)
        .env("BASALT_DATABASE_URL", database_url)
        .env("BASALT_LOG", "warn")
        .env("BASALT_LOG_FORMAT", "json")
        .env("BASALT_RATE_LIMIT_AUTH", "0")
        .env("BASALT_RATE_LIMIT_AUTH_IP", "0")
        .env("BASALT_REALTIME_MAX_CONNECTIONS_PER_IP", "1000000")
        .stdin(Stdio::null());
    cmd
}

/// Start `bin` on a fresh database with a superuser `email`/`password`.
pub async fn start_basalt(
    bin: &Path,
    backend: Backend,
    email: &str,
    password: &str,
) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDatabase::create_empty().await),
    };
    let database_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", dir.path().join("data.db").display()),
    };
    let addr = free_port()?;
    let upsert = basalt_command(bin, dir.path(), &database_url, addr)
        .args(["superuser", "upsert", email, password])
        .output()
        .context("run basalt superuser upsert")?;
    if !upsert.status.success() {
        bail!(
            "basalt superuser upsert failed: {}",
            String::from_utf8_lossy(&upsert.stderr)
        );
    }
    let mut child = basalt_command(bin, dir.path(), &database_url, addr)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start basalt serve")?;
    wait_ready(addr, "/api/health", &mut child).await?;
    Ok(Served {
        addr,
        child,
        _dir: Some(dir),
        _pg: pg,
    })
}

/// Start this program again as the ceiling server (see [`serve_ceiling`]).
pub async fn start_ceiling() -> anyhow::Result<Served> {
    let addr = free_port()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve-ceiling", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start the ceiling server")?;
    wait_ready(addr, "/ceiling", &mut child).await?;
    Ok(Served {
        addr,
        child,
        _dir: None,
        _pg: None,
    })
}

/// The ceiling: actix-web, as Basalt configures it (default workers, keep-alive), with
/// one handler answering a small JSON body. Nothing Basalt does can be faster.
pub fn serve_ceiling(addr: SocketAddr) -> anyhow::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().route(
                "/ceiling",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"id":"ceiling0000000","title":"hello","n":1}"#)
                }),
            )
        })
        .bind(addr)?
        .run()
        .await
    })?;
    Ok(())
}
