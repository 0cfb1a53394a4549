//! The consumer group's rebalance callback: where partitions are claimed,
//! workers started and stopped.
//!
//! On assign, before librdkafka starts fetching: each partition is claimed in
//! Postgres (which returns its stored offset), the assignment is given that
//! offset, the partition's queue is split off (so its records never reach
//! the main queue), and its worker is started. On revoke, the workers of the
//! revoked partitions are stopped and the callback returns only when they are
//! done (or `kafka.revoke_timeout` passed: a worker still writing then is
//! fenced out by the next owner's claim).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::burst::Burst;
use super::{log, start_offset, SinkConsumer};
use crate::offsets::PartitionKey;
use crate::pipeline::edges::Checked;
use crate::pipeline::worker::PartitionWorker;
use crate::pipeline::{Shared, StartFacts, Workers};
use crate::sink::breaker::Breaker;

pub struct SinkContext {
    consumer: OnceLock<Weak<SinkConsumer>>,
    pub(super) shared: Arc<Shared>,
    workers: Arc<Workers>,
    runtime: Handle,
}

impl SinkContext {
    pub fn new(shared: Arc<Shared>, workers: Arc<Workers>, runtime: Handle) -> SinkContext {
        SinkContext {
            consumer: OnceLock::new(),
            shared,
            workers,
            runtime,
        }
    }

    /// Workers need the consumer (to split queues); the consumer owns this
    /// context, hence a weak reference set once it exists.
    pub fn set_consumer(&self, consumer: &Arc<SinkConsumer>) {
        // Only ever set once, right after creation.
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let shared = &self.shared;
        shared
            .metrics
            .rebalances
            .with_label_values(&["assign"])
            .inc();
        shared.set_joined();
        let parts = partitions(tpl, &shared.group_id);
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            error!("rebalance before the consumer was set up; not starting workers");
            return;
        };
        // Read at every assignment: the brokers behind the same addresses
        // may be another cluster now (a cutover by DNS).
        let cluster = self.blocking(|| consumer.client().fetch_cluster_id(log::QUERY_TIMEOUT));
        if cluster.is_none() && shared.cluster().is_none() {
            warn!("the brokers did not say which Kafka cluster they are: stored offsets cannot be checked against their cluster");
        }
        shared.set_cluster(cluster);
        let claimed = self.block_on(join_all(
            parts.iter().map(|key| shared.claim(key, &shared.stop)),
        ));
        // A partition whose offset is another cluster's halts before
        // anything else: neither a start nor a log edge of this cluster may
        // move an offset that means nothing here.
        let foreign: Vec<Option<(i64, String)>> = claimed
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.foreign.clone()))
            .collect();
        let claims = claimed
            .into_iter()
            .map(|c| c.map(|c| (c.owner, c.stored)))
            .collect();
        let claims = self.settle_starts(&consumer, &parts, claims);
        let (claims, halts) = self.check_edges(&consumer, &parts, claims, foreign);
        let mut started = 0;
        for ((key, claim), halt) in parts.into_iter().zip(claims).zip(halts) {
            // Split even when not starting a worker, so that no record of an
            // assigned partition ever reaches the main queue.
            let queue = consumer.split_partition_queue(&key.topic, key.partition);
            let (Some((owner, stored)), Some(queue)) = (claim, queue) else {
                continue;
            };
            let Some(writer) = shared.writers.get(&key.topic).cloned() else {
                shared.fail(format!("assigned {key}, a topic with no route"));
                continue;
            };
            let offset = start_offset(stored);
            if let Err(e) = tpl.set_partition_offset(&key.topic, key.partition, offset) {
                shared.fail(format!("cannot set the start offset of {key}: {e}"));
                continue;
            }
            info!(topic = %key.topic, partition = key.partition, ?offset, %owner, "partition assigned");
            let ratio = shared
                .dead_letter_ratio
                .get(&key.topic)
                .copied()
                .unwrap_or(1.0);
            // After the split: a handle of the queue as split off.
            let burst = Burst::new(&consumer, &key.topic, key.partition);
            self.workers.spawn(
                shared,
                PartitionWorker {
                    key,
                    owner,
                    next_offset: stored,
                    halt_at_start: halt,
                    burst,
                    queue: Arc::new(queue),
                    consumer: Arc::clone(&consumer),
                    writer,
                    shared: Arc::clone(shared),
                    stop: shared.stop.child_token(),
                    breaker: Breaker::new(ratio),
                },
            );
            started += 1;
        }
        shared.metrics.assigned_partitions.add(started);
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        shared
            .metrics
            .rebalances
            .with_label_values(&["revoke"])
            .inc();
        let parts = partitions(tpl, &shared.group_id);
        let handles = self.workers.stop(&parts);
        // While the app stops, its shutdown path waits for the workers; a
        // revoke then comes from closing the consumer, possibly as the
        // runtime itself goes down, where blocking could never finish.
        if !handles.is_empty() && !shared.stop.is_cancelled() {
            let timeout = shared.revoke_timeout;
            let finished = self.block_on(Workers::wait(handles, timeout));
            if !finished {
                warn!(
                    ?timeout,
                    "revoked workers did not finish in time; the next owner's claim fences them"
                );
            }
        }
        for key in &parts {
            let p = key.partition.to_string();
            // Absent labels are fine: the partition may never have committed.
            let _ = shared
                .metrics
                .committed_offset
                .remove_label_values(&[&key.topic, &p]);
        }
        shared
            .metrics
            .assigned_partitions
            .set(self.workers.len() as i64);
        info!(partitions = parts.len(), "partitions revoked");
    }

    /// Partitions claimed with no stored offset get their start resolved
    /// from `kafka.start_from` and stored now (pipeline::start), so it is
    /// decided once. A failure stops the service (the claim is dropped).
    fn settle_starts(
        &self,
        consumer: &SinkConsumer,
        parts: &[PartitionKey],
        mut claims: Vec<Option<(Uuid, Option<i64>)>>,
    ) -> Vec<Option<(Uuid, Option<i64>)>> {
        let shared = &self.shared;
        let mut by_topic: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (key, claim)) in parts.iter().zip(&claims).enumerate() {
            if matches!(claim, Some((_, None))) {
                by_topic.entry(key.topic.as_str()).or_default().push(i);
            }
        }
        for (topic, idx) in by_topic {
            let numbers: Vec<i32> = idx.iter().map(|&i| parts[i].partition).collect();
            let facts = self.blocking(|| {
                let mut tries = 0;
                loop {
                    match StartFacts::gather(consumer, shared.start_from, topic, &numbers) {
                        Ok(facts) => break Ok(facts),
                        Err(e) if tries < 2 && !shared.stop.is_cancelled() => {
                            tries += 1;
                            warn!(topic, error = %e, "cannot read the log bounds yet; retrying");
                        }
                        Err(e) => break Err(e),
                    }
                }
            });
            let settled = match facts {
                Ok(facts) => {
                    let unsettled: Vec<(PartitionKey, Uuid)> = idx
                        .iter()
                        .filter_map(|&i| Some((parts[i].clone(), claims[i]?.0)))
                        .collect();
                    self.block_on(shared.settle(&facts, &unsettled, &shared.stop))
                }
                Err(e) => {
                    shared.fail(format!(
                        "cannot resolve kafka.start_from for topic {topic}: reading its log bounds failed: {e}"
                    ));
                    None
                }
            };
            for (n, &i) in idx.iter().enumerate() {
                claims[i] = match (&settled, claims[i]) {
                    (Some(stored), Some((owner, _))) => {
                        Some((owner, stored.get(n).copied().flatten()))
                    }
                    _ => None,
                };
            }
        }
        claims
    }

    /// Each claimed partition's stored offset checked against its log
    /// before it is read (pipeline::edges): moved by the rule, or marked to
    /// halt at once (`halts`: those halting already, left as they are). A partition whose bounds cannot be read now is read as
    /// stored; should that be outside the log, the fetch reports it to the
    /// worker, which applies the same rule.
    #[allow(clippy::type_complexity)]
    fn check_edges(
        &self,
        consumer: &SinkConsumer,
        parts: &[PartitionKey],
        mut claims: Vec<Option<(Uuid, Option<i64>)>>,
        mut halts: Vec<Option<(i64, String)>>,
    ) -> (Vec<Option<(Uuid, Option<i64>)>>, Vec<Option<(i64, String)>>) {
        let shared = &self.shared;
        for (i, key) in parts.iter().enumerate() {
            let Some((owner, Some(stored))) = claims[i] else {
                continue;
            };
            if halts[i].is_some() {
                continue;
            }
            let bounds = match self.blocking(|| log::bounds(consumer, &key.topic, key.partition)) {
                Ok(bounds) => bounds,
                Err(e) => {
                    warn!(partition = %key, error = %e, "cannot read the log bounds; the fetch will tell");
                    continue;
                }
            };
            match self.block_on(shared.check_edge(key, owner, stored, bounds, &shared.stop)) {
                Checked::Read(at) => claims[i] = Some((owner, Some(at))),
                Checked::Halt { offset, reason } => halts[i] = Some((offset, reason)),
                // The worker is fenced out at its first commit.
                Checked::Fenced => {}
                Checked::Stopped => claims[i] = None,
            }
        }
        (claims, halts)
    }

    /// Runs a blocking call (a broker query) from librdkafka's callback
    /// without stalling the runtime's other tasks.
    fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(f)
            }
            _ => f(),
        }
    }

    /// Runs async work from inside librdkafka's callback, which is called
    /// synchronously from a poll on one of the runtime's worker threads.
    fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.runtime.block_on(fut))
            }
            // Outside the runtime (a closing consumer on a blocking thread).
            // sluice never runs the consumer on a current-thread runtime.
            _ => self.runtime.block_on(fut),
        }
    }
}

fn partitions(tpl: &TopicPartitionList, group_id: &str) -> Vec<PartitionKey> {
    tpl.elements()
        .iter()
        .map(|e| PartitionKey {
            group_id: group_id.to_string(),
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(tpl);
                let assigned = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                // A worker whose partition was revoked while paused may
                // not have resumed it in time; a new owner starts unpaused.
                let mut stuck = TopicPartitionList::new();
                for e in tpl.elements() {
                    if self.shared.take_paused(e.topic(), e.partition()) {
                        stuck.add_partition(e.topic(), e.partition());
                    }
                }
                match stuck.count() {
                    0 => assigned,
                    _ => assigned.and_then(|()| base.resume(&stuck)),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                }
            }
            other => {
                error!(error = ?other, "rebalance failed; releasing every partition");
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&["error"])
                    .inc();
                let all = self.workers.stop_all();
                self.block_on(Workers::wait(all, self.shared.revoke_timeout));
                base.unassign()
            }
        };
        if let Err(e) = result {
            self.shared
                .fail(format!("applying the rebalance failed: {e}"));
        }
    }
}
