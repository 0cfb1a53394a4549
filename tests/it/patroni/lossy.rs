//! Asynchronous replication: the standby promoted after the primary's crash
//! lacks the primary's last commits, and because the offsets are rows in
//! the same database, it lacks their offsets too. sluice must find out (the
//! fence at a busy partition's next commit; the idle check on a caught-up
//! one, which gets nothing new), re-read those records from Kafka and write
//! them again: the table ends exact all the same.

use std::collections::HashMap;
use std::time::Instant;

use super::cluster::signal;
use super::configs::Replication;
use super::{Run, PARTITIONS, RECOVERY, TOTAL};
use crate::harness::*;

/// `maximum_lag_on_failover` allows the standby's lag here (the WAL of a
/// few tens of thousands of rows); Patroni's default (1 MiB) would refuse
/// to promote it and wait for the old primary instead.
const ASYNC: Replication = Replication {
    synchronous: false,
    maximum_lag_on_failover: 64 << 20,
};

/// The standby stops receiving WAL once this many rows are written: the
/// rest, a few tens of thousands, are what it lacks.
const STALL_AFTER: f64 = 170_000.0;

/// Partitions that get records after the failover (the others stay idle).
const BUSY: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_failover_that_lost_commits_is_written_again() {
    let all = orders(TOTAL + 16_000, PARTITIONS, 800);
    let (first, later) = all.split_at(TOTAL);
    // Per key, the later records continue its sequence; keys of idle
    // partitions simply end earlier.
    let later: Produced = later.iter().filter(|r| r.0 < BUSY).cloned().collect();
    let mut run = Run::start("lossy", ASYNC, first.to_vec()).await;
    let (old, new) = (run.old, 1 - run.old);

    // The link to the standby stalls near the end of the stream: its
    // walsender stops, the primary goes on committing (asynchronous: no
    // commit waits for the standby).
    eventually(RECOVERY, "rows before the stall", || async {
        let n = run.sink.metric("sluice_rows_written_total").await?;
        (n >= STALL_AFTER).then_some(())
    })
    .await;
    let walsenders: Vec<u32> = run
        .client
        .query("SELECT pid FROM pg_stat_replication", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect();
    assert!(!walsenders.is_empty(), "the standby streams");
    signal("STOP", &walsenders);
    // Every partition drains and falls idle, on the old primary only.
    let end = run.produced().await;
    wait_drained(&run.client, "orders", &end, RECOVERY).await;
    let standby = connect(&run.cluster.node_url(new, "sink")).await;
    let on_standby = stored_offsets(&standby, "orders").await;
    let behind: Vec<i32> = end
        .iter()
        .filter(|(p, o)| on_standby.get(p).is_none_or(|s| s < o))
        .map(|(p, _)| *p)
        .collect();
    assert!(
        behind.iter().any(|p| *p >= BUSY),
        "an idle partition must lose commits too: standby {on_standby:?}, end {end:?}"
    );
    let lost: i64 = behind
        .iter()
        .map(|p| end[p] - on_standby.get(p).copied().unwrap_or(0))
        .sum();

    // The crash: the primary's postmaster and the stalled walsender die, so
    // nothing more reaches the standby; Patroni promotes it.
    let failed = Instant::now();
    let watcher = run.watch(failed);
    run.cluster.kill_postmaster(old);
    signal("KILL", &walsenders);
    let more = produce_all(&run.kafka, "orders", later.clone()).await;
    let mut end_all: HashMap<i32, i64> = end.clone();
    for (p, o) in more {
        let e = end_all.entry(p).or_insert(0);
        *e = (*e).max(o);
    }
    let rows = (TOTAL + later.len()) as i64;
    run.assert_exact_on(new, &end_all, rows).await;
    let timeline = watcher.await.unwrap();
    run.report(
        &format!(
            "async kill -9, {lost} rows lost over {} partitions",
            behind.len()
        ),
        &timeline,
    )
    .await;
    assert!(timeline.first_commit.is_some(), "{timeline}");
    // Every partition that lost commits rewound at least once.
    let rewinds = run
        .sink
        .metric("sluice_offset_rewinds_total")
        .await
        .unwrap();
    assert!(
        rewinds >= behind.len() as f64,
        "{rewinds} rewinds for {} partitions behind",
        behind.len()
    );
}
