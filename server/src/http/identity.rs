//! The caller's identity as an extractor, and the guard for superuser-only routes.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::error::ApiError;
use crate::AppState;
use crate::auth::Identity;

/// The identity behind the request's `Authorization` header. A header that is present
/// but not a valid token is a 401, never silently anonymous.
pub struct Caller(pub Identity);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
            let header = match header {
                None => None,
                Some(Ok(value)) => Some(value),
                Some(Err(_)) => return Err(invalid_token()),
            };
            let snapshot = state.schema.snapshot();
            state
                .auth
                .identify(&snapshot, header.as_deref())
                .await
                .map(Caller)
                .map_err(ApiError::from)
        })
    }
}

pub fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "The request requires valid record authorization token.",
    )
}

impl Caller {
    /// Superusers (and whole-superuser API keys) pass; anyone else gets 401
    /// (anonymous) or 403 (signed in, or a key without that scope).
    pub fn require_superuser(&self) -> Result<(), ApiError> {
        match &self.0 {
            identity if identity.is_full_superuser() => Ok(()),
            Identity::Anonymous => Err(invalid_token()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The authorized record is not allowed to perform this action.",
            )),
        }
    }

    /// Whether the caller is signed in as record `id` of `collection` (by name or id),
    /// through one of that record's own tokens (not an API key).
    pub fn is_record(&self, collection: &str, id: &str) -> bool {
        match &self.0 {
            Identity::Record {
                collection: own,
                record,
            } => {
                (own.name == collection || own.id == collection)
                    && record.get("id").and_then(serde_json::Value::as_str) == Some(id)
            }
            Identity::Superuser { record } => {
                collection == crate::identity::SUPERUSERS
                    && record.get("id").and_then(serde_json::Value::as_str) == Some(id)
            }
            Identity::Anonymous | Identity::ApiKey(_) => false,
        }
    }

    /// For the schema history: which superuser acted.
    pub fn actor(&self) -> crate::schema::Actor {
        crate::schema::Actor::of(&self.0)
    }
}
