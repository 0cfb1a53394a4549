//! Upserts: the table equals a model that applies every event in offset
//! order per key (versions, deletes, re-inserts); a replay changes nothing;
//! old versions never overwrite newer ones.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;
use crate::pgbouncer::{target_db, Via};

const ACCOUNTS: &str = "CREATE TABLE accounts (
    id bigint PRIMARY KEY, version bigint NOT NULL, balance bigint, status text,
    note text NOT NULL DEFAULT 'fresh')";

fn config(brokers: &str, url: &str, topic: &str, group: &str, method: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: {group}
  librdkafka: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "300" }}
postgres: {{ url: "{url}", pool_size: 4 }}
batch: {{ max_rows: 3000, linger: 30ms }}
routes:
  - topic: {topic}
    table: accounts
    mode: upsert
    write_method: {method}
    key: [id]
    version: version
    delete_on_tombstone: true
    columns:
      id: $key/id
      version: /version
      balance: /balance
      status: /status
"#
    )
}

/// (version, balance, status) per key.
type Row = (i64, i64, String);
type Model = BTreeMap<i64, Row>;

/// Applies events in order: a tombstone deletes, an upsert applies if its
/// version is newer than the row's.
fn apply(model: &mut Model, key: i64, event: Option<(i64, i64, String)>) {
    match event {
        None => {
            model.remove(&key);
        }
        Some(row) => {
            if model.get(&key).is_none_or(|held| held.0 < row.0) {
                model.insert(key, row);
            }
        }
    }
}

fn event(
    key: i64,
    row: Option<(i64, i64, String)>,
    partitions: i32,
) -> (i32, Option<Vec<u8>>, Option<Vec<u8>>) {
    let value = row
        .map(|(v, b, s)| format!(r#"{{"version":{v},"balance":{b},"status":"{s}"}}"#).into_bytes());
    (
        (key % partitions as i64) as i32,
        Some(format!(r#"{{"id":{key}}}"#).into_bytes()),
        value,
    )
}

async fn table(client: &tokio_postgres::Client) -> Model {
    client
        .query("SELECT id, version, balance, status FROM accounts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_equal_the_model_and_a_replay_changes_nothing() {
    upserts_equal_the_model(Via::Direct).await;
}

/// Staged COPY (a temp table) first, then multi-row INSERT for the replay.
pub async fn upserts_equal_the_model(via: Via) {
    let db = target_db(&format!("upsert_model_{via:?}").to_lowercase(), via).await;
    let (url, client) = (&db.url, &db.client);
    client.batch_execute(ACCOUNTS).await.unwrap();
    let kafka = kafka("accounts", 4);
    let mut versions = vec![0i64; 2_000];
    let mut model = Model::new();
    let mut events = Vec::with_capacity(100_000);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in 0..100_000i64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = (rng % 2_000) as i64;
        versions[key as usize] += 1;
        // About one event in twelve deletes; the next one re-inserts.
        let row = (rng % 12 != 0).then(|| (versions[key as usize], i, format!("s{}", i % 7)));
        apply(&mut model, key, row.clone());
        events.push(event(key, row, 4));
    }
    let end = produce_all(&kafka, "accounts", events).await;

    let sink = Sink::start(&config(
        kafka.bootstrap_servers(),
        url,
        "accounts",
        "g1",
        "copy",
    ));
    wait_drained(client, "accounts", &end, Duration::from_secs(180)).await;
    assert!(sink.metric("sluice_rows_deleted_total") > 0.0);
    assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
    sink.stop().await.expect("clean stop");
    assert_eq!(
        table(client).await,
        model,
        "table equals the in-order model"
    );

    // The same input again from offset 0 (a new group): nothing changes.
    let replay = Sink::start(&config(
        kafka.bootstrap_servers(),
        url,
        "accounts",
        "g2",
        "insert",
    ));
    eventually(Duration::from_secs(180), "the replay to drain", || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM sluice.offsets WHERE group_id = 'g2' AND next_offset = ANY($1)",
                &[&end.values().copied().collect::<Vec<i64>>()],
            )
            .await
            .unwrap()
            .get(0);
        (n == 4).then_some(())
    })
    .await;
    assert!(
        replay.metric("sluice_rows_skipped_total") > 0.0,
        "old versions were skipped"
    );
    replay.stop().await.expect("clean stop");
    assert_eq!(table(client).await, model, "a replay changes nothing");
    db.assert_pooler_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_overwrites_a_newer_one() {
    let (url, client) = fresh_db("upsert_version").await;
    client.batch_execute(ACCOUNTS).await.unwrap();
    let kafka = kafka("versions", 1);
    let row = |v: i64| Some((v, v * 100, format!("v{v}")));
    // Versions 1 and 3, written; then 2 arrives late.
    let end = produce_all(
        &kafka,
        "versions",
        vec![event(7, row(1), 1), event(7, row(3), 1)],
    )
    .await;
    let sink = Sink::start(&config(
        kafka.bootstrap_servers(),
        &url,
        "versions",
        "g",
        "copy",
    ));
    wait_drained(&client, "versions", &end, Duration::from_secs(60)).await;
    let end = produce_all(&kafka, "versions", vec![event(7, row(2), 1)]).await;
    wait_drained(&client, "versions", &end, Duration::from_secs(60)).await;
    let stale = metric_where(
        &sink.registry,
        "sluice_rows_skipped_total",
        "reason",
        "stale_version",
    );
    sink.stop().await.expect("clean stop");
    let stored: i64 = client
        .query_one("SELECT version FROM accounts WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3);
    assert_eq!(stale, 1.0, "the late version 2 was counted as skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_between_upserts_in_one_batch_follow_the_model() {
    let (url, client) = fresh_db("upsert_tombstones").await;
    client.batch_execute(ACCOUNTS).await.unwrap();
    // A row that exists before: deleted and re-inserted in the batch, its
    // unmapped column returns to its default, as a delete + insert would.
    client
        .batch_execute("INSERT INTO accounts VALUES (4, 0, 0, 'old', 'old note')")
        .await
        .unwrap();
    let kafka = kafka("tomb", 1);
    let row = |v: i64| Some((v, v * 10, format!("v{v}")));
    let script: Vec<(i64, Option<Row>)> = vec![
        (1, row(1)),
        (1, row(2)),
        (1, None),
        (1, row(3)),
        (2, row(1)),
        (1, row(4)),
        (2, None),
        (1, None),
        (3, None),
        (1, row(5)),
        (4, None),
        (4, row(1)),
    ];
    let mut model = Model::new();
    model.insert(4, (0, 0, "old".into()));
    for (key, ev) in &script {
        apply(&mut model, *key, ev.clone());
    }
    let events = script.into_iter().map(|(k, ev)| event(k, ev, 1)).collect();
    let end = produce_all(&kafka, "tomb", events).await;
    let yaml = config(kafka.bootstrap_servers(), &url, "tomb", "g", "copy")
        .replace("linger: 30ms", "linger: 1s");
    let sink = Sink::start(&yaml);
    wait_drained(&client, "tomb", &end, Duration::from_secs(60)).await;
    assert_eq!(sink.metric("sluice_batch_commit_seconds"), 1.0, "one batch");
    sink.stop().await.expect("clean stop");
    assert_eq!(table(&client).await, model);
    let note: String = client
        .query_one("SELECT note FROM accounts WHERE id = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "fresh");
}

/// Runs `events` (topic → (key, value) records, each topic one partition and
/// its own table) twice: one record per transaction (`max_rows: 1`, i.e.
/// applied one by one) and all of a topic in one batch. Returns both
/// databases' tables as text, after checking that the batched run did write
/// each topic in one batch.
async fn one_by_one_and_batched(
    name: &str,
    schema: &str,
    route: &str,
    events: &[(&str, Produced)],
) -> [BTreeMap<String, Vec<String>>; 2] {
    let kafka = kafka(events[0].0, 1);
    let mut ends = Vec::new();
    for (topic, records) in events {
        if *topic != events[0].0 {
            kafka.create_topic(topic, 1).unwrap();
        }
        ends.push((*topic, produce_all(&kafka, topic, records.clone()).await));
    }
    let mut tables = [BTreeMap::new(), BTreeMap::new()];
    for (run, max_rows) in [1, 1000].into_iter().enumerate() {
        let (url, client) = fresh_db(&format!("{name}_{max_rows}")).await;
        client.batch_execute(schema).await.unwrap();
        let routes: String = events
            .iter()
            .map(|(topic, _)| route.replace("{topic}", topic))
            .collect();
        let sink = Sink::start(&format!(
            r#"
kafka: {{ brokers: "{}", group_id: g{max_rows} }}
postgres: {{ url: "{url}", pool_size: 4 }}
batch: {{ max_rows: {max_rows}, linger: 1s }}
routes:
{routes}"#,
            kafka.bootstrap_servers()
        ));
        for (topic, end) in &ends {
            wait_drained(&client, topic, end, Duration::from_secs(60)).await;
        }
        if max_rows > 1 {
            let batches = sink.metric("sluice_batch_commit_seconds");
            assert_eq!(batches, events.len() as f64, "one batch per topic");
        }
        assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
        sink.stop().await.expect("clean stop");
        for (topic, _) in events {
            let sql = format!("SELECT t::text FROM {topic} t ORDER BY 1");
            let rows = client.query(&sql, &[]).await.unwrap();
            let rows = rows.iter().map(|r| r.get(0)).collect();
            tables[run].insert(topic.to_string(), rows);
        }
    }
    tables
}

/// A record on partition 0 with a JSON key and value (`None`: a tombstone).
fn keyed(key: &str, value: Option<&str>) -> (i32, Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        0,
        Some(format!(r#"{{"id":{key}}}"#).into_bytes()),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

/// Hardening #15: keys that are binary-distinct but equal in Postgres (`5`
/// and `5.0` into numeric, rounding of numeric(p,s), `0.0`/`-0.0`, char(n)
/// padding, jsonb key order and number scale) collapse into one key in a
/// batch: no SQLSTATE 21000, deletes by an equal key keep their order, and
/// the table equals applying the records one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_equal_in_postgres_collapse_like_one_by_one() {
    let types = [
        ("nums", "numeric"),
        ("scaled", "numeric(8,2)"),
        ("floats", "double precision"),
        ("chars", "char(4)"),
        ("docs", "jsonb"),
    ];
    let schema: String = types
        .iter()
        .map(|(t, ty)| format!("CREATE TABLE {t} (id {ty} PRIMARY KEY, note text);"))
        .collect();
    // "key note" per record; the note "-" makes a tombstone.
    let events = |records: &[&str]| -> Produced {
        let record = |r: &&str| {
            let (key, note) = r.rsplit_once(' ').unwrap_or((r, "-"));
            let value = format!(r#"{{"note":"{note}"}}"#);
            keyed(key, (note != "-").then_some(value.as_str()))
        };
        records.iter().map(record).collect()
    };
    let streams = [
        (
            "nums",
            events(&[
                "5 a", "5.0 b", "5.00 c", "6 d", "6.00 -", "8 e", "8.0 -", "8.00 f",
            ]),
        ),
        ("scaled", events(&["5.001 a", "5.004 b", "5 c"])),
        ("floats", events(&["0.0 a", "-0.0 b", "1.5 c", "1.50 -"])),
        ("chars", events(&[r#""ab" a"#, r#""ab  " b"#])),
        (
            "docs",
            events(&[r#"{"a":1,"b":2} a"#, r#"{"b":2.0,"a":1.00} b"#]),
        ),
    ];
    let route = "  - { topic: {topic}, table: {topic}, mode: upsert, key: [id], \
                 delete_on_tombstone: true, columns: { id: $key/id, note: /note } }\n";
    let [one_by_one, batched] =
        one_by_one_and_batched("keys_equal", &schema, route, &streams).await;
    assert_eq!(batched, one_by_one);
    assert_eq!(one_by_one["nums"], ["(5,c)", "(8.00,f)"]);
    assert_eq!(one_by_one["scaled"], ["(5.00,c)"]);
    assert_eq!(one_by_one["floats"], ["(0,b)"]);
    assert_eq!(one_by_one["chars"], ["(\"ab  \",b)"]);
    assert_eq!(one_by_one["docs"], [r#"("{""a"": 1, ""b"": 2}",b)"#]);
}

/// Hardening #16: NULL versions follow one rule in the collapse and in the
/// SQL guard (a NULL version is no version: anything replaces it, it
/// replaces nothing that has one), so batch boundaries do not matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_versions_agree_across_batch_boundaries() {
    let schema = "CREATE TABLE versioned (id bigint PRIMARY KEY, version bigint, note text)";
    let record = |k: i64, v: &str, n: &str| {
        let value = format!(r#"{{"version":{v},"note":"{n}"}}"#);
        keyed(&k.to_string(), Some(&value))
    };
    let stream = vec![
        record(1, "null", "a"),
        record(1, "null", "b"),
        record(2, "null", "a"),
        record(2, "3", "b"),
        record(2, "null", "c"),
        record(2, "2", "d"),
        record(2, "4", "e"),
        record(3, "1", "a"),
        record(3, "null", "b"),
        record(4, "null", "a"),
        keyed("4", None),
        record(4, "null", "b"),
        record(4, "null", "c"),
    ];
    let route = "  - { topic: {topic}, table: {topic}, mode: upsert, key: [id], \
                 version: version, delete_on_tombstone: true, \
                 columns: { id: $key/id, version: /version, note: /note } }\n";
    let [one_by_one, batched] =
        one_by_one_and_batched("null_versions", schema, route, &[("versioned", stream)]).await;
    assert_eq!(batched, one_by_one);
    assert_eq!(
        one_by_one["versioned"],
        ["(1,,b)", "(2,4,e)", "(3,1,a)", "(4,,c)"]
    );
}
