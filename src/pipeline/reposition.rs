//! Where a partition worker reads from after the fence or Postgres moved
//! it: rewinding to a stored offset Postgres lost commits behind (found by
//! the fence at a commit, or by an idle worker re-reading its row), claiming
//! a partition again after a stale fence-out, and seeking (always to a
//! concrete offset: librdkafka refuses to seek to `Stored`).

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::start::StartFacts;
use super::worker::{Exit, PartitionWorker, WorkerError};
use crate::kafka::start_offset;
use crate::offsets::{judge, FenceVerdict};
use crate::sink::commit::read_offset;

impl PartitionWorker {
    /// Caught up and idle: re-reads the offset row and judges it as the
    /// fence judges a rejected commit, so that commits Postgres lost (an
    /// asynchronous failover) are written again even when nothing new
    /// arrives. `None`: carry on collecting.
    pub(super) async fn verify_idle(&mut self) -> Option<Exit> {
        // Nothing stored yet: nothing that could have been lost.
        let expected = self.next_offset?;
        let shared = std::sync::Arc::clone(&self.shared);
        let read = read_offset(
            &shared.pool,
            &shared.offsets,
            &self.key,
            shared.attempt_deadline,
        );
        // A stop (revoke, shutdown) must not wait on an unreachable Postgres.
        let read = async {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => None,
                row = read => Some(row),
            }
        };
        let row = match read.await? {
            Ok(row) => row,
            // Postgres unreachable or slow: the next commit's retries deal
            // with it, and the next idle round asks again.
            Err(e) => {
                debug!(partition = %self.key, error = %e, "idle offset check failed");
                return None;
            }
        };
        match judge(self.owner, expected, row) {
            FenceVerdict::AlreadyCommitted => None,
            FenceVerdict::Stale { owner } => {
                shared.metrics.fence_rejections.inc();
                self.stale(owner).await
            }
            FenceVerdict::Rewound { next_offset } => {
                shared.metrics.rewinds.inc();
                self.rewind(next_offset).await.err().map(Exit::Failed)
            }
        }
    }

    /// The fence (or an idle check) found another owner in the row.
    pub(super) async fn stale(&mut self, owner: Option<Uuid>) -> Option<Exit> {
        info!(partition = %self.key, ?owner, "partition is owned by another worker; stopping");
        match self.reclaim().await {
            Ok(true) => self.halt_now().await,
            Ok(false) => Some(Exit::Stale { owner }),
            Err(e) => Some(Exit::Failed(e)),
        }
    }

    /// A claim found the partition must halt (its offset is another
    /// cluster's): halts it; `None` otherwise.
    pub(super) async fn halt_now(&mut self) -> Option<Exit> {
        let (offset, reason) = self.halt_at_start.take()?;
        Some(self.halt(offset, reason, None).await)
    }

    /// Postgres holds an older offset than this worker wrote: re-read from it.
    pub(super) async fn rewind(&mut self, next_offset: Option<i64>) -> Result<(), WorkerError> {
        warn!(partition = %self.key, ?next_offset, expected = ?self.next_offset,
              "Postgres lost committed batches; re-reading from its offset");
        let next_offset = match next_offset {
            Some(n) => Some(n),
            // It lost even the stored start: decide it again, as a claim.
            None => self.settle_start().await?,
        };
        self.seek(next_offset)
    }

    /// After a fence rejection: waits for the revoke that a legitimate new
    /// owner's claim comes with. When none arrives within
    /// `kafka.revoke_timeout`, the group still assigns the partition here
    /// and the other claim is stale (its member died or lost the group
    /// without this replica's assignment changing); without a new claim the
    /// partition would sit unserved until the next rebalance. So it is
    /// claimed again and read from the stored offset. Should the two
    /// replicas disagree for a while, each claim fences the other's
    /// writes: nothing is written twice either way. `false`: revoked or
    /// shutting down, the worker stops.
    pub(super) async fn reclaim(&mut self) -> Result<bool, WorkerError> {
        tokio::select! {
            _ = self.stop.cancelled() => return Ok(false),
            _ = tokio::time::sleep(self.shared.revoke_timeout) => {}
        }
        // A revoke may have come while Postgres was slow: claiming then
        // would steal the partition from its legitimate new owner.
        if !self.still_assigned() {
            return Ok(false);
        }
        let Some(claim) = self.shared.claim(&self.key, &self.stop).await else {
            return Ok(false);
        };
        let (owner, stored) = (claim.owner, claim.stored);
        if self.stop.is_cancelled() || !self.still_assigned() {
            // Revoked during the claim: the new owner's claim (after ours, as
            // its revoke waited for this worker or timed out) fences ours.
            info!(partition = %self.key, "revoked while claiming again; stopping");
            return Ok(false);
        }
        warn!(partition = %self.key, %owner, next_offset = ?stored,
              "still assigned here after being fenced out; claimed the partition again");
        self.shared.metrics.reclaims.inc();
        self.owner = owner;
        if let Some(halt) = claim.foreign {
            // `sluice offsets set` moved the partition to another cluster:
            // the caller halts before reading anything more.
            self.halt_at_start = Some(halt);
            return Ok(true);
        }
        let stored = match stored {
            Some(n) => Some(n),
            None => self.settle_start().await?,
        };
        self.seek(stored)?;
        self.shared.track(&self.key, stored, None);
        Ok(true)
    }

    /// Whether the consumer still has this partition and this worker was
    /// not told to stop.
    fn still_assigned(&self) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        match self.consumer.assignment() {
            Ok(tpl) => tpl
                .find_partition(&self.key.topic, self.key.partition)
                .is_some(),
            // Unknown: the claim is fenced like any other, so try it.
            Err(_) => true,
        }
    }

    /// The partition's row holds no offset: resolves `kafka.start_from`
    /// and stores it, as the first claim does (pipeline::start).
    async fn settle_start(&mut self) -> Result<Option<i64>, WorkerError> {
        let (topic, partition) = (self.key.topic.clone(), self.key.partition);
        let start_from = self.shared.start_from;
        let consumer = &*self.consumer;
        let facts = tokio::task::block_in_place(|| {
            StartFacts::gather(consumer, start_from, &topic, &[partition])
        })
        .map_err(WorkerError::LogBounds)?;
        let claims = [(self.key.clone(), self.owner)];
        let shared = std::sync::Arc::clone(&self.shared);
        Ok(shared
            .settle(&facts, &claims, &self.stop)
            .await
            .and_then(|stored| stored.first().copied().flatten()))
    }

    /// After librdkafka stopped fetching the partition (a fetch outside the
    /// log, with `auto.offset.reset=error`), it refuses a seek (`__STATE`):
    /// only an assignment starts the fetcher again. So the partition is
    /// unassigned and assigned again at `offset`, without a rebalance (its
    /// queue stays split off to this worker).
    pub(super) fn restart_fetch(&mut self, offset: i64) -> Result<(), WorkerError> {
        // What was taken from the old position must not be read after it.
        self.burst.clear();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.key.topic, self.key.partition);
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&self.key.topic, self.key.partition, Offset::Offset(offset))
            .and_then(|()| {
                tokio::task::block_in_place(|| {
                    self.consumer
                        .incremental_unassign(&tpl)
                        .and_then(|()| self.consumer.incremental_assign(&at))
                })
            })
            .map_err(|source| WorkerError::Seek {
                offset: Some(offset),
                source,
            })?;
        self.next_offset = Some(offset);
        Ok(())
    }

    /// Re-reads the partition from `next_offset` (records already queued
    /// from before are dropped by librdkafka or skipped by `accept`).
    pub(super) fn seek(&mut self, next_offset: Option<i64>) -> Result<(), WorkerError> {
        // What was taken from the old position must not be read after it
        // (librdkafka drops only what is still queued).
        self.burst.clear();
        let offset = start_offset(next_offset);
        tokio::task::block_in_place(|| {
            self.consumer.seek(
                &self.key.topic,
                self.key.partition,
                offset,
                Duration::from_secs(10),
            )
        })
        .map_err(|source| WorkerError::Seek {
            offset: next_offset,
            source,
        })?;
        self.next_offset = next_offset;
        Ok(())
    }
}
