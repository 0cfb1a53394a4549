//! `--tansu BIN`: a real Kafka-protocol broker in its own process (tansu,
//! memory storage), so that what sluice's process spends (CPU, memory) is
//! not mixed with a broker's, as it is with the in-process mock cluster.
//!
//! The binary is the prebuilt one `./dev tansu-prebuilt` installs: unlike
//! the tansu 0.6.0 release the tests build, a fetch that starts inside a
//! record batch gets that batch, so the backlog can be produced in batches
//! at the producer's speed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use sluice::embedded::kafka::MockKafka;

/// The broker a drain or the latency run produces into and sluice reads.
pub enum Broker {
    Mock(MockKafka),
    Tansu(Tansu),
}

impl Broker {
    /// A fresh broker holding `topic` with `partitions`: tansu when a
    /// binary is given, else the mock cluster.
    pub async fn start(tansu: Option<&Path>, topic: &str, partitions: i32) -> Broker {
        match tansu {
            Some(binary) => {
                let broker = Tansu::start(binary);
                broker.create_topic(topic, partitions).await;
                Broker::Tansu(broker)
            }
            None => {
                let kafka = MockKafka::start(1).expect("mock cluster");
                kafka
                    .create_topic(topic, partitions)
                    .expect("the demo topic");
                Broker::Mock(kafka)
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(kafka) => kafka.bootstrap_servers(),
            Broker::Tansu(tansu) => &tansu.bootstrap,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "librdkafka mock cluster, in this process",
            Broker::Tansu(_) => "tansu, its own process",
        }
    }
}

/// A tansu broker on a free port; killed when dropped.
pub struct Tansu {
    pub bootstrap: String,
    child: Child,
    /// Its working directory (tansu reads a `.env` there: an empty one).
    _dir: tempfile::TempDir,
}

impl Tansu {
    pub fn start(binary: &Path) -> Tansu {
        let dir = tempfile::tempdir().expect("tansu's directory");
        std::fs::write(dir.path().join(".env"), "").expect("tansu's .env");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start tansu ({}): {e}", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Tansu {
            bootstrap: format!("127.0.0.1:{port}"),
            child,
            _dir: dir,
        }
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for result in admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .expect("create the topic")
        {
            result.expect("topic created");
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
