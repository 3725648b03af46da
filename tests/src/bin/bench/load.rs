//! The load generator: a fixed number of keep-alive HTTP/1.1 connections, each with
//! one request in flight at a time (as `wrk -c N`), every latency recorded in an HDR
//! histogram. Requests that start during warm-up are sent but not counted. The
//! server's CPU time is read at the start and the end of the measured phase.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request of a workload.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Call {
        Call {
            method: Method::GET,
            path: path.into(),
            body: None,
        }
    }

    pub fn with_json(method: Method, path: impl Into<String>, body: &serde_json::Value) -> Call {
        Call {
            method,
            path: path.into(),
            body: Some(Bytes::from(body.to_string())),
        }
    }
}

/// Makes the `n`-th request of connection `conn`.
pub type Plan = Arc<dyn Fn(usize, u64) -> Call + Send + Sync>;

/// What a run measured.
#[derive(Debug)]
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
    /// The first error seen, to show why.
    pub first_error: Option<String>,
    /// CPU time the server process used during the measured phase.
    pub server_cpu: Option<Duration>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per request answered in the measured phase, in microseconds.
    pub fn cpu_micros_per_request(&self) -> Option<f64> {
        let answered = self.requests + self.errors;
        let cpu = self.server_cpu?;
        (answered > 0).then(|| cpu.as_secs_f64() * 1e6 / answered as f64)
    }
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Connection> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection { sender })
}

/// Send one request and read the whole response; the status, or why it failed.
async fn send(
    conn: &mut Connection,
    addr: SocketAddr,
    token: Option<&str>,
    call: &Call,
) -> Result<u16, String> {
    conn.sender.ready().await.map_err(|e| e.to_string())?;
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(call.path.as_str())
        .header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    if call.body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(call.body.clone().unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let response = conn
        .sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!(
            "{} {} -> {status}: {}",
            call.method,
            call.path,
            String::from_utf8_lossy(&body.to_bytes())
        ))
    }
}

/// Hold `connections` requests in flight against `addr` for `warmup` + `duration`,
/// counting only what starts after the warm-up, and read the CPU time of process
/// `server_pid` as the measured phase starts and ends.
pub async fn run(
    addr: SocketAddr,
    server_pid: Option<u32>,
    token: Option<String>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    plan: Plan,
) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    // A thread of its own, so a busy runtime does not delay the readings.
    let cpu = server_pid.map(|pid| {
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
            let before = crate::server::cpu_time(pid)?;
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            crate::server::cpu_time(pid)?.checked_sub(before)
        })
    });
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let plan = Arc::clone(&plan);
        let token = token.clone();
        let mut conn = connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut requests, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let call = plan(index, n);
                n += 1;
                let outcome = send(&mut conn, addr, token.as_deref(), &call).await;
                let done = Instant::now();
                let counted = sent >= measure_from && done <= end;
                match outcome {
                    Ok(_) if counted => {
                        requests += 1;
                        let micros = u64::try_from(done.duration_since(sent).as_micros())
                            .unwrap_or(u64::MAX);
                        latency.saturating_record(micros.max(1));
                    }
                    Ok(_) => {}
                    Err(err) => {
                        if counted {
                            errors += 1;
                        }
                        first_error.get_or_insert(err);
                        // The connection may be gone: open a new one.
                        if conn.sender.is_closed() {
                            conn = connect(addr).await?;
                        }
                    }
                }
            }
            anyhow::Ok((requests, errors, latency, first_error))
        }));
    }
    let mut measured = Measured {
        requests: 0,
        errors: 0,
        elapsed: duration,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        first_error: None,
        server_cpu: None,
    };
    for task in tasks {
        let (requests, errors, latency, first_error) = task.await??;
        measured.requests += requests;
        measured.errors += errors;
        measured.latency.add(&latency)?;
        if measured.first_error.is_none() {
            measured.first_error = first_error;
        }
    }
    if let Some(cpu) = cpu {
        measured.server_cpu = cpu.await?;
    }
    Ok(measured)
}
