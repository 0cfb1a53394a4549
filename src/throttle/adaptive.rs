//! The adaptive brake: AIMD on the row rate. Once per window the 90th
//! percentile of the batch commit latencies observed in it is compared
//! with the target (and, if configured, the standbys' replay lag with its
//! limit): over it, the rate is halved (down to the minimum); at or under
//! it, the rate grows by a twentieth of the maximum (up to the maximum).
//! A window without commits and without a lag reading leaves the rate
//! alone: there is nothing to judge by.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::Throttle;
use crate::config::AdaptiveConfig;

/// Multiplicative decrease.
const CUT_FACTOR: f64 = 0.5;
/// Additive increase per window, as a fraction of the maximum rate.
const RAISE_FRACTION: f64 = 1.0 / 20.0;
/// Rate changes in the same direction are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one window observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub p90_commit: Option<Duration>,
    pub replication_lag: Option<u64>,
}

/// Which way the rate went, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Cut(&'static str),
    Raise,
    Hold,
}

/// The AIMD rule: the next rate from the current one and a window's
/// observations.
pub fn next_rate(rate: f64, seen: Window, config: &AdaptiveConfig, max: f64) -> (f64, Step) {
    let min = f64::from(config.min_rows_per_second).min(max);
    let slow = seen
        .p90_commit
        .is_some_and(|p| p > config.target_commit_latency);
    let lagging = match (seen.replication_lag, config.max_replication_lag) {
        (Some(lag), Some(limit)) => lag > limit.bytes(),
        _ => false,
    };
    if slow || lagging {
        let why = if slow {
            "commit latency above target"
        } else {
            "replication lag above limit"
        };
        return ((rate * CUT_FACTOR).max(min), Step::Cut(why));
    }
    if seen.p90_commit.is_none() && seen.replication_lag.is_none() {
        return (rate, Step::Hold);
    }
    let raised = (rate + max * RAISE_FRACTION).min(max);
    if raised > rate {
        (raised, Step::Raise)
    } else {
        (rate, Step::Hold)
    }
}

/// The 90th percentile (nearest rank) of the samples.
pub fn p90(mut samples: Vec<Duration>) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (samples.len() * 9).div_ceil(10);
    samples.get(rank.saturating_sub(1)).copied()
}

/// Runs the brake until `stop` is cancelled. Does nothing unless the
/// throttle has a row limit and adaptive settings.
pub async fn run(throttle: Arc<Throttle>, pool: Pool, stop: CancellationToken) {
    let (Some(config), Some(max)) = (throttle.adaptive().cloned(), throttle.max_rows) else {
        return;
    };
    let max = f64::from(max);
    let mut ticks = tokio::time::interval(config.window);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_log: Option<(Instant, Step)> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let replication_lag = match config.max_replication_lag {
            Some(_) => replication_lag(&pool, config.window).await,
            None => None,
        };
        let seen = Window {
            p90_commit: p90(throttle.take_latencies()),
            replication_lag,
        };
        let Some(rate) = throttle.row_rate() else {
            return;
        };
        let (next, step) = next_rate(rate, seen, &config, max);
        if step == Step::Hold {
            continue;
        }
        throttle.set_row_rate(next);
        let quiet = last_log.is_some_and(|(at, s)| {
            std::mem::discriminant(&s) == std::mem::discriminant(&step) && at.elapsed() < LOG_EVERY
        });
        let p90_ms = seen.p90_commit.map(|d| d.as_millis());
        if quiet {
            debug!(
                rate = next.round(),
                previous = rate.round(),
                ?p90_ms,
                ?replication_lag,
                ?step,
                "throttle rate changed"
            );
        } else {
            last_log = Some((Instant::now(), step));
            match step {
                Step::Cut(why) => info!(
                    rate = next.round(),
                    previous = rate.round(),
                    ?p90_ms,
                    ?replication_lag,
                    "throttle rate cut: {why}"
                ),
                _ => info!(
                    rate = next.round(),
                    previous = rate.round(),
                    ?p90_ms,
                    ?replication_lag,
                    "throttle rate raised"
                ),
            }
        }
    }
}

/// The largest replay lag of the primary's standbys in bytes; `None` when
/// it cannot be read (no standby, no `pg_monitor` rights, or no answer).
async fn replication_lag(pool: &Pool, within: Duration) -> Option<u64> {
    let read = async {
        let client = pool.get().await.ok()?;
        let row = client
            .query_typed_one(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint \
                 FROM pg_stat_replication",
                &[],
            )
            .await
            .map_err(|e| debug!(error = %e, "replication lag not readable"))
            .ok()?;
        let lag: Option<i64> = row.get(0);
        lag.map(|l| l.max(0).unsigned_abs())
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn config() -> AdaptiveConfig {
        AdaptiveConfig {
            target_commit_latency: Duration::from_millis(250),
            min_rows_per_second: 100,
            window: Duration::from_secs(1),
            max_replication_lag: Some(ByteSize::MIB),
        }
    }

    fn window(p90_ms: Option<u64>, lag: Option<u64>) -> Window {
        Window {
            p90_commit: p90_ms.map(Duration::from_millis),
            replication_lag: lag,
        }
    }

    #[test]
    fn slow_commits_halve_the_rate_down_to_the_minimum() {
        let c = config();
        let (r, s) = next_rate(8000.0, window(Some(400), None), &c, 10_000.0);
        assert_eq!((r, s), (4000.0, Step::Cut("commit latency above target")));
        let (r, _) = next_rate(150.0, window(Some(400), None), &c, 10_000.0);
        assert_eq!(r, 100.0);
    }

    #[test]
    fn fast_commits_raise_additively_up_to_the_maximum() {
        let c = config();
        assert_eq!(
            next_rate(4000.0, window(Some(250), None), &c, 10_000.0),
            (4500.0, Step::Raise)
        );
        assert_eq!(
            next_rate(9800.0, window(Some(10), None), &c, 10_000.0),
            (10_000.0, Step::Raise)
        );
        assert_eq!(
            next_rate(10_000.0, window(Some(10), None), &c, 10_000.0),
            (10_000.0, Step::Hold)
        );
    }

    #[test]
    fn replication_lag_brakes_even_without_commits() {
        let c = config();
        let (r, s) = next_rate(8000.0, window(None, Some(2 << 20)), &c, 10_000.0);
        assert_eq!((r, s), (4000.0, Step::Cut("replication lag above limit")));
        // A lag under the limit with fast commits raises.
        let (_, s) = next_rate(8000.0, window(Some(10), Some(1000)), &c, 10_000.0);
        assert_eq!(s, Step::Raise);
    }

    #[test]
    fn a_window_with_nothing_seen_holds() {
        assert_eq!(
            next_rate(500.0, window(None, None), &config(), 10_000.0),
            (500.0, Step::Hold)
        );
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect();
        assert_eq!(p90(Vec::new()), None);
        assert_eq!(p90(ms(&[7])), Some(Duration::from_millis(7)));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(p90(ms(&hundred)), Some(Duration::from_millis(90)));
        // One slow commit in ten does not trip a 250ms target.
        let mostly_fast = [10, 10, 10, 10, 10, 10, 10, 10, 10, 900];
        assert_eq!(p90(ms(&mostly_fast)), Some(Duration::from_millis(10)));
    }
}
