//! Identifiers from the config are always quoted (issue 12): a schema, tables
//! and columns whose names need quoting (mixed case, spaces, a double
//! quote, reserved words) are written by append via COPY and via INSERT,
//! and by upsert with a key column whose name needs quoting, with deletes
//! and a dead letter. The state schema cannot need quoting: config only
//! takes a plain identifier there.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;

const SCHEMA: &str = r#"CREATE SCHEMA "Sales ""Q1""";
    CREATE TABLE "Sales ""Q1"""."Order Items" (
        "Select" text, "user name" text, "quote""d" integer, "order" bigint NOT NULL,
        src_offset bigint NOT NULL);
    CREATE TABLE "Sales ""Q1""".select (
        "Select" text, "user name" text, "quote""d" integer, "order" bigint NOT NULL,
        src_offset bigint NOT NULL, UNIQUE ("order"));
    CREATE TABLE "Sales ""Q1"""."Up Sert" (
        "Key Col" bigint PRIMARY KEY, "Version" bigint, "user name" text, "from" text);
    CREATE TABLE "Sales ""Q1"""."Up Sert 2" (LIKE "Sales ""Q1"""."Up Sert" INCLUDING ALL)"#;

fn config(brokers: &str, url: &str) -> String {
    let append = |topic: &str, table: &str, method: &str, key: &str| {
        format!(
            r#"
  - topic: {topic}
    table: '"Sales ""Q1"""."{table}"'
    write_method: {method}
{key}    columns:
      Select: /s
      "user name": /u
      'quote"d': /q
      order: /o
      src_offset: $offset"#
        )
    };
    let upsert = |topic: &str, table: &str, method: &str| {
        format!(
            r#"
  - topic: {topic}
    table: '"Sales ""Q1"""."{table}"'
    write_method: {method}
    mode: upsert
    key: [Key Col]
    version: Version
    delete_on_tombstone: true
    columns:
      Key Col: $key/id
      Version: /v
      "user name": /u
      from: /f"#
        )
    };
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: quoting
  librdkafka: {{ session.timeout.ms: "6000" }}
postgres: {{ url: "{url}", pool_size: 2 }}
batch: {{ max_rows: 50, linger: 10ms }}
routes:{}{}{}{}
"#,
        append("q_copy", "Order Items", "copy", ""),
        // A keyed append: COPY is staged, then INSERT ... ON CONFLICT.
        append("q_insert", "select", "insert", "    key: [order]\n"),
        upsert("q_upsert", "Up Sert", "copy"),
        upsert("q_upsert_insert", "Up Sert 2", "insert"),
    )
}

fn append_records(n: i64) -> Produced {
    let mut records: Produced = (0..n)
        .map(|i| {
            let value = format!(r#"{{"s":"s{i}","u":"user {i}","q":{i},"o":{}}}"#, i % 40);
            (0, None, Some(value.into_bytes()))
        })
        .collect();
    // A record that cannot be written: its dead letter names the table.
    records.push((0, None, Some(br#"{"s":"x","o":"not a number"}"#.to_vec())));
    records
}

fn upsert_records() -> Produced {
    let up = |id: i64, v: i64, u: &str| {
        let value = format!(r#"{{"v":{v},"u":"{u}","f":"f{id}"}}"#);
        (
            0,
            Some(format!(r#"{{"id":{id}}}"#).into_bytes()),
            Some(value.into_bytes()),
        )
    };
    vec![
        up(1, 1, "a"),
        up(2, 1, "b"),
        up(1, 3, "c"),
        up(1, 2, "stale"),
        (0, Some(br#"{"id":2}"#.to_vec()), None),
        up(3, 1, "d"),
        up(3, 2, "e"),
    ]
}

type Rows = Vec<(Option<String>, Option<String>, Option<i32>, i64)>;

async fn appended(client: &tokio_postgres::Client, table: &str) -> Rows {
    let sql = format!(
        r#"SELECT "Select", "user name", "quote""d", "order" FROM "Sales ""Q1""".{table} ORDER BY src_offset"#
    );
    client
        .query(sql.as_str(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn upserted(
    client: &tokio_postgres::Client,
    table: &str,
) -> BTreeMap<i64, (i64, String, String)> {
    let sql = format!(
        r#"SELECT "Key Col", "Version", "user name", "from" FROM "Sales ""Q1"""."{table}""#
    );
    client
        .query(sql.as_str(), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_need_quoting_are_written_by_every_method() {
    let (url, client) = fresh_db("quoting").await;
    client.batch_execute(SCHEMA).await.unwrap();
    let kafka = kafka("q_copy", 1);
    for topic in ["q_insert", "q_upsert", "q_upsert_insert"] {
        kafka.create_topic(topic, 1).unwrap();
    }
    let mut ends = Vec::new();
    for topic in ["q_copy", "q_insert"] {
        ends.push((topic, produce_all(&kafka, topic, append_records(120)).await));
    }
    for topic in ["q_upsert", "q_upsert_insert"] {
        ends.push((topic, produce_all(&kafka, topic, upsert_records()).await));
    }
    let sink = Sink::start(&config(kafka.bootstrap_servers(), &url));
    for (topic, end) in &ends {
        wait_drained(&client, topic, end, Duration::from_secs(60)).await;
    }
    assert_eq!(sink.metric("sluice_dead_letters_total"), 2.0);
    sink.stop().await.expect("clean stop");

    let expected: Rows = (0..120)
        .map(|i| {
            (
                Some(format!("s{i}")),
                Some(format!("user {i}")),
                Some(i as i32),
                i % 40,
            )
        })
        .collect();
    assert_eq!(appended(&client, r#""Order Items""#).await, expected);
    // The keyed append keeps the first record of each "order".
    assert_eq!(appended(&client, "select").await, expected[..40].to_vec());

    let want: BTreeMap<i64, (i64, String, String)> = [
        (1, (3, "c".to_owned(), "f1".to_owned())),
        (3, (2, "e".to_owned(), "f3".to_owned())),
    ]
    .into();
    assert_eq!(upserted(&client, "Up Sert").await, want);
    assert_eq!(upserted(&client, "Up Sert 2").await, want);

    let mut tables: Vec<String> = client
        .query(
            "SELECT target_table FROM sluice.dead_letters ORDER BY topic",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            r#""Sales ""Q1"""."Order Items""#,
            r#""Sales ""Q1""".select"#
        ]
    );
}

/// The state schema is the one name config does not let need quoting: it
/// takes a plain lower-case identifier (sluice quotes it anyway), and a
/// name like `Sluice State` is refused with the fix.
#[test]
fn a_state_schema_that_needs_quoting_is_refused() {
    let yaml = config("127.0.0.1:1", "postgres://u@h/db").replace(
        "pool_size: 2 }",
        "pool_size: 2, state_schema: \"Sluice State\" }",
    );
    let err = sluice::config::Config::from_yaml(&yaml, |_| None).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("postgres.state_schema") && shown.contains("not a plain identifier"),
        "{shown}"
    );
}
