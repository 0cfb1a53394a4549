//! Shared test harness: one real Postgres per test binary (a database per
//! test), one mock Kafka cluster per test, the sink run in-process or as a
//! child process, and polling helpers (no fixed sleeps).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use prometheus::Registry;
use sluice::app::{self, AppError};
use sluice::config::{Config, LogConfig, LogFormat};
use sluice::embedded::kafka::{produce, MockKafka};
use sluice::embedded::postgres::shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub type Produced = Vec<(i32, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// A fresh database on the binary's shared server, and a client to it.
pub async fn fresh_db(prefix: &str) -> (String, Client) {
    let pg = shared().expect("embedded postgres");
    let url = pg.create_database(prefix).await.expect("create database");
    let client = connect(&url).await;
    (url, client)
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// A mock cluster with one topic.
pub fn kafka(topic: &str, partitions: i32) -> MockKafka {
    let k = MockKafka::start(1).expect("mock cluster");
    k.create_topic(topic, partitions).expect("create topic");
    k
}

/// Produces and returns the next offset (high watermark) per partition.
pub async fn produce_all(kafka: &MockKafka, topic: &str, records: Produced) -> HashMap<i32, i64> {
    let delivered = produce(kafka.bootstrap_servers(), topic, records)
        .await
        .expect("produce");
    next_offsets(delivered)
}

/// The next offset per partition, from `(partition, offset)` deliveries.
pub fn next_offsets(delivered: Vec<(i32, i64)>) -> HashMap<i32, i64> {
    let mut end = HashMap::new();
    for (p, o) in delivered {
        let e = end.entry(p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    end
}

/// `n` JSON order events over `keys` keys, each key on one partition with
/// its own sequence number 0, 1, 2, ...
pub fn orders(n: usize, partitions: i32, keys: usize) -> Produced {
    let mut seq = vec![0u64; keys];
    (0..n)
        .map(|i| {
            let k = (i * 7919 + i / 3) % keys;
            let s = seq[k];
            seq[k] += 1;
            let value = format!(
                r#"{{"k":"key-{k}","seq":{s},"amount":"{}.{:02}"}}"#,
                i % 1000,
                i % 100
            );
            (
                k as i32 % partitions,
                Some(format!("key-{k}").into_bytes()),
                Some(value.into_bytes()),
            )
        })
        .collect()
}

pub const ORDERS_TABLE: &str = "CREATE TABLE orders (
    k text NOT NULL, seq bigint NOT NULL, amount numeric(10,2),
    src_partition integer NOT NULL, src_offset bigint NOT NULL,
    UNIQUE (src_partition, src_offset))";

/// A config for the `orders` route; `extra_route` lines are appended to the
/// route (e.g. "    write_method: insert").
pub fn orders_config(
    brokers: &str,
    url: &str,
    topic: &str,
    group: &str,
    extra_route: &str,
) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: {group}
  librdkafka:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "300"
postgres:
  url: "{url}"
  pool_size: 4
batch:
  max_rows: 2000
  linger: 20ms
routes:
  - topic: {topic}
    table: orders
    columns:
      k: /k
      seq: /seq
      amount: /amount
      src_partition: $partition
      src_offset: $offset
{extra_route}
"#
    )
}

/// The sink running in-process.
pub struct Sink {
    pub token: CancellationToken,
    pub registry: Registry,
    handle: JoinHandle<Result<(), AppError>>,
}

impl Sink {
    pub fn start(yaml: &str) -> Sink {
        // Tests run side by side: any free port unless the test picks one.
        let yaml = match yaml.contains("\nhttp:") {
            true => yaml.to_string(),
            false => format!("{yaml}\nhttp:\n  listen: \"127.0.0.1:0\"\n"),
        };
        let config = Config::from_yaml(&yaml, |_| None).expect("valid config");
        // Quiet unless RUST_LOG asks (shown with --nocapture).
        sluice::logging::init(&LogConfig {
            format: LogFormat::Text,
            level: "error".into(),
        });
        let token = CancellationToken::new();
        let registry = Registry::new();
        let handle = tokio::spawn({
            let (token, registry) = (token.clone(), registry.clone());
            async move { app::run(config, &registry, token).await }
        });
        Sink {
            token,
            registry,
            handle,
        }
    }

    pub async fn stop(mut self) -> Result<(), AppError> {
        self.token.cancel();
        (&mut self.handle).await.expect("sink task")
    }

    /// The value of a counter or gauge, summed over its label sets.
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.registry, name)
    }
}

impl Drop for Sink {
    /// A test that fails mid-run still stops its sink, so the runtime can
    /// shut down.
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The value of a counter whose `label` is `value`.
pub fn metric_where(registry: &Registry, name: &str, label: &str, value: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label && l.value() == value)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

pub fn metric(registry: &Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        // Only the field of the metric's own type is set; the others are 0.
        .map(|m| {
            m.get_counter().get_value()
                + m.get_gauge().get_value()
                + m.get_histogram().get_sample_count() as f64
        })
        .sum()
}

/// Polls `check` until it returns `Some`, or panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stored next offsets per partition of `topic` (state schema `sluice`) that
/// have written something: a claimed partition stores its start at once,
/// which in these tests' logs is 0.
pub async fn stored_offsets(client: &Client, topic: &str) -> HashMap<i32, i64> {
    client
        .query(
            "SELECT partition, next_offset FROM sluice.offsets WHERE topic = $1 AND next_offset > 0",
            &[&topic],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

/// Waits until Postgres holds `end` as every partition's next offset.
pub async fn wait_drained(
    client: &Client,
    topic: &str,
    end: &HashMap<i32, i64>,
    timeout: Duration,
) {
    eventually(timeout, "the sink to drain", || async {
        (stored_offsets(client, topic).await == *end).then_some(())
    })
    .await
}

pub async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Asserts the orders table holds exactly `expected` rows, every (key, seq)
/// once, and per key the sequence follows offset order with no gap.
pub async fn assert_orders_exact(client: &Client, expected: i64) {
    assert_eq!(
        count(client, "SELECT count(*) FROM orders").await,
        expected,
        "row count"
    );
    let dups = count(
        client,
        "SELECT count(*) FROM (SELECT 1 FROM orders GROUP BY k, seq HAVING count(*) > 1) d",
    )
    .await;
    assert_eq!(dups, 0, "duplicate (key, seq)");
    let disorder = count(
        client,
        "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY k ORDER BY src_partition, src_offset) \
         AS prev FROM orders) o WHERE seq <> prev + 1",
    )
    .await;
    assert_eq!(disorder, 0, "per-key order or gaps");
    let firsts = count(
        client,
        "SELECT count(*) FROM (SELECT min(seq) m FROM orders GROUP BY k) f WHERE m <> 0",
    )
    .await;
    assert_eq!(firsts, 0, "every key starts at seq 0");
}

/// `yaml` with the HTTP server on `port`.
pub fn with_http(yaml: &str, port: u16) -> String {
    format!("{yaml}\nhttp:\n  listen: \"127.0.0.1:{port}\"\n")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.1: (status, body); `None` while nothing listens.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Samples of `name` by their `partition` label (or "" when it has none).
pub fn samples(text: &str, name: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let partition = series
                .split_once("partition=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or(String::new(), |(p, _)| p.to_string());
            Some((partition, value.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `name`. Not through [`samples`]: series of
/// the same partition (or with no partition label, e.g. by `class`) would
/// collapse into one key there and all but one be dropped.
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Makes every INSERT statement on `orders` take `seconds` longer (a
/// statement trigger that sleeps): slow commits on demand. Undo with
/// `DROP TRIGGER slow ON orders`.
pub async fn slow_inserts(client: &Client, seconds: f64) {
    client
        .batch_execute(&format!(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$; \
             CREATE TRIGGER slow AFTER INSERT ON orders FOR EACH STATEMENT EXECUTE FUNCTION slow()"
        ))
        .await
        .unwrap();
}

/// `sluice <args> --config <yaml>` as a process: (exit code, stdout, stderr).
pub async fn sluice(yaml: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run sluice");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
