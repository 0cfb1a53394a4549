//! Scaling: on a real broker process (tansu), SIGTERM hands partitions over
//! at once and a chaos run of scale-up, kill -9 and scale-down loses and
//! duplicates nothing; on the mock cluster (which holds a large backlog
//! better), memory stays bounded behind a stalled Postgres.
//!
//! tansu's watermarks are wrong (see `tansu.rs`): offsets are checked
//! against the producer's delivery reports, never against the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::harness::*;
use crate::rebalance::config;
use crate::replica::Replica;
use crate::tansu::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_grace_and_hands_partitions_over_at_once() {
    const ROWS: usize = 40_000;
    const SESSION: Duration = Duration::from_secs(30);
    let (url, client) = fresh_db("sigterm_handover").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let broker = Tansu::start();
    broker.create_topic("orders", 4).await;
    let end = broker.produce_all("orders", orders(ROWS, 4, 400)).await;
    let session = SESSION.as_millis().to_string();
    let yaml = |rate| {
        config(
            &broker.bootstrap,
            &url,
            "cooperative-sticky",
            &session,
            rate,
        )
    };

    // A, throttled, keeps a backlog; B joins and shares the partitions.
    let a = Replica::spawn(&format!("{}shutdown_grace: 10s\n", yaml(Some(500))));
    eventually(Duration::from_secs(60), "A to write", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 1_000).then_some(())
    })
    .await;
    let b = Sink::start(&yaml(None));
    eventually(SESSION * 2, "A and B to share the partitions", || async {
        let on_a = a.metric("sluice_assigned_partitions").await?;
        let on_b = b.metric("sluice_assigned_partitions");
        (on_a > 0.0 && on_b > 0.0 && on_a + on_b == 4.0).then_some(())
    })
    .await;
    let written = count(&client, "SELECT count(*) FROM orders").await;
    assert!(written < ROWS as i64 - 2_000, "A still has a backlog");

    let (status, took, logs) = a.terminate().await;
    assert_eq!(status.code(), Some(0), "A exits 0:\n{logs}");
    assert!(
        took < Duration::from_secs(10),
        "A took {took:?}, over its 10s grace"
    );
    let left = Instant::now();
    eventually(SESSION, "B to own every partition", || async {
        (b.metric("sluice_assigned_partitions") == 4.0).then_some(())
    })
    .await;
    let handover = left.elapsed();
    println!("SIGTERM to exit: {took:?}; exit to B owning all partitions: {handover:?}");
    assert!(
        handover < SESSION / 3,
        "partitions moved after {handover:?}: A did not leave the group"
    );

    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    b.stop().await.expect("B stops cleanly");
    assert_orders_exact(&client, ROWS as i64).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
}

/// The rebalances a replica has seen (assign and revoke events).
async fn rebalances(replica: &Replica) -> f64 {
    replica
        .metric("sluice_rebalances_total")
        .await
        .unwrap_or(0.0)
}

/// Waits until the live replicas own every partition between them, each
/// some.
async fn settled(replicas: &[Replica], partitions: usize) {
    eventually(Duration::from_secs(120), "the group to settle", || async {
        let mut total = 0.0;
        for r in replicas {
            let owned = r.metric("sluice_assigned_partitions").await?;
            if owned == 0.0 {
                return None;
            }
            total += owned;
        }
        (total == partitions as f64).then_some(())
    })
    .await
}

// Minutes long (about 5 on 2 cores). CHAOS_SEED replays a run's kill
// schedule; CHAOS_ROWS shrinks a diagnostic run; TANSU_LOG, REPLICA_LOG,
// CHAOS_LIBRDKAFKA ('    debug: cgrp') and CHAOS_GREP show the group's
// traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_scale_up_kill_and_scale_down_lose_and_duplicate_nothing() {
    // CHAOS_ROWS shrinks a diagnostic run; the test's figure is 500,000.
    let records: usize = std::env::var("CHAOS_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    const KILLS: usize = 10;
    let began = Instant::now();
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("chaos seed {seed} (rerun with CHAOS_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (url, client) = fresh_db("chaos").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let broker = Arc::new(Tansu::start());
    broker.create_topic("orders", 16).await;
    // Produced while the replicas come and go.
    let producing = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move {
            broker
                .produce_all("orders", orders(records, 16, 5_000))
                .await
        }
    });
    let yaml = orders_config(&broker.bootstrap, &url, "orders", "chaos", "")
        .replace("max_rows: 2000", "max_rows: 1000")
        // tansu 0.6.0 refreshes a member's session only on heartbeats and
        // makes every follower's JoinGroup wait 3 s, so a rebalance round
        // takes seconds: a short session would expire members mid-join.
        .replace(
            "session.timeout.ms: \"6000\"",
            "session.timeout.ms: \"10000\"",
        )
        // tansu lists every stored batch of a partition on each fetch, and
        // answers a fetch with data only after half of fetch.wait.max.ms:
        // fewer, larger fetches keep the broker from saturating the CPU as
        // the partitions grow.
        .replace(
            "heartbeat.interval.ms: \"300\"",
            &format!(
                "heartbeat.interval.ms: \"300\"\n    fetch.wait.max.ms: \"2000\"\n{}",
                std::env::var("CHAOS_LIBRDKAFKA").unwrap_or_default()
            ),
        );
    let rows = || count(&client, "SELECT count(*) FROM orders");
    let progress = |from: i64, by: i64| {
        let rows = &rows;
        async move {
            eventually(Duration::from_secs(180), "progress", || async {
                let n = rows().await;
                (n >= (from + by).min(records as i64)).then_some(n)
            })
            .await
        }
    };

    let mut replicas = vec![Replica::spawn(&yaml)];
    let mut seen_rebalances = 0.0;
    let mut at = progress(0, 10_000).await;
    // Scale to 3.
    replicas.push(Replica::spawn(&yaml));
    replicas.push(Replica::spawn(&yaml));
    at = progress(at, 10_000).await;
    for kill in 1..=KILLS {
        let victim = replicas.swap_remove(rng.random_range(0..replicas.len()));
        seen_rebalances += rebalances(&victim).await;
        victim.kill();
        // Sometimes restart at once, sometimes after the survivors took over.
        let wait = rng.random_range(0..8_000);
        at = progress(at, wait).await;
        println!("kill {kill} at {at} rows; restarting after +{wait}");
        replicas.push(Replica::spawn(&yaml));
    }
    // Scale back to 1: SIGTERM two of the three. Each leaves a settled
    // group: tansu 0.6.0's coordinator keeps a member that leaves during a
    // rebalance as the group's leader, and the group never forms again (a
    // broker defect; Kafka replaces the leader).
    for _ in 0..2 {
        settled(&replicas, 16).await;
        let leaving = replicas.swap_remove(rng.random_range(0..replicas.len()));
        seen_rebalances += rebalances(&leaving).await;
        let (status, took, logs) = leaving.terminate().await;
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM exits 0 ({took:?}):\n{logs}"
        );
        at = progress(at, 2_000).await;
    }
    let end = producing.await.expect("producer");
    let last = replicas.pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = stored_offsets(&client, "orders").await;
        if stored == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: stored {stored:?}\nproduced {end:?}\nlast replica:\n{}",
            last.log_lines(&std::env::var("CHAOS_GREP").unwrap_or("rebalance".into()))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen_rebalances += rebalances(&last).await;
    let (status, _, logs) = last.terminate().await;
    assert_eq!(status.code(), Some(0), "{logs}");

    let total = count(&client, "SELECT count(*) FROM orders").await;
    let duplicates = count(
        &client,
        "SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) n FROM orders GROUP BY k, seq) d",
    )
    .await;
    let lost = records as i64 - (total - duplicates);
    println!(
        "chaos: {records} records, {KILLS} kills, 2 SIGTERMs, {seen_rebalances} rebalance events \
         (sum of each replica's last-scraped sluice_rebalances_total), duplicates {duplicates}, lost {lost}, wall time {:?}",
        began.elapsed()
    );
    assert_orders_exact(&client, records as i64).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    assert_eq!(stored_offsets(&client, "orders").await, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_behind_a_stalled_postgres() {
    const ROWS: usize = 1_000_000;
    // The mock cluster keeps at most 5 MiB a partition: enough partitions
    // that the whole backlog stays in it. (tansu, one record per batch,
    // produces too slowly for a backlog this size.) The cluster lives in
    // this process; the sink is a child process whose RSS is measured.
    const PARTITIONS: i32 = 64;
    // The documented bound (docs/operations.md) for these settings: 64 MiB
    // plus, per partition, twice the fetch queue (2 x 256 KiB, the floor),
    // one fetch response (max.partition.fetch.bytes, 256 KiB) and two
    // batches (2 x 64 KiB).
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    const BOUND: u64 = 64 * MIB + PARTITIONS as u64 * (512 * KIB + 256 * KIB + 128 * KIB);
    let (url, client) = fresh_db("memory").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", PARTITIONS);

    // Postgres stalls: the target is locked; commits time out and retry.
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "memory", "")
        .replace("max_rows: 2000", "max_rows: 2000\n  max_bytes: 64KiB")
        .replace("pool_size: 4", "pool_size: 4\n  lock_timeout: 1s")
        .replace(
            "heartbeat.interval.ms: \"300\"",
            "heartbeat.interval.ms: \"300\"\n    max.partition.fetch.bytes: \"262144\"",
        );
    let sink = Replica::spawn(&yaml);

    // ~150 bytes a record: the backlog (~150 MB of values) is larger than
    // the bound, and far larger than what the sink holds.
    let pad = "x".repeat(100);
    let records: Produced = orders(ROWS, PARTITIONS, 5_000)
        .into_iter()
        .map(|(p, k, v)| {
            let v = String::from_utf8(v.unwrap()).unwrap();
            let padded = format!("{},\"pad\":\"{pad}\"}}", v.trim_end_matches('}'));
            (p, k, Some(padded.into_bytes()))
        })
        .collect();
    let end = produce_all(&kafka, "orders", records).await;
    assert_eq!(end.values().sum::<i64>(), ROWS as i64);
    // All 1,000,000 waiting: measure while the sink fetches and retries.
    let mut peak = 0;
    let mut samples = 0;
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(15) {
        peak = peak.max(sink.rss_bytes().expect("sink is running"));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (Counting the locked table would wait for the lock: ask the offsets.)
    assert!(
        stored_offsets(&client, "orders").await.is_empty(),
        "nothing commits while the table is locked"
    );
    println!(
        "peak RSS {:.1} MiB over {samples} samples with {ROWS} records waiting (bound {:.1} MiB)",
        peak as f64 / MIB as f64,
        BOUND as f64 / MIB as f64
    );
    assert!(
        peak < BOUND,
        "RSS {peak} over the bound {BOUND}:\n{}",
        sink.log_tail()
    );

    // Released, it drains everything exactly once.
    locker.batch_execute("COMMIT").await.unwrap();
    wait_drained(&client, "orders", &end, Duration::from_secs(300)).await;
    let (status, _, logs) = sink.terminate().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_orders_exact(&client, ROWS as i64).await;
}
