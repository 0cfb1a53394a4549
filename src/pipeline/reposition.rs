//! Where a partition worker reads from after the fence or Postgres moved
//! it: rewinding to a stored offset Postgres lost commits behind, claiming a
//! partition again after a stale fence-out, and seeking (never to
//! librdkafka's `Stored`, which it refuses).

use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;

use super::worker::{PartitionWorker, WorkerError};
use crate::kafka::start_offset;

impl PartitionWorker {
    /// Postgres holds an older offset than this worker wrote: re-read from it.
    pub(super) fn rewind(&mut self, next_offset: Option<i64>) -> Result<(), WorkerError> {
        warn!(partition = %self.key, ?next_offset, expected = ?self.next_offset,
              "Postgres lost committed batches; re-reading from its offset");
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
        let Some((owner, stored)) = self.shared.claim(&self.key).await else {
            return Ok(false);
        };
        warn!(partition = %self.key, %owner, next_offset = ?stored,
              "still assigned here after being fenced out; claimed the partition again");
        self.shared.metrics.reclaims.inc();
        self.owner = owner;
        self.seek(stored)?;
        self.shared.track(&self.key, stored, None);
        Ok(true)
    }

    /// Re-reads the partition from `next_offset` (records already queued
    /// from before are dropped by librdkafka or skipped by `accept`).
    fn seek(&mut self, next_offset: Option<i64>) -> Result<(), WorkerError> {
        let offset = start_offset(next_offset, self.shared.start_from);
        tokio::task::block_in_place(|| {
            // librdkafka refuses to seek to `Stored` (__INVALID_ARG, which
            // would stop the replica): resolve the group's committed offset
            // first; none committed means the start, as auto.offset.reset.
            let offset = match offset {
                Offset::Stored => self.committed_offset()?,
                other => other,
            };
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

    /// The offset committed to Kafka for this partition, as a concrete
    /// position to seek to (`Beginning` when none is committed).
    fn committed_offset(&self) -> KafkaResult<Offset> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.key.topic, self.key.partition);
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .find_partition(&self.key.topic, self.key.partition)
            .map(|e| e.offset())
            .and_then(|o| match o {
                Offset::Offset(n) if n >= 0 => Some(Offset::Offset(n)),
                _ => None,
            })
            .unwrap_or(Offset::Beginning))
    }
}
