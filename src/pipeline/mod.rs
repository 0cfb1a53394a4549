//! Partition workers and what they share.

pub mod edges;
mod halt;
mod intake;
mod reposition;
mod start;
pub mod worker;
mod workers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use uuid::Uuid;

use crate::backoff::Backoff;
use crate::config::{BatchConfig, Config, OffsetOutOfRange, RetryConfig, StartFrom};
use crate::health::Reachability;
use crate::kafka::repeats::Repeats;
use crate::metrics::Metrics;
use crate::offsets::{OffsetStore, PartitionKey};
use crate::pg::MeteredPool;
use crate::sink::error::{ErrorClass, SinkError};
use crate::sink::topic::TopicWriter;
use crate::throttle::Throttle;
pub use start::StartFacts;
pub use workers::Workers;

/// Read-mostly state every worker uses.
pub struct Shared {
    /// Every checkout of a partition worker is timed through it.
    pub pool: MeteredPool,
    pub offsets: OffsetStore,
    /// The table writer of each routed topic.
    pub writers: HashMap<String, Arc<TopicWriter>>,
    pub metrics: Metrics,
    pub batch: BatchConfig,
    pub group_id: String,
    pub start_from: StartFrom,
    /// Each routed topic's rule for a stored offset outside the log
    /// (`None`: the default rule, see `kafka.on_offset_out_of_range`).
    pub out_of_range: HashMap<String, Option<OffsetOutOfRange>>,
    /// Each routed topic's `max_dead_letter_ratio` (sink::breaker).
    pub dead_letter_ratio: HashMap<String, f64>,
    pub revoke_timeout: Duration,
    pub retry: RetryConfig,
    /// The write budget, if `throttle` sets one.
    pub throttle: Option<Arc<Throttle>>,
    /// How long one Postgres attempt may take before it is abandoned: three
    /// statement timeouts (a batch runs a few statements, each bounded by the
    /// server), so only a connection that stopped answering trips it.
    pub attempt_deadline: Duration,
    /// Cancelled on shutdown or on the first fatal error; workers' stop
    /// tokens are its children.
    pub stop: CancellationToken,
    failure: Mutex<Option<String>>,
    /// Partitions halted by `on_error: stop`, with the reason.
    halted: Mutex<BTreeMap<String, String>>,
    /// The consumer has joined the group (its first assignment arrived).
    joined: AtomicBool,
    /// Whether Postgres answers the probe (health::probe_postgres).
    pub postgres: Reachability,
    /// Whether any Kafka broker is connected (kafka::reachability).
    pub kafka: Reachability,
    /// Repeated Kafka client errors, logged once per kind per 30 s.
    pub kafka_repeats: Repeats,
    /// The Kafka cluster connected now (its id from the brokers' metadata,
    /// read at each assignment): a stored offset of another cluster halts
    /// its partition ([`Shared::claim`]).
    cluster: Mutex<Option<String>>,
    /// Where each running worker stands, for the lag metrics.
    positions: Mutex<HashMap<PartitionKey, Position>>,
    /// Partitions a worker paused and has not resumed yet.
    paused: Mutex<HashSet<(String, i32)>>,
    /// (low, high) watermarks per (topic, partition), from the statistics.
    watermarks: Mutex<HashMap<(String, i32), (i64, i64)>>,
}

/// A partition this replica claimed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub owner: Uuid,
    /// The stored next offset (`None`: nothing committed yet).
    pub stored: Option<i64>,
    /// The stored offset is another Kafka cluster's: halt before it, for
    /// this reason (nothing is read or written).
    pub foreign: Option<(i64, String)>,
}

/// Why a partition whose offset belongs to another cluster halts.
fn foreign_cluster(topic: &str, offset: i64, stored: &str, now: &str) -> String {
    format!(
        "stored offset {offset} belongs to Kafka cluster {stored}, but the brokers are cluster \
         {now}: an offset of one cluster means nothing on another (a mirror gives the records \
         other offsets); nothing is written until `sluice offsets set --topic {topic} --to \
         translate` (or another start point) moves it (docs/operations.md, \"Blue/green \
         cutover\")"
    )
}

/// Where a partition's worker stands.
#[derive(Debug, Clone)]
pub struct Position {
    /// The next offset committed to Postgres (`None`: nothing yet).
    pub next_offset: Option<i64>,
    /// Kafka timestamp of the last committed record.
    pub last_timestamp_ms: Option<i64>,
    /// When the worker started.
    pub since: Instant,
}

impl Shared {
    pub fn new(
        config: &Config,
        pool: Pool,
        writers: HashMap<String, Arc<TopicWriter>>,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Shared {
        let throttle =
            Throttle::from_config(&config.throttle, metrics.throttle_rate.clone()).map(Arc::new);
        if let Some(adaptive) = &config.throttle.adaptive {
            metrics
                .throttle_min_rate
                .set(f64::from(adaptive.min_rows_per_second));
        }
        Shared {
            pool: MeteredPool::new(pool, metrics.pool.clone()),
            offsets: OffsetStore::new(&config.postgres.state_schema),
            writers,
            metrics,
            batch: config.batch.clone(),
            group_id: config.kafka.group_id.clone(),
            start_from: config.kafka.start_from,
            out_of_range: config
                .routes
                .iter()
                .map(|r| (r.topic.clone(), config.offset_out_of_range(&r.topic)))
                .collect(),
            dead_letter_ratio: config
                .routes
                .iter()
                .map(|r| (r.topic.clone(), r.max_dead_letter_ratio))
                .collect(),
            revoke_timeout: config.kafka.revoke_timeout,
            retry: config.retry.clone(),
            throttle,
            attempt_deadline: config.postgres.statement_timeout * 3,
            stop,
            failure: Mutex::new(None),
            halted: Mutex::new(BTreeMap::new()),
            joined: AtomicBool::new(false),
            postgres: Reachability::new(config.postgres.unready_after),
            kafka: Reachability::new(config.kafka.unready_after),
            kafka_repeats: Repeats::default(),
            cluster: Mutex::new(None),
            positions: Mutex::new(HashMap::new()),
            watermarks: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashSet::new()),
        }
    }

    pub fn set_watermarks(&self, fresh: impl Iterator<Item = ((String, i32), (i64, i64))>) {
        let mut watermarks = self
            .watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Negative values mean "not known yet".
        watermarks.extend(fresh.filter(|(_, (low, high))| *low >= 0 && *high >= 0));
    }

    pub fn watermarks(&self, key: &PartitionKey) -> Option<(i64, i64)> {
        let watermarks = self
            .watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        watermarks.get(&(key.topic.clone(), key.partition)).copied()
    }

    /// Notes that a worker paused (or resumed) its partition.
    pub fn set_paused(&self, topic: &str, partition: i32, paused: bool) {
        let mut set = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if paused {
            set.insert((topic.to_owned(), partition));
        } else {
            set.remove(&(topic.to_owned(), partition));
        }
    }

    /// Whether a partition was left paused; forgets it.
    pub fn take_paused(&self, topic: &str, partition: i32) -> bool {
        self.paused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(topic.to_owned(), partition))
    }

    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// `Ok` when the service is ready for traffic; otherwise which check fails.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stop.is_cancelled() {
            return Err("shutting down".into());
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("has not joined the consumer group yet".into());
        }
        if let Some(outage) = self.postgres.unready_for() {
            return Err(format!("Postgres is unreachable (for {outage:.0?})"));
        }
        if let Some(outage) = self.kafka.unready_for() {
            return Err(format!("no Kafka broker is reachable (for {outage:.0?})"));
        }
        match self.halted().first() {
            Some((partition, why)) => Err(format!("partition {partition} is halted: {why}")),
            None => Ok(()),
        }
    }

    /// Records where a worker stands (on start and after each commit).
    pub fn track(
        &self,
        key: &PartitionKey,
        next_offset: Option<i64>,
        last_timestamp_ms: Option<i64>,
    ) {
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let position = positions.entry(key.clone()).or_insert_with(|| Position {
            next_offset,
            last_timestamp_ms,
            since: Instant::now(),
        });
        position.next_offset = next_offset;
        if last_timestamp_ms.is_some() {
            position.last_timestamp_ms = last_timestamp_ms;
        }
    }

    /// Forgets a partition whose worker ended, and its per-partition gauges.
    /// Both under the positions lock, which the lag watcher holds while it
    /// sets the gauges ([`Shared::for_each_position`]): so a revoked
    /// partition's lag series never comes back after it is removed (two
    /// replicas would count it both during a rebalance).
    pub fn untrack(&self, key: &PartitionKey) {
        let mut positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        positions.remove(key);
        let labels = [key.topic.as_str(), &key.partition.to_string()];
        // A gauge that was never set has no series to remove.
        let _ = self.metrics.lag_records.remove_label_values(&labels);
        let _ = self.metrics.lag_seconds.remove_label_values(&labels);
        let _ = self.metrics.committed_offset.remove_label_values(&labels);
    }

    /// Runs `f` on every tracked partition with the positions locked, so
    /// that nothing it sets can outlive an `untrack` (no await inside).
    pub fn for_each_position(&self, mut f: impl FnMut(&PartitionKey, &Position)) {
        let positions = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, position) in positions.iter() {
            f(key, position);
        }
    }

    /// Records the first fatal error and stops the service.
    pub fn fail(&self, reason: String) {
        error!(%reason, "fatal error; stopping");
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert(reason);
        self.stop.cancel();
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks a partition halted (or no longer halted, with `None`).
    pub fn set_halted(&self, partition: &PartitionKey, reason: Option<String>) {
        let mut halted = self.halted.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(reason) => halted.insert(partition.to_string(), reason),
            None => halted.remove(&partition.to_string()),
        };
        self.metrics.partitions_halted.set(halted.len() as i64);
    }

    /// Notes the Kafka cluster the brokers say they are (`None`: they did
    /// not say; the one known before is kept).
    pub fn set_cluster(&self, cluster: Option<String>) {
        let mut known = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
        match (cluster, known.as_deref()) {
            (Some(now), Some(before)) if now != before => {
                warn!(before, now = %now, "the brokers are another Kafka cluster now");
                *known = Some(now);
            }
            (Some(now), _) => *known = Some(now),
            (None, _) => {}
        }
    }

    /// The Kafka cluster connected now, when the brokers said.
    pub fn cluster(&self) -> Option<String> {
        self.cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Claims a partition, retrying while Postgres is unavailable. `None`
    /// when shutting down or on a fatal error (which stops the service).
    pub async fn claim(&self, key: &PartitionKey, cancel: &CancellationToken) -> Option<Claim> {
        let owner = Uuid::new_v4();
        let cluster = self.cluster();
        let claimed = self
            .retrying(key, "claim", cancel, || async {
                let client = self.pool.get().await?;
                Ok(self
                    .offsets
                    .claim(&**client, key, owner, cluster.as_deref())
                    .await?)
            })
            .await?;
        if claimed.adopted {
            info!(partition = %key, cluster_id = ?cluster, next_offset = ?claimed.next_offset,
                  "the stored offset named no Kafka cluster: it is taken as the connected one's");
        }
        let foreign = match (&claimed.cluster_id, &cluster, claimed.next_offset) {
            (Some(stored), Some(now), Some(offset)) if stored != now => {
                self.metrics
                    .offset_out_of_range
                    .with_label_values(&[key.topic.as_str(), "other_cluster", "halted"])
                    .inc();
                error!(partition = %key, stored_cluster = %stored, connected_cluster = %now, offset,
                       "stored offset belongs to another Kafka cluster: partition halted");
                Some((offset, foreign_cluster(&key.topic, offset, stored, now)))
            }
            _ => None,
        };
        Some(Claim {
            owner,
            stored: claimed.next_offset,
            foreign,
        })
    }

    /// Runs one Postgres step for a partition, retrying retryable errors
    /// (with backoff) and bounding each attempt by `attempt_deadline`.
    /// `None` when `cancel` fires (shutdown, or the worker's own stop) or on
    /// a fatal error (which stops the service, naming `what` failed).
    pub async fn retrying<T, F, Fut>(
        &self,
        key: &PartitionKey,
        what: &str,
        cancel: &CancellationToken,
        mut attempt: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        let mut backoff = Backoff::new(self.retry.initial_backoff, self.retry.max_backoff);
        loop {
            let result = match tokio::time::timeout(self.attempt_deadline, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::Timeout(self.attempt_deadline)),
            };
            match result {
                Ok(value) => return Some(value),
                Err(e) if e.class() == ErrorClass::Retry => {
                    self.metrics
                        .pg_errors
                        .with_label_values(&[&e.class_label()])
                        .inc();
                    warn!(partition = %key, error = %e, "cannot {what} yet; retrying");
                    if !backoff.wait(cancel).await {
                        return None;
                    }
                }
                Err(e) => {
                    self.fail(format!("cannot {what} {key}: {e}"));
                    return None;
                }
            }
        }
    }

    /// Halted partitions and why (the service is not ready while any is).
    pub fn halted(&self) -> Vec<(String, String)> {
        let halted = self.halted.lock().unwrap_or_else(PoisonError::into_inner);
        halted.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
