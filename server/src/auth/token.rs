//! Tokens: HS256 JWTs with a `type` claim (auth, verification, password reset, email
//! change). Each is signed with the installation secret, its type, the collection id
//! and the record's `tokenKey` (and its email, for one-time tokens). So rotating a
//! record's key revokes all its tokens, a token of one collection or type never
//! verifies as another, and a verification link dies when the email changes.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The only algorithm accepted; `alg: none` and every other algorithm are refused.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// The installation's signing secret. Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret's bytes, for keys derived from it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Auth,
    Verification,
    PasswordReset,
    EmailChange,
    /// An admin UI session (a cookie, never an `Authorization` header).
    AdminSession,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Verification => "verification",
            Kind::PasswordReset => "passwordReset",
            Kind::EmailChange => "emailChange",
            Kind::AdminSession => "adminSession",
        }
    }
}

/// PocketBase's token claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub id: String,
    #[serde(rename = "collectionId")]
    pub collection_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub refreshable: bool,
    pub exp: u64,
    /// The record's email when a one-time token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// For an email change: the address to change to.
    #[serde(default, rename = "newEmail", skip_serializing_if = "Option::is_none")]
    pub new_email: Option<String>,
    /// For an admin session: when it began (seconds since the epoch), which bounds
    /// its whole life however often it is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
}

/// The signing key: secret, type, collection and the record's key material, each
/// ended by a NUL so no two combinations run together.
fn key(secret: &Secret, kind: &str, collection_id: &str, material: &str) -> Vec<u8> {
    let mut key = secret.0.clone();
    for part in [kind, collection_id, material] {
        key.extend_from_slice(part.as_bytes());
        key.push(0);
    }
    key
}

/// Sign `claims` with the record's key material (its `tokenKey`, plus its email for
/// one-time tokens).
///
/// Fails only if the claims cannot be serialized.
pub fn sign(secret: &Secret, claims: &Claims, material: &str) -> Result<String, String> {
    let key = EncodingKey::from_secret(&key(secret, &claims.kind, &claims.collection_id, material));
    jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &key).map_err(|e| e.to_string())
}

/// Read the claims without checking anything, to find the record whose key verifies
/// the token. Nothing read here may be trusted before [`verify`] succeeds.
pub fn peek(token: &str) -> Option<Claims> {
    jsonwebtoken::dangerous::insecure_decode_claims(token).ok()
}

/// Check the signature, the algorithm, the type and the expiry.
pub fn verify(
    secret: &Secret,
    token: &str,
    kind: Kind,
    collection_id: &str,
    material: &str,
) -> Option<Claims> {
    let key = DecodingKey::from_secret(&key(secret, kind.as_str(), collection_id, material));
    let mut validation = Validation::new(ALGORITHM);
    validation.algorithms = vec![ALGORITHM];
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).ok()?;
    (data.claims.collection_id == collection_id && data.claims.kind == kind.as_str())
        .then_some(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            started: None,
            id: "u1".into(),
            collection_id: "c1".into(),
            kind: "auth".into(),
            refreshable: true,
            exp,
            email: None,
            new_email: None,
        }
    }

    fn later() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn round_trip_and_every_way_to_fail() {
        let secret = Secret::new(b"s3cret".to_vec());
        let token = sign(&secret, &claims(later()), "key1").unwrap();
        assert_eq!(peek(&token).unwrap().id, "u1");
        assert!(verify(&secret, &token, Kind::Auth, "c1", "key1").is_some());
        assert!(
            verify(&secret, &token, Kind::Auth, "c1", "key2").is_none(),
            "rotated token key"
        );
        assert!(
            verify(&secret, &token, Kind::Auth, "c2", "key1").is_none(),
            "other collection"
        );
        assert!(
            verify(
                &Secret::new(b"other".to_vec()),
                &token,
                Kind::Auth,
                "c1",
                "key1"
            )
            .is_none()
        );

        let expired = sign(&secret, &claims(1), "key1").unwrap();
        assert!(verify(&secret, &expired, Kind::Auth, "c1", "key1").is_none());

        // alg: none, with the same claims.
        let body = token.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(verify(&secret, &none, Kind::Auth, "c1", "key1").is_none());

        // A tampered payload.
        let forged = format!(
            "{}.{}x.{}",
            token.split('.').next().unwrap(),
            body,
            token.split('.').nth(2).unwrap()
        );
        assert!(verify(&secret, &forged, Kind::Auth, "c1", "key1").is_none());
        assert!(peek("garbage").is_none());

        // A token of one type is not a token of another, even with the claim edited
        // (the key differs), and a one-time token dies with the email it was for.
        let mut reset = claims(later());
        reset.kind = Kind::PasswordReset.as_str().into();
        let reset = sign(&secret, &reset, "key1a@b.co").unwrap();
        assert!(verify(&secret, &reset, Kind::PasswordReset, "c1", "key1a@b.co").is_some());
        assert!(verify(&secret, &reset, Kind::Auth, "c1", "key1a@b.co").is_none());
        assert!(verify(&secret, &reset, Kind::Verification, "c1", "key1a@b.co").is_none());
        assert!(verify(&secret, &reset, Kind::PasswordReset, "c1", "key1c@d.co").is_none());
    }
}
