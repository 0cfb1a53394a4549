//! sluice's configuration: the YAML file users write, `${VAR}` expansion,
//! parsing and validation. The doc comment on every field is the user
//! documentation (docs/configuration.md repeats it).

mod columns;
mod defaults;
mod error;
mod expand;
mod kafka;
mod kafka_security;
mod names;
mod postgres_tls;
mod print;
mod route;
mod secret;
mod units;
mod validate;
mod yaml_error;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use columns::ColumnSource;
use defaults::*;
pub use error::{ConfigError, Problem};
pub use kafka::{format_epoch_ms, parse_epoch_ms, KafkaConfig, StartFrom};
pub use kafka_security::{KafkaSecurity, SaslConfig, SaslMechanism, SecurityProtocol, SslConfig};
pub use names::{is_plain_identifier, quote_ident, TableName};
pub use postgres_tls::{PgSslMode, PostgresSsl};
pub use print::effective_yaml;
pub use route::{Format, Mode, OffsetOutOfRange, OnError, RouteConfig, WriteMethod};
pub use secret::{redact_url, Secret};
pub use units::{parse_duration, ByteSize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to consume from. Required.
    pub kafka: KafkaConfig,
    /// Where to write to, and where sluice keeps its own state. Required.
    pub postgres: PostgresConfig,
    /// When a batch is written. Optional; every field has a default.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Which topic goes to which table, and how. Required: at least one.
    pub routes: Vec<RouteConfig>,
    /// The HTTP server for health checks and metrics. Optional.
    #[serde(default)]
    pub http: HttpConfig,
    /// Logging. Optional.
    #[serde(default)]
    pub log: LogConfig,
    /// How errors that are not about one record (connection lost,
    /// serialization failure, read-only server, ...) are retried. Optional.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Caps this replica's write rate so that draining a backlog cannot
    /// overwhelm the primary. Optional; without it sluice writes as fast as
    /// Postgres accepts.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// How long SIGTERM may take: batches being written get this long minus
    /// a reserve (a fifth, at most 3s) to commit, then the consumer closes
    /// and leaves the group. Keep it under the pod's
    /// `terminationGracePeriodSeconds` (1s to 10m). Default: `25s`.
    #[serde(
        default = "default_shutdown_grace",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub shutdown_grace: Duration,
}

/// The `throttle` section. Limits are per replica and shared by all its
/// partitions; a batch waits for its budget before its transaction starts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Most rows per second this replica writes, over all its partitions
    /// (at least 1). Default: absent (no row limit).
    #[serde(default)]
    pub max_rows_per_second: Option<u32>,
    /// Most bytes of message data per second this replica writes ("20MiB";
    /// at least 1KiB). Default: absent (no byte limit).
    #[serde(default)]
    pub max_bytes_per_second: Option<ByteSize>,
    /// A brake that lowers the row rate while Postgres is struggling and
    /// raises it back up to `max_rows_per_second` (which it requires) when
    /// it recovers. Default: absent (the limits are static).
    #[serde(default)]
    pub adaptive: Option<AdaptiveConfig>,
}

/// The `throttle.adaptive` section: AIMD on the observed commit latency.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// When the 90th percentile of batch commit latencies in a window is
    /// above this, the row rate is halved; while it stays at or under it,
    /// the rate grows by a twentieth of `max_rows_per_second` per window.
    /// Required.
    #[serde(
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub target_commit_latency: Duration,
    /// The rate is never cut below this (at least 1, at most
    /// `max_rows_per_second`). Default: `100`.
    #[serde(default = "default_min_rows_per_second")]
    pub min_rows_per_second: u32,
    /// How often latencies are evaluated and the rate adjusted (100ms to
    /// 1m). Default: `1s`.
    #[serde(
        default = "default_adaptive_window",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub window: Duration,
    /// Brake the same way while a standby's replay lags the primary's WAL
    /// by more than this ("256MiB"), read from `pg_stat_replication` (the
    /// role needs `pg_monitor` to see the positions). Default: absent.
    #[serde(default)]
    pub max_replication_lag: Option<ByteSize>,
}

/// The `retry` section. Retryable errors are retried with exponential
/// backoff and jitter, forever: the partition waits, nothing is skipped.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first wait after a retryable error. Default: `100ms`.
    #[serde(
        default = "default_initial_backoff",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub initial_backoff: Duration,
    /// The longest wait between two attempts; waits double up to it.
    /// Default: `30s`.
    #[serde(
        default = "default_max_backoff",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub max_backoff: Duration,
}

/// The `postgres` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection string, URL (`postgres://user:pass@host:5432/db`) or
    /// key/value (`host=... password=...`) form. Use `${VAR}` for the
    /// password; it is never logged. Required.
    #[serde(serialize_with = "print::redacted_url")]
    pub url: Secret,
    /// Fixed number of connections for this replica, independent of the
    /// partition count (1 to 1000). Default: `8`.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Schema holding sluice's offsets and dead letters; a plain lower-case
    /// identifier. Default: `sluice`.
    #[serde(default = "default_state_schema")]
    pub state_schema: String,
    /// Run sluice's own schema migrations at start-up; turn off when a
    /// separate `sluice migrate` job with DDL rights does it. A current
    /// schema is left alone without any DDL, so a runtime role that may
    /// create nothing can keep it on (it needs SELECT on
    /// `<state_schema>.schema_migrations`). Default: `true`.
    #[serde(default = "default_true")]
    pub auto_migrate: bool,
    /// How long to wait for a new connection. Default: `10s`.
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub connect_timeout: Duration,
    /// Longest a statement of sluice's may run; a batch that exceeds it is
    /// retried (SQLSTATE 57014), so nothing hangs forever. An attempt that
    /// gets no answer for three times this long is abandoned client-side
    /// (a network black hole). Default: `60s`.
    #[serde(
        default = "default_statement_timeout",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub statement_timeout: Duration,
    /// Longest sluice waits for a lock on a target table (e.g. behind a
    /// migration's ACCESS EXCLUSIVE lock); then the batch is retried
    /// (SQLSTATE 55P03), never dead-lettered. Default: `10s`.
    #[serde(
        default = "default_lock_timeout",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub lock_timeout: Duration,
    /// A connection whose sent data stays unacknowledged this long is
    /// closed (TCP_USER_TIMEOUT), so a network black hole is noticed in
    /// bounded time, not after the kernel's many minutes. Default: `30s`.
    #[serde(
        default = "default_tcp_user_timeout",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub tcp_user_timeout: Duration,
    /// `/readyz` reports not ready once Postgres has been unreachable this
    /// long (short blips do not flap readiness). Default: `30s`.
    #[serde(
        default = "default_unready_after",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub unready_after: Duration,
    /// TLS to Postgres: `mode`, `ca_file`, `cert_file`, `key_file`, the
    /// typed twins of libpq's `sslmode`, `sslrootcert`, `sslcert` and
    /// `sslkey` (which `url` may carry instead). Default: absent (what the
    /// URL, the PGSSL* environment variables and libpq's defaults say:
    /// `prefer`).
    #[serde(default)]
    pub ssl: Option<PostgresSsl>,
}

/// The `batch` section: a batch is written when ANY limit is reached.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Write once a batch holds this many rows (at least 1). Default: `5000`.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Write once a batch holds this many bytes of message data (1KiB to
    /// 1GiB; "4MiB", "512KiB", "64KB" or a number of bytes). Default: `4MiB`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Write once the oldest message in a batch has waited this long (at most
    /// 10m). Default: `50ms`.
    #[serde(
        default = "default_linger",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub linger: Duration,
}

/// The `http` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the health and metrics server, "ip:port". Default:
    /// `127.0.0.1:9187`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

/// The `log` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log line format: `text` or `json`. Default: `text`.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing EnvFilter directive, like `info` or `info,sluice=debug`;
    /// the RUST_LOG environment variable overrides it. Default: `info`.
    #[serde(default = "default_level")]
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            linger: default_linger(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_level(),
        }
    }
}

impl Config {
    /// Reads the file, expands ${VAR} from the process environment, parses,
    /// validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text, |name| std::env::var(name).ok())
    }

    /// Same from text with an explicit variable lookup (tests pass a closure).
    pub fn from_yaml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let expanded = expand::expand(text, &env).map_err(ConfigError::Invalid)?;
        let config: Config = serde_yaml::from_str(&expanded.text)
            .map_err(|error| ConfigError::Invalid(vec![expanded.yaml_problem(&error)]))?;
        // Problems quote field values, which may have come from ${VAR}.
        let problems: Vec<Problem> = config
            .validate()
            .into_iter()
            .map(|p| expanded.scrub_problem(p))
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every semantic problem at once (empty = valid).
    pub fn validate(&self) -> Vec<Problem> {
        validate::validate(self)
    }

    /// The route for a topic.
    /// The out-of-range rule of a topic: its route's, else `kafka`'s.
    pub fn offset_out_of_range(&self, topic: &str) -> Option<OffsetOutOfRange> {
        self.route(topic)
            .and_then(|r| r.on_offset_out_of_range)
            .or(self.kafka.on_offset_out_of_range)
    }

    pub fn route(&self, topic: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|route| route.topic == topic)
    }
}

#[cfg(test)]
mod tests;
