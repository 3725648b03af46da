//! Who is calling and how they prove it: password sign-in for every auth collection
//! (`_superusers` included), auth tokens, the identity behind an `Authorization`
//! header, and superuser management for the CLI. Rows are read and written through
//! `records`. Imports `schema`, `records` and `db`.

pub mod token;

pub use crate::identity::{Identity, SUPERUSERS};
pub use crate::password;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::db::Db;
use crate::records::{Record, RecordError, RecordService};
use crate::schema::{Collection, Snapshot};
use crate::validation::FieldErrors;
use token::{Claims, Secret};

/// The placeholder superuser behind the first-start setup link.
const INSTALLER_EMAIL: &str = "__installer@basalt.invalid";
/// How long the setup link works.
const SETUP_TOKEN_SECONDS: i64 = 3600;

/// Outcomes of auth a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown identity or wrong password; deliberately the same for both.
    #[error("failed to authenticate")]
    InvalidCredentials,
    /// Missing, malformed, forged, expired or revoked token.
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("collection not found")]
    CollectionNotFound,
    #[error("`{0}` is not an auth collection")]
    NotAuthCollection(String),
    #[error("password sign-in is disabled for this collection")]
    PasswordAuthDisabled,
    #[error("invalid input")]
    Validation(FieldErrors),
    #[error("record error: {0}")]
    Record(RecordError),
    #[error("{0}")]
    Internal(String),
}

/// Signs users in and tells who a token belongs to.
#[derive(Debug)]
pub struct AuthService {
    records: RecordService,
    secret: Secret,
    /// A real argon2 hash of nothing anyone knows: unknown identities are verified
    /// against it, so they take as long as a wrong password.
    dummy_hash: String,
}

/// `len` random letters and digits.
///
/// Fails only when the system has no randomness to give.
pub fn random_string(len: usize) -> Result<String, AuthError> {
    password::random_string(len).map_err(AuthError::Internal)
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

impl AuthService {
    /// Load the installation's token secret from `_settings`, creating it on first
    /// start (one value shared by every instance on the same database).
    ///
    /// Fails when `_settings` cannot be read or written.
    pub async fn new(db: &Db, records: RecordService) -> Result<AuthService, AuthError> {
        let fresh = Value::String(random_string(64)?);
        let secret = db
            .setting_or_insert("tokenSecret", fresh)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let secret = secret
            .as_str()
            .ok_or_else(|| AuthError::Internal("_settings.tokenSecret is not a string".into()))?;
        let dummy_hash = password::hash(random_string(32)?)
            .await
            .map_err(AuthError::Internal)?;
        Ok(AuthService {
            records,
            secret: Secret::new(secret.as_bytes().to_vec()),
            dummy_hash,
        })
    }

    fn auth_collection(snapshot: &Snapshot, name: &str) -> Result<Arc<Collection>, AuthError> {
        let collection = snapshot
            .get(name)
            .cloned()
            .ok_or(AuthError::CollectionNotFound)?;
        if collection.auth.is_none() {
            return Err(AuthError::NotAuthCollection(collection.name.clone()));
        }
        Ok(collection)
    }

    /// Sign in with an identity (email by default) and a password. Returns a token and
    /// the record.
    ///
    /// Fails with `InvalidCredentials` for an unknown identity and for a wrong password
    /// alike, after the same argon2 work.
    #[tracing::instrument(skip_all, fields(collection = %collection_name))]
    pub async fn auth_with_password(
        &self,
        snapshot: &Snapshot,
        collection_name: &str,
        identity: &str,
        password: &str,
        identity_field: Option<&str>,
    ) -> Result<(String, Arc<Collection>, Record), AuthError> {
        let collection = Self::auth_collection(snapshot, collection_name)?;
        let options = collection.auth.clone().unwrap_or_default();
        if !options.password_auth_enabled {
            return Err(AuthError::PasswordAuthDisabled);
        }
        let fields: Vec<String> = match identity_field {
            Some(field) if options.identity_fields.iter().any(|f| f == field) => {
                vec![field.to_owned()]
            }
            Some(field) => {
                let mut errors = FieldErrors::default();
                errors.add(
                    "identityField",
                    "validation_invalid_value",
                    format!("`{field}` is not an identity field of this collection."),
                );
                return Err(AuthError::Validation(errors));
            }
            None => options.identity_fields.clone(),
        };
        let mut found = None;
        if !identity.is_empty() && !password.is_empty() {
            for field in &fields {
                found = self
                    .records
                    .find_by_field(&collection.id, field, &Value::String(identity.to_owned()))
                    .await
                    .map_err(AuthError::Record)?;
                if found.is_some() {
                    break;
                }
            }
        }
        let hash = found
            .as_ref()
            .and_then(|r| r.get("password"))
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .unwrap_or(&self.dummy_hash)
            .to_owned();
        let matches = password::verify(password.to_owned(), hash).await;
        let Some(record) = found.filter(|_| matches) else {
            return Err(AuthError::InvalidCredentials);
        };
        // The collection's authRule must hold for the record (e.g. `verified = true`);
        // failing it looks like any other failed sign-in.
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let allowed = self
            .records
            .satisfies(&collection.id, id, options.auth_rule.as_deref())
            .await
            .map_err(AuthError::Record)?;
        if !allowed {
            return Err(AuthError::InvalidCredentials);
        }
        let ttl = i64::try_from(options.token_duration).unwrap_or(i64::MAX);
        let token = self.issue_token(&collection, &record, ttl)?;
        Ok((token, collection, record))
    }

    /// A token for `record`, valid `seconds` from now (negative: already expired, which
    /// tests use).
    ///
    /// Fails when the record has no token key.
    pub fn issue_token(
        &self,
        collection: &Collection,
        record: &Record,
        seconds: i64,
    ) -> Result<String, AuthError> {
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let token_key = record
            .get("tokenKey")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| AuthError::Internal("the record has no token key".into()))?;
        let claims = Claims {
            id: id.to_owned(),
            collection_id: collection.id.clone(),
            kind: "auth".to_owned(),
            refreshable: true,
            exp: jsonwebtoken::get_current_timestamp().saturating_add_signed(seconds),
        };
        token::sign(&self.secret, &claims, token_key).map_err(AuthError::Internal)
    }

    /// The identity behind an `Authorization` header value (`TOKEN` or `Bearer TOKEN`);
    /// no header is anonymous.
    ///
    /// Fails with `InvalidToken` for anything that is not a valid, unexpired auth token
    /// of an existing record whose token key still matches.
    pub async fn identify(
        &self,
        snapshot: &Snapshot,
        authorization: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Identity::Anonymous);
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or(header)
            .trim();
        let claims = token::peek(token).ok_or(AuthError::InvalidToken)?;
        if claims.kind != "auth" {
            return Err(AuthError::InvalidToken);
        }
        let collection = snapshot
            .by_id(&claims.collection_id)
            .filter(|c| c.auth.is_some())
            .cloned()
            .ok_or(AuthError::InvalidToken)?;
        let record = self
            .records
            .find_by_id(&collection.id, &claims.id)
            .await
            .map_err(AuthError::Record)?
            .ok_or(AuthError::InvalidToken)?;
        let token_key = record
            .get("tokenKey")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::InvalidToken)?;
        token::verify(&self.secret, token, &collection.id, token_key)
            .ok_or(AuthError::InvalidToken)?;
        Ok(if collection.name == SUPERUSERS {
            Identity::Superuser { record }
        } else {
            Identity::Record { collection, record }
        })
    }

    /// Create the superuser `email`, or set the password of the one that exists (which
    /// also rotates its token key: every earlier token of it stops working). Returns
    /// the record and whether it was created. The setup placeholder, if any, is removed.
    ///
    /// Fails with `Validation` for a malformed email or a password outside 8–256 bytes.
    pub async fn upsert_superuser(
        &self,
        snapshot: &Snapshot,
        email: &str,
        password: &str,
    ) -> Result<(Record, bool), AuthError> {
        let mut errors = FieldErrors::default();
        if !valid_email(email) {
            errors.add(
                "email",
                "validation_invalid_email",
                "Must be a valid email address.".into(),
            );
        }
        if !(8..=256).contains(&password.len()) {
            errors.add(
                "password",
                "validation_length_out_of_range",
                "Must be 8 to 256 bytes long.".into(),
            );
        }
        errors.into_result().map_err(AuthError::Validation)?;
        let collection = Self::auth_collection(snapshot, SUPERUSERS)?;
        let hash = password::hash(password.to_owned())
            .await
            .map_err(AuthError::Internal)?;
        let existing = self
            .records
            .find_by_field(&collection.id, "email", &Value::String(email.to_owned()))
            .await
            .map_err(AuthError::Record)?;
        let values = json!({"password": hash, "tokenKey": random_string(50)?});
        let Value::Object(mut values) = values else {
            return Err(AuthError::Internal("values".into()));
        };
        let result = match existing
            .as_ref()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
        {
            Some(id) => (
                self.records
                    .update_system(&collection.id, id, values)
                    .await
                    .map_err(AuthError::Record)?,
                false,
            ),
            None => {
                values.insert("email".into(), Value::String(email.to_owned()));
                values.insert("verified".into(), Value::Bool(true));
                (
                    self.records
                        .insert_system(&collection.id, values)
                        .await
                        .map_err(AuthError::Record)?,
                    true,
                )
            }
        };
        if email != INSTALLER_EMAIL {
            self.delete_superuser(snapshot, INSTALLER_EMAIL).await?;
        }
        Ok(result)
    }

    /// Delete the superuser `email`; `false` when there was none.
    ///
    /// Fails when the record cannot be read or deleted.
    pub async fn delete_superuser(
        &self,
        snapshot: &Snapshot,
        email: &str,
    ) -> Result<bool, AuthError> {
        let collection = Self::auth_collection(snapshot, SUPERUSERS)?;
        let existing = self
            .records
            .find_by_field(&collection.id, "email", &Value::String(email.to_owned()))
            .await
            .map_err(AuthError::Record)?;
        match existing
            .as_ref()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
        {
            Some(id) => self
                .records
                .delete_system(&collection.id, id)
                .await
                .map_err(AuthError::Record),
            None => Ok(false),
        }
    }

    /// When no real superuser exists yet: a token, valid for an hour, of a placeholder
    /// superuser, for the first-start setup link. It works through the API like any
    /// superuser token; creating a real superuser removes the placeholder.
    ///
    /// Fails when the records cannot be read or written.
    pub async fn setup_token(&self, snapshot: &Snapshot) -> Result<Option<String>, AuthError> {
        let collection = Self::auth_collection(snapshot, SUPERUSERS)?;
        let count = self
            .records
            .count(&collection.id)
            .await
            .map_err(AuthError::Record)?;
        let installer = self
            .records
            .find_by_field(
                &collection.id,
                "email",
                &Value::String(INSTALLER_EMAIL.to_owned()),
            )
            .await
            .map_err(AuthError::Record)?;
        let real = count - u64::from(installer.is_some());
        if real > 0 {
            return Ok(None);
        }
        let (record, _) = self
            .upsert_superuser(snapshot, INSTALLER_EMAIL, &random_string(40)?)
            .await?;
        self.issue_token(&collection, &record, SETUP_TOKEN_SECONDS)
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b.co", "a@", "a@b", "a b@c.de", "a@.com", "a@b.com.", "a@b@c.de",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn random_strings_are_alphanumeric_and_differ() {
        let a = random_string(50).unwrap();
        let b = random_string(50).unwrap();
        assert_eq!(a.len(), 50);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
