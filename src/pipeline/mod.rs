//! Partition workers and what they share.

pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{BatchConfig, Config, RetryConfig, StartFrom};
use crate::metrics::Metrics;
use crate::offsets::{OffsetStore, PartitionKey};
use crate::sink::writer::TableWriter;
use worker::{Exit, PartitionWorker};

/// Read-mostly state every worker uses.
pub struct Shared {
    pub pool: Pool,
    pub offsets: OffsetStore,
    /// The table writer of each routed topic.
    pub writers: HashMap<String, Arc<TableWriter>>,
    pub metrics: Metrics,
    pub batch: BatchConfig,
    pub group_id: String,
    pub start_from: StartFrom,
    pub revoke_timeout: Duration,
    pub retry: RetryConfig,
    /// Cancelled on shutdown or on the first fatal error; workers' stop
    /// tokens are its children.
    pub stop: CancellationToken,
    failure: Mutex<Option<String>>,
    /// Partitions halted by `on_error: stop`, with the reason.
    halted: Mutex<BTreeMap<String, String>>,
}

impl Shared {
    pub fn new(
        config: &Config,
        pool: Pool,
        writers: HashMap<String, Arc<TableWriter>>,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Shared {
        Shared {
            pool,
            offsets: OffsetStore::new(&config.postgres.state_schema),
            writers,
            metrics,
            batch: config.batch.clone(),
            group_id: config.kafka.group_id.clone(),
            start_from: config.kafka.start_from,
            revoke_timeout: config.kafka.revoke_timeout,
            retry: config.retry.clone(),
            stop,
            failure: Mutex::new(None),
            halted: Mutex::new(BTreeMap::new()),
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

    /// Halted partitions and why (the service is not ready while any is).
    pub fn halted(&self) -> Vec<(String, String)> {
        let halted = self.halted.lock().unwrap_or_else(PoisonError::into_inner);
        halted.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

struct Running {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// The running workers, by partition. The lock is only ever held briefly,
/// never across an await.
#[derive(Default)]
pub struct Workers {
    running: Mutex<HashMap<(String, i32), Running>>,
}

impl Workers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn spawn(&self, shared: &Arc<Shared>, worker: PartitionWorker) {
        let slot = (worker.key.topic.clone(), worker.key.partition);
        let key = worker.key.clone();
        let stop = worker.stop.clone();
        let shared = Arc::clone(shared);
        let handle = tokio::spawn(async move {
            match worker.run().await {
                Exit::Stopped => info!(partition = %key, "worker stopped"),
                Exit::Stale { owner } => info!(partition = %key, ?owner, "worker fenced out"),
                Exit::Failed(e) => shared.fail(format!("partition {key}: {e}")),
            }
        });
        if let Some(old) = self.lock().insert(slot, Running { stop, handle }) {
            // librdkafka never assigns a partition twice without revoking
            // it; should it, the old worker is fenced by the new claim.
            old.stop.cancel();
        }
    }

    /// Tells the workers of these partitions to stop; returns their handles.
    pub fn stop(&self, parts: &[PartitionKey]) -> Vec<JoinHandle<()>> {
        let mut running = self.lock();
        parts
            .iter()
            .filter_map(|k| running.remove(&(k.topic.clone(), k.partition)))
            .map(|r| {
                r.stop.cancel();
                r.handle
            })
            .collect()
    }

    pub fn stop_all(&self) -> Vec<JoinHandle<()>> {
        self.lock()
            .drain()
            .map(|(_, r)| {
                r.stop.cancel();
                r.handle
            })
            .collect()
    }

    /// Waits for workers to end; `false` if `timeout` passed first.
    pub async fn wait(handles: Vec<JoinHandle<()>>, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, futures::future::join_all(handles))
            .await
            .is_ok()
    }
}
