//! Idle realtime clients: open N SSE streams, wait for each one's `PB_CONNECT`, and
//! read the server's memory with all of them held open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Served;

/// What holding the streams cost.
#[derive(Debug, serde::Serialize)]
pub struct IdleStreams {
    pub connections: usize,
    pub rss_before: u64,
    pub rss_with_streams: u64,
    pub peak_rss: u64,
    pub connect_seconds: f64,
}

impl IdleStreams {
    pub fn per_connection(&self) -> f64 {
        self.rss_with_streams.saturating_sub(self.rss_before) as f64 / self.connections as f64
    }
}

/// One SSE stream, read up to its `PB_CONNECT` event.
async fn open(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /api/realtime HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the stream closed before PB_CONNECT: {}",
                String::from_utf8_lossy(&seen)
            );
        }
        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
        if seen.windows(10).any(|w| w == b"PB_CONNECT") {
            return Ok(stream);
        }
    }
}

pub async fn hold(server: &Served, connections: usize) -> anyhow::Result<IdleStreams> {
    let rss_before = server.rss().context("server RSS")?;
    server.reset_peak();
    let progress = ProgressBar::new(connections as u64).with_style(
        ProgressStyle::with_template("bench: opening SSE streams {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let addr = server.addr;
    let mut streams = Vec::with_capacity(connections);
    let mut opened = stream::iter(0..connections)
        .map(|_| open(addr))
        .buffer_unordered(200);
    while let Some(stream) = opened.next().await {
        streams.push(stream?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let the server settle (buffers, keep-alive timers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_with_streams = server.rss().context("server RSS")?;
    let peak_rss = server.peak_rss().unwrap_or(rss_with_streams);
    drop(streams);
    Ok(IdleStreams {
        connections,
        rss_before,
        rss_with_streams,
        peak_rss,
        connect_seconds,
    })
}
