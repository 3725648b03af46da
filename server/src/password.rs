//! Password hashing with argon2id (always on the blocking pool) and random secrets.
//! Used by `auth` and by `records` (sign-up, password changes); imports nothing else
//! from the crate.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Hash a password (argon2id, default parameters, random salt) in PHC string form.
///
/// Fails only if the blocking pool is gone or the hasher errs (no randomness).
pub async fn hash(password: String) -> Result<String, String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches `hash`. A malformed hash never matches.
pub async fn verify(password: String, hash: String) -> bool {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// `len` random letters and digits, for token keys and secrets.
///
/// Fails only when the system has no randomness to give.
pub fn random_string(len: usize) -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'a'),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hash_and_verify() {
        let hash = super::hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::verify("correct horse".into(), hash.clone()).await);
        assert!(!super::verify("wrong horse".into(), hash).await);
        assert!(!super::verify("x".into(), "not a hash".into()).await);
    }
}
