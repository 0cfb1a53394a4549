//! Several routes of one topic (#17): every record is written by each
//! route in the partition's one transaction, with its offset, so the
//! tables always agree; a record one route refuses is dead-lettered for
//! that route alone.

use std::time::Duration;

use crate::harness::*;
use crate::replica::Replica;

const STATE_TABLE: &str = "CREATE TABLE order_state (
    k text PRIMARY KEY, seq bigint NOT NULL, amount numeric(10,2))";

/// The orders route (an append log) plus a current-state upsert of the
/// same topic, guarded by the record's `seq`.
fn two_routes(brokers: &str, url: &str, group: &str) -> String {
    format!(
        "{}  - topic: orders
    table: order_state
    mode: upsert
    key: [k]
    version: seq
    columns:
      k: /k
      seq: /seq
      amount: /amount
",
        orders_config(brokers, url, "orders", group, "")
    )
}

/// Keys whose row in `order_state` is not the latest record of the key in
/// `orders` (or is missing, or has no record there).
async fn disagreeing_keys(client: &tokio_postgres::Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM order_state s
         FULL JOIN (SELECT DISTINCT ON (k) k, seq, amount FROM orders ORDER BY k, seq DESC) o
         USING (k)
         WHERE s.seq IS DISTINCT FROM o.seq OR s.amount IS DISTINCT FROM o.amount",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_log_and_a_state_table_from_one_topic_agree_through_kill_9() {
    const TOTAL: i64 = 60_000;
    const KEYS: usize = 700; // orders() uses a share of them
    let (url, client) = fresh_db("routes_kill").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    client.batch_execute(STATE_TABLE).await.unwrap();
    let kafka = kafka("orders", 8);
    let end = produce_all(&kafka, "orders", orders(TOTAL as usize, 8, KEYS)).await;
    let yaml = two_routes(kafka.bootstrap_servers(), &url, "routes_kill")
        .replace("max_rows: 2000", "max_rows: 300")
        .replace(
            "session.timeout.ms: \"6000\"",
            "session.timeout.ms: \"3000\"",
        );

    let mut last = 0;
    for kill in 0..3 {
        let replica = Replica::spawn(&yaml);
        let target = (last + 5_000 + kill * 3_701).min(TOTAL - 1);
        last = eventually(
            Duration::from_secs(120),
            "progress before the kill",
            || async {
                let n = count(&client, "SELECT count(*) FROM orders").await;
                (n >= target).then_some(n)
            },
        )
        .await;
        replica.kill();
        // Nothing is in flight now: a transaction either wrote both
        // tables or neither, so they agree at every kill.
        assert_eq!(
            disagreeing_keys(&client).await,
            0,
            "after kill {kill} at {last} rows"
        );
    }
    let replica = Replica::spawn(&yaml);
    wait_drained(&client, "orders", &end, Duration::from_secs(180)).await;
    replica.kill();

    assert_orders_exact(&client, TOTAL).await;
    let keys = count(&client, "SELECT count(DISTINCT k) FROM orders").await;
    assert!(keys > 100, "{keys} keys");
    assert_eq!(
        count(&client, "SELECT count(*) FROM order_state").await,
        keys
    );
    assert_eq!(disagreeing_keys(&client).await, 0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    assert_eq!(stored_offsets(&client, "orders").await, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_bad_for_one_route_is_dead_lettered_for_it_and_written_by_the_other() {
    const TOTAL: usize = 3_000;
    let (url, client) = fresh_db("routes_bad").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE checked (k text, seq bigint, amount numeric(10,2) CHECK (amount >= 0),
                                   n integer, src_partition integer, src_offset bigint,
                                   UNIQUE (src_partition, src_offset))",
        )
        .await
        .unwrap();
    // Every 97th record has a negative amount (the `checked` table refuses
    // it: 23514), every 89th an `n` that is not an integer (the `checked`
    // route cannot decode it); `orders` maps neither constraint nor `n`.
    let (mut refused, mut undecodable) = (0, 0);
    let records: Produced = (0..TOTAL)
        .map(|i| {
            let amount = if i % 97 == 5 {
                refused += 1;
                "-1.00".to_string()
            } else {
                format!("{}.25", i % 500)
            };
            let n = if i % 89 == 7 && i % 97 != 5 {
                undecodable += 1;
                "\"seven\"".to_string()
            } else {
                i.to_string()
            };
            let value = format!(r#"{{"k":"key-{i}","seq":0,"amount":"{amount}","n":{n}}}"#);
            ((i % 3) as i32, None, Some(value.into_bytes()))
        })
        .collect();
    let kafka = kafka("orders", 3);
    let end = produce_all(&kafka, "orders", records).await;
    let yaml = format!(
        "{}  - topic: orders
    table: checked
    name: checked-audit
    columns:
      k: /k
      seq: /seq
      amount: /amount
      n: /n
      src_partition: $partition
      src_offset: $offset
",
        orders_config(kafka.bootstrap_servers(), &url, "orders", "routes_bad", "")
    );
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    let registry = sink.registry.clone();
    sink.stop().await.expect("stops cleanly");

    // The route that maps no constraint wrote every record.
    assert_eq!(
        count(&client, "SELECT count(*) FROM orders").await,
        TOTAL as i64
    );
    let bad = refused + undecodable;
    assert_eq!(
        count(&client, "SELECT count(*) FROM checked").await,
        (TOTAL - bad) as i64
    );
    // Each bad record is dead-lettered once, for its route, with its bytes.
    let dead = client
        .query(
            "SELECT route, target_table, sqlstate, error, value IS NOT NULL
             FROM sluice.dead_letters ORDER BY partition, \"offset\"",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), bad);
    for row in &dead {
        assert_eq!(row.get::<_, String>(0), "checked-audit");
        assert_eq!(row.get::<_, String>(1), "public.checked");
        assert!(row.get::<_, bool>(4));
    }
    let of = |state: Option<&str>| {
        dead.iter()
            .filter(|r| r.get::<_, Option<String>>(2).as_deref() == state)
            .count()
    };
    assert_eq!(of(Some("23514")), refused, "refused by the CHECK");
    assert_eq!(of(None), undecodable, "not decodable for the route");
    // The records missing from `checked` are exactly the dead-lettered ones.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM orders o
             WHERE NOT EXISTS (SELECT 1 FROM checked c
                               WHERE (c.src_partition, c.src_offset) = (o.src_partition, o.src_offset))
                <> EXISTS (SELECT 1 FROM sluice.dead_letters d
                           WHERE (d.partition, d.\"offset\") = (o.src_partition, o.src_offset))",
        )
        .await,
        0
    );
    let written =
        |table: &str| metric_where(&registry, "sluice_rows_written_total", "table", table);
    assert_eq!(written("public.orders"), TOTAL as f64);
    assert_eq!(written("public.checked"), (TOTAL - bad) as f64);
    assert_eq!(
        metric_where(
            &registry,
            "sluice_dead_letters_total",
            "table",
            "public.checked"
        ),
        bad as f64
    );
    assert_eq!(
        metric(&registry, "sluice_partition_rows_total"),
        TOTAL as f64
    );
    assert_eq!(stored_offsets(&client, "orders").await, end);
}
