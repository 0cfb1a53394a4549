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
