//! The UI's CSS and script, compiled in and served under content-hashed URLs, so a
//! browser may cache them for a year and still never runs an old copy.

/// One compiled-in file.
#[derive(Debug)]
pub struct Asset {
    /// `/_/assets/NAME.HASH.EXT`.
    pub url: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// FNV-1a over the file, at compile time: a cache key, not a security measure.
// Evaluated at compile time only (in `static` initialisers): an index out of bounds
// fails the build, it cannot panic at run time.
#[allow(clippy::indexing_slicing)]
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `prefix` + 16 hex digits of `hash` + `suffix`, as a `'static` string built at
/// compile time.
#[allow(clippy::indexing_slicing)]
const fn hashed_name<const N: usize>(prefix: &str, hash: u64, suffix: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let p = prefix.as_bytes();
    let s = suffix.as_bytes();
    let mut i = 0;
    while i < p.len() {
        out[i] = p[i];
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut d = 0;
    while d < 16 {
        out[p.len() + d] = digits[((hash >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    let mut j = 0;
    while j < s.len() {
        out[p.len() + 16 + j] = s[j];
        j += 1;
    }
    out
}

macro_rules! asset {
    ($name:ident, $file:literal, $prefix:literal, $suffix:literal, $type:literal) => {
        pub static $name: Asset = {
            const BODY: &[u8] =
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file));
            const LEN: usize = $prefix.len() + 16 + $suffix.len();
            const NAME: [u8; LEN] = hashed_name::<LEN>($prefix, fnv1a(BODY), $suffix);
            Asset {
                url: match std::str::from_utf8(&NAME) {
                    Ok(url) => url,
                    Err(_) => "/_/assets/invalid",
                },
                content_type: $type,
                body: BODY,
            }
        };
    };
}

asset!(
    CSS,
    "admin.css",
    "/_/assets/admin.",
    ".css",
    "text/css; charset=utf-8"
);
asset!(
    JS,
    "admin.js",
    "/_/assets/admin.",
    ".js",
    "text/javascript; charset=utf-8"
);

asset!(
    EXPLORER_JS,
    "explorer.js",
    "/_/assets/explorer.",
    ".js",
    "text/javascript; charset=utf-8"
);

/// The asset at `path` (`/_/assets/...`), if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    [&CSS, &JS, &EXPLORER_JS]
        .into_iter()
        .find(|a| a.url == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_hash() {
        assert!(CSS.url.starts_with("/_/assets/admin.") && CSS.url.ends_with(".css"));
        assert_eq!(CSS.url.len(), "/_/assets/admin.".len() + 16 + 4);
        assert_ne!(CSS.url, JS.url);
        assert!(find(JS.url).is_some_and(|a| a.body == JS.body));
        assert!(find("/_/assets/admin.0000000000000000.css").is_none());
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
