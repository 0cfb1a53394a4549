use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::ops::status::kafka::BrokerFacts;
use crate::ops::status::state::{HaltRow, OffsetRow};

const LOG: LogBounds = LogBounds { low: 10, high: 100 };

#[test]
fn lag_in_records() {
    assert_eq!(lag_records(LOG, Some(100)), 0);
    assert_eq!(lag_records(LOG, Some(40)), 60);
    // Never written: the whole log is behind.
    assert_eq!(lag_records(LOG, None), 90);
    // Records below the log start are gone, not owed.
    assert_eq!(lag_records(LOG, Some(3)), 90);
    // Ahead of the log end (another log, a truncated topic): nothing owed.
    assert_eq!(lag_records(LOG, Some(120)), 0);
    assert_eq!(lag_records(LogBounds { low: 5, high: 5 }, Some(2)), 0);
}

#[test]
fn where_the_next_record_is() {
    assert_eq!(read_position(LOG, Some(40)), Some(40));
    assert_eq!(read_position(LOG, None), Some(10));
    assert_eq!(read_position(LOG, Some(3)), Some(10));
    assert_eq!(read_position(LOG, Some(100)), None);
    assert_eq!(read_position(LOG, Some(120)), None);
}

#[test]
fn lag_in_seconds() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(lag_seconds(0, None, now), Some(0.0));
    assert_eq!(lag_seconds(0, Some(1), now), Some(0.0));
    assert_eq!(lag_seconds(5, Some(940_000), now), Some(60.0));
    // A producer clock ahead of ours is no negative lag.
    assert_eq!(lag_seconds(5, Some(2_000_000), now), Some(0.0));
    assert_eq!(lag_seconds(5, None, now), None);
}

fn config() -> Config {
    Config::from_yaml(
        r#"
kafka:
  brokers: "localhost:9092"
  group_id: g
postgres:
  url: "postgres://localhost/db"
routes:
  - topic: orders
    table: orders
    columns:
      k: /k
  - topic: orders
    table: audit
    name: audit-log
    columns:
      k: /k
"#,
        |_| None,
    )
    .expect("valid config")
}

fn broker(cluster: &str) -> BrokerFacts {
    BrokerFacts {
        cluster_id: Some(cluster.into()),
        logs: HashMap::from([
            (("orders".to_string(), 1), LogBounds { low: 0, high: 50 }),
            (("orders".to_string(), 0), LogBounds { low: 0, high: 20 }),
        ]),
        missing_topics: vec![],
        timestamps: HashMap::new(),
        group: Err("not supported".into()),
    }
}

fn row(next: Option<i64>, cluster: &str) -> OffsetRow {
    OffsetRow {
        next_offset: next,
        owner: uuid::Uuid::from_u128(7),
        updated_at: SystemTime::UNIX_EPOCH,
        cluster_id: Some(cluster.into()),
        last_record_at: None,
    }
}

#[test]
fn verdicts_and_exit_codes() {
    let config = config();
    let now = SystemTime::now();
    let mut stored = Stored::default();
    // Nothing stored: both partitions lag by their whole log.
    let r = build(&config, &stored, &broker("c1"), vec![], now);
    assert_eq!((r.verdict, r.exit_code), (Verdict::Lagging, 1));
    assert_eq!(
        r.partitions
            .iter()
            .map(|p| (p.partition, p.lag_records, p.never_written))
            .collect::<Vec<_>>(),
        vec![(0, 20, true), (1, 50, true)]
    );
    assert_eq!(r.routes.len(), 2);
    assert_eq!(r.routes[1].route, "audit-log");
    assert!(r.group.is_none() && r.group_error.is_some());

    stored
        .offsets
        .insert(("orders".into(), 0), row(Some(20), "c1"));
    stored
        .offsets
        .insert(("orders".into(), 1), row(Some(50), "c1"));
    let r = build(&config, &stored, &broker("c1"), vec![], now);
    assert_eq!((r.verdict, r.exit_code), (Verdict::CaughtUp, 0));
    assert!(r.partitions.iter().all(|p| p.lag_seconds == Some(0.0)));
    assert!(r.text().contains("verdict: caught up (exit 0)"));

    // Another cluster's offset halts, even when caught up.
    let r = build(&config, &stored, &broker("c2"), vec![], now);
    assert_eq!((r.verdict, r.exit_code), (Verdict::Halted, 2));
    assert!(r.partitions.iter().all(|p| p.cluster_differs && p.halted));
    assert!(r.text().contains("offset belongs to another cluster"));

    stored.halts.insert(
        ("orders".into(), 1),
        HaltRow {
            offset: 50,
            error: "value too long".into(),
            sqlstate: Some("22001".into()),
            halted_at: SystemTime::UNIX_EPOCH,
        },
    );
    let r = build(&config, &stored, &broker("c1"), vec![], now);
    assert_eq!(r.exit_code, 2);
    assert!(r.partitions[1].halt_reasons[0].contains("value too long (SQLSTATE 22001)"));
    assert!(!r.partitions[0].halted);

    // A missing topic is an error.
    let mut missing = broker("c1");
    missing.missing_topics.push("orders".into());
    stored.halts.clear();
    let r = build(&config, &stored, &missing, vec![], now);
    assert_eq!((r.verdict, r.exit_code), (Verdict::Error, 2));
}

#[test]
fn unclaimed_rows_have_no_owner() {
    let mut stored = Stored::default();
    let mut seeded = row(Some(5), "c1");
    seeded.owner = UNCLAIMED;
    stored.offsets.insert(("orders".into(), 0), seeded);
    let r = build(&config(), &stored, &broker("c1"), vec![], SystemTime::now());
    assert_eq!(r.partitions[0].owner, None);
    assert_eq!(r.partitions[0].lag_records, 15);
    assert!(r.text().contains("unclaimed"));
}
