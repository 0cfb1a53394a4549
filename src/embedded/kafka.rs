//! librdkafka's in-process mock cluster, plus small producer/watermark helpers
//! for the demo and the tests.
//!
//! `rdkafka::mocking::MockCluster` is `!Send` (it wraps raw librdkafka
//! pointers), so it lives on a dedicated thread and is driven through a
//! command channel; [`MockKafka`] itself is `Send + Sync` and can sit in a
//! static or be shared between tasks.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;

/// Requests served by the cluster's thread.
enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<KafkaResult<()>>,
    },
    /// Takes a broker down (`up: false`: its connections are closed and
    /// new ones refused) or brings it back.
    Broker {
        id: i32,
        up: bool,
        reply: mpsc::Sender<KafkaResult<()>>,
    },
    /// The next requests of `api` fail with `errors`, one each, in order.
    RequestErrors {
        api: RDKafkaApiKey,
        errors: Vec<RDKafkaRespErr>,
        reply: mpsc::Sender<()>,
    },
    Stop,
}

/// A librdkafka mock cluster running on its own thread; stopped when dropped.
pub struct MockKafka {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// Error used when the cluster's thread is gone or could not be started:
/// rdkafka has no variant for "our helper thread died", and `Fail` is what
/// rdkafka itself reports when the mock cluster cannot be created.
fn cluster_gone() -> KafkaError {
    KafkaError::MockCluster(RDKafkaErrorCode::Fail)
}

impl MockKafka {
    /// Starts a mock cluster with `brokers` brokers on a dedicated thread and
    /// waits until its listeners are up.
    pub fn start(brokers: i32) -> KafkaResult<MockKafka> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<KafkaResult<String>>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || serve(brokers, &inbox, &ready_tx))
            .map_err(|e| {
                tracing::error!(error = %e, "could not spawn the mock Kafka thread");
                cluster_gone()
            })?;
        match ready_rx.recv() {
            Ok(Ok(bootstrap)) => {
                tracing::debug!(%bootstrap, brokers, "mock Kafka cluster started");
                Ok(MockKafka {
                    bootstrap,
                    commands,
                    thread: Some(thread),
                })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread exited (panicked) without answering.
            Err(_) => {
                let _ = thread.join();
                Err(cluster_gone())
            }
        }
    }

    /// The cluster's `bootstrap.servers` list (comma-separated `127.0.0.1:port`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    ///
    /// Runs on the cluster's thread and waits for its answer. The mock broker
    /// does not support the CreateTopics admin API, so this is the way to get
    /// a topic with a chosen partition count (auto-created topics get the
    /// mock's default partition count instead).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> KafkaResult<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::CreateTopic {
                name: topic.to_owned(),
                partitions,
                reply,
            })
            .map_err(|_| cluster_gone())?;
        answer.recv().map_err(|_| cluster_gone())?
    }

    /// Takes broker `id` (1-based) down: its connections close and new
    /// ones are refused until [`MockKafka::broker_up`].
    pub fn broker_down(&self, id: i32) -> KafkaResult<()> {
        self.broker(id, false)
    }

    pub fn broker_up(&self, id: i32) -> KafkaResult<()> {
        self.broker(id, true)
    }

    fn broker(&self, id: i32, up: bool) -> KafkaResult<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::Broker { id, up, reply })
            .map_err(|_| cluster_gone())?;
        answer.recv().map_err(|_| cluster_gone())?
    }

    /// The next `errors.len()` requests of `api` fail, each with the next
    /// error of the list (the cluster's brokers all share the list).
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) -> KafkaResult<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(Command::RequestErrors {
                api,
                errors: errors.to_vec(),
                reply,
            })
            .map_err(|_| cluster_gone())?;
        answer.recv().map_err(|_| cluster_gone())
    }
}

/// Body of the cluster's thread: owns the `!Send` MockCluster from creation
/// to drop, so it is never touched from another thread.
fn serve(brokers: i32, inbox: &mpsc::Receiver<Command>, ready: &mpsc::Sender<KafkaResult<String>>) {
    let cluster = match MockCluster::new(brokers) {
        Ok(cluster) => cluster,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(cluster.bootstrap_servers())).is_err() {
        return;
    }
    // A closed channel (MockKafka dropped without Stop, e.g. during a panic
    // unwind) ends the loop just like Stop does.
    while let Ok(command) = inbox.recv() {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                reply,
            } => {
                let _ = reply.send(cluster.create_topic(&name, partitions, 1));
            }
            Command::Broker { id, up, reply } => {
                let done = match up {
                    true => cluster.broker_up(id),
                    false => cluster.broker_down(id),
                };
                let _ = reply.send(done);
            }
            Command::RequestErrors { api, errors, reply } => {
                cluster.request_errors(api, &errors);
                let _ = reply.send(());
            }
            Command::Stop => break,
        }
    }
    drop(cluster);
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("mock Kafka thread panicked");
            }
        }
    }
}

/// Upper bound on deliveries awaited at once: bounds memory for big inputs
/// and stays below `queue.buffering.max.messages`, so enqueueing rarely
/// meets a full queue.
const MAX_IN_FLIGHT: usize = 50_000;

/// A record to produce: `(partition, key, value)`.
pub type Record = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces records with keys and values, in order per partition, and returns
/// after every delivery is acknowledged, with the `(partition, offset)` each
/// one got, in input order.
///
/// The producer is idempotent, so
/// retries cannot reorder or duplicate records within a partition.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    records: Vec<Record>,
) -> KafkaResult<Vec<(i32, i64)>> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "100000")
        .create()?;
    produce_with(&producer, topic, &records).await
}

/// Produces records through `producer`, in order per partition, and returns
/// after every delivery is acknowledged, with the `(partition, offset)` each
/// one got, in input order. Ordering across retries is the producer's
/// configuration's business (idempotence, or one request in flight).
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    records: &[Record],
) -> KafkaResult<Vec<(i32, i64)>> {
    produce_at(producer, topic, records, |_| None).await
}

/// [`produce_with`], each record with the Kafka timestamp (ms since the
/// epoch) `timestamp(i)` gives the `i`-th one, or the producer's clock for
/// `None`: for copies of one log on two clusters (a mirror keeps the
/// records' timestamps, not their offsets).
pub async fn produce_at(
    producer: &FutureProducer,
    topic: &str,
    records: &[Record],
    timestamp: impl Fn(usize) -> Option<i64>,
) -> KafkaResult<Vec<(i32, i64)>> {
    let mut delivered = Vec::with_capacity(records.len());
    // Deliveries complete in send order per partition, and we only need them
    // all, so awaiting the oldest first is as fast as any other order.
    let mut pending = VecDeque::new();
    for (i, (partition, key, value)) in records.iter().enumerate() {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).partition(*partition);
        if let Some(ms) = timestamp(i) {
            record = record.timestamp(ms);
        }
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    pending.push_back(future);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // Make room: the oldest delivery frees a queue slot; with
                    // nothing of ours in flight, wait for the queue to drain.
                    match pending.pop_front() {
                        Some(oldest) => delivered.push(await_delivery(oldest).await?),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
        if pending.len() >= MAX_IN_FLIGHT {
            if let Some(oldest) = pending.pop_front() {
                delivered.push(await_delivery(oldest).await?);
            }
        }
    }
    for future in pending {
        delivered.push(await_delivery(future).await?);
    }
    Ok(delivered)
}

async fn await_delivery(future: rdkafka::producer::DeliveryFuture) -> KafkaResult<(i32, i64)> {
    match future.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _message))) => Err(e),
        // The producer went away before reporting; it is alive for the whole
        // of `produce`, so this means librdkafka dropped the callback.
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}

/// High watermark (next offset to be written) of partitions `0..partitions`
/// of `topic`, in partition order.
pub async fn high_watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> KafkaResult<Vec<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let topic = topic.to_owned();
    // fetch_watermarks blocks on a broker round trip.
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map(|(_low, high)| high)
            })
            .collect()
    })
    .await
    .map_err(|_join| KafkaError::Canceled)?
}
