//! During a broker outage librdkafka reports the same failure over and over
//! (each reconnect attempt to each broker, each partition's fetch). The
//! first report of a kind is logged, then at most one per [`WINDOW`],
//! carrying `held_back`: how many of that kind were not logged since the
//! previous line. Counters (`sluice_kafka_errors_total`) still count all.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(30);

/// Kinds are error codes and librdkafka log facilities, a small set; the
/// cap only guards against an unexpected stream of distinct kinds.
const MAX_KINDS: usize = 256;

#[derive(Default)]
pub struct Repeats {
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    logged_at: Instant,
    held_back: u64,
}

impl Repeats {
    /// `Some(held_back)` when a report of `kind` should be logged now,
    /// `None` when it is held back.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = seen.get_mut(kind) {
            if now.duration_since(s.logged_at) < WINDOW {
                s.held_back += 1;
                return None;
            }
            let held_back = s.held_back;
            *s = Seen {
                logged_at: now,
                held_back: 0,
            };
            return Some(held_back);
        }
        if seen.len() >= MAX_KINDS {
            seen.clear();
        }
        seen.insert(
            kind.to_owned(),
            Seen {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_kind_per_window_with_the_count_held_back() {
        let r = Repeats::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.admit_at("refused", at(0)), Some(0));
        assert_eq!(r.admit_at("refused", at(1)), None);
        assert_eq!(r.admit_at("refused", at(29)), None);
        assert_eq!(r.admit_at("timeout", at(2)), Some(0), "kinds are apart");
        assert_eq!(r.admit_at("refused", at(30)), Some(2));
        assert_eq!(r.admit_at("refused", at(31)), None);
        assert_eq!(r.admit_at("refused", at(100)), Some(1));
    }

    #[test]
    fn distinct_kinds_are_bounded() {
        let r = Repeats::default();
        for i in 0..(MAX_KINDS * 3) {
            assert_eq!(r.admit(&format!("kind-{i}")), Some(0));
        }
        let seen = r.seen.lock().unwrap();
        assert!(seen.len() <= MAX_KINDS);
    }
}
