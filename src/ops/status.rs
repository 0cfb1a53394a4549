//! `sluice status`: the cutover gate. Per partition of every routed topic,
//! where the log is (brokers), where sluice is (Postgres), how far behind
//! in records and seconds, who owns it, whether it is halted and why; per
//! route the dead letters; the consumer group and the replicas' `/readyz`.
//! The exit code is what a runbook acts on: 0 caught up, 1 lagging,
//! 2 halted or an error.

pub mod kafka;
pub mod replicas;
pub mod report;
pub mod state;
mod text;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{parse_duration, Config};
use crate::ops::OpsError;
pub use report::{Report, Verdict};

/// How long a replica's `/readyz` may take.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `--wait-caught-up` asks again.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// `sluice status`'s flags (besides `--config`).
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table (docs/operations.md documents each
    /// field).
    #[arg(long)]
    pub json: bool,
    /// Ask again every second until every partition is caught up and
    /// nothing is halted (exit 0), or until this long has passed (then
    /// exit with the last verdict's code): 30s, 5m, 1h.
    #[arg(long, value_name = "DURATION")]
    pub wait_caught_up: Option<String>,
    /// Also ask these replicas' `/readyz` (their http.listen address,
    /// e.g. http://10.0.0.5:8080); repeat or separate by commas.
    #[arg(long = "replicas", value_name = "URL", num_args = 1.., value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// How long each question to the brokers may wait (connecting, log
    /// bounds, reading the next unwritten record).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub timeout: String,
}

/// The flags, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    pub json: bool,
    pub wait_caught_up: Option<Duration>,
    pub replicas: Vec<String>,
    pub timeout: Duration,
}

impl StatusArgs {
    /// Durations in the config's grammar (`config::parse_duration`).
    pub fn options(&self) -> Result<Options, String> {
        let wait_caught_up = self
            .wait_caught_up
            .as_deref()
            .map(|d| parse_duration(d).map_err(|e| format!("--wait-caught-up: {e}")))
            .transpose()?;
        let timeout = parse_duration(&self.timeout).map_err(|e| format!("--timeout: {e}"))?;
        if timeout.is_zero() {
            return Err("--timeout: must be more than 0".into());
        }
        Ok(Options {
            json: self.json,
            wait_caught_up,
            replicas: self.replicas.clone(),
            timeout,
        })
    }
}

/// Asks Postgres, then the brokers (which need the stored offsets to know
/// which record is the next unwritten one), then the replicas.
pub async fn gather(config: &Config, options: &Options) -> Result<Report, OpsError> {
    let client = crate::pg::connect(&config.postgres).await?;
    let stored = state::read(&client, config).await?;
    drop(client);
    let offsets: HashMap<state::Partition, Option<i64>> = stored
        .offsets
        .iter()
        .map(|(k, r)| (k.clone(), r.next_offset))
        .collect();
    let topics = report::topics(config);
    let mut kafka_config = config.clone();
    // Statistics feed the sink's lag metrics; a status has no use for them
    // and rdkafka would log each one at INFO on stderr.
    kafka_config
        .kafka
        .librdkafka
        .insert("statistics.interval.ms".into(), "0".into());
    let timeout = options.timeout;
    let broker = tokio::task::spawn_blocking(move || {
        kafka::facts(&kafka_config, &topics, timeout, |key, log| {
            report::read_position(log, offsets.get(key).copied().flatten())
        })
    })
    .await
    .map_err(|e| OpsError::Broker(format!("the Kafka queries stopped: {e}")))??;
    let replicas = replicas::ask_all(&options.replicas, REPLICA_TIMEOUT).await;
    Ok(report::build(
        config,
        &stored,
        &broker,
        replicas,
        SystemTime::now(),
    ))
}

/// A wrong setting will not right itself while `--wait-caught-up` waits.
fn is_lasting(error: &OpsError) -> bool {
    match error {
        OpsError::Kafka(e) => e.is_setting(),
        // Postgres down for a moment is waited out like the brokers.
        OpsError::Setup(e) => !matches!(e, crate::pg::PgSetupError::Connect { .. }),
        OpsError::Usage(_) | OpsError::Plan(_) => true,
        OpsError::Postgres(_) | OpsError::Broker(_) => false,
    }
}

/// The last report (or error), after waiting when asked to.
pub async fn run(config: &Config, options: &Options) -> Result<Report, OpsError> {
    let Some(wait) = options.wait_caught_up else {
        return gather(config, options).await;
    };
    let deadline = Instant::now() + wait;
    let mut said = String::new();
    loop {
        let last = gather(config, options).await;
        let progress = match &last {
            Ok(r) if r.verdict == Verdict::CaughtUp => return last,
            Err(e) if is_lasting(e) => return last,
            Ok(r) if r.verdict == Verdict::Lagging => format!(
                "lagging: {} record(s) behind",
                r.partitions.iter().map(|p| p.lag_records).sum::<i64>()
            ),
            Ok(r) => r.verdict.word().to_string(),
            Err(e) => format!("error: {e}"),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return last;
        }
        // Progress on stderr, once per change: stdout is the report.
        if progress != said {
            eprintln!("waiting (up to {}s more): {progress}", left.as_secs());
            said = progress;
        }
        tokio::time::sleep(POLL_EVERY.min(left)).await;
    }
}
