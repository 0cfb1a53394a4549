//! Config::validate: each problem, with its path.

use super::*;

#[test]
fn validation_of_kafka_and_postgres() {
    let p = problems_after(|c| {
        c.kafka.brokers = " ".into();
        c.kafka.group_id = String::new();
        c.kafka.revoke_timeout = Duration::from_millis(500);
        for key in [
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "auto.offset.reset",
            "isolation.level",
            "client.id",
        ] {
            c.kafka.librdkafka.insert(key.into(), "x".into());
        }
        c.postgres.pool_size = 0;
        c.postgres.state_schema = "Sluice".into();
    });
    assert_one(&p, "kafka.brokers", "is empty");
    assert_one(&p, "kafka.group_id", "is empty");
    assert_one(&p, "kafka.revoke_timeout", "from 1s to 10m");
    assert_one(
        &p,
        "kafka.librdkafka.bootstrap.servers",
        "use kafka.brokers",
    );
    assert_one(&p, "kafka.librdkafka.group.id", "use kafka.group_id");
    assert_one(
        &p,
        "kafka.librdkafka.enable.auto.commit",
        "offsets in Postgres",
    );
    assert_one(
        &p,
        "kafka.librdkafka.enable.auto.offset.store",
        "offsets in Postgres",
    );
    assert_one(
        &p,
        "kafka.librdkafka.auto.offset.reset",
        "use kafka.start_from",
    );
    // Hardening #4: read_uncommitted would write aborted transactions.
    assert_one(&p, "kafka.librdkafka.isolation.level", "read_committed");
    assert_one(&p, "postgres.pool_size", "from 1 to 1000");
    assert_one(&p, "postgres.state_schema", "not a plain identifier");
    assert_eq!(p.len(), 11, "{p:#?}");

    let p = problems_after(|c| {
        c.kafka.brokers = "a:1,,b:2".into();
        c.kafka.revoke_timeout = Duration::from_secs(601);
        c.postgres.pool_size = 1001;
        c.postgres.state_schema = "x".repeat(64);
        c.postgres.connect_timeout = Duration::ZERO;
        // Hardening #10: 0 would make every attempt's deadline 0.
        c.postgres.statement_timeout = Duration::ZERO;
        c.postgres.url = Secret::new("");
    });
    assert_one(&p, "kafka.brokers", "empty entry");
    assert_one(&p, "kafka.revoke_timeout", "from 1s to 10m");
    assert_one(&p, "postgres.pool_size", "is 1001");
    assert_one(&p, "postgres.state_schema", "not a plain identifier");
    assert_one(&p, "postgres.connect_timeout", "positive duration");
    assert_one(&p, "postgres.url", "is empty");
    assert_one(&p, "postgres.statement_timeout", "is 0");
    assert_eq!(p.len(), 7, "{p:#?}");

    for schema in ["1abc", "a-b", "", "a b"] {
        let p = problems_after(|c| c.postgres.state_schema = schema.into());
        assert_one(&p, "postgres.state_schema", "plain identifier");
    }
    for schema in ["sluice", "_state", "s1_x"] {
        assert!(problems_after(|c| c.postgres.state_schema = schema.into()).is_empty());
    }
}

#[test]
fn validation_of_batch_and_log() {
    let p = problems_after(|c| {
        c.batch.max_rows = 0;
        c.batch.max_bytes = ByteSize(1023);
        c.batch.linger = Duration::from_secs(601);
        c.log.level = String::new();
    });
    assert_one(&p, "batch.max_rows", "at least 1");
    assert_one(
        &p,
        "batch.max_bytes",
        "is 1023B; set a size from 1KiB to 1GiB",
    );
    assert_one(&p, "batch.linger", "at most 10m");
    assert_one(&p, "log.level", "is empty");
    assert_eq!(p.len(), 4, "{p:#?}");
    let p = problems_after(|c| c.batch.max_bytes = ByteSize((1 << 30) + 1));
    assert_one(&p, "batch.max_bytes", "from 1KiB to 1GiB");
    let edges = problems_after(|c| {
        c.batch.max_bytes = ByteSize::KIB;
        c.batch.linger = Duration::ZERO;
        c.kafka.revoke_timeout = Duration::from_secs(1);
    });
    assert!(edges.is_empty(), "{edges:?}");
    assert!(problems_after(|c| c.batch.max_bytes = ByteSize::GIB).is_empty());
}

#[test]
fn validation_of_throttle() {
    let adaptive = |min| AdaptiveConfig {
        target_commit_latency: Duration::ZERO,
        min_rows_per_second: min,
        window: Duration::from_millis(50),
        max_replication_lag: Some(ByteSize(0)),
    };
    let p = problems_after(|c| {
        c.throttle.max_rows_per_second = Some(0);
        c.throttle.max_bytes_per_second = Some(ByteSize(1000));
        c.throttle.adaptive = Some(adaptive(0));
    });
    assert_one(&p, "throttle.max_rows_per_second", "is 0");
    assert_one(&p, "throttle.max_bytes_per_second", "under 1KiB");
    assert_one(
        &p,
        "throttle.adaptive.min_rows_per_second",
        "set at least 1",
    );
    assert_one(&p, "throttle.adaptive.target_commit_latency", "is zero");
    assert_one(&p, "throttle.adaptive.window", "from 100ms to 1m");
    assert_one(&p, "throttle.adaptive.max_replication_lag", "is 0");
    assert_eq!(p.len(), 6, "{p:#?}");
    let p = problems_after(|c| c.throttle.adaptive = Some(adaptive(10)));
    assert_one(
        &p,
        "throttle.adaptive",
        "needs throttle.max_rows_per_second",
    );
    let p = problems_after(|c| {
        c.throttle.max_rows_per_second = Some(5);
        c.throttle.adaptive = Some(adaptive(10));
    });
    assert_one(
        &p,
        "throttle.adaptive.min_rows_per_second",
        "is 10 but throttle.max_rows_per_second is 5",
    );
    let ok = problems_after(|c| {
        c.throttle.max_rows_per_second = Some(1);
        c.throttle.max_bytes_per_second = Some(ByteSize::KIB);
        c.throttle.adaptive = Some(AdaptiveConfig {
            target_commit_latency: Duration::from_millis(1),
            min_rows_per_second: 1,
            window: Duration::from_millis(100),
            max_replication_lag: None,
        });
    });
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn validation_of_routes() {
    let p = problems_after(|c| c.routes.clear());
    assert_one(&p, "routes", "at least one route");

    let p = problems_after(|c| {
        let mut second = c.routes[0].clone();
        second.table = "a.b.c".into();
        second.key = Some(vec!["id".into(), "missing".into(), "id".into()]);
        second
            .columns
            .insert("payload".into(), ColumnSource::WholeValue);
        second.columns.insert(String::new(), ColumnSource::Offset);
        second.format = Format::Raw;
        c.routes.push(second);
        let mut third = c.routes[0].clone();
        third.topic = "bad topic!".into();
        third.columns.clear();
        third.key = Some(vec![]);
        c.routes.push(third);
    });
    assert_one(&p, "routes[1].table", "too many dots");
    assert_one(&p, "routes[1].key", "column \"missing\" is not mapped");
    assert_one(&p, "routes[1].key", "lists column \"id\" twice");
    assert_one(
        &p,
        "routes[1].columns.payload",
        "format raw has no JSON to point into; map $value instead",
    );
    assert_one(&p, "routes[1].columns.id", "format raw has no JSON");
    assert_one(&p, "routes[1].columns", "empty name");
    assert_one(&p, "routes[2].topic", "not a valid Kafka topic");
    assert_one(&p, "routes[2].columns", "map at least one column");
    assert_one(&p, "routes[2].key", "omit key");
    assert_eq!(p.len(), 9, "{p:#?}");

    for topic in [".", "..", &"t".repeat(250), "a/b"] {
        let p = problems_after(|c| c.routes[0].topic = topic.into());
        assert_one(&p, "routes[0].topic", "not a valid Kafka topic");
    }
    let p = problems_after(|c| c.routes[0].topic = String::new());
    assert_one(&p, "routes[0].topic", "is empty");
    let p = problems_after(|c| c.routes[0].table = String::new());
    assert_one(&p, "routes[0].table", "empty");
    assert!(problems_after(|c| c.routes[0].topic = "A.b_c-1".into()).is_empty());
}

#[test]
fn validation_of_write_semantics() {
    let p = problems_after(|c| {
        let r = &mut c.routes[0];
        r.mode = Mode::Upsert;
        r.key = None;
        r.version = Some("missing".into());
        r.delete_on_tombstone = true;
    });
    assert_one(&p, "routes[0].key", "mode upsert needs key");
    assert_one(&p, "routes[0].version", "is not mapped");

    let p = problems_after(|c| {
        let r = &mut c.routes[0];
        r.columns
            .insert("id".into(), ColumnSource::Pointer("/id".into()));
        r.key = Some(vec!["id".into()]);
        r.delete_on_tombstone = true;
        r.version = Some("id".into());
    });
    assert_one(
        &p,
        "routes[0].delete_on_tombstone",
        "only applies to mode upsert",
    );
    assert_one(&p, "routes[0].version", "only applies to mode upsert");
    assert_one(&p, "routes[0].columns.id", "must come from the record key");

    let p = problems_after(|c| {
        let r = &mut c.routes[0];
        r.mode = Mode::Upsert;
        r.columns
            .insert("id".into(), ColumnSource::KeyPointer("/id".into()));
        r.key = Some(vec!["id".into()]);
        r.delete_on_tombstone = true;
        c.retry.initial_backoff = Duration::from_secs(60);
        c.retry.max_backoff = Duration::from_secs(30);
    });
    assert!(p.iter().all(|x| !x.path.starts_with("routes")), "{p:?}");
    assert_one(&p, "retry.initial_backoff", "at most retry.max_backoff");
}

#[test]
fn key_pointers_parse() {
    assert_eq!(
        "$key/order_id".parse::<ColumnSource>(),
        Ok(ColumnSource::KeyPointer("/order_id".into()))
    );
    assert_eq!(
        ColumnSource::KeyPointer("/a~1b".into()).to_string(),
        "$key/a~1b"
    );
    assert!("$key/a~2".parse::<ColumnSource>().is_err());
}

/// #17: several routes may read one topic; they need their own names and
/// must agree on what the topic's partitions do.
#[test]
fn routes_of_one_topic_need_names_of_their_own_and_shared_partition_rules() {
    let p = problems_after(|c| {
        let second = c.routes[0].clone();
        c.routes.push(second);
    });
    assert_one(&p, "routes[1].name", "also the name of routes[0]");
    assert_eq!(p.len(), 1, "{p:?}");

    let p = problems_after(|c| {
        let mut second = c.routes[0].clone();
        second.name = Some("audit".into());
        c.routes.push(second);
    });
    assert!(
        p.is_empty(),
        "a named second route of the topic is fine: {p:?}"
    );

    let p = problems_after(|c| {
        let mut second = c.routes[0].clone();
        second.table = "audit".into();
        second.max_dead_letter_ratio = 0.25;
        second.on_offset_out_of_range = Some(crate::config::OffsetOutOfRange::Earliest);
        c.routes.push(second);
        let mut third = c.routes[0].clone();
        third.name = Some(" ".into());
        c.routes.push(third);
    });
    assert_one(
        &p,
        "routes[1].max_dead_letter_ratio",
        "differs from routes[0]",
    );
    assert_one(
        &p,
        "routes[1].on_offset_out_of_range",
        "differs from routes[0]",
    );
    assert_one(&p, "routes[2].name", "is empty");
}
