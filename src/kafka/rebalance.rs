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

use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::{error, info, warn};

use super::{start_offset, SinkConsumer};
use crate::offsets::PartitionKey;
use crate::pipeline::worker::PartitionWorker;
use crate::pipeline::{Shared, Workers};

pub struct SinkContext {
    consumer: OnceLock<Weak<SinkConsumer>>,
    shared: Arc<Shared>,
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
        let claims = self.block_on(join_all(parts.iter().map(|key| shared.claim(key))));
        let mut started = 0;
        for (key, claim) in parts.into_iter().zip(claims) {
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
            let offset = start_offset(stored, shared.start_from);
            if let Err(e) = tpl.set_partition_offset(&key.topic, key.partition, offset) {
                shared.fail(format!("cannot set the start offset of {key}: {e}"));
                continue;
            }
            info!(topic = %key.topic, partition = key.partition, ?offset, %owner, "partition assigned");
            self.workers.spawn(
                shared,
                PartitionWorker {
                    key,
                    owner,
                    next_offset: stored,
                    queue,
                    consumer: Arc::clone(&consumer),
                    writer,
                    shared: Arc::clone(shared),
                    stop: shared.stop.child_token(),
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

impl ClientContext for SinkContext {
    /// librdkafka's statistics carry every partition's watermarks, which
    /// the lag metrics need even when a partition is not moving.
    fn stats(&self, statistics: Statistics) {
        self.shared
            .set_watermarks(statistics.topics.into_iter().flat_map(|(topic, t)| {
                t.partitions
                    .into_values()
                    .filter(|p| p.partition >= 0)
                    .map(move |p| ((topic.clone(), p.partition), (p.lo_offset, p.hi_offset)))
            }));
    }
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
