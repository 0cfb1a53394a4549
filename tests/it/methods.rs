//! `copy` and `insert` produce identical tables for the same input, with and
//! without an idempotency key, over every supported column type.

use std::time::Duration;

use crate::harness::*;

const COLUMNS: &str =
    "id bigint NOT NULL, small smallint, i integer, big bigint, num numeric, r real,
    d double precision, b boolean, t text, vc varchar(20), j json, jb jsonb, ts timestamptz,
    tsn timestamp, dt date, u uuid, raw bytea, src_offset bigint NOT NULL, hdr text, ky text";

fn value(i: usize) -> Vec<u8> {
    let null_or = |s: String| if i % 7 == 3 { "null".to_string() } else { s };
    format!(
        r#"{{"id":{id},"small":{small},"i":{int},"big":{big},"num":{num},"r":{r},"d":{d},"b":{b},"t":{t},"vc":"v{i}","j":{{"a":[{i},"x"]}},"jb":{{"n":{i},"s":"é"}},"ts":"2026-01-0{day}T12:00:00.{ms:03}+02:00","tsn":"2026-03-04 05:06:07","dt":"2026-12-{dd:02}","u":"{u:08x}-0000-4000-8000-{i:012x}","raw":"aGVsbG8="}}"#,
        id = i % 900, // ids repeat: the keyed tables skip the repeats
        small = null_or((i % 30_000).to_string()),
        int = i as i64 * 1_000,
        big = i as i64 * 10_000_000_000,
        num = null_or(format!("{}.{:04}", i, i % 10_000)),
        r = (i as f64) / 4.0,
        d = (i as f64) / 3.0,
        b = i % 2 == 0,
        t = null_or(format!("\"text {i}\"")),
        day = 1 + i % 9,
        ms = i % 1000,
        dd = 1 + i % 28,
        u = i,
    )
    .into_bytes()
}

fn config(brokers: &str, url: &str, group: &str, table: &str, method: &str, key: bool) -> String {
    let key = if key { "    key: [id]\n" } else { "" };
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: {group}
  librdkafka: {{ session.timeout.ms: "6000" }}
postgres: {{ url: "{url}", pool_size: 2 }}
batch: {{ max_rows: 250, linger: 10ms }}
routes:
  - topic: typed
    table: {table}
    write_method: {method}
{key}    columns:
      id: /id
      small: /small
      i: /i
      big: /big
      num: /num
      r: /r
      d: /d
      b: /b
      t: /t
      vc: /vc
      j: /j
      jb: /jb
      ts: /ts
      tsn: /tsn
      dt: /dt
      u: /u
      raw: /raw
      src_offset: $offset
      hdr: $headers.trace
      ky: $key
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_insert_write_identical_tables() {
    let (url, client) = fresh_db("methods").await;
    for table in ["copy_key", "insert_key"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} ({COLUMNS}, PRIMARY KEY (id))"
            ))
            .await
            .unwrap();
    }
    for table in ["copy_plain", "insert_plain"] {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} ({COLUMNS}, UNIQUE (src_offset))"
            ))
            .await
            .unwrap();
    }
    let kafka = kafka("typed", 1);
    let records: Produced = (0..1_500)
        .map(|i| {
            (
                0,
                (i % 5 != 0).then(|| format!("key-{i}").into_bytes()),
                Some(value(i)),
            )
        })
        .collect();
    let end = produce_all(&kafka, "typed", records).await;

    let brokers = kafka.bootstrap_servers();
    let sinks = [
        Sink::start(&config(brokers, &url, "g1", "copy_key", "copy", true)),
        Sink::start(&config(brokers, &url, "g2", "insert_key", "insert", true)),
        Sink::start(&config(brokers, &url, "g3", "copy_plain", "copy", false)),
        Sink::start(&config(
            brokers,
            &url,
            "g4",
            "insert_plain",
            "insert",
            false,
        )),
    ];
    let drained = "SELECT count(*) FROM sluice.offsets WHERE topic = 'typed' AND next_offset = $1";
    let want = end[&0];
    eventually(
        Duration::from_secs(120),
        "all four sinks to drain",
        || async {
            // The offsets table appears once the first sink has migrated.
            let n = client
                .query_one(drained, &[&want])
                .await
                .map(|r| r.get::<_, i64>(0));
            matches!(n, Ok(4)).then_some(())
        },
    )
    .await;
    for sink in sinks {
        assert_eq!(sink.metric("sluice_dead_letters_total"), 0.0);
        sink.stop().await.expect("clean stop");
    }

    assert_eq!(count(&client, "SELECT count(*) FROM copy_key").await, 900);
    assert_eq!(
        count(&client, "SELECT count(*) FROM copy_plain").await,
        1_500
    );
    for (a, b) in [("copy_key", "insert_key"), ("copy_plain", "insert_plain")] {
        let diff = count(
            &client,
            &format!(
                "SELECT count(*) FROM ((SELECT to_jsonb(x) FROM {a} x EXCEPT SELECT to_jsonb(y) FROM {b} y) \
                 UNION ALL (SELECT to_jsonb(y) FROM {b} y EXCEPT SELECT to_jsonb(x) FROM {a} x)) d"
            ),
        )
        .await;
        assert_eq!(diff, 0, "{a} and {b} differ");
    }
    // Spot-check the coercions landed as the types say.
    let row = client
        .query_one(
            "SELECT num::text, ts = '2026-01-02T10:00:00.001Z'::timestamptz, raw, ky, jb->>'s', dt::text \
             FROM copy_plain WHERE src_offset = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1.0001");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Vec<u8>>(2), b"hello");
    assert_eq!(row.get::<_, String>(3), "key-1");
    assert_eq!(row.get::<_, String>(4), "é");
    assert_eq!(row.get::<_, String>(5), "2026-12-02");
    assert_eq!(
        count(&client, "SELECT count(*) FROM copy_plain WHERE ky IS NULL").await,
        300
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM copy_plain WHERE small IS NULL"
        )
        .await,
        214
    );
}
