//! Fixed-window rate limits, in-process: a counter per key (an IP, an identity + IP)
//! per window. The Redis issue makes them shared across instances.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{IpBlock, Limit};

/// Counters past this many keys are swept of expired windows before adding more.
const SWEEP_AT: usize = 50_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    length: Duration,
    count: u32,
}

impl RateLimiter {
    /// Count one event for `key`. `Err(wait)` when the key is over `limit`: the time
    /// until its window ends. A refused event is not counted.
    pub fn hit(&self, key: &str, limit: Limit) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            // A panic while holding the lock; limits are best-effort, never an outage.
            return Ok(());
        };
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, w| now.duration_since(w.start) < w.length);
        }
        let window = windows.entry(key.to_owned()).or_insert(Window {
            start: now,
            length: limit.window,
            count: 0,
        });
        if now.duration_since(window.start) >= window.length {
            *window = Window {
                start: now,
                length: limit.window,
                count: 0,
            };
        }
        if window.count >= limit.count {
            return Err(window
                .length
                .saturating_sub(now.duration_since(window.start)));
        }
        window.count += 1;
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

    #[test]
    fn windows_count_and_reset() {
        let limiter = RateLimiter::default();
        let limit = Limit {
            count: 2,
            window: Duration::from_millis(200),
        };
        assert!(limiter.hit("a", limit).is_ok());
        assert!(limiter.hit("a", limit).is_ok());
        let wait = limiter.hit("a", limit).unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.hit("b", limit).is_ok(), "keys are separate");
        std::thread::sleep(Duration::from_millis(220));
        assert!(limiter.hit("a", limit).is_ok(), "a new window");
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
