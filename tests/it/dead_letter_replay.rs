//! `sluice dead-letters list` and `replay` (#17): dead letters grouped by
//! route and reason; replayed once the cause is fixed, each written by its
//! route and removed in one transaction, exactly once; one that fails
//! again is kept with the new reason; a version guard holds for replays.

use std::process::Command;
use std::time::{Duration, SystemTime};

use sluice::config::Config;
use sluice::ops::dead_letters::{list, Selection};
use sluice::ops::replay::{replay, Replayed, Report};

use crate::harness::*;

const CHECKED_TABLE: &str =
    "CREATE TABLE checked (k text, amount numeric(10,2) CONSTRAINT non_negative CHECK (amount >= 0),
                           n integer, src_partition integer, src_offset bigint,
                           UNIQUE (src_partition, src_offset))";

fn checked_config(brokers: &str, url: &str, group: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: {group}
  librdkafka:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "300"
postgres:
  url: "{url}"
batch:
  max_rows: 500
  linger: 20ms
routes:
  - topic: payments
    table: checked
    name: payments-checked
    columns:
      k: /k
      amount: /amount
      n: /n
      src_partition: $partition
      src_offset: $offset
"#
    )
}

fn parse(yaml: &str) -> Config {
    Config::from_yaml(yaml, |_| None).expect("valid config")
}

fn dead_ids(report: &Report, what: fn(&Replayed) -> bool) -> usize {
    report.items.iter().filter(|i| what(&i.replayed)).count()
}

/// `sluice dead-letters <args> --config <yaml>`: exit code and stdout.
fn cli(args: &[&str], yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dead-letters")
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run sluice dead-letters");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_by_reason_and_replayed_exactly_once_after_the_fix() {
    const TOTAL: usize = 1_200;
    let (url, client) = fresh_db("replay").await;
    client.batch_execute(CHECKED_TABLE).await.unwrap();
    // Every 50th amount is negative (refused: 23514), every 70th other `n`
    // is not an integer (the route cannot decode it).
    let (mut refused, mut undecodable) = (0usize, 0usize);
    let records: Produced = (0..TOTAL)
        .map(|i| {
            let amount = if i % 50 == 3 {
                refused += 1;
                "-1.00".to_string()
            } else {
                format!("{}.50", i % 300)
            };
            let n = if i % 70 == 9 && i % 50 != 3 {
                undecodable += 1;
                "\"seven\"".to_string()
            } else {
                i.to_string()
            };
            let value = format!(r#"{{"k":"p-{i}","amount":"{amount}","n":{n}}}"#);
            (
                (i % 2) as i32,
                Some(format!("p-{i}").into_bytes()),
                Some(value.into_bytes()),
            )
        })
        .collect();
    let kafka = kafka("payments", 2);
    let end = produce_all(&kafka, "payments", records).await;
    let yaml = checked_config(kafka.bootstrap_servers(), &url, "replay");
    let sink = Sink::start(&yaml);
    wait_drained(&client, "payments", &end, Duration::from_secs(120)).await;
    sink.stop().await.expect("stops cleanly");
    let config = parse(&yaml);
    let dead = |sql: &'static str| {
        let client = &client;
        async move { count(client, sql).await }
    };
    assert_eq!(
        dead("SELECT count(*) FROM sluice.dead_letters").await as usize,
        refused + undecodable
    );

    // list: two groups, the Postgres refusal and the decoding failure.
    let listing = list(&client, &config, &Selection::default()).await.unwrap();
    assert_eq!(listing.total as usize, refused + undecodable);
    assert_eq!(listing.groups.len(), 2, "{listing:#?}");
    let by_state = |state: Option<&str>| {
        listing
            .groups
            .iter()
            .find(|g| g.sqlstate.as_deref() == state)
            .unwrap_or_else(|| panic!("a group for {state:?}: {listing:#?}"))
    };
    let check = by_state(Some("23514"));
    assert_eq!(check.count as usize, refused);
    assert!(
        check
            .reason
            .contains("violates check constraint \"non_negative\""),
        "{check:?}"
    );
    assert!(
        !check.reason.contains("Failing row"),
        "the row is in the example only"
    );
    assert!(check.example.contains("Failing row"), "{check:?}");
    let decode = by_state(None);
    assert_eq!(decode.count as usize, undecodable);
    assert_eq!(decode.reason, "column n: not an integer");
    assert!(check.routed && decode.routed);
    assert_eq!(check.route, "payments-checked");
    assert_eq!(check.table, "public.checked");
    let none = Selection {
        route: Some("elsewhere".into()),
        ..Selection::default()
    };
    assert_eq!(list(&client, &config, &none).await.unwrap().total, 0);
    let later = Selection {
        since: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..Selection::default()
    };
    assert_eq!(list(&client, &config, &later).await.unwrap().total, 0);
    // The command line says the same, as JSON.
    let (code, out) = tokio::task::block_in_place(|| {
        cli(&["list", "--json", "--route", "payments-checked"], &yaml)
    });
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(json["total"], (refused + undecodable) as i64);

    // A fix that is not one: the refused records fail again, now for the
    // new constraint. A dry run changes nothing; a replay keeps them with
    // the new reason.
    client
        .batch_execute(
            "ALTER TABLE checked DROP CONSTRAINT non_negative,
                                 ADD CONSTRAINT not_minus_one CHECK (amount <> -1)",
        )
        .await
        .unwrap();
    let refusals = Selection {
        reason_like: Some("check constraint".into()),
        ..Selection::default()
    };
    let mut pg = sluice::pg::connect(&config.postgres).await.unwrap();
    let report = replay(&mut pg, &config, &refusals, true).await.unwrap();
    assert_eq!(report.items.len(), refused);
    assert_eq!(
        dead_ids(
            &report,
            |r| matches!(r, Replayed::FailedAgain { reason } if reason.contains("not_minus_one"))
        ),
        refused
    );
    assert_eq!(
        dead("SELECT count(*) FROM sluice.dead_letters WHERE error LIKE '%non_negative%'").await
            as usize,
        refused,
        "a dry run keeps the old reason"
    );
    let (code, out) = tokio::task::block_in_place(|| {
        cli(&["replay", "--reason-like", "check constraint"], &yaml)
    });
    assert_eq!(code, 1, "some were kept: {out}");
    assert!(
        out.contains(&format!("0 of {refused} dead letter(s) written")),
        "{out}"
    );
    assert_eq!(
        dead("SELECT count(*) FROM sluice.dead_letters WHERE error LIKE '%not_minus_one%' AND sqlstate = '23514'").await
            as usize,
        refused,
        "kept with the new reason"
    );

    // The real fix: every refused record is written and its dead letter
    // removed; the decoding failures are untouched.
    client
        .batch_execute("ALTER TABLE checked DROP CONSTRAINT not_minus_one")
        .await
        .unwrap();
    let by_route = Selection {
        route: Some("payments-checked".into()),
        reason_like: Some("not_minus_one".into()),
        ..Selection::default()
    };
    let report = replay(&mut pg, &config, &by_route, false).await.unwrap();
    assert_eq!(report.written(), refused, "{}", report.text());
    assert_eq!(report.failed(), 0);
    assert_eq!(
        dead("SELECT count(*) FROM sluice.dead_letters").await as usize,
        undecodable
    );
    assert_eq!(
        dead("SELECT count(*) FROM checked WHERE amount = -1").await as usize,
        refused
    );

    // The column that could not take "seven" becomes text; two replays at
    // once write each record exactly once.
    client
        .batch_execute("ALTER TABLE checked ALTER COLUMN n TYPE text")
        .await
        .unwrap();
    let ids: Vec<i64> = client
        .query("SELECT id FROM sluice.dead_letters", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let chosen = Selection {
        ids,
        ..Selection::default()
    };
    let mut other = sluice::pg::connect(&config.postgres).await.unwrap();
    let (a, b) = tokio::join!(
        replay(&mut pg, &config, &chosen, false),
        replay(&mut other, &config, &chosen, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.written() + b.written(),
        undecodable,
        "{}{}",
        a.text(),
        b.text()
    );
    assert_eq!(a.failed() + b.failed(), 0);
    assert_eq!(dead("SELECT count(*) FROM sluice.dead_letters").await, 0);
    assert_eq!(
        dead("SELECT count(*) FROM checked").await as usize,
        TOTAL,
        "every record once"
    );
    assert_eq!(
        dead("SELECT count(*) FROM checked WHERE n = 'seven'").await as usize,
        undecodable
    );
    assert_eq!(
        stored_offsets(&client, "payments").await,
        end,
        "offsets untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_old_version_never_overwrites_newer_state() {
    let (url, client) = fresh_db("replay_version").await;
    client
        .batch_execute(
            "CREATE TABLE balances (k text PRIMARY KEY, v bigint NOT NULL,
                                    amount numeric(10,2) CONSTRAINT positive CHECK (amount > 0))",
        )
        .await
        .unwrap();
    // a: v1 refused, v2 written; b: only v1, refused.
    let records: Produced = [("a", 1, "-5"), ("b", 1, "-7"), ("a", 2, "10")]
        .iter()
        .map(|(k, v, amount)| {
            let value = format!(r#"{{"k":"{k}","v":{v},"amount":"{amount}"}}"#);
            (0, Some(k.as_bytes().to_vec()), Some(value.into_bytes()))
        })
        .collect();
    let kafka = kafka("balances", 1);
    let end = produce_all(&kafka, "balances", records).await;
    let yaml = format!(
        r#"
kafka:
  brokers: "{}"
  group_id: replay_version
postgres:
  url: "{url}"
batch:
  linger: 20ms
routes:
  - topic: balances
    table: balances
    mode: upsert
    key: [k]
    version: v
    columns:
      k: /k
      v: /v
      amount: /amount
"#,
        kafka.bootstrap_servers()
    );
    let sink = Sink::start(&yaml);
    wait_drained(&client, "balances", &end, Duration::from_secs(60)).await;
    sink.stop().await.expect("stops cleanly");
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        2
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sluice.dead_letters WHERE route = 'public.balances'"
        )
        .await,
        2,
        "the default route name is the table's full name"
    );

    client
        .batch_execute("ALTER TABLE balances DROP CONSTRAINT positive")
        .await
        .unwrap();
    let config = parse(&yaml);
    let mut pg = sluice::pg::connect(&config.postgres).await.unwrap();
    let report = replay(&mut pg, &config, &Selection::default(), false)
        .await
        .unwrap();
    let outcomes: Vec<(i64, Replayed)> = report
        .items
        .iter()
        .map(|i| (i.offset, i.replayed.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (0, Replayed::Written { rows: 0 }),
            (1, Replayed::Written { rows: 1 })
        ],
        "a's v1 finds v2 and changes nothing; b's v1 is new"
    );
    let rows: Vec<(String, i64, String)> = client
        .query("SELECT k, v, amount::text FROM balances ORDER BY k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("a".into(), 2, "10.00".into()),
            ("b".into(), 1, "-7.00".into())
        ]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
}

/// Dead letters written before routes had names (migration 3) belong to
/// the route named by their table, and replay through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_from_before_route_names_replay_through_their_tables_route() {
    let (url, mut client) = fresh_db("replay_upgrade").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    assert_eq!(
        sluice::migrate::migrate_up_to(&mut client, "sluice", 2)
            .await
            .unwrap(),
        [1, 2]
    );
    client
        .batch_execute(
            r#"INSERT INTO sluice.dead_letters (group_id, topic, partition, "offset", target_table,
                                                key, value, error)
               VALUES ('old', 'orders', 3, 41, 'public.orders', 'key-1',
                       '{"k":"key-1","seq":0,"amount":"1.50"}', 'relation is gone (SQLSTATE 42P01)')"#,
        )
        .await
        .unwrap();
    assert_eq!(
        sluice::migrate::migrate(&mut client, "sluice")
            .await
            .unwrap(),
        [3, 4]
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sluice.dead_letters WHERE route = 'public.orders'"
        )
        .await,
        1
    );
    let kafka = kafka("orders", 4);
    let config = parse(&orders_config(
        kafka.bootstrap_servers(),
        &url,
        "orders",
        "old",
        "",
    ));
    let mut pg = sluice::pg::connect(&config.postgres).await.unwrap();
    let report = replay(&mut pg, &config, &Selection::default(), false)
        .await
        .unwrap();
    assert_eq!(report.written(), 1, "{}", report.text());
    assert_eq!(
        count(&client, "SELECT count(*) FROM orders WHERE src_partition = 3 AND src_offset = 41 AND k = 'key-1'").await,
        1
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM sluice.dead_letters").await,
        0
    );
}
