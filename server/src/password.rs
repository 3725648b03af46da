//! Password hashing with argon2id (always on the blocking pool) and random secrets.
//! Used by `auth` and by `records` (sign-up, password changes); imports nothing else
//! from the crate.

use std::sync::LazyLock;
#[cfg(test)]
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

/// One argon2 computation per core at a time. Each one takes 19 MiB and a core for
/// tens of milliseconds: running more at once only adds memory (a burst of sign-ins
/// once took a server to 2.7 GB RSS in the benchmark) and no throughput. The rest wait
/// here, as futures, at no cost.
static PERMITS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from)));

#[cfg(test)]
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
#[cfg(test)]
static MOST_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Run `work` on the blocking pool once a permit is free.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _permit = PERMITS.acquire().await.ok()?;
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        #[cfg(test)]
        {
            let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
            MOST_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
        }
        let out = work();
        #[cfg(test)]
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await
    .ok()
}

/// Hash a password (argon2id, default parameters, random salt) in PHC string form.
///
/// Fails only if the blocking pool is gone or the hasher errs (no randomness).
pub async fn hash(password: String) -> Result<String, String> {
    bounded(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .ok_or_else(|| "the blocking pool is gone".to_owned())?
}

/// Whether `password` matches `hash`. A malformed hash never matches.
pub async fn verify(password: String, hash: String) -> bool {
    bounded(move || {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_one_hash_per_core_runs_at_once() {
        let hash = super::hash("pw".into()).await.unwrap();
        let checks: Vec<_> = (0..12)
            .map(|_| tokio::spawn(super::verify("pw".into(), hash.clone())))
            .collect();
        for check in checks {
            assert!(check.await.unwrap());
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let most = super::MOST_IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores,
            "{most} at once on {cores} cores"
        );
    }
}
