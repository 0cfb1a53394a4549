//! Offsets at the edges of the log (hardening #1, #2, #3, #7): a stored
//! offset ahead of the log end halts its partition loudly, one below the
//! log start moves to the start counting the gap, `start_from` is decided
//! once per partition, and a stored offset lost back to NULL is resolved
//! before seeking. Mock cluster and the real Postgres.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::check::check_with;
use crate::harness::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The log bounds of one partition, from the brokers.
async fn log_bounds(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .unwrap()
    })
    .await
    .unwrap()
}

/// Hardening #1: a stored offset ahead of the log end (a topic recreated
/// under the same name, a truncated log, another cluster) used to make
/// every new record look like a re-delivery: 0 written, `/readyz` 200, not
/// a line in the log. Now the partition halts: nothing written, `/readyz`
/// 503 naming the partition, the stored offset and the log end, the halt
/// metrics, and `sluice check` says so. `on_offset_out_of_range: earliest`
/// is the explicit way on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_offset_ahead_of_the_log_halts_the_partition() {
    let (url, client) = fresh_db("edge_ahead").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let end = produce_all(&kafka, "orders", orders(1_000, 1, 20)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "ahead", "");
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &end, TIMEOUT).await;
    sink.stop().await.expect("clean stop");

    client
        .execute(
            "UPDATE sluice.offsets SET next_offset = 100000 WHERE group_id = 'ahead'",
            &[],
        )
        .await
        .unwrap();
    // The same keys again, continuing their sequences (offsets 1000..2000).
    let more: Produced = orders(2_000, 1, 20).split_off(1_000);
    produce_all(&kafka, "orders", more).await;

    let port = free_port();
    let sink = Sink::start(&with_http(&yaml, port));
    let body = eventually(TIMEOUT, "/readyz 503 for the halted partition", || async {
        let (status, body) = get(port, "/readyz").await?;
        (status == 503 && body.contains("halted")).then_some(body)
    })
    .await;
    for needle in ["orders[0]", "100000", "log end 2000"] {
        assert!(
            body.contains(needle),
            "/readyz does not name {needle}: {body}"
        );
    }
    assert_eq!(sink.metric("sluice_partitions_halted"), 1.0);
    assert_eq!(
        metric_where(
            &sink.registry,
            "sluice_offset_out_of_range_total",
            "edge",
            "ahead_of_end"
        ),
        1.0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await, 1_000);
    let stored: i64 = client
        .query_one(
            "SELECT next_offset FROM sluice.offsets WHERE group_id = 'ahead'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, 100_000,
        "the stored offset is left for the operator"
    );

    // `sluice check` reports the halt and the offset outside the log.
    let (code, text) = tokio::task::spawn_blocking({
        let yaml = yaml.clone();
        move || check_with(&[], &yaml)
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("is halted before offset 100000"), "{text}");
    assert!(text.contains("ahead of the log end 2000"), "{text}");
    sink.stop().await.expect("a halt is not a failure");

    // The operator moves it on (docs/operations.md): the records up to
    // 1000 are in the table, so the stored offset goes back there.
    client
        .execute(
            "UPDATE sluice.offsets SET next_offset = 1000 WHERE group_id = 'ahead'",
            &[],
        )
        .await
        .unwrap();
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &[(0, 2_000)].into(), TIMEOUT).await;
    assert_orders_exact(&client, 2_000).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sluice.halts WHERE group_id = 'ahead'"
        )
        .await,
        0,
        "the claim cleared the halt"
    );
    assert_eq!(sink.metric("sluice_partitions_halted"), 0.0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    sink.stop().await.expect("clean stop");
}

/// Hardening #2: a stored offset below the log start (retention deleted
/// records sluice never wrote) used to be skipped silently. By default
/// the partition goes on from the log start, with a WARN and the gap
/// counted in `sluice_offset_gap_records_total`. The mock cluster keeps at
/// most 5 MiB per partition, so 7 MiB of records push its log start on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_offset_below_the_log_start_moves_on_counting_the_gap() {
    let (url, client) = fresh_db("edge_behind").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let first = produce_all(&kafka, "orders", orders(10, 1, 1)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "behind", "");
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &first, TIMEOUT).await;
    sink.stop().await.expect("clean stop");

    // 700 records of 10 KiB each; the oldest are dropped by the broker.
    let pad = "x".repeat(10 * 1024);
    let big: Produced = (10..710)
        .map(|s| {
            let v = format!(r#"{{"k":"key-0","seq":{s},"amount":"1.00","pad":"{pad}"}}"#);
            (0, Some(b"key-0".to_vec()), Some(v.into_bytes()))
        })
        .collect();
    let end = produce_all(&kafka, "orders", big).await;
    let (low, high) = log_bounds(kafka.bootstrap_servers(), "orders", 0).await;
    assert_eq!(high, end[&0]);
    assert!(low > 10, "the broker kept the whole log (start {low})");

    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &end, TIMEOUT).await;
    let rows = count(&client, "SELECT count(*) FROM orders").await;
    assert_eq!(
        rows,
        10 + (high - low),
        "the first 10, then the log from its start"
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM orders WHERE src_offset >= {low}")
        )
        .await,
        high - low
    );
    assert_eq!(
        sink.metric("sluice_offset_gap_records_total"),
        (low - 10) as f64,
        "the gap is counted"
    );
    assert_eq!(
        metric_where(
            &sink.registry,
            "sluice_offset_out_of_range_total",
            "action",
            "moved"
        ),
        1.0
    );
    assert_eq!(sink.metric("sluice_partitions_halted"), 0.0);
    sink.stop().await.expect("clean stop");
}

/// Hardening #3: under `start_from: latest` a partition's row held NULL
/// until its first commit, so a restart before it resolved "latest" again
/// and skipped what arrived meanwhile. The start is stored at the first
/// claim: every record produced after the first assignment is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_latest_is_decided_once() {
    let (url, client) = fresh_db("edge_latest").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let before = produce_all(&kafka, "orders", orders(300, 2, 10)).await;
    let base = orders_config(kafka.bootstrap_servers(), &url, "orders", "late", "")
        .replace("group_id: late", "group_id: late\n  start_from: latest");
    // A linger longer than the test: nothing is committed before the stop.
    let lingering = base
        .replace("max_rows: 2000", "max_rows: 100000")
        .replace("linger: 20ms", "linger: 10m");
    let sink = Sink::start(&lingering);
    eventually(TIMEOUT, "both partitions claimed with their start stored", || async {
        // Before the migration the table does not exist yet.
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM sluice.offsets WHERE group_id = 'late' AND next_offset IS NOT NULL",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n == 2).then_some(())
    })
    .await;
    let all = orders(900, 2, 10);
    let during: Produced = all[300..600].to_vec();
    produce_all(&kafka, "orders", during).await;
    sink.stop().await.expect("clean stop");
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await, 0);

    let after: Produced = all[600..].to_vec();
    let end = produce_all(&kafka, "orders", after).await;
    let sink = Sink::start(&base);
    wait_drained(&client, "orders", &end, TIMEOUT).await;
    let written = count(&client, "SELECT count(*) FROM orders").await;
    assert_eq!(
        written, 600,
        "every record produced after the first assignment"
    );
    let early = client
        .query(
            "SELECT count(*) FROM orders WHERE (src_partition = 0 AND src_offset < $1) \
             OR (src_partition = 1 AND src_offset < $2)",
            &[&before[&0], &before[&1]],
        )
        .await
        .unwrap()[0]
        .get::<_, i64>(0);
    assert_eq!(early, 0, "nothing from before the first start");
    sink.stop().await.expect("clean stop");
}

/// Hardening #7: a partition whose stored offset Postgres lost back to
/// NULL (a commit rolled back by a failover) is rewound; under
/// `start_from: committed` that used to seek to librdkafka's `Stored`,
/// which it refuses, stopping the replica. The start is resolved to a
/// concrete offset and stored, and the partition drains exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_offset_lost_to_null_is_resolved_before_seeking() {
    let (url, client) = fresh_db("edge_null").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let all = orders(1_000, 1, 10);
    let first = produce_all(&kafka, "orders", all[..500].to_vec()).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "nulled", "").replace(
        "group_id: nulled",
        "group_id: nulled\n  start_from: committed",
    );
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &first, TIMEOUT).await;
    // The advisory commit to Kafka reaches 500 (auto-commit, every 5s):
    // that is where `committed` resolves to.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "nulled")
        .create()
        .unwrap();
    let group = std::sync::Arc::new(group);
    eventually(TIMEOUT, "the group's committed offset in Kafka", || {
        let group = std::sync::Arc::clone(&group);
        async move {
            let committed = tokio::task::spawn_blocking(move || {
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition("orders", 0);
                group.committed_offsets(tpl, Duration::from_secs(5)).ok()
            })
            .await
            .ok()??;
            let offset = committed.find_partition("orders", 0)?.offset();
            (offset == rdkafka::Offset::Offset(500)).then_some(())
        }
    })
    .await;
    client
        .execute(
            "UPDATE sluice.offsets SET next_offset = NULL WHERE group_id = 'nulled'",
            &[],
        )
        .await
        .unwrap();
    let end = produce_all(&kafka, "orders", all[500..].to_vec()).await;
    wait_drained(&client, "orders", &end, TIMEOUT).await;
    assert_orders_exact(&client, 1_000).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    assert!(
        sink.metric("sluice_offset_rewinds_total") >= 1.0,
        "the lost offset was noticed"
    );
    sink.stop().await.expect("the replica kept running");
}
