//! `sluice demo`: the real pipeline end to end with nothing installed but
//! the build — librdkafka's mock cluster in-process and a throwaway Postgres
//! (or `--postgres-url`), a few thousand ordered events over many keys, then
//! a check that every event landed once and in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError};
use crate::config::{Config, ConfigError, Mode};
use crate::embedded::kafka::{produce, MockKafka, Record};
use crate::embedded::postgres::{EmbeddedError, EmbeddedPostgres};

mod example;

use example::show_example;
// The benches (benches/) work on the demo's events, table and route.
#[doc(hidden)]
pub use example::{demo_config, demo_config_with, table_ddl, Variant};

#[doc(hidden)]
pub const TOPIC: &str = "demo.orders";
#[doc(hidden)]
pub const TABLE: &str = "sluice_demo_orders";
#[doc(hidden)]
pub const STATE_SCHEMA: &str = "sluice_demo";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Use this Postgres instead of starting a throwaway one (the demo's
    /// table and state schema are dropped afterwards).
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// How many events to produce.
    #[arg(long, default_value_t = 5_000)]
    pub records: usize,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Distinct keys (customers); each key's events carry a sequence number.
    #[arg(long, default_value_t = 250)]
    pub keys: usize,
    /// Also write the demo's configuration (`sluice.yaml`, pointing at
    /// `localhost`) and its table (`table.sql`) into this directory, as a
    /// starting point for your own.
    #[arg(long, value_name = "DIR")]
    pub write_example: Option<std::path::PathBuf>,
    /// The route's mode: `append` for the demo; the drain benchmark also
    /// drains in `upsert` mode (keyed on the Kafka coordinates), to compare
    /// it with a staged upsert done by hand. Not a command-line option.
    #[arg(skip)]
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Postgres(#[from] EmbeddedError),
    #[error("postgres: {0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("the sink failed: {0}")]
    App(#[from] AppError),
    #[error("{0}")]
    Check(String),
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let began = Instant::now();
    show_example(&args)?;
    let (embedded, url) = match &args.postgres_url {
        Some(url) => (None, url.clone()),
        None => {
            println!("starting a throwaway PostgreSQL ...");
            let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
                .await
                .map_err(|e| DemoError::Check(e.to_string()))??;
            let url = pg.create_database("demo").await?;
            (Some(pg), url)
        }
    };
    let report = drain(&url, &args, args.postgres_url.is_some()).await?;
    drop(embedded);
    println!();
    println!("  rows written        {}", report.rows);
    println!(
        "  dead letters        {} (the malformed events, with their bytes)",
        report.dead
    );
    println!("  per-key order       verified for {} keys", args.keys);
    println!("  duplicates / lost   0 / 0");
    println!(
        "  group join          {:.2?} (start to the first committed batch)",
        report.join
    );
    println!(
        "  steady rate         {} (first committed batch to drained)",
        report.steady_text()
    );
    println!(
        "  sink elapsed        {:.2?} ({:.0} records/s incl. group join)",
        report.sink_elapsed,
        report.produced as f64 / report.sink_elapsed.as_secs_f64()
    );
    println!("  total elapsed       {:.2?}", began.elapsed());
    Ok(())
}

/// What one drain measured.
#[derive(Debug, Clone)]
pub struct DrainReport {
    /// Events produced (rows plus dead letters).
    pub produced: usize,
    pub rows: i64,
    pub dead: i64,
    /// From the sink's start to its first committed batch (consumer group
    /// join, assignment, claims).
    pub join: Duration,
    /// Records committed after the first batch, and how long they took.
    pub steady_records: u64,
    pub steady: Duration,
    /// From the sink's start to the last committed batch.
    pub sink_elapsed: Duration,
    /// CPU time (user + system) this process spent over `sink_elapsed`:
    /// the sink and librdkafka's mock cluster, which serves it in-process.
    /// `None` where `/proc/self/stat` cannot be read.
    pub sink_cpu: Option<Duration>,
    /// CPU time over `steady` (first committed batch to drained): this
    /// process first, then each figure of [`DrainOptions::probe`].
    #[doc(hidden)]
    pub steady_cpu: Vec<Option<Duration>>,
}

/// CPU time so far of processes the caller watches (the drain benchmark's
/// `--pin`: Postgres and PgBouncer).
#[doc(hidden)]
pub type CpuProbe = std::sync::Arc<dyn Fn() -> Vec<Option<Duration>> + Send + Sync>;

/// How the drain benchmark varies a drain; the default is the demo's.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct DrainOptions {
    pub variant: Variant,
    pub probe: Option<CpuProbe>,
}

impl DrainReport {
    /// The figures of a drain that began at `started` and was drained
    /// `sink_elapsed` later, its first commit seen as `first`: `cpu` is
    /// the sink's CPU over the drain and the [`wait_drained`] CPU figures
    /// when drained; `verified` the rows and dead letters [`verify`] found.
    #[doc(hidden)]
    pub fn measured(
        first: &FirstCommit,
        started: Instant,
        sink_elapsed: Duration,
        cpu: (Option<Duration>, &[Option<Duration>]),
        produced: usize,
        verified: (i64, i64),
    ) -> DrainReport {
        let (sink_cpu, cpu_drained) = cpu;
        let join = first.at.duration_since(started);
        DrainReport {
            produced,
            rows: verified.0,
            dead: verified.1,
            join,
            steady_records: (produced as u64).saturating_sub(first.committed),
            steady: sink_elapsed.saturating_sub(join),
            sink_elapsed,
            sink_cpu,
            steady_cpu: cpu_drained
                .iter()
                .zip(&first.cpu)
                .map(|(end, start)| end.zip(*start).map(|(e, s)| e.saturating_sub(s)))
                .collect(),
        }
    }

    /// Records per second after the first committed batch: the speed of a
    /// backlog drain, without the group join. `None` when the backlog was
    /// drained before the offsets were polled a second time (too small to
    /// time).
    pub fn steady_rate(&self) -> Option<f64> {
        (self.steady_records > 0 && !self.steady.is_zero())
            .then(|| self.steady_records as f64 / self.steady.as_secs_f64())
    }

    /// [`steady_rate`](Self::steady_rate) for people.
    pub fn steady_text(&self) -> String {
        match self.steady_rate() {
            Some(rate) => format!("{rate:.0} records/s"),
            None => "too small a backlog to time".into(),
        }
    }
}

/// The demo's drain into the database at `url`: creates the table, fills an
/// in-process Kafka with `args.records` events, runs the sink until every
/// partition's offset is at the log end, and verifies every event landed
/// once and in per-key order. `cleanup` drops the table and state schema
/// afterwards. Also the drain benchmark's workload (benches/drain.rs).
pub async fn drain(url: &str, args: &DemoArgs, cleanup: bool) -> Result<DrainReport, DemoError> {
    drain_with(url, args, cleanup, &DrainOptions::default()).await
}

/// [`drain`] varied as `options` say (the drain benchmark).
#[doc(hidden)]
pub async fn drain_with(
    url: &str,
    args: &DemoArgs,
    cleanup: bool,
    options: &DrainOptions,
) -> Result<DrainReport, DemoError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {TABLE}; DROP SCHEMA IF EXISTS {STATE_SCHEMA} CASCADE; {}",
            table_ddl()
        ))
        .await?;

    println!("starting an in-process Kafka (librdkafka mock cluster) ...");
    let kafka = MockKafka::start(1)?;
    kafka.create_topic(TOPIC, args.partitions)?;
    let records = events(args);
    let poison = records
        .iter()
        .filter(|(_, _, v)| v.as_deref() == Some(POISON))
        .count();
    let delivered = produce(kafka.bootstrap_servers(), TOPIC, records).await?;
    let mut end: HashMap<i32, i64> = HashMap::new();
    for (p, o) in &delivered {
        let e = end.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }
    println!(
        "produced {} events over {} keys into {} partitions",
        delivered.len(),
        args.keys,
        args.partitions
    );

    let yaml = demo_config_with(kafka.bootstrap_servers(), url, args.mode, &options.variant);
    let config = Config::from_yaml(&yaml, |_| None)?;
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let cpu_started = process_cpu();
    let sink_started = Instant::now();
    let sink = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { app::run(config, &registry, shutdown).await }
    });
    let cpu_now = || {
        let mut cpu = vec![process_cpu()];
        cpu.extend(options.probe.as_ref().map(|p| p()).unwrap_or_default());
        cpu
    };
    let progress = wait_drained(&client, &end, Duration::from_secs(600), &cpu_now).await;
    let sink_elapsed = sink_started.elapsed();
    let cpu_drained = cpu_now();
    let sink_cpu = process_cpu()
        .zip(cpu_started)
        .map(|(end, start)| end.saturating_sub(start));
    shutdown.cancel();
    sink.await.map_err(|e| DemoError::Check(e.to_string()))??;
    let first = progress?;

    let verdict = verify(&client, delivered.len() - poison, poison).await;
    if cleanup {
        client
            .batch_execute(&format!(
                "DROP TABLE {TABLE}; DROP SCHEMA {STATE_SCHEMA} CASCADE"
            ))
            .await?;
    }
    Ok(DrainReport::measured(
        &first,
        sink_started,
        sink_elapsed,
        (sink_cpu, &cpu_drained),
        delivered.len(),
        verdict?,
    ))
}

/// User + system CPU time of this process so far, from `/proc/self/stat`
/// (utime and stime, in the kernel's fixed 100 Hz `USER_HZ` ticks): no
/// libc binding needed for a figure the benchmark prints.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it do not.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[doc(hidden)]
pub const POISON: &[u8] = b"{\"id\": oops";

/// Events per key in sequence; a key always goes to the same partition. A
/// few malformed events show the dead-letter table at work.
#[doc(hidden)]
pub fn events(args: &DemoArgs) -> Vec<Record> {
    let mut seqs = vec![0u64; args.keys.max(1)];
    let partitions = args.partitions.max(1);
    (0..args.records)
        .map(|i| {
            let k = (i * 7919) % seqs.len();
            let partition = (k as i32) % partitions;
            let key = format!("customer-{k}").into_bytes();
            if i % 1000 == 999 {
                return (partition, Some(key), Some(POISON.to_vec()));
            }
            let seq = seqs[k];
            seqs[k] += 1;
            let value = serde_json::json!({
                "id": i,
                "customer": { "id": format!("customer-{k}") },
                "seq": seq,
                "amount": format!("{}.{:02}", 10 + i % 90, i % 100),
                "created_at": format!("2026-11-22T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            });
            (partition, Some(key), Some(value.to_string().into_bytes()))
        })
        .collect()
}

/// The first committed batch seen: when, how many records were committed
/// by then, and the CPU figures the caller asked for at that moment.
#[doc(hidden)]
pub struct FirstCommit {
    pub at: Instant,
    pub committed: u64,
    pub cpu: Vec<Option<Duration>>,
}

/// Polls the stored offsets until every partition is at its log end;
/// `cpu` is read at the first commit seen.
#[doc(hidden)]
pub async fn wait_drained(
    client: &tokio_postgres::Client,
    end: &HashMap<i32, i64>,
    timeout: Duration,
    cpu: &dyn Fn() -> Vec<Option<Duration>>,
) -> Result<FirstCommit, DemoError> {
    let deadline = Instant::now() + timeout;
    let query =
        format!("SELECT partition, next_offset FROM {STATE_SCHEMA}.offsets WHERE topic = $1");
    let mut first = None;
    loop {
        // The state schema appears once the sink has migrated it.
        if let Ok(rows) = client.query(&query, &[&TOPIC]).await {
            let stored: HashMap<i32, i64> = rows
                .iter()
                .filter_map(|r| Some((r.get::<_, i32>(0), r.get::<_, Option<i64>>(1)?)))
                .collect();
            let committed: i64 = stored.values().sum();
            if first.is_none() && committed > 0 {
                first = Some(FirstCommit {
                    at: Instant::now(),
                    committed: committed as u64,
                    cpu: cpu(),
                });
            }
            if end.iter().all(|(p, e)| stored.get(p) == Some(e)) {
                return first.ok_or_else(|| DemoError::Check("nothing was produced".into()));
            }
        }
        if Instant::now() > deadline {
            return Err(DemoError::Check(format!("not drained after {timeout:?}")));
        }
        // Often enough to time the first commit within a few milliseconds.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks every event landed once, in per-key order; returns (rows, dead letters).
#[doc(hidden)]
pub async fn verify(
    client: &tokio_postgres::Client,
    expected_rows: usize,
    expected_dead: usize,
) -> Result<(i64, i64), DemoError> {
    let one = |sql: String| async move {
        client
            .query_one(&sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };
    let rows = one(format!("SELECT count(*) FROM {TABLE}")).await?;
    let dups = one(format!(
        "SELECT count(*) FROM (SELECT 1 FROM {TABLE} GROUP BY customer, seq HAVING count(*) > 1) d"
    ))
    .await?;
    let disorder = one(format!(
        "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY customer \
         ORDER BY src_partition, src_offset) AS prev FROM {TABLE}) o WHERE seq <> prev + 1"
    ))
    .await?;
    let dead = one(format!("SELECT count(*) FROM {STATE_SCHEMA}.dead_letters")).await?;
    if rows != expected_rows as i64 || dups != 0 || disorder != 0 || dead != expected_dead as i64 {
        return Err(DemoError::Check(format!(
            "verification failed: rows {rows} (expected {expected_rows}), duplicates {dups}, \
             out of order {disorder}, dead letters {dead} (expected {expected_dead})"
        )));
    }
    Ok((rows, dead))
}
