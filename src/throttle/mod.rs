//! The replica's write budget: rows and bytes per second shared by all
//! partition workers, taken before a batch's transaction starts (never
//! inside one, so no lock is held while waiting).
//!
//! - Enforcement is `governor`'s GCRA. The burst is a tenth of a second's
//!   budget, so the measured rate stays close to the limit even over short
//!   drains; a batch larger than the burst takes its cells in burst-sized
//!   chunks (it waits proportionally, it is never refused).
//! - Fairness: batches take turns in arrival order (a FIFO async lock), so
//!   a hot partition gets one batch per round like every other partition
//!   and cannot starve them.
//! - The row rate can be changed at run time by the adaptive brake
//!   ([`adaptive`]); a new limiter starts with its burst spent so a change
//!   never lets a burst through.

pub mod adaptive;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus::Gauge;

use crate::config::{AdaptiveConfig, ThrottleConfig};

/// Most commit latencies kept per adaptive window; enough for a stable p90
/// and bounded whatever the commit rate.
const MAX_SAMPLES: usize = 4096;

/// The shared write budget of one replica.
pub struct Throttle {
    rows: Option<Bucket>,
    bytes: Option<Bucket>,
    /// Held while a batch takes its budget; tokio's lock is fair (FIFO).
    turn: tokio::sync::Mutex<()>,
    /// The configured row limit (the ceiling the brake grows back to).
    max_rows: Option<u32>,
    adaptive: Option<AdaptiveConfig>,
    /// Commit latencies of the current window (adaptive only).
    latencies: Mutex<Vec<Duration>>,
    rate_gauge: Gauge,
}

impl Throttle {
    /// The throttle the config asks for, or `None` when it sets no limit.
    pub fn from_config(config: &ThrottleConfig, rate_gauge: Gauge) -> Option<Throttle> {
        if config.max_rows_per_second.is_none() && config.max_bytes_per_second.is_none() {
            return None;
        }
        let rows = config
            .max_rows_per_second
            .map(|r| Bucket::new(f64::from(r.max(1))));
        let bytes = config
            .max_bytes_per_second
            .map(|b| Bucket::new(b.bytes().max(1) as f64));
        rate_gauge.set(rows.as_ref().map_or(f64::INFINITY, Bucket::rate));
        Some(Throttle {
            rows,
            bytes,
            turn: tokio::sync::Mutex::new(()),
            max_rows: config.max_rows_per_second,
            adaptive: config.adaptive.clone(),
            latencies: Mutex::new(Vec::new()),
            rate_gauge,
        })
    }

    /// Waits until a batch of `rows` rows and `bytes` bytes fits the budget
    /// and takes it; a first poll that completes means no wait was needed.
    /// The budget is taken a quantum per turn, going to the back of the line
    /// between turns, so every waiting partition gets the same rows per
    /// second however large its batches are. Cancel-safe: dropping the
    /// future gives up the turn (cells already taken are simply spent).
    pub async fn admit(&self, rows: usize, bytes: usize) {
        let (rows, bytes) = (rows as u64, bytes as u64);
        let turns = [(&self.rows, rows), (&self.bytes, bytes)]
            .into_iter()
            .filter_map(|(bucket, n)| Some(n.div_ceil(bucket.as_ref()?.quantum())))
            .max()
            .unwrap_or(1)
            .max(1);
        // Turn i takes the cells from share(i) to share(i + 1).
        let share = |n: u64, i: u64| n * i / turns;
        for i in 0..turns {
            let _turn = self.turn.lock().await;
            if let Some(b) = &self.rows {
                b.take(share(rows, i + 1) - share(rows, i)).await;
            }
            if let Some(b) = &self.bytes {
                b.take(share(bytes, i + 1) - share(bytes, i)).await;
            }
        }
    }

    /// Records one batch's commit latency for the adaptive brake.
    pub fn observe_commit(&self, took: Duration) {
        if self.adaptive.is_none() {
            return;
        }
        let mut samples = self
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            samples.push(took);
        }
    }

    /// The adaptive settings, if the brake is on.
    pub fn adaptive(&self) -> Option<&AdaptiveConfig> {
        self.adaptive.as_ref()
    }

    /// The current row rate limit (rows per second), if rows are limited.
    pub fn row_rate(&self) -> Option<f64> {
        self.rows.as_ref().map(Bucket::rate)
    }

    /// Sets the row rate (the adaptive brake's lever), clamped to the
    /// configured maximum.
    fn set_row_rate(&self, rate: f64) {
        if let (Some(bucket), Some(max)) = (&self.rows, self.max_rows) {
            let rate = rate.clamp(1.0, f64::from(max));
            bucket.set_rate(rate);
            self.rate_gauge.set(rate);
        }
    }

    /// Takes the latencies observed since the last call.
    fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// One GCRA limiter whose rate can be replaced.
struct Bucket {
    current: RwLock<Arc<Gcra>>,
}

struct Gcra {
    rate: f64,
    burst: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

impl Gcra {
    fn new(rate: f64) -> Gcra {
        // A tenth of a second's budget, at least one cell.
        let burst =
            NonZeroU32::new(((rate / 10.0).ceil() as u32).max(1)).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Gcra {
            rate,
            burst,
            limiter: RateLimiter::direct(quota),
        }
    }
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            current: RwLock::new(Arc::new(Gcra::new(rate))),
        }
    }

    fn current(&self) -> Arc<Gcra> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn rate(&self) -> f64 {
        self.current().rate
    }

    /// The cells one turn takes: 20ms of budget, at least one.
    fn quantum(&self) -> u64 {
        ((self.rate() / 50.0).ceil() as u64).max(1)
    }

    fn set_rate(&self, rate: f64) {
        let fresh = Gcra::new(rate);
        // Start with the burst spent: a rate change must not let a free
        // burst through.
        let _ = fresh.limiter.check_n(fresh.burst);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
    }

    /// Waits for `n` cells, taking them in burst-sized chunks.
    async fn take(&self, mut n: u64) {
        while n > 0 {
            // Re-read per chunk: a rate change applies from the next chunk.
            let gcra = self.current();
            let chunk = n.min(u64::from(gcra.burst.get()));
            if let Some(cells) = u32::try_from(chunk).ok().and_then(NonZeroU32::new) {
                // Cannot fail: the chunk never exceeds the burst.
                let _ = gcra.limiter.until_n_ready(cells).await;
            }
            n -= chunk;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn throttle(rows: u32) -> Throttle {
        let config = ThrottleConfig {
            max_rows_per_second: Some(rows),
            ..ThrottleConfig::default()
        };
        Throttle::from_config(&config, Gauge::new("rate", "rate").unwrap()).unwrap()
    }

    #[test]
    fn no_limits_means_no_throttle() {
        let gauge = Gauge::new("rate", "rate").unwrap();
        assert!(Throttle::from_config(&ThrottleConfig::default(), gauge).is_none());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_burst_waits_instead_of_failing() {
        // 1,000 rows/s: a burst of 100, so 300 rows need 200 more cells.
        let t = throttle(1000);
        let began = Instant::now();
        t.admit(300, 0).await;
        assert!(
            began.elapsed() >= Duration::from_millis(150),
            "{:?}",
            began.elapsed()
        );
    }

    #[tokio::test]
    async fn a_new_rate_starts_without_a_free_burst_and_is_clamped() {
        let t = throttle(1000);
        t.set_row_rate(5000.0);
        assert_eq!(t.row_rate(), Some(1000.0), "clamped to the maximum");
        assert_eq!(t.rate_gauge.get(), 1000.0);
        // The new limiter's burst (100 cells) is spent: 50 cells wait ~50ms.
        let began = Instant::now();
        t.admit(50, 0).await;
        assert!(
            began.elapsed() >= Duration::from_millis(30),
            "{:?}",
            began.elapsed()
        );
        t.set_row_rate(0.0);
        assert_eq!(t.row_rate(), Some(1.0), "never below one row per second");
    }
}
