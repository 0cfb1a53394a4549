//! Where a batch's time goes in Postgres (issue #15): the connection pool
//! (`sluice_pg_pool_*`) and the phases of each batch transaction
//! (`sluice_pg_transaction_phase_seconds`).

use deadpool_postgres::Status;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::time::{Duration, Instant};

use super::{latency_buckets, reg};

/// `sluice_pg_pool_*`: set from `Pool::status()` at each checkout
/// (pg::MeteredPool) and at each scrape, so an idle replica's gauges are
/// current too.
#[derive(Clone)]
pub struct PoolMetrics {
    /// `sluice_pg_pool_connections{state="idle"}`.
    pub idle: IntGauge,
    /// `sluice_pg_pool_connections{state="in_use"}`.
    pub in_use: IntGauge,
    /// `sluice_pg_pool_waiting`.
    pub waiting: IntGauge,
    /// `sluice_pg_pool_size`: `postgres.pool_size`.
    pub size: IntGauge,
    /// `sluice_pg_pool_wait_seconds`.
    pub wait_seconds: Histogram,
}

impl PoolMetrics {
    pub(super) fn register(registry: &Registry) -> Result<PoolMetrics, prometheus::Error> {
        let connections = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "sluice_pg_pool_connections",
                    "Open connections of the Postgres pool, by state (idle, in_use).",
                ),
                &["state"],
            )?,
        )?;
        let gauge = |name: &str, help: &str| reg(registry, IntGauge::new(name, help)?);
        Ok(PoolMetrics {
            // Resolved here, so both states are exported before the first
            // checkout.
            idle: connections.with_label_values(&["idle"]),
            in_use: connections.with_label_values(&["in_use"]),
            waiting: gauge(
                "sluice_pg_pool_waiting",
                "Tasks waiting for a connection of the Postgres pool (all of its connections in use, or being opened).",
            )?,
            size: gauge(
                "sluice_pg_pool_size",
                "The most connections the Postgres pool opens (postgres.pool_size).",
            )?,
            wait_seconds: reg(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "sluice_pg_pool_wait_seconds",
                        "Time partition workers waited to get a connection from the Postgres pool (including opening one, and the writability check: one round trip).",
                    )
                    .buckets(latency_buckets()?),
                )?,
            )?,
        })
    }

    /// Sets the gauges from the pool's status. deadpool counts the open
    /// connections (`size`) and, of those, the ones nobody holds
    /// (`available`); a connection being checked out counts as in use.
    pub fn set(&self, status: Status) {
        let idle = status.available.min(status.size);
        self.idle.set(idle as i64);
        self.in_use.set((status.size - idle) as i64);
        self.waiting.set(status.waiting as i64);
        self.size.set(status.max_size as i64);
    }
}

/// A phase of a batch transaction: the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The session settings and the offset fence (sent together: one
    /// round trip).
    Fence,
    /// Every route's rows: decoding, and COPY or the INSERT statements.
    Rows,
    /// Every route's dead letters (only when there are any).
    DeadLetters,
    /// `COMMIT`.
    Commit,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Fence, Phase::Rows, Phase::DeadLetters, Phase::Commit];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Fence => "fence",
            Phase::Rows => "rows",
            Phase::DeadLetters => "dead_letters",
            Phase::Commit => "commit",
        }
    }
}

/// `sluice_pg_transaction_phase_seconds`, one child per [`Phase`].
#[derive(Clone)]
pub struct TransactionPhases {
    by_phase: [Histogram; 4],
}

impl TransactionPhases {
    pub(super) fn register(registry: &Registry) -> Result<TransactionPhases, prometheus::Error> {
        let phases = reg(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sluice_pg_transaction_phase_seconds",
                    "Time inside one batch transaction attempt by phase (fence, rows, dead_letters, commit), failed and abandoned attempts included.",
                )
                .buckets(latency_buckets()?),
                &["phase"],
            )?,
        )?;
        // Resolved here, so every phase is exported from the start.
        Ok(TransactionPhases {
            by_phase: Phase::ALL.map(|phase| phases.with_label_values(&[phase.label()])),
        })
    }

    pub fn histogram(&self, phase: Phase) -> &Histogram {
        &self.by_phase[phase as usize]
    }

    /// A clock for one transaction attempt.
    pub fn clock(&self) -> PhaseClock<'_> {
        PhaseClock {
            phases: Some(self),
            spent: [None; 4],
            running: None,
        }
    }
}

/// Times the phases of one transaction attempt. A phase's time is summed
/// over the attempt (each route of a topic writes rows, then its dead
/// letters) and observed once, when the clock is dropped: so also when the
/// attempt fails or is abandoned at its deadline, and a phase that hangs
/// shows as a long one rather than as none. A phase never started is not
/// observed. `tokio::time::Instant`, so tests can drive it with paused time.
pub struct PhaseClock<'a> {
    /// `None`: a write that is not a batch's (`sluice dead-letters
    /// replay`), timed by nothing.
    phases: Option<&'a TransactionPhases>,
    spent: [Option<Duration>; 4],
    running: Option<(Phase, Instant)>,
}

impl PhaseClock<'_> {
    /// A clock that observes nothing.
    pub fn unobserved() -> PhaseClock<'static> {
        PhaseClock {
            phases: None,
            spent: [None; 4],
            running: None,
        }
    }

    /// Ends the running phase, if any, and starts `phase`.
    pub fn start(&mut self, phase: Phase) {
        self.stop();
        self.running = Some((phase, Instant::now()));
    }

    /// Ends the running phase, if any (what follows is no phase's: a
    /// ROLLBACK, say).
    pub fn stop(&mut self) {
        if let Some((phase, since)) = self.running.take() {
            *self.spent[phase as usize].get_or_insert(Duration::ZERO) += since.elapsed();
        }
    }
}

impl Drop for PhaseClock<'_> {
    fn drop(&mut self) {
        self.stop();
        let Some(phases) = self.phases else { return };
        for phase in Phase::ALL {
            if let Some(spent) = self.spent[phase as usize] {
                phases.histogram(phase).observe(spent.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases() -> TransactionPhases {
        TransactionPhases::register(&Registry::new()).expect("register")
    }

    fn observed(phases: &TransactionPhases, phase: Phase) -> (u64, f64) {
        let h = phases.histogram(phase);
        (h.get_sample_count(), h.get_sample_sum())
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_is_observed_once_per_attempt_with_its_routes_summed() {
        let phases = phases();
        {
            let mut clock = phases.clock();
            clock.start(Phase::Fence);
            tokio::time::advance(Duration::from_millis(2)).await;
            // Two routes: rows, dead letters, rows again.
            clock.start(Phase::Rows);
            tokio::time::advance(Duration::from_millis(10)).await;
            clock.start(Phase::DeadLetters);
            tokio::time::advance(Duration::from_millis(4)).await;
            clock.start(Phase::Rows);
            tokio::time::advance(Duration::from_millis(6)).await;
            clock.stop();
            // Between phases (a ROLLBACK, say): counted nowhere.
            tokio::time::advance(Duration::from_secs(1)).await;
            clock.start(Phase::Commit);
            tokio::time::advance(Duration::from_millis(8)).await;
        }
        assert_eq!(observed(&phases, Phase::Fence), (1, 0.002));
        assert_eq!(observed(&phases, Phase::Rows), (1, 0.016));
        assert_eq!(observed(&phases, Phase::DeadLetters), (1, 0.004));
        assert_eq!(observed(&phases, Phase::Commit), (1, 0.008));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_attempt_observes_the_phases_it_reached_and_no_others() {
        let phases = phases();
        {
            let mut clock = phases.clock();
            clock.start(Phase::Fence);
            tokio::time::advance(Duration::from_millis(3)).await;
            clock.start(Phase::Rows);
            // Abandoned here, mid-COPY (the attempt's deadline).
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        assert_eq!(observed(&phases, Phase::Fence), (1, 0.003));
        assert_eq!(observed(&phases, Phase::Rows), (1, 0.5));
        assert_eq!(observed(&phases, Phase::DeadLetters), (0, 0.0));
        assert_eq!(observed(&phases, Phase::Commit), (0, 0.0));
    }

    #[test]
    fn pool_gauges_follow_the_status() {
        let pool = PoolMetrics::register(&Registry::new()).expect("register");
        let status = |size, available, waiting| Status {
            max_size: 4,
            size,
            available,
            waiting,
        };
        pool.set(status(3, 1, 0));
        let gauges =
            |p: &PoolMetrics| (p.idle.get(), p.in_use.get(), p.waiting.get(), p.size.get());
        assert_eq!(gauges(&pool), (1, 2, 0, 4));
        // Saturated: every connection held, two tasks waiting.
        pool.set(status(4, 0, 2));
        assert_eq!(gauges(&pool), (0, 4, 2, 4));
        // Nothing opened yet.
        pool.set(status(0, 0, 0));
        assert_eq!(gauges(&pool), (0, 0, 0, 4));
    }
}
