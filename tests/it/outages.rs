//! Postgres misbehaving: a lock held past lock_timeout, a read-only
//! database, a stopped server. Each is retried — nothing lost, duplicated
//! or dead-lettered — and writing resumes by itself.

use std::time::Duration;

use sluice::embedded::postgres::EmbeddedPostgres;

use crate::harness::*;
use crate::proxy::Proxy;

/// Quick retries so a test does not wait out long backoffs.
fn config(brokers: &str, url: &str, postgres_extra: &str) -> String {
    orders_config(brokers, url, "orders", "g", "")
        .replace("max_rows: 2000", "max_rows: 500")
        .replace("pool_size: 4", &format!("pool_size: 4\n{postgres_extra}"))
        + "retry:\n  initial_backoff: 50ms\n  max_backoff: 1s\n"
}

async fn assert_done(client: &tokio_postgres::Client, sink: Sink, rows: i64) {
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(client, rows).await;
    assert_eq!(
        count(client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_lock_timeout_is_retried() {
    let (url, client) = fresh_db("lock_timeout").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(4_000, 2, 100)).await;
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let sink = Sink::start(&config(
        kafka.bootstrap_servers(),
        &url,
        "  lock_timeout: 300ms",
    ));
    eventually(
        Duration::from_secs(60),
        "lock timeouts to be retried",
        || async {
            (metric_where(&sink.registry, "sluice_pg_errors_total", "class", "55") >= 2.0)
                .then_some(())
        },
    )
    .await;
    // (The table itself cannot be read while the test holds its lock.)
    assert!(
        stored_offsets(&client, "orders").await.is_empty(),
        "nothing committed yet"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    assert!(sink.metric("sluice_retries_total") >= 2.0);
    assert_done(&client, sink, 4_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_retried_until_writable() {
    let (url, client) = fresh_db("read_only").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let database = url.rsplit('/').next().unwrap().to_string();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(20_000, 2, 200)).await;
    let sink = Sink::start(&config(kafka.bootstrap_servers(), &url, ""));
    eventually(Duration::from_secs(60), "progress", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 2_000).then_some(())
    })
    .await;
    // What a client sees of a failed-over old primary: new sessions are
    // read-only (SQLSTATE 25006).
    let reconnect_sluice =
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                            WHERE application_name = 'sluice' AND datname = current_database()) t";
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    count(&client, reconnect_sluice).await;
    eventually(
        Duration::from_secs(60),
        "read-only errors to be retried",
        || async {
            (metric_where(&sink.registry, "sluice_pg_errors_total", "class", "25") >= 2.0)
                .then_some(())
        },
    )
    .await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" SET default_transaction_read_only = off"
        ))
        .await
        .unwrap();
    count(&client, reconnect_sluice).await;
    wait_drained(&client, "orders", &end, Duration::from_secs(90)).await;
    assert_done(&client, sink, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_waited_for_and_writing_resumes() {
    // Its own server: stopping the shared one would stop every test.
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("outage").await.unwrap();
    let client = connect(&url).await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 4);
    let end = produce_all(&kafka, "orders", orders(60_000, 4, 400)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = config(kafka.bootstrap_servers(), &url, "  unready_after: 2s")
        .replace("max_rows: 500", "max_rows: 200")
        + &format!("http:\n  listen: \"127.0.0.1:{port}\"\n");
    let sink = Sink::start(&yaml);
    let readyz = || async move { get(port, "/readyz").await.map(|(status, _)| status) };
    eventually(Duration::from_secs(60), "ready and writing", || async {
        let rows = count(&client, "SELECT count(*) FROM orders").await;
        (readyz().await == Some(200) && rows >= 3_000).then_some(())
    })
    .await;
    drop(client);

    let pg = std::sync::Arc::new(pg);
    let stopper = std::sync::Arc::clone(&pg);
    tokio::task::spawn_blocking(move || stopper.stop_server())
        .await
        .unwrap()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "not ready during the outage",
        || async { (readyz().await == Some(503)).then_some(()) },
    )
    .await;
    // The outage lasts 20 s in all.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let starter = std::sync::Arc::clone(&pg);
    tokio::task::spawn_blocking(move || starter.start_server())
        .await
        .unwrap()
        .unwrap();

    let client = connect(&url).await;
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    eventually(Duration::from_secs(30), "ready again", || async {
        (readyz().await == Some(200)).then_some(())
    })
    .await;
    assert!(sink.metric("sluice_retries_total") >= 1.0);
    assert_done(&client, sink, 60_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_black_hole_is_detected_and_survived() {
    let (url, client) = fresh_db("black_hole").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(30_000, 2, 200)).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    // Attempts are abandoned after 3 x statement_timeout = 3 s.
    let yaml = config(
        kafka.bootstrap_servers(),
        &proxied,
        "  statement_timeout: 1s\n  connect_timeout: 2s",
    )
    .replace("max_rows: 500", "max_rows: 200");
    let sink = Sink::start(&yaml);
    eventually(Duration::from_secs(60), "progress", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 3_000).then_some(())
    })
    .await;

    let before = sink.metric("sluice_retries_total");
    proxy.set_stalled(true);
    let stalled = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "the black hole to be noticed",
        || async { (sink.metric("sluice_retries_total") > before).then_some(()) },
    )
    .await;
    let noticed = stalled.elapsed();
    assert!(
        noticed <= Duration::from_secs(8),
        "noticed after {noticed:?}, bound is 3 s + a batch"
    );
    // The black hole lasts 30 s in all.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stalled.elapsed())).await;
    proxy.set_stalled(false);

    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    assert_done(&client, sink, 30_000).await;
}
