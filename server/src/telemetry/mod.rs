//! Logs and metrics: the tracing subscriber the binary installs (pretty on a terminal,
//! JSON in production) and the Prometheus registry services record into. Imports only
//! `config`.

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Install the global tracing subscriber. Logs go to stderr, so stdout stays free for
/// commands that print data. Call once, from the binary; tests build apps without it.
///
/// Fails when a subscriber is already installed.
pub fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let mut filter = EnvFilter::try_new(&settings.log)?;
    if !settings.log.contains("lapin") {
        // lapin logs every message the broker returns (an event no queue is bound
        // for: normal until a consumer binds one) at WARN with its whole body, once per
        // write. Basalt counts them instead (`basalt_events_unroutable_total`).
        filter = filter.add_directive("lapin::returned_messages=error".parse()?);
    }
    let terminal = std::io::stderr().is_terminal();
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr on a full disk, a closed pipe) is
        // dropped. Left on, tracing reports the failure with `eprintln!`, which panics
        // on that same stderr: a full disk under the log took the server down.
        .log_internal_errors(false);
    let installed = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// Labels of the HTTP metrics. `route` is the route template (`/api/collections/{c}`),
/// never the raw path, so the number of series stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~8 s in doublings.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The event dispatcher's metrics (cheap to clone; clones share values).
#[derive(Clone, Debug)]
pub struct EventMetrics {
    /// Outbox rows not yet sent.
    pub backlog: prometheus_client::metrics::gauge::Gauge,
    /// Age of the oldest unsent row, seconds (0 when none).
    pub oldest_unsent_seconds:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Events published (acknowledged by the broker, or handed to the bus).
    pub published: Counter,
    /// Publish attempts that failed (nack, connection loss, timeout).
    pub publish_failures: Counter,
    /// Events the broker confirmed but could route to no queue (returned): they count
    /// as delivered, since no one had asked for them.
    pub unroutable: Counter,
    /// From publish to broker confirm.
    pub confirm_seconds: Histogram,
}

impl EventMetrics {
    fn new() -> EventMetrics {
        EventMetrics {
            backlog: Default::default(),
            oldest_unsent_seconds: Default::default(),
            published: Counter::default(),
            publish_failures: Counter::default(),
            unroutable: Counter::default(),
            confirm_seconds: latency_histogram(),
        }
    }
}

/// A function's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

/// A function call's labels: the function and how the call ended (`ok`, `rejected`,
/// `error`, `timeout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct FunctionCallLabels {
    pub function: String,
    pub outcome: String,
}

/// WASM functions' metrics (cheap to clone; clones share values).
#[derive(Clone, Debug)]
pub struct FunctionMetrics {
    pub calls: Family<FunctionCallLabels, Counter>,
    pub duration: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    pub dead_letters: Family<FunctionLabels, Counter>,
    /// Invocation rows dropped because the invocation log was behind.
    pub invocations_dropped: Counter,
    /// Calls that ran on an instance made ahead of them (off their latency).
    pub warm_starts: Counter,
}

impl Default for FunctionMetrics {
    fn default() -> FunctionMetrics {
        FunctionMetrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            dead_letters: Family::default(),
            invocations_dropped: Counter::default(),
            warm_starts: Counter::default(),
        }
    }
}

impl FunctionMetrics {
    /// Count one call.
    pub fn observe(&self, function: &str, outcome: &str, elapsed: Duration) {
        self.calls
            .get_or_create(&FunctionCallLabels {
                function: function.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&FunctionLabels {
                function: function.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count one event dead-lettered after its attempts were spent.
    pub fn dead_letter(&self, function: &str) {
        self.dead_letters
            .get_or_create(&FunctionLabels {
                function: function.to_owned(),
            })
            .inc();
    }
}

/// Every metric Basalt exports, under the `basalt_` prefix.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub events: EventMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("basalt");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce an HTTP response, by method, route template and status",
            http_duration.clone(),
        );
        let events = EventMetrics::new();
        registry.register(
            "outbox_backlog",
            "Record events in the outbox not yet published",
            events.backlog.clone(),
        );
        registry.register(
            "outbox_oldest_unsent_seconds",
            "Age of the oldest unpublished event (0 when none)",
            events.oldest_unsent_seconds.clone(),
        );
        registry.register(
            "events_published",
            "Events published: confirmed by the broker, or handed to the in-process bus",
            events.published.clone(),
        );
        registry.register(
            "events_publish_failures",
            "Publish attempts that failed: nacks, lost connections, timeouts",
            events.publish_failures.clone(),
        );
        registry.register(
            "events_unroutable",
            "Events the broker accepted but no queue was bound for (returned); counted as delivered",
            events.unroutable.clone(),
        );
        registry.register(
            "events_confirm_duration_seconds",
            "Time from publishing an event to the broker's confirm",
            events.confirm_seconds.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            events,
        }
    }

    /// Count one answered request and its latency.
    pub fn observe_http(&self, labels: HttpLabels, elapsed: Duration) {
        self.http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// The registry in the OpenMetrics text format, which Prometheus scrapes natively.
    ///
    /// Fails only if a metric cannot be written, which would be a bug in a collector.
    /// Expose the SQLite writer's group-commit counters (see `db::lite::Lite`).
    pub fn register_group_commits(&mut self, commits: Counter, writes: Counter) {
        self.registry.register(
            "sqlite_group_commits",
            "SQLite write transactions committed by the record writer (group commits)",
            commits,
        );
        self.registry.register(
            "sqlite_group_commit_writes",
            "Writes (requests) carried by those group commits; divided by the commits, the mean batch size",
            writes,
        );
    }

    /// Expose WASM functions' call counters and durations.
    pub fn register_functions(&mut self, functions: &FunctionMetrics) {
        self.registry.register(
            "function_calls",
            "WASM function calls, by function and outcome (ok, rejected, failed, error, timeout, skipped)",
            functions.calls.clone(),
        );
        self.registry.register(
            "function_call_duration_seconds",
            "Time a WASM function call took, instantiation included",
            functions.duration.clone(),
        );
        self.registry.register(
            "function_dead_letters",
            "Events dead-lettered after a function's retries were spent",
            functions.dead_letters.clone(),
        );
        self.registry.register(
            "function_invocations_dropped",
            "Invocation log rows dropped because the log's writer was behind (the calls themselves ran)",
            functions.invocations_dropped.clone(),
        );
        self.registry.register(
            "function_warm_starts",
            "Function calls whose fresh instance was made ahead of the call, off its latency",
            functions.warm_starts.clone(),
        );
    }

    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_metrics_are_encoded_by_route_and_status() {
        let metrics = Metrics::new();
        let labels = HttpLabels {
            method: "GET".into(),
            route: "/api/health".into(),
            status: 200,
        };
        metrics.observe_http(labels.clone(), Duration::from_millis(3));
        metrics.observe_http(labels, Duration::from_millis(3));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"basalt_http_requests_total{method="GET",route="/api/health",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("basalt_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
