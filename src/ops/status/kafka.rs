//! What `sluice status` asks the brokers: the cluster id, each routed
//! topic's partitions and their log bounds, the Kafka timestamp of the next
//! record to write, and the consumer group's state. Blocking (librdkafka's
//! calls wait for the brokers): run it in `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::state::Partition;
use crate::config::Config;
use crate::kafka::log::LogBounds;
use crate::kafka::probe::first_contact;
use crate::ops::OpsError;

/// What the brokers said.
#[derive(Debug, Clone)]
pub struct BrokerFacts {
    /// `None`: the brokers did not say (an old broker or a timeout).
    pub cluster_id: Option<String>,
    pub logs: HashMap<Partition, LogBounds>,
    /// Routed topics the brokers do not know.
    pub missing_topics: Vec<String>,
    /// Kafka timestamp (ms since the epoch) of the record at the asked
    /// offset, per partition where one was found.
    pub timestamps: HashMap<Partition, i64>,
    pub group: Result<Group, String>,
}

/// The consumer group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// "Stable", "PreparingRebalance", "CompletingRebalance", "Empty",
    /// "Dead".
    pub state: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub host: String,
}

/// The group.id of the consumer that reads single records: not the sink's
/// group, which it must never join or commit for.
pub fn reader_group(config: &Config) -> String {
    format!("{}.sluice-status", config.kafka.group_id)
}

/// Connects and asks for the topics' logs and the group. `position` says
/// where to read a partition's next unwritten record, given its bounds
/// (`None`: nothing to read, caught up).
pub fn facts(
    config: &Config,
    topics: &[String],
    timeout: Duration,
    position: impl Fn(&Partition, LogBounds) -> Option<i64>,
) -> Result<BrokerFacts, OpsError> {
    let first = topics.first().map_or("", String::as_str);
    let consumer = first_contact(config, first, timeout)?;
    let mut facts = BrokerFacts {
        cluster_id: consumer.client().fetch_cluster_id(timeout),
        logs: HashMap::new(),
        missing_topics: Vec::new(),
        timestamps: HashMap::new(),
        group: Err("not asked".into()),
    };
    for topic in topics {
        let partitions = crate::kafka::log::partitions(&consumer, topic)
            .map_err(|e| OpsError::Broker(format!("cannot list the partitions of {topic}: {e}")))?;
        if partitions.is_empty() {
            facts.missing_topics.push(topic.clone());
        }
        for p in partitions {
            let log = crate::kafka::log::bounds(&consumer, topic, p).map_err(|e| {
                OpsError::Broker(format!("cannot read the log bounds of {topic}[{p}]: {e}"))
            })?;
            facts.logs.insert((topic.clone(), p), log);
        }
    }
    let wanted: HashMap<Partition, i64> = facts
        .logs
        .iter()
        .filter_map(|(k, log)| Some((k.clone(), position(k, *log)?)))
        .collect();
    facts.timestamps = timestamps_at(config, &wanted, timeout)?;
    facts.group = group(&consumer, &config.kafka.group_id, timeout);
    Ok(facts)
}

/// The timestamp of the first record at or after each offset (a control
/// record of a transaction takes an offset too), read by a consumer that
/// is assigned the partitions, never subscribed: it joins no group.
fn timestamps_at(
    config: &Config,
    wanted: &HashMap<Partition, i64>,
    timeout: Duration,
) -> Result<HashMap<Partition, i64>, OpsError> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let mut cc = crate::kafka::client_config(config);
    cc.set("group.id", reader_group(config))
        .set("enable.auto.commit", "false")
        // Only one record per partition is wanted: fetch little.
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536");
    let reader: BaseConsumer = cc
        .create()
        .map_err(|e| OpsError::Broker(format!("cannot create the record reader: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), offset) in wanted {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))
            .map_err(|e| OpsError::Broker(format!("cannot assign {topic}[{p}]: {e}")))?;
    }
    reader
        .assign(&tpl)
        .map_err(|e| OpsError::Broker(format!("cannot assign the partitions to read: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut done: HashSet<Partition> = HashSet::new();
    while done.len() < wanted.len() && Instant::now() < deadline {
        // A partition-level error (its offset left the log meanwhile:
        // auto.offset.reset is "error") leaves that timestamp unknown.
        let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        let key = (message.topic().to_owned(), message.partition());
        if done.insert(key.clone()) {
            if let Some(ms) = message.timestamp().to_millis() {
                found.insert(key, ms);
            }
        }
    }
    Ok(found)
}

/// The group's state and members (DescribeGroups through the
/// coordinator); the error's text when the brokers would not say.
fn group<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group_id: &str,
    timeout: Duration,
) -> Result<Group, String> {
    let list = consumer
        .fetch_group_list(Some(group_id), timeout)
        .map_err(|e| e.to_string())?;
    let info = list
        .groups()
        .iter()
        .find(|g| g.name() == group_id)
        .ok_or_else(|| "the brokers do not know the group".to_string())?;
    Ok(Group {
        state: info.state().to_owned(),
        members: info
            .members()
            .iter()
            .map(|m| Member {
                id: m.id().to_owned(),
                client_id: m.client_id().to_owned(),
                host: m.client_host().to_owned(),
            })
            .collect(),
    })
}
