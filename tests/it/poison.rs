//! Poison records: invalid JSON, type mismatches, a missing NOT NULL value
//! (caught while decoding) and CHECK violations (refused by Postgres, found
//! by bisecting the batch) land in dead_letters with their original bytes;
//! every other record is written.

use std::collections::HashMap;
use std::time::Duration;

use sluice::embedded::kafka::produce;

use crate::harness::*;
use crate::pgbouncer::{target_db, Via};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_with_their_bytes() {
    poison_records_are_dead_lettered(Via::Direct).await;
}

pub async fn poison_records_are_dead_lettered(via: Via) {
    let db = target_db(&format!("poison_{via:?}").to_lowercase(), via).await;
    let (url, client) = (&db.url, &db.client);
    client
        .batch_execute(&ORDERS_TABLE.replace(
            "amount numeric(10,2),",
            "amount numeric(10,2) CHECK (amount >= 0),",
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 4);
    let mut records = orders(20_000, 4, 400);
    let mut bad = 0;
    for (i, (_, _, value)) in records.iter_mut().enumerate() {
        if i % 100 != 37 {
            continue;
        }
        bad += 1;
        *value = Some(match (i / 100) % 5 {
            0 => b"{\"k\": \"truncated".to_vec(),
            1 => {
                format!(r#"{{"k":"poison-{i}","seq":"not a number","amount":"1.00"}}"#).into_bytes()
            }
            2 => format!(r#"{{"k":"poison-{i}","seq":1,"amount":{{"nested":true}}}}"#).into_bytes(),
            3 => format!(r#"{{"seq":1,"amount":"1.00","id":{i}}}"#).into_bytes(),
            _ => format!(r#"{{"k":"poison-{i}","seq":1,"amount":"-5.00"}}"#).into_bytes(),
        });
    }
    let delivered = produce(kafka.bootstrap_servers(), "orders", records.clone())
        .await
        .unwrap();
    let mut end = HashMap::new();
    let mut poison = HashMap::new();
    for (i, ((p, o), (_, _, value))) in delivered.iter().zip(&records).enumerate() {
        let e = end.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
        if i % 100 == 37 {
            poison.insert((*p, *o), value.clone().unwrap());
        }
    }
    assert_eq!(poison.len(), bad);

    let sink = Sink::start(&orders_config(
        kafka.bootstrap_servers(),
        url,
        "orders",
        "g",
        "",
    ));
    wait_drained(client, "orders", &end, Duration::from_secs(120)).await;
    // The offsets are committed before the commit's metrics are counted.
    eventually(
        Duration::from_secs(10),
        "every dead letter counted",
        || async { (sink.metric("sluice_dead_letters_total") == bad as f64).then_some(()) },
    )
    .await;
    sink.stop().await.expect("clean stop");

    let rows = client
        .query(
            "SELECT partition, \"offset\", value, error, sqlstate FROM sluice.dead_letters",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), bad);
    let mut refused = 0;
    for row in rows {
        let at: (i32, i64) = (row.get(0), row.get(1));
        let value: Vec<u8> = row.get(2);
        let error: String = row.get(3);
        let sqlstate: Option<String> = row.get(4);
        assert_eq!(
            poison.get(&at),
            Some(&value),
            "dead letter at {at:?} keeps the original bytes"
        );
        assert!(!error.is_empty());
        if let Some(code) = sqlstate {
            assert_eq!(code, "23514", "{error}");
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        bad / 5,
        "CHECK violations were isolated by bisection"
    );
    assert_eq!(
        count(client, "SELECT count(*) FROM orders").await,
        20_000 - bad as i64
    );
    assert_eq!(
        count(
            client,
            "SELECT count(*) FROM orders WHERE k LIKE 'poison-%'"
        )
        .await,
        0
    );
    db.assert_pooler_clean();
}

/// Hardening #14: a poison storm is not a poison record. When every record
/// fails for one reason (here a CHECK no record meets: a schema mistake),
/// dead-lettering them one bisected transaction at a time would empty the
/// topic into the dead-letter table with `/readyz` green. The breaker halts
/// the partition once more than `max_dead_letter_ratio` of its recent
/// records were dead-lettered: about 100 dead letters, not 3,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_storm_halts_the_partition() {
    let (url, client) = fresh_db("poison_storm").await;
    client
        .batch_execute(&ORDERS_TABLE.replace(
            "amount numeric(10,2),",
            "amount numeric(10,2) CHECK (amount < 0),",
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 1);
    produce_all(&kafka, "orders", orders(3_000, 1, 30)).await;
    let sink = Sink::start(&orders_config(
        kafka.bootstrap_servers(),
        &url,
        "orders",
        "storm",
        "",
    ));
    eventually(
        Duration::from_secs(120),
        "the breaker to halt the partition",
        || async { (sink.metric("sluice_partitions_halted") == 1.0).then_some(()) },
    )
    .await;
    assert_eq!(sink.metric("sluice_poison_storms_total"), 1.0);
    let dead = count(&client, "SELECT count(*) FROM sluice.dead_letters").await;
    assert!((99..=101).contains(&dead), "{dead} dead letters");
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await, 0);
    let halt: (i64, String) = client
        .query_one(
            "SELECT \"offset\", error FROM sluice.halts WHERE group_id = 'storm'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(halt.0, dead, "halted at the first record not dead-lettered");
    assert!(halt.1.contains("poison storm"), "{}", halt.1);
    assert!(
        halt.1.contains("23514") || halt.1.contains("check constraint"),
        "{}",
        halt.1
    );
    let stored: i64 = client
        .query_one(
            "SELECT next_offset FROM sluice.offsets WHERE group_id = 'storm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, dead,
        "the dead letters before the halt are committed"
    );
    sink.stop().await.expect("a halt is not a failure");
}
