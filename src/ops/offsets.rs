//! `sluice offsets show` and `sluice offsets set`: the stored offsets of a
//! deployment, and the one sanctioned way to move them — to the log's
//! start or end, an offset, a time, or the same place in another Kafka
//! cluster's copy of the log (`translate`, for a blue/green cutover).
//! A move is one transaction over the rows it changes; the rows are left
//! unclaimed, so every worker's fence refuses its next commit and the
//! partition resumes at the new offset when it is claimed again.

pub mod plan;
pub mod seek;
pub mod store;
pub mod target;
mod text;

#[cfg(test)]
mod plan_tests;

use std::time::Duration;

use crate::config::{parse_duration, Config};
use crate::ops::OpsError;
pub use plan::Plan;
use target::Target;

/// `sluice offsets set`'s flags (besides `--config`).
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Where to: earliest, latest, offset:<N>, timestamp:<RFC 3339 time>
    /// (the first record at or after it) or translate (the same place in
    /// another cluster's copy of the log, by the last written record's
    /// timestamp; for a blue/green cutover).
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// The topics to move; repeat or separate by commas. Default: every
    /// routed topic.
    #[arg(long = "topic", value_name = "TOPIC", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// The partitions to move; repeat or separate by commas. Default:
    /// every partition of the topics.
    #[arg(long = "partition", value_name = "P", value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// translate only: start this long before the last written record's
    /// time, for timestamps not in offset order (several producers, clock
    /// skew). Default: 1m.
    #[arg(long, value_name = "DURATION")]
    pub overlap: Option<String>,
    /// Decide and print everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Move even though a route would write a record read again as a
    /// second row (an append keyed by Kafka coordinates).
    #[arg(long)]
    pub accept_duplicates: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long each question to the brokers may wait.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub timeout: String,
}

/// The flags, parsed and checked against the config.
#[derive(Debug, Clone)]
pub struct SetOptions {
    pub target: Target,
    pub topics: Vec<String>,
    pub partitions: Vec<i32>,
    pub overlap: Duration,
    pub dry_run: bool,
    pub accept_duplicates: bool,
    pub json: bool,
    pub timeout: Duration,
}

impl SetArgs {
    pub fn options(&self, config: &Config) -> Result<SetOptions, OpsError> {
        let usage = OpsError::Usage;
        let target = Target::parse(&self.to).map_err(usage)?;
        let overlap = match (&self.overlap, target) {
            (Some(_), t) if t != Target::Translate => {
                return Err(usage(format!(
                    "--overlap: only for --to translate (not {})",
                    t.describe()
                )))
            }
            (Some(d), _) => parse_duration(d).map_err(|e| usage(format!("--overlap: {e}")))?,
            (None, _) => parse_duration(target::DEFAULT_OVERLAP).expect("a valid default"),
        };
        let timeout =
            parse_duration(&self.timeout).map_err(|e| usage(format!("--timeout: {e}")))?;
        if timeout.is_zero() {
            return Err(usage("--timeout: must be more than 0".into()));
        }
        let routed = routed_topics(config);
        let topics = match self.topics.is_empty() {
            true => routed.clone(),
            false => self.topics.clone(),
        };
        if let Some(t) = topics.iter().find(|t| !routed.contains(t)) {
            return Err(usage(format!(
                "--topic {t}: no route reads it (routed: {})",
                routed.join(", ")
            )));
        }
        if let Some(p) = self.partitions.iter().find(|p| **p < 0) {
            return Err(usage(format!("--partition {p}: partitions count from 0")));
        }
        if matches!(target, Target::Offset(_)) && topics.len() != 1 {
            return Err(usage(format!(
                "--to {}: an offset means something in one topic's partitions: name it \
                 with --topic",
                target.describe()
            )));
        }
        Ok(SetOptions {
            target,
            topics,
            partitions: self.partitions.clone(),
            overlap,
            dry_run: self.dry_run,
            accept_duplicates: self.accept_duplicates,
            json: self.json,
            timeout,
        })
    }
}

/// The configured routes' topics, each once, in config order.
fn routed_topics(config: &Config) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for r in &config.routes {
        if !topics.contains(&r.topic) {
            topics.push(r.topic.clone());
        }
    }
    topics
}

/// `sluice offsets show`: every stored offset of the group.
pub async fn show(config: &Config, json: bool) -> Result<String, OpsError> {
    let client = crate::pg::connect(&config.postgres).await?;
    let rows = store::read(&client, config).await?;
    match json {
        true => crate::ops::to_json(&text::listing(&rows)),
        false => Ok(text::show(config, &rows)),
    }
}

/// `sluice offsets set`: decides every partition's move from Postgres'
/// rows and the connected brokers, then writes them in one transaction.
pub async fn set(config: &Config, options: &SetOptions) -> Result<(Plan, String), OpsError> {
    let mut client = crate::pg::connect(&config.postgres).await?;
    let rows = store::read(&client, config).await?;
    let mut kafka_config = config.clone();
    // Statistics feed the sink's lag metrics; rdkafka would log each one.
    kafka_config
        .kafka
        .librdkafka
        .insert("statistics.interval.ms".into(), "0".into());
    let (risks, opts, for_brokers) = (
        target::risks(config, &options.topics),
        options.clone(),
        rows.clone(),
    );
    let mut plan = tokio::task::spawn_blocking(move || {
        let first = opts.topics.first().map_or("", String::as_str);
        let brokers = seek::Brokers::connect(&kafka_config, first, opts.timeout)?;
        let logs = seek::logs_of(&brokers, &opts.topics)?;
        let logs = plan::choose(logs, &opts.topics, &opts.partitions)?;
        let inputs = plan::Inputs {
            target: opts.target,
            overlap: opts.overlap,
            cluster_id: brokers.cluster_id.as_deref(),
            rows: &for_brokers,
            logs: &logs,
            risks,
            accept_duplicates: opts.accept_duplicates,
            dry_run: opts.dry_run,
        };
        plan::build(&inputs, |t, p, b, ms| brokers.offset_for_time(t, p, b, ms))
    })
    .await
    .map_err(|e| OpsError::Broker(format!("the Kafka queries stopped: {e}")))??;
    let locked = store::write(&mut client, config, &plan.moves(&rows), options.dry_run).await?;
    plan.started_from(&locked);
    let out = match options.json {
        true => crate::ops::to_json(&plan)?,
        false => plan.text(),
    };
    Ok((plan, out))
}
