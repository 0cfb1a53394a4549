//! Taking a partition's queued records from librdkafka many at a time.
//!
//! rust-rdkafka's partition stream hands over one message per poll, and
//! each poll reads the clock three times (its own deadline, librdkafka's
//! poll start and end, kept for `max.poll.interval.ms`) and allocates the
//! `Arc` that keeps the message's event alive: a profile of the drain found
//! the clock alone at 4-5 % of the sink's CPU. While a backlog waits, a
//! worker takes up to [`BURST`] messages in one
//! `rd_kafka_consume_batch_queue` call on its own handle of the same
//! partition queue instead; it still waits for records through the stream
//! (whose wakeup librdkafka fires on the shared queue).
//!
//! Order rests on one rule (`pipeline::intake`): the stream is read only
//! while nothing taken is left, since whatever it returns comes after
//! everything taken. A worker that read it sooner, on a linger deadline
//! tokio's timer had not yet fired, lost rows in the drain benchmark's
//! verification (`exactly_once::a_linger_ending_mid_backlog_loses_nothing`).
//!
//! Messages taken are ahead of the worker: librdkafka counts them as handed
//! over. So a worker that moves its position (a seek, a fetch restarted)
//! must [`Burst::clear`] first, and what is held when the worker ends is
//! released unread, like the rest of the prefetch: the next owner reads
//! from the offset stored in Postgres.

use std::ffi::CString;
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, KafkaResult};

use super::SinkConsumer;

/// Messages taken in one call: enough that the per-call costs vanish per
/// record, few enough that a stop or a linger deadline, looked at between
/// records, is not held up.
pub const BURST: usize = 64;

/// One message taken from the queue, released when dropped.
pub struct Native(NonNull<rdsys::rd_kafka_message_t>);

// SAFETY: a message librdkafka handed over belongs to whoever holds it; it
// may be read and destroyed on any thread.
unsafe impl Send for Native {}

impl Native {
    /// The message, for reading while `self` is alive.
    pub fn ptr(&self) -> *const rdsys::rd_kafka_message_t {
        self.0.as_ptr()
    }

    /// The message, or the consumer error it carries, as rust-rdkafka
    /// reports them.
    pub fn result(&self) -> KafkaResult<&Native> {
        // SAFETY: the message is alive while `self` is.
        let msg = unsafe { self.0.as_ref() };
        match msg.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(self),
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Err(KafkaError::PartitionEOF(msg.partition))
            }
            e => Err(KafkaError::MessageConsumption(e.into())),
        }
    }

    pub fn offset(&self) -> i64 {
        // SAFETY: as above.
        unsafe { self.0.as_ref().offset }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: taken from the queue by `Burst`, destroyed once, here.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

/// A worker's own handle of its partition's queue, and the messages taken
/// from it and not yet read.
pub struct Burst {
    queue: Option<NonNull<rdsys::rd_kafka_queue_t>>,
    /// Taken and not read, the next one last.
    taken: Vec<Native>,
}

// SAFETY: librdkafka's queue handles may be used from any thread; the
// handle and the messages are touched only through `&mut self`.
unsafe impl Send for Burst {}
unsafe impl Sync for Burst {}

impl Burst {
    /// A handle of `topic`/`partition`'s queue on `consumer`, whose queue
    /// must already be split off (`split_partition_queue`). Without one
    /// (librdkafka does not know the partition) every `pop` is `None` and
    /// the worker reads through the stream alone.
    pub fn new(consumer: &SinkConsumer, topic: &str, partition: i32) -> Burst {
        let queue = CString::new(topic).ok().and_then(|topic| {
            // SAFETY: the client is alive for the call; the handle returned
            // holds its own reference to the queue.
            NonNull::new(unsafe {
                rdsys::rd_kafka_queue_get_partition(
                    consumer.client().native_ptr(),
                    topic.as_ptr(),
                    partition,
                )
            })
        });
        Burst {
            queue,
            taken: Vec::with_capacity(BURST),
        }
    }

    /// The next message queued for the partition, without waiting: the
    /// rest of the last burst, else up to [`BURST`] more from the queue.
    pub fn pop(&mut self) -> Option<Native> {
        if self.taken.is_empty() {
            self.refill();
        }
        self.taken.pop()
    }

    /// Releases what was taken and not read: to be called before the
    /// partition's position moves, so no message from before the move is
    /// read after it.
    pub fn clear(&mut self) {
        self.taken.clear();
    }

    fn refill(&mut self) {
        let Some(queue) = self.queue else { return };
        let mut raw = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); BURST];
        // SAFETY: the handle is alive; librdkafka writes at most `BURST`
        // message pointers, each ours to destroy, and returns how many
        // (-1 on an error, when it wrote none).
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(queue.as_ptr(), 0, raw.as_mut_ptr(), BURST)
        };
        let n = usize::try_from(n).unwrap_or(0).min(BURST);
        let taken = raw[..n].iter().rev().filter_map(|&p| NonNull::new(p));
        self.taken.extend(taken.map(Native));
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.clear();
        if let Some(queue) = self.queue.take() {
            // SAFETY: our handle, destroyed once; its messages are gone.
            unsafe { rdsys::rd_kafka_queue_destroy(queue.as_ptr()) }
        }
    }
}
