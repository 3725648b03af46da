//! Hashes the migrations' sources into `BASALT_MIGRATIONS_HASH`, so the PostgreSQL
//! template database (see `src/postgres.rs`) is rebuilt whenever a migration changes,
//! not only when one is added.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/src");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    println!(
        "cargo::rustc-env=BASALT_MIGRATIONS_HASH={:016x}",
        hasher.finish()
    );
}
