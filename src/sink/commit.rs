//! Commits a batch exactly once, whatever Postgres does meanwhile.
//!
//! - Retryable errors: the same slice is attempted again after a backoff, on
//!   a fresh connection when the error left the old one unusable; the fence
//!   makes the retry safe even when the failed attempt did commit (its reply
//!   was lost).
//! - A record the database refuses (SQLSTATE 22/23): the slice is bisected
//!   into halves committed in order, each fenced, until the record stands
//!   alone; it is then dead-lettered, for the route that refused it, with
//!   the SQLSTATE and message, while the topic's other routes write it.
//! - Fatal errors stop the partition.

use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};
use uuid::Uuid;

use super::attempt::{Attempt, DeadLetterKind, Refused, Slice, WriteStats};
use super::breaker::Breaker;
use super::error::{ErrorClass, SinkError};
use super::topic::{Failure, TopicWriter};
use super::writer::TableWriter;
use crate::backoff::Backoff;
use crate::config::{OnError, RetryConfig};
use crate::metrics::Metrics;
use crate::offsets::{judge, FenceVerdict, OffsetStore, PartitionKey};
use crate::pg::MeteredPool;
use crate::record::Record;
use crate::throttle::Throttle;

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (or proven written); the partition continues from `next_offset`.
    Committed { next_offset: i64 },
    /// Another worker owns the partition: stop without writing.
    Stale { owner: Option<Uuid> },
    /// Postgres holds another offset for us: re-read from it.
    Rewound { next_offset: Option<i64> },
    /// Cancelled while waiting to retry; nothing of the batch was written.
    Cancelled,
    /// `on_error: stop`: the record at `offset` cannot be written; what came
    /// before it is committed and the partition continues from `next_offset`
    /// only once an operator has fixed the cause.
    Halted {
        next_offset: Option<i64>,
        offset: i64,
        reason: String,
        sqlstate: Option<String>,
    },
}

/// Everything a partition worker needs to commit its batches.
pub struct Committer<'a> {
    pub pool: &'a MeteredPool,
    pub offsets: &'a OffsetStore,
    pub writer: &'a TopicWriter,
    pub metrics: &'a Metrics,
    pub key: &'a PartitionKey,
    pub owner: Uuid,
    pub cancel: &'a CancellationToken,
    pub retry: &'a RetryConfig,
    /// An attempt that takes longer is abandoned and retried.
    pub deadline: Duration,
    /// Told each commit's latency (the adaptive brake's input).
    pub throttle: Option<&'a Throttle>,
    /// The partition's poison-storm breaker (sink::breaker).
    pub breaker: &'a Breaker,
}

impl Committer<'_> {
    /// Commits `records` (in offset order, at least one) continuing from
    /// `start`.
    pub async fn commit(
        &self,
        start: Option<i64>,
        records: &[Record],
    ) -> Result<Outcome, SinkError> {
        self.commit_slice(start, records, Vec::new()).await
    }

    /// `refused`: the routes that refused the slice's single record.
    fn commit_slice<'s>(
        &'s self,
        start: Option<i64>,
        records: &'s [Record],
        refused: Vec<(usize, Refused)>,
    ) -> BoxFuture<'s, Result<Outcome, SinkError>> {
        Box::pin(async move {
            // An empty slice has no end offset: there is nothing to fence.
            let Some(last) = records.last() else {
                return Ok(Outcome::Committed {
                    next_offset: start.unwrap_or_default(),
                });
            };
            debug_assert!(start.is_none_or(|s| s <= last.offset));
            let mut backoff = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
            loop {
                let slice = Slice {
                    key: self.key,
                    owner: self.owner,
                    start,
                    records,
                    refused: &refused,
                };
                let began = Instant::now();
                let Failure { route, error: err } = match self.attempt(&slice).await {
                    Ok(Attempt::Committed(stats)) => {
                        self.record(&stats, records, began.elapsed());
                        return Ok(Outcome::Committed {
                            next_offset: slice.end(),
                        });
                    }
                    Ok(Attempt::Rejected { index, reason }) => {
                        return self.halt_at(start, records, index, reason, None).await;
                    }
                    Ok(Attempt::Fenced) => match self.verdict(slice.end()).await {
                        Ok(outcome) => return Ok(outcome),
                        Err(e) => e.into(),
                    },
                    Err(e) => e,
                };
                self.metrics
                    .pg_errors
                    .with_label_values(&[&err.class_label()])
                    .inc();
                match err.class() {
                    ErrorClass::Retry => {
                        self.metrics.retries.inc();
                        warn!(partition = %self.key, error = %err, "batch failed; retrying");
                        if !backoff.wait(self.cancel).await {
                            return Ok(Outcome::Cancelled);
                        }
                    }
                    // A refused record's route dead-letters it; when that
                    // is refused too, nothing is left to take apart.
                    ErrorClass::DeadLetter => match route {
                        Some(route) if !refused.iter().any(|(r, _)| *r == route) => {
                            return self.isolate(start, records, route, refused, &err).await;
                        }
                        _ => return Err(err),
                    },
                    _ => return Err(err),
                }
            }
        })
    }

    /// Splits a slice `route` refused until the refused records stand
    /// alone. `refused`: the other routes that refused a single record.
    async fn isolate(
        &self,
        start: Option<i64>,
        records: &[Record],
        route: usize,
        mut refused: Vec<(usize, Refused)>,
        err: &SinkError,
    ) -> Result<Outcome, SinkError> {
        if let [record] = records {
            let sqlstate = err.sqlstate().map(str::to_string);
            let writer = &self.writer.routes()[route];
            if writer.on_error() == OnError::Stop {
                return self
                    .halt_at(start, records, 0, err.to_string(), sqlstate)
                    .await;
            }
            if let Some(why) = self
                .breaker
                .would_trip(DeadLetterKind::Refused, &err.to_string())
            {
                // Said here, where the breaker trips: the halt that follows
                // is reported like any other.
                self.metrics.poison_storms.inc();
                error!(partition = %self.key, offset = record.offset, reason = %why,
                       "poison storm: partition halted (max_dead_letter_ratio)");
                return self.halt_at(start, records, 0, why, sqlstate).await;
            }
            warn!(partition = %self.key, offset = record.offset, route = %writer.name,
                  error = %err, "record refused by Postgres; dead-lettering it");
            refused.push((
                route,
                Refused {
                    reason: err.to_string(),
                    sqlstate,
                },
            ));
            return self.commit_slice(start, records, refused).await;
        }
        let (head, tail) = records.split_at(records.len() / 2);
        match self.commit_slice(start, head, Vec::new()).await? {
            Outcome::Committed { next_offset } => {
                self.commit_slice(Some(next_offset), tail, Vec::new()).await
            }
            other => Ok(other),
        }
    }

    /// Commits what precedes the record at `index`, then halts before it.
    async fn halt_at(
        &self,
        start: Option<i64>,
        records: &[Record],
        index: usize,
        reason: String,
        sqlstate: Option<String>,
    ) -> Result<Outcome, SinkError> {
        let next_offset = if index == 0 {
            start
        } else {
            match self
                .commit_slice(start, &records[..index], Vec::new())
                .await?
            {
                Outcome::Committed { next_offset } => Some(next_offset),
                other => return Ok(other),
            }
        };
        Ok(Outcome::Halted {
            next_offset,
            offset: records[index].offset,
            reason,
            sqlstate,
        })
    }

    async fn attempt(&self, slice: &Slice<'_>) -> Result<Attempt, Failure> {
        let mut client = self.pool.get().await.map_err(SinkError::from)?;
        let write = self
            .writer
            .write(&mut client, self.offsets, slice, &self.metrics.phases);
        let result = match tokio::time::timeout(self.deadline, write).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Timeout(self.deadline).into()),
        };
        if matches!(&result, Err(e) if e.error.discards_connection()) {
            // Broken mid-protocol, or on a server that will refuse the retry
            // too (read-only after a failover, shutting down): never reuse
            // it, so the retry connects afresh and finds the primary.
            drop(Object::take(client));
        }
        result
    }

    /// Reads the offset row after the fence held a commit back.
    async fn verdict(&self, end: i64) -> Result<Outcome, SinkError> {
        let row = read_offset(self.pool, self.offsets, self.key, self.deadline).await?;
        Ok(match judge(self.owner, end, row) {
            FenceVerdict::AlreadyCommitted => {
                self.metrics.ambiguous_commits.inc();
                Outcome::Committed { next_offset: end }
            }
            FenceVerdict::Stale { owner } => {
                self.metrics.fence_rejections.inc();
                Outcome::Stale { owner }
            }
            FenceVerdict::Rewound { next_offset } => {
                self.metrics.rewinds.inc();
                Outcome::Rewound { next_offset }
            }
        })
    }

    fn record(&self, all: &[WriteStats], records: &[Record], took: Duration) {
        let m = self.metrics;
        m.batch_commit_seconds.observe(took.as_secs_f64());
        if let Some(throttle) = self.throttle {
            throttle.observe_commit(took);
        }
        m.batch_rows.observe(records.len() as f64);
        m.batch_bytes
            .observe(records.iter().map(|r| r.size() as f64).sum::<f64>());
        let mut dead = Vec::new();
        for (writer, stats) in self.writer.routes().iter().zip(all) {
            record_route(m, writer, stats);
            dead.extend_from_slice(&stats.dead_letters);
        }
        // The breaker watches the partition: a record dead-lettered by
        // any route counts against it.
        self.breaker
            .observe(records.len().saturating_sub(dead.len()), &dead);
        m.partition_rows
            .with_label_values(&[self.key.topic.as_str(), &self.key.partition.to_string()])
            .inc_by(records.len() as u64);
    }
}

/// What one route wrote, under its table's labels.
fn record_route(m: &Metrics, writer: &TableWriter, stats: &WriteStats) {
    let table = writer.table.to_string();
    m.rows_written
        .with_label_values(&[table.as_str(), writer.mode_label()])
        .inc_by(stats.rows);
    m.rows_deleted
        .with_label_values(&[table.as_str()])
        .inc_by(stats.deleted);
    for (reason, n) in [
        ("conflict", stats.conflicts),
        ("stale_version", stats.stale),
        ("tombstone", stats.tombstones),
        ("collapsed", stats.collapsed),
    ] {
        if n > 0 {
            m.rows_skipped
                .with_label_values(&[table.as_str(), reason])
                .inc_by(n);
        }
    }
    for kind in &stats.dead_letters {
        m.dead_letters
            .with_label_values(&[table.as_str(), kind.as_str()])
            .inc();
    }
}

/// Reads `key`'s offset row on a pooled connection, all within `deadline`.
/// A read abandoned at the deadline takes its connection out of the pool
/// rather than back: its answer is still on the way, and the next
/// statement would travel behind it, whose answer a transaction-pooling
/// PgBouncer (1.18) drops once the first one ended the transaction
/// (docs/operations.md, "PgBouncer").
pub async fn read_offset(
    pool: &MeteredPool,
    offsets: &OffsetStore,
    key: &PartitionKey,
    deadline: Duration,
) -> Result<Option<(Uuid, Option<i64>)>, SinkError> {
    let began = Instant::now();
    let client = tokio::time::timeout(deadline, pool.get())
        .await
        .map_err(|_| SinkError::Timeout(deadline))??;
    let left = deadline.saturating_sub(began.elapsed());
    match tokio::time::timeout(left, offsets.read(&**client, key)).await {
        Ok(row) => Ok(row?),
        Err(_) => {
            drop(Object::take(client));
            Err(SinkError::Timeout(deadline))
        }
    }
}
