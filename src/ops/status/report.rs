//! The status report: built from what Postgres and the brokers said (pure,
//! so the arithmetic and the verdict are tested without either), shown as
//! a table or as JSON (docs/operations.md, "`sluice status`").

use std::time::SystemTime;

use serde::Serialize;

use super::kafka::{BrokerFacts, Group};
use super::replicas::ReplicaStatus;
use super::state::{OffsetRow, Stored};
use crate::config::Config;
use crate::kafka::log::LogBounds;
use crate::offsets::UNCLAIMED;

/// What a runbook acts on; the process exits with [`Verdict::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every partition's lag is 0 and nothing is halted.
    CaughtUp,
    Lagging,
    Halted,
    /// Something could not be asked or is missing (a routed topic).
    Error,
}

impl Verdict {
    /// As the table's last line says it.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::CaughtUp => "caught up",
            Verdict::Lagging => "lagging",
            Verdict::Halted => "halted",
            Verdict::Error => "error",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Verdict::CaughtUp => 0,
            Verdict::Lagging => 1,
            Verdict::Halted | Verdict::Error => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub group_id: String,
    /// The connected cluster's id (`None`: the brokers did not say).
    pub cluster_id: Option<String>,
    pub checked_at: String,
    pub verdict: Verdict,
    pub exit_code: u8,
    pub partitions: Vec<PartitionStatus>,
    pub routes: Vec<RouteStatus>,
    pub group: Option<Group>,
    /// Why the group is not described (`group` is then `None`).
    pub group_error: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
    /// Errors that make the verdict `error` (e.g. a routed topic missing).
    pub problems: Vec<String>,
    /// The state tables do not exist yet: nothing was ever written.
    pub state_schema_missing: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
    /// The stored next offset (`None`: never written).
    pub stored_offset: Option<i64>,
    pub never_written: bool,
    pub lag_records: i64,
    /// Now − the Kafka timestamp of the next unwritten record; 0 when
    /// caught up, `None` when that record could not be read in time.
    pub lag_seconds: Option<f64>,
    /// The replica's fencing token (`None`: no row, or unclaimed).
    pub owner: Option<String>,
    /// `updated_at`: the last commit (or claim-time start) of the row.
    pub last_commit_at: Option<String>,
    pub stored_cluster_id: Option<String>,
    /// The stored offset is another Kafka cluster's.
    pub cluster_differs: bool,
    /// Kafka timestamp of the last record written.
    pub last_record_at: Option<String>,
    pub halted: bool,
    pub halt_reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub route: String,
    pub topic: String,
    pub table: String,
    pub dead_letters_last_hour: i64,
    pub dead_letters_total: i64,
}

/// Records not yet written: from the stored offset (a partition never
/// written starts at the log start) to the high watermark. Records below
/// the log start are gone and not counted.
pub fn lag_records(log: LogBounds, stored: Option<i64>) -> i64 {
    let from = stored.unwrap_or(log.low).max(log.low);
    (log.high - from).max(0)
}

/// Where the next unwritten record is, when there is one.
pub fn read_position(log: LogBounds, stored: Option<i64>) -> Option<i64> {
    let from = stored.unwrap_or(log.low).max(log.low);
    (from < log.high).then_some(from)
}

/// Seconds the next unwritten record (Kafka timestamp `ts_ms`) has waited;
/// 0 when caught up, never negative (producer clocks run ahead).
pub fn lag_seconds(lag_records: i64, ts_ms: Option<i64>, now: SystemTime) -> Option<f64> {
    if lag_records == 0 {
        return Some(0.0);
    }
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    ts_ms.map(|ts| (now_ms.saturating_sub(ts)).max(0) as f64 / 1000.0)
}

/// Halted or in error beats lagging, which beats caught up.
pub fn verdict(partitions: &[PartitionStatus], problems: &[String]) -> Verdict {
    if !problems.is_empty() {
        Verdict::Error
    } else if partitions.iter().any(|p| p.halted) {
        Verdict::Halted
    } else if partitions.iter().any(|p| p.lag_records > 0) {
        Verdict::Lagging
    } else {
        Verdict::CaughtUp
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The routed topics, each once, in the config's order.
pub fn topics(config: &Config) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for r in &config.routes {
        if !topics.contains(&r.topic) {
            topics.push(r.topic.clone());
        }
    }
    topics
}

/// Puts the report together.
pub fn build(
    config: &Config,
    stored: &Stored,
    broker: &BrokerFacts,
    replicas: Vec<ReplicaStatus>,
    now: SystemTime,
) -> Report {
    let mut keys: Vec<_> = broker.logs.keys().cloned().collect();
    let order = topics(config);
    keys.sort_by_key(|(t, p)| (order.iter().position(|o| o == t), *p));
    let partitions: Vec<PartitionStatus> = keys
        .into_iter()
        .map(|key| {
            let log = broker.logs[&key];
            let row = stored.offsets.get(&key);
            partition(key, log, row, stored, broker, now)
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let route = r.route_name();
            let (hour, total) = stored.dead_letters.get(&route).copied().unwrap_or((0, 0));
            RouteStatus {
                route,
                topic: r.topic.clone(),
                table: r.table.clone(),
                dead_letters_last_hour: hour,
                dead_letters_total: total,
            }
        })
        .collect();
    let problems: Vec<String> = broker
        .missing_topics
        .iter()
        .map(|t| format!("routes[].topic: the brokers have no topic {t}"))
        .collect();
    let verdict = verdict(&partitions, &problems);
    let (group, group_error) = match &broker.group {
        Ok(g) => (Some(g.clone()), None),
        Err(e) => (None, Some(e.clone())),
    };
    Report {
        group_id: config.kafka.group_id.clone(),
        cluster_id: broker.cluster_id.clone(),
        checked_at: rfc3339(now),
        verdict,
        exit_code: verdict.code(),
        partitions,
        routes,
        group,
        group_error,
        replicas,
        problems,
        state_schema_missing: stored.schema_missing,
    }
}

fn partition(
    key: (String, i32),
    log: LogBounds,
    row: Option<&OffsetRow>,
    stored: &Stored,
    broker: &BrokerFacts,
    now: SystemTime,
) -> PartitionStatus {
    let offset = row.and_then(|r| r.next_offset);
    let lag = lag_records(log, offset);
    let stored_cluster = row.and_then(|r| r.cluster_id.clone());
    // As the worker decides (pipeline::Shared::claim): only a stored offset
    // with a cluster, on brokers that say theirs, can be another's.
    let foreign = match (&stored_cluster, &broker.cluster_id, offset) {
        (Some(s), Some(now), Some(_)) if s != now => Some((s.clone(), now.clone())),
        _ => None,
    };
    let mut reasons = Vec::new();
    let halt = stored.halts.get(&key);
    if let Some(h) = halt {
        let state = h.sqlstate.as_deref().map(|s| format!(" (SQLSTATE {s})"));
        reasons.push(format!(
            "halted before offset {} since {}: {}{}",
            h.offset,
            rfc3339(h.halted_at),
            h.error,
            state.unwrap_or_default()
        ));
    }
    if let Some((s, now)) = &foreign {
        // A worker's own halt for this says so already.
        if !halt.is_some_and(|h| h.error.contains(s.as_str())) {
            reasons.push(format!(
                "offset belongs to another cluster: the stored offset is cluster {s}'s, the \
                 brokers are cluster {now}; `sluice offsets set --topic {} --to translate` \
                 moves it (docs/operations.md, \"Blue/green cutover\")",
                key.0
            ));
        }
    }
    PartitionStatus {
        log_start: log.low,
        high_watermark: log.high,
        stored_offset: offset,
        never_written: offset.is_none(),
        lag_records: lag,
        lag_seconds: lag_seconds(lag, broker.timestamps.get(&key).copied(), now),
        owner: row
            .filter(|r| r.owner != UNCLAIMED)
            .map(|r| r.owner.to_string()),
        last_commit_at: row.map(|r| rfc3339(r.updated_at)),
        stored_cluster_id: stored_cluster,
        cluster_differs: foreign.is_some(),
        last_record_at: row.and_then(|r| r.last_record_at).map(rfc3339),
        halted: !reasons.is_empty(),
        halt_reasons: reasons,
        topic: key.0,
        partition: key.1,
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
