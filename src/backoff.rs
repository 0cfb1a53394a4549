//! Exponential backoff with jitter, cut short by cancellation.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            next: initial.min(max),
            max,
        }
    }

    /// Waits for the next delay (between half and all of it, so that many
    /// workers failing together do not retry in lockstep). `false` when
    /// cancelled first.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next.mul_f64(rand::rng().random_range(0.5..=1.0));
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_cap_and_stops_on_cancel() {
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let t0 = tokio::time::Instant::now();
        assert!(b.wait(&cancel).await);
        assert!(b.wait(&cancel).await);
        assert!(b.wait(&cancel).await);
        assert_eq!(b.next, Duration::from_millis(350));
        let waited = t0.elapsed();
        // 100 + 200 + 350 at most, half of that at least
        assert!(waited >= Duration::from_millis(325) && waited <= Duration::from_millis(650));
        cancel.cancel();
        assert!(!b.wait(&cancel).await);
    }
}
