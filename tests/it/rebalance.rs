//! Rebalances on the mock cluster: a revoke while workers hold uncommitted
//! batches, under the cooperative and the eager assignor.

use std::time::Duration;

use crate::harness::*;
use crate::pgbouncer::{target_db, Via};

/// The orders route, assigned with `strategy`, throttled to `rate` rows/s
/// when given (a throttled worker spends its time holding a collected,
/// uncommitted batch).
pub fn config(
    brokers: &str,
    url: &str,
    strategy: &str,
    session: &str,
    rate: Option<u32>,
) -> String {
    let yaml = orders_config(brokers, url, "orders", "g", "")
        .replace("max_rows: 2000", "max_rows: 500")
        .replace(
            "session.timeout.ms: \"6000\"",
            &format!(
                "session.timeout.ms: \"{session}\"\n    partition.assignment.strategy: {strategy}"
            ),
        );
    match rate {
        Some(rate) => format!("{yaml}\nthrottle:\n  max_rows_per_second: {rate}\n"),
        None => yaml,
    }
}

pub async fn revoke_during_batches(strategy: &str, via: Via) {
    const ROWS: usize = 40_000;
    let prefix = format!("revoke_{}_{via:?}", strategy.replace('-', "_")).to_lowercase();
    let db = target_db(&prefix, via).await;
    let (url, client) = (&db.url, &db.client);
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    // Slow commits too, so some revokes land on a batch being written.
    slow_inserts(client, 0.2).await;
    let kafka = kafka("orders", 4);
    let end = produce_all(&kafka, "orders", orders(ROWS, 4, 400)).await;
    let brokers = kafka.bootstrap_servers();

    let a = Sink::start(&config(brokers, url, strategy, "6000", Some(2_000)));
    eventually(
        Duration::from_secs(60),
        "A to own every partition and write",
        || async {
            let written = count(client, "SELECT count(*) FROM orders").await;
            (a.metric("sluice_assigned_partitions") == 4.0 && written >= 1_000).then_some(())
        },
    )
    .await;
    // B joins: A gives up partitions while its workers hold batches. A
    // revoke may fall between two batches; then B leaves and joins again
    // (at most three rounds), so the case the test is about does happen.
    let mut earlier_b_rows = 0.0;
    let mut round = 0;
    let b = loop {
        round += 1;
        let b = Sink::start(&config(brokers, url, strategy, "6000", None));
        eventually(Duration::from_secs(60), "B to get partitions", || async {
            (b.metric("sluice_assigned_partitions") > 0.0).then_some(())
        })
        .await;
        if a.metric("sluice_abandoned_records_total") > 0.0 || round == 3 {
            break b;
        }
        // Read after the stop: B commits the batch it holds while stopping.
        let registry = b.registry.clone();
        b.stop().await.expect("B stops cleanly");
        earlier_b_rows += metric(&registry, "sluice_partition_rows_total");
        eventually(
            Duration::from_secs(60),
            "A to own every partition again",
            || async { (a.metric("sluice_assigned_partitions") == 4.0).then_some(()) },
        )
        .await;
    };
    let abandoned = a.metric("sluice_abandoned_records_total");
    let revokes = metric_where(&a.registry, "sluice_rebalances_total", "kind", "revoke");
    println!(
        "{strategy}: A revoked {revokes} time(s) in {round} round(s), leaving {abandoned} uncommitted records"
    );
    assert!(revokes >= 1.0);
    assert!(
        abandoned > 0.0,
        "a revoked worker held an uncommitted batch (in {round} rounds)"
    );

    client
        .batch_execute("DROP TRIGGER slow ON orders")
        .await
        .unwrap();
    wait_drained(client, "orders", &end, Duration::from_secs(120)).await;
    // The counters are read once both have stopped: a commit's counter
    // follows its COMMIT, so a drained table can be a step ahead of them.
    let (a_registry, b_registry) = (a.registry.clone(), b.registry.clone());
    a.stop().await.expect("A stops cleanly");
    b.stop().await.expect("B stops cleanly");
    let (a_rows, b_rows) = (
        metric(&a_registry, "sluice_partition_rows_total"),
        metric(&b_registry, "sluice_partition_rows_total") + earlier_b_rows,
    );
    assert!(
        a_rows > 0.0 && b_rows > 0.0,
        "both wrote: {a_rows} + {b_rows}"
    );
    // A stale commit would be refused, never written; none was needed.
    assert_eq!(a_rows + b_rows, ROWS as f64, "every record committed once");
    assert_orders_exact(client, ROWS as i64).await;
    assert_eq!(
        count(client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    assert_eq!(stored_offsets(client, "orders").await, end);
    db.assert_pooler_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_during_a_batch_loses_and_duplicates_nothing_cooperative() {
    revoke_during_batches("cooperative-sticky", Via::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_during_a_batch_loses_and_duplicates_nothing_eager() {
    revoke_during_batches("range", Via::Direct).await;
}
