//! Nothing in the tree assumes one developer's machine.

use std::path::Path;

fn visit(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "node_modules" | "basalt_data"
            ) {
                visit(&path, found);
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not text
        };
        // Spelled in pieces so this file does not match itself.
        for needle in [
            ["/ho", "me/"].concat(),
            ["/Use", "rs/"].concat(),
            ["/ro", "ot/"].concat(),
        ] {
            if text.contains(&needle) {
                found.push(format!("{} contains {needle}", path.display()));
            }
        }
    }
}

#[test]
fn no_absolute_home_paths_in_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    visit(root, &mut found);
    assert!(found.is_empty(), "{found:#?}");
}
