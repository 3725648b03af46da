//! Auth tokens: HS256 JWTs whose key is the installation secret + the collection id +
//! the record's `tokenKey`, so rotating a record's key revokes all its tokens and a
//! token of one collection never verifies for another.

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
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// PocketBase's auth token claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub id: String,
    #[serde(rename = "collectionId")]
    pub collection_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub refreshable: bool,
    pub exp: u64,
}

fn key(secret: &Secret, collection_id: &str, token_key: &str) -> Vec<u8> {
    let mut key = secret.0.clone();
    key.extend_from_slice(collection_id.as_bytes());
    key.extend_from_slice(token_key.as_bytes());
    key
}

/// Sign `claims` for a record whose token key is `token_key`.
///
/// Fails only if the claims cannot be serialized.
pub fn sign(secret: &Secret, claims: &Claims, token_key: &str) -> Result<String, String> {
    let key = EncodingKey::from_secret(&key(secret, &claims.collection_id, token_key));
    jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &key).map_err(|e| e.to_string())
}

/// Read the claims without checking anything, to find the record whose key verifies
/// the token. Nothing read here may be trusted before [`verify`] succeeds.
pub fn peek(token: &str) -> Option<Claims> {
    jsonwebtoken::dangerous::insecure_decode_claims(token).ok()
}

/// Check the signature, the algorithm and the expiry.
pub fn verify(
    secret: &Secret,
    token: &str,
    collection_id: &str,
    token_key: &str,
) -> Option<Claims> {
    let key = DecodingKey::from_secret(&key(secret, collection_id, token_key));
    let mut validation = Validation::new(ALGORITHM);
    validation.algorithms = vec![ALGORITHM];
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).ok()?;
    (data.claims.collection_id == collection_id).then_some(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            id: "u1".into(),
            collection_id: "c1".into(),
            kind: "auth".into(),
            refreshable: true,
            exp,
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
        assert!(verify(&secret, &token, "c1", "key1").is_some());
        assert!(
            verify(&secret, &token, "c1", "key2").is_none(),
            "rotated token key"
        );
        assert!(
            verify(&secret, &token, "c2", "key1").is_none(),
            "other collection"
        );
        assert!(verify(&Secret::new(b"other".to_vec()), &token, "c1", "key1").is_none());

        let expired = sign(&secret, &claims(1), "key1").unwrap();
        assert!(verify(&secret, &expired, "c1", "key1").is_none());

        // alg: none, with the same claims.
        let body = token.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(verify(&secret, &none, "c1", "key1").is_none());

        // A tampered payload.
        let forged = format!(
            "{}.{}x.{}",
            token.split('.').next().unwrap(),
            body,
            token.split('.').nth(2).unwrap()
        );
        assert!(verify(&secret, &forged, "c1", "key1").is_none());
        assert!(peek("garbage").is_none());
    }
}
