//! The running partition workers, by partition: started on assign,
//! stopped on revoke; a worker that panics fails the replica loudly.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

use super::worker::{Exit, PartitionWorker};
use super::Shared;
use crate::offsets::PartitionKey;

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
        let span = info_span!("partition", topic = %key.topic, partition = key.partition);
        let handle = tokio::spawn(async move {
            // A panic must never leave a silent hole (the partition assigned
            // with no worker, /readyz still 200): it stops the replica like
            // a fatal error, so it exits non-zero and its partitions move.
            let exit = AssertUnwindSafe(worker.run().instrument(span))
                .catch_unwind()
                .await;
            shared.untrack(&key);
            match exit {
                Ok(Exit::Stopped) => info!(partition = %key, "worker stopped"),
                Ok(Exit::Stale { owner }) => info!(partition = %key, ?owner, "worker fenced out"),
                Ok(Exit::Failed(e)) => shared.fail(format!("partition {key}: {e}")),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_owned());
                    shared.metrics.worker_panics.inc();
                    shared.fail(format!("partition {key}: worker panicked: {what}"));
                }
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
