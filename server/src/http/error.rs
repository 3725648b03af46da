//! The one HTTP error body, `{"status","message","data"}` (DESIGN.md §4), and the table
//! from status to the message a client sees when a handler gave none.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

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
    /// A stable, machine-readable name for faults a client may handle on its own
    /// (`database_unavailable`, `disk_full`, `lock_timeout`); sent as `code`.
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

/// How long a client is asked to wait before retrying when the database is away.
const DB_RETRY_AFTER_SECS: u64 = 5;

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

    /// A database error as the client should see it: a fault they can wait out or
    /// fix (503 with `Retry-After`, 507, 409, 400) named by a stable `code`; anything
    /// else is a 500 whose cause is only logged.
    pub fn from_db(cause: &sea_orm::DbErr) -> ApiError {
        use crate::db::Fault;
        let fault = crate::db::fault(cause);
        if fault != Fault::Other {
            tracing::warn!(error = %ErrorChain(cause), ?fault, "database fault");
        }
        match fault {
            Fault::Unavailable => ApiError {
                retry_after: Some(DB_RETRY_AFTER_SECS),
                code: Some("database_unavailable"),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable; try again shortly.",
                )
            },
            Fault::DiskFull => ApiError {
                code: Some("disk_full"),
                ..ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "The server's disk is full; nothing was saved. Try again once space is freed.",
                )
            },
            Fault::LockTimeout => ApiError {
                retry_after: Some(1),
                code: Some("lock_timeout"),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    "The data is locked by another change; try again.",
                )
            },
            Fault::BadText => {
                ApiError::bad_request("Text values cannot contain the NUL character.")
            }
            Fault::Other => ApiError::internal(cause),
        }
    }

    /// A 500 whose cause is logged here, once, and never shown to the client.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR)
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

impl From<crate::schema::SchemaError> for ApiError {
    fn from(err: crate::schema::SchemaError) -> ApiError {
        use crate::schema::SchemaError;
        match err {
            SchemaError::NotFound => ApiError::not_found(),
            SchemaError::Validation(errors) => {
                ApiError::validation("The collection definition is invalid.", errors)
            }
            SchemaError::Conflict => ApiError::new(StatusCode::CONFLICT, err.to_string()),
            SchemaError::Db(ref cause) => ApiError::from_db(cause),
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(err: crate::auth::AuthError) -> ApiError {
        use crate::auth::AuthError;
        match err {
            AuthError::InvalidCredentials => ApiError::bad_request("Failed to authenticate."),
            AuthError::InvalidToken => super::identity::invalid_token(),
            AuthError::CollectionNotFound => ApiError::not_found(),
            AuthError::NotAuthCollection(_) | AuthError::PasswordAuthDisabled => {
                ApiError::bad_request(err.to_string())
            }
            AuthError::Validation(errors) => ApiError::validation("Invalid input.", errors),
            AuthError::InvalidOneTimeToken => ApiError::bad_request("Invalid or expired token.")
                .with_field(
                    "token",
                    "validation_invalid_token",
                    "Invalid, expired or already used token.",
                ),
            AuthError::Unauthorized => super::identity::invalid_token(),
            AuthError::OAuth2(message) => ApiError::bad_request(message),
            AuthError::Record(cause) => ApiError::from(cause),
            AuthError::Internal(ref message) => {
                ApiError::internal(&std::io::Error::other(message.clone()))
            }
        }
    }
}

impl From<crate::records::RecordError> for ApiError {
    fn from(err: crate::records::RecordError) -> ApiError {
        use crate::records::RecordError;
        match err {
            RecordError::NotFound => ApiError::not_found(),
            RecordError::Validation(errors) => {
                ApiError::validation("Failed to save the record.", errors)
            }
            RecordError::Stale => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "The record has changed since it was read; reload it and try again.",
            ),
            RecordError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                "Only superusers can perform this action.",
            ),
            RecordError::OutOfScope(..) => ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{}.", capitalize(&err.to_string())),
            ),
            RecordError::Filter(e) => {
                ApiError::bad_request(format!("Invalid filter or sort: {e}."))
            }
            RecordError::Rejected(message, errors) => ApiError::validation(message, errors),
            RecordError::Invalid(message) => ApiError::bad_request(format!("{message}.")),
            RecordError::Conflict(field) if field == "email" => {
                ApiError::bad_request("Failed to save the record.").with_field(
                    field,
                    "validation_invalid_email",
                    crate::records::validate::EMAIL_INVALID_OR_TAKEN,
                )
            }
            RecordError::Conflict(field) => ApiError::bad_request("Failed to save the record.")
                .with_field(field, "validation_not_unique", "Value must be unique."),
            RecordError::SchemaChanging => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The schema is changing; try again.",
            ),
            RecordError::BrokenRule(ref message) => {
                ApiError::internal(&std::io::Error::other(message.clone()))
            }
            RecordError::Schema(ref cause) => ApiError::internal(cause),
            RecordError::Db(ref cause) => ApiError::from_db(cause),
        }
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

/// Displays an error with its sources, `a: b: c`, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().collect::<String>() + chars.as_str()
    })
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
    fn every_error_status_has_a_message() {
        for code in 400..600u16 {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!default_message(status).is_empty());
        }
    }
}
