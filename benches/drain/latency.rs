//! `--latency`: an open-loop producer into the mock cluster at a fixed rate
//! (half the measured maximum, or `--rate`) for `--latency-secs`, sluice
//! draining as the records arrive; then how long records waited, from
//! (commit time − record timestamp):
//!
//! - from the rows: each record's Kafka timestamp is stored (`kafka_ts:
//!   $timestamp`) and its batch's commit time is its transaction's
//!   (`pg_xact_commit_timestamp(xmin)`, with `track_commit_timestamp` on),
//!   per batch (its oldest record, the one that waited longest) and per
//!   record;
//! - from sluice's own `sluice_batch_commit_seconds` histogram (write and
//!   commit of each batch, not the wait before it), by bucket bound.
//!
//! Open loop: each record's timestamp is when it was due, not when it was
//! sent, so a producer falling behind shows as latency instead of hiding
//! it (and the lateness is printed).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use sluice::config::{Config, Mode};
use sluice::demo::{self, CpuProbe, DemoArgs, Variant, POISON, STATE_SCHEMA, TABLE, TOPIC};
use sluice::embedded::kafka::Record;
use sluice::embedded::postgres::EmbeddedPostgres;

use super::args::Args;
use super::refs::connect;
use super::tansu::Broker;

/// The demo's linger: issue #14's target is p99 ≤ linger + 20 ms.
const LINGER_MS: f64 = 20.0;

pub async fn run(
    pg: &EmbeddedPostgres,
    args: &Args,
    demo: &DemoArgs,
    rate: Option<f64>,
    probe: CpuProbe,
) -> Value {
    let rate = match rate {
        Some(rate) => rate,
        None => calibrate(pg, args, demo, probe).await / 2.0,
    };
    let records = ((rate * args.latency_secs as f64) as usize).max(1);
    println!(
        "latency: open loop at {rate:.0} records/s for {} s ({records} records), linger {LINGER_MS} ms",
        args.latency_secs
    );
    let url = pg.create_database("latency").await.expect("database");
    let client = connect(&url).await;
    client
        .batch_execute(&format!(
            "{} ALTER TABLE {TABLE} ADD COLUMN kafka_ts timestamptz;",
            demo::table_ddl()
        ))
        .await
        .expect("the latency table");
    let kafka = Broker::start(args.tansu.as_deref(), TOPIC, args.partitions).await;
    println!("latency: broker {}", kafka.name());
    // Made before the clock starts: generating them is not the sink's load.
    let events = demo::events(&DemoArgs {
        records,
        ..demo.clone()
    });
    // An idempotent producer and no transactions: each partition's offsets
    // run from 0 without a gap, so its end is its count (the watermarks of
    // tansu 0.6.0 are not to be trusted).
    let mut end: HashMap<i32, i64> = HashMap::new();
    for (partition, _, _) in &events {
        *end.entry(*partition).or_default() += 1;
    }
    let poison = events
        .iter()
        .filter(|(_, _, v)| v.as_deref() == Some(POISON))
        .count();
    let variant = Variant {
        max_rows: Some(args.max_rows[0]),
        extra_columns: vec![("kafka_ts".into(), "$timestamp".into())],
        librdkafka: args.librdkafka.clone(),
        ..Variant::default()
    };
    let yaml = demo::demo_config_with(kafka.bootstrap(), &url, Mode::Append, &variant);
    let config = Config::from_yaml(&yaml, |_| None).expect("the latency configuration");
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let sink = tokio::spawn({
        let (shutdown, registry) = (shutdown.clone(), registry.clone());
        async move { sluice::app::run(config, &registry, shutdown).await }
    });
    wait_assigned(&client, args.partitions).await;

    let bootstrap = kafka.bootstrap().to_string();
    let late = tokio::task::spawn_blocking(move || produce(&bootstrap, events, rate))
        .await
        .expect("producer thread");
    demo::wait_drained(&client, &end, Duration::from_secs(600), &Vec::new)
        .await
        .expect("drained");
    shutdown.cancel();
    sink.await.expect("sink task").expect("sink");
    demo::verify(&client, records - poison, poison)
        .await
        .expect("every event once, in per-key order");

    let per_batch = percentiles(&client, true).await;
    let per_record = percentiles(&client, false).await;
    let distribution = batch_distribution(&client).await;
    let commit = commit_histogram(&registry);
    let target = LINGER_MS + 20.0;
    let line = |what: &str, p: &[f64; 4]| {
        println!(
            "latency {what:<34} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} samples)",
            p[0], p[1], p[2], p[3]
        )
    };
    println!(
        "latency: producer at most {:.1} ms behind its schedule",
        late
    );
    line("per batch (oldest record, rows)", &per_batch);
    line("per record (rows)", &per_record);
    match &commit {
        Some(c) => println!(
            "latency batch write+commit (histogram) p50 ≤ {:.0} ms  p99 ≤ {:.0} ms  max ≤ {:.0} ms  ({} batches)",
            c[0], c[1], c[2], c[3]
        ),
        None => println!("latency batch write+commit (histogram): no batches"),
    }
    println!(
        "latency p99 per batch {:.1} ms against the target linger + 20 ms = {target:.0} ms: {}",
        per_batch[1],
        if per_batch[1] <= target {
            "met"
        } else {
            "not met"
        }
    );
    json!({
        "rate": rate, "secs": args.latency_secs, "records": records, "linger_ms": LINGER_MS,
        "target_p99_ms": target, "producer_late_ms": late,
        "per_batch_ms": {"p50": per_batch[0], "p99": per_batch[1], "max": per_batch[2], "count": per_batch[3]},
        "per_record_ms": {"p50": per_record[0], "p99": per_record[1], "max": per_record[2], "count": per_record[3]},
        "commit_histogram_ms": commit.map(|c| json!({"p50_le": c[0], "p99_le": c[1], "max_le": c[2], "count": c[3]})),
        "per_batch_sorted_ms": distribution,
    })
}

/// The maximum steady rate, from a short append drain (the run did not
/// measure one).
async fn calibrate(pg: &EmbeddedPostgres, args: &Args, demo: &DemoArgs, probe: CpuProbe) -> f64 {
    let url = pg.create_database("calibrate").await.expect("database");
    let options = demo::DrainOptions {
        variant: Variant {
            max_rows: Some(args.max_rows[0]),
            librdkafka: args.librdkafka.clone(),
            ..Variant::default()
        },
        probe: Some(probe),
    };
    let short = DemoArgs {
        records: demo.records.min(200_000),
        ..demo.clone()
    };
    let report = demo::drain_with(&url, &short, false, &options)
        .await
        .expect("calibration drain");
    let rate = report.steady_rate().unwrap_or(10_000.0);
    println!(
        "latency: measured maximum {rate:.0} records/s (a {}-record drain)",
        short.records
    );
    rate
}

/// Waits until the sink has claimed every partition (its offset rows
/// exist), so the first records do not wait for the group join.
async fn wait_assigned(client: &tokio_postgres::Client, partitions: i32) {
    let sql = format!("SELECT count(*) FROM {STATE_SCHEMA}.offsets WHERE topic = $1");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let claimed = client
            .query_one(&sql, &[&TOPIC])
            .await
            .map_or(0, |r| r.get::<_, i64>(0));
        if claimed >= partitions as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not claim its partitions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The workers' first fetches.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Sends each record when it is due at `rate`, its timestamp the time it
/// was due; returns how far behind schedule a send ever was, in ms.
fn produce(bootstrap: &str, events: Vec<Record>, rate: f64) -> f64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Per-partition order (the per-key check) across retries.
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let started = Instant::now();
    let mut late: f64 = 0.0;
    for (i, (partition, key, value)) in events.iter().enumerate() {
        let due = Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait);
        }
        late = late.max((started.elapsed().saturating_sub(due)).as_secs_f64() * 1e3);
        let timestamp = epoch_ms + due.as_millis() as i64;
        let mut record = BaseRecord::<[u8], [u8]>::to(TOPIC)
            .partition(*partition)
            .timestamp(timestamp);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        while let Err((e, back)) = producer.send(record) {
            assert!(
                matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ),
                "produce: {e}"
            );
            record = back;
            producer.poll(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    late
}

/// p50, p99, max and count of (commit time − record timestamp) in ms, per
/// batch (a transaction's oldest record) or per record.
async fn percentiles(client: &tokio_postgres::Client, per_batch: bool) -> [f64; 4] {
    let ages = if per_batch { BATCH_AGES } else { RECORD_AGES };
    let sql = format!(
        "WITH {ages} SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms), \
         percentile_disc(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*)::float8 FROM ages"
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .expect("latency percentiles");
    [0, 1, 2, 3].map(|i| row.get::<_, Option<f64>>(i).unwrap_or(0.0))
}

/// Each row's age at its transaction's commit (one transaction per batch).
const RECORD_AGES: &str = "r AS (SELECT pg_xact_commit_timestamp(xmin) AS committed, kafka_ts \
     FROM sluice_demo_orders), ages AS (SELECT extract(epoch FROM committed - kafka_ts)::float8 * 1000 AS ms FROM r)";
const BATCH_AGES: &str = concat!(
    "r AS (SELECT xmin::text AS tx, pg_xact_commit_timestamp(xmin) AS committed, kafka_ts FROM sluice_demo_orders), ",
    "ages AS (SELECT extract(epoch FROM committed - min(kafka_ts))::float8 * 1000 AS ms FROM r GROUP BY tx, committed)"
);

/// Per-batch ages, sorted, thinned to at most 1,000 for the chart.
async fn batch_distribution(client: &tokio_postgres::Client) -> Vec<f64> {
    let sql = format!("WITH {BATCH_AGES} SELECT ms FROM ages ORDER BY ms");
    let all: Vec<f64> = client
        .query(&sql, &[])
        .await
        .expect("batch ages")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let step = all.len().div_ceil(1000).max(1);
    let mut thinned: Vec<f64> = all.iter().step_by(step).copied().collect();
    if let (Some(last), Some(kept)) = (all.last(), thinned.last()) {
        if last != kept {
            thinned.push(*last);
        }
    }
    thinned
}

/// p50, p99 and max of sluice_batch_commit_seconds, each as the bound of
/// its bucket (in ms), and the count; read from the text exposition, which
/// is what a scrape sees.
fn commit_histogram(registry: &prometheus::Registry) -> Option<[f64; 4]> {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .ok()?;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("sluice_batch_commit_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::INFINITY, |(le, _)| le * 1e3)
    };
    Some([bound(0.5), bound(0.99), bound(1.0), total])
}
