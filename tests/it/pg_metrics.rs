//! Where commits spend their time (issue #15), read from /metrics after a
//! small pipeline ran: every phase of the batch transactions was timed,
//! dead letters only when there were some, and the pool reports its size
//! and its checkouts.

use std::time::Duration;

use crate::harness::*;

const PHASES: &str = "sluice_pg_transaction_phase_seconds";

/// The sum of the samples of `name` whose labels include `label`
/// (e.g. `phase="fence"`).
fn labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            l.split_once('}')
                .is_some_and(|(labels, _)| labels.contains(label))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn phase(text: &str, phase: &str) -> (f64, f64) {
    let label = format!("phase=\"{phase}\"");
    (
        labelled(text, &format!("{PHASES}_count"), &label),
        labelled(text, &format!("{PHASES}_sum"), &label),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_phases_and_the_pool_are_measured() {
    let (url, client) = fresh_db("pg_metrics").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let mut records = orders(2_000, 2, 40);
    // One record that cannot be decoded: dead-lettered in its batch.
    records[700].2 = Some(b"{\"k\": \"truncated".to_vec());
    let end = produce_all(&kafka, "orders", records).await;
    let port = free_port();
    // A size no default has, so the gauge can only come from the config.
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "g", "")
        .replace("pool_size: 4", "pool_size: 3")
        .replace("max_rows: 2000", "max_rows: 200");
    let sink = Sink::start(&with_http(&yaml, port));
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;

    // A batch's phases are observed as its attempt ends, after the commit
    // the offsets show; its batch metrics right after.
    let text = eventually(
        Duration::from_secs(10),
        "every committed batch's phases observed",
        || async {
            let (_, text) = get(port, "/metrics").await?;
            let batches = total(&text, "sluice_batch_commit_seconds_count");
            let dead = total(&text, "sluice_dead_letters_total");
            (batches > 0.0 && phase(&text, "commit").0 == batches && dead == 1.0).then_some(text)
        },
    )
    .await;
    let batches = total(&text, "sluice_batch_commit_seconds_count");
    for name in ["fence", "rows", "commit"] {
        let (count, sum) = phase(&text, name);
        // Nothing was fenced off or failed: one attempt per batch.
        assert_eq!(count, batches, "{name}: one observation per batch");
        assert!(sum > 0.0, "{name}: took some time ({sum} s)");
    }
    let (count, sum) = phase(&text, "dead_letters");
    assert_eq!(count, 1.0, "only the batch with the bad record");
    assert!(sum > 0.0, "dead_letters: took some time ({sum} s)");

    assert_eq!(
        total(&text, "sluice_pg_pool_size"),
        3.0,
        "postgres.pool_size"
    );
    assert!(
        total(&text, "sluice_pg_pool_wait_seconds_count") >= batches,
        "every batch checked out a connection"
    );
    let open = total(&text, "sluice_pg_pool_connections");
    assert!(
        (1.0..=3.0).contains(&open),
        "open connections within the pool size: {open}"
    );
    assert_eq!(
        labelled(&text, "sluice_pg_pool_connections", "state=\"idle\"")
            + labelled(&text, "sluice_pg_pool_connections", "state=\"in_use\""),
        open,
        "every open connection is idle or in use"
    );
    assert_eq!(
        crate::harness::count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        1
    );
    sink.stop().await.expect("clean stop");
}
