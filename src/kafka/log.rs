//! What the brokers say about a partition's log: its bounds (the low and
//! high watermarks), the partitions a topic has, and the group's committed
//! offsets. Blocking calls with a bounded timeout; async callers wrap them
//! in `block_in_place`.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

/// How long one query may wait for the brokers.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition's log: records `low..high` are there (`high` is the next
/// offset to be written, the high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    pub low: i64,
    pub high: i64,
}

pub fn bounds<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partition: i32,
) -> KafkaResult<LogBounds> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, QUERY_TIMEOUT)?;
    Ok(LogBounds { low, high })
}

/// The partitions a topic has now, by the cluster's metadata.
pub fn partitions<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
) -> KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), QUERY_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// The offsets the group committed to Kafka for these partitions of
/// `topic` (absent: none committed).
pub fn committed<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<HashMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, QUERY_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) if n >= 0 => Some((e.partition(), n)),
            _ => None,
        })
        .collect())
}

/// For each of these partitions, the first offset whose timestamp is at or
/// after `epoch_ms` by the brokers' time index; a partition with none (every
/// record is older) is absent.
pub fn offsets_for_time<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partitions: &[i32],
    epoch_ms: i64,
) -> KafkaResult<HashMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(epoch_ms))?;
    }
    let found = consumer.offsets_for_times(tpl, QUERY_TIMEOUT)?;
    let mut offsets = HashMap::new();
    for e in found.elements() {
        e.error()?;
        if let Offset::Offset(n) = e.offset() {
            if n >= 0 {
                offsets.insert(e.partition(), n);
            }
        }
    }
    Ok(offsets)
}
