//! Background watchers that keep readiness and lag current even when no
//! batch is moving: a Postgres probe, and per-partition lag from the
//! consumer's watermarks against the offsets committed to Postgres. And
//! [`Reachability`], how long a dependency has been out of reach, which
//! both Postgres and the Kafka brokers (kafka::reachability) feed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Object, PoolError, TimeoutType, Timeouts};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::pipeline::Shared;

/// How often readiness and lag are refreshed.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Since when a dependency has been out of reach, and from how long on
/// that makes the service not ready: short blips do not flap readiness.
pub struct Reachability {
    unreachable_since: Mutex<Option<Instant>>,
    unready_after: Duration,
}

impl Reachability {
    pub fn new(unready_after: Duration) -> Reachability {
        Reachability {
            unreachable_since: Mutex::new(None),
            unready_after,
        }
    }

    pub fn reachable(&self) -> bool {
        self.since().is_none()
    }

    pub fn unready_after(&self) -> Duration {
        self.unready_after
    }

    /// Records what was observed now; an outage keeps the instant it began.
    pub fn set(&self, reachable: bool) {
        let mut since = self
            .unreachable_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match reachable {
            true => *since = None,
            false => {
                since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// How long it has been out of reach, once that is `unready_after` or
    /// more.
    pub fn unready_for(&self) -> Option<Duration> {
        self.since()
            .map(|s| s.elapsed())
            .filter(|d| *d >= self.unready_after)
    }

    fn since(&self) -> Option<Instant> {
        *self
            .unreachable_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Probes Postgres every INTERVAL until `stop`.
pub async fn probe_postgres(shared: Arc<Shared>, stop: CancellationToken) {
    let timeouts = Timeouts {
        wait: Some(Duration::from_secs(1)),
        create: Some(Duration::from_secs(3)),
        recycle: Some(Duration::from_secs(1)),
    };
    loop {
        let probe = async {
            match shared.pool.unmetered().timeout_get(&timeouts).await {
                Ok(client) => {
                    let answered = tokio::time::timeout(
                        Duration::from_secs(3),
                        client.simple_query("SELECT 1"),
                    )
                    .await;
                    if answered.is_err() {
                        // Its answer is still on the way: not back into the
                        // pool (see sink::commit::read_offset).
                        drop(Object::take(client));
                    }
                    matches!(answered, Ok(Ok(_)))
                }
                // Every connection is busy writing: Postgres is answering.
                Err(PoolError::Timeout(TimeoutType::Wait)) => true,
                Err(_) => false,
            }
        };
        // A probe waiting on a black-holed Postgres (its connect, recycle
        // check and query timeouts add up to seconds) must not hold up a
        // shutdown.
        let reachable = tokio::select! {
            () = stop.cancelled() => return,
            reachable = probe => reachable,
        };
        if reachable != shared.postgres.reachable() {
            match reachable {
                true => info!("Postgres is reachable again"),
                false => warn!("Postgres is unreachable"),
            }
        }
        shared.postgres.set(reachable);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// Sets `sluice_partition_lag_records` (high watermark minus the next offset
/// committed to Postgres) and `sluice_partition_lag_seconds` (time since the
/// last committed record was produced; 0 when caught up) every INTERVAL.
/// Watermarks come from librdkafka's statistics (every fetch refreshes them,
/// also for partitions whose worker is stuck), so no broker is asked here.
pub async fn track_lag(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        shared.for_each_position(|key, position| {
            let Some((low, high)) = shared.watermarks(key) else {
                return;
            };
            let lag = (high - position.next_offset.unwrap_or(low)).max(0);
            let seconds = match position.last_timestamp_ms {
                _ if lag == 0 => 0.0,
                Some(ts) => (now_ms - ts).max(0) as f64 / 1000.0,
                None => position.since.elapsed().as_secs_f64(),
            };
            let labels = [key.topic.as_str(), &key.partition.to_string()];
            shared
                .metrics
                .lag_records
                .with_label_values(&labels)
                .set(lag);
            shared
                .metrics
                .lag_seconds
                .with_label_values(&labels)
                .set(seconds);
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}
