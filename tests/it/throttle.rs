//! The throttle: a replica-wide rows/s budget measured from the table, and
//! the adaptive brake reacting to slow commits.

use std::time::Duration;

use crate::harness::*;

/// Stamps every row with the time it was written (per row, even in COPY),
/// so rates are measured from the table itself.
const STAMPED: &str =
    "ALTER TABLE orders ADD COLUMN written_at timestamptz NOT NULL DEFAULT clock_timestamp()";

fn throttled(brokers: &str, url: &str, group: &str, throttle: &str) -> String {
    orders_config(brokers, url, "orders", group, "").replace("max_rows: 2000", "max_rows: 1000")
        + throttle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_budget_holds_over_a_whole_drain_and_no_partition_starves() {
    const ROWS: usize = 200_000;
    const RATE: f64 = 20_000.0;
    let (url, client) = fresh_db("throttle_rate").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    client.batch_execute(STAMPED).await.unwrap();
    let kafka = kafka("orders", 8);
    let end = produce_all(&kafka, "orders", orders(ROWS, 8, 2_000)).await;

    let sink = Sink::start(&throttled(
        kafka.bootstrap_servers(),
        &url,
        "g",
        "throttle:\n  max_rows_per_second: 20000\n",
    ));
    eventually(Duration::from_secs(30), "the rate metric", || async {
        (sink.metric("sluice_throttle_rate_rows_per_second") == RATE).then_some(())
    })
    .await;
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    assert!(
        sink.metric("sluice_throttle_wait_seconds_total") > 1.0,
        "workers waited for the budget"
    );
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, ROWS as i64).await;

    // The drain rate over the whole drain, from the rows' own timestamps.
    let span: f64 = client
        .query_one(
            "SELECT extract(epoch FROM max(written_at) - min(written_at))::float8 FROM orders",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let rate = ROWS as f64 / span;
    println!("drained {ROWS} rows in {span:.2}s: {rate:.0} rows/s (limit {RATE})");
    assert!(
        (rate - RATE).abs() <= RATE * 0.15,
        "drain rate {rate:.0} rows/s is not within 15% of {RATE}"
    );

    // Fair share: by the drain's midpoint every partition had written about
    // the same number of rows (its backlog outlasts the midpoint), whatever
    // its backlog: no partition is starved by the others.
    let written = client
        .query(
            "WITH mid AS (SELECT min(written_at) + (max(written_at) - min(written_at)) / 2 AS t FROM orders) \
             SELECT src_partition, count(*) FILTER (WHERE written_at <= (SELECT t FROM mid)), count(*) \
             FROM orders GROUP BY src_partition ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(written.len(), 8);
    let fair = written.iter().map(|r| r.get::<_, i64>(1)).sum::<i64>() as f64 / 8.0;
    for row in written {
        let (partition, by_mid, backlog): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
        println!("partition {partition}: {by_mid} of {backlog} rows by the midpoint (fair share {fair:.0})");
        assert!(
            by_mid as f64 >= fair * 0.6 && (by_mid as f64 <= fair * 1.4 || by_mid == backlog),
            "partition {partition} wrote {by_mid} rows by the midpoint; a fair share is {fair:.0}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_brake_halves_on_slow_commits_and_recovers() {
    const ROWS: usize = 200_000;
    let (url, client) = fresh_db("throttle_adaptive").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 4);
    let end = produce_all(&kafka, "orders", orders(ROWS, 4, 1_000)).await;

    let sink = Sink::start(&throttled(
        kafka.bootstrap_servers(),
        &url,
        "g",
        "throttle:\n  max_rows_per_second: 10000\n  adaptive:\n    target_commit_latency: 250ms\n    \
         min_rows_per_second: 200\n    window: 500ms\n",
    ));
    let rate = || sink.metric("sluice_throttle_rate_rows_per_second");
    // Fast commits: the rate stays at (or returns to) its ceiling.
    eventually(
        Duration::from_secs(60),
        "the drain at full rate",
        || async {
            let started = count(&client, "SELECT count(*) FROM orders").await > 10_000;
            (started && rate() == 10_000.0).then_some(())
        },
    )
    .await;
    let before = rate();

    // Every statement on the table now takes 600ms: commits are slow.
    slow_inserts(&client, 0.6).await;
    // A few windows: the first slow commits end 600ms in, then a couple of
    // halvings.
    let braked = eventually(Duration::from_secs(5), "the rate to halve", || async {
        let now = rate();
        (now < before / 2.0).then_some(now)
    })
    .await;
    println!("rate {before} -> {braked} rows/s after commits slowed");
    let written = count(&client, "SELECT count(*) FROM orders").await;
    assert!(written < ROWS as i64, "the backlog outlasted the brake");

    client
        .batch_execute("DROP TRIGGER slow ON orders")
        .await
        .unwrap();
    // Additive increase: 500 rows/s per 500ms window from wherever it was.
    let recovered = eventually(Duration::from_secs(40), "the rate to recover", || async {
        let now = rate();
        (now >= before * 0.75).then_some(now)
    })
    .await;
    println!("rate back up to {recovered} rows/s after commits sped up");

    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, ROWS as i64).await;
}
