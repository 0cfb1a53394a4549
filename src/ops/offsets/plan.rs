//! What `sluice offsets set` will do, partition by partition, decided
//! before anything is written: where each stored offset goes and how that
//! place was found, which partitions are left alone and why, and what the
//! move costs (records skipped, or read again).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::seek::Found;
use super::store::{Move, Partition, Row};
use super::target::Target;
use crate::config::format_epoch_ms;
use crate::kafka::log::LogBounds;
use crate::ops::OpsError;

/// A stored position: the offset and the cluster it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    pub next_offset: Option<i64>,
    pub cluster_id: Option<String>,
}

/// One partition moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    pub topic: String,
    pub partition: i32,
    /// `None`: the partition had no row.
    pub from: Option<Position>,
    pub to: Position,
    /// `earliest`, `latest`, `offset`, `time_index`, `searched` or
    /// `log_end`.
    pub found_by: String,
    /// The time looked for (timestamp, translate), RFC 3339.
    pub time: Option<String>,
    pub log_low: i64,
    pub log_high: i64,
    /// Records between the old and the new offset that will not be
    /// written (a move forward on the same cluster).
    pub skipped_records: Option<i64>,
    /// Records that will be read again (a move back on the same cluster).
    pub reread_records: Option<i64>,
}

/// A partition not moved, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Left {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

/// The whole move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The connected cluster, which the new offsets belong to.
    pub cluster_id: Option<String>,
    pub target: String,
    pub dry_run: bool,
    pub moved: Vec<Moved>,
    pub left: Vec<Left>,
    /// Routes that write a record read again as a second row, when the
    /// move reads records again (allowed by `--accept-duplicates`).
    pub duplicates: Vec<String>,
}

/// What the plan is made from.
pub struct Inputs<'a> {
    pub target: Target,
    pub overlap: Duration,
    pub cluster_id: Option<&'a str>,
    pub rows: &'a BTreeMap<Partition, Row>,
    /// The chosen partitions of the connected cluster, with their logs.
    pub logs: &'a BTreeMap<Partition, LogBounds>,
    /// Routes of the chosen topics that would duplicate a record read
    /// again (`target::risks`).
    pub risks: Vec<String>,
    pub accept_duplicates: bool,
    pub dry_run: bool,
}

fn ms_of(at: std::time::SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Decides every partition's move; `find` gives the offset of the first
/// record at or after a time (`Brokers::offset_for_time`). An error
/// refuses the whole move: nothing is written.
pub fn build(
    inputs: &Inputs,
    mut find: impl FnMut(&str, i32, LogBounds, i64) -> Result<(i64, Found), OpsError>,
) -> Result<Plan, OpsError> {
    let mut plan = Plan {
        cluster_id: inputs.cluster_id.map(str::to_owned),
        target: inputs.target.describe(),
        dry_run: inputs.dry_run,
        moved: Vec::new(),
        left: Vec::new(),
        duplicates: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut rereads = false;
    for ((topic, partition), log) in inputs.logs {
        let row = inputs.rows.get(&(topic.clone(), *partition));
        let name = format!("{topic}[{partition}]");
        let stored = row.and_then(|r| r.next_offset);
        let other_cluster = row
            .and_then(|r| r.cluster_id.as_deref())
            .is_some_and(|c| Some(c) != inputs.cluster_id);
        let (to, found_by, time) = match inputs.target {
            Target::Earliest => (log.low, "earliest".to_string(), None),
            Target::Latest => (log.high, "latest".to_string(), None),
            Target::Offset(n) => {
                if n < log.low || n > log.high {
                    problems.push(format!(
                        "{name}: offset {n} is outside the log ({}..{}, the log end \
                         included): pick one in it",
                        log.low, log.high
                    ));
                    continue;
                }
                (n, "offset".to_string(), None)
            }
            Target::Timestamp(ms) => {
                let (to, how) = find(topic, *partition, *log, ms)?;
                (to, found_name(how), Some(ms))
            }
            Target::Translate => {
                let Some(row) = row.filter(|r| r.next_offset.is_some()) else {
                    plan.left.push(Left {
                        topic: topic.clone(),
                        partition: *partition,
                        reason: "no stored offset: kafka.start_from applies at its first claim"
                            .into(),
                    });
                    continue;
                };
                if !other_cluster && row.cluster_id.is_some() {
                    problems.push(format!(
                        "{name}: its offset already belongs to cluster {} (the connected \
                         one); translate moves offsets read from another cluster. Use \
                         --to earliest, offset:<N> or timestamp:<time> to move within \
                         one cluster",
                        row.cluster_id.as_deref().unwrap_or("?")
                    ));
                    continue;
                }
                let Some(last) = row.last_record_at else {
                    problems.push(format!(
                        "{name}: its offset ({}) has no last record time (it was stored \
                         before sluice kept one, or moved by `sluice offsets set` since \
                         and nothing was written after): translate has nothing to go by. \
                         Use --to timestamp:<the time of the last record written>",
                        stored.unwrap_or_default()
                    ));
                    continue;
                };
                let overlap = i64::try_from(inputs.overlap.as_millis()).unwrap_or(i64::MAX);
                let ms = ms_of(last).saturating_sub(overlap).max(0);
                let (to, how) = find(topic, *partition, *log, ms)?;
                (to, found_name(how), Some(ms))
            }
        };
        let same_log = stored.is_some() && !other_cluster;
        let (skipped, reread) = match (same_log, stored) {
            (true, Some(from)) if to > from => (Some(to - from), None),
            (true, Some(from)) if to < from => (None, Some(from - to)),
            _ => (None, None),
        };
        // A record read again: back on the same log, or anywhere but
        // the end on another cluster's (nothing says which of its records
        // were written).
        rereads |= reread.is_some()
            || (other_cluster && to < log.high)
            || matches!(inputs.target, Target::Translate);
        plan.moved.push(Moved {
            topic: topic.clone(),
            partition: *partition,
            from: row.map(|r| Position {
                next_offset: r.next_offset,
                cluster_id: r.cluster_id.clone(),
            }),
            to: Position {
                next_offset: Some(to),
                cluster_id: inputs.cluster_id.map(str::to_owned),
            },
            found_by,
            time: time.map(format_epoch_ms),
            log_low: log.low,
            log_high: log.high,
            skipped_records: skipped,
            reread_records: reread,
        });
    }
    if rereads {
        plan.duplicates = inputs.risks.clone();
        if !plan.duplicates.is_empty() && !inputs.accept_duplicates {
            problems.push(format!(
                "this move makes sluice read records again, and {}. Make the route \
                 idempotent (mode: upsert, or a `key` of the record's own id), or pass \
                 --accept-duplicates to move anyway",
                plan.duplicates.join("; ")
            ));
        }
    }
    match problems.is_empty() {
        true => Ok(plan),
        false => Err(OpsError::Plan(format!(
            "nothing was changed:\n  {}",
            problems.join("\n  ")
        ))),
    }
}

fn found_name(how: Found) -> String {
    match how {
        Found::TimeIndex => "time_index",
        Found::Searched => "searched",
        Found::LogEnd => "log_end",
    }
    .into()
}

impl Plan {
    /// The rows to write.
    pub fn moves(&self, rows: &BTreeMap<Partition, Row>) -> Vec<Move> {
        self.moved
            .iter()
            .map(|m| {
                let key = (m.topic.clone(), m.partition);
                let row = rows.get(&key);
                Move {
                    was: row.map(|r| r.next_offset),
                    was_cluster: row.and_then(|r| r.cluster_id.clone()),
                    partition: key,
                    to: m.to.next_offset.unwrap_or_default(),
                    cluster_id: m.to.cluster_id.clone(),
                }
            })
            .collect()
    }

    /// Takes the offsets the moved rows held when they were locked
    /// (`store::write`), which a running replica may have advanced since
    /// they were read: the plan then says what the move really skips.
    pub fn started_from(&mut self, locked: &[Option<i64>]) {
        for (m, now) in self.moved.iter_mut().zip(locked) {
            let Some(from) = m.from.as_mut() else {
                continue;
            };
            if from.next_offset == *now {
                continue;
            }
            from.next_offset = *now;
            let to = m.to.next_offset.unwrap_or_default();
            if let Some(now) = *now {
                if m.skipped_records.is_some() {
                    m.skipped_records = Some(to - now);
                }
                if m.reread_records.is_some() {
                    m.reread_records = Some(now - to);
                }
            }
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "Kafka cluster {}; --to {}{}\n",
            self.cluster_id.as_deref().unwrap_or("(id not known)"),
            self.target,
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        );
        out += &format!(
            "{:<24} {:>5}  {:>14} {:<24} {:>14}  {:<10} {}\n",
            "TOPIC", "PART", "FROM", "FROM CLUSTER", "TO", "FOUND BY", "NOTE"
        );
        for m in &self.moved {
            let from = m.from.as_ref();
            let note = match (m.skipped_records, m.reread_records, &m.time) {
                (Some(n), _, _) => format!("skips {n} record(s)"),
                (_, Some(n), _) => format!("reads {n} record(s) again"),
                (_, _, Some(t)) => format!("first record at or after {t}"),
                _ => String::new(),
            };
            out += &format!(
                "{:<24} {:>5}  {:>14} {:<24} {:>14}  {:<10} {}\n",
                m.topic,
                m.partition,
                from.and_then(|p| p.next_offset)
                    .map_or("-".into(), |n| n.to_string()),
                from.and_then(|p| p.cluster_id.clone())
                    .unwrap_or_else(|| "-".into()),
                m.to.next_offset.unwrap_or_default(),
                m.found_by,
                note
            );
        }
        for l in &self.left {
            out += &format!("{}[{}]: left alone: {}\n", l.topic, l.partition, l.reason);
        }
        for d in &self.duplicates {
            out += &format!("warning: {d} (--accept-duplicates)\n");
        }
        if !self.dry_run && !self.moved.is_empty() {
            out += &format!(
                "moved {} partition(s): sluice resumes there at its next claim (a running \
                 replica's next commit is refused by the fence, and it claims again)\n",
                self.moved.len()
            );
        }
        out
    }
}

/// The partitions of the chosen topics (every partition when `only` is
/// empty), refusing a partition the topic does not have.
pub fn choose(
    logs: HashMap<Partition, LogBounds>,
    topics: &[String],
    only: &[i32],
) -> Result<BTreeMap<Partition, LogBounds>, OpsError> {
    for topic in topics {
        if !logs.keys().any(|(t, _)| t == topic) {
            return Err(OpsError::Plan(format!(
                "--topic {topic}: the brokers do not know the topic (kafka.brokers is the \
                 cluster to move the offsets to)"
            )));
        }
        for p in only {
            if !logs.contains_key(&(topic.clone(), *p)) {
                return Err(OpsError::Usage(format!(
                    "--partition {p}: {topic} has no partition {p}"
                )));
            }
        }
    }
    Ok(logs
        .into_iter()
        .filter(|((t, p), _)| topics.contains(t) && (only.is_empty() || only.contains(p)))
        .collect())
}
