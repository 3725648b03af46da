//! JSON request bodies: the size limit and the error each way a body can be wrong maps
//! to. Every route that takes `web::Json<T>` gets this through the app's `JsonConfig`.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::web;

use super::error::ApiError;

/// The `JsonConfig` the app installs: bodies over `limit` bytes are refused with 413 —
/// before reading when `Content-Length` says so, as soon as the limit is crossed
/// otherwise — and every parse failure is a 400 in the standard error body.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| json_error(err, limit).into())
}

/// The raw-body limit for `web::Bytes` and `String` extractors.
pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::payload_too_large(limit)
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a JSON body with Content-Type: application/json.",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request(format!("The JSON body has the wrong shape: {e}."))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request(format!("The body is not valid JSON: {e}."))
        }
        JsonPayloadError::Payload(_) => {
            ApiError::bad_request("The request body could not be read.")
        }
        other => ApiError::internal(&other),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};
    use serde::Deserialize;

    use super::json_config;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        #[allow(dead_code)]
        n: i64,
    }

    async fn echo(_body: web::Json<Input>) -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    async fn call(body: &str, content_type: &str) -> (u16, serde_json::Value) {
        let app = test::init_service(
            App::new()
                .app_data(json_config(64))
                .route("/", web::post().to(echo)),
        )
        .await;
        let req = test::TestRequest::post()
            .uri("/")
            .insert_header(("content-type", content_type))
            .set_payload(body.to_owned())
            .to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status().as_u16();
        let bytes = test::read_body(res).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    #[actix_web::test]
    async fn valid_json_passes() {
        assert_eq!(call(r#"{"n": 1}"#, "application/json").await.0, 204);
    }

    #[actix_web::test]
    async fn malformed_json_is_a_400_with_the_error_body() {
        let (status, body) = call(r#"{"n": 1"#, "application/json").await;
        assert_eq!(status, 400);
        assert_eq!(body["status"], 400);
        assert!(
            body["message"].as_str().unwrap().contains("not valid JSON"),
            "{body}"
        );
        assert!(body["data"].is_object());
    }

    #[actix_web::test]
    async fn wrong_types_and_unknown_fields_are_400() {
        let (status, body) = call(r#"{"n": "one"}"#, "application/json").await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains("wrong shape"));
        let (status, body) = call(r#"{"n": 1, "x": 2}"#, "application/json").await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains("unknown field"));
    }

    #[actix_web::test]
    async fn oversized_body_is_413() {
        let big = format!(r#"{{"n": 1, "pad": "{}"}}"#, "x".repeat(200));
        let (status, body) = call(&big, "application/json").await;
        assert_eq!(status, 413);
        assert_eq!(body["status"], 413);
    }

    #[actix_web::test]
    async fn wrong_content_type_is_415() {
        let (status, body) = call(r#"{"n": 1}"#, "text/plain").await;
        assert_eq!(status, 415);
        assert_eq!(body["status"], 415);
    }
}
