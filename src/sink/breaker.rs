//! The poison-storm breaker. One bad record is dead-lettered and the
//! partition goes on; but when most records fail for the same reason, the
//! cause is a mapping or schema mistake, not the records, and dead-lettering
//! them would empty the topic into the dead-letter table one bisected
//! transaction at a time. So each partition keeps the outcomes of its last
//! [`WINDOW`] records, and once at least [`MIN_RECORDS`] are known and more
//! than `routes[].max_dead_letter_ratio` of them were dead-lettered for one
//! reason, the partition halts instead (as `on_error: stop` would).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::attempt::DeadLetterKind;

/// How many of the latest records the ratio is taken over.
pub const WINDOW: usize = 1_000;
/// The fewest records a verdict is based on (a few bad records at the
/// start of a partition are not a storm).
pub const MIN_RECORDS: usize = 100;

/// One partition's recent outcomes (a worker's own; the lock is only held
/// for a push or a count, never across an await).
#[derive(Debug)]
pub struct Breaker {
    ratio: f64,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    outcomes: VecDeque<Option<DeadLetterKind>>,
    /// The latest reason per kind, for the halt's message.
    last_reason: [Option<String>; 2],
}

fn slot(kind: DeadLetterKind) -> usize {
    match kind {
        DeadLetterKind::Decode => 0,
        DeadLetterKind::Refused => 1,
    }
}

impl Window {
    fn push(&mut self, outcome: Option<DeadLetterKind>) {
        if self.outcomes.len() == WINDOW {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(outcome);
    }
}

impl Breaker {
    /// `ratio` 1 (or more) never trips.
    pub fn new(ratio: f64) -> Breaker {
        Breaker {
            ratio,
            window: Mutex::new(Window::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a committed slice: `written` records went to the table, each
    /// of `dead` to the dead-letter table.
    pub fn observe(&self, written: usize, dead: &[DeadLetterKind]) {
        let mut w = self.lock();
        for _ in 0..written.min(WINDOW) {
            w.push(None);
        }
        for kind in dead {
            w.push(Some(*kind));
        }
    }

    /// Why the partition must halt, should one more dead letter of `kind`
    /// (for `reason`) be written; `None` while under the ratio. Nothing is
    /// counted: a dead letter that is written is noted by `observe`.
    pub fn would_trip(&self, kind: DeadLetterKind, reason: &str) -> Option<String> {
        let mut w = self.lock();
        w.last_reason[slot(kind)] = Some(reason.to_owned());
        let total = w.outcomes.len() + 1;
        let same = 1 + w.outcomes.iter().filter(|o| **o == Some(kind)).count();
        self.verdict(total, same, kind, reason)
    }

    /// Why the partition must halt after what was committed; `None` while
    /// under the ratio.
    pub fn tripped(&self) -> Option<String> {
        let w = self.lock();
        let total = w.outcomes.len();
        [DeadLetterKind::Decode, DeadLetterKind::Refused]
            .into_iter()
            .find_map(|kind| {
                let same = w.outcomes.iter().filter(|o| **o == Some(kind)).count();
                let reason = w.last_reason[slot(kind)].as_deref().unwrap_or("");
                self.verdict(total, same, kind, reason)
            })
    }

    fn verdict(
        &self,
        total: usize,
        same: usize,
        kind: DeadLetterKind,
        reason: &str,
    ) -> Option<String> {
        if self.ratio >= 1.0 || total < MIN_RECORDS || (same as f64) <= self.ratio * total as f64 {
            return None;
        }
        let what = match kind {
            DeadLetterKind::Decode => "could not be decoded",
            DeadLetterKind::Refused => "were refused by Postgres",
        };
        let latest = match reason {
            "" => String::new(),
            r => format!(", the latest: {r}"),
        };
        Some(format!(
            "poison storm: {same} of the last {total} records {what} (more than \
             max_dead_letter_ratio {}){latest}. This is a mapping or schema problem, not a \
             bad record: fix it, then restart sluice",
            self.ratio
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_bad_records_do_not_trip_it() {
        let b = Breaker::new(0.5);
        b.observe(990, &[DeadLetterKind::Decode; 10]);
        assert!(b.tripped().is_none());
        assert!(b.would_trip(DeadLetterKind::Refused, "x").is_none());
    }

    #[test]
    fn most_records_failing_for_one_reason_trips_it() {
        let b = Breaker::new(0.5);
        // Too few records to judge yet.
        assert!(b.would_trip(DeadLetterKind::Refused, "23502").is_none());
        b.observe(0, &[DeadLetterKind::Refused; 99]);
        let why = b
            .would_trip(DeadLetterKind::Refused, "null value in column")
            .unwrap();
        assert!(why.contains("100 of the last 100"), "{why}");
        assert!(why.contains("null value in column"), "{why}");
    }

    #[test]
    fn reasons_are_counted_apart_and_the_window_slides() {
        let b = Breaker::new(0.5);
        b.observe(0, &[DeadLetterKind::Refused; 300]);
        b.observe(0, &[DeadLetterKind::Decode; 300]);
        b.observe(400, &[]);
        // 300 + 300 of 1000, neither above half.
        assert!(b.tripped().is_none());
        b.observe(0, &[DeadLetterKind::Decode; 250]);
        // The window dropped 250 refused: decode is 550 of 1000.
        assert!(b.tripped().unwrap().contains("550 of the last 1000"));
    }

    #[test]
    fn ratio_one_never_trips() {
        let b = Breaker::new(1.0);
        b.observe(0, &[DeadLetterKind::Decode; 1000]);
        assert!(b.tripped().is_none());
    }
}
