//! The edges of the offset contract and of shutdown (the hardening issue):
//! each test names the item it proves.

use std::time::Duration;

use crate::harness::*;
use crate::replica::Replica;
use crate::tansu::Tansu;

/// Hardening #13: SIGTERM finishes when the broker is gone. Closing the
/// consumer (leaving the group) gets only what is left of `shutdown_grace`;
/// past it the replica exits anyway, non-zero, saying why — and the rows it
/// committed stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_exits_within_the_grace() {
    const ROWS: usize = 2_000;
    let (url, client) = fresh_db("edge_sigterm_no_broker").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let broker = Tansu::start();
    broker.create_topic("orders", 2).await;
    let end = broker.produce_all("orders", orders(ROWS, 2, 50)).await;
    let yaml = format!(
        "{}shutdown_grace: 4s\n",
        orders_config(&broker.bootstrap, &url, "orders", "edge13", "")
    );
    let replica = Replica::spawn(&yaml);
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    drop(broker);
    let (status, took, logs) = replica.terminate().await;
    assert!(
        took < Duration::from_secs(8),
        "exit took {took:?} with a 4s grace:\n{logs}"
    );
    assert_ne!(
        status.code(),
        Some(0),
        "a close that timed out is not clean:\n{logs}"
    );
    assert!(
        logs.contains("could not leave the consumer group within shutdown_grace"),
        "{logs}"
    );
    assert_orders_exact(&client, ROWS as i64).await;
    assert_eq!(stored_offsets(&client, "orders").await, end);
}

/// Hardening #5: an UNLOGGED target loses its rows on a Postgres crash
/// while the (logged) offsets survive, so it is refused at start-up and by
/// `check` unless the route accepts that with `allow_unlogged: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlogged_target_is_refused_unless_allowed() {
    use sluice::config::Config;
    use sluice::sink::{plan_writers, PlanError};

    let (url, client) = fresh_db("edge_unlogged").await;
    client
        .batch_execute(&ORDERS_TABLE.replace("CREATE TABLE", "CREATE UNLOGGED TABLE"))
        .await
        .unwrap();
    let refused = Config::from_yaml(
        &orders_config("127.0.0.1:1", &url, "orders", "g", ""),
        |_| None,
    )
    .unwrap();
    match plan_writers(&refused, &client).await {
        Err(PlanError::Problems(p)) => {
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].path, "routes[0].table");
            assert!(p[0].message.contains("UNLOGGED"), "{}", p[0].message);
            assert!(p[0].message.contains("allow_unlogged"), "{}", p[0].message);
        }
        other => panic!(
            "an unlogged target was accepted: {:?}",
            other.map(|w| w.len())
        ),
    }
    let allowed = Config::from_yaml(
        &orders_config(
            "127.0.0.1:1",
            &url,
            "orders",
            "g",
            "    allow_unlogged: true",
        ),
        |_| None,
    )
    .unwrap();
    assert!(plan_writers(&allowed, &client).await.is_ok());
    client
        .batch_execute("ALTER TABLE orders SET LOGGED")
        .await
        .unwrap();
    assert!(plan_writers(&refused, &client).await.is_ok());
}
