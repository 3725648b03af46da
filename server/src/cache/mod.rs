//! The cache: one [`Store`] trait, two backends — in-memory (the embedded default)
//! and Redis (`BASALT_REDIS_URL`) — behind one [`Cache`] that every instance's
//! services share: key-value with TTL, windowed counters, and pub/sub between the
//! instances of one installation. Imports only `config`.
//!
//! Redis being away never fails a caller: each call has a timeout, a failure marks
//! Redis down (one warning) and the call is answered by the in-memory store, so rate
//! limits and caches fall back to per-instance; a monitor pings every second and
//! marks it up again. Keys and the channel are prefixed with the installation id, so
//! several installations may share one Redis.

mod memory;
mod redis_store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// How long one Redis call may take before Redis counts as down.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a readiness ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the monitor pings Redis.
const MONITOR_EVERY: Duration = Duration::from_secs(1);
/// Messages a slow local listener may fall behind by.
const BUS_CAPACITY: usize = 4096;

/// Why a cache call failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(String),
}

/// A cache backend.
pub trait Store: Send + Sync + 'static {
    /// The value of `key`, if set and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>>;
    /// Set `key` to `value`, expiring after `ttl` when given.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), CacheError>>;
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>>;
    /// Add one to the counter `key`, which ends `window` after its first hit (a fixed
    /// window): the count now and the time left.
    fn incr<'a>(
        &'a self,
        key: &'a str,
        window: Duration,
    ) -> BoxFuture<'a, Result<(u64, Duration), CacheError>>;
    /// Every live key that starts with `prefix`, with its value.
    fn scan<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, CacheError>>;
    /// Send `payload` to every subscriber of `channel`.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: &'a str,
    ) -> BoxFuture<'a, Result<(), CacheError>>;
    /// A round trip.
    fn ping(&self) -> BoxFuture<'_, Result<(), CacheError>>;
}

/// What instances tell each other (and this instance itself) over the cache's
/// pub/sub.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    /// The sending instance.
    pub from: String,
    /// For one instance only, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub data: Value,
}

/// The kind of the message a listener gets after Redis came back: messages may have
/// been missed meanwhile, so whatever they keep current must be read afresh.
pub const RESYNC: &str = "resync";

/// The cache every service of one instance shares.
#[derive(Clone)]
pub struct Cache(Arc<Inner>);

struct Inner {
    memory: MemoryStore,
    redis: Option<RedisStore>,
    up: AtomicBool,
    prefix: String,
    instance: String,
    bus: broadcast::Sender<Message>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.external_name().unwrap_or("memory"))
            .field("instance", &self.0.instance)
            .finish()
    }
}

impl Cache {
    /// Pick the backend from the settings; `installation` (the database's id)
    /// prefixes every key and the channel, `instance` names this process. Nothing is
    /// contacted yet, so the server can start (and report itself not ready) while
    /// Redis is down.
    ///
    /// Fails when the URL is not one the Redis client accepts.
    pub fn new(
        redis_url: Option<&Url>,
        installation: &str,
        instance: &str,
    ) -> Result<Cache, CacheError> {
        let redis = redis_url.map(RedisStore::new).transpose()?;
        Ok(Cache::with(redis, installation, instance))
    }

    fn with(redis: Option<RedisStore>, installation: &str, instance: &str) -> Cache {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        Cache(Arc::new(Inner {
            memory: MemoryStore::default(),
            up: AtomicBool::new(redis.is_some()),
            redis,
            prefix: format!("basalt:{installation}:"),
            instance: instance.to_owned(),
            bus,
        }))
    }

    /// An in-memory cache for one process (the CLI, tests).
    pub fn memory() -> Cache {
        Cache::with(None, "local", "local")
    }

    /// The external service behind this cache, if any, for readiness reports.
    pub fn external_name(&self) -> Option<&'static str> {
        self.0.redis.as_ref().map(|_| "redis")
    }

    /// Whether values and messages are shared with other instances right now.
    pub fn is_shared(&self) -> bool {
        self.0.redis.is_some() && self.0.up.load(Ordering::Acquire)
    }

    /// This process's instance id.
    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    /// A round trip to the backend for readiness: always fine in memory, `PING` on a
    /// new Redis connection.
    ///
    /// Fails when Redis refuses the connection, errs, or does not answer in time.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &self.0.redis {
            None => Ok(()),
            Some(redis) => tokio::time::timeout(PING_TIMEOUT, redis.ping_fresh())
                .await
                .unwrap_or(Err(CacheError::Timeout(PING_TIMEOUT))),
        }
    }

    /// Run `call` on Redis while it is up, else (or when it fails) on memory.
    async fn call<'a, T>(
        &'a self,
        call: impl Fn(&'a dyn Store) -> BoxFuture<'a, Result<T, CacheError>>,
    ) -> T
    where
        T: Default,
    {
        if let Some(redis) = &self.0.redis
            && self.0.up.load(Ordering::Acquire)
        {
            match timed(call(redis)).await {
                Ok(value) => return value,
                Err(err) => self.mark_down(&err),
            }
        }
        call(&self.0.memory).await.unwrap_or_default()
    }

    fn mark_up(&self) {
        if !self.0.up.swap(true, Ordering::AcqRel) {
            tracing::info!("Redis is back: rate limits and caches are shared again");
        }
    }

    fn mark_down(&self, err: &CacheError) {
        if self.0.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                error = %err,
                "Redis is unavailable: rate limits and caches are per instance, and \
                 instances hear nothing from each other until it is back"
            );
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.0.prefix)
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        let key = self.key(key);
        self.call(|store| store.get(&key)).await
    }

    /// Set `key`, expiring after `ttl` when given.
    pub async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) {
        let key = self.key(key);
        self.call(|store| store.set(&key, value, ttl)).await;
    }

    pub async fn delete(&self, key: &str) {
        let key = self.key(key);
        self.call(|store| store.delete(&key)).await;
    }

    /// Count one hit of the fixed-window counter `key`: the count and the time left.
    pub async fn incr(&self, key: &str, window: Duration) -> (u64, Duration) {
        let key = self.key(key);
        self.call(|store| store.incr(&key, window)).await
    }

    /// Every live key starting with `prefix` (without the cache's own prefix), with
    /// its value.
    pub async fn scan(&self, prefix: &str) -> Vec<(String, String)> {
        let full = self.key(prefix);
        let strip = self.0.prefix.len();
        self.call(|store| store.scan(&full))
            .await
            .into_iter()
            .map(|(k, v)| (k.get(strip..).unwrap_or_default().to_owned(), v))
            .collect()
    }

    /// Send a message of `kind` to every instance, this one included (at once,
    /// whether or not Redis is up), or only to instance `to`.
    pub async fn publish(&self, kind: &str, to: Option<&str>, data: Value) {
        let message = Message {
            from: self.0.instance.clone(),
            to: to.map(str::to_owned),
            kind: kind.to_owned(),
            data,
        };
        if message.to.as_deref().is_none_or(|to| to == self.0.instance) {
            let _ = self.0.bus.send(message.clone());
        }
        if message.to.as_deref() == Some(&self.0.instance) {
            return;
        }
        if let (Some(redis), true) = (&self.0.redis, self.0.up.load(Ordering::Acquire))
            && let Ok(payload) = serde_json::to_string(&message)
        {
            let channel = self.channel();
            if let Err(err) = timed(redis.publish(&channel, &payload)).await {
                self.mark_down(&err);
            }
        }
    }

    fn channel(&self) -> String {
        self.key("bus")
    }

    /// Every message sent to this instance from now on: its own, and (while Redis is
    /// up) the other instances'.
    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.0.bus.subscribe()
    }

    /// With Redis: keep the up/down state current and relay the other instances'
    /// messages, reconnecting until `stop`. A no-op in memory.
    pub async fn run(self, stop: CancellationToken) {
        let Some(redis) = self.0.redis.clone() else {
            return;
        };
        let monitor = async {
            let mut every = tokio::time::interval(MONITOR_EVERY);
            loop {
                every.tick().await;
                match timed(redis.ping()).await {
                    Ok(()) => self.mark_up(),
                    Err(err) => self.mark_down(&err),
                }
            }
        };
        let relay = async {
            let mut missed = false;
            loop {
                let channel = self.channel();
                let deliver = |message: Message| {
                    let _ = self.0.bus.send(message);
                };
                let resync = || Message {
                    from: self.0.instance.clone(),
                    to: None,
                    kind: RESYNC.to_owned(),
                    data: Value::Null,
                };
                let instance = self.0.instance.clone();
                let result = redis
                    .listen(
                        &channel,
                        || {
                            // Subscribed: Redis is back, and whatever was said while
                            // we were away is lost.
                            self.mark_up();
                            if missed {
                                deliver(resync());
                            }
                        },
                        |payload| {
                            if let Ok(message) = serde_json::from_str::<Message>(&payload)
                                && message.from != instance
                                && message.to.as_deref().is_none_or(|to| to == instance)
                            {
                                deliver(message);
                            }
                        },
                    )
                    .await;
                if let Err(err) = result {
                    self.mark_down(&err);
                }
                missed = true;
                tokio::time::sleep(MONITOR_EVERY).await;
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = monitor => {}
            () = relay => {}
        }
    }
}

/// `call`, failing after [`CALL_TIMEOUT`].
async fn timed<T>(call: BoxFuture<'_, Result<T, CacheError>>) -> Result<T, CacheError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or(Err(CacheError::Timeout(CALL_TIMEOUT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_keeps_values_counts_windows_and_delivers_to_itself() {
        let cache = Cache::memory();
        cache.set("a", "1", Some(Duration::from_millis(80))).await;
        cache.set("b:x", "2", None).await;
        assert_eq!(cache.get("a").await.as_deref(), Some("1"));
        assert_eq!(cache.get("zz").await, None);
        assert_eq!(
            cache.scan("b:").await,
            vec![("b:x".to_owned(), "2".to_owned())]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(cache.get("a").await, None, "expired");
        cache.delete("b:x").await;
        assert_eq!(cache.get("b:x").await, None);

        let window = Duration::from_millis(100);
        assert_eq!(cache.incr("n", window).await.0, 1);
        let (count, left) = cache.incr("n", window).await;
        assert_eq!(count, 2);
        assert!(left <= window);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.incr("n", window).await.0, 1, "a new window");

        let mut heard = cache.subscribe();
        cache.publish("hello", None, Value::from(1)).await;
        cache
            .publish("elsewhere", Some("another"), Value::Null)
            .await;
        cache.publish("mine", Some("local"), Value::Null).await;
        assert_eq!(heard.recv().await.unwrap().kind, "hello");
        assert_eq!(heard.recv().await.unwrap().kind, "mine");
        assert!(heard.try_recv().is_err());
    }
}
