//! A real Kafka-protocol broker process for the tests that need one: tansu
//! 0.6.0, built by `./dev tansu` when absent, with in-memory storage, or
//! sqlite storage (in its directory) that survives a kill -9 and restart.
//!
//! Two tansu 0.6.0 defects shape this harness: its high watermarks are wrong
//! (never rely on them; use the producer's delivery reports), and a fetch
//! that starts inside a record batch skips the rest of that batch (a
//! consumer assigned at 1,234 got 4,374 first), so every record is produced
//! as its own batch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use sluice::embedded::kafka::{produce_at, Record};

use crate::harness::{free_port, next_offsets, Produced};

/// The tansu binary, built on first use (shared by every test).
fn binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/dev");
        let out = Command::new("bash")
            .args([dev, "tansu"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run ./dev tansu");
        assert!(out.status.success(), "./dev tansu failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A tansu broker on a free port; killed when dropped.
pub struct Tansu {
    pub bootstrap: String,
    /// Where tansu itself listens (plaintext), when a proxy fronts it.
    pub listener: String,
    /// librdkafka settings the harness's own clients (admin, producers)
    /// need to reach it: TLS and SASL when it sits behind HAProxy.
    client: Vec<(String, String)>,
    /// `None` while stopped.
    child: Option<Child>,
    /// How it was started, to start it again the same way.
    options: TansuOptions,
    port: u16,
    dir: tempfile::TempDir,
}

/// How to start tansu: behind a proxy it advertises the proxy's address,
/// and the harness's clients connect the way sluice will.
#[derive(Default)]
pub struct TansuOptions {
    /// `host:port` advertised to clients (and used as the bootstrap);
    /// default: tansu's own listener.
    pub advertised: Option<String>,
    /// Require SASL (tansu's `--authentication`).
    pub authentication: bool,
    /// librdkafka settings for the harness's clients.
    pub client: Vec<(String, String)>,
    /// sqlite storage in the broker's directory, kept across
    /// [`Tansu::kill`] and [`Tansu::restart`]; default: in memory.
    pub durable: bool,
    /// The cluster id the broker reports (tansu's default:
    /// `tansu_cluster`), for two clusters that must differ.
    pub cluster_id: Option<String>,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_with(TansuOptions::default())
    }

    pub fn start_with(options: TansuOptions) -> Tansu {
        // tansu reads a `.env` from its working directory: an empty one.
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let advertised = options
            .advertised
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let mut tansu = Tansu {
            bootstrap: advertised,
            listener: format!("127.0.0.1:{port}"),
            client: options.client.clone(),
            child: None,
            options,
            port,
            dir,
        };
        tansu.spawn();
        tansu
    }

    fn spawn(&mut self) {
        let binary = tokio::task::block_in_place(binary);
        let port = self.port;
        let url = format!("tcp://127.0.0.1:{port}");
        let storage = match self.options.durable {
            // Relative to the working directory.
            true => "sqlite://tansu.db",
            false => "memory://tansu/",
        };
        let mut command = Command::new(binary);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &format!("tcp://{}", self.bootstrap),
            ])
            .args(["--storage-engine", storage])
            .current_dir(self.dir.path())
            .stdout(Stdio::null());
        if self.options.authentication {
            command.arg("--authentication");
        }
        if let Some(id) = &self.options.cluster_id {
            command.args(["--cluster-id", id]);
        }
        // TANSU_LOG=<file> keeps the group coordinator's log for a diagnosis.
        match std::env::var("TANSU_LOG") {
            Ok(path) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("TANSU_LOG file");
                command
                    .env("RUST_LOG", "error,tansu_broker::coordinator=info")
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
            }
            Err(_) => command.env("RUST_LOG", "error").stderr(Stdio::null()),
        };
        let child = command.spawn().expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: no chance to flush or close anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits until it has exited.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(sent.success(), "kill -TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().expect("tansu status").is_none() {
                if Instant::now() > deadline {
                    // Not shutting down: it goes the hard way.
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A client configuration reaching this broker the harness's way.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.client {
            config.set(k, v);
        }
        config
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topic");
        for result in results {
            result.expect("topic created");
        }
    }

    /// A producer that sends every record as its own batch, in order.
    pub fn producer(&self) -> FutureProducer {
        self.client_config()
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            // One request in flight keeps order across retries. Not
            // idempotent: tansu 0.6.0 keeps every idempotent producer's
            // sequences in one shared object, and with a producer per
            // partition librdkafka spun its threads at 340 records/s
            // against 6,000/s without. The long request timeout keeps a
            // slow answer from being retried (and duplicated).
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("request.timeout.ms", "300000")
            .set("message.timeout.ms", "600000")
            .create()
            .expect("producer")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Produces `records`, each with its Kafka timestamp (`None`: the
/// producer's clock), and returns the next offset per partition from the
/// delivery reports (tansu's watermarks are wrong).
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: Vec<(Record, Option<i64>)>,
) -> HashMap<i32, i64> {
    let (records, times): (Produced, Vec<_>) = records.into_iter().unzip();
    let delivered = produce_at(producer, topic, &records, |i| times[i])
        .await
        .expect("delivered");
    next_offsets(delivered)
}

impl Tansu {
    /// Produces `records` with one producer per partition (tansu answers
    /// one request at a time per connection, so connections run in
    /// parallel); order within a partition is kept. Returns the next offset
    /// per partition from the delivery reports.
    pub async fn produce_all(&self, topic: &str, records: Produced) -> HashMap<i32, i64> {
        self.produce_all_at(topic, records.into_iter().map(|r| (r, None)).collect())
            .await
    }

    /// [`produce_all`](Self::produce_all), each record with the Kafka
    /// timestamp (ms since the epoch) beside it.
    pub async fn produce_all_at(
        &self,
        topic: &str,
        records: Vec<(Record, Option<i64>)>,
    ) -> HashMap<i32, i64> {
        let mut by_partition: HashMap<i32, Vec<_>> = HashMap::new();
        for record in records {
            by_partition.entry(record.0 .0).or_default().push(record);
        }
        let tasks: Vec<_> = by_partition
            .into_values()
            .map(|mine| {
                let (producer, topic) = (self.producer(), topic.to_owned());
                tokio::spawn(async move { produce(&producer, &topic, mine).await })
            })
            .collect();
        let mut end = HashMap::new();
        for task in tasks {
            end.extend(task.await.expect("producer task"));
        }
        end
    }
}
