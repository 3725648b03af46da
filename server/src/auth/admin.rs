//! Admin UI sessions and the first-run setup.
//!
//! A session is a signed token of kind `adminSession` kept in an HttpOnly cookie: it
//! names a superuser, is signed with the superuser's token key and email (a new
//! password rotates the key, which ends every session of that superuser at once), ends
//! after [`SESSION_IDLE`] without use and [`SESSION_ABSOLUTE`] after sign-in however
//! often it is renewed. It is never accepted as an API token (`identify` takes only
//! `auth` tokens). Forms carry a CSRF token derived from the session.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::token::{self, Claims, Kind};
use super::{AuthError, AuthService, INSTALLER_EMAIL, SUPERUSERS};
use crate::records::Record;
use crate::schema::Snapshot;

/// A session unused this long (seconds) has ended.
pub const SESSION_IDLE: u64 = 2 * 3600;
/// A session ends this long (seconds) after sign-in, even if in use.
pub const SESSION_ABSOLUTE: u64 = 24 * 3600;
/// A session is renewed (a new cookie) when it was issued longer ago than this.
const RENEW_AFTER: u64 = 60;

/// A signed-in superuser in the admin UI.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub record: Record,
    /// The cookie value: the token presented, or a renewed one when `renewed`.
    pub token: String,
    pub renewed: bool,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

impl AdminSession {
    pub fn email(&self) -> &str {
        self.record
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl AuthService {
    /// Sign a superuser in to the admin UI with email and password.
    ///
    /// Fails with `InvalidCredentials` (after the same argon2 work for an unknown
    /// email) like the API's sign-in.
    pub async fn admin_sign_in(
        &self,
        snapshot: &Snapshot,
        email: &str,
        password: &str,
    ) -> Result<AdminSession, AuthError> {
        if email.trim().eq_ignore_ascii_case(INSTALLER_EMAIL) {
            return Err(AuthError::InvalidCredentials);
        }
        let (_, _, record) = self
            .auth_with_password(snapshot, SUPERUSERS, email, password, None)
            .await?;
        self.new_session(snapshot, record, now())
    }

    fn new_session(
        &self,
        snapshot: &Snapshot,
        record: Record,
        started: u64,
    ) -> Result<AdminSession, AuthError> {
        let token = self.session_token(snapshot, &record, now(), started)?;
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let csrf = self.csrf_of(id, started);
        Ok(AdminSession {
            record,
            token,
            renewed: true,
            csrf,
        })
    }

    /// A session token for `record` issued at `issued` of a session begun at
    /// `started` (seconds since the epoch): it ends after [`SESSION_IDLE`] unused,
    /// and never later than [`SESSION_ABSOLUTE`] after `started`.
    fn session_token(
        &self,
        snapshot: &Snapshot,
        record: &Record,
        issued: u64,
        started: u64,
    ) -> Result<String, AuthError> {
        let collection = Self::auth_collection(snapshot, SUPERUSERS)?;
        let material = Self::material(Kind::AdminSession, record)
            .ok_or_else(|| AuthError::Internal("the superuser has no token key".into()))?;
        let claims = Claims {
            id: record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            collection_id: collection.id.clone(),
            kind: Kind::AdminSession.as_str().to_owned(),
            refreshable: false,
            exp: Ord::min(issued + SESSION_IDLE, started + SESSION_ABSOLUTE),
            email: None,
            new_email: None,
            started: Some(started),
        };
        token::sign(&self.secret, &claims, &material).map_err(AuthError::Internal)
    }

    /// The CSRF token of a session: stable for the session's life, unguessable
    /// without the server's secret.
    fn csrf_of(&self, id: &str, started: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.secret.as_bytes());
        hasher.update(b"\0admin-csrf\0");
        hasher.update(id.as_bytes());
        hasher.update(started.to_be_bytes());
        let digest = hasher.finalize();
        digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
    }

    /// The session behind a cookie value, renewed when it was issued a while ago.
    ///
    /// Fails with `InvalidToken` for anything else: forged, expired (idle or
    /// absolute), a superuser since deleted or whose password changed.
    pub async fn admin_session(
        &self,
        snapshot: &Snapshot,
        cookie: &str,
    ) -> Result<AdminSession, AuthError> {
        let collection = Self::auth_collection(snapshot, SUPERUSERS)?;
        let (record, claims) = self
            .check_token(&collection, cookie, Kind::AdminSession, None)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let started = claims.started.ok_or(AuthError::InvalidToken)?;
        let now = now();
        if now >= started.saturating_add(SESSION_ABSOLUTE) {
            return Err(AuthError::InvalidToken);
        }
        let issued = claims.exp.saturating_sub(SESSION_IDLE);
        if now.saturating_sub(issued) > RENEW_AFTER {
            return self.new_session(snapshot, record, started);
        }
        Ok(AdminSession {
            csrf: self.csrf_of(&claims.id, started),
            record,
            token: cookie.to_owned(),
            renewed: false,
        })
    }

    /// Whether `token` is a live first-run setup token (the placeholder superuser's,
    /// unexpired): `false` once a real superuser was created or the hour has passed.
    pub async fn setup_open(&self, snapshot: &Snapshot, token: &str) -> bool {
        matches!(
            self.identify(snapshot, Some(token)).await,
            Ok(crate::identity::Identity::Superuser { record })
                if record.get("email").and_then(Value::as_str) == Some(INSTALLER_EMAIL)
        )
    }

    /// Finish the first-run setup: create the first superuser (which removes the
    /// placeholder, so the link works once) and sign them in.
    ///
    /// Fails with `InvalidToken` when the link was used or has expired, `Validation`
    /// for a bad email or password.
    pub async fn complete_setup(
        &self,
        snapshot: &Snapshot,
        token: &str,
        email: &str,
        password: &str,
    ) -> Result<AdminSession, AuthError> {
        if !self.setup_open(snapshot, token).await {
            return Err(AuthError::InvalidToken);
        }
        if email.trim().eq_ignore_ascii_case(INSTALLER_EMAIL) {
            let mut errors = crate::validation::FieldErrors::default();
            errors.add(
                "email",
                "validation_invalid_email",
                "Choose your own email address.".into(),
            );
            return Err(AuthError::Validation(errors));
        }
        let (record, _) = self.upsert_superuser(snapshot, email, password).await?;
        self.new_session(snapshot, record, now())
    }

    /// A session for `record` issued `age` seconds ago and begun `started_ago`
    /// seconds ago, for tests of expiry.
    #[doc(hidden)]
    pub fn admin_session_aged(
        &self,
        snapshot: &Snapshot,
        record: Record,
        age: u64,
        started_ago: u64,
    ) -> Result<String, AuthError> {
        let now = now();
        self.session_token(
            snapshot,
            &record,
            now.saturating_sub(age),
            now.saturating_sub(started_ago),
        )
    }
}
