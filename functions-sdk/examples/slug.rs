//! A before-create hook that fills `slug` from `title` when the writer left it empty.
//!
//! Deploy: `basalt functions deploy slug.wasm --name slug --trigger posts.before-create`

use basalt_functions::{Function, Outcome, Write};

struct Slug;

fn slugify(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

impl Function for Slug {
    fn before_create(mut write: Write) -> Outcome {
        let has_slug = write
            .values
            .get("slug")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if has_slug {
            return Outcome::Unchanged;
        }
        let title = write
            .values
            .get("title")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let slug = slugify(title);
        basalt_functions::log::info_with("slug filled", &[("slug", &slug)]);
        write.values.insert("slug".into(), slug.into());
        Outcome::Changed(write.values)
    }
}

basalt_functions::export!(Slug);
