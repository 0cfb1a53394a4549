//! Failover to another host of a multi-host URL while the old primary stays
//! up, read-only, with every session kept.

use std::time::Duration;

use bytes::Bytes;
use futures::{pin_mut, SinkExt, TryStreamExt};
use sluice::embedded::postgres::{shared, EmbeddedPostgres};
use tokio_postgres::Client;

use crate::harness::*;

/// Copies every row of `table` (binary COPY; both sides have the same
/// columns).
async fn copy_table(from: &Client, to: &Client, table: &str) {
    let rows: Vec<Bytes> = from
        .copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let sink = to
        .copy_in::<_, Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .unwrap();
    pin_mut!(sink);
    for chunk in rows {
        sink.send(chunk).await.unwrap();
    }
    sink.finish().await.unwrap();
}

/// Hardening #17: the old primary (A) stays up after a failover with
/// `default_transaction_read_only = on`, and sluice's pooled sessions to it
/// are not killed. Every write there fails with 25006; the sink must drop
/// those connections so that the pool reconnects through the multi-host URL
/// (`target_session_attrs=read-write`) and lands on the new primary (B).
///
/// B is what an asynchronous replica looks like when promoted: it has A's
/// state as of the first batch but lost the second. The fence on B must find
/// that out and write the second batch again, so that B ends with every
/// record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_old_primary_is_left_for_the_writable_host() {
    // A is its own server: `ALTER SYSTEM` on the shared one would make every
    // other test read-only. B is a database of the same name on the shared one.
    let a = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .unwrap();
    let (b_url, b) = fresh_db("failover").await;
    let database = b_url.rsplit('/').next().unwrap().to_string();
    connect(&a.url("postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await
        .unwrap();
    let a_sql = connect(&a.url(&database)).await;
    for db in [&a_sql, &b] {
        db.batch_execute(ORDERS_TABLE).await.unwrap();
    }
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
        a.port(),
        shared().unwrap().port()
    );

    // Three batches of one stream, so that (key, seq) is unique overall.
    let all = orders(9_000, 2, 200);
    let (first, rest) = all.split_at(3_000);
    let (second, third) = rest.split_at(3_000);
    let kafka = kafka("orders", 2);
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "g", "")
        + "retry:\n  initial_backoff: 50ms\n  max_backoff: 1s\n";
    let end = produce_all(&kafka, "orders", first.to_vec()).await;
    let sink = Sink::start(&yaml);
    wait_drained(&a_sql, "orders", &end, Duration::from_secs(60)).await;

    // The replica B: sluice's schema, A's rows and offsets as of now.
    sluice::migrate::migrate(&mut connect(&b_url).await, "sluice")
        .await
        .unwrap();
    copy_table(&a_sql, &b, "orders").await;
    copy_table(&a_sql, &b, "sluice.offsets").await;
    assert_eq!(stored_offsets(&b, "orders").await, end);

    // A second batch that only A gets: the commits B will have lost.
    let end = produce_all(&kafka, "orders", second.to_vec()).await;
    wait_drained(&a_sql, "orders", &end, Duration::from_secs(60)).await;

    // The failover: A turns read-only for every session, none is killed.
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice'";
    let before = count(&a_sql, sessions).await;
    assert!(before > 0, "sluice is connected to A");
    a_sql
        .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await
        .unwrap();
    a_sql
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();

    let end = produce_all(&kafka, "orders", third.to_vec()).await;
    wait_drained(&b, "orders", &end, Duration::from_secs(60)).await;

    // B has every record exactly once, the lost second batch included.
    assert_orders_exact(&b, 9_000).await;
    assert_eq!(
        count(&b, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    // (Not necessarily after a 25006: the pool's check turns an idle
    // session to A away before any write is tried on it.)
    assert!(sink.metric("sluice_offset_rewinds_total") >= 1.0);
    // A kept what it had before it turned read-only, and nothing since.
    assert_orders_exact(&a_sql, 6_000).await;
    assert_eq!(
        stored_offsets(&a_sql, "orders").await.values().sum::<i64>(),
        6_000
    );
    sink.stop().await.expect("clean stop");
}
