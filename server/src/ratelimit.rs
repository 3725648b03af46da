//! Fixed-window rate limits: a counter per key (an IP, an identity + IP) per window,
//! kept in the cache — shared by every instance with Redis, per instance without it
//! (or while Redis is down).

use std::net::IpAddr;
use std::time::Duration;

use crate::cache::Cache;
use crate::config::{IpBlock, Limit};

#[derive(Clone, Debug)]
pub struct RateLimiter {
    cache: Cache,
}

impl RateLimiter {
    pub fn new(cache: Cache) -> RateLimiter {
        RateLimiter { cache }
    }

    /// Count one event for `key`. `Err(wait)` when the key is over `limit`: the time
    /// until its window ends.
    pub async fn hit(&self, key: &str, limit: Limit) -> Result<(), Duration> {
        let (count, left) = self
            .cache
            .incr(
                &format!("rate:{}:{key}", limit.window.as_millis()),
                limit.window,
            )
            .await;
        if count > u64::from(limit.count) {
            return Err(left);
        }
        Ok(())
    }
}

/// The limiter key of password attempts on auth collection `collection` for
/// `identity` from `ip`: the API's sign-in and the admin UI's count together.
pub fn password_key(collection: &str, identity: &str, ip: &str) -> String {
    format!(
        "password:{collection}:{}:{ip}",
        identity.trim().to_lowercase()
    )
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let hops: Vec<IpAddr> = header
        .split(',')
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or_else(|| hops.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_count_and_reset() {
        let limiter = RateLimiter::new(Cache::memory());
        let limit = Limit {
            count: 2,
            window: Duration::from_millis(200),
        };
        assert!(limiter.hit("a", limit).await.is_ok());
        assert!(limiter.hit("a", limit).await.is_ok());
        let wait = limiter.hit("a", limit).await.unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.hit("b", limit).await.is_ok(), "keys are separate");
        tokio::time::sleep(Duration::from_millis(220)).await;
        assert!(limiter.hit("a", limit).await.is_ok(), "a new window");
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = [crate::config::IpBlock::parse("10.0.0.0/8").unwrap()];
        let xff = Some("1.1.1.1, 2.2.2.2, 10.0.0.5");
        assert_eq!(client_ip(ip("9.9.9.9"), xff, &trusted), ip("9.9.9.9"));
        assert_eq!(client_ip(ip("10.0.0.1"), xff, &trusted), ip("2.2.2.2"));
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("junk"), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(client_ip(ip("9.9.9.9"), xff, &[]), ip("9.9.9.9"));
    }
}
