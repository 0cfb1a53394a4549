//! Failover of a Patroni-managed PostgreSQL pair behind HAProxy (the
//! standard Patroni HAProxy config) while sluice drains 200,000 records over
//! 8 partitions: a planned switchover, a killed primary (synchronous
//! replication), the same with asynchronous replication where the new
//! primary lacks the last commits (patroni/lossy.rs), and an old primary
//! back as a read-only replica. Each scenario has its own cluster, so they
//! run side by side, and ends on the exact table and offsets at the log
//! end. Each prints its timeline (run with `--nocapture`): when the new
//! primary was promoted and when sluice first committed there, `/readyz`,
//! and what the metrics and logs showed.

mod cluster;
mod configs;
mod lossy;
mod watch;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice::embedded::kafka::MockKafka;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::harness::*;
use crate::replica::Replica;
use cluster::Cluster;
use configs::Replication;
use watch::{paced_producer, watch, Timeline, Watched};

const TOTAL: usize = 200_000;
const PARTITIONS: i32 = 8;
/// The failure comes once this many rows are written.
const FAIL_AFTER: f64 = 50_000.0;
/// From the failure to the drained table, on a busy 2-core machine.
const RECOVERY: Duration = Duration::from_secs(120);

/// Synchronous replication: what docs/operations.md recommends.
const SYNC: Replication = Replication {
    synchronous: true,
    maximum_lag_on_failover: 1 << 20,
};

/// A cluster, sluice through its HAProxy, and a stream arriving.
pub struct Run {
    pub cluster: Cluster,
    pub sink: Replica,
    pub kafka: MockKafka,
    /// The primary before the failure.
    pub old: usize,
    pub client: Client,
    producer: JoinHandle<HashMap<i32, i64>>,
}

impl Run {
    /// Starts everything and returns once `FAIL_AFTER` rows are written.
    pub async fn start(scope: &str, replication: Replication, records: Produced) -> Run {
        let cluster = Cluster::start(scope, replication).await;
        let old = cluster.primary(Duration::from_secs(5)).await;
        let client = cluster.create_database(old, "sink").await;
        client.batch_execute(ORDERS_TABLE).await.unwrap();
        let kafka = kafka("orders", PARTITIONS);
        // Short connect timeout and backoff: a dead primary is left quickly
        // and the new one found within a couple of seconds of HAProxy
        // routing to it (docs/operations.md, "Patroni, etcd and HAProxy").
        let yaml = orders_config(
            kafka.bootstrap_servers(),
            &cluster.url("sink"),
            "orders",
            "g",
            "",
        )
        .replace("pool_size: 4", "pool_size: 4\n  connect_timeout: 2s")
            + "retry:\n  initial_backoff: 100ms\n  max_backoff: 2s\n";
        let sink = Replica::spawn(&yaml);
        let producer = paced_producer(
            kafka.bootstrap_servers().to_string(),
            "orders",
            records,
            10_000,
            Duration::from_millis(400),
        );
        eventually(
            Duration::from_secs(120),
            "rows before the failure",
            || async {
                let n = sink.metric("sluice_rows_written_total").await?;
                (n >= FAIL_AFTER).then_some(())
            },
        )
        .await;
        Run {
            cluster,
            sink,
            kafka,
            old,
            client,
            producer,
        }
    }

    /// Watches the other node from now on (call at the failure).
    pub fn watch(&self, since: Instant) -> JoinHandle<Timeline> {
        let other = 1 - self.old;
        let watched = Watched {
            node: self.cluster.node_url(other, "sink"),
            node_port: self.cluster.nodes[other].ports.pg,
            haproxy: self.cluster.url("sink") + "?connect_timeout=2",
            http_port: self.sink.port,
        };
        watch(watched, since, RECOVERY)
    }

    /// The log end once everything is produced.
    pub async fn produced(&mut self) -> HashMap<i32, i64> {
        (&mut self.producer).await.expect("producer")
    }

    /// Waits for the drain on node `i` and asserts the exact table, the
    /// offsets at `end` and no dead letter; returns a client to node `i`.
    pub async fn assert_exact_on(&self, i: usize, end: &HashMap<i32, i64>, rows: i64) -> Client {
        let client = connect(&self.cluster.node_url(i, "sink")).await;
        wait_drained(&client, "orders", end, RECOVERY).await;
        assert_orders_exact(&client, rows).await;
        assert_eq!(stored_offsets(&client, "orders").await, *end);
        assert_eq!(
            count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
            0
        );
        client
    }

    /// Prints what the scenario saw (the figures docs/operations.md quotes).
    pub async fn report(&self, scenario: &str, timeline: &Timeline) {
        let (_, text) = get(self.sink.port, "/metrics").await.unwrap_or_default();
        let metrics: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "sluice_pg_errors_total",
                    "sluice_retries_total",
                    "sluice_offset_rewinds_total",
                    "sluice_fence_rejections_total",
                    "sluice_ambiguous_commits_total",
                    "sluice_partition_reclaims_total",
                ]
                .iter()
                .any(|m| l.starts_with(m))
            })
            .collect();
        let warnings = self.sink.log_lines("WARN");
        let errors = self.sink.log_lines("ERROR");
        let mut distinct: Vec<String> = warnings
            .lines()
            .chain(errors.lines())
            .map(message)
            .collect();
        distinct.sort();
        distinct.dedup();
        let patroni: Vec<String> = (0..2).flat_map(|i| self.cluster.role_changes(i)).collect();
        eprintln!(
            "[{scenario}] patroni:\n  {}\n[{scenario}] {timeline}\n[{scenario}] metrics: {}\n\
             [{scenario}] log: {} WARN, {} ERROR lines; messages: {}",
            patroni.join("\n  "),
            metrics.join(", "),
            warnings.lines().count(),
            errors.lines().count(),
            distinct.join(" | "),
        );
    }
}

/// A log line's message without its timestamp and fields.
fn message(line: &str) -> String {
    let text = line.split_once(": ").map_or(line, |(_, m)| m);
    text.split(" partition=")
        .next()
        .unwrap_or(text)
        .chars()
        .take(120)
        .collect()
}

/// `/readyz` stayed 200: a failover of a few seconds is shorter than
/// `postgres.unready_after`, so readiness does not flap.
fn assert_ready_throughout(t: &Timeline) {
    assert!(
        t.readyz.iter().all(|(_, s)| *s == 200),
        "/readyz changed during the failover: {t}"
    );
}

/// Waits until sluice holds no session on node `i` (a read-only replica).
async fn no_sluice_session_on(cluster: &Cluster, i: usize) {
    let client = connect(&cluster.node_url(i, "postgres")).await;
    eventually(
        Duration::from_secs(30),
        "sluice to leave the replica",
        || async {
            let n = count(
                &client,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice'",
            )
            .await;
            (n == 0).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_loses_and_duplicates_nothing() {
    let records = orders(TOTAL, PARTITIONS, 800);
    let mut run = Run::start("switchover", SYNC, records).await;
    let new = 1 - run.old;
    let failed = Instant::now();
    let watcher = run.watch(failed);
    let old = run.old;
    tokio::task::block_in_place(|| run.cluster.switchover(old, new));
    let end = run.produced().await;
    run.assert_exact_on(new, &end, TOTAL as i64).await;
    let timeline = watcher.await.unwrap();
    run.report("switchover", &timeline).await;
    assert!(timeline.first_commit.is_some(), "{timeline}");
    assert_ready_throughout(&timeline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_loses_and_duplicates_nothing() {
    let records = orders(TOTAL, PARTITIONS, 800);
    let mut run = Run::start("kill", SYNC, records).await;
    let new = 1 - run.old;
    let failed = Instant::now();
    let watcher = run.watch(failed);
    run.cluster.kill_postmaster(run.old);
    let end = run.produced().await;
    run.assert_exact_on(new, &end, TOTAL as i64).await;
    let timeline = watcher.await.unwrap();
    run.report("kill -9", &timeline).await;
    assert!(timeline.first_commit.is_some(), "{timeline}");
    assert_ready_throughout(&timeline);
    // Synchronous mode: the new primary had every commit; nothing to rewind.
    assert_eq!(
        run.sink.metric("sluice_offset_rewinds_total").await,
        Some(0.0)
    );
}

/// The old primary, demoted by a switchover, is back as a read-only
/// replica while HAProxy may still route to it (it is marked down only
/// after three failed checks): sluice must not stay on a session there.
/// Then the switchover back, onto the node it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_leaves_an_old_primary_back_as_a_replica() {
    let records = orders(TOTAL, PARTITIONS, 800);
    let mut run = Run::start("readonly", SYNC, records).await;
    let (a, b) = (run.old, 1 - run.old);
    let failed = Instant::now();
    let watcher = run.watch(failed);
    tokio::task::block_in_place(|| run.cluster.switchover(a, b));
    run.cluster.wait_role(a, "/replica", RECOVERY).await;
    no_sluice_session_on(&run.cluster, a).await;
    let timeline = watcher.await.unwrap();
    assert!(timeline.first_commit.is_some(), "{timeline}");
    run.report("read-only old primary", &timeline).await;

    // And back: a is primary again, b the replica sluice must leave.
    run.cluster.wait_role(a, "/sync", RECOVERY).await;
    tokio::task::block_in_place(|| run.cluster.switchover(b, a));
    run.cluster.wait_role(b, "/replica", RECOVERY).await;
    let end = run.produced().await;
    run.assert_exact_on(a, &end, TOTAL as i64).await;
    no_sluice_session_on(&run.cluster, b).await;
    assert_ready_throughout(&timeline);
}
