//! Several real `basalt` processes on one PostgreSQL database (and whatever Redis and
//! RabbitMQ the test names), as a scaled-out deployment runs them; and Debian's nginx
//! in front of them with the compose profile's own configuration.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::postgres::TestDatabase;
use crate::process::{self, BasaltProcess};

pub const SUPERUSER: (&str, &str) = ("root@example.com", "root-password");

/// Basalt instances sharing one fresh PostgreSQL database.
pub struct Instances {
    /// `http://127.0.0.1:PORT` of each instance.
    pub urls: Vec<String>,
    pub processes: Vec<BasaltProcess>,
    /// A superuser's token (valid on every instance).
    pub admin: String,
    pub database_url: String,
    env: Vec<(String, String)>,
    dirs: Vec<tempfile::TempDir>,
    _db: TestDatabase,
}

impl Instances {
    /// Start `n` instances with `env` (`BASALT_*` settings) on a new database, with
    /// a superuser.
    pub async fn start(n: usize, env: &[(&str, String)]) -> Instances {
        let db = TestDatabase::create().await;
        let mut instances = Instances {
            urls: Vec::new(),
            processes: Vec::new(),
            admin: String::new(),
            database_url: db.url.clone(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            dirs: Vec::new(),
            _db: db,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut upsert = instances.command(dir.path());
        upsert.args(["superuser", "upsert", SUPERUSER.0, SUPERUSER.1]);
        let (status, _, logs) = process::run(upsert, Duration::from_secs(60)).await;
        assert!(status.success(), "superuser upsert: {logs:?}");
        for _ in 0..n {
            instances.add().await;
        }
        let (status, body) = call(
            &crate::client(),
            reqwest::Method::POST,
            &format!(
                "{}/api/collections/_superusers/auth-with-password",
                instances.urls[0]
            ),
            None,
            Some(json!({"identity": SUPERUSER.0, "password": SUPERUSER.1})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        instances.admin = body["token"].as_str().unwrap().to_owned();
        instances
    }

    /// Instance `i`'s ERROR and WARN log lines so far, for a failed assertion.
    pub fn problems(&self, i: usize) -> Vec<String> {
        self.processes.get(i).map_or_else(Vec::new, |p| {
            p.json_logs()
                .into_iter()
                .filter(|l| matches!(l["level"].as_str(), Some("ERROR" | "WARN")))
                .map(|l| l.to_string())
                .collect()
        })
    }

    fn command(&self, dir: &Path) -> std::process::Command {
        let mut cmd = process::command(dir);
        cmd.env("BASALT_DATABASE_URL", &self.database_url)
            .env("BASALT_DATA_DIR", dir)
            .env("BASALT_DATABASE_MAX_CONNECTIONS", "5");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Start one more instance; its index.
    pub async fn add(&mut self) -> usize {
        let dir = tempfile::tempdir().expect("temp dir");
        let (process, url) = BasaltProcess::start(self.command(dir.path())).await;
        self.dirs.push(dir);
        self.processes.push(process);
        self.urls.push(url);
        self.urls.len() - 1
    }
}

/// One JSON call: the status and the body (`Null` when it is not JSON).
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.expect("the request is answered");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Debian's nginx on a loopback port, balancing round-robin over `upstreams` with
/// `docker/nginx.conf` (the compose profile's) — only the addresses changed.
pub struct Nginx {
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// The nginx binary, if installed (Debian puts it in /usr/sbin).
    pub fn binary() -> Option<String> {
        ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("-v")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(str::to_owned)
    }

    /// Start nginx in front of `upstreams` (`http://host:port` each).
    pub async fn start(binary: &str, upstreams: &[String]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/nginx.conf"),
        )
        .expect("docker/nginx.conf");
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {};\n", u.trim_start_matches("http://")))
            .collect();
        let mut site = String::new();
        let mut replaced = false;
        for line in shipped.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("server ") && trimmed.ends_with(":8090;") {
                if !replaced {
                    site.push_str(&servers);
                    replaced = true;
                }
            } else if trimmed == "listen 8090;" {
                site.push_str(&format!("    listen 127.0.0.1:{port};\n"));
            } else {
                site.push_str(line);
                site.push('\n');
            }
        }
        assert!(replaced, "docker/nginx.conf names its upstream servers");
        let d = dir.path().display();
        std::fs::write(dir.path().join("basalt.conf"), site).unwrap();
        // Running as root, the workers would otherwise drop to `nobody`, who cannot
        // write the temp dirs.
        let user = if std::env::var("USER").as_deref() == Ok("root")
            || std::fs::read_to_string("/proc/self/status")
                .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        {
            "user root;\n"
        } else {
            ""
        };
        let main = format!(
            "{user}worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/basalt.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = std::process::Command::new(binary)
            .args(["-p", &d.to_string(), "-c"])
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start nginx");
        let url = format!("http://127.0.0.1:{port}");
        let client = crate::client();
        crate::eventually(Duration::from_secs(10), "nginx to answer", || async {
            let res = client.get(format!("{url}/api/health")).send().await.ok()?;
            (res.status() == 200).then_some(())
        })
        .await;
        Nginx {
            url,
            child,
            _dir: dir,
        }
    }

    /// nginx's error log so far.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
