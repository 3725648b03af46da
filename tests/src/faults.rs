//! Tools of the fault suite: a small tmpfs to fill up, and the check that the test may
//! make one (root). Without root the test is skipped loudly; with `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process may mount filesystems; see [`crate::require_service`] for
/// what happens when it may not.
pub fn require_root(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        crate::services::skip_or_fail("root", "this process", test, "not running as root");
    }
    root
}

/// A tmpfs of a fixed size mounted on a fresh temp folder, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (`mount -o size=…`, e.g. `6m`).
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs on {}",
            dir.path().display()
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file of `bytes` zeros at `name`, to be removed later to free space.
    pub fn ballast(&self, name: &str, bytes: usize) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, vec![0u8; bytes]).expect("write ballast");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A loopback TCP proxy the test controls, between Basalt and a real service: `cut`
/// drops every connection through it and refuses new ones, `resume` accepts again
/// on the same port.
pub struct Proxy {
    pub port: u16,
    target: String,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    accept: Option<tokio::task::JoinHandle<()>>,
    pipes: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free loopback port and forward every connection to `target`.
    pub async fn start(target: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Proxy {
            port,
            target: target.to_owned(),
            state: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let state = std::sync::Arc::clone(&self.state);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut state = state.lock().unwrap();
                state.pipes.retain(|p| !p.is_finished());
                state.pipes.push(pipe);
            }
        });
        self.state.lock().unwrap().accept = Some(accept);
    }

    /// Drop every open connection and refuse new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        if let Some(accept) = state.accept.take() {
            accept.abort();
        }
        for pipe in state.pipes.drain(..) {
            pipe.abort();
        }
    }

    /// Accept connections again, on the same port.
    pub async fn resume(&self) {
        let listener = crate::eventually(
            std::time::Duration::from_secs(10),
            "the proxy port to be free again",
            || async {
                tokio::net::TcpListener::bind(("127.0.0.1", self.port))
                    .await
                    .ok()
            },
        )
        .await;
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
