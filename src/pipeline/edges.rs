//! A stored offset outside the log. librdkafka is told never to reset a
//! fetch by itself (`auto.offset.reset=error`): a fetch outside the log
//! reaches the partition's worker as an error, and the worker asks the
//! brokers for the log's bounds and applies `on_offset_out_of_range`.
//! Nothing is ever skipped quietly: a halt is reported everywhere a halt
//! from `on_error: stop` is (`/readyz`, the log, `sluice check`), and a
//! move is logged at WARN and counted. See docs/ARCHITECTURE.md, "Offsets
//! at the edges of the log".

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};
use uuid::Uuid;

use super::worker::{Exit, PartitionWorker};
use super::Shared;
use crate::backoff::Backoff;
use crate::config::OffsetOutOfRange;
use crate::kafka::log::{self, LogBounds};
use crate::offsets::PartitionKey;

/// Where a stored offset lies against the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Above the high watermark: the topic was recreated under the same
    /// name, the log was truncated (an unclean leader election), or this
    /// is another cluster.
    AheadOfEnd,
    /// Below the log start: retention deleted records sluice never wrote.
    BehindStart,
    /// Inside the log after all (the broker refused it for a moment, e.g.
    /// during a leader change).
    Inside,
}

impl Edge {
    fn label(self) -> &'static str {
        match self {
            Edge::AheadOfEnd => "ahead_of_end",
            Edge::BehindStart => "behind_start",
            Edge::Inside => "inside",
        }
    }
}

/// What to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Hold the partition and write nothing.
    Halt,
    /// Store this offset instead and read from it.
    MoveTo(i64),
    /// Read from the stored offset again.
    Retry,
}

/// The rule: an explicit `on_offset_out_of_range` applies to both edges;
/// without one, ahead of the end halts (writing from elsewhere would be a
/// guess) and behind the start moves to the log start (the records are
/// gone either way; waiting would not bring them back).
pub fn decide(stored: i64, log: LogBounds, rule: Option<OffsetOutOfRange>) -> (Edge, Action) {
    let edge = if stored > log.high {
        Edge::AheadOfEnd
    } else if stored < log.low {
        Edge::BehindStart
    } else {
        Edge::Inside
    };
    let action = match (edge, rule) {
        (Edge::Inside, _) => Action::Retry,
        (_, Some(OffsetOutOfRange::Halt)) | (Edge::AheadOfEnd, None) => Action::Halt,
        (_, Some(OffsetOutOfRange::Earliest)) | (Edge::BehindStart, None) => {
            Action::MoveTo(log.low)
        }
    };
    (edge, action)
}

/// What became of a stored offset checked against its log.
#[derive(Debug)]
pub enum Checked {
    /// Read from this offset (the stored one, or where the rule moved it).
    Read(i64),
    /// Halt before this offset, for this reason.
    Halt { offset: i64, reason: String },
    /// The row is no longer this owner's (fenced out meanwhile).
    Fenced,
    /// Shutting down, or a fatal error stopped the service.
    Stopped,
}

impl Shared {
    /// Checks a partition's stored offset against its log and applies the
    /// rule: at assignment (before the partition is read) and when a fetch
    /// found it outside the log. A move is stored in Postgres (fenced like a
    /// commit), logged at WARN and counted; a halt is logged at ERROR and
    /// counted (the caller holds the partition).
    pub async fn check_edge(
        &self,
        key: &PartitionKey,
        owner: Uuid,
        stored: i64,
        log: LogBounds,
        cancel: &CancellationToken,
    ) -> Checked {
        let rule = self.out_of_range.get(&key.topic).copied().flatten();
        let (edge, action) = decide(stored, log, rule);
        let LogBounds { low, high } = log;
        let what = match edge {
            Edge::AheadOfEnd => format!(
                "stored offset {stored} is ahead of the log end {high} (log start {low}): \
                 the topic was recreated, its log truncated, or this is another cluster"
            ),
            Edge::BehindStart => format!(
                "stored offset {stored} is below the log start {low} (log end {high}): \
                 retention deleted {} records sluice never wrote",
                low - stored
            ),
            Edge::Inside => return Checked::Read(stored),
        };
        let count = |action: &str| {
            self.metrics
                .offset_out_of_range
                .with_label_values(&[key.topic.as_str(), edge.label(), action])
                .inc();
        };
        match action {
            Action::Retry => Checked::Read(stored),
            Action::Halt => {
                count("halted");
                error!(partition = %key, stored, low, high, ?edge,
                       "stored offset outside the log: partition halted (on_offset_out_of_range)");
                Checked::Halt {
                    offset: stored,
                    reason: format!(
                        "{what}; nothing is written until `sluice offsets set --topic {} \
                         --partition {} --to earliest` (or offset:<N>) moves the stored offset \
                         (docs/operations.md, \"Stored offset outside the log\")",
                        key.topic, key.partition
                    ),
                }
            }
            Action::MoveTo(to) => {
                let moved = self
                    .retrying(key, "move the stored offset of", cancel, || async {
                        let client = self.pool.get().await?;
                        // Fenced like a commit: the owner and the offset it moves from.
                        Ok(self
                            .offsets
                            .advance(&**client, key, owner, Some(stored), to, None)
                            .await?)
                    })
                    .await;
                match moved {
                    None => Checked::Stopped,
                    Some(false) => Checked::Fenced,
                    Some(true) => {
                        count("moved");
                        if edge == Edge::BehindStart {
                            self.metrics
                                .offset_gap_records
                                .with_label_values(&[key.topic.as_str()])
                                .inc_by(u64::try_from(to - stored).unwrap_or(0));
                        }
                        warn!(partition = %key, stored, low, high, to,
                              "{what}; moved to the log start (on_offset_out_of_range)");
                        Checked::Read(to)
                    }
                }
            }
        }
    }
}

impl PartitionWorker {
    /// A fetch found the position outside the log (librdkafka then stops
    /// fetching the partition). `None`: go on collecting; otherwise the
    /// worker ends so.
    pub(super) async fn out_of_range(&mut self) -> Option<Exit> {
        let shared = Arc::clone(&self.shared);
        let mut backoff = Backoff::new(shared.retry.initial_backoff, shared.retry.max_backoff);
        let bounds = loop {
            let (topic, partition) = (&self.key.topic, self.key.partition);
            let consumer = &*self.consumer;
            match tokio::task::block_in_place(|| log::bounds(consumer, topic, partition)) {
                Ok(bounds) => break bounds,
                Err(e) => {
                    shared.metrics.kafka_errors.inc();
                    warn!(partition = %self.key, error = %e, "cannot read the log bounds yet; retrying");
                    if !backoff.wait(&self.stop).await {
                        return Some(Exit::Stopped);
                    }
                }
            }
        };
        // No stored offset: a claim lost meanwhile; the fence stops this
        // worker before anything it reads is written.
        let stored = self.next_offset.unwrap_or(bounds.low);
        let checked = shared
            .check_edge(&self.key, self.owner, stored, bounds, &self.stop)
            .await;
        match checked {
            Checked::Halt { offset, reason } => Some(self.halt(offset, reason, None).await),
            Checked::Stopped => Some(Exit::Stopped),
            Checked::Fenced => match self.reclaim().await {
                Ok(true) => self.halt_now().await,
                Ok(false) => Some(Exit::Stale { owner: None }),
                Err(e) => Some(Exit::Failed(e)),
            },
            Checked::Read(at) => {
                if at == stored {
                    warn!(partition = %self.key, stored, low = bounds.low, high = bounds.high,
                          "the broker refused an offset inside the log; reading from it again");
                    if !backoff.wait(&self.stop).await {
                        return Some(Exit::Stopped);
                    }
                }
                if let Err(e) = self.restart_fetch(at) {
                    return Some(Exit::Failed(e));
                }
                self.committed(at);
                shared.track(&self.key, Some(at), None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: LogBounds = LogBounds {
        low: 100,
        high: 200,
    };

    #[test]
    fn by_default_ahead_halts_and_behind_moves_to_the_start() {
        assert_eq!(decide(100_000, LOG, None), (Edge::AheadOfEnd, Action::Halt));
        assert_eq!(
            decide(40, LOG, None),
            (Edge::BehindStart, Action::MoveTo(100))
        );
        // The end itself is inside: the next record to be produced.
        assert_eq!(decide(200, LOG, None), (Edge::Inside, Action::Retry));
        assert_eq!(decide(100, LOG, None), (Edge::Inside, Action::Retry));
    }

    #[test]
    fn an_explicit_rule_applies_to_both_edges() {
        let halt = Some(OffsetOutOfRange::Halt);
        let earliest = Some(OffsetOutOfRange::Earliest);
        assert_eq!(decide(40, LOG, halt), (Edge::BehindStart, Action::Halt));
        assert_eq!(decide(201, LOG, halt), (Edge::AheadOfEnd, Action::Halt));
        assert_eq!(
            decide(201, LOG, earliest),
            (Edge::AheadOfEnd, Action::MoveTo(100))
        );
        assert_eq!(
            decide(40, LOG, earliest),
            (Edge::BehindStart, Action::MoveTo(100))
        );
    }
}
