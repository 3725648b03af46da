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
