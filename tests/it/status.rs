//! `sluice status` (#15), the cutover gate: lagging before sluice runs
//! (exit 1, lag in records and seconds), caught up once drained (exit 0,
//! owner and group), halted by a halt row or another cluster's offset
//! (exit 2, the reason said), `--wait-caught-up` both ways, dead letters
//! per route, and an unreachable Kafka or a bad config (exit 2, named).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::harness::*;

/// `sluice status <args> --config <yaml>`: (exit code, stdout, stderr).
async fn status(yaml: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    sluice(yaml, &all).await
}

/// `sluice status --json`: (exit code, the report).
async fn status_json(yaml: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = status(yaml, &all).await;
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
    (code, report)
}

/// Produces `records` with Kafka timestamp `at`; the next offset per
/// partition.
async fn produce_at(
    brokers: &str,
    topic: &str,
    records: Produced,
    at: SystemTime,
) -> HashMap<i32, i64> {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut delivered = Vec::new();
    for (p, key, value) in &records {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(*p)
            .timestamp(ms);
        if let Some(k) = key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = value {
            record = record.payload(v.as_slice());
        }
        let (partition, offset) = producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
            .expect("delivered");
        delivered.push((partition, offset));
    }
    next_offsets(delivered)
}

fn partitions(report: &Value) -> &Vec<Value> {
    report["partitions"].as_array().expect("partitions")
}

/// lag_records per partition.
fn lags(report: &Value) -> HashMap<i32, i64> {
    partitions(report)
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap() as i32,
                p["lag_records"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_gates_lagging_then_caught_up_and_counts_dead_letters() {
    let (url, client) = fresh_db("status_gate").await;
    client
        .batch_execute(&ORDERS_TABLE.replace(
            "amount numeric(10,2),",
            "amount numeric(10,2) CHECK (amount >= 0),",
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 2);
    let brokers = kafka.bootstrap_servers().to_string();
    // An hour old, so the lag in seconds is unmistakable; two records the
    // route refuses (a negative amount, which the CHECK rejects).
    let mut records = orders(300, 2, 20);
    for i in [17, 211] {
        records[i].2 = Some(br#"{"k":"poison","seq":1,"amount":"-1.00"}"#.to_vec());
    }
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let first = produce_at(&brokers, "orders", records, hour_ago).await;
    let yaml = orders_config(&brokers, &url, "orders", "status_gate", "");

    // 1. Before sluice ever ran: nothing stored, all of it behind.
    let (code, report) = status_json(&yaml, &[]).await;
    assert_eq!(code, 1, "lagging: {report:#}");
    assert_eq!(report["verdict"], "lagging");
    assert_eq!(lags(&report), first, "lag in records is what was produced");
    for p in partitions(&report) {
        assert_eq!(p["never_written"], true, "{p}");
        let seconds = p["lag_seconds"].as_f64().expect("the next record was read");
        assert!(seconds >= 3590.0, "an hour behind: {p}");
    }
    let (code, text, _) = status(&yaml, &[]).await;
    println!("{text}");
    assert_eq!(code, 1);
    assert!(
        text.contains("never written") && text.contains("verdict: lagging"),
        "{text}"
    );

    // 4. The gate waits: started before the sink (and before more records
    // arrive), it exits 0 once the sink has drained all of them.
    let waiting = tokio::spawn({
        let yaml = yaml.clone();
        async move { status_json(&yaml, &["--wait-caught-up", "2m"]).await }
    });
    let more = produce_all(&kafka, "orders", orders(100, 2, 20)).await;
    let end: HashMap<i32, i64> = first
        .iter()
        .map(|(p, n)| (*p, (*n).max(more.get(p).copied().unwrap_or(0))))
        .collect();
    let port = free_port();
    let sink = Sink::start(&with_http(&yaml, port));
    let (code, report) = waiting.await.unwrap();
    assert_eq!(code, 0, "caught up: {report:#}");
    assert_eq!(stored_offsets(&client, "orders").await, end, "drained all");

    // 2. Caught up, with the sink running.
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    let replica = format!("http://127.0.0.1:{port}");
    let gone = format!("http://127.0.0.1:{}", free_port());
    // /readyz turns 200 once the group is joined (it is: the sink drained).
    let report = eventually(Duration::from_secs(30), "the replica ready", || async {
        let (_, r) = status_json(&yaml, &["--replicas", &replica, "--replicas", &gone]).await;
        (r["replicas"][0]["ready"] == true).then_some(r)
    })
    .await;
    let code = report["exit_code"].as_i64().unwrap();
    assert_eq!(report["replicas"][0]["status"], 200, "{report:#}");
    assert_eq!(report["replicas"][1]["ready"], false);
    assert!(report["replicas"][1]["error"].is_string(), "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verdict"], "caught_up");
    let cluster = report["cluster_id"].as_str().map(str::to_string);
    for p in partitions(&report) {
        assert_eq!(p["lag_records"], 0, "{p}");
        assert_eq!(p["lag_seconds"].as_f64(), Some(0.0), "{p}");
        assert_eq!(p["halted"], false, "{p}");
        assert!(
            p["owner"].as_str().is_some_and(|o| o.len() == 36),
            "owner: {p}"
        );
        assert!(p["last_commit_at"].is_string(), "{p}");
        assert!(p["last_record_at"].is_string(), "{p}");
        assert_eq!(p["stored_cluster_id"].as_str(), cluster.as_deref(), "{p}");
        assert_eq!(p["cluster_differs"], false, "{p}");
    }
    // librdkafka's mock cluster may not answer ListGroups/DescribeGroups;
    // then the group is unknown, with the reason, and nothing fails.
    match report["group"].as_object() {
        Some(group) => {
            println!("group: {group:?}");
            assert!(
                !group["members"].as_array().unwrap().is_empty(),
                "{group:?}"
            );
        }
        None => {
            println!("group unknown: {}", report["group_error"]);
            assert!(report["group_error"].is_string(), "{report:#}");
        }
    }
    // 6. Dead letters per route.
    let route = &report["routes"][0];
    assert_eq!(route["route"], "public.orders");
    assert_eq!(route["dead_letters_total"], 2, "{route}");
    assert_eq!(route["dead_letters_last_hour"], 2, "{route}");

    // 4. Nothing drains (the sink is stopped): a short wait ends lagging.
    sink.stop().await.expect("stops cleanly");
    produce_all(&kafka, "orders", orders(10, 2, 20)).await;
    let started = Instant::now();
    let (code, text, stderr) =
        status(&yaml, &["--wait-caught-up", "3s", "--replicas", &replica]).await;
    println!("{stderr}{text}");
    assert_eq!(code, 1, "still lagging at the deadline: {stderr}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_partition_or_another_clusters_offset_exits_2_with_the_reason() {
    let (url, client) = fresh_db("status_halt").await;
    let kafka = kafka("orders", 2);
    let brokers = kafka.bootstrap_servers().to_string();
    let end = produce_all(&kafka, "orders", orders(40, 2, 10)).await;
    let yaml = orders_config(&brokers, &url, "orders", "status_halt", "");
    let config = sluice::config::Config::from_yaml(&yaml, |_| None).unwrap();
    sluice::check::migrate_only(&config).await.expect("migrate");
    // Both partitions written to their end, on this cluster (status says
    // which one that is).
    let (_, report) = status_json(&yaml, &[]).await;
    let cluster = report["cluster_id"]
        .as_str()
        .expect("mock cluster id")
        .to_string();
    for (p, n) in &end {
        client
            .execute(
                "INSERT INTO sluice.offsets (group_id, topic, partition, next_offset, owner, cluster_id) \
                 VALUES ('status_halt', 'orders', $1, $2, gen_random_uuid(), $3)",
                &[p, n, &cluster],
            )
            .await
            .unwrap();
    }
    let (code, report) = status_json(&yaml, &[]).await;
    assert_eq!(code, 0, "{report:#}");

    // 3a. A halt row.
    client
        .execute(
            "INSERT INTO sluice.halts (group_id, topic, partition, \"offset\", error, sqlstate) \
             VALUES ('status_halt', 'orders', 1, $1, 'value too long for type character varying(3)', '22001')",
            &[&end[&1]],
        )
        .await
        .unwrap();
    let (code, text, _) = status(&yaml, &[]).await;
    println!("{text}");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("value too long for type character varying(3)"),
        "{text}"
    );
    assert!(
        text.contains("HALTED") && text.contains("verdict: halted (exit 2)"),
        "{text}"
    );
    let (_, report) = status_json(&yaml, &[]).await;
    let halted: Vec<_> = partitions(&report)
        .iter()
        .filter(|p| p["halted"] == true)
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(halted, vec![1]);
    client
        .batch_execute("DELETE FROM sluice.halts")
        .await
        .unwrap();

    // 3b. Partition 0's offset is another cluster's.
    client
        .batch_execute("UPDATE sluice.offsets SET cluster_id = 'blue-cluster' WHERE partition = 0")
        .await
        .unwrap();
    let (code, report) = status_json(&yaml, &[]).await;
    assert_eq!(code, 2, "{report:#}");
    let p0 = &partitions(&report)[0];
    assert_eq!(p0["cluster_differs"], true, "{p0}");
    assert_eq!(p0["stored_cluster_id"], "blue-cluster");
    let reasons = p0["halt_reasons"].to_string();
    assert!(
        reasons.contains("offset belongs to another cluster"),
        "{reasons}"
    );
    assert!(
        reasons.contains("blue-cluster") && reasons.contains(&cluster),
        "{reasons}"
    );
    assert_eq!(partitions(&report)[1]["halted"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_kafka_and_a_bad_config_exit_2_naming_what_failed() {
    let (url, _client) = fresh_db("status_errors").await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let yaml = orders_config(&nowhere, &url, "orders", "status_errors", "");
    let started = Instant::now();
    let (code, stdout, stderr) = status(&yaml, &["--timeout", "2s"]).await;
    println!("{stderr}");
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("kafka.brokers"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Postgres unreachable: named before Kafka is asked.
    let pg_nowhere = format!("postgres://sluice@127.0.0.1:{}/db", free_port());
    let yaml = orders_config(&nowhere, &pg_nowhere, "orders", "status_errors", "");
    let (code, _, stderr) = status(&yaml, &["--timeout", "2s"]).await;
    println!("{stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot connect to"), "{stderr}");

    // A config that does not validate, and a flag that does not parse.
    let (code, _, stderr) = status(&yaml.replace("group_id:", "group_idd:"), &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    let (code, _, stderr) = status(&yaml, &["--wait-caught-up", "5 minutes"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--wait-caught-up"), "{stderr}");
}
