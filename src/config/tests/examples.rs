//! The shipped example configs and the configuration reference.

use super::*;

#[test]
fn example_configs_parse_and_validate() {
    for (path, text) in example_files() {
        if let Err(err) = Config::from_yaml(&text, |_| Some("x".to_owned())) {
            panic!("{}: {err}", path.display());
        }
    }
}

#[test]
fn docs_mention_every_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let docs = std::fs::read_to_string(&path).unwrap();
    let names = [
        // Config
        "kafka",
        "postgres",
        "batch",
        "routes",
        "http",
        "log",
        // KafkaConfig
        "brokers",
        "group_id",
        "start_from",
        "revoke_timeout",
        "librdkafka",
        // KafkaSecurity
        "security",
        "protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.token_endpoint_url",
        "sasl.oauthbearer.client_id",
        "sasl.oauthbearer.client_secret",
        "sasl.oauthbearer.scope",
        "sasl.oauthbearer.extensions",
        "ssl.ca_file",
        "ssl.cert_file",
        "ssl.key_file",
        "ssl.key_password",
        "ssl.verify_hostname",
        // PostgresSsl
        "ssl",
        "ssl.mode",
        // PostgresConfig
        "url",
        "pool_size",
        "state_schema",
        "auto_migrate",
        "connect_timeout",
        "statement_timeout",
        "lock_timeout",
        "tcp_user_timeout",
        "unready_after",
        // BatchConfig
        "max_rows",
        "max_bytes",
        "linger",
        // RouteConfig
        "topic",
        "table",
        "format",
        "write_method",
        "key",
        "columns",
        "mode",
        "version",
        "delete_on_tombstone",
        "on_error",
        // RetryConfig
        "retry",
        "initial_backoff",
        "max_backoff",
        "shutdown_grace",
        // ThrottleConfig
        "throttle",
        "max_rows_per_second",
        "max_bytes_per_second",
        "adaptive",
        "target_commit_latency",
        "min_rows_per_second",
        "window",
        "max_replication_lag",
        // HttpConfig
        "listen",
        // LogConfig
        "level",
        // enum values
        "earliest",
        "latest",
        "committed",
        "json",
        "raw",
        "copy",
        "insert",
        "text",
        "append",
        "upsert",
        "dead_letter",
        "stop",
        // column sources
        "$topic",
        "$partition",
        "$offset",
        "$key",
        "$value",
        "$timestamp",
        "$headers.<name>",
        // librdkafka keys sluice owns
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.offset.reset",
    ];
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/configuration.md does not mention `{name}`"
        );
    }
}

/// Every field of docs/configuration.md's field tables appears in
/// config/example.yaml (set, or commented out where it is an alternative),
/// so the file that says it shows every setting does.
#[test]
fn example_config_shows_every_documented_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let example = std::fs::read_to_string(root.join("config/example.yaml")).unwrap();
    let mut in_field_table = false;
    let mut missing = Vec::new();
    for line in docs.lines() {
        if !line.starts_with('|') {
            in_field_table = false;
            continue;
        }
        if line.starts_with("| Field |") {
            in_field_table = true;
            continue;
        }
        if !in_field_table || line.starts_with("| ---") {
            continue;
        }
        let Some(field) = line.split('`').nth(1) else {
            continue;
        };
        let name = field.rsplit('.').next().unwrap_or(field);
        if !example.contains(&format!("{name}:")) {
            missing.push(field.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "config/example.yaml does not show {missing:?}"
    );
}
