//! Crash/restart: the sink runs as a child process and is killed with
//! SIGKILL at five points mid-drain, restarted each time; the result is
//! exact and the stored offsets equal the high watermarks.

use std::time::Duration;

use crate::harness::*;
use crate::pgbouncer::{target_db, Via};
use crate::replica::Replica;

const TOTAL: i64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_five_times_loses_and_duplicates_nothing() {
    killed_five_times(Via::Direct).await;
}

pub async fn killed_five_times(via: Via) {
    let db = target_db(&format!("crash_{via:?}").to_lowercase(), via).await;
    let (url, client) = (&db.url, &db.client);
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 8);
    let end = produce_all(&kafka, "orders", orders(TOTAL as usize, 8, 1_000)).await;

    // Small batches keep the drain long enough to be interrupted often.
    let yaml = orders_config(kafka.bootstrap_servers(), url, "orders", "crash", "")
        .replace("max_rows: 2000", "max_rows: 300")
        .replace(
            "session.timeout.ms: \"6000\"",
            "session.timeout.ms: \"3000\"",
        );

    let mut kills = 0;
    let mut last = 0;
    while kills < 5 {
        let replica = Replica::spawn(&yaml);
        // Kill at a point that differs each round: after a varying number of
        // new rows, so some kills land mid-batch and some between batches.
        let step = 4_000 + (kills as i64 * 3_701) % 9_000;
        let target = (last + step).min(TOTAL - 1);
        let reached = eventually(
            Duration::from_secs(120),
            "progress before the kill",
            || async {
                let n = count(client, "SELECT count(*) FROM orders").await;
                (n >= target).then_some(n)
            },
        )
        .await;
        replica.kill();
        kills += 1;
        last = reached;
        eprintln!("kill {kills} after {reached} rows");
    }
    let replica = Replica::spawn(&yaml);
    wait_drained(client, "orders", &end, Duration::from_secs(180)).await;
    replica.kill();

    assert_eq!(kills, 5);
    assert_orders_exact(client, TOTAL).await;
    assert_eq!(stored_offsets(client, "orders").await, end);
    db.assert_pooler_clean();
}
