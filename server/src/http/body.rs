//! Request bodies as PocketBase's clients send them: JSON, or `multipart/form-data`
//! whose `@jsonPayload` field carries the JSON (the SDKs' batch and file uploads) and
//! whose other fields are text. Bounded by the body limit either way.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::AppState;

/// A request body: form fields (text, to be converted by field type) and JSON values
/// (typed already; from a JSON body or a form's `@jsonPayload`).
pub struct Body {
    pub form: Map<String, Value>,
    pub json: Map<String, Value>,
}

impl Body {
    /// Everything as given, JSON winning over a form field of the same name.
    pub fn values(self) -> Map<String, Value> {
        let mut values = self.form;
        values.extend(self.json);
        values
    }
}

/// The body as a JSON object.
///
/// Fails with 400 for malformed JSON or a non-object, 413 over the body limit, 415 for
/// another content type.
pub async fn object(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Map<String, Value>, ApiError> {
    Ok(read(req, payload).await?.values())
}

/// The body, JSON or form.
///
/// Fails as [`object`] does.
pub async fn read(req: &HttpRequest, payload: web::Payload) -> Result<Body, ApiError> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(usize::MAX, |s| s.settings.body_limit);
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        return multipart(req, payload, limit).await;
    }
    if !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a JSON body (application/json) or a form (multipart/form-data).",
        ));
    }
    let bytes = read_limited(payload, limit).await?;
    Ok(Body {
        form: Map::new(),
        json: parse_object(&bytes)?,
    })
}

async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("The request body could not be read."))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("The body must be a JSON object.")),
        Err(e) => Err(ApiError::bad_request(format!(
            "The body is not valid JSON: {e}."
        ))),
    }
}

async fn multipart(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Body, ApiError> {
    parse_multipart(req.headers(), payload.into_inner(), limit).await
}

/// A `multipart/form-data` body (its boundary in `headers`), read from `stream` up to
/// `limit` bytes. Public for the fuzzer, which feeds it arbitrary bytes.
///
/// Fails with 400 for a malformed form, a file part, a non-UTF-8 text field or a bad
/// `@jsonPayload`, and 413 over the limit.
pub async fn parse_multipart<S>(
    headers: &actix_web::http::header::HeaderMap,
    stream: S,
    limit: usize,
) -> Result<Body, ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>> + 'static,
{
    let mut form = Multipart::new(headers, stream);
    let mut out = Map::new();
    let mut json = Map::new();
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("Malformed form data: {e}.")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .is_some()
        {
            return Err(ApiError::bad_request(format!(
                "`{name}`: file uploads are not supported yet."
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("Malformed form data: {e}.")))?;
            total += chunk.len();
            if total > limit {
                return Err(ApiError::payload_too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        if name == "@jsonPayload" {
            json.extend(parse_object(&bytes)?);
        } else {
            let text = String::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request(format!("`{name}` is not UTF-8 text.")))?;
            // A repeated field is a list (`tags=a`, `tags=b`).
            match out.remove(&name) {
                None => {
                    out.insert(name, Value::String(text));
                }
                Some(Value::Array(mut items)) => {
                    items.push(Value::String(text));
                    out.insert(name, Value::Array(items));
                }
                Some(first) => {
                    out.insert(name, Value::Array(vec![first, Value::String(text)]));
                }
            }
        }
    }
    Ok(Body { form: out, json })
}
