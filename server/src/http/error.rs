//! The one HTTP error body, `{"status","message","data"}` (DESIGN.md §4), and the table
//! from status to the message a client sees when a handler gave none.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::errors::{Code, Problem};
pub use crate::validation::FieldError;
use crate::validation::FieldErrors;

/// An error answered to the client. Its message is written for the client; a 500's
/// cause is logged where it is built, never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub data: BTreeMap<String, FieldError>,
    /// Seconds for `Retry-After` (429s, 503s).
    pub retry_after: Option<u64>,
    /// The domain error's stable name ([`crate::errors::Code`]), sent as `code`;
    /// `None` for errors of HTTP itself (a malformed request, an unknown route).
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: u16,
    message: &'a str,
    data: &'a BTreeMap<String, FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            data: BTreeMap::new(),
            retry_after: None,
            code: None,
        }
    }

    /// The error for a status with its standard message.
    pub fn from_status(status: StatusCode) -> ApiError {
        ApiError::new(status, default_message(status))
    }

    /// Add one field's problem to `data`.
    pub fn with_field(mut self, field: impl Into<String>, code: &str, message: &str) -> ApiError {
        self.data.insert(
            field.into(),
            FieldError {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        self
    }

    /// A 400 carrying per-field problems.
    pub fn validation(message: impl Into<String>, errors: FieldErrors) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            data: errors.into_map(),
            retry_after: None,
            code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 429 telling the client when to try again.
    pub fn too_many_requests(retry_after: std::time::Duration) -> ApiError {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests; try again in {seconds} s."),
            )
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::from_status(StatusCode::NOT_FOUND)
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// A database error as the client should see it (see [`Problem::from_db`]).
    pub fn from_db(cause: &sea_orm::DbErr) -> ApiError {
        Problem::from_db(cause).into()
    }

    /// A 500 whose cause is logged here, once, and never shown to the client.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> ApiError {
        Problem::internal(cause).into()
    }

    /// The body as JSON text.
    pub fn body(&self) -> String {
        let body = Body {
            status: self.status.as_u16(),
            message: &self.message,
            data: &self.data,
            code: self.code,
        };
        // A struct of strings and numbers always serializes.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.body(self.body())
    }
}

/// The HTTP status of each domain code: the one place HTTP decides it.
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::ValidationFailed
        | Code::NotUnique
        | Code::Rejected
        | Code::InvalidRequest
        | Code::InvalidFilter
        | Code::InvalidSort
        | Code::QueryTooComplex
        | Code::InvalidExpand
        | Code::InvalidText
        | Code::InvalidCredentials
        | Code::InvalidOneTimeToken
        | Code::OAuth2Failed => StatusCode::BAD_REQUEST,
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::Forbidden | Code::OutOfScope => StatusCode::FORBIDDEN,
        Code::Stale => StatusCode::PRECONDITION_FAILED,
        Code::SchemaConflict | Code::LockTimeout => StatusCode::CONFLICT,
        Code::SchemaChanging | Code::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        Code::Internal | Code::FunctionFailed | Code::FunctionTimeout => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> ApiError {
        let status = status_of(problem.code);
        ApiError {
            status,
            message: problem.message,
            data: problem.fields.into_map(),
            retry_after: problem.code.retry_after(),
            code: Some(problem.code.name()),
        }
    }
}

impl From<crate::schema::SchemaError> for ApiError {
    fn from(err: crate::schema::SchemaError) -> ApiError {
        err.problem().into()
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(err: crate::auth::AuthError) -> ApiError {
        err.problem().into()
    }
}

impl From<crate::records::RecordError> for ApiError {
    fn from(err: crate::records::RecordError) -> ApiError {
        err.problem().into()
    }
}

/// The message a client sees for a status when nothing more specific was said.
pub fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Something went wrong while processing your request.",
        401 => "The request requires valid authorization.",
        403 => "You are not allowed to perform this request.",
        404 => "The requested resource wasn't found.",
        405 => "The method is not allowed for this resource.",
        406 => "The requested representation is not available.",
        408 => "The request took too long.",
        409 => "The request conflicts with the current state of the resource.",
        411 => "The request needs a Content-Length.",
        412 => "The resource has changed since it was read.",
        413 => "The request body is too large.",
        414 => "The request URI is too long.",
        415 => "The request body has an unsupported content type.",
        429 => "Too many requests.",
        431 => "The request headers are too large.",
        503 => "The service is unavailable.",
        s if s >= 500 => "Something went wrong while processing your request.",
        _ => "The request could not be processed.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_pocketbase_shape() {
        let err = ApiError::bad_request("Failed to create record.").with_field(
            "title",
            "validation_required",
            "Missing required value.",
        );
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "status": 400,
                "message": "Failed to create record.",
                "data": {"title": {"code": "validation_required", "message": "Missing required value."}}
            })
        );
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let cause = std::io::Error::other("password=hunter2 at /secret/path");
        let err = ApiError::internal(&cause);
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.body().contains("hunter2"));
        assert!(!err.body().contains("/secret"));
    }

    #[test]
    fn every_code_has_a_status_and_client_errors_are_4xx() {
        for code in Code::ALL {
            let status = status_of(code);
            let fault = matches!(
                code,
                Code::Internal
                    | Code::DatabaseUnavailable
                    | Code::SchemaChanging
                    | Code::DiskFull
                    | Code::FunctionFailed
                    | Code::FunctionTimeout
            );
            assert_eq!(status.is_server_error(), fault, "{code:?}");
        }
    }

    #[test]
    fn a_problem_becomes_the_pocketbase_body_with_its_code() {
        let mut fields = crate::validation::FieldErrors::default();
        fields.add(
            "title",
            "validation_required",
            "Missing required value.".into(),
        );
        let err = ApiError::from(
            Problem::new(Code::ValidationFailed, "Failed to save the record.").with_fields(fields),
        );
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "status": 400, "message": "Failed to save the record.", "code": "validation_failed",
                "data": {"title": {"code": "validation_required", "message": "Missing required value."}}
            })
        );
    }

    #[test]
    fn every_error_status_has_a_message() {
        for code in 400..600u16 {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!default_message(status).is_empty());
        }
    }
}
