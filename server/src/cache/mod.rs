//! The cache: one service, two backends — in-memory (the embedded default) and Redis
//! (`BASALT_REDIS_URL`), for the state several instances must share. So far it answers
//! whether its backend is reachable; counters, revocation and pub/sub arrive with the
//! issues that need them. Imports only `config`.

use std::time::Duration;

use url::Url;

/// How long a readiness ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the cache backend is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(String),
}

/// The cache backend chosen at start.
#[derive(Clone, Debug)]
pub enum Cache {
    Memory,
    Redis(redis::Client),
}

impl Cache {
    /// Pick the backend from the settings. Nothing is contacted yet, so the server can
    /// start (and report itself not ready) while Redis is down.
    ///
    /// Fails when the URL is not one the Redis client accepts.
    pub fn new(redis_url: Option<&Url>) -> Result<Cache, CacheError> {
        match redis_url {
            None => Ok(Cache::Memory),
            Some(url) => redis::Client::open(url.as_str())
                .map(Cache::Redis)
                .map_err(|e| CacheError::Url(e.to_string())),
        }
    }

    /// The external service behind this cache, if any, for readiness reports.
    pub fn external_name(&self) -> Option<&'static str> {
        match self {
            Cache::Memory => None,
            Cache::Redis(_) => Some("redis"),
        }
    }

    /// A round trip to the backend: always fine in memory, `PING` on Redis.
    ///
    /// Fails when Redis refuses the connection, errs, or does not answer in time.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let Cache::Redis(client) = self else {
            return Ok(());
        };
        let ping = async {
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| CacheError::Redis(e.to_string()))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| CacheError::Redis(e.to_string()))
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(_pong)) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(CacheError::Timeout(PING_TIMEOUT)),
        }
    }
}
