//! The one table of domain error codes. Every service error (records, auth, schema)
//! describes itself as a [`Problem`]: a stable, transport-neutral [`Code`], a message
//! written for the client, per-field errors and a retry hint. Each adapter maps codes
//! to its own shape — HTTP to a status and `{"status","message","data","code"}`,
//! GraphQL to `extensions.code` — so the same failure reads the same everywhere.

use crate::validation::FieldErrors;

/// A domain error's stable code; its [`Code::name`] is part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// No such record, collection or resource (or one the caller may not see).
    NotFound,
    /// Input values are invalid; the per-field errors say which and why.
    ValidationFailed,
    /// A value must be unique and another record has it.
    NotUnique,
    /// A before-hook refused the write.
    Rejected,
    /// The request is not what the endpoint takes.
    InvalidRequest,
    /// The `filter` parameter (or a rule given inline) does not parse or resolve.
    InvalidFilter,
    /// The `sort` parameter names something that cannot be sorted by.
    InvalidSort,
    /// The `expand` parameter names something that cannot be expanded.
    InvalidExpand,
    /// A GraphQL operation beyond the limits (length, depth, cost, aliases, root
    /// fields).
    QueryTooComplex,
    /// Text with a character the database cannot store.
    InvalidText,
    /// Superusers only.
    Forbidden,
    /// An API key used outside its scopes.
    OutOfScope,
    /// The caller must sign in (or their token is missing, forged, expired, revoked).
    Unauthorized,
    /// Wrong identity or password (deliberately the same for both).
    InvalidCredentials,
    /// A one-time token (verification, reset, email change) that is not valid.
    InvalidOneTimeToken,
    /// An OAuth2 sign-in the provider or Basalt refused.
    OAuth2Failed,
    /// `If-Match` names another version of the record.
    Stale,
    /// The schema was changed meanwhile by someone else.
    SchemaConflict,
    /// The schema kept changing during the request; retry.
    SchemaChanging,
    /// Another change holds the data locked; retry.
    LockTimeout,
    /// The database cannot be reached; retry later.
    DatabaseUnavailable,
    /// The database's disk is full; nothing was saved.
    DiskFull,
    /// A function call failed: it trapped, ran out of memory, answered too much or
    /// nothing (details in the invocation log).
    FunctionFailed,
    /// A function call ran past its time limit and was stopped.
    FunctionTimeout,
    /// A fault inside Basalt; its cause is logged, never shown.
    Internal,
}

impl Code {
    /// Every code, for adapters' exhaustive tables and their tests.
    pub const ALL: [Code; 25] = [
        Code::NotFound,
        Code::ValidationFailed,
        Code::NotUnique,
        Code::Rejected,
        Code::InvalidRequest,
        Code::InvalidFilter,
        Code::InvalidSort,
        Code::InvalidExpand,
        Code::QueryTooComplex,
        Code::InvalidText,
        Code::Forbidden,
        Code::OutOfScope,
        Code::Unauthorized,
        Code::InvalidCredentials,
        Code::InvalidOneTimeToken,
        Code::OAuth2Failed,
        Code::Stale,
        Code::SchemaConflict,
        Code::SchemaChanging,
        Code::LockTimeout,
        Code::DatabaseUnavailable,
        Code::DiskFull,
        Code::FunctionFailed,
        Code::FunctionTimeout,
        Code::Internal,
    ];

    /// The code's stable name, as clients see it.
    pub fn name(self) -> &'static str {
        match self {
            Code::NotFound => "not_found",
            Code::ValidationFailed => "validation_failed",
            Code::NotUnique => "not_unique",
            Code::Rejected => "rejected",
            Code::InvalidRequest => "invalid_request",
            Code::InvalidFilter => "invalid_filter",
            Code::InvalidSort => "invalid_sort",
            Code::InvalidExpand => "invalid_expand",
            Code::QueryTooComplex => "query_too_complex",
            Code::InvalidText => "invalid_text",
            Code::Forbidden => "forbidden",
            Code::OutOfScope => "out_of_scope",
            Code::Unauthorized => "unauthorized",
            Code::InvalidCredentials => "invalid_credentials",
            Code::InvalidOneTimeToken => "invalid_one_time_token",
            Code::OAuth2Failed => "oauth2_failed",
            Code::Stale => "stale",
            Code::SchemaConflict => "schema_conflict",
            Code::SchemaChanging => "schema_changing",
            Code::LockTimeout => "lock_timeout",
            Code::DatabaseUnavailable => "database_unavailable",
            Code::DiskFull => "disk_full",
            Code::FunctionFailed => "function_failed",
            Code::FunctionTimeout => "function_timeout",
            Code::Internal => "internal",
        }
    }

    /// Seconds a client should wait before retrying, for faults that pass.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Code::DatabaseUnavailable => Some(5),
            Code::LockTimeout | Code::SchemaChanging => Some(1),
            _ => None,
        }
    }
}

/// A failure as any transport reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    /// Written for the client; never a fault's cause.
    pub message: String,
    /// Per-field problems (`ValidationFailed`, `NotUnique`, `Rejected`, …).
    pub fields: FieldErrors,
}

impl Problem {
    pub fn new(code: Code, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
            fields: FieldErrors::default(),
        }
    }

    /// With per-field problems.
    pub fn with_fields(mut self, fields: FieldErrors) -> Problem {
        self.fields = fields;
        self
    }

    /// A fault inside Basalt: `cause` is logged here, once, and the client is told
    /// nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Problem {
        tracing::error!(error = %Chain(cause), "internal error");
        Problem::new(
            Code::Internal,
            "Something went wrong while processing your request.",
        )
    }

    /// A database error as a client should see it: a fault they can wait out or fix,
    /// named by its code; anything else is `Internal`.
    pub fn from_db(cause: &sea_orm::DbErr) -> Problem {
        use crate::db::Fault;
        let fault = crate::db::fault(cause);
        if fault != Fault::Other {
            tracing::warn!(error = %Chain(cause), ?fault, "database fault");
        }
        match fault {
            Fault::Unavailable => Problem::new(
                Code::DatabaseUnavailable,
                "The database is unavailable; try again shortly.",
            ),
            Fault::DiskFull => Problem::new(
                Code::DiskFull,
                "The server's disk is full; nothing was saved. Try again once space is freed.",
            ),
            Fault::LockTimeout => Problem::new(
                Code::LockTimeout,
                "The data is locked by another change; try again.",
            ),
            Fault::BadText => Problem::new(
                Code::InvalidText,
                "Text values cannot contain the NUL character.",
            ),
            Fault::Deadlock | Fault::Other => Problem::internal(cause),
        }
    }
}

/// Displays an error with its sources, `a: b: c`, for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_snake_case() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '2')
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
