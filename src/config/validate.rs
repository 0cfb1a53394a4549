//! Semantic checks on a parsed configuration. Every problem is collected;
//! each message says what is wrong and how to fix it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::names::{is_plain_identifier, TableName, MAX_IDENT_BYTES};
use super::{
    ByteSize, ColumnSource, Config, Format, KafkaConfig, Mode, Problem, RouteConfig, ThrottleConfig,
};

/// Longest Kafka topic name.
const MAX_TOPIC_LEN: usize = 249;

mod raw_settings;
mod server_limits;

pub(crate) fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Problems(Vec::new());
    check_kafka(&config.kafka, &mut problems);
    check_throttle(&config.throttle, &mut problems);
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&config.shutdown_grace) {
        problems.add(
            "shutdown_grace",
            "must be from 1s to 10m, like \"25s\" (under the pod's termination grace period)",
        );
    }

    let retry = &config.retry;
    if retry.initial_backoff.is_zero() || retry.initial_backoff > retry.max_backoff {
        problems.add(
            "retry.initial_backoff",
            "must be above zero and at most retry.max_backoff, like \"100ms\"",
        );
    }
    if retry.max_backoff > Duration::from_secs(3600) {
        problems.add(
            "retry.max_backoff",
            "is over an hour; a stuck partition would go unnoticed that long",
        );
    }

    let pg = &config.postgres;
    if pg.url.expose().trim().is_empty() {
        problems.add(
            "postgres.url",
            r#"is empty; write a connection URL like "postgres://sluice:${PG_PASSWORD}@127.0.0.1:5432/app""#,
        );
    }
    if !(1..=1000).contains(&pg.pool_size) {
        problems.add(
            "postgres.pool_size",
            format!(
                "is {}; set a number of connections from 1 to 1000",
                pg.pool_size
            ),
        );
    }
    if !is_plain_identifier(&pg.state_schema) {
        problems.add(
            "postgres.state_schema",
            format!(
                "{:?} is not a plain identifier; use lower-case letters, digits and _ (starting with a letter or _, at most {MAX_IDENT_BYTES} bytes), like \"sluice\"",
                pg.state_schema
            ),
        );
    }
    // Postgres reads 0 as "no timeout", but sluice's client-side attempt
    // deadline is three statement timeouts: 0 would time out every attempt.
    if pg.statement_timeout.is_zero() {
        problems.add(
            "postgres.statement_timeout",
            r#"is 0 (Postgres' "off"), but sluice bounds every attempt by 3 x statement_timeout to find dead connections; set a positive duration like "60s" (the default)"#,
        );
    }
    if pg.connect_timeout.is_zero() {
        problems.add(
            "postgres.connect_timeout",
            r#"is 0; set a positive duration like "10s""#,
        );
    }
    super::postgres_tls::validate(pg, &mut problems.0);
    server_limits::check(pg, &mut problems.0);

    let batch = &config.batch;
    if batch.max_rows == 0 {
        problems.add("batch.max_rows", "is 0; set at least 1 row (default 5000)");
    }
    if batch.max_bytes < ByteSize::KIB || batch.max_bytes > ByteSize::GIB {
        problems.add(
            "batch.max_bytes",
            format!(
                "is {}; set a size from 1KiB to 1GiB, like \"4MiB\"",
                batch.max_bytes
            ),
        );
    }
    if batch.linger > Duration::from_secs(600) {
        problems.add(
            "batch.linger",
            format!(
                "is {}; set at most 10m (default 50ms)",
                humantime::format_duration(batch.linger)
            ),
        );
    }

    if config.routes.is_empty() {
        problems.add(
            "routes",
            "is empty; add at least one route with topic, table and columns",
        );
    }
    let mut first_of_topic: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (index, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{index}]");
        check_route(&at, route, &mut problems);
        if route.topic.is_empty() {
            continue;
        }
        if route.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            problems.add(
                format!("{at}.name"),
                "is empty; name the route, or leave name out to use the table's name",
            );
        }
        let name = route.route_name();
        match names.get(&(route.topic.as_str(), name.clone())) {
            Some(other) => problems.add(
                format!("{at}.name"),
                format!(
                    "{name:?} is also the name of routes[{other}], which reads topic {:?} too; \
                     give each route of a topic its own name",
                    route.topic
                ),
            ),
            None => {
                names.insert((route.topic.as_str(), name), index);
            }
        }
        // Per-partition rules: the routes of one topic share one partition
        // worker, so they must agree on what it does.
        match first_of_topic.get(route.topic.as_str()) {
            Some(&first) => {
                shared_by_topic(&at, first, &config.routes[first], route, &mut problems)
            }
            None => {
                first_of_topic.insert(&route.topic, index);
            }
        }
    }

    if config.log.level.trim().is_empty() {
        problems.add(
            "log.level",
            r#"is empty; write a level like "info" or a directive like "info,sluice=debug""#,
        );
    }
    problems.0
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }
}

fn check_kafka(kafka: &KafkaConfig, problems: &mut Problems) {
    if kafka.brokers.trim().is_empty() {
        problems.add(
            "kafka.brokers",
            r#"is empty; list the bootstrap brokers like "127.0.0.1:9092" or "k1:9092,k2:9092""#,
        );
    } else if kafka.brokers.split(',').any(|b| b.trim().is_empty()) {
        problems.add(
            "kafka.brokers",
            format!(
                "{:?} has an empty entry; separate brokers with single commas, like \"k1:9092,k2:9092\"",
                kafka.brokers
            ),
        );
    } else if kafka.brokers.contains('@') {
        // Not quoted: what precedes the @ is likely a password, and a
        // broker address shows up in Debug output and librdkafka's logs.
        problems.add(
            "kafka.brokers",
            "holds credentials (user:password@host): a Kafka bootstrap address takes none; \
             list host:port pairs and set the credentials under kafka.security.sasl \
             (password: ${VAR})",
        );
    }
    if kafka.group_id.trim().is_empty() {
        problems.add(
            "kafka.group_id",
            r#"is empty; name the consumer group, like "orders-sink""#,
        );
    }
    let timeout = kafka.revoke_timeout;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(600) {
        problems.add(
            "kafka.revoke_timeout",
            format!(
                "is {}; set a duration from 1s to 10m (default 10s)",
                humantime::format_duration(timeout)
            ),
        );
    }
    raw_settings::check(kafka, &mut problems.0);
    if let Some(security) = &kafka.security {
        super::kafka_security::validate(security, &mut problems.0);
    }
}

/// The settings that belong to a topic's partitions rather than to one
/// route: the routes of a topic must give them the same value.
fn shared_by_topic(
    at: &str,
    first: usize,
    a: &RouteConfig,
    b: &RouteConfig,
    problems: &mut Problems,
) {
    if a.on_offset_out_of_range != b.on_offset_out_of_range {
        problems.add(
            format!("{at}.on_offset_out_of_range"),
            format!(
                "differs from routes[{first}], which reads topic {:?} too; the routes of a topic \
                 share their partitions' offsets, so give them the same value (or set it on kafka)",
                b.topic
            ),
        );
    }
    if a.max_dead_letter_ratio != b.max_dead_letter_ratio {
        problems.add(
            format!("{at}.max_dead_letter_ratio"),
            format!(
                "differs from routes[{first}], which reads topic {:?} too; the poison-storm \
                 breaker watches the partition, so give the routes of a topic the same value",
                b.topic
            ),
        );
    }
}

fn check_route(at: &str, route: &RouteConfig, problems: &mut Problems) {
    let ratio = route.max_dead_letter_ratio;
    if !(ratio > 0.0 && ratio <= 1.0) {
        problems.add(
            format!("{at}.max_dead_letter_ratio"),
            format!("{ratio} is out of range; use a share above 0 and at most 1 (1 turns the poison-storm breaker off)"),
        );
    }
    let topic = &route.topic;
    if topic.is_empty() {
        problems.add(
            format!("{at}.topic"),
            "is empty; name the Kafka topic to consume",
        );
    } else if topic.len() > MAX_TOPIC_LEN
        || topic == "."
        || topic == ".."
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        problems.add(
            format!("{at}.topic"),
            format!(
                "{topic:?} is not a valid Kafka topic; use letters, digits, '.', '_' and '-' (at most {MAX_TOPIC_LEN}, not \".\" or \"..\")"
            ),
        );
    }

    if let Err(why) = TableName::parse(&route.table) {
        problems.add(format!("{at}.table"), why);
    }

    if route.columns.is_empty() {
        problems.add(
            format!("{at}.columns"),
            "is empty; map at least one column, like `order_id: /id`",
        );
    }
    for (name, source) in &route.columns {
        if name.trim().is_empty() {
            problems.add(
                format!("{at}.columns"),
                "has a column with an empty name; write the table column's name before the colon",
            );
            continue;
        }
        let path = format!("{at}.columns.{name}");
        if name.len() > MAX_IDENT_BYTES {
            problems.add(
                &path,
                format!("column name is longer than PostgreSQL's {MAX_IDENT_BYTES}-byte limit; shorten it"),
            );
        }
        let points_into_json =
            matches!(source, ColumnSource::Pointer(_) | ColumnSource::WholeValue);
        if route.format == Format::Raw && points_into_json {
            problems.add(
                path,
                "format raw has no JSON to point into; map $value instead",
            );
        }
    }

    if let Some(key) = &route.key {
        if key.is_empty() {
            problems.add(
                format!("{at}.key"),
                "is empty; list key columns, or omit key to use the Kafka coordinates",
            );
        }
        for (i, column) in key.iter().enumerate() {
            if key[..i].contains(column) {
                problems.add(
                    format!("{at}.key"),
                    format!("lists column {column:?} twice; list each key column once"),
                );
            } else if !route.columns.contains_key(column) {
                problems.add(
                    format!("{at}.key"),
                    format!(
                        "column {column:?} is not mapped; add it under {at}.columns or remove it from key"
                    ),
                );
            }
        }
    }
    check_write_semantics(route, at, problems);
}

/// mode, version, delete_on_tombstone: what upserts and deletes need.
fn check_write_semantics(route: &RouteConfig, at: &str, problems: &mut Problems) {
    let upsert = route.mode == Mode::Upsert;
    if upsert && route.key.is_none() {
        problems.add(
            format!("{at}.key"),
            "mode upsert needs key: list the columns that identify a row (a unique index must cover them)",
        );
    }
    if let Some(version) = &route.version {
        if !upsert {
            problems.add(
                format!("{at}.version"),
                "only applies to mode upsert; remove it or set mode: upsert",
            );
        } else if !route.columns.contains_key(version) {
            problems.add(
                format!("{at}.version"),
                format!("column {version:?} is not mapped; add it under {at}.columns"),
            );
        } else if route.key.as_ref().is_some_and(|k| k.contains(version)) {
            problems.add(
                format!("{at}.version"),
                format!("column {version:?} is a key column; pick another column"),
            );
        }
    }
    if route.delete_on_tombstone {
        if !upsert {
            problems.add(
                format!("{at}.delete_on_tombstone"),
                "only applies to mode upsert; remove it or set mode: upsert",
            );
        }
        for column in route.key.iter().flatten() {
            let from_key = matches!(
                route.columns.get(column),
                Some(ColumnSource::Key | ColumnSource::KeyPointer(_))
            );
            if !from_key {
                problems.add(
                    format!("{at}.columns.{column}"),
                    "a tombstone has no value, so with delete_on_tombstone every key column must come \
                     from the record key: map it to $key or $key/<JSON pointer>",
                );
            }
        }
    }
}

fn check_throttle(throttle: &ThrottleConfig, problems: &mut Problems) {
    if throttle.max_rows_per_second == Some(0) {
        problems.add(
            "throttle.max_rows_per_second",
            "is 0, which would write nothing; set a rate of at least 1 or remove it",
        );
    }
    if throttle
        .max_bytes_per_second
        .is_some_and(|b| b < ByteSize::KIB)
    {
        problems.add(
            "throttle.max_bytes_per_second",
            "is under 1KiB; set a rate like \"20MiB\" or remove it",
        );
    }
    let Some(adaptive) = &throttle.adaptive else {
        return;
    };
    match throttle.max_rows_per_second {
        None => problems.add(
            "throttle.adaptive",
            "needs throttle.max_rows_per_second: the brake raises the rate back up to it",
        ),
        Some(max) if adaptive.min_rows_per_second > max => problems.add(
            "throttle.adaptive.min_rows_per_second",
            format!(
                "is {} but throttle.max_rows_per_second is {max}; set it at most {max}",
                adaptive.min_rows_per_second
            ),
        ),
        Some(_) => {}
    }
    if adaptive.min_rows_per_second == 0 {
        problems.add(
            "throttle.adaptive.min_rows_per_second",
            "is 0, which could stop writing for good; set at least 1",
        );
    }
    if adaptive.target_commit_latency.is_zero() {
        problems.add(
            "throttle.adaptive.target_commit_latency",
            "is zero; set the commit latency to aim for, like \"250ms\"",
        );
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&adaptive.window) {
        problems.add(
            "throttle.adaptive.window",
            "must be from 100ms to 1m, like \"1s\"",
        );
    }
    if adaptive.max_replication_lag.is_some_and(|b| b.bytes() == 0) {
        problems.add(
            "throttle.adaptive.max_replication_lag",
            "is 0; set a lag in bytes like \"256MiB\" or remove it",
        );
    }
}
