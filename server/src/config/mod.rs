//! Settings: one tree, read from four layers — defaults < `basalt.toml` < `BASALT_*`
//! environment variables < command-line flags — and validated once at start.
//!
//! Every setting has one name with three spellings: `body_limit` in the file,
//! `BASALT_BODY_LIMIT` in the environment, `--body-limit` on the command line. A bad
//! value is reported as a [`ConfigError`] naming the setting and the layer it came
//! from. This module imports nothing else from the crate.

pub mod live;
mod size;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use size::parse_size;

/// Where a value came from; named in error messages so a user knows what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => f.write_str(var),
            Source::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One setting's three spellings and its help line.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
    pub help: &'static str,
}

macro_rules! keys {
    ($($ident:ident = $name:literal, $env:literal, $flag:literal, $help:literal;)*) => {
        /// Every setting Basalt reads, in the order `--help` and the README list them.
        pub const KEYS: &[Key] = &[$(Key { name: $name, env: $env, flag: $flag, help: $help }),*];
        #[allow(non_upper_case_globals)]
        mod key {
            $(pub const $ident: &str = $name;)*
        }
    };
}

keys! {
    HTTP = "http", "BASALT_HTTP", "--http",
        "Address to listen on, HOST:PORT [default: 127.0.0.1:8090]";
    DATA_DIR = "data_dir", "BASALT_DATA_DIR", "--data-dir",
        "Folder for the SQLite database and local state [default: ./basalt_data]";
    DATABASE_URL = "database_url", "BASALT_DATABASE_URL", "--database-url",
        "sqlite:PATH or postgres://… [default: SQLite file data.db in the data dir]";
    DATABASE_MAX_CONNECTIONS = "database_max_connections", "BASALT_DATABASE_MAX_CONNECTIONS",
        "--database-max-connections", "Database pool size [default: 10]";
    REDIS_URL = "redis_url", "BASALT_REDIS_URL", "--redis-url",
        "redis://… for a shared cache [default: in-memory]";
    AMQP_URL = "amqp_url", "BASALT_AMQP_URL", "--amqp-url",
        "amqp://… for RabbitMQ events [default: in-process bus]";
    LOG = "log", "BASALT_LOG", "--log",
        "Log filter, e.g. info or info,basalt_server=debug [default: info]";
    LOG_FORMAT = "log_format", "BASALT_LOG_FORMAT", "--log-format",
        "auto, pretty or json; auto is pretty on a terminal, json otherwise [default: auto]";
    BODY_LIMIT = "body_limit", "BASALT_BODY_LIMIT", "--body-limit",
        "Largest request body, in bytes or with a unit (32MiB, 512KB) [default: 32MiB]";
    SHUTDOWN_TIMEOUT = "shutdown_timeout", "BASALT_SHUTDOWN_TIMEOUT", "--shutdown-timeout",
        "Seconds in-flight requests get to finish on SIGINT/SIGTERM [default: 30]";
    BATCH_MAX_REQUESTS = "batch_max_requests", "BASALT_BATCH_MAX_REQUESTS", "--batch-max-requests",
        "Most requests in one POST /api/batch; 0 turns batches off [default: 50]";
    APP_NAME = "app_name", "BASALT_APP_NAME", "--app-name",
        "The application's name, in mails [default: Basalt]";
    APP_URL = "app_url", "BASALT_APP_URL", "--app-url",
        "Public URL of the app, for links in mails [default: http://HTTP]";
    SMTP_URL = "smtp_url", "BASALT_SMTP_URL", "--smtp-url",
        "smtp://user:pass@host:587 (STARTTLS), smtps://… (TLS) or smtp+plain://… (tests); without it mails are stored in _mails [default: none]";
    MAIL_FROM = "mail_from", "BASALT_MAIL_FROM", "--mail-from",
        "Sender of mails [default: Basalt <no-reply@localhost>]";
    TRUSTED_PROXIES = "trusted_proxies", "BASALT_TRUSTED_PROXIES", "--trusted-proxies",
        "Comma-separated IPs or CIDRs whose X-Forwarded-For is believed [default: none]";
    RATE_LIMIT_AUTH = "rate_limit_auth", "BASALT_RATE_LIMIT_AUTH", "--rate-limit-auth",
        "Sign-in attempts per identity and IP, as N/WINDOW; 0 is off [default: 10/1m]";
    RATE_LIMIT_AUTH_IP = "rate_limit_auth_ip", "BASALT_RATE_LIMIT_AUTH_IP", "--rate-limit-auth-ip",
        "Requests to auth endpoints per IP, as N/WINDOW; 0 is off [default: 60/1m]";
    RATE_LIMIT = "rate_limit", "BASALT_RATE_LIMIT", "--rate-limit",
        "Requests per IP to the whole API, as N/WINDOW; 0 is off [default: 0]";
    AMQP_EXCHANGE = "amqp_exchange", "BASALT_AMQP_EXCHANGE", "--amqp-exchange",
        "The durable topic exchange events are published to [default: basalt.events]";
    OUTBOX_RETENTION = "outbox_retention", "BASALT_OUTBOX_RETENTION", "--outbox-retention",
        "How long sent events stay in _outbox, e.g. 24h, 30m, 0s [default: 24h]";
    FUNCTIONS_MAX_SIZE = "functions_max_size", "BASALT_FUNCTIONS_MAX_SIZE", "--functions-max-size",
        "Largest function deploy (component and manifest), in bytes or with a unit [default: 128MiB]";
    FUNCTIONS_LOG_RETENTION = "functions_log_retention", "BASALT_FUNCTIONS_LOG_RETENTION", "--functions-log-retention",
        "How long function invocations stay in _invocations, e.g. 7d, 24h [default: 7d]";
    SCHEMA_LOCK_TIMEOUT = "schema_lock_timeout", "BASALT_SCHEMA_LOCK_TIMEOUT", "--schema-lock-timeout",
        "PostgreSQL: how long a schema change waits for a table lock before it fails with 409 [default: 3s]";
    SQLITE_SYNCHRONOUS = "sqlite_synchronous", "BASALT_SQLITE_SYNCHRONOUS", "--sqlite-synchronous",
        "SQLite: normal (a commit survives a crash of Basalt; the last ones may be lost on power loss) or full (synced at every commit) [default: normal]";
    REALTIME_MAX_SUBSCRIPTIONS = "realtime_max_subscriptions", "BASALT_REALTIME_MAX_SUBSCRIPTIONS",
        "--realtime-max-subscriptions", "Subscriptions per realtime connection [default: 1000]";
    REALTIME_MAX_CONNECTIONS_PER_IP = "realtime_max_connections_per_ip",
        "BASALT_REALTIME_MAX_CONNECTIONS_PER_IP", "--realtime-max-connections-per-ip",
        "Realtime connections per client address [default: 100]";
    REALTIME_KEEPALIVE = "realtime_keepalive", "BASALT_REALTIME_KEEPALIVE", "--realtime-keepalive",
        "How often an idle realtime stream gets a keep-alive comment [default: 25s]";
    REALTIME_IDLE_TIMEOUT = "realtime_idle_timeout", "BASALT_REALTIME_IDLE_TIMEOUT",
        "--realtime-idle-timeout", "A realtime client without subscriptions is dropped after [default: 5m]";
    GRAPHQL_INTROSPECTION = "graphql_introspection", "BASALT_GRAPHQL_INTROSPECTION",
        "--graphql-introspection", "true or false: whether GraphQL answers introspection (the explorer and code generators need it) [default: true]";
    GRAPHQL_MAX_DEPTH = "graphql_max_depth", "BASALT_GRAPHQL_MAX_DEPTH", "--graphql-max-depth",
        "Deepest nesting of a GraphQL operation [default: 10]";
    GRAPHQL_MAX_COST = "graphql_max_cost", "BASALT_GRAPHQL_MAX_COST", "--graphql-max-cost",
        "Most a GraphQL operation may cost: a field counts 1, a list's fields once per item it may hold [default: 50000]";
    GRAPHQL_MAX_ALIASES = "graphql_max_aliases", "BASALT_GRAPHQL_MAX_ALIASES", "--graphql-max-aliases",
        "Most aliases in one GraphQL operation [default: 30]";
    GRAPHQL_MAX_ROOT_FIELDS = "graphql_max_root_fields", "BASALT_GRAPHQL_MAX_ROOT_FIELDS",
        "--graphql-max-root-fields", "Most root fields in one GraphQL operation [default: 20]";
    GRAPHQL_MAX_LENGTH = "graphql_max_length", "BASALT_GRAPHQL_MAX_LENGTH", "--graphql-max-length",
        "Longest GraphQL operation text, in bytes or with a unit [default: 32KiB]";
}

/// `30s`, `15m`, `24h` (or plain seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("expected a duration such as 30s, 15m or 24h; got `{text}`");
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (text.get(..i).unwrap_or_default(), Some(c)),
        _ => (text, None),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        None | Some('s') => number,
        Some('m') => number.saturating_mul(60),
        Some('h') => number.saturating_mul(3600),
        Some('d') => number.saturating_mul(86_400),
        Some(_) => return Err(bad()),
    };
    Ok(Duration::from_secs(seconds))
}

/// At most `count` events per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
}

/// `0` (off) or `N/WINDOW` with WINDOW like `30s`, `1m`, `1h`.
fn parse_limit(text: &str) -> Result<Option<Limit>, String> {
    let text = text.trim();
    if text == "0" || text == "off" {
        return Ok(None);
    }
    let bad = || format!("expected N/WINDOW such as 10/1m, or 0 for off; got `{text}`");
    let (count, window) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let window = window.trim();
    let (number, unit) = window.split_at(window.len().saturating_sub(1));
    let number: u64 = if number.is_empty() {
        Ok(1)
    } else {
        number.parse()
    }
    .map_err(|_| bad())?;
    let seconds = match unit {
        "s" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Ok(None);
    }
    if seconds == 0 {
        return Err(bad());
    }
    Ok(Some(Limit {
        count,
        window: Duration::from_secs(seconds),
    }))
}

/// An IP address or a CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a bad prefix length"))?,
        };
        Ok(IpBlock { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        // Compare as IPv6, IPv4 as IPv4-mapped (::ffff:a.b.c.d).
        let wide = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            std::net::IpAddr::V6(v6) => u128::from(v6),
        };
        let prefix = u32::from(self.prefix) + if self.addr.is_ipv4() { 96 } else { 0 };
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        wide(self.addr) & mask == wide(ip) & mask
    }
}

/// The environment variable naming the config file; `--config` overrides it.
pub const CONFIG_ENV: &str = "BASALT_CONFIG";
/// The config file read when none is named and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "basalt.toml";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise (containers, files, pipes).
    Auto,
    Pretty,
    Json,
}

/// The validated settings tree every part of Basalt reads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address as given; may name a host (`localhost:8090`).
    pub http: String,
    /// `http` resolved to the address that is bound.
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub database_max_connections: u32,
    pub redis_url: Option<Url>,
    pub amqp_url: Option<Url>,
    pub log: String,
    pub log_format: LogFormat,
    pub body_limit: usize,
    pub shutdown_timeout: Duration,
    pub batch_max_requests: usize,
    pub app_name: String,
    /// Base of links in mails, without a trailing slash.
    pub app_url: String,
    /// `None`: mails are stored in `_mails` instead of sent.
    pub smtp_url: Option<Url>,
    pub mail_from: String,
    pub trusted_proxies: Vec<IpBlock>,
    pub rate_limit_auth: Option<Limit>,
    pub rate_limit_auth_ip: Option<Limit>,
    pub rate_limit: Option<Limit>,
    pub amqp_exchange: String,
    pub outbox_retention: Duration,
    /// The largest deploy body (`POST /api/functions`).
    pub functions_max_size: usize,
    /// How long `_invocations` rows are kept.
    pub functions_log_retention: Duration,
    /// PostgreSQL: the `lock_timeout` of schema changes, so record writes never queue
    /// long behind an `ALTER` that waits for a lock.
    pub schema_lock_timeout: Duration,
    /// SQLite: how commits are synced to disk (WAL mode).
    pub sqlite_synchronous: crate::db::lite::Synchronous,
    pub realtime: crate::realtime::Limits,
    pub graphql: crate::graphql::Limits,
    /// Notes for the log once logging is up (unknown `BASALT_*` variables, say).
    pub warnings: Vec<String>,
}

/// Where Basalt keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file (created if missing). `None` means an in-memory database.
    Sqlite { path: Option<PathBuf> },
    /// A PostgreSQL URL, passwords included: never print it with `{:?}` unredacted.
    Postgres(Url),
}

impl DatabaseUrl {
    /// The URL without its password, fit for logs and error messages.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite { path: Some(path) } => format!("sqlite:{}", path.display()),
            DatabaseUrl::Sqlite { path: None } => "sqlite::memory:".to_owned(),
            DatabaseUrl::Postgres(url) => redact(url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A URL with any password replaced, for logs.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which this one has.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// A setting that could not be read or is invalid. Its `Display` is the one line the
/// binary prints before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting `{name}` ({env}, {flag}) from {origin}: {message}")]
    Invalid {
        name: &'static str,
        env: &'static str,
        flag: &'static str,
        origin: Source,
        message: String,
    },
    #[error("config file {path}: unknown key `{key}` (known keys: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// The raw layers before validation: setting name → (value, where it came from).
#[derive(Debug, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, (String, Source)>,
    warnings: Vec<String>,
}

impl Layers {
    /// Lay the config file over what is there. `None` reads `basalt.toml` from the
    /// working directory if it exists.
    ///
    /// Fails when a named file is missing or unreadable, is not TOML, or has a key
    /// that is not a setting.
    pub fn file(mut self, path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(self);
            }
            Err(err) => {
                return Err(ConfigError::File {
                    path,
                    message: err.to_string(),
                });
            }
        };
        self.file_text(&path, &text)?;
        Ok(self)
    }

    fn file_text(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|err: toml::de::Error| ConfigError::File {
                    path: path.to_path_buf(),
                    message: err.to_string().trim().replace('\n', " "),
                })?;
        for (file_key, value) in table {
            let Some(key) = KEYS.iter().find(|k| k.name == file_key) else {
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key: file_key,
                    known: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
                });
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(invalid(
                        key,
                        Source::File(path.to_path_buf()),
                        format!("expected a string or a number, found {}", other.type_str()),
                    ));
                }
            };
            self.values
                .insert(key.name, (text, Source::File(path.to_path_buf())));
        }
        Ok(())
    }

    /// Lay the `BASALT_*` environment over what is there. Unknown `BASALT_*` names are
    /// kept as warnings: a typo should be visible, not fatal.
    pub fn env(mut self, env: &HashMap<String, String>) -> Self {
        for key in KEYS {
            if let Some(value) = env.get(key.env).filter(|v| !v.is_empty()) {
                self.values
                    .insert(key.name, (value.clone(), Source::Env(key.env)));
            }
        }
        let mut unknown: Vec<&String> = env
            .keys()
            .filter(|name| name.starts_with("BASALT_"))
            .filter(|name| name.as_str() != CONFIG_ENV && !KEYS.iter().any(|k| k.env == *name))
            .collect();
        unknown.sort();
        for name in unknown {
            self.warnings
                .push(format!("ignoring unknown environment variable {name}"));
        }
        self
    }

    /// Lay command-line flags over what is there: (setting name, value) pairs.
    pub fn flags<'a>(mut self, flags: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        for (name, value) in flags {
            if let Some(key) = KEYS.iter().find(|k| k.name == name) {
                self.values
                    .insert(key.name, (value, Source::Flag(key.flag)));
            }
        }
        self
    }

    fn get(&self, name: &'static str) -> Option<(&str, &Source)> {
        self.values.get(name).map(|(v, s)| (v.as_str(), s))
    }

    /// Validate every layer into the settings tree; defaults fill what no layer set.
    ///
    /// Fails on the first value that does not parse, naming its setting and source.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let http = self.string(key::HTTP, "127.0.0.1:8090");
        let http_addr = self.parse(key::HTTP, "127.0.0.1:8090", |s| {
            s.to_socket_addrs()
                .map_err(|e| format!("expected HOST:PORT, e.g. 0.0.0.0:8090 ({e})"))?
                .next()
                .ok_or_else(|| "the host resolves to no address".to_owned())
        })?;
        let data_dir = PathBuf::from(self.string(key::DATA_DIR, "./basalt_data"));
        let database = match self.get(key::DATABASE_URL) {
            None => DatabaseUrl::Sqlite {
                path: Some(data_dir.join("data.db")),
            },
            Some((raw, source)) => parse_database_url(raw)
                .map_err(|m| invalid(lookup(key::DATABASE_URL), source.clone(), m))?,
        };
        let database_max_connections = self.parse(key::DATABASE_MAX_CONNECTIONS, "10", |s| {
            match s.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000".to_owned()),
            }
        })?;
        let redis_url = self.optional_url(key::REDIS_URL, &["redis", "rediss", "redis+unix"])?;
        let amqp_url = self.optional_url(key::AMQP_URL, &["amqp", "amqps"])?;
        let log = self.parse(key::LOG, "info", |s| {
            tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_owned())
                .map_err(|e| format!("not a log filter: {e}"))
        })?;
        let log_format = self.parse(key::LOG_FORMAT, "auto", |s| match s {
            "auto" => Ok(LogFormat::Auto),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected auto, pretty or json".to_owned()),
        })?;
        let body_limit = self.parse(key::BODY_LIMIT, "32MiB", |s| {
            let n = parse_size(s)?;
            if n < 1024 {
                return Err("must be at least 1KiB".to_owned());
            }
            usize::try_from(n).map_err(|_| "too large for this machine".to_owned())
        })?;
        let functions_max_size = self.parse(key::FUNCTIONS_MAX_SIZE, "128MiB", |s| {
            let n = parse_size(s)?;
            if n < 1024 {
                return Err("must be at least 1KiB".to_owned());
            }
            usize::try_from(n).map_err(|_| "too large for this machine".to_owned())
        })?;
        let shutdown_timeout = self.parse(key::SHUTDOWN_TIMEOUT, "30", |s| {
            let secs = s.strip_suffix('s').unwrap_or(s);
            secs.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| "expected a whole number of seconds, e.g. 30".to_owned())
        })?;
        let batch_max_requests = self.parse(key::BATCH_MAX_REQUESTS, "50", |s| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n <= 10_000)
                .ok_or_else(|| "expected a whole number from 0 to 10000".to_owned())
        })?;
        let app_name = self.string(key::APP_NAME, "Basalt");
        let app_url = self.parse(key::APP_URL, &format!("http://{http}"), |s| {
            Url::parse(s)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|_| s.trim_end_matches('/').to_owned())
                .ok_or_else(|| "expected an http(s) URL, e.g. https://app.example.com".to_owned())
        })?;
        let smtp_url = self.optional_url(key::SMTP_URL, &["smtp", "smtps", "smtp+plain"])?;
        let mail_from = self.parse(key::MAIL_FROM, "Basalt <no-reply@localhost>", |s| {
            if s.contains('@') {
                Ok(s.to_owned())
            } else {
                Err("expected an address, e.g. App <no-reply@example.com>".to_owned())
            }
        })?;
        let trusted_proxies = self.parse(key::TRUSTED_PROXIES, "", |s| {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(IpBlock::parse)
                .collect::<Result<Vec<_>, _>>()
        })?;
        let rate_limit_auth = self.parse(key::RATE_LIMIT_AUTH, "10/1m", parse_limit)?;
        let rate_limit_auth_ip = self.parse(key::RATE_LIMIT_AUTH_IP, "60/1m", parse_limit)?;
        let rate_limit = self.parse(key::RATE_LIMIT, "0", parse_limit)?;
        let amqp_exchange = self.parse(key::AMQP_EXCHANGE, "basalt.events", |s| {
            let ok = !s.is_empty()
                && s.len() <= 255
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if ok {
                Ok(s.to_owned())
            } else {
                Err("expected 1-255 letters, digits, - _ . :".to_owned())
            }
        })?;
        let outbox_retention = self.parse(key::OUTBOX_RETENTION, "24h", parse_duration)?;
        let functions_log_retention =
            self.parse(key::FUNCTIONS_LOG_RETENTION, "7d", parse_duration)?;
        let schema_lock_timeout = self.parse(key::SCHEMA_LOCK_TIMEOUT, "3s", |s| {
            parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("expected at least 1s".to_owned())
                } else {
                    Ok(d)
                }
            })
        })?;
        let sqlite_synchronous = self.parse(key::SQLITE_SYNCHRONOUS, "normal", str::parse)?;
        let count = |s: &str| {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| "expected a whole number from 1 to 1000000".to_owned())
        };
        let positive = |s: &str| {
            parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be more than 0s".to_owned())
                } else {
                    Ok(d)
                }
            })
        };
        let realtime = crate::realtime::Limits {
            max_subscriptions: self.parse(key::REALTIME_MAX_SUBSCRIPTIONS, "1000", count)?,
            max_connections_per_ip: self.parse(
                key::REALTIME_MAX_CONNECTIONS_PER_IP,
                "100",
                count,
            )?,
            keepalive: self.parse(key::REALTIME_KEEPALIVE, "25s", positive)?,
            idle_timeout: self.parse(key::REALTIME_IDLE_TIMEOUT, "5m", positive)?,
        };
        let graphql = crate::graphql::Limits {
            introspection: self.parse(key::GRAPHQL_INTROSPECTION, "true", |s| match s {
                "true" | "1" | "on" => Ok(true),
                "false" | "0" | "off" => Ok(false),
                _ => Err("expected true or false".to_owned()),
            })?,
            max_depth: self.parse(key::GRAPHQL_MAX_DEPTH, "10", count)?,
            max_cost: self.parse(key::GRAPHQL_MAX_COST, "50000", count)? as u64,
            max_aliases: self.parse(key::GRAPHQL_MAX_ALIASES, "30", count)?,
            max_root_fields: self.parse(key::GRAPHQL_MAX_ROOT_FIELDS, "20", count)?,
            max_length: self.parse(key::GRAPHQL_MAX_LENGTH, "32KiB", |s| {
                parse_size(s).map(|n| n as usize)
            })?,
        };
        Ok(Settings {
            graphql,
            app_name,
            app_url,
            smtp_url,
            mail_from,
            trusted_proxies,
            rate_limit_auth,
            rate_limit_auth_ip,
            rate_limit,
            amqp_exchange,
            outbox_retention,
            functions_log_retention,
            functions_max_size,
            schema_lock_timeout,
            sqlite_synchronous,
            realtime,
            http,
            http_addr,
            data_dir,
            database,
            database_max_connections,
            redis_url,
            amqp_url,
            log,
            log_format,
            body_limit,
            shutdown_timeout,
            batch_max_requests,
            warnings: self.warnings,
        })
    }

    fn string(&self, name: &'static str, default: &str) -> String {
        self.get(name).map_or(default, |(v, _)| v).to_owned()
    }

    fn parse<T>(
        &self,
        name: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (raw, source) = self.get(name).unwrap_or((default, &Source::Default));
        parse(raw).map_err(|message| invalid(lookup(name), source.clone(), message))
    }

    fn optional_url(
        &self,
        name: &'static str,
        schemes: &[&str],
    ) -> Result<Option<Url>, ConfigError> {
        let Some((raw, source)) = self.get(name) else {
            return Ok(None);
        };
        let url = Url::parse(raw)
            .map_err(|e| invalid(lookup(name), source.clone(), format!("not a URL ({e})")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(invalid(
                lookup(name),
                source.clone(),
                format!(
                    "unsupported scheme `{}`, expected {}",
                    url.scheme(),
                    schemes.join(", ")
                ),
            ));
        }
        Ok(Some(url))
    }
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        return match path {
            "" => Err("a sqlite URL needs a file path, e.g. sqlite:./basalt_data/data.db".into()),
            ":memory:" => Ok(DatabaseUrl::Sqlite { path: None }),
            path => Ok(DatabaseUrl::Sqlite {
                path: Some(PathBuf::from(path)),
            }),
        };
    }
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "postgres" | "postgresql" if url.host_str().is_some() => Ok(DatabaseUrl::Postgres(url)),
        "postgres" | "postgresql" => Err("a postgres URL needs a host".to_owned()),
        other => Err(format!(
            "unsupported scheme `{other}`, expected sqlite: or postgres://"
        )),
    }
}

fn lookup(name: &'static str) -> &'static Key {
    // Every name passed here is one of the `key::*` constants generated from KEYS.
    KEYS.iter().find(|k| k.name == name).unwrap_or(&Key {
        name: "?",
        env: "?",
        flag: "?",
        help: "",
    })
}

fn invalid(key: &Key, origin: Source, message: String) -> ConfigError {
    ConfigError::Invalid {
        name: key.name,
        env: key.env,
        flag: key.flag,
        origin,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_ip_blocks() {
        assert_eq!(parse_limit("0"), Ok(None));
        assert_eq!(
            parse_limit("10/1m"),
            Ok(Some(Limit {
                count: 10,
                window: Duration::from_secs(60)
            }))
        );
        assert_eq!(
            parse_limit("5/30s").map(|l| l.map(|l| l.window)),
            Ok(Some(Duration::from_secs(30)))
        );
        for bad in ["10", "x/1m", "10/1d", "10/0s", "10/m1"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let block = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = IpBlock::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(IpBlock::parse("::/0").unwrap().contains(ip("1.2.3.4")));
        for bad in ["10.0.0.0/33", "nope", "::/129"] {
            assert!(IpBlock::parse(bad).is_err(), "{bad}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> Layers {
        let mut layers = Layers::default();
        layers.file_text(Path::new("basalt.toml"), text).unwrap();
        layers
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Layers::default().resolve().unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:8090".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./basalt_data"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite {
                path: Some(PathBuf::from("./basalt_data/data.db"))
            }
        );
        assert!(s.redis_url.is_none() && s.amqp_url.is_none());
        assert_eq!(s.body_limit, 32 * 1024 * 1024);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.log_format, LogFormat::Auto);
    }

    #[test]
    fn precedence_is_defaults_then_file_then_env_then_flags() {
        let layers = file(
            "http = '127.0.0.1:1001'\nlog = 'debug'\nbody_limit = 2048\ndata_dir = 'from-file'",
        )
        .env(&env(&[
            ("BASALT_HTTP", "127.0.0.1:1002"),
            ("BASALT_LOG", "warn"),
        ]))
        .flags([("http", "127.0.0.1:1003".to_owned())]);
        let s = layers.resolve().unwrap();
        assert_eq!(s.http_addr.port(), 1003, "flag beats env and file");
        assert_eq!(s.log, "warn", "env beats file");
        assert_eq!(s.body_limit, 2048, "file beats default");
        assert_eq!(s.data_dir, PathBuf::from("from-file"));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30), "default stays");
        // The default database follows the data dir from whichever layer set it.
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite {
                path: Some(PathBuf::from("from-file/data.db"))
            }
        );
    }

    #[test]
    fn unknown_file_key_is_refused_by_name() {
        let mut layers = Layers::default();
        let err = layers
            .file_text(Path::new("basalt.toml"), "htp = '1.2.3.4:5'")
            .unwrap_err();
        let line = err.to_string();
        assert!(line.contains("unknown key `htp`"), "{line}");
        assert!(line.contains("basalt.toml"), "{line}");
    }

    #[test]
    fn bad_toml_is_one_line() {
        let mut layers = Layers::default();
        let err = layers
            .file_text(Path::new("basalt.toml"), "http = \n[")
            .unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[test]
    fn bad_urls_name_the_setting_and_its_source() {
        for (var, value, name) in [
            ("BASALT_DATABASE_URL", "mysql://x/y", "database_url"),
            ("BASALT_DATABASE_URL", "not a url", "database_url"),
            ("BASALT_REDIS_URL", "http://localhost", "redis_url"),
            ("BASALT_AMQP_URL", "::::", "amqp_url"),
            ("BASALT_HTTP", "nowhere", "http"),
            ("BASALT_BODY_LIMIT", "lots", "body_limit"),
            ("BASALT_LOG_FORMAT", "xml", "log_format"),
        ] {
            let err = Layers::default()
                .env(&env(&[(var, value)]))
                .resolve()
                .unwrap_err();
            let line = err.to_string();
            assert!(line.contains(&format!("`{name}`")), "{line}");
            assert!(line.contains(var), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            parse_database_url("sqlite:./x/data.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: Some(PathBuf::from("./x/data.db"))
            }
        );
        assert_eq!(
            parse_database_url("sqlite://data.db?mode=rwc").unwrap(),
            DatabaseUrl::Sqlite {
                path: Some(PathBuf::from("data.db"))
            }
        );
        assert_eq!(
            parse_database_url("sqlite::memory:").unwrap(),
            DatabaseUrl::Sqlite { path: None }
        );
        let pg = parse_database_url("postgres://u:secret@localhost:5432/db").unwrap();
        assert!(matches!(pg, DatabaseUrl::Postgres(_)));
        assert!(!pg.redacted().contains("secret"));
        assert!(!format!("{pg:?}").contains("secret"));
    }

    #[test]
    fn unknown_basalt_env_vars_are_warned_about() {
        let s = Layers::default()
            .env(&env(&[("BASALT_DATABSE_URL", "x"), ("HOME", "/")]))
            .resolve()
            .unwrap();
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("BASALT_DATABSE_URL"));
    }
}
