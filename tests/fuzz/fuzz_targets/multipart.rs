//! The `multipart/form-data` body parser (forms and the SDKs' `@jsonPayload`) on
//! arbitrary bytes, split into arbitrary chunks: it may refuse, never panic, and
//! never keep more than the limit.
#![no_main]

use actix_web::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // First byte: where to split the body into two chunks.
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
    );
    let cut = (split as usize).min(body.len());
    let (first, second) = body.split_at(cut);
    let chunks: Vec<Result<bytes::Bytes, actix_web::error::PayloadError>> = vec![
        Ok(bytes::Bytes::copy_from_slice(first)),
        Ok(bytes::Bytes::copy_from_slice(second)),
    ];
    let stream = futures_util::stream::iter(chunks);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let parsed = runtime.block_on(basalt_server::http::body::parse_multipart(
        &headers, stream, LIMIT,
    ));
    if let Ok(form) = parsed {
        let kept: usize = form
            .values()
            .iter()
            .map(|(k, v)| k.len() + v.to_string().len())
            .sum();
        // JSON escaping can at most grow a value sixfold (\u0000), plus quotes.
        assert!(
            kept <= LIMIT * 7 + 1024,
            "kept {kept} bytes past a {LIMIT}-byte limit"
        );
    }
});
