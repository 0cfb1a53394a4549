//! One partition's serial worker: collect a batch from the partition's own
//! queue, commit it, repeat. No two batches of a partition are ever in
//! flight: the next batch is collected only after the previous one ended.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};
use uuid::Uuid;

use super::intake::{Next, Pull};
use super::Shared;
use crate::kafka::burst::Burst;
use crate::kafka::{PartitionQueue, SinkConsumer};
use crate::offsets::PartitionKey;
use crate::record::{Arena, Record};
use crate::sink::breaker::Breaker;
use crate::sink::commit::{Committer, Outcome};
use crate::sink::error::SinkError;
use crate::sink::topic::TopicWriter;
use crate::throttle::Throttle;

/// A throttle wait or a commit longer than this pauses the partition.
/// Shorter ones do not: the per-partition fetch queue limit already bounds
/// their memory, and pausing costs a refetch (librdkafka drops what it
/// prefetched for the partition), which at high rates would cost more than
/// the wait itself.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// How often a worker with nothing to write re-reads its offset row. A busy
/// worker learns at its next commit (the fence) that Postgres lost commits
/// (an asynchronous replica promoted without the last batches); an idle one
/// commits nothing, so without this it would never write them again.
pub(super) const IDLE_VERIFY: Duration = Duration::from_secs(5);

/// Where a worker is in its cycle (named in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for records and filling a batch.
    Collecting,
    /// Waiting for the throttle's budget, before the transaction starts;
    /// the partition is paused meanwhile so nothing more is fetched.
    Throttled,
    /// Writing the batch in one transaction (not interrupted by a stop).
    Writing,
    /// `on_error: stop` met a bad record: holding the partition, writing
    /// nothing, until stopped.
    Halted,
}

/// Why a worker ended.
#[derive(Debug)]
pub enum Exit {
    /// Told to stop (revoked, or shutting down); its uncommitted records are
    /// left for the partition's next owner.
    Stopped,
    /// The fence showed another worker owns the partition.
    Stale { owner: Option<Uuid> },
    /// An error no retry fixes.
    Failed(WorkerError),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot read the partition's log bounds: {0}")]
    LogBounds(rdkafka::error::KafkaError),
    #[error("cannot seek to offset {offset:?}: {source}")]
    Seek {
        offset: Option<i64>,
        source: rdkafka::error::KafkaError,
    },
}

pub struct PartitionWorker {
    pub key: PartitionKey,
    pub owner: Uuid,
    /// The stored next offset (`None`: nothing committed yet).
    pub next_offset: Option<i64>,
    /// Halt before reading anything (more): the stored offset was found
    /// outside the log at assignment (pipeline::edges), or belongs to
    /// another Kafka cluster (offset, reason; Shared::claim).
    pub halt_at_start: Option<(i64, String)>,
    /// Shared with each batch's stream ([`PartitionWorker::next`]).
    pub queue: Arc<PartitionQueue>,
    /// The same queue, taken from many records at a time (dropped before
    /// the consumer: it holds a reference into it).
    pub burst: Burst,
    pub consumer: Arc<SinkConsumer>,
    pub writer: Arc<TopicWriter>,
    pub shared: Arc<Shared>,
    pub stop: CancellationToken,
    /// The partition's poison-storm breaker.
    pub breaker: Breaker,
}

impl PartitionWorker {
    pub async fn run(mut self) -> Exit {
        let shared = Arc::clone(&self.shared);
        let limits = &shared.batch;
        let max_bytes = usize::try_from(limits.max_bytes.bytes()).unwrap_or(usize::MAX);
        // Grown by the records that come, not reserved for `max_rows`: a
        // heap profile found 15 MB reserved by 32 workers (5,000 rows of
        // 96 bytes each), idle ones included.
        let mut batch: Vec<Record> = Vec::new();
        let mut arena = Arena::default();
        shared.track(&self.key, self.next_offset, None);
        if let Some((offset, reason)) = self.halt_at_start.take() {
            return self.halt(offset, reason, None).await;
        }
        loop {
            debug!(partition = %self.key, state = ?State::Collecting, next_offset = ?self.next_offset);
            batch.clear();
            arena.restart();
            let mut bytes = 0usize;
            let mut deadline = None;
            let mut out_of_range = false;
            // One stream per batch, not per record: each stream takes a
            // waker slot (a mutex and a slab entry) when made and dropped.
            let queue = Arc::clone(&self.queue);
            let mut stream = queue.stream();
            let mut unchecked = 0u32;
            while batch.len() < limits.max_rows && bytes < max_bytes {
                let pull = Pull {
                    stream: &mut stream,
                    arena: &mut arena,
                    unchecked: &mut unchecked,
                };
                match self.next(pull, deadline).await {
                    Next::Record(record) => {
                        bytes += record.size();
                        batch.push(record);
                        deadline.get_or_insert_with(|| Instant::now() + limits.linger);
                    }
                    Next::Linger => break,
                    Next::Stop => return self.abandon(&batch),
                    Next::OutOfRange => {
                        out_of_range = true;
                        break;
                    }
                    // Only with the batch empty (no linger deadline yet).
                    Next::Idle => {
                        if let Some(exit) = self.verify_idle().await {
                            return exit;
                        }
                    }
                }
            }
            drop(stream);
            // What came before the edge is written first.
            if !batch.is_empty() {
                if let Some(exit) = self.write(&batch, bytes).await {
                    return exit;
                }
            }
            if out_of_range {
                if let Some(exit) = self.out_of_range().await {
                    return exit;
                }
            }
        }
    }

    /// Writes one batch in one transaction. `None`: go on collecting;
    /// otherwise the worker ends so.
    async fn write(&mut self, batch: &[Record], bytes: usize) -> Option<Exit> {
        let shared = Arc::clone(&self.shared);
        let writer = Arc::clone(&self.writer);
        if let Some(throttle) = &shared.throttle {
            if !self.throttled(throttle, batch.len(), bytes).await {
                return Some(self.abandon(batch));
            }
        }
        debug!(partition = %self.key, state = ?State::Writing, records = batch.len());
        let committer = Committer {
            pool: &shared.pool,
            offsets: &shared.offsets,
            writer: &writer,
            metrics: &shared.metrics,
            key: &self.key,
            owner: self.owner,
            cancel: &self.stop,
            retry: &shared.retry,
            deadline: shared.attempt_deadline,
            throttle: shared.throttle.as_deref(),
            breaker: &self.breaker,
        };
        match self
            .pausing(committer.commit(self.next_offset, batch))
            .await
        {
            Ok(Outcome::Committed { next_offset }) => {
                self.committed(next_offset);
                let last_ts = batch.last().and_then(|r| r.timestamp_ms);
                shared.track(&self.key, Some(next_offset), last_ts);
                // A storm of records that cannot be decoded is dead-lettered
                // a batch at a time; it stops after the batch that shows it.
                let why = self.breaker.tripped()?;
                error!(partition = %self.key, next_offset, state = ?State::Halted, reason = %why,
                       "poison storm: partition halted (max_dead_letter_ratio)");
                shared.metrics.poison_storms.inc();
                Some(self.halt(next_offset, why, None).await)
            }
            Ok(Outcome::Stale { owner }) => self.stale(owner).await,
            Ok(Outcome::Rewound { next_offset }) => {
                self.rewind(next_offset).await.err().map(Exit::Failed)
            }
            Ok(Outcome::Cancelled) => Some(self.abandon(batch)),
            Ok(Outcome::Halted {
                next_offset,
                offset,
                reason,
                sqlstate,
            }) => {
                if let Some(n) = next_offset {
                    self.committed(n);
                }
                error!(partition = %self.key, offset, state = ?State::Halted, %reason,
                       "partition halted before this record");
                Some(self.halt(offset, reason, sqlstate).await)
            }
            Err(e) => Some(Exit::Failed(e.into())),
        }
    }

    /// Stopped holding uncommitted records: they stay in Kafka for the
    /// partition's next owner, which reads from the stored offset.
    fn abandon(&self, batch: &[Record]) -> Exit {
        if !batch.is_empty() {
            debug!(partition = %self.key, records = batch.len(), "stopped; uncommitted records left for the next owner");
            self.shared
                .metrics
                .abandoned_records
                .inc_by(batch.len() as u64);
        }
        Exit::Stopped
    }

    /// Takes the batch's budget from the throttle; `false` if stopped while
    /// waiting (the batch is then left for the partition's next owner).
    async fn throttled(&self, throttle: &Throttle, rows: usize, bytes: usize) -> bool {
        let admit = throttle.admit(rows, bytes);
        tokio::pin!(admit);
        if (&mut admit).now_or_never().is_some() {
            return true;
        }
        debug!(partition = %self.key, state = ?State::Throttled, rows, bytes);
        let began = Instant::now();
        let admitted = self
            .pausing(async {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => false,
                    () = &mut admit => true,
                }
            })
            .await;
        self.shared
            .metrics
            .throttle_wait_seconds
            .inc_by(began.elapsed().as_secs_f64());
        admitted
    }

    /// Runs `work`; should it last longer than [`PAUSE_AFTER`] (a long
    /// throttle wait, a commit retrying through an outage), the partition is
    /// paused until it ends, so a worker that is behind fetches nothing
    /// more. librdkafka resumes after the last record handed to us, so the
    /// batch in hand is neither lost nor fetched twice.
    async fn pausing<F: Future>(&self, work: F) -> F::Output {
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::time::sleep(PAUSE_AFTER) => {}
        }
        debug!(partition = %self.key, "worker is behind; partition paused");
        self.set_paused(true);
        let out = work.await;
        self.set_paused(false);
        out
    }

    fn set_paused(&self, paused: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.key.topic, self.key.partition);
        let done = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match done {
            Ok(()) => {
                let key = &self.key;
                self.shared.set_paused(&key.topic, key.partition, paused);
            }
            // Fails only if the partition was revoked meanwhile; then this
            // worker is being stopped, and a paused partition stays noted
            // for its next assignment to resume.
            Err(e) => debug!(partition = %self.key, paused, error = %e, "pause/resume not applied"),
        }
    }

    pub(super) fn committed(&mut self, next_offset: i64) {
        self.next_offset = Some(next_offset);
        self.shared
            .metrics
            .committed_offset
            .with_label_values(&[self.key.topic.as_str(), &self.key.partition.to_string()])
            .set(next_offset);
        // Advisory only (lag tools read it); Postgres holds the real offset,
        // so a failure here loses nothing.
        let mut tpl = TopicPartitionList::new();
        let stored = tpl
            .add_partition_offset(
                &self.key.topic,
                self.key.partition,
                Offset::Offset(next_offset),
            )
            .and_then(|()| self.consumer.store_offsets(&tpl));
        if let Err(e) = stored {
            debug!(partition = %self.key, error = %e, "advisory offset not stored");
        }
    }
}
