//! `cargo run --release -p basalt-tests --bin bench -- [--backend sqlite|postgres]...
//! [--workload W1,W2,...] [--duration 10s] [--json]`
//!
//! Starts the release `basalt` on loopback with fresh storage, seeds it through its
//! own API, runs each workload (warm-up, then measured) with a fixed number of
//! keep-alive connections, and prints one table: requests/s, latency percentiles,
//! errors, the server's peak RSS, and the ratio to a ceiling (a bare actix-web
//! handler loaded the same way in the same run). See docs/benchmarks.md.

mod load;
mod server;
mod sse;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use server::Backend;

#[derive(Debug, Parser)]
#[command(about = "Load Basalt the way apps do and compare it with the machine's ceiling")]
struct Args {
    /// Databases to run on (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite])]
    backend: Vec<Backend>,
    /// Workloads: W1, W2, W2s, W3, W4, W5, W6, SSE, or all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    workload: Vec<String>,
    /// Measured time per workload, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured load before each workload.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Notes seeded (the rows W2 and W6 list from).
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Idle SSE streams held open by the SSE workload.
    #[arg(long, default_value_t = 10_000)]
    sse_connections: usize,
    /// A `basalt` binary to load instead of building this checkout's (to compare
    /// commits).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Internal: serve the ceiling on this address.
    #[arg(long, hide = true)]
    serve_ceiling: Option<SocketAddr>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("not a duration: {s} (use 500ms, 10s, 1m)")),
    }
}

#[derive(Debug, Serialize)]
struct Row {
    backend: String,
    workload: String,
    what: String,
    connections: usize,
    requests_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    peak_rss_mib: f64,
    /// Requests/s over the ceiling's.
    vs_ceiling: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    commit: String,
    cpu: String,
    cores: usize,
    duration_s: f64,
    warmup_s: f64,
    rows: Vec<Row>,
    sse: Vec<(String, sse::IdleStreams)>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn row(
    backend: &str,
    id: &str,
    what: &str,
    connections: usize,
    measured: &load::Measured,
    peak: u64,
    ceiling: f64,
) -> Row {
    let ms = |q: f64| measured.latency.value_at_quantile(q) as f64 / 1000.0;
    Row {
        backend: backend.to_owned(),
        workload: id.to_owned(),
        what: what.to_owned(),
        connections,
        requests_per_second: measured.rate(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: measured.latency.max() as f64 / 1000.0,
        errors: measured.errors,
        peak_rss_mib: peak as f64 / MIB,
        vs_ceiling: if ceiling > 0.0 {
            measured.rate() / ceiling
        } else {
            0.0
        },
    }
}

fn machine() -> (String, usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cpu, cores)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.serve_ceiling {
        return server::serve_ceiling(addr);
    }
    basalt_server::install_crypto_provider();
    raise_open_files_limit();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn wanted(args: &Args, id: &str) -> bool {
    args.workload
        .iter()
        .any(|w| w.eq_ignore_ascii_case("all") || w.eq_ignore_ascii_case(id))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => server::build_basalt()?,
    };
    let (cpu, cores) = machine();
    let mut report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        commit: commit(),
        cpu,
        cores,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        rows: Vec::new(),
        sse: Vec::new(),
    };

    eprintln!("bench: ceiling (bare actix-web JSON handler)");
    let ceiling_server = server::start_ceiling().await?;
    ceiling_server.reset_peak();
    let measured = load::run(
        ceiling_server.addr,
        None,
        args.connections,
        args.warmup,
        args.duration,
        workloads::ceiling(),
    )
    .await?;
    let ceiling = measured.rate();
    let peak = ceiling_server.peak_rss().unwrap_or_default();
    report.rows.push(row(
        "-",
        "ceiling",
        "bare actix-web handler, small JSON",
        args.connections,
        &measured,
        peak,
        ceiling,
    ));
    ceiling_server.stop();

    for backend in &args.backend {
        let (email, password) = ("bench@bench.local", "bench-superuser-password");
        eprintln!("bench: starting basalt on {backend}");
        let basalt = server::start_basalt(&bin, *backend, email, password).await?;
        let base = format!("http://{}", basalt.addr);
        let seeded = workloads::seed(&base, email, password, args.rows)
            .await
            .context("seeding")?;
        // Idle streams first: later workloads leave the allocator's memory behind.
        if wanted(&args, "SSE") {
            eprintln!(
                "bench: {backend} SSE — {} idle realtime streams",
                args.sse_connections
            );
            let held = sse::hold(&basalt, args.sse_connections).await?;
            report.sse.push((backend.to_string(), held));
        }
        for workload in workloads::all(&seeded) {
            if !wanted(&args, workload.id) {
                continue;
            }
            eprintln!("bench: {backend} {} — {}", workload.id, workload.what);
            basalt.reset_peak();
            let measured = load::run(
                basalt.addr,
                Some(seeded.token.clone()),
                args.connections,
                args.warmup,
                args.duration,
                workload.plan,
            )
            .await?;
            if let Some(err) = &measured.first_error {
                eprintln!("bench: {} errors, the first: {err}", measured.errors);
            }
            let peak = basalt.peak_rss().or_else(|| basalt.rss()).unwrap_or(0);
            report.rows.push(row(
                &backend.to_string(),
                workload.id,
                workload.what,
                args.connections,
                &measured,
                peak,
                ceiling,
            ));
        }
        basalt.stop();
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "{} · commit {} · {} ({} cores) · {} s measured after {} s warm-up",
        report.date, report.commit, report.cpu, report.cores, report.duration_s, report.warmup_s
    );
    println!();
    println!(
        "| backend | workload | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | peak RSS MiB | vs ceiling |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &report.rows {
        println!(
            "| {} | {} {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.3} |",
            r.backend,
            r.workload,
            r.what,
            r.connections,
            r.requests_per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.peak_rss_mib,
            r.vs_ceiling
        );
    }
    if !report.sse.is_empty() {
        println!();
        println!(
            "| backend | idle SSE streams | opened in s | RSS before MiB | RSS with streams MiB | peak RSS MiB | KiB per stream |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (backend, s) in &report.sse {
            println!(
                "| {backend} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                s.connections,
                s.connect_seconds,
                s.rss_before as f64 / MIB,
                s.rss_with_streams as f64 / MIB,
                s.peak_rss as f64 / MIB,
                s.per_connection() / 1024.0
            );
        }
    }
}
