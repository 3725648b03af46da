//! The Redis store: one multiplexed connection manager (it reconnects by itself) for
//! commands, and a pub/sub connection per [`RedisStore::listen`].

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use url::Url;

use super::{CALL_TIMEOUT, CacheError, Store};

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    commands: ConnectionManager,
}

fn failed(err: redis::RedisError) -> CacheError {
    CacheError::Redis(err.to_string())
}

impl RedisStore {
    /// A store for `url`; nothing is contacted until the first call.
    ///
    /// Fails when the URL is not one the Redis client accepts.
    pub fn new(url: &Url) -> Result<RedisStore, CacheError> {
        let client =
            redis::Client::open(url.as_str()).map_err(|e| CacheError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| CacheError::Url(e.to_string()))?;
        Ok(RedisStore { client, commands })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.commands.clone();
        cmd.query_async(&mut conn).await.map_err(failed)
    }

    /// `PING` on a connection of its own (readiness: it shows whether a new
    /// connection can be made, not only whether the shared one still works).
    ///
    /// Fails when Redis refuses the connection or errs.
    pub async fn ping_fresh(&self) -> Result<(), CacheError> {
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(failed)?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(failed)
    }

    /// Subscribe to `channel` on a connection of its own, call `subscribed` once it
    /// is, then `message` with each payload, until the connection ends.
    ///
    /// Fails when the connection cannot be made or is lost.
    pub async fn listen(
        &self,
        channel: &str,
        subscribed: impl FnOnce(),
        mut message: impl FnMut(String),
    ) -> Result<(), CacheError> {
        let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| CacheError::Timeout(CALL_TIMEOUT))?
            .map_err(failed)?;
        tokio::time::timeout(CALL_TIMEOUT, pubsub.subscribe(channel))
            .await
            .map_err(|_| CacheError::Timeout(CALL_TIMEOUT))?
            .map_err(failed)?;
        subscribed();
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            if let Ok(payload) = msg.get_payload::<String>() {
                message(payload);
            }
        }
        Err(CacheError::Redis("the pub/sub connection closed".into()))
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        Box::pin(async move { self.query(&cmd).await })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        Box::pin(async move { self.query::<()>(&cmd).await })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        Box::pin(async move { self.query::<()>(&cmd).await })
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(u64, Duration), CacheError>> {
        Box::pin(async move {
            // The window starts with the first hit (SET NX with its expiry), so a
            // counter never lives without one.
            let window_ms = window.as_millis().max(1) as u64;
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(key)
                .arg(0)
                .arg("PX")
                .arg(window_ms)
                .arg("NX")
                .ignore()
                .cmd("INCR")
                .arg(key)
                .cmd("PTTL")
                .arg(key);
            let mut conn = self.commands.clone();
            let (count, left): (u64, i64) = pipe.query_async(&mut conn).await.map_err(failed)?;
            let left = u64::try_from(left).unwrap_or(window_ms);
            Ok((count, Duration::from_millis(left)))
        })
    }

    fn scan<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, CacheError>> {
        Box::pin(async move {
            // Prefixes are Basalt's own (no glob characters).
            let pattern = format!("{prefix}*");
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = self
                    .query(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(200),
                    )
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(&keys)).await?;
            Ok(keys
                .into_iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k, v?)))
                .collect())
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        Box::pin(async move { self.query::<()>(&cmd).await })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), CacheError>> {
        Box::pin(async move { self.query::<String>(&redis::cmd("PING")).await.map(|_| ()) })
    }
}
