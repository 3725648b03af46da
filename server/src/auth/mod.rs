//! Who is calling and how they prove it: password sign-in for every auth collection
//! (`_superusers` included), auth tokens, the identity behind an `Authorization`
//! header, and superuser management for the CLI. Rows are read and written through
//! `records`. Imports `schema`, `records` and `db`.

pub mod admin;
pub mod keys;
pub mod oauth2;
pub mod token;

pub use crate::identity::{Identity, SUPERUSERS};
pub use crate::password;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::db::Db;
use crate::mail::{Mail, Mailer, render};
use crate::records::{Record, RecordError, RecordService};
use crate::schema::{Collection, FieldKind, Snapshot};
use crate::validation::FieldErrors;
use token::{Claims, Kind, Secret};

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
    /// A verification, password-reset or email-change token that is malformed,
    /// forged, expired, for another record state, or already used.
    #[error("invalid or expired token")]
    InvalidOneTimeToken,
    /// The endpoint needs a signed-in record of this collection.
    #[error("the request requires valid record authorization token")]
    Unauthorized,
    /// OAuth2 sign-in refused; the message is for the client.
    #[error("{0}")]
    OAuth2(String),
    #[error("record error: {0}")]
    Record(RecordError),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The error as every transport reports it (see [`crate::errors`]).
    pub fn problem(&self) -> crate::errors::Problem {
        use crate::errors::{Code, Problem};
        match self {
            AuthError::InvalidCredentials => {
                Problem::new(Code::InvalidCredentials, "Failed to authenticate.")
            }
            AuthError::InvalidToken | AuthError::Unauthorized => Problem::new(
                Code::Unauthorized,
                "The request requires valid record authorization token.",
            ),
            AuthError::CollectionNotFound => {
                Problem::new(Code::NotFound, "The requested resource wasn't found.")
            }
            AuthError::NotAuthCollection(name) => Problem::new(
                Code::InvalidRequest,
                format!("`{name}` is not an auth collection."),
            ),
            AuthError::PasswordAuthDisabled => Problem::new(
                Code::InvalidRequest,
                "Password sign-in is disabled for this collection.",
            ),
            AuthError::Validation(errors) => {
                Problem::new(Code::ValidationFailed, "Invalid input.").with_fields(errors.clone())
            }
            AuthError::InvalidOneTimeToken => {
                let mut fields = FieldErrors::default();
                fields.add(
                    "token",
                    "validation_invalid_token",
                    "Invalid, expired or already used token.".into(),
                );
                Problem::new(Code::InvalidOneTimeToken, "Invalid or expired token.")
                    .with_fields(fields)
            }
            AuthError::OAuth2(message) => Problem::new(Code::OAuth2Failed, message.clone()),
            AuthError::Record(cause) => cause.problem(),
            AuthError::Internal(message) => {
                Problem::internal(&std::io::Error::other(message.clone()))
            }
        }
    }
}

/// Signs users in, tells who a token belongs to, and runs the one-time-token flows
/// (verification, password reset, email change). Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthService {
    records: RecordService,
    secret: Secret,
    /// A real argon2 hash of nothing anyone knows: unknown identities are verified
    /// against it, so they take as long as a wrong password.
    dummy_hash: String,
    mailer: Mailer,
    /// The application's name and URL (for mails) come from here, per use.
    live: Arc<crate::config::live::LiveSettings>,
    pub keys: keys::ApiKeys,
    db: Db,
    http: reqwest::Client,
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
    pub async fn new(
        db: &Db,
        records: RecordService,
        mailer: Mailer,
        live: Arc<crate::config::live::LiveSettings>,
    ) -> Result<AuthService, AuthError> {
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
            mailer,
            live,
            keys: keys::ApiKeys::new(db.clone()),
            db: db.clone(),
            http: oauth2::client().map_err(AuthError::Internal)?,
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
            .satisfies(&collection.id, id, crate::filter::rules::RuleOp::Auth)
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
        self.issue(Kind::Auth, collection, record, seconds, true, None)
    }

    /// What a token of `kind` for `record` is signed with besides the secret: its
    /// token key, and for one-time tokens its email too.
    fn material(kind: Kind, record: &Record) -> Option<String> {
        let token_key = record
            .get("tokenKey")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())?;
        Some(match kind {
            Kind::Auth => token_key.to_owned(),
            _ => format!(
                "{token_key}{}",
                record
                    .get("email")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
        })
    }

    /// A token of `kind` for `record`, valid `seconds` from now.
    ///
    /// Fails when the record has no token key.
    pub fn issue(
        &self,
        kind: Kind,
        collection: &Collection,
        record: &Record,
        seconds: i64,
        refreshable: bool,
        new_email: Option<&str>,
    ) -> Result<String, AuthError> {
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let material = Self::material(kind, record)
            .ok_or_else(|| AuthError::Internal("the record has no token key".into()))?;
        let claims = Claims {
            id: id.to_owned(),
            collection_id: collection.id.clone(),
            kind: kind.as_str().to_owned(),
            refreshable,
            exp: jsonwebtoken::get_current_timestamp().saturating_add_signed(seconds),
            email: (kind != Kind::Auth).then(|| {
                record
                    .get("email")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }),
            new_email: new_email.map(str::to_owned),
            started: None,
        };
        token::sign(&self.secret, &claims, &material).map_err(AuthError::Internal)
    }

    /// The record a token of `kind` for `collection` belongs to, with its claims.
    /// `None` for anything else: malformed, forged, expired, another collection or
    /// type, or a record whose key material has changed since. With `version` (the
    /// schema version of the request) the record may come from the identity cache.
    async fn check_token(
        &self,
        collection: &Collection,
        token: &str,
        kind: Kind,
        version: Option<i64>,
    ) -> Result<Option<(Record, Claims)>, AuthError> {
        let Some(claims) = token::peek(token) else {
            return Ok(None);
        };
        if claims.collection_id != collection.id || claims.kind != kind.as_str() {
            return Ok(None);
        }
        let Some(record) = self.token_record(collection, &claims.id, version).await? else {
            return Ok(None);
        };
        let Some(material) = Self::material(kind, &record) else {
            return Ok(None);
        };
        Ok(
            token::verify(&self.secret, token, kind, &collection.id, &material)
                .map(|claims| (record, claims)),
        )
    }

    /// The record a token names, read under schema `version` when given: then from
    /// the identity cache if it is there, and kept there after a read, so a signed-in
    /// request reads no row of its caller. Superusers are never cached: the CLI
    /// (`basalt superuser …`) changes them from another process, and a rotated
    /// superuser key must stop working at once.
    async fn token_record(
        &self,
        collection: &Collection,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<Record>, AuthError> {
        let cache = self.records.identities();
        let version = version.filter(|_| collection.name != SUPERUSERS);
        let shared = match version {
            Some(_) => cache.shared_generation(&collection.name, id).await,
            None => None,
        };
        if let Some(version) = version
            && let Some(record) = cache.get(&collection.name, id, version, shared.as_deref())
        {
            return Ok(Some(record));
        }
        let generation = (cache.generation(), shared);
        let record = self
            .records
            .find_by_id(&collection.id, id)
            .await
            .map_err(AuthError::Record)?;
        if let (Some(version), Some(record)) = (version, &record) {
            cache.put(&collection.name, id, version, generation, record.clone());
        }
        Ok(record)
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
        if token.starts_with(keys::PREFIX) {
            return self.keys.identify(token).await;
        }
        let claims = token::peek(token).ok_or(AuthError::InvalidToken)?;
        let collection = snapshot
            .by_id(&claims.collection_id)
            .filter(|c| c.auth.is_some())
            .cloned()
            .ok_or(AuthError::InvalidToken)?;
        let (record, _) = self
            .check_token(&collection, token, Kind::Auth, Some(snapshot.version()))
            .await?
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

    /// The signed-in record of auth collection `name` behind `identity`.
    fn own_record(
        snapshot: &Snapshot,
        name: &str,
        identity: &Identity,
    ) -> Result<(Arc<Collection>, Record), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let record = match identity {
            Identity::Record {
                collection: own,
                record,
            } if own.id == collection.id => record.clone(),
            Identity::Superuser { record } if collection.name == SUPERUSERS => record.clone(),
            _ => return Err(AuthError::Unauthorized),
        };
        Ok((collection, record))
    }

    /// `auth-refresh`: a new auth token for the signed-in record of `name`.
    ///
    /// Fails with `Unauthorized` for anyone else (another collection, anonymous) and
    /// `InvalidCredentials` when the collection's authRule no longer holds.
    pub async fn refresh(
        &self,
        snapshot: &Snapshot,
        name: &str,
        identity: &Identity,
    ) -> Result<(String, Arc<Collection>, Record), AuthError> {
        let (collection, record) = Self::own_record(snapshot, name, identity)?;
        let options = collection.auth.clone().unwrap_or_default();
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let allowed = self
            .records
            .satisfies(&collection.id, id, crate::filter::rules::RuleOp::Auth)
            .await
            .map_err(AuthError::Record)?;
        if !allowed {
            return Err(AuthError::InvalidCredentials);
        }
        let ttl = i64::try_from(options.token_duration).unwrap_or(i64::MAX);
        let token = self.issue_token(&collection, &record, ttl)?;
        Ok((token, collection, record))
    }

    /// `impersonate/{id}` (superusers): a non-refreshable auth token for any record
    /// of an auth collection, valid `duration` seconds (the collection's token
    /// duration by default).
    ///
    /// Fails with `CollectionNotFound`/`NotAuthCollection`, or `Record(NotFound)`.
    pub async fn impersonate(
        &self,
        snapshot: &Snapshot,
        name: &str,
        id: &str,
        duration: Option<u64>,
    ) -> Result<(String, Arc<Collection>, Record), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let record = self
            .records
            .find_by_id(&collection.id, id)
            .await
            .map_err(AuthError::Record)?
            .ok_or(AuthError::Record(RecordError::NotFound))?;
        let options = collection.auth.clone().unwrap_or_default();
        let seconds = duration
            .filter(|d| *d > 0)
            .unwrap_or(options.token_duration);
        let ttl = i64::try_from(seconds).unwrap_or(i64::MAX);
        let token = self.issue(Kind::Auth, &collection, &record, ttl, false, None)?;
        Ok((token, collection, record))
    }

    /// Sign a record out everywhere: a new token key, so every earlier token of it
    /// (auth and one-time alike) is refused from now on.
    ///
    /// Fails with `Record(NotFound)` for a missing record.
    pub async fn revoke_sessions(
        &self,
        snapshot: &Snapshot,
        name: &str,
        id: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let mut values = serde_json::Map::new();
        values.insert("tokenKey".into(), Value::String(random_string(50)?));
        self.records
            .update_system(&collection.id, id, values)
            .await
            .map_err(AuthError::Record)?;
        Ok(())
    }

    /// `auth-methods`, in PocketBase's shape. OAuth2 providers come with a fresh
    /// `state` and PKCE pair and a ready `authURL` (without the redirect URL, which
    /// the client appends).
    ///
    /// Fails when the collection is not an auth collection.
    pub fn auth_methods(&self, snapshot: &Snapshot, name: &str) -> Result<Value, AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let options = collection.auth.clone().unwrap_or_default();
        let mut providers = Vec::new();
        if options.oauth2.enabled {
            for provider in &options.oauth2.providers {
                let state = random_string(30)?;
                let verifier = random_string(43)?;
                let challenge = oauth2::challenge(&verifier);
                let mut url = url::Url::parse(&provider.auth_url)
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                url.query_pairs_mut()
                    .append_pair("client_id", &provider.client_id)
                    .append_pair("response_type", "code")
                    .append_pair("scope", oauth2::scopes(&provider.name))
                    .append_pair("state", &state)
                    .append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
                providers.push(json!({
                    "name": provider.name,
                    "displayName": provider.display_name,
                    "state": state,
                    "codeVerifier": verifier,
                    "codeChallenge": challenge,
                    "codeChallengeMethod": "S256",
                    "authURL": format!("{url}&redirect_uri="),
                    "pkce": true,
                }));
            }
        }
        Ok(json!({
            "password": {
                "enabled": options.password_auth_enabled,
                "identityFields": options.identity_fields,
            },
            "oauth2": {"enabled": options.oauth2.enabled && !providers.is_empty(), "providers": providers},
            "mfa": {"enabled": false, "duration": 0},
            "otp": {"enabled": false, "duration": 0},
        }))
    }

    /// Render the collection's `template` for `record` with `token` and send it to
    /// `to` (the record's email unless given).
    async fn mail(
        &self,
        collection: &Collection,
        template: &str,
        kind: Kind,
        record: &Record,
        token: &str,
        to: &str,
    ) -> Result<(), AuthError> {
        let options = collection.auth.clone().unwrap_or_default();
        let template = options
            .templates
            .get(template)
            .cloned()
            .ok_or_else(|| AuthError::Internal(format!("no {template}")))?;
        let app = self.live.current();
        let fill = |text: &str| render(text, &app.app_name, &app.app_url, token, record);
        self.mailer
            .send(Mail {
                kind: kind.as_str().to_owned(),
                to: to.to_owned(),
                subject: fill(&template.subject),
                body: fill(&template.body),
            })
            .await
            .map_err(AuthError::Internal)
    }

    /// Check an email's shape (400 naming `email`), lower-cased.
    fn email_input(email: &str, field: &str) -> Result<String, AuthError> {
        let email = email.trim().to_lowercase();
        if valid_email(&email) {
            return Ok(email);
        }
        let mut errors = FieldErrors::default();
        errors.add(
            field,
            "validation_invalid_email",
            "Must be a valid email address.".into(),
        );
        Err(AuthError::Validation(errors))
    }

    /// Run `work` in the background, logging its failure: the request-* endpoints
    /// answer at once and the same way whether the account exists or not.
    fn in_background(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = Result<(), AuthError>> + Send + 'static,
    ) {
        tokio::spawn(async move {
            if let Err(err) = work.await {
                tracing::error!(%err, "{what} failed");
            }
        });
    }

    /// `request-verification`: mail a verification link if an unverified record
    /// has this email. Answers the same whether or not one does.
    ///
    /// Fails only for a malformed email.
    pub fn request_verification(
        &self,
        snapshot: &Snapshot,
        name: &str,
        email: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let email = Self::email_input(email, "email")?;
        let this = self.clone();
        self.in_background("request-verification", async move {
            let Some(record) = this
                .records
                .find_by_field(&collection.id, "email", &Value::String(email.clone()))
                .await
                .map_err(AuthError::Record)?
            else {
                return Ok(());
            };
            if record.get("verified") == Some(&Value::Bool(true)) {
                return Ok(());
            }
            let options = collection.auth.clone().unwrap_or_default();
            let ttl = i64::try_from(options.verification_duration).unwrap_or(i64::MAX);
            let token = this.issue(Kind::Verification, &collection, &record, ttl, false, None)?;
            this.mail(
                &collection,
                "verificationTemplate",
                Kind::Verification,
                &record,
                &token,
                &email,
            )
            .await
        });
        Ok(())
    }

    /// `confirm-verification`: mark the token's record verified. Works once.
    ///
    /// Fails with `InvalidOneTimeToken` for a bad, expired or used token.
    pub async fn confirm_verification(
        &self,
        snapshot: &Snapshot,
        name: &str,
        token: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let (record, _) = self
            .check_token(&collection, token, Kind::Verification, None)
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        if record.get("verified") == Some(&Value::Bool(true)) {
            return Err(AuthError::InvalidOneTimeToken);
        }
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let mut values = serde_json::Map::new();
        values.insert("verified".into(), Value::Bool(true));
        self.records
            .update_system(&collection.id, id, values)
            .await
            .map_err(AuthError::Record)?;
        Ok(())
    }

    /// `request-password-reset`: mail a reset link if a record has this email.
    /// Answers the same whether or not one does.
    ///
    /// Fails only for a malformed email.
    pub fn request_password_reset(
        &self,
        snapshot: &Snapshot,
        name: &str,
        email: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let email = Self::email_input(email, "email")?;
        let this = self.clone();
        self.in_background("request-password-reset", async move {
            let Some(record) = this
                .records
                .find_by_field(&collection.id, "email", &Value::String(email.clone()))
                .await
                .map_err(AuthError::Record)?
            else {
                return Ok(());
            };
            let options = collection.auth.clone().unwrap_or_default();
            let ttl = i64::try_from(options.password_reset_duration).unwrap_or(i64::MAX);
            let token = this.issue(Kind::PasswordReset, &collection, &record, ttl, false, None)?;
            this.mail(
                &collection,
                "resetPasswordTemplate",
                Kind::PasswordReset,
                &record,
                &token,
                &email,
            )
            .await
        });
        Ok(())
    }

    /// The collection's password rules, as field errors for `password`.
    fn check_password(
        collection: &Collection,
        password: &str,
        confirm: &str,
    ) -> Result<(), AuthError> {
        let (min, max) = collection
            .fields
            .iter()
            .find_map(|f| match &f.kind {
                FieldKind::Password { min, max, .. } => Some((*min, *max)),
                _ => None,
            })
            .unwrap_or((8, 256));
        let min = usize::try_from(min.max(1)).unwrap_or(8);
        let max = usize::try_from(if max == 0 { 256 } else { max }).unwrap_or(256);
        let mut errors = FieldErrors::default();
        if !(min..=max).contains(&password.len()) {
            errors.add(
                "password",
                "validation_length_out_of_range",
                format!("Must be {min} to {max} bytes long."),
            );
        }
        if password != confirm {
            errors.add(
                "passwordConfirm",
                "validation_values_mismatch",
                "Values don't match.".into(),
            );
        }
        errors.into_result().map_err(AuthError::Validation)
    }

    /// `confirm-password-reset`: set a new password, mark the email verified (the
    /// mail proved it) and rotate the token key: every earlier token, this one
    /// included, stops working.
    ///
    /// Fails with `Validation` for a bad password, `InvalidOneTimeToken` for a bad,
    /// expired or used token.
    pub async fn confirm_password_reset(
        &self,
        snapshot: &Snapshot,
        name: &str,
        token: &str,
        password: &str,
        confirm: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        Self::check_password(&collection, password, confirm)?;
        let (record, _) = self
            .check_token(&collection, token, Kind::PasswordReset, None)
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        let hash = password::hash(password.to_owned())
            .await
            .map_err(AuthError::Internal)?;
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let values = json!({"password": hash, "verified": true, "tokenKey": random_string(50)?});
        let Value::Object(values) = values else {
            return Err(AuthError::Internal("values".into()));
        };
        self.records
            .update_system(&collection.id, id, values)
            .await
            .map_err(AuthError::Record)?;
        Ok(())
    }

    /// Whether another record of the collection has this email already.
    async fn email_taken(&self, collection: &Collection, email: &str) -> Result<bool, AuthError> {
        Ok(self
            .records
            .find_by_field(&collection.id, "email", &Value::String(email.to_owned()))
            .await
            .map_err(AuthError::Record)?
            .is_some())
    }

    fn email_in_use() -> AuthError {
        let mut errors = FieldErrors::default();
        errors.add(
            "newEmail",
            "validation_invalid_email",
            "Invalid or already in use email address.".into(),
        );
        AuthError::Validation(errors)
    }

    /// `request-email-change` (the signed-in record itself): mail a confirmation link
    /// to the new address.
    ///
    /// Fails with `Unauthorized` when not signed in to this collection, `Validation`
    /// for a malformed or taken address.
    pub async fn request_email_change(
        &self,
        snapshot: &Snapshot,
        name: &str,
        identity: &Identity,
        new_email: &str,
    ) -> Result<(), AuthError> {
        let (collection, record) = Self::own_record(snapshot, name, identity)?;
        let new_email = Self::email_input(new_email, "newEmail")?;
        if self.email_taken(&collection, &new_email).await? {
            return Err(Self::email_in_use());
        }
        let options = collection.auth.clone().unwrap_or_default();
        let ttl = i64::try_from(options.email_change_duration).unwrap_or(i64::MAX);
        let token = self.issue(
            Kind::EmailChange,
            &collection,
            &record,
            ttl,
            false,
            Some(&new_email),
        )?;
        let this = self.clone();
        self.in_background("request-email-change", async move {
            this.mail(
                &collection,
                "confirmEmailChangeTemplate",
                Kind::EmailChange,
                &record,
                &token,
                &new_email,
            )
            .await
        });
        Ok(())
    }

    /// `confirm-email-change`: with the token and the record's password, switch to
    /// the new email, mark it verified, and rotate the token key (every session
    /// ends; the token is used up).
    ///
    /// Fails with `InvalidOneTimeToken` for a bad, expired or used token, and
    /// `Validation` for a wrong password or an address taken meanwhile.
    pub async fn confirm_email_change(
        &self,
        snapshot: &Snapshot,
        name: &str,
        token: &str,
        password: &str,
    ) -> Result<(), AuthError> {
        let collection = Self::auth_collection(snapshot, name)?;
        let (record, claims) = self
            .check_token(&collection, token, Kind::EmailChange, None)
            .await?
            .ok_or(AuthError::InvalidOneTimeToken)?;
        let new_email = claims.new_email.ok_or(AuthError::InvalidOneTimeToken)?;
        let hash = record
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or(&self.dummy_hash)
            .to_owned();
        if !password::verify(password.to_owned(), hash).await {
            let mut errors = FieldErrors::default();
            errors.add(
                "password",
                "validation_invalid_password",
                "Missing or invalid password.".into(),
            );
            return Err(AuthError::Validation(errors));
        }
        if self.email_taken(&collection, &new_email).await? {
            return Err(Self::email_in_use());
        }
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let values = json!({"email": new_email, "verified": true, "tokenKey": random_string(50)?});
        let Value::Object(values) = values else {
            return Err(AuthError::Internal("values".into()));
        };
        self.records
            .update_system(&collection.id, id, values)
            .await
            .map_err(|e| match e {
                RecordError::Conflict(_) => Self::email_in_use(),
                other => AuthError::Record(other),
            })?;
        Ok(())
    }

    /// Stored mails (no SMTP configured), newest first, and their count.
    ///
    /// Fails when `_mails` cannot be read.
    pub async fn mails(
        &self,
        page: u64,
        per_page: u64,
    ) -> Result<(Vec<crate::db::entities::mails::Model>, u64), AuthError> {
        self.mailer
            .stored(page.max(1), per_page.clamp(1, 1000))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Send a test mail to `to` with the settings in force (stored in `_mails` when
    /// no SMTP server is set).
    ///
    /// Fails with `Validation` for a malformed address, `Internal` with the SMTP
    /// server's refusal.
    pub async fn send_test_mail(&self, to: &str) -> Result<(), AuthError> {
        let to = Self::email_input(to, "to")?;
        let app = self.live.current();
        self.mailer
            .send(Mail {
                kind: "test".into(),
                to,
                subject: format!("{}: test mail", app.app_name),
                body: format!(
                    "<p>This is a test mail from {} ({}). Mail works.</p>",
                    app.app_name, app.app_url
                ),
            })
            .await
            .map_err(AuthError::Internal)
    }

    /// One stored mail.
    ///
    /// Fails when the mails cannot be read.
    pub async fn stored_mail(
        &self,
        id: &str,
    ) -> Result<Option<crate::db::entities::mails::Model>, AuthError> {
        self.mailer
            .stored_one(id)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// `auth-with-oauth2`: trade a provider's authorization code (PKCE) for a
    /// session. A linked identity signs in as its record; otherwise a record whose
    /// email is the provider's *verified* email is linked — only if that record is
    /// verified too — or a new record is created. `email` and `verified` come from
    /// the provider alone, never from `create_data`.
    ///
    /// Fails with `OAuth2` (400) when the provider is not enabled, refuses the code,
    /// gives no verified email for a new account, or the email belongs to an
    /// unverified account.
    #[allow(clippy::too_many_arguments)]
    pub async fn auth_with_oauth2(
        &self,
        snapshot: &Snapshot,
        name: &str,
        provider: &str,
        code: &str,
        verifier: &str,
        redirect_url: &str,
        create_data: &serde_json::Map<String, Value>,
    ) -> Result<(String, Arc<Collection>, Record, Value), AuthError> {
        use crate::db::entities::external_auths;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        let collection = Self::auth_collection(snapshot, name)?;
        let options = collection.auth.clone().unwrap_or_default();
        let config = options
            .oauth2
            .providers
            .iter()
            .find(|p| p.name == provider)
            .filter(|_| options.oauth2.enabled)
            .ok_or_else(|| {
                AuthError::OAuth2(format!("The provider `{provider}` is not enabled."))
            })?;
        let user = oauth2::exchange(&self.http, config, code, verifier, redirect_url)
            .await
            .map_err(|e| {
                tracing::warn!(provider, error = %e, "OAuth2 exchange failed");
                AuthError::OAuth2("Failed to authenticate with the OAuth2 provider.".into())
            })?;
        let db = |e: sea_orm::DbErr| AuthError::Internal(e.to_string());
        let linked = external_auths::Entity::find()
            .filter(external_auths::Column::CollectionId.eq(collection.id.clone()))
            .filter(external_auths::Column::Provider.eq(provider))
            .filter(external_auths::Column::ProviderId.eq(user.id.clone()))
            .one(self.db.conn())
            .await
            .map_err(db)?;
        let link = crate::records::ExternalLink {
            provider: provider.to_owned(),
            provider_id: user.id.clone(),
        };
        let linked = match linked {
            // A link whose record is gone (deleted before links went with it) is stale.
            Some(link) => self
                .records
                .find_by_id(&collection.id, &link.record_id)
                .await
                .map_err(AuthError::Record)?,
            None => None,
        };
        let mut is_new = false;
        let record = match linked {
            Some(record) => record,
            None => {
                let email = user.email.clone().ok_or_else(|| {
                    AuthError::OAuth2("The provider did not share a verified email address.".into())
                })?;
                let existing = self
                    .records
                    .find_by_field(&collection.id, "email", &Value::String(email.clone()))
                    .await
                    .map_err(AuthError::Record)?;
                match existing {
                    Some(record) if record.get("verified") == Some(&Value::Bool(true)) => {
                        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
                        self.records
                            .link_external(&collection.id, id, link)
                            .await
                            .map_err(AuthError::Record)?;
                        record
                    }
                    Some(_) => {
                        return Err(AuthError::OAuth2(
                            "An unverified account uses this email. Sign in to it with its \
                             password (or verify it) first."
                                .into(),
                        ));
                    }
                    None => {
                        is_new = true;
                        self.create_oauth2_record(&collection, &email, create_data, link)
                            .await?
                    }
                }
            }
        };
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let allowed = self
            .records
            .satisfies(&collection.id, id, crate::filter::rules::RuleOp::Auth)
            .await
            .map_err(AuthError::Record)?;
        if !allowed {
            return Err(AuthError::InvalidCredentials);
        }
        let ttl = i64::try_from(options.token_duration).unwrap_or(i64::MAX);
        let token = self.issue_token(&collection, &record, ttl)?;
        let meta = json!({
            "id": user.id, "name": user.name, "username": user.username,
            "email": user.email.clone().unwrap_or_default(), "avatarURL": user.avatar_url,
            "accessToken": user.access_token, "refreshToken": "", "expiry": "",
            "isNew": is_new, "rawUser": user.raw,
        });
        Ok((token, collection, record, meta))
    }

    /// A new record for an OAuth2 sign-up, through the create path as an anonymous
    /// caller (`@request.context` is `oauth2`): the client's `createData` for
    /// ordinary fields, the provider's verified email, `verified`, and an unusable
    /// random password; the external identity is linked in the same write.
    ///
    /// Fails with `Record` errors like any create: a locked create rule (403), a
    /// create rule or required field the data does not satisfy (400).
    async fn create_oauth2_record(
        &self,
        collection: &Collection,
        email: &str,
        create_data: &serde_json::Map<String, Value>,
        link: crate::records::ExternalLink,
    ) -> Result<Record, AuthError> {
        const OWNED_BY_BASALT: [&str; 7] = [
            "id",
            "email",
            "verified",
            "password",
            "passwordConfirm",
            "tokenKey",
            "emailVisibility",
        ];
        let mut body: serde_json::Map<String, Value> = create_data
            .iter()
            .filter(|(key, _)| !OWNED_BY_BASALT.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let password = random_string(40)?;
        body.insert("email".into(), Value::String(email.to_owned()));
        body.insert("password".into(), Value::String(password.clone()));
        body.insert("passwordConfirm".into(), Value::String(password));
        let mut request = crate::filter::compile::Request::new("POST");
        request.context = "oauth2".to_owned();
        let preset = Record::from_iter([("verified".to_owned(), Value::Bool(true))]);
        self.records
            .create_linked(&collection.id, &request, body, preset, link)
            .await
            .map_err(AuthError::Record)
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
