use super::*;

const FULL: &str = r#"
kafka:
  brokers: "127.0.0.1:9092"
  group_id: orders-sink
  start_from: earliest        # used only when Postgres holds no offset for a partition
  revoke_timeout: 10s
  librdkafka: {}
postgres:
  url: "postgres://sluice:${PG_PASSWORD}@127.0.0.1:5432/app"
  pool_size: 8
  state_schema: sluice
  auto_migrate: true
  connect_timeout: 10s
batch:
  max_rows: 5000
  max_bytes: 4MiB
  linger: 50ms
routes:
  - topic: orders
    table: public.orders
    format: json
    write_method: copy
    key: [order_id]
    columns:
      order_id: /id
      customer_id: /customer/id
      doc: /                  # the whole value
      src_offset: $offset     # $topic $partition $offset $key $value $timestamp $headers.<name>
http:
  listen: 127.0.0.1:9187
log:
  format: text
  level: info
"#;

const MINIMAL: &str = r#"
kafka:
  brokers: "k:9092"
  group_id: g
postgres:
  url: "postgres://u@h/db"
routes:
  - topic: orders
    table: orders
    columns:
      id: /id
"#;

fn env(name: &str) -> Option<String> {
    (name == "PG_PASSWORD").then(|| "pw".to_owned())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, env)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The problems of MINIMAL with `edit` applied to its parsed form.
fn problems_after(edit: impl FnOnce(&mut Config)) -> Vec<Problem> {
    let mut config = parse(MINIMAL).unwrap();
    edit(&mut config);
    config.validate()
}

fn assert_one(problems: &[Problem], path: &str, needle: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle)),
        "no problem at {path} containing {needle:?} in {problems:#?}"
    );
}

#[test]
fn parses_the_full_contract() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(c.kafka.group_id, "orders-sink");
    assert_eq!(c.kafka.start_from, StartFrom::Earliest);
    assert_eq!(c.kafka.revoke_timeout, Duration::from_secs(10));
    assert!(c.kafka.librdkafka.is_empty());
    assert_eq!(
        c.postgres.url.expose(),
        "postgres://sluice:pw@127.0.0.1:5432/app"
    );
    assert_eq!(c.postgres.pool_size, 8);
    assert_eq!(c.postgres.state_schema, "sluice");
    assert!(c.postgres.auto_migrate);
    assert_eq!(c.postgres.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.batch.max_rows, 5000);
    assert_eq!(c.batch.max_bytes, ByteSize(4 << 20));
    assert_eq!(c.batch.linger, Duration::from_millis(50));
    let route = c.route("orders").unwrap();
    assert_eq!(route.table, "public.orders");
    assert_eq!(route.table_name().unwrap().quoted(), r#""public"."orders""#);
    assert_eq!(route.format, Format::Json);
    assert_eq!(route.write_method, WriteMethod::Copy);
    assert_eq!(route.key, Some(vec!["order_id".to_owned()]));
    let columns: Vec<_> = route
        .columns
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(
        columns,
        [
            ("customer_id", ColumnSource::Pointer("/customer/id".into())),
            ("doc", ColumnSource::WholeValue),
            ("order_id", ColumnSource::Pointer("/id".into())),
            ("src_offset", ColumnSource::Offset),
        ]
    );
    assert!(c.route("payments").is_none());
    assert_eq!(c.http.listen, "127.0.0.1:9187".parse().unwrap());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(
        !format!("{c:?}").contains("pw@"),
        "Debug must not show the password"
    );
}

#[test]
fn defaults_for_a_minimal_config() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.kafka.start_from, StartFrom::Earliest);
    assert_eq!(c.kafka.revoke_timeout, Duration::from_secs(10));
    assert!(c.kafka.librdkafka.is_empty());
    assert_eq!(c.postgres.pool_size, 8);
    assert_eq!(c.postgres.state_schema, "sluice");
    assert!(c.postgres.auto_migrate);
    assert_eq!(c.postgres.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.batch.max_rows, 5000);
    assert_eq!(c.batch.max_bytes.bytes(), 4 * 1024 * 1024);
    assert_eq!(c.batch.linger, Duration::from_millis(50));
    assert_eq!(c.routes[0].format, Format::Json);
    assert_eq!(c.routes[0].write_method, WriteMethod::Copy);
    assert_eq!(c.routes[0].key, None);
    assert_eq!(
        c.routes[0].table_name().unwrap().to_string(),
        "public.orders"
    );
    assert_eq!(c.http.listen, "127.0.0.1:9187".parse().unwrap());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
}

#[test]
fn librdkafka_values_become_strings() {
    let text = MINIMAL.replace(
        "  group_id: g\n",
        "  group_id: g\n  librdkafka:\n    fetch.max.bytes: 1048576\n    enable.partition.eof: false\n    client.id: me\n    x.ratio: 0.5\n",
    );
    let c = parse(&text).unwrap();
    let map: Vec<_> = c
        .kafka
        .librdkafka
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        map,
        [
            ("client.id", "me"),
            ("enable.partition.eof", "false"),
            ("fetch.max.bytes", "1048576"),
            ("x.ratio", "0.5"),
        ]
    );
}

#[test]
fn missing_required_fields() {
    let p = problems("kafka:\n  brokers: b\npostgres:\n  url: u\nroutes: []\n");
    assert_eq!(p.len(), 1);
    assert_one(&p, "kafka.group_id", "missing field `group_id`");
    let p = problems("postgres:\n  url: u\n");
    assert_one(&p, "kafka", "missing field `kafka`");
    let p = problems(&MINIMAL.replace("    columns:\n      id: /id\n", ""));
    assert_one(&p, "routes[0].columns", "missing field `columns`");
}

#[test]
fn unknown_field_names_the_field_and_the_expected_ones() {
    let p = problems(&MINIMAL.replace("  group_id: g\n", "  group_id: g\n  grup_id: h\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "kafka.grup_id");
    assert!(
        p[0].message.contains("unknown field `grup_id`"),
        "{}",
        p[0].message
    );
    assert!(p[0].message.contains("`group_id`"), "{}", p[0].message);
    assert!(p[0].message.contains("line 5"), "{}", p[0].message);
    let p = problems(&format!("{MINIMAL}extra: 1\n"));
    assert_one(&p, "extra", "unknown field `extra`");
}

#[test]
fn bad_duration() {
    let p = problems(&format!("{MINIMAL}batch:\n  linger: fast\n"));
    assert_eq!(p.len(), 1);
    assert_one(
        &p,
        "batch.linger",
        r#"invalid duration "fast": expected a number at "fast" (write it like "250ms", "10s", "1m" or "1m30s")"#,
    );
    let p = problems(&format!("{MINIMAL}batch:\n  linger: 50\n"));
    assert_one(&p, "batch.linger", "a unit is required");
    // One grammar (issue #17): what other parsers guess at is refused,
    // with the spelling to use.
    let p = problems(&format!("{MINIMAL}batch:\n  linger: 1M\n"));
    assert_one(&p, "batch.linger", "minutes or months?");
    let p = problems(&format!("{MINIMAL}batch:\n  max_bytes: 4 mib\n"));
    assert_one(&p, "batch.max_bytes", "write \"4MiB\"");
}

#[test]
fn bad_size() {
    let p = problems(&format!("{MINIMAL}batch:\n  max_bytes: big\n"));
    assert_eq!(p.len(), 1);
    assert_one(
        &p,
        "batch.max_bytes",
        r#"invalid size "big" (write it like "4MiB" or "512KiB")"#,
    );
    let c = parse(&format!("{MINIMAL}batch:\n  max_bytes: 65536\n")).unwrap();
    assert_eq!(c.batch.max_bytes, ByteSize(65536));
}

#[test]
fn credentials_in_the_broker_list_are_refused_unquoted() {
    let p = problems(&MINIMAL.replace("\"k:9092\"", "\"u:SECRET@k1:9092\""));
    assert_one(
        &p,
        "kafka.brokers",
        "holds credentials (user:password@host)",
    );
    assert!(!format!("{p:?}").contains("SECRET"), "{p:?}");
}

#[test]
fn bad_enum_value() {
    let p = problems(&MINIMAL.replace("  group_id: g\n", "  group_id: g\n  start_from: newest\n"));
    assert_one(
        &p,
        "kafka.start_from",
        "\"newest\" is not a start: write earliest, latest, committed or \
         timestamp:<RFC 3339 time> (timestamp:2026-12-01T00:00:00Z)",
    );
}

#[test]
fn start_from_takes_a_time() {
    let at = MINIMAL.replace(
        "  group_id: g\n",
        "  group_id: g\n  start_from: \"timestamp:2026-12-01T00:00:00Z\"\n",
    );
    let c = parse(&at).unwrap();
    assert_eq!(c.kafka.start_from, StartFrom::Timestamp(1_796_083_200_000));
    assert_eq!(
        String::from(c.kafka.start_from),
        "timestamp:2026-12-01T00:00:00.000Z"
    );
    let p = problems(&MINIMAL.replace(
        "  group_id: g\n",
        "  group_id: g\n  start_from: \"timestamp:yesterday\"\n",
    ));
    assert!(
        p.iter()
            .any(|q| q.path == "kafka.start_from" && q.message.contains("RFC 3339")),
        "{p:?}"
    );
}

#[test]
fn column_source_forms() {
    let cases = [
        ("/id", ColumnSource::Pointer("/id".into())),
        ("/customer/id", ColumnSource::Pointer("/customer/id".into())),
        ("/a~0b/c~1d", ColumnSource::Pointer("/a~0b/c~1d".into())),
        ("/", ColumnSource::WholeValue),
        ("$topic", ColumnSource::Topic),
        ("$partition", ColumnSource::Partition),
        ("$offset", ColumnSource::Offset),
        ("$key", ColumnSource::Key),
        ("$value", ColumnSource::Value),
        ("$timestamp", ColumnSource::Timestamp),
        ("$headers.trace_id", ColumnSource::Header("trace_id".into())),
        ("$headers.x.y", ColumnSource::Header("x.y".into())),
    ];
    for (text, source) in cases {
        assert_eq!(text.parse::<ColumnSource>(), Ok(source.clone()), "{text}");
        assert_eq!(source.to_string(), text);
    }
    for bad in ["id", "", "$headers.", "$nope", "/a~2", "/a~", "$Topic"] {
        assert!(
            bad.parse::<ColumnSource>().is_err(),
            "{bad:?} should be rejected"
        );
    }
    let err = "id".parse::<ColumnSource>().unwrap_err();
    assert!(
        err.contains("$headers.<name>") && err.contains("/customer/id"),
        "{err}"
    );
    let p = problems(&MINIMAL.replace("id: /id", "id: id"));
    assert_one(&p, "routes[0].columns.id", "unknown column source \"id\"");
}

#[test]
fn env_expansion() {
    let text = MINIMAL.replace("u@h/db", "${PG_USER:-sluice}:${PG_PASSWORD}@h/$${db}");
    let c = parse(&text).unwrap();
    assert_eq!(c.postgres.url.expose(), "postgres://sluice:pw@h/${db}");

    let text = MINIMAL
        .replace("u@h/db", "${USER_A}:${PASS_B}@h/db")
        .replace("group_id: g", "group_id: ${GROUP}");
    let p = problems(&text);
    let expected = [
        ("line 4", "GROUP"),
        ("line 6", "USER_A"),
        ("line 6", "PASS_B"),
    ];
    assert_eq!(p.len(), expected.len(), "{p:#?}");
    for (problem, (line, var)) in p.iter().zip(expected) {
        assert_eq!(problem.path, line);
        assert_eq!(
            problem.message,
            format!("environment variable {var} is not set (set it, or write ${{{var}:-default}})")
        );
    }
}

#[test]
fn expanded_values_never_appear_in_errors() {
    let text = MINIMAL.replace("  url:", "  pool_size: ${PG_PASSWORD}x\n  url:");
    let err = Config::from_yaml(&text, |_| Some("hunter2-secret".into())).unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres.pool_size") && shown.contains("line 6"),
        "{shown}"
    );

    let text = MINIMAL.replace("group_id: g", "group_id: g\n  start_from: ${MODE}");
    let err = Config::from_yaml(&text, |_| Some("pw".into())).unwrap_err();
    assert!(!err.to_string().contains("pw"), "{err}");
    assert!(err.to_string().contains("\"***\" is not a start"), "{err}");

    let text = MINIMAL.replace("brokers: \"k:9092\"", "brokers: [${PG_PASSWORD}");
    let err = Config::from_yaml(&text, |_| Some("hunter2-secret".into())).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn error_display_lists_every_problem() {
    let err = parse(
        &MINIMAL
            .replace("group_id: g", "group_id: \"\"")
            .replace("topic: orders", "topic: \"\""),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration:\n  - kafka.group_id: is empty; name the consumer group, like \"orders-sink\"\n  - routes[0].topic: is empty; name the Kafka topic to consume"
    );
    let err = Config::load(Path::new("/nonexistent/sluice.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/sluice.yaml: "),
        "{err}"
    );
}

/// The shipped example configs (`config/*.yaml`): path and text, by path.
pub(super) fn example_files() -> Vec<(std::path::PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the example configs in {}",
        dir.display()
    );
    files
}

mod examples;
mod fuzz;
mod security;
mod validation;
