//! Where a partition with no stored offset starts. `kafka.start_from` is
//! resolved once, when the partition is first claimed, to a concrete offset
//! that is stored in its row right away: every later claim (a rebalance, a
//! crash, a reclaim) reads that offset and never re-resolves, so records
//! that arrive before the first commit are not skipped by a second
//! "latest". Under `latest` the first claim of a topic stores the log end
//! of every partition the topic has; a partition without a row afterwards
//! was added to the topic later and is read from its start (its records
//! were all produced after sluice started on the topic).

use std::collections::HashMap;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::config::StartFrom;
use crate::kafka::log::{self, LogBounds};
use crate::offsets::PartitionKey;

/// What the start rule needs from the brokers for one topic's partitions
/// that have no stored offset.
#[derive(Debug, Clone, Default)]
pub struct StartFacts {
    /// The log bounds of those partitions.
    bounds: HashMap<i32, LogBounds>,
    /// `latest`: the log end of every partition the topic has now.
    ends: Vec<(i32, i64)>,
    /// `committed`: the offsets the group committed to Kafka;
    /// `timestamp:`: the offsets the brokers found for the time.
    committed: HashMap<i32, i64>,
}

impl StartFacts {
    /// Blocking: asks the brokers (each query bounded by
    /// [`log::QUERY_TIMEOUT`]).
    pub fn gather<C: ConsumerContext, K: Consumer<C>>(
        consumer: &K,
        start_from: StartFrom,
        topic: &str,
        partitions: &[i32],
    ) -> KafkaResult<StartFacts> {
        let mut facts = StartFacts::default();
        for p in partitions {
            facts.bounds.insert(*p, log::bounds(consumer, topic, *p)?);
        }
        match start_from {
            StartFrom::Earliest => {}
            StartFrom::Latest => {
                for p in log::partitions(consumer, topic)? {
                    let high = match facts.bounds.get(&p) {
                        Some(b) => b.high,
                        None => log::bounds(consumer, topic, p)?.high,
                    };
                    facts.ends.push((p, high));
                }
            }
            StartFrom::Committed => {
                facts.committed = log::committed(consumer, topic, partitions)?;
            }
            StartFrom::Timestamp(ms) => {
                facts.committed = log::offsets_for_time(consumer, topic, partitions, ms)?;
            }
        }
        Ok(facts)
    }

    /// The offset a partition starts from when nothing else is stored: its
    /// log start, or under `committed` the group's committed offset. (Under
    /// `latest` the seed has stored the log end already; a partition still
    /// without an offset after it is new, hence its log start.)
    fn fallback(&self, start_from: StartFrom, partition: i32) -> i64 {
        let low = self.bounds.get(&partition).map_or(0, |b| b.low);
        match start_from {
            StartFrom::Committed => self.committed.get(&partition).copied().unwrap_or(low),
            // No record at or after the time: the log end.
            StartFrom::Timestamp(_) => match self.committed.get(&partition) {
                Some(offset) => *offset,
                None => self.bounds.get(&partition).map_or(0, |b| b.high),
            },
            StartFrom::Earliest | StartFrom::Latest => low,
        }
    }
}

impl Shared {
    /// Stores where each of these partitions (claimed with no stored
    /// offset, all of one topic) starts; returns the offsets now stored, in
    /// order (`None` for a partition whose claim was lost meanwhile: its
    /// worker is fenced out before writing anything). `None` when shutting
    /// down or on a fatal error.
    pub async fn settle(
        &self,
        facts: &StartFacts,
        claims: &[(PartitionKey, Uuid)],
        cancel: &CancellationToken,
    ) -> Option<Vec<Option<i64>>> {
        let (first, _) = claims.first()?;
        if self.start_from == StartFrom::Latest {
            let seeded = self
                .retrying(first, "store the start offsets of", cancel, || async {
                    let client = self.pool.get().await?;
                    Ok(self
                        .offsets
                        .seed(&**client, &first.group_id, &first.topic, &facts.ends)
                        .await?)
                })
                .await?;
            if seeded > 0 {
                tracing::info!(topic = %first.topic, partitions = seeded,
                               "start_from latest: stored the log end of every partition of the topic");
            }
        }
        let mut stored = Vec::with_capacity(claims.len());
        for (key, owner) in claims {
            let start = facts.fallback(self.start_from, key.partition);
            let offset = self
                .retrying(key, "store the start offset of", cancel, || async {
                    let client = self.pool.get().await?;
                    Ok(self.offsets.settle(&**client, key, *owner, start).await?)
                })
                .await?;
            tracing::info!(partition = %key, start_from = ?self.start_from, next_offset = ?offset,
                           "partition had no stored offset; its start is stored now");
            stored.push(offset);
        }
        Some(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_is_the_log_start_or_the_committed_offset() {
        let mut facts = StartFacts::default();
        facts.bounds.insert(0, LogBounds { low: 7, high: 20 });
        facts.bounds.insert(1, LogBounds { low: 3, high: 9 });
        facts.committed.insert(0, 12);
        assert_eq!(facts.fallback(StartFrom::Earliest, 0), 7);
        assert_eq!(facts.fallback(StartFrom::Latest, 1), 3);
        assert_eq!(facts.fallback(StartFrom::Committed, 0), 12);
        assert_eq!(facts.fallback(StartFrom::Committed, 1), 3);
        assert_eq!(facts.fallback(StartFrom::Timestamp(1), 0), 12);
        assert_eq!(facts.fallback(StartFrom::Timestamp(1), 1), 9);
    }
}
