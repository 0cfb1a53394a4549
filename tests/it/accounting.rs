//! Every consumed record is counted exactly once (issue #17): per route,
//! records = written + deleted + skipped (conflict, stale_version,
//! tombstone, collapsed) + dead-lettered, for a stream that mixes all of
//! them, including records superseded inside their batch.

use std::time::Duration;

use crate::harness::*;

fn config(brokers: &str, url: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: accounting
  librdkafka: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "300" }}
postgres: {{ url: "{url}", pool_size: 4 }}
batch: {{ max_rows: 1000, linger: 30ms }}
routes:
  - topic: accounts
    table: accounts
    mode: upsert
    key: [id]
    version: version
    delete_on_tombstone: true
    columns:
      id: $key/id
      version: /version
      balance: /balance
  - topic: events
    table: events
    key: [id]
    columns:
      id: /id
      n: /n
"#
    )
}

fn by_label(sink: &Sink, name: &str, label: &str, value: &str) -> f64 {
    metric_where(&sink.registry, name, label, value)
}

/// written + deleted + skipped + dead letters of `table`.
fn accounted(sink: &Sink, table: &str) -> f64 {
    [
        "sluice_rows_written_total",
        "sluice_rows_deleted_total",
        "sluice_rows_skipped_total",
        "sluice_dead_letters_total",
    ]
    .iter()
    .map(|name| by_label(sink, name, "table", &format!("public.{table}")))
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_equals_written_deleted_skipped_and_dead_lettered() {
    let (url, client) = fresh_db("accounting").await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, version bigint NOT NULL, balance bigint);
             CREATE TABLE events (id bigint PRIMARY KEY, n bigint)",
        )
        .await
        .unwrap();
    let kafka = kafka("accounts", 2);
    kafka.create_topic("events", 2).expect("create topic");

    // Upserts over few keys (so batches collapse), late versions (stale),
    // tombstones of present and absent keys, and undecodable values.
    let mut accounts: Produced = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..6_000i64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = (rng % 300) as i64;
        let key_bytes = Some(format!(r#"{{"id":{key}}}"#).into_bytes());
        let value = match rng % 20 {
            0 => None,                                           // tombstone
            1 => Some(b"not json".to_vec()),                     // dead letter
            2 => Some(br#"{"version":0,"balance":1}"#.to_vec()), // stale
            _ => Some(format!(r#"{{"version":{i},"balance":{i}}}"#).into_bytes()),
        };
        accounts.push(((key % 2) as i32, key_bytes, value));
    }
    // Appends with repeated ids (conflicts) and a few bad ones.
    let events: Produced = (0..3_000i64)
        .map(|i| {
            let value = match i % 50 {
                0 => b"{".to_vec(),
                _ => format!(r#"{{"id":{},"n":{i}}}"#, i % 1_700).into_bytes(),
            };
            ((i % 2) as i32, None, Some(value))
        })
        .collect();
    let (n_accounts, n_events) = (accounts.len() as f64, events.len() as f64);
    let end_accounts = produce_all(&kafka, "accounts", accounts).await;
    let end_events = produce_all(&kafka, "events", events).await;

    let sink = Sink::start(&config(kafka.bootstrap_servers(), &url));
    wait_drained(&client, "accounts", &end_accounts, Duration::from_secs(120)).await;
    wait_drained(&client, "events", &end_events, Duration::from_secs(120)).await;

    assert_eq!(accounted(&sink, "accounts"), n_accounts, "upsert route");
    assert_eq!(accounted(&sink, "events"), n_events, "append route");
    let skipped = |reason: &str| {
        metric_where(
            &sink.registry,
            "sluice_rows_skipped_total",
            "reason",
            reason,
        )
    };
    for reason in ["collapsed", "stale_version", "tombstone", "conflict"] {
        assert!(skipped(reason) > 0.0, "the stream has {reason} records");
    }
    assert_eq!(
        skipped("conflict")
            + by_label(&sink, "sluice_rows_written_total", "table", "public.events"),
        n_events - 60.0,
        "every good event is written or a conflict"
    );
    let ids: std::collections::BTreeSet<i64> = (0..3_000i64)
        .filter(|i| i % 50 != 0)
        .map(|i| i % 1_700)
        .collect();
    assert_eq!(
        count(&client, "SELECT count(*) FROM events").await,
        ids.len() as i64,
        "each good id once"
    );
    sink.stop().await.expect("clean stop");
}
