//! G3: GraphQL subscription fan-out. N WebSocket connections (graphql-transport-ws,
//! one subscription each, signed in through `connection_init`), then rounds of one
//! `createNote` mutation each: the time from sending the mutation to each
//! subscriber's `next` message, over all subscribers and rounds.
//!
//! The client is a minimal RFC 6455 one (masked text frames out, unmasked frames in),
//! enough for this protocol, so the bench needs no WebSocket crate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// What the fan-out measured.
#[derive(Debug, serde::Serialize)]
pub struct Fanout {
    pub subscribers: usize,
    pub rounds: usize,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub connect_seconds: f64,
}

struct Ws {
    stream: BufReader<TcpStream>,
}

impl Ws {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!(
                    "GET /graphql HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut stream = BufReader::new(stream);
        // The 101 response, up to its blank line.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await?;
            head.push(byte);
            if head.len() > 4096 {
                bail!("no end to the handshake response");
            }
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            bail!("handshake refused: {}", String::from_utf8_lossy(&head));
        }
        Ok(Ws { stream })
    }

    async fn send(&mut self, value: &Value) -> anyhow::Result<()> {
        let payload = value.to_string().into_bytes();
        let mut frame = vec![0x81u8];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text message (pings and other control frames skipped).
    async fn receive(&mut self) -> anyhow::Result<Value> {
        loop {
            let first = self.stream.read_u8().await?;
            let second = self.stream.read_u8().await?;
            let len = match second & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len)?];
            self.stream.read_exact(&mut payload).await?;
            match first & 0x0f {
                0x1 => return Ok(serde_json::from_slice(&payload)?),
                0x8 => bail!("the server closed the socket"),
                _ => continue,
            }
        }
    }
}

/// A signed-in subscriber to `notes`, acknowledged.
async fn subscriber(addr: SocketAddr, token: String) -> anyhow::Result<Ws> {
    let mut ws = Ws::connect(addr).await?;
    ws.send(&json!({"type": "connection_init", "payload": {"Authorization": token}}))
        .await?;
    let ack = ws.receive().await?;
    if ack.get("type").and_then(Value::as_str) != Some("connection_ack") {
        bail!("no connection_ack: {ack}");
    }
    ws.send(&json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { notes { action record { id title } } }"
    }}))
    .await?;
    Ok(ws)
}

/// Send one `createNote` as the seeded user; the note's title.
async fn mutate(base: &str, token: &str, owner: &str, title: &str) -> anyhow::Result<()> {
    let answer: Value = basalt_tests::client()
        .post(format!("{base}/graphql"))
        .header("authorization", token)
        .json(&json!({
            "query": "mutation($i: NoteCreateInput!) { createNote(input: $i) { id } }",
            "variables": {"i": {"title": title, "category": 99, "owner": owner}},
        }))
        .send()
        .await?
        .json()
        .await?;
    if answer.get("errors").is_some() {
        bail!("the mutation failed: {answer}");
    }
    Ok(())
}

/// Wait until every subscriber got the note titled `title`; each one's arrival
/// time.
async fn arrivals(
    subscribers: &[Arc<Mutex<Ws>>],
    title: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Instant>> {
    let waits = subscribers.iter().map(|ws| {
        let ws = Arc::clone(ws);
        let title = title.to_owned();
        async move {
            let mut ws = ws.lock().await;
            loop {
                let message = ws.receive().await?;
                let kind = message.get("type").and_then(Value::as_str);
                let got = message
                    .pointer("/payload/data/notes/record/title")
                    .and_then(Value::as_str);
                if kind == Some("next") && got == Some(title.as_str()) {
                    return anyhow::Ok(Instant::now());
                }
                if kind == Some("error") {
                    bail!("subscription error: {message}");
                }
            }
        }
    });
    tokio::time::timeout(timeout, futures_util::future::try_join_all(waits))
        .await
        .context("not every subscriber got the event in time")?
}

pub async fn run(
    addr: SocketAddr,
    token: &str,
    owner: &str,
    subscribers: usize,
    rounds: usize,
) -> anyhow::Result<Fanout> {
    let base = format!("http://{addr}");
    let progress = ProgressBar::new(subscribers as u64).with_style(
        ProgressStyle::with_template("bench: opening subscriptions {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut opened = stream::iter(0..subscribers)
        .map(|_| subscriber(addr, token.to_owned()))
        .buffer_unordered(100);
    let mut all = Vec::with_capacity(subscribers);
    while let Some(ws) = opened.next().await {
        all.push(Arc::new(Mutex::new(ws?)));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let connect_seconds = started.elapsed().as_secs_f64();
    // Subscriptions start asynchronously: a probe every subscriber must see first.
    let mut probe = 0;
    loop {
        let title = format!("g3 probe {probe}");
        mutate(&base, token, owner, &title).await?;
        if arrivals(&all, &title, Duration::from_secs(10))
            .await
            .is_ok()
        {
            break;
        }
        probe += 1;
        if probe > 5 {
            bail!("the subscriptions did not all start");
        }
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut delivered = 0;
    for round in 0..rounds {
        let title = format!("g3 round {round}");
        let sent = Instant::now();
        let (mutated, arrived) = tokio::join!(
            mutate(&base, token, owner, &title),
            arrivals(&all, &title, Duration::from_secs(30))
        );
        mutated?;
        for at in arrived? {
            latency.record(at.duration_since(sent).as_micros() as u64)?;
            delivered += 1;
        }
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(Fanout {
        subscribers,
        rounds,
        delivered,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: latency.max() as f64 / 1000.0,
        connect_seconds,
    })
}
