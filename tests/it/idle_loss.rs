//! Commits lost on a partition that is caught up and idle (what an
//! asynchronous failover does to the last batches before it): the rows and
//! the offset row go back together, and nothing new arrives for the fence
//! to notice at a commit. The idle worker's own check of its offset row
//! must find it and write them again, once.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_lost_on_an_idle_partition_are_written_again() {
    let (url, client) = fresh_db("idle_loss").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(4_000, 2, 40)).await;
    let sink = Sink::start(&orders_config(
        kafka.bootstrap_servers(),
        &url,
        "orders",
        "g",
        "",
    ));
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    assert_orders_exact(&client, 4_000).await;

    // The loss, as the promoted replica has it: partition 0's last 500
    // records and its offset row as of before them.
    let lost_from = end[&0] - 500;
    client
        .execute(
            "UPDATE sluice.offsets SET next_offset = $1 WHERE topic = 'orders' AND partition = 0",
            &[&lost_from],
        )
        .await
        .unwrap();
    let deleted = client
        .execute(
            "DELETE FROM orders WHERE src_partition = 0 AND src_offset >= $1",
            &[&lost_from],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 500);

    // Nothing is produced: only the idle check can see it.
    wait_drained(&client, "orders", &end, Duration::from_secs(30)).await;
    assert_orders_exact(&client, 4_000).await;
    assert_eq!(sink.metric("sluice_offset_rewinds_total"), 1.0);
    assert_eq!(sink.metric("sluice_fence_rejections_total"), 0.0);
    sink.stop().await.expect("clean stop");
}

/// The idle check never holds up a stop: with Postgres a black hole
/// (connections open, no byte through) an idle check waits on it, and a
/// stop (revoke, shutdown) must not wait with it (the pool's connect and
/// recycle timeouts, 10 s each here, or the attempt deadline: 18 s without
/// the fix). Nor does the readiness probe of Postgres, which waited out its
/// own timeouts (about 7 s) before the shutdown could end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_check_on_an_unreachable_postgres_does_not_delay_a_stop() {
    let (url, client) = fresh_db("idle_stop").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(2_000, 2, 20)).await;
    let (proxy, proxied) = crate::proxy::Proxy::in_front_of(&url).await;
    let sink = Sink::start(&orders_config(
        kafka.bootstrap_servers(),
        &proxied,
        "orders",
        "g",
        "",
    ));
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;

    // The black hole lasts past one idle round (5 s), so that a check is
    // waiting on it when the stop comes.
    proxy.set_stalled(true);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stopping = std::time::Instant::now();
    sink.stop().await.expect("clean stop");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(3), "the stop took {took:?}");
    proxy.set_stalled(false);
    assert_orders_exact(&client, 2_000).await;
}
