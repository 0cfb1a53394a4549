//! Kafka broker failures on librdkafka's mock cluster, for what a real
//! broker process cannot be made to do on cue: the only broker refusing
//! connections, chosen requests failing, and an outage longer than the
//! group session. The table always ends exact; the workers are kept
//! unless the session ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::harness::*;
use crate::replica::Replica;

const TOPIC: &str = "orders";

/// A session timeout longer than the outages here: the group keeps its
/// members across them, so no rebalance hides what the outage does.
fn config(brokers: &str, url: &str, port: u16) -> String {
    let yaml = orders_config(brokers, url, TOPIC, "g", "")
        .replace("max_rows: 2000", "max_rows: 200")
        .replace(
            "session.timeout.ms: \"6000\"",
            "session.timeout.ms: \"30000\"",
        )
        .replace("group_id: g", "group_id: g\n  unready_after: 3s");
    with_http(&yaml, port)
}

fn assignments(sink: &Sink) -> f64 {
    metric_where(&sink.registry, "sluice_rebalances_total", "kind", "assign")
}

fn revokes(sink: &Sink) -> f64 {
    metric_where(&sink.registry, "sluice_rebalances_total", "kind", "revoke")
}

async fn readyz(port: u16) -> Option<u16> {
    get(port, "/readyz").await.map(|(status, _)| status)
}

/// All records of both rounds written once, the offsets at the log end,
/// nothing dead-lettered or halted.
async fn assert_exact(client: &tokio_postgres::Client, sink: Sink, rows: i64) {
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    assert_eq!(sink.metric("sluice_partitions_halted"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(client, rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_broker_down_makes_sluice_not_ready_then_it_resumes() {
    let (url, client) = fresh_db("broker_down").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka(TOPIC, 4);
    let records = orders(16_000, 4, 200);
    let (first, second) = records.split_at(8_000);
    let end = produce_all(&kafka, TOPIC, first.to_vec()).await;
    let port = free_port();
    let sink = Sink::start(&config(kafka.bootstrap_servers(), &url, port));
    wait_drained(&client, TOPIC, &end, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(30), "ready, a broker up", || async {
        (readyz(port).await == Some(200) && sink.metric("sluice_kafka_brokers_up") >= 1.0)
            .then_some(())
    })
    .await;
    let assigned = assignments(&sink);

    kafka.broker_down(-1).unwrap();
    let down = Instant::now();
    eventually(Duration::from_secs(15), "not ready", || async {
        (readyz(port).await == Some(503)).then_some(())
    })
    .await;
    let not_ready = down.elapsed();
    let (_, body) = get(port, "/readyz").await.unwrap();
    assert!(body.contains("no Kafka broker is reachable"), "{body}");
    assert_eq!(sink.metric("sluice_kafka_brokers_up"), 0.0);
    // unready_after, plus at most one statistics interval (2 s) to notice.
    assert!(
        not_ready >= Duration::from_secs(3) && not_ready < Duration::from_secs(6),
        "not ready {not_ready:?} after the broker went down (unready_after 3s)"
    );

    kafka.broker_up(-1).unwrap();
    let up = Instant::now();
    let mut end_all = end.clone();
    end_all.extend(produce_all(&kafka, TOPIC, second.to_vec()).await);
    let first_commit = eventually(Duration::from_secs(30), "a commit", || async {
        (stored_offsets(&client, TOPIC).await != end).then(|| up.elapsed())
    })
    .await;
    let ready = eventually(Duration::from_secs(30), "ready again", || async {
        (readyz(port).await == Some(200)).then(|| up.elapsed())
    })
    .await;
    wait_drained(&client, TOPIC, &end_all, Duration::from_secs(60)).await;
    eprintln!(
        "mock broker down: not ready after {not_ready:?}; back: first commit after {first_commit:?}, \
         ready after {ready:?}"
    );
    assert_eq!(assignments(&sink), assigned, "the workers were kept");
    assert_eq!(revokes(&sink), 0.0, "nothing revoked");
    assert!(sink.metric("sluice_kafka_brokers_up") >= 1.0);
    assert_exact(&client, sink, 16_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetch_and_offset_commit_requests_leave_the_table_exact() {
    let (url, client) = fresh_db("request_errors").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka(TOPIC, 4);
    use RDKafkaRespErr::*;
    let records = orders(12_000, 4, 200);
    let (first, second) = records.split_at(4_000);
    let mut end: HashMap<i32, i64> = produce_all(&kafka, TOPIC, first.to_vec()).await;
    let port = free_port();
    let sink = Sink::start(&config(kafka.bootstrap_servers(), &url, port));
    eventually(Duration::from_secs(60), "progress", || async {
        (count(&client, "SELECT count(*) FROM orders").await > 0).then_some(())
    })
    .await;
    let assigned = assignments(&sink);
    // Fetches fail mid-drain: a leader that moved, a timeout, a dropped
    // connection, a broker that is not ready, each more than once.
    let errors = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    ];
    kafka
        .request_errors(RDKafkaApiKey::Fetch, &errors.repeat(3))
        .unwrap();
    // The advisory offset commits to Kafka (for lag tools) fail too: the
    // offsets that count are in Postgres. (Not Produce: the mock cluster
    // stores a retried batch twice when a timeout is injected, even for an
    // idempotent producer, and the log itself would hold duplicates.)
    kafka
        .request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 3],
        )
        .unwrap();
    end.extend(produce_all(&kafka, TOPIC, second.to_vec()).await);
    wait_drained(&client, TOPIC, &end, Duration::from_secs(90)).await;
    assert_eq!(assignments(&sink), assigned, "the workers were kept");
    assert_eq!(revokes(&sink), 0.0, "nothing revoked");
    assert_exact(&client, sink, 12_000).await;
}

/// An outage longer than the session timeout ends the member's session:
/// librdkafka releases the partitions as lost, and when the broker is back
/// the group rebalances and each partition is claimed again from its
/// offset in Postgres. Nothing is lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_session_rebalances_and_loses_nothing() {
    let (url, client) = fresh_db("broker_session").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka(TOPIC, 4);
    let records = orders(8_000, 4, 200);
    let (first, second) = records.split_at(4_000);
    let mut end = produce_all(&kafka, TOPIC, first.to_vec()).await;
    let port = free_port();
    let yaml = config(kafka.bootstrap_servers(), &url, port).replace(
        "session.timeout.ms: \"30000\"",
        "session.timeout.ms: \"6000\"",
    );
    let sink = Sink::start(&yaml);
    wait_drained(&client, TOPIC, &end, Duration::from_secs(60)).await;
    let assigned = assignments(&sink);

    kafka.broker_down(-1).unwrap();
    eventually(
        Duration::from_secs(30),
        "the lost partitions released",
        || async { (revokes(&sink) >= 1.0).then_some(()) },
    )
    .await;
    // The session (6 s) may end before readiness turns (unready_after 3 s
    // plus up to one 2 s statistics interval, later on a loaded machine):
    // either way the service is not ready before the broker is back.
    eventually(
        Duration::from_secs(15),
        "not ready during the outage",
        || async { (readyz(port).await == Some(503)).then_some(()) },
    )
    .await;
    kafka.broker_up(-1).unwrap();
    end.extend(produce_all(&kafka, TOPIC, second.to_vec()).await);
    wait_drained(&client, TOPIC, &end, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(30), "ready again", || async {
        (readyz(port).await == Some(200)).then_some(())
    })
    .await;
    assert!(
        assignments(&sink) > assigned,
        "claimed again after the rebalance"
    );
    assert_exact(&client, sink, 8_000).await;
}

/// librdkafka reports every failed reconnect to every broker (a few per
/// second here); sluice, run as a process, logs each kind once per 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kafka_errors_are_logged_once_per_kind() {
    let (url, client) = fresh_db("broker_log_limit").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka(TOPIC, 2);
    let end = produce_all(&kafka, TOPIC, orders(1_000, 2, 100)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, TOPIC, "g", "").replace(
        "session.timeout.ms: \"6000\"",
        "session.timeout.ms: \"30000\"",
    );
    let replica = Replica::spawn(&yaml);
    wait_drained(&client, TOPIC, &end, Duration::from_secs(60)).await;

    kafka.broker_down(-1).unwrap();
    eventually(Duration::from_secs(10), "the outage logged", || async {
        (!replica.log_lines("Connection refused").is_empty()).then_some(())
    })
    .await;
    // The outage lasts 10 s: librdkafka retries every broker connection
    // at least every 2 s (reconnect.backoff.max.ms) meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let refused = replica.log_lines("Connection refused");
    let all_down = replica.log_lines("AllBrokersDown");
    kafka.broker_up(-1).unwrap();
    eventually(Duration::from_secs(30), "reachable again", || async {
        (replica.metric("sluice_kafka_brokers_up").await? >= 1.0).then_some(())
    })
    .await;
    let errors = replica.metric("sluice_kafka_errors_total").await.unwrap();
    let (status, _, logs) = replica.terminate().await;
    assert_eq!(status.code(), Some(0), "clean exit:\n{logs}");
    // One librdkafka log line (facility FAIL) and one error report.
    assert!(
        refused.lines().count() <= 2,
        "refused connections logged more than once per kind:\n{refused}"
    );
    assert_eq!(all_down.lines().count(), 1, "{all_down}");
    assert!(refused.contains("held_back=0"), "{refused}");
    assert!(errors >= 2.0, "every error still counted: {errors}");
    assert_orders_exact(&client, 1_000).await;
}

/// A replica that owns no partition fetches nothing: its only traffic is
/// the group's. It still counts as connected, and stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_no_partition_stays_ready() {
    let (url, client) = fresh_db("broker_idle").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka(TOPIC, 1);
    let end = produce_all(&kafka, TOPIC, orders(100, 1, 10)).await;
    let (port_a, port_b) = (free_port(), free_port());
    // The mock's coordinator holds a rebalance for the session timeout.
    let yaml = |port| {
        config(kafka.bootstrap_servers(), &url, port).replace(
            "session.timeout.ms: \"30000\"",
            "session.timeout.ms: \"6000\"",
        )
    };
    let a = Sink::start(&yaml(port_a));
    wait_drained(&client, TOPIC, &end, Duration::from_secs(60)).await;
    let b = Sink::start(&yaml(port_b));
    eventually(Duration::from_secs(60), "B to join", || async {
        (readyz(port_b).await == Some(200)).then_some(())
    })
    .await;
    let owners = (
        a.metric("sluice_assigned_partitions"),
        b.metric("sluice_assigned_partitions"),
    );
    // Longer than unready_after (3 s) plus two statistics intervals.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (name, sink, port) in [("A", &a, port_a), ("B", &b, port_b)] {
        assert_eq!(
            readyz(port).await,
            Some(200),
            "{name} ready, owning {owners:?}"
        );
        assert!(
            sink.metric("sluice_kafka_brokers_up") >= 1.0,
            "{name} connected"
        );
    }
    assert_eq!(owners.0 + owners.1, 1.0, "{owners:?}");
    b.stop().await.unwrap();
    a.stop().await.unwrap();
    assert_orders_exact(&client, 100).await;
}
