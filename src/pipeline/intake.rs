//! How a partition worker takes records from its queue: a fast path with
//! no timers while a backlog waits, else a wait for the next record, the
//! linger deadline, a stop or the idle re-check.

use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use rdkafka::consumer::MessageStream;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::time::Instant;
use tracing::warn;

use super::worker::{PartitionWorker, IDLE_VERIFY};
use crate::kafka::burst::Native;
use crate::kafka::SinkContext;
use crate::record::{Arena, Record};

/// A parked stream can miss librdkafka's "queue non-empty" wakeup
/// (rust-rdkafka #665); re-polling this often heals such a stall.
const HEAL_INTERVAL: Duration = Duration::from_millis(500);

/// While records are waiting, the stop and the linger deadline are looked
/// at once every this many records, not at each: a profile of the drain
/// found reading the clock per record at about 1 % of the sink's CPU and the
/// cancellation token's mutex at about as much. A stop or a linger is then
/// seen at most this many records (a few microseconds) late.
const CHECK_EVERY: u32 = 64;

/// What [`PartitionWorker::next`] takes records with.
pub(super) struct Pull<'p, 's> {
    /// The partition queue's stream, one per batch.
    pub(super) stream: &'p mut MessageStream<'s, SinkContext>,
    /// Where the records' keys and values are copied.
    pub(super) arena: &'p mut Arena,
    /// How many more records the fast path may take before it looks at the
    /// stop and the deadline again ([`CHECK_EVERY`]).
    pub(super) unchecked: &'p mut u32,
}

pub(super) enum Next {
    Record(Record),
    Linger,
    Stop,
    /// librdkafka found the position outside the log (pipeline::edges).
    OutOfRange,
    /// Nothing arrived for [`IDLE_VERIFY`] with the batch empty.
    Idle,
}

impl PartitionWorker {
    /// The next record of this partition, or why there is none.
    pub(super) async fn next(&mut self, pull: Pull<'_, '_>, deadline: Option<Instant>) -> Next {
        let Pull {
            stream,
            arena,
            unchecked,
        } = pull;
        // Fast path, no timers: during a backlog the queue already holds the
        // next record. (A pending poll is dropped at once, which is safe.)
        loop {
            if *unchecked == 0 {
                // Answered here, not by the timers below: the burst may
                // still hold records, and the stream is ahead of them. A
                // linger deadline that has passed by the clock may not have
                // fired in tokio's timer yet, so the select below would
                // take the stream's next record first: records out of
                // order, and those skipped lost (the drain bench's
                // verification caught it).
                if self.stop.is_cancelled() {
                    return Next::Stop;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Next::Linger;
                }
                *unchecked = CHECK_EVERY;
            }
            *unchecked -= 1;
            // Many at a time from librdkafka (kafka::burst); the stream is
            // read only once the burst is empty, so it is never ahead.
            if let Some(msg) = self.burst.pop() {
                if let Some(next) = self.accept_native(&msg, arena) {
                    return next;
                }
                continue;
            }
            match stream.next().now_or_never() {
                Some(Some(msg)) => {
                    if let Some(next) = self.accept(msg, arena) {
                        return next;
                    }
                }
                // A stream of a partition queue never ends; none pending.
                Some(None) | None => break,
            }
        }
        let linger = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(linger);
        let idle = async {
            match deadline {
                Some(_) => std::future::pending().await,
                None => tokio::time::sleep(IDLE_VERIFY).await,
            }
        };
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return Next::Stop,
                () = &mut linger => return Next::Linger,
                () = &mut idle => return Next::Idle,
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if let Some(next) = self.accept(msg, arena) {
                            return next;
                        }
                    }
                    // Never: a partition queue's stream does not end
                    // (rust-rdkafka's own `recv` unwraps it). Were it to,
                    // the records are left for the next owner.
                    None => return Next::Stop,
                },
                () = tokio::time::sleep(HEAL_INTERVAL) => {}
            }
        }
    }

    /// A received message as a record to batch (or the log's edge), or
    /// `None` when there is nothing to write.
    fn accept(&self, msg: KafkaResult<BorrowedMessage<'_>>, arena: &mut Arena) -> Option<Next> {
        match msg {
            Ok(msg) => self.record(msg.offset(), || Record::from_message_in(&msg, arena)),
            Err(e) => self.consumer_error(&e),
        }
    }

    /// [`Self::accept`] for a message taken in a burst.
    fn accept_native(&self, msg: &Native, arena: &mut Arena) -> Option<Next> {
        match msg.result() {
            Ok(msg) => self.record(msg.offset(), || Record::from_native_in(msg, arena)),
            Err(e) => self.consumer_error(&e),
        }
    }

    fn record(&self, offset: i64, copy: impl FnOnce() -> Record) -> Option<Next> {
        // Records below the stored offset are already in Postgres (a
        // re-delivery): never write them twice. Checked before copying.
        if self.next_offset.is_some_and(|n| offset < n) {
            return None;
        }
        Some(Next::Record(copy()))
    }

    fn consumer_error(&self, e: &KafkaError) -> Option<Next> {
        if let KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) = e {
            return Some(Next::OutOfRange);
        }
        // librdkafka recovers from these by itself (broker down, leader
        // moved); count them, keep consuming.
        self.shared.metrics.kafka_errors.inc();
        let kind = format!("fetch:{:?}", e.rdkafka_error_code());
        if let Some(held_back) = self.shared.kafka_repeats.admit(&kind) {
            warn!(partition = %self.key, error = %e, held_back, "kafka consumer error");
        }
        None
    }
}
