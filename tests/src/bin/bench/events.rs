//! F3: after-event triggers. `events` records are created as fast as `connections`
//! writers go; a function subscribed to their `created` event (the SDK's `faults`
//! example) writes one record back for each. Measured: events per second through
//! the trigger (from the first write to the last write-back) and the lag from each
//! record's commit to its write-back (both server timestamps, so the lag includes the
//! call itself, about a millisecond), on the outbox path or RabbitMQ's work queue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// What F3 measured.
#[derive(Debug, serde::Serialize)]
pub struct Events {
    /// `outbox` or `rabbitmq`.
    pub path: String,
    pub events: usize,
    /// Creates per second the writers achieved.
    pub writes_per_second: f64,
    /// Events through the trigger per second (first write to last write-back).
    pub events_per_second: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

/// `value[key]`, or null.
fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}

fn timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

async fn all(base: &str, admin: &str, collection: &str) -> anyhow::Result<Vec<Value>> {
    let client = basalt_tests::client();
    let mut items = Vec::new();
    for page in 1.. {
        let body: Value = client
            .get(format!(
                "{base}/api/collections/{collection}/records?perPage=500&page={page}&skipTotal=1"
            ))
            .header("authorization", admin)
            .send()
            .await?
            .json()
            .await?;
        let got = field(&body, "items")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = got.len() < 500;
        items.extend(got);
        if done {
            break;
        }
    }
    Ok(items)
}

/// Run F3 on `base` (`path` names how events travel there).
pub async fn run(
    base: &str,
    admin: &str,
    path: &str,
    events: usize,
    connections: usize,
) -> anyhow::Result<Events> {
    let client = basalt_tests::client();
    let open = |name: &str, mut fields: Value| {
        if let Some(list) = fields.as_array_mut() {
            list.push(
                json!({"name": "created", "type": "autodate", "onCreate": true, "onUpdate": false}),
            );
        }
        json!({"name": name, "listRule": "", "viewRule": "", "createRule": "", "fields": fields})
    };
    for collection in [
        open("f3", json!([{"name": "title", "type": "text"}])),
        open(
            "seen",
            json!([{"name": "function", "type": "text"}, {"name": "title", "type": "text"},
                   {"name": "event", "type": "text"}, {"name": "record", "type": "text"},
                   {"name": "kind", "type": "text"}, {"name": "attempt", "type": "number"},
                   {"name": "fetched", "type": "text"}]),
        ),
    ] {
        let res = client
            .post(format!("{base}/api/collections"))
            .header("authorization", admin)
            .json(&collection)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("creating F3's collections: {}", res.text().await?);
        }
    }
    crate::functions::deploy(base, admin, "bench-events", &["f3.created"]).await?;
    let started = Instant::now();
    let written: Vec<bool> = stream::iter(0..events)
        .map(|n| {
            let client = client.clone();
            let url = format!("{base}/api/collections/f3/records");
            async move {
                client
                    .post(url)
                    .json(&json!({"title": format!("event {n}")}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(connections)
        .collect()
        .await;
    let wrote = started.elapsed();
    if written.iter().any(|ok| !ok) {
        bail!(
            "F3: {} creates failed",
            written.iter().filter(|ok| !**ok).count()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let finished = loop {
        let body: Value = client
            .get(format!("{base}/api/collections/seen/records?perPage=1"))
            .header("authorization", admin)
            .send()
            .await?
            .json()
            .await?;
        if field(&body, "totalItems").as_u64().unwrap_or(0) >= events as u64 {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("F3: the trigger did not get through {events} events in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sources: HashMap<String, chrono::DateTime<chrono::Utc>> = all(base, admin, "f3")
        .await?
        .iter()
        .filter_map(|r| {
            Some((
                field(r, "id").as_str()?.to_owned(),
                timestamp(field(r, "created").as_str()?)?,
            ))
        })
        .collect();
    let mut lag = Histogram::<u64>::new(3)?;
    for seen in all(base, admin, "seen").await? {
        let (Some(record), Some(at)) = (
            field(&seen, "record").as_str(),
            field(&seen, "created").as_str().and_then(timestamp),
        ) else {
            continue;
        };
        if let Some(committed) = sources.get(record) {
            let ms = at
                .signed_duration_since(*committed)
                .num_microseconds()
                .unwrap_or(0);
            lag.record(u64::try_from(ms.max(0)).unwrap_or(0))
                .context("recording a lag")?;
        }
    }
    crate::functions::remove(base, admin, "bench-events").await?;
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Events {
        path: path.to_owned(),
        events,
        writes_per_second: events as f64 / wrote.as_secs_f64(),
        events_per_second: events as f64 / finished.as_secs_f64(),
        lag_p50_ms: ms(lag.value_at_quantile(0.5)),
        lag_p99_ms: ms(lag.value_at_quantile(0.99)),
        lag_max_ms: ms(lag.max()),
    })
}
