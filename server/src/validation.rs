//! Per-field validation errors, PocketBase-shaped: a path (`name`, `fields.2.max`) to
//! a stable code and a message. Services fill them; `http` puts them in `data` of the
//! error body. Imports nothing from the crate.

use std::collections::BTreeMap;

use serde::Serialize;

/// One field's problem: a stable code (`validation_required`, …) and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub code: String,
    pub message: String,
}

/// Problems by path. The first problem recorded for a path wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, FieldError>);

impl FieldErrors {
    pub fn add(&mut self, path: impl Into<String>, code: &str, message: String) {
        self.0.entry(path.into()).or_insert(FieldError {
            code: code.to_owned(),
            message,
        });
    }

    /// Add every problem of `other` (paths already present keep theirs).
    pub fn extend(&mut self, other: FieldErrors) {
        for (path, error) in other.0 {
            self.0.entry(path).or_insert(error);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn get(&self, path: &str) -> Option<&FieldError> {
        self.0.get(path)
    }

    pub fn into_map(self) -> BTreeMap<String, FieldError> {
        self.0
    }

    /// `Ok(())` when empty, else the errors.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}
