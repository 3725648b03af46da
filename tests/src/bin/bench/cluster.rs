//! `--instances N` (N ≥ 2): N `basalt serve` on one fresh PostgreSQL database and the
//! machine's Redis, Debian's nginx in front with `docker/nginx.conf` (round-robin, as
//! the compose profile runs it). W1 and W3 through the proxy, and a realtime fan-out:
//! SSE subscribers opened through the proxy (so their streams and their subscription
//! requests land on different instances), then creates through the proxy, each
//! expected by every subscriber. Lost events are counted, never retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use basalt_tests::instances::Nginx;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::server::{self, Backend, Served};

/// What the cross-instance fan-out measured.
#[derive(Debug, serde::Serialize)]
pub struct Fanout {
    pub instances: usize,
    pub subscribers: usize,
    pub writes: usize,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// N instances on one database, with nginx in front.
pub struct Cluster {
    pub proxy: SocketAddr,
    pub instances: Vec<Served>,
    _nginx: Nginx,
}

impl Cluster {
    /// Start `n` instances of `bin` on a fresh PostgreSQL database with Redis at
    /// `redis_url`, and nginx in front.
    ///
    /// Fails when nginx is missing or a server does not come up.
    pub async fn start(
        bin: &Path,
        n: usize,
        email: &str,
        password: &str,
        redis_url: &str,
    ) -> anyhow::Result<Cluster> {
        let nginx = Nginx::binary().context("nginx is not installed (apt-get install nginx)")?;
        let first = server::start_basalt_with(
            bin,
            Backend::Postgres,
            email,
            password,
            &[("BASALT_REDIS_URL", redis_url.to_owned())],
        )
        .await?;
        let database_url = first
            .database_url()
            .context("the first instance has a database")?
            .to_owned();
        let mut instances = vec![first];
        for _ in 1..n {
            instances.push(
                server::start_basalt_on(
                    bin,
                    &database_url,
                    &[("BASALT_REDIS_URL", redis_url.to_owned())],
                )
                .await?,
            );
        }
        let upstreams: Vec<String> = instances
            .iter()
            .map(|s| format!("http://{}", s.addr))
            .collect();
        let nginx = Nginx::start(&nginx, &upstreams).await;
        let proxy = nginx
            .url
            .trim_start_matches("http://")
            .parse()
            .context("nginx's address")?;
        Ok(Cluster {
            proxy,
            instances,
            _nginx: nginx,
        })
    }

    pub fn stop(self) {
        // The first instance owns the database: stopped last.
        let mut instances = self.instances;
        while let Some(served) = instances.pop() {
            served.stop();
        }
    }
}

/// `subscribers` SSE streams through `proxy`, each subscribed to `notes`, then
/// `writes` creates through `proxy` as the seeded user (`token`, owner `me`).
///
/// Fails when a stream cannot be opened or subscribed.
pub async fn fanout(
    proxy: SocketAddr,
    instances: usize,
    token: &str,
    me: &str,
    subscribers: usize,
    writes: usize,
) -> anyhow::Result<Fanout> {
    let base = format!("http://{proxy}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let mut streams = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let stream = basalt_tests::sse::Stream::open(&client, &base).await;
        let status = stream
            .subscribe(&client, &base, Some(token), &["notes".to_owned()])
            .await;
        if status != 204 {
            bail!("subscribing through the proxy answered {status}");
        }
        streams.push(stream);
    }
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let (sent, latency, delivered) = (sent.clone(), latency.clone(), delivered.clone());
            tokio::spawn(async move {
                let mut got = 0;
                while got < writes {
                    let Some((_, data)) = stream.next(Duration::from_secs(10)).await else {
                        return;
                    };
                    let title = data
                        .pointer("/record/title")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default();
                    let at = sent.lock().ok().and_then(|s| s.get(title).copied());
                    if let (Some(at), Ok(mut h)) = (at, latency.lock()) {
                        let _ = h.record(at.elapsed().as_micros() as u64);
                    }
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    got += 1;
                }
            })
        })
        .collect();
    for n in 0..writes {
        let title = format!("fan-out {n}");
        if let Ok(mut s) = sent.lock() {
            s.insert(title.clone(), Instant::now());
        }
        let res = client
            .post(format!("{base}/api/collections/notes/records"))
            .header("Authorization", token)
            .json(&json!({"title": title, "category": n % 10, "owner": me}))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("a fan-out write answered {}", res.status());
        }
        // A steady stream, not a burst: the figure is delivery latency.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for reader in readers {
        let _ = reader.await;
    }
    let h = latency.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let expected = (subscribers * writes) as u64;
    let delivered = delivered.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Fanout {
        instances,
        subscribers,
        writes,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    })
}
