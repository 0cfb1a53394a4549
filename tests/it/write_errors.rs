//! Errors of single records are isolated by bisection and dead-lettered
//! (or halt the partition with `on_error: stop`); errors that are not about
//! a record are retried; two topics go to their own tables.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const BAD: [usize; 10] = [37, 512, 1200, 1999, 2500, 3001, 3333, 4000, 4500, 4999];

fn ledger(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (k text NOT NULL, seq bigint NOT NULL, amount numeric CHECK (amount >= 0),
         customer_id integer REFERENCES customers (id), src_offset bigint NOT NULL UNIQUE)"
    )
}

/// 5,000 records on one partition; those at BAD violate CHECK, a foreign
/// key, or NOT NULL (in turn).
fn records() -> Produced {
    (0..5_000)
        .map(|i| {
            let value = match BAD.iter().position(|&b| b == i).map(|n| n % 3) {
                Some(0) => format!(r#"{{"k":"k{i}","seq":{i},"amount":-1,"customer":1}}"#),
                Some(1) => format!(r#"{{"k":"k{i}","seq":{i},"amount":1,"customer":999}}"#),
                Some(_) => format!(r#"{{"seq":{i},"amount":1,"customer":1}}"#),
                None => format!(
                    r#"{{"k":"k{i}","seq":{i},"amount":{},"customer":{}}}"#,
                    i % 50,
                    1 + i % 10
                ),
            };
            (0, None, Some(value.into_bytes()))
        })
        .collect()
}

fn config(brokers: &str, url: &str, group: &str, table: &str, extra: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: {group}
  librdkafka: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "300" }}
postgres: {{ url: "{url}", pool_size: 3 }}
batch: {{ max_rows: 5000, linger: 2s }}
routes:
  - topic: ledger
    table: {table}
{extra}
    columns:
      k: /k
      seq: /seq
      amount: /amount
      customer_id: /customer
      src_offset: $offset
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_in_a_batch_are_dead_lettered_or_halt_the_partition() {
    let (url, client) = fresh_db("write_errors").await;
    client
        .batch_execute("CREATE TABLE customers (id integer PRIMARY KEY); INSERT INTO customers SELECT generate_series(1, 10)")
        .await
        .unwrap();
    for table in ["ledger_copy", "ledger_insert", "ledger_stop"] {
        client.batch_execute(&ledger(table)).await.unwrap();
    }
    let kafka = kafka("ledger", 1);
    let end = produce_all(&kafka, "ledger", records()).await;
    assert_eq!(end[&0], 5_000);
    let brokers = kafka.bootstrap_servers();
    let stop_yaml = config(brokers, &url, "g3", "ledger_stop", "    on_error: stop");
    let sinks = [
        Sink::start(&config(
            brokers,
            &url,
            "g1",
            "ledger_copy",
            "    write_method: copy",
        )),
        Sink::start(&config(
            brokers,
            &url,
            "g2",
            "ledger_insert",
            "    write_method: insert",
        )),
        Sink::start(&stop_yaml),
    ];
    let offset = |group: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT next_offset FROM sluice.offsets WHERE group_id = $1",
                    &[&group],
                )
                .await
                .ok()
                .and_then(|r| r.get::<_, Option<i64>>(0))
        }
    };
    for group in ["g1", "g2"] {
        eventually(
            Duration::from_secs(120),
            "the dead-lettering sinks to drain",
            || async { (offset(group).await == Some(5_000)).then_some(()) },
        )
        .await;
    }
    eventually(
        Duration::from_secs(60),
        "the stopping sink to halt",
        || async { (sinks[2].metric("sluice_partitions_halted") == 1.0).then_some(()) },
    )
    .await;
    let halted_at = offset("g3").await;
    let halts = client
        .query("SELECT \"offset\", error FROM sluice.halts", &[])
        .await
        .unwrap();
    let halts: Vec<(i64, String)> = halts.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        halted_at,
        Some(37),
        "halted before the first bad record: {halts:?}"
    );
    assert_eq!(sinks[0].metric("sluice_dead_letters_total"), 10.0);
    for sink in sinks {
        sink.stop().await.expect("clean stop");
    }

    for table in ["ledger_copy", "ledger_insert"] {
        assert_eq!(
            count(&client, &format!("SELECT count(*) FROM {table}")).await,
            4_990,
            "{table}"
        );
        assert_eq!(
            count(
                &client,
                &format!("SELECT count(DISTINCT src_offset) FROM {table}")
            )
            .await,
            4_990
        );
    }
    let dead = client
        .query(
            "SELECT \"offset\", sqlstate, error FROM sluice.dead_letters WHERE target_table = 'public.ledger_copy' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let offsets: Vec<i64> = dead.iter().map(|r| r.get(0)).collect();
    assert_eq!(offsets, BAD.iter().map(|&b| b as i64).collect::<Vec<_>>());
    for (n, row) in dead.iter().enumerate() {
        let (sqlstate, error): (Option<String>, String) = (row.get(1), row.get(2));
        match n % 3 {
            0 => assert_eq!(sqlstate.as_deref(), Some("23514"), "{error}"),
            1 => assert_eq!(sqlstate.as_deref(), Some("23503"), "{error}"),
            _ => assert!(error.contains("NOT NULL"), "{error}"),
        }
    }
    let same = count(
        &client,
        "SELECT count(*) FROM (SELECT * FROM ledger_copy EXCEPT SELECT * FROM ledger_insert) d",
    )
    .await;
    assert_eq!(same, 0, "copy and insert wrote the same rows");
    assert_eq!(count(&client, "SELECT count(*) FROM ledger_stop").await, 37);

    // `sluice check` says why the partition halted.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stop.yaml");
    std::fs::write(&path, &stop_yaml).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("halted before offset 37"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topics_go_to_their_own_tables() {
    let (url, client) = fresh_db("two_routes").await;
    client
        .batch_execute(&format!(
            "{ORDERS_TABLE}; CREATE TABLE payments (id bigint PRIMARY KEY, src_topic text NOT NULL, paid numeric)"
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 2);
    kafka.create_topic("payments", 3).unwrap();
    let orders_end = produce_all(&kafka, "orders", orders(3_000, 2, 100)).await;
    let payments: Produced = (0..2_000)
        .map(|i| {
            (
                i % 3,
                None,
                Some(format!(r#"{{"id":{i},"paid":"{i}.50"}}"#).into_bytes()),
            )
        })
        .collect();
    let payments_end = produce_all(&kafka, "payments", payments).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "g", "")
        + "  - topic: payments\n    table: payments\n    columns:\n      id: /id\n      paid: /paid\n      src_topic: $topic\n";
    let sink = Sink::start(&yaml);
    wait_drained(&client, "orders", &orders_end, Duration::from_secs(90)).await;
    wait_drained(&client, "payments", &payments_end, Duration::from_secs(90)).await;
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, 3_000).await;
    assert_eq!(count(&client, "SELECT count(*) FROM payments").await, 2_000);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM payments WHERE src_topic <> 'payments'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(DISTINCT id) FROM payments").await,
        2_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_retried_without_loss_or_dead_letters() {
    let (url, client) = fresh_db("terminated").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 4);
    let end = produce_all(&kafka, "orders", orders(60_000, 4, 500)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "g", "")
        .replace("max_rows: 2000", "max_rows: 300");
    let sink = Sink::start(&yaml);
    for round in 1..=3i64 {
        eventually(Duration::from_secs(60), "progress", || async {
            (count(&client, "SELECT count(*) FROM orders").await >= round * 12_000).then_some(())
        })
        .await;
        // Between two batches the sink may hold no connection for a moment
        // (all of them were just terminated): try until one is terminated.
        eventually(
            Duration::from_secs(30),
            &format!("round {round}: a sink connection to terminate"),
            || async {
                let killed = count(
                    &client,
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = 'sluice' AND datname = current_database() \
                     AND pid <> pg_backend_pid()) t",
                )
                .await;
                (killed > 0).then_some(())
            },
        )
        .await;
    }
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, 60_000).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
}
