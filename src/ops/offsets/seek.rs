//! What `sluice offsets set` asks the brokers: the connected cluster's id,
//! the partitions of the topics and their logs, and the offset of the
//! first record at or after a time. Blocking (librdkafka's calls wait for
//! the brokers): run it in `spawn_blocking`.
//!
//! A time is found by the brokers' time index (ListOffsets) and the answer
//! checked against the records themselves: the record there must be at or
//! after the time, the one before it earlier. When the check fails (a
//! broker without a time index answers 0 for every time) the offset is
//! found by a binary search over the records' timestamps, which assumes
//! they grow with the offset — what `--overlap` is for where they do not
//! quite.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::Config;
use crate::kafka::log::{self, LogBounds};
use crate::kafka::probe::{first_contact, ProbeContext};
use crate::ops::OpsError;

/// A partition, as (topic, partition).
pub type Partition = (String, i32);

/// How an offset for a time was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// The brokers' time index, checked against the records.
    TimeIndex,
    /// A binary search over the records (the index's answer was wrong).
    Searched,
    /// No record is at or after the time: the log end.
    LogEnd,
}

/// The brokers, connected: the metadata consumer and the record reader.
pub struct Brokers {
    meta: BaseConsumer<ProbeContext>,
    reader: BaseConsumer,
    timeout: Duration,
    /// The cluster id (`None`: the brokers did not say).
    pub cluster_id: Option<String>,
}

/// The group.id of the record reader: never the sink's group, which it
/// must not join or commit for (it is assigned partitions, not
/// subscribed).
pub fn reader_group(config: &Config) -> String {
    format!("{}.sluice-offsets", config.kafka.group_id)
}

impl Brokers {
    pub fn connect(config: &Config, topic: &str, timeout: Duration) -> Result<Brokers, OpsError> {
        let meta = first_contact(config, topic, timeout)?;
        let cluster_id = meta.client().fetch_cluster_id(timeout);
        let mut cc = crate::kafka::client_config(config);
        cc.set("group.id", reader_group(config))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // One record per question: fetch little, answer fast.
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.wait.max.ms", "10");
        let reader: BaseConsumer = cc
            .create()
            .map_err(|e| OpsError::Broker(format!("cannot create the record reader: {e}")))?;
        Ok(Brokers {
            meta,
            reader,
            timeout,
            cluster_id,
        })
    }

    /// The topic's partitions and their logs; empty when the brokers do
    /// not know the topic.
    pub fn logs(&self, topic: &str) -> Result<Vec<(i32, LogBounds)>, OpsError> {
        let partitions = log::partitions(&self.meta, topic)
            .map_err(|e| OpsError::Broker(format!("cannot list the partitions of {topic}: {e}")))?;
        partitions
            .into_iter()
            .map(|p| {
                log::bounds(&self.meta, topic, p)
                    .map(|b| (p, b))
                    .map_err(|e| {
                        OpsError::Broker(format!("cannot read the log bounds of {topic}[{p}]: {e}"))
                    })
            })
            .collect()
    }

    /// The offset of the first record at or after `epoch_ms` (the log end
    /// when there is none) and how it was found.
    pub fn offset_for_time(
        &self,
        topic: &str,
        partition: i32,
        bounds: LogBounds,
        epoch_ms: i64,
    ) -> Result<(i64, Found), OpsError> {
        if bounds.low >= bounds.high {
            return Ok((bounds.high, Found::LogEnd));
        }
        let indexed = log::offsets_for_time(&self.meta, topic, &[partition], epoch_ms)
            .map_err(|e| {
                OpsError::Broker(format!("cannot ask {topic}[{partition}]'s time index: {e}"))
            })?
            .get(&partition)
            .copied();
        if let Some(at) = indexed.filter(|o| (bounds.low..bounds.high).contains(o)) {
            if self.is_first_at(topic, partition, bounds, at, epoch_ms)? {
                return Ok((at, Found::TimeIndex));
            }
        }
        let found = self.search(topic, partition, bounds, epoch_ms)?;
        Ok(match found == bounds.high {
            true => (found, Found::LogEnd),
            false => (found, Found::Searched),
        })
    }

    /// Whether `at` is the first record at or after the time: its record
    /// is not older, and the record before it is.
    fn is_first_at(
        &self,
        topic: &str,
        partition: i32,
        bounds: LogBounds,
        at: i64,
        epoch_ms: i64,
    ) -> Result<bool, OpsError> {
        let Some((offset, ts)) = self.record_at(topic, partition, bounds, at)? else {
            return Ok(false);
        };
        if offset != at || ts < epoch_ms {
            return Ok(false);
        }
        if at == bounds.low {
            return Ok(true);
        }
        Ok(match self.record_at(topic, partition, bounds, at - 1)? {
            Some((before, ts)) => before == at - 1 && ts < epoch_ms,
            None => false,
        })
    }

    /// The least offset `o` in the log whose first record at or after it
    /// is at or after the time; the log end when none is.
    fn search(
        &self,
        topic: &str,
        partition: i32,
        bounds: LogBounds,
        epoch_ms: i64,
    ) -> Result<i64, OpsError> {
        let (mut lo, mut hi) = (bounds.low, bounds.high);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.record_at(topic, partition, bounds, mid)? {
                Some((_, ts)) if ts >= epoch_ms => hi = mid,
                // Every offset up to the record read is before the time.
                Some((offset, _)) => lo = offset + 1,
                // Nothing to read from here on (control records only).
                None => hi = mid,
            }
        }
        Ok(lo)
    }

    /// The offset and Kafka timestamp of the first record at or after
    /// `offset`; `None` when there is none before the log end.
    pub fn record_at(
        &self,
        topic: &str,
        partition: i32,
        bounds: LogBounds,
        offset: i64,
    ) -> Result<Option<(i64, i64)>, OpsError> {
        if offset >= bounds.high {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .and_then(|()| self.reader.assign(&tpl))
            .map_err(|e| OpsError::Broker(format!("cannot read {topic}[{partition}]: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            match self.reader.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                    // A fetch from before this assignment is never served
                    // (librdkafka drops it), but be sure.
                    if m.offset() < offset {
                        continue;
                    }
                    let ts = m.timestamp().to_millis().ok_or_else(|| {
                        OpsError::Broker(format!(
                            "{topic}[{partition}] at offset {} has no timestamp: \
                             a time cannot be found in it",
                            m.offset()
                        ))
                    })?;
                    return Ok(Some((m.offset(), ts)));
                }
                Some(Ok(_)) => continue,
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => return Ok(None),
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => {
                    return Err(OpsError::Broker(format!(
                        "cannot read {topic}[{partition}] at offset {offset}: {e}"
                    )))
                }
            }
        }
        Err(OpsError::Broker(format!(
            "no record of {topic}[{partition}] at offset {offset} arrived within {}s \
             (--timeout)",
            self.timeout.as_secs_f64()
        )))
    }
}

/// Every partition's log, per topic.
pub fn logs_of(
    brokers: &Brokers,
    topics: &[String],
) -> Result<HashMap<Partition, LogBounds>, OpsError> {
    let mut logs = HashMap::new();
    for topic in topics {
        for (p, b) in brokers.logs(topic)? {
            logs.insert((topic.clone(), p), b);
        }
    }
    Ok(logs)
}
