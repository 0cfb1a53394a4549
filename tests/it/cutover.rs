//! Blue/green cutover (#15) on two independent tansu brokers, driven the
//! way docs/operations.md's runbook drives it: the same 50,000 records
//! (with their original timestamps) on both clusters, green's offsets
//! shifted by filler records as a mirror leaves them; 30,000 drained from
//! blue, `status --wait-caught-up`, stop, a start on green *without* the
//! offsets step (every partition halts, nothing is written, status exits
//! 2), `offsets set --to translate`, start on green, the rest drained.
//! An upsert route with a version guard and an append route keyed by an
//! event id end exactly equal to the model. Then `offsets set` against a
//! running replica (it is fenced and the new start holds), its refusals
//! (exit 2, nothing changed) and `--dry-run`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_postgres::Client;

use sluice::embedded::kafka::Record;

use crate::harness::*;
use crate::tansu::{Tansu, TansuOptions};

const EVENTS: usize = 50_000;
/// Produced before the cutover, on both clusters; the rest only on green.
const BEFORE: usize = 30_000;
const PARTITIONS: i32 = 4;
const KEYS: i64 = 600;
/// Apart in time, so a minute of overlap is some 12,000 records.
const STEP_MS: i64 = 5;
const OVERLAP_MS: i64 = 60_000;

const TABLES: &str = "
CREATE TABLE balances (key bigint PRIMARY KEY, version bigint NOT NULL, balance bigint NOT NULL);
CREATE TABLE events (id bigint PRIMARY KEY, key bigint NOT NULL, version bigint NOT NULL,
                     src_partition integer NOT NULL, src_offset bigint NOT NULL);";

/// Two routes of one topic: the latest balance per key (upsert, version
/// guard) and every event once by its id (append, `ON CONFLICT DO NOTHING`).
fn config(brokers: &str, url: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: cutover
  librdkafka:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "300"
postgres:
  url: "{url}"
  pool_size: 4
batch:
  max_rows: 1000
  linger: 20ms
routes:
  - topic: events
    table: balances
    mode: upsert
    key: [key]
    version: version
    columns:
      key: /key
      version: /version
      balance: /balance
  - topic: events
    table: events
    key: [id]
    columns:
      id: /id
      key: /key
      version: /version
      src_partition: $partition
      src_offset: $offset
"#
    )
}

/// A record to produce, with its Kafka timestamp (ms).
type Timed = (Record, Option<i64>);

/// One event of the model.
#[derive(Clone)]
struct Event {
    id: i64,
    key: i64,
    version: i64,
    balance: i64,
    partition: i32,
    /// Its offset on blue (0, 1, ... per partition).
    index: i64,
    at_ms: i64,
}

impl Event {
    fn record(&self) -> Timed {
        let value = format!(
            r#"{{"id":{},"key":{},"version":{},"balance":{}}}"#,
            self.id, self.key, self.version, self.balance
        );
        (
            (
                self.partition,
                Some(self.key.to_string().into_bytes()),
                Some(value.into_bytes()),
            ),
            Some(self.at_ms),
        )
    }
}

/// `EVENTS` events over `KEYS` keys (a key stays on one partition, its
/// versions 1, 2, 3, ...), `STEP_MS` apart from `base_ms`.
fn model(base_ms: i64) -> Vec<Event> {
    let mut versions = HashMap::new();
    let mut next_index = [0i64; PARTITIONS as usize];
    (0..EVENTS as i64)
        .map(|id| {
            let key = (id * 7919 + id / 5) % KEYS;
            let version = versions.entry(key).or_insert(0);
            *version += 1;
            let partition = (key % i64::from(PARTITIONS)) as i32;
            let index = next_index[partition as usize];
            next_index[partition as usize] += 1;
            Event {
                id,
                key,
                version: *version,
                balance: (id * 37) % 10_007,
                partition,
                index,
                at_ms: base_ms + id * STEP_MS,
            }
        })
        .collect()
}

/// Green's log starts with records blue never had (as a mirror's topic
/// may: retention, an earlier mirror run), a different number per
/// partition, an hour older than the events. Valid events, so that any
/// of them written would show in the tables.
fn filler_count(partition: i32) -> i64 {
    150 * i64::from(partition + 1)
}

fn filler(base_ms: i64) -> Vec<Timed> {
    (0..PARTITIONS)
        .flat_map(|p| (0..filler_count(p)).map(move |j| (p, j)))
        .map(|(p, j)| {
            let id = 1_000_000 + i64::from(p) * 10_000 + j;
            let value = format!(
                r#"{{"id":{id},"key":{},"version":1,"balance":0}}"#,
                9_000 + p
            );
            (
                (p, None, Some(value.into_bytes())),
                Some(base_ms - 3_600_000 + j),
            )
        })
        .collect()
}

/// `sluice <args> --json`: (exit code, the JSON printed).
async fn sluice_json(yaml: &str, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = sluice(yaml, &all).await;
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}), exit {code}:\n{stdout}\n{stderr}"));
    (code, json)
}

/// Per partition: (stored next offset, cluster id, last record time set).
async fn offsets_rows(client: &Client) -> BTreeMap<i32, (i64, Option<String>, bool)> {
    client
        .query(
            "SELECT partition, next_offset, cluster_id, last_record_at IS NOT NULL \
             FROM sluice.offsets WHERE topic = 'events'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

/// The tables equal the model of `events` exactly: every event once (its
/// offset the one of the cluster that wrote it first: blue's before the
/// cutover, green's after), and per key the latest version.
async fn assert_tables(client: &Client, events: &[Event], green_from: usize) {
    let rows = client
        .query(
            "SELECT id, key, version, src_partition, src_offset FROM events ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), events.len(), "one row per event, no more");
    for (row, e) in rows.iter().zip(events) {
        let offset = match (e.id as usize) < green_from {
            true => e.index,
            false => filler_count(e.partition) + e.index,
        };
        let got: (i64, i64, i64, i32, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        assert_eq!(
            got,
            (e.id, e.key, e.version, e.partition, offset),
            "event {}",
            e.id
        );
    }
    let mut latest: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in events {
        latest.insert(e.key, (e.version, e.balance));
    }
    let balances: BTreeMap<i64, (i64, i64)> = client
        .query("SELECT key, version, balance FROM balances", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(balances, latest, "the latest version of every key");
}

fn partitions(report: &Value) -> &Vec<Value> {
    report["partitions"].as_array().expect("partitions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_cutover_by_the_runbook_loses_and_duplicates_nothing() {
    let (url, client) = fresh_db("cutover").await;
    client.batch_execute(TABLES).await.unwrap();
    let cluster = |id: &str| TansuOptions {
        cluster_id: Some(id.into()),
        ..Default::default()
    };
    let blue = Tansu::start_with(cluster("blue"));
    let green = Tansu::start_with(cluster("green"));
    blue.create_topic("events", PARTITIONS).await;
    green.create_topic("events", PARTITIONS).await;
    // Two hours old, whole milliseconds (Kafka's resolution).
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base_ms = now_ms - 2 * 3_600_000;
    let events = model(base_ms);
    let records: Vec<_> = events.iter().map(Event::record).collect();
    green.produce_all_at("events", filler(base_ms)).await;
    let blue_end = blue
        .produce_all_at("events", records[..BEFORE].to_vec())
        .await;
    // The mirror: the same records, timestamps kept, offsets shifted.
    let mirrored = green
        .produce_all_at("events", records[..BEFORE].to_vec())
        .await;
    for (p, n) in &blue_end {
        assert_eq!(mirrored[p], n + filler_count(*p), "green's offsets differ");
    }
    let blue_yaml = config(&blue.bootstrap, &url);
    let green_yaml = config(&green.bootstrap, &url);

    // Blue drains; the gate opens when every partition is caught up.
    let sink = Sink::start(&blue_yaml);
    let (code, report) = sluice_json(&blue_yaml, &["status", "--wait-caught-up", "3m"]).await;
    assert_eq!(code, 0, "blue caught up: {report:#}");
    assert_eq!(report["cluster_id"], "blue");
    assert_eq!(stored_offsets(&client, "events").await, blue_end);
    // Producers stopped on blue long ago; sluice on blue stops.
    sink.stop().await.expect("the blue replica stops cleanly");
    assert_tables(&client, &events[..BEFORE], usize::MAX).await;
    let on_blue = offsets_rows(&client).await;
    for (p, (next, cluster, has_time)) in &on_blue {
        assert_eq!(
            (*next, cluster.as_deref(), *has_time),
            (blue_end[p], Some("blue"), true)
        );
    }

    // The step everyone gets wrong: green started without the offsets
    // step. Blue's offsets mean nothing there: every partition halts.
    let sink = Sink::start(&green_yaml);
    eventually(
        Duration::from_secs(60),
        "every partition halted on green",
        || async {
            (sink.metric("sluice_partitions_halted") == f64::from(PARTITIONS)).then_some(())
        },
    )
    .await;
    let (code, report) = sluice_json(&green_yaml, &["status"]).await;
    assert_eq!(code, 2, "halted: {report:#}");
    assert_eq!(report["cluster_id"], "green");
    for p in partitions(&report) {
        assert_eq!(p["halted"], true, "{p}");
        assert_eq!(p["cluster_differs"], true, "{p}");
        assert_eq!(p["stored_cluster_id"], "blue", "{p}");
        let reasons = p["halt_reasons"].to_string();
        assert!(
            reasons.contains("blue") && reasons.contains("green"),
            "both cluster ids named: {reasons}"
        );
    }
    let (_, text, _) = sluice(&green_yaml, &["status"]).await;
    assert!(
        text.contains("belongs to Kafka cluster blue, but the brokers are cluster green")
            && text.contains("sluice offsets set --topic events --to translate"),
        "{text}"
    );
    sink.stop().await.expect("the halted replica stops cleanly");
    assert_eq!(offsets_rows(&client).await, on_blue, "nothing moved");
    assert_tables(&client, &events[..BEFORE], usize::MAX).await;

    // The runbook: translate (a dry run first changes nothing).
    let (code, dry) = sluice_json(
        &green_yaml,
        &[
            "offsets",
            "set",
            "--topic",
            "events",
            "--to",
            "translate",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        offsets_rows(&client).await,
        on_blue,
        "a dry run writes nothing"
    );
    let (code, plan) = sluice_json(
        &green_yaml,
        &["offsets", "set", "--topic", "events", "--to", "translate"],
    )
    .await;
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(plan["cluster_id"], "green");
    assert_eq!(
        plan["moved"], dry["moved"],
        "the dry run said what was done"
    );
    let moved = plan["moved"].as_array().unwrap();
    assert_eq!(moved.len(), PARTITIONS as usize, "{plan:#}");
    // Where each partition must land: green's first record at or after
    // the last record blue wrote there, less the overlap.
    for m in moved {
        let p = m["partition"].as_i64().unwrap() as i32;
        let mine: Vec<_> = events[..BEFORE]
            .iter()
            .filter(|e| e.partition == p)
            .collect();
        let since = mine.last().unwrap().at_ms - OVERLAP_MS;
        let first = mine.iter().find(|e| e.at_ms >= since).unwrap();
        assert_eq!(m["from"]["cluster_id"], "blue", "{m}");
        assert_eq!(m["from"]["next_offset"], blue_end[&p], "{m}");
        assert_eq!(m["to"]["cluster_id"], "green", "{m}");
        assert_eq!(
            m["to"]["next_offset"],
            filler_count(p) + first.index,
            "partition {p}: {m}"
        );
    }
    assert_eq!(
        plan["duplicates"],
        serde_json::json!([]),
        "both routes absorb the overlap"
    );

    // Green, before sluice runs on it: behind by the overlap.
    let (code, report) = sluice_json(&green_yaml, &["status"]).await;
    assert_eq!(code, 1, "lagging: {report:#}");
    for p in partitions(&report) {
        assert_eq!(p["halted"], false, "{p}");
        assert!(p["lag_records"].as_i64().unwrap() > 0, "{p}");
    }

    // Start on green, switch the producers, drain.
    let sink = Sink::start(&green_yaml);
    let green_end = green
        .produce_all_at("events", records[BEFORE..].to_vec())
        .await;
    let (code, report) = sluice_json(&green_yaml, &["status", "--wait-caught-up", "3m"]).await;
    assert_eq!(code, 0, "green caught up: {report:#}");
    let mut expected_end = mirrored.clone();
    expected_end.extend(green_end);
    assert_eq!(stored_offsets(&client, "events").await, expected_end);
    // The overlap was read again and absorbed: by the version guard and
    // by the event ids, not written twice.
    assert!(
        sink.metric("sluice_rows_skipped_total") > 0.0,
        "the overlap was re-read"
    );
    sink.stop().await.expect("the green replica stops cleanly");
    assert_tables(&client, &events, BEFORE).await;
    for (p, (next, cluster, _)) in offsets_rows(&client).await {
        assert_eq!(
            (next, cluster.as_deref()),
            (expected_end[&p], Some("green"))
        );
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
    assert_eq!(count(&client, "SELECT count(*) FROM sluice.halts").await, 0);
    let (code, listing) = sluice_json(&green_yaml, &["offsets", "show"]).await;
    assert_eq!(code, 0, "{listing:#}");
    println!("after the cutover: {listing:#}");
}

/// A config for one partition of orders, throttled so that a backlog lasts.
fn live_config(brokers: &str, url: &str) -> String {
    let yaml = orders_config(brokers, url, "orders", "offsets_live", "")
        .replace("max_rows: 2000", "max_rows: 50");
    format!("{yaml}\nthrottle:\n  max_rows_per_second: 100\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_set_fences_a_running_replica_and_refuses_what_it_cannot_do() {
    const ROWS: usize = 5_000;
    const TO: i64 = 4_000;
    let (url, client) = fresh_db("offsets_live").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let end = produce_all(&kafka, "orders", orders(ROWS, 1, 20)).await;
    assert_eq!(end[&0], ROWS as i64);
    let yaml = live_config(kafka.bootstrap_servers(), &url);
    let sink = Sink::start(&yaml);
    eventually(Duration::from_secs(60), "the replica to write", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 200).then_some(())
    })
    .await;

    // Refused, exit 2, nothing changed: an offset outside the log, a
    // translation on the cluster the offset is already of, and a move
    // back for a route that appends by Kafka coordinates.
    let set = |args: &'static [&'static str]| {
        let yaml = yaml.clone();
        async move {
            let mut all = vec!["offsets", "set", "--topic", "orders"];
            all.extend_from_slice(args);
            sluice(&yaml, &all).await
        }
    };
    for (args, says) in [
        (&["--to", "offset:999999"][..], "outside the log"),
        (&["--to", "translate"][..], "already belongs to cluster"),
        (&["--to", "earliest"][..], "--accept-duplicates"),
    ] {
        let owner_before = owner(&client).await;
        let (code, stdout, stderr) = set(args).await;
        assert_eq!(code, 2, "{args:?} refused:\n{stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{args:?}: {stderr}");
        assert_eq!(
            owner(&client).await,
            owner_before,
            "{args:?}: still the replica's"
        );
    }
    let (code, _, stderr) = set(&["--to", "earliest"]).await;
    assert!(
        stderr.contains("public.orders"),
        "the route is named: {stderr}"
    );
    assert_eq!(code, 2);

    // A dry run: the plan, and the replica's row untouched.
    let owner_before = owner(&client).await;
    let (code, stdout, stderr) = set(&["--to", "offset:4000", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let dry: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["moved"][0]["to"]["next_offset"], TO);
    assert_eq!(
        owner(&client).await,
        owner_before,
        "a dry run leaves the claim"
    );

    // The move, while the replica writes: its commits since the plan
    // read the row are taken into account (the move is still a skip
    // forward), and the plan says where it really moved from.
    let (code, stdout, stderr) = set(&["--to", "offset:4000", "--json"]).await;
    assert_eq!(code, 0, "moved under a running replica: {stdout}{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    let from = plan["moved"][0]["from"]["next_offset"].as_i64().unwrap();
    assert!(from < TO, "moved forward from {from}");
    assert_eq!(plan["moved"][0]["skipped_records"], TO - from);

    // The replica's next commit is refused by the fence; it claims the
    // partition again at the new start and goes on from there.
    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    let fenced = sink.metric("sluice_fence_rejections_total");
    let reclaims = sink.metric("sluice_partition_reclaims_total");
    println!("moved from {from}; fence rejections {fenced}, reclaims {reclaims}");
    assert!(reclaims >= 1.0, "the replica claimed the partition again");
    sink.stop().await.expect("stops cleanly");
    let below = count(
        &client,
        "SELECT count(*) FROM orders WHERE src_offset < 4000",
    )
    .await;
    let skipped = count(
        &client,
        &format!("SELECT count(*) FROM orders WHERE src_offset >= {from} AND src_offset < 4000"),
    )
    .await;
    let after = count(
        &client,
        "SELECT count(DISTINCT src_offset) FROM orders WHERE src_offset >= 4000",
    )
    .await;
    assert_eq!(
        skipped, 0,
        "nothing written past the moved offset before the new start"
    );
    assert_eq!(below, from, "everything before the move, once");
    assert_eq!(after, ROWS as i64 - TO, "everything from the new start");
    assert_eq!(
        count(&client, "SELECT count(*) FROM orders").await,
        from + ROWS as i64 - TO
    );
}

/// The owner of orders' offset row.
async fn owner(client: &Client) -> Option<String> {
    client
        .query_opt(
            "SELECT owner::text FROM sluice.offsets WHERE topic = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_exits_2_naming_an_unreachable_kafka_or_postgres_or_a_bad_config() {
    let (url, _client) = fresh_db("offsets_errors").await;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let yaml = orders_config(&nowhere, &url, "orders", "offsets_errors", "");
    let config = sluice::config::Config::from_yaml(&yaml, |_| None).unwrap();
    sluice::check::migrate_only(&config).await.expect("migrate");
    // `show` reads Postgres only: it works with the brokers gone.
    let (code, stdout, stderr) = sluice(&yaml, &["offsets", "show"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, _, stderr) = sluice(
        &yaml,
        &["offsets", "set", "--to", "earliest", "--timeout", "2s"],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("kafka.brokers"), "{stderr}");

    let pg_nowhere = format!("postgres://sluice@127.0.0.1:{}/db", free_port());
    let yaml = orders_config(&nowhere, &pg_nowhere, "orders", "offsets_errors", "");
    for args in [
        &["offsets", "show"][..],
        &["offsets", "set", "--to", "latest"],
    ] {
        let (code, _, stderr) = sluice(&yaml, args).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("cannot connect to"), "{args:?}: {stderr}");
    }
    let bad = yaml.replace("group_id:", "group_idd:");
    let (code, _, stderr) = sluice(&bad, &["offsets", "show"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    let (code, _, stderr) = sluice(&yaml, &["offsets", "set", "--to", "yesterday"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--to"), "{stderr}");
}
