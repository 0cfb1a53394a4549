//! The pool as the partition workers use it: every checkout is timed
//! (`sluice_pg_pool_wait_seconds`) and refreshes the pool gauges
//! (`sluice_pg_pool_connections`, `_waiting`, `_size`), which each scrape
//! refreshes too. Not `Deref` to the pool: a use that bypasses the timing
//! says so ([`MeteredPool::unmetered`]).

use deadpool_postgres::{Object, Pool, PoolError};

use crate::metrics::PoolMetrics;

pub struct MeteredPool {
    pool: Pool,
    metrics: PoolMetrics,
}

impl MeteredPool {
    pub fn new(pool: Pool, metrics: PoolMetrics) -> MeteredPool {
        metrics.set(pool.status());
        MeteredPool { pool, metrics }
    }

    /// A connection, as `Pool::get`. The wait is observed also when it
    /// fails or is abandoned (an attempt deadline, a stop: the timer
    /// observes when dropped): a saturated pool shows as long waits, not
    /// as missing ones.
    pub async fn get(&self) -> Result<Object, PoolError> {
        let timer = self.metrics.wait_seconds.start_timer();
        let got = self.pool.get().await;
        timer.observe_duration();
        self.refresh();
        got
    }

    /// Sets the pool gauges from the pool's status now.
    pub fn refresh(&self) {
        self.metrics.set(self.pool.status());
    }

    /// The pool itself, for what is not a partition worker's wait (the
    /// health probe, the adaptive throttle's replication-lag read).
    pub fn unmetered(&self) -> &Pool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use deadpool_postgres::{Manager, Runtime};
    use prometheus::Registry;

    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn a_failed_checkout_is_timed_and_the_gauges_say_the_pool_size() {
        // Port 1 on loopback: refused at once, no server needed.
        let config: tokio_postgres::Config = "host=127.0.0.1 port=1 user=u connect_timeout=2"
            .parse()
            .unwrap();
        let manager = Manager::new(config, tokio_postgres::NoTls);
        let pool = Pool::builder(manager)
            .max_size(3)
            .runtime(Runtime::Tokio1)
            .build()
            .unwrap();
        let metrics = Metrics::register(&Registry::new()).unwrap().pool;
        let metered = MeteredPool::new(pool, metrics.clone());
        assert_eq!(metrics.size.get(), 3, "set before the first checkout");
        assert!(metered.get().await.is_err());
        assert_eq!(metrics.wait_seconds.get_sample_count(), 1);
        assert_eq!(
            (
                metrics.idle.get(),
                metrics.in_use.get(),
                metrics.waiting.get()
            ),
            (0, 0, 0),
            "nothing opened, nobody waiting"
        );
    }
}
