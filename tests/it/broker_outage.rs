//! The Kafka broker going away under a running sink, on a real broker
//! process: tansu with sqlite storage, which keeps its log across a
//! restart. Killed with SIGKILL mid-drain, and stopped for 30 s: sluice
//! keeps its workers (no rebalance), turns not ready once no broker has
//! been reachable for `kafka.unready_after`, resumes by itself when the
//! broker is back, and the table ends exact. (librdkafka's mock cluster
//! covers a refused broker, failed requests and an outage longer than the
//! session: broker_outage_mock.rs.)
//!
//! tansu's watermarks are wrong (see `tansu.rs`): offsets are checked
//! against the producer's delivery reports, never against the broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::tansu::{Tansu, TansuOptions};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 4;
const UNREADY_AFTER: Duration = Duration::from_secs(10);

/// A session timeout longer than the outages: the group coordinator is
/// the broker, and a member that cannot heartbeat for the session timeout
/// gives its partitions up (a rebalance is not what is tested here). The
/// throttle keeps a backlog, so the outage comes mid-drain. (tansu answers
/// a fetch with all it has, ignoring the fetch size, so that backlog is
/// already in sluice's queues and is written during the outage; what needs
/// the broker back is the second half, produced after the restart.)
fn config(brokers: &str, url: &str, port: u16) -> String {
    let yaml = orders_config(brokers, url, TOPIC, "g", "")
        .replace("max_rows: 2000", "max_rows: 200")
        .replace(
            "session.timeout.ms: \"6000\"",
            &format!(
                "session.timeout.ms: \"60000\"\n{}",
                std::env::var("OUTAGE_LIBRDKAFKA").unwrap_or_default()
            ),
        )
        .replace(
            "group_id: g",
            &format!("group_id: g\n  unready_after: {}s", UNREADY_AFTER.as_secs()),
        );
    with_http(
        &format!("{yaml}\nthrottle:\n  max_rows_per_second: 2000\n"),
        port,
    )
}

async fn readyz(port: u16) -> Option<u16> {
    get(port, "/readyz").await.map(|(status, _)| status)
}

fn rebalances(sink: &Sink, kind: &str) -> f64 {
    metric_where(&sink.registry, "sluice_rebalances_total", "kind", kind)
}

enum Outage {
    /// SIGKILL, restarted as soon as sluice reports not ready.
    Kill,
    /// SIGTERM, kept down this long, then restarted.
    Stop(Duration),
}

async fn broker_outage(prefix: &str, outage: Outage) {
    const ROWS: usize = 16_000;
    let (url, client) = fresh_db(prefix).await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let mut broker = Tansu::start_with(TansuOptions {
        durable: true,
        ..TansuOptions::default()
    });
    broker.create_topic(TOPIC, PARTITIONS).await;
    let records = orders(ROWS, PARTITIONS, 400);
    let (first, second) = records.split_at(ROWS / 2);
    let mut end: HashMap<i32, i64> = broker.produce_all(TOPIC, first.to_vec()).await;
    let port = free_port();
    let sink = Sink::start(&config(&broker.bootstrap, &url, port));
    eventually(Duration::from_secs(60), "ready and writing", || async {
        let rows = count(&client, "SELECT count(*) FROM orders").await;
        (readyz(port).await == Some(200) && rows >= 2_000).then_some(())
    })
    .await;
    let assigned = rebalances(&sink, "assign");

    let down = Instant::now();
    match outage {
        Outage::Kill => tokio::task::block_in_place(|| broker.kill()),
        Outage::Stop(_) => tokio::task::block_in_place(|| broker.terminate()),
    }
    let written = count(&client, "SELECT count(*) FROM orders").await;
    assert!(written < ROWS as i64 / 2, "the outage came mid-drain");
    let not_ready = eventually(Duration::from_secs(60), "not ready", || async {
        (readyz(port).await == Some(503)).then(|| down.elapsed())
    })
    .await;
    let (_, body) = get(port, "/readyz").await.unwrap();
    assert!(body.contains("no Kafka broker is reachable"), "{body}");
    assert_eq!(sink.metric("sluice_kafka_brokers_up"), 0.0);
    // unready_after, plus at most one statistics interval (2 s) to notice.
    assert!(
        not_ready >= UNREADY_AFTER && not_ready < UNREADY_AFTER + Duration::from_secs(3),
        "not ready {not_ready:?} after the broker went away (unready_after {UNREADY_AFTER:?})"
    );
    if let Outage::Stop(outage) = outage {
        // The outage's length is what is being tested.
        tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
        assert_eq!(readyz(port).await, Some(503), "not ready all along");
    }
    let down_for = down.elapsed();

    // What was fetched before the outage is written meanwhile.
    wait_drained(&client, TOPIC, &end, Duration::from_secs(30)).await;
    tokio::task::block_in_place(|| broker.restart());
    let up = Instant::now();
    // The restarted broker kept the log and goes on numbering after it;
    // the first commit after the restart is of records produced after it.
    let produced = broker.produce_all(TOPIC, second.to_vec());
    let first_commit = eventually(Duration::from_secs(60), "a commit", || async {
        (stored_offsets(&client, TOPIC).await != end).then(|| up.elapsed())
    });
    let (more, first_commit) = tokio::join!(produced, first_commit);
    end.extend(more);
    let ready = eventually(Duration::from_secs(60), "ready again", || async {
        (readyz(port).await == Some(200)).then(|| up.elapsed())
    })
    .await;
    wait_drained(&client, TOPIC, &end, Duration::from_secs(120)).await;
    println!(
        "{prefix}: down {down_for:?}, not ready after {not_ready:?}; back: first commit after \
         {first_commit:?}, ready after {ready:?}"
    );
    // Reconnecting takes at most reconnect.backoff.max.ms (2 s); the rest
    // is producing, fetching and one batch.
    assert!(
        first_commit < Duration::from_secs(8),
        "first commit {first_commit:?} after the restart"
    );
    assert_eq!(
        rebalances(&sink, "assign"),
        assigned,
        "the workers were kept"
    );
    assert_eq!(rebalances(&sink, "revoke"), 0.0, "nothing revoked");
    assert!(sink.metric("sluice_kafka_brokers_up") >= 1.0);
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    assert_eq!(sink.metric("sluice_partitions_halted"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, ROWS as i64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_drain_is_waited_for_and_the_table_is_exact() {
    broker_outage("broker_killed", Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_for_30s_is_waited_for_and_the_table_is_exact() {
    broker_outage("broker_stopped", Outage::Stop(Duration::from_secs(30))).await;
}
