//! The processes under load: the release `basalt` binary on a fresh SQLite data dir or
//! a fresh PostgreSQL database, the peer (PocketBase on a fresh data dir) and the
//! ceiling (a bare actix-web handler), each on loopback, each watched for its peak RSS
//! and its CPU time.

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
    /// The PostgreSQL database this server owns, if any.
    pub fn database_url(&self) -> Option<&str> {
        self._pg.as_ref().map(|db| db.url.as_str())
    }

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

/// User plus system CPU time process `pid` (all its threads) has used so far: fields
/// 14 and 15 of `/proc/PID/stat`, in clock ticks. Only that process: PostgreSQL's
/// backends, which do a PostgreSQL-backed server's SQL work, are not in it.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing one, where field 3 (state) comes first.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = clock_ticks();
    let total = utime + stime;
    Some(
        Duration::from_secs(total / ticks)
            + Duration::from_nanos((total % ticks) * 1_000_000_000 / ticks),
    )
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's usual value, if that fails).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
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
    start_basalt_with(bin, backend, email, password, &[]).await
}

/// [`start_basalt`] with extra environment variables (a broker, say).
pub async fn start_basalt_with(
    bin: &Path,
    backend: Backend,
    email: &str,
    password: &str,
    env: &[(&str, String)],
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
    serve_basalt(bin, dir, &database_url, addr, env, pg).await
}

/// `basalt serve` in `dir` on `database_url` at `addr` with `env`, once it answers;
/// `pg` (the database, if the server owns it) is dropped after the process.
async fn serve_basalt(
    bin: &Path,
    dir: tempfile::TempDir,
    database_url: &str,
    addr: SocketAddr,
    env: &[(&str, String)],
    pg: Option<TestDatabase>,
) -> anyhow::Result<Served> {
    let mut serve = basalt_command(bin, dir.path(), database_url, addr);
    for (name, value) in env {
        serve.env(name, value);
    }
    let child = serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start basalt serve")?;
    // Dropped on an error: the process is killed before its storage goes.
    let mut served = Served {
        addr,
        child,
        _dir: Some(dir),
        _pg: pg,
    };
    wait_ready(addr, "/api/health", &mut served.child).await?;
    Ok(served)
}

/// Start another `bin` on the database at `database_url` (another server's: it
/// owns the database), with `env`.
///
/// Fails when the server does not come up.
pub async fn start_basalt_on(
    bin: &Path,
    database_url: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    let addr = free_port()?;
    serve_basalt(bin, dir, database_url, addr, env, None).await
}

/// Start PocketBase (`bin`, see [`crate::peer`]) on a fresh data dir with a superuser
/// `email`/`password`. Its request logs and batch settings are set afterwards through
/// its API ([`crate::peer::configure_pocketbase`]).
///
/// Fails when the superuser cannot be made or the server does not come up.
pub async fn start_pocketbase(bin: &Path, email: &str, password: &str) -> anyhow::Result<Served> {
    let dir = tempfile::tempdir()?;
    // `pb_data` inside the temp dir: PocketBase puts `pb_migrations` and `pb_hooks`
    // beside its data dir, so everything it writes goes when the temp dir does.
    let data = dir.path().join("pb_data");
    let addr = free_port()?;
    let upsert = Command::new(bin)
        .current_dir(dir.path())
        .args(["superuser", "upsert", email, password, "--dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .output()
        .context("run pocketbase superuser upsert")?;
    if !upsert.status.success() {
        bail!(
            "pocketbase superuser upsert failed: {}{}",
            String::from_utf8_lossy(&upsert.stdout),
            String::from_utf8_lossy(&upsert.stderr)
        );
    }
    let child = Command::new(bin)
        .current_dir(dir.path())
        .args(["serve", "--http", &addr.to_string(), "--dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start pocketbase serve")?;
    // Dropped on an error: the process is killed, then the temp dir removed.
    let mut served = Served {
        addr,
        child,
        _dir: Some(dir),
        _pg: None,
    };
    wait_ready(addr, "/api/health", &mut served.child).await?;
    Ok(served)
}

/// Start this program again as the ceiling server (see [`serve_ceiling`]).
pub async fn start_ceiling() -> anyhow::Result<Served> {
    let addr = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--serve-ceiling", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start the ceiling server")?;
    let mut served = Served {
        addr,
        child,
        _dir: None,
        _pg: None,
    };
    wait_ready(addr, "/ceiling", &mut served.child).await?;
    Ok(served)
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
