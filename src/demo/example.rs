//! The demo's table and configuration: what it runs with, printed at its
//! start and written by `--write-example DIR` as a starting point.

use super::{DemoArgs, DemoError, STATE_SCHEMA, TABLE, TOPIC};
use crate::config::{Mode, WriteMethod};

/// The demo's table: the events, unique on their Kafka coordinates.
pub fn table_ddl() -> String {
    format!(
        "CREATE TABLE {TABLE} (
    order_id bigint NOT NULL,
    customer text NOT NULL,
    seq bigint NOT NULL,
    amount numeric(12,2),
    created_at timestamptz,
    doc jsonb,
    src_partition integer NOT NULL,
    src_offset bigint NOT NULL,
    UNIQUE (src_partition, src_offset)
);
"
    )
}

/// Prints the demo's table and configuration, and writes them into
/// `--write-example DIR` (the configuration pointing at `localhost`, the
/// password from `PG_PASSWORD`).
pub(super) fn show_example(args: &DemoArgs) -> Result<(), DemoError> {
    let config = demo_config(
        "localhost:9092",
        "postgres://sluice:${PG_PASSWORD}@localhost:5432/app",
        Mode::Append,
    );
    println!("the demo's table:\n\n{}", table_ddl());
    println!("and its configuration (every setting: config/example.yaml):{config}");
    if let Some(dir) = &args.write_example {
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join(name), text))
                .map_err(|e| DemoError::Check(format!("writing {}: {e}", dir.join(name).display())))
        };
        write("table.sql", &table_ddl())?;
        write("sluice.yaml", config.trim_start())?;
        println!("wrote {0}/table.sql and {0}/sluice.yaml\n", dir.display());
    }
    Ok(())
}

/// How the drain benchmark varies the demo's route and batch; the default
/// is the demo's own.
#[derive(Debug, Clone, Default)]
pub struct Variant {
    pub write_method: WriteMethod,
    /// Upsert only: the route's `version` column (the bench uses `seq`).
    pub version: Option<String>,
    /// `batch.max_rows`; `None` is the demo's 1,000.
    pub max_rows: Option<usize>,
    /// More `column: source` mappings, for columns the caller added to
    /// the table (the latency run's `$timestamp`).
    pub extra_columns: Vec<(String, String)>,
    /// More `kafka.librdkafka` settings (the bench's `--librdkafka`).
    pub librdkafka: Vec<(String, String)>,
}

/// The demo's configuration; `Mode::Upsert` keys the route on the Kafka
/// coordinates (the table's unique index), for the drain benchmark.
pub fn demo_config(brokers: &str, url: &str, mode: Mode) -> String {
    demo_config_with(brokers, url, mode, &Variant::default())
}

/// [`demo_config`] varied as `variant` says.
pub fn demo_config_with(brokers: &str, url: &str, mode: Mode, variant: &Variant) -> String {
    let mut mode = match mode {
        Mode::Append => String::new(),
        Mode::Upsert => "\n    mode: upsert\n    key: [src_partition, src_offset]".into(),
    };
    if let Some(version) = &variant.version {
        mode.push_str(&format!("\n    version: {version}"));
    }
    if variant.write_method == WriteMethod::Insert {
        mode.push_str("\n    write_method: insert");
    }
    let max_rows = variant.max_rows.unwrap_or(1000);
    let extra: String = variant
        .extra_columns
        .iter()
        .map(|(column, source)| format!("\n      {column}: {source}"))
        .collect();
    let librdkafka: String = variant
        .librdkafka
        .iter()
        .map(|(key, value)| format!("\n    {key}: \"{value}\""))
        .collect();
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: sluice-demo
  librdkafka:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"{librdkafka}
postgres:
  url: "{url}"
  pool_size: 4
  state_schema: {STATE_SCHEMA}
batch:
  max_rows: {max_rows}
  linger: 20ms
http:
  listen: "127.0.0.1:0"
routes:
  - topic: {TOPIC}
    table: public.{TABLE}{mode}
    columns:
      order_id: /id
      customer: /customer/id
      seq: /seq
      amount: /amount
      created_at: /created_at
      doc: /
      src_partition: $partition
      src_offset: $offset{extra}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// What `--write-example` writes is a valid configuration whose columns
    /// are the table's.
    #[test]
    fn the_written_example_is_valid_and_matches_the_table() {
        let yaml = demo_config(
            "localhost:9092",
            "postgres://sluice:${PG_PASSWORD}@localhost/app",
            Mode::Append,
        );
        let config = Config::from_yaml(&yaml, |_| Some("pw".into())).expect("valid");
        let upsert = demo_config("localhost:9092", "postgres://localhost/app", Mode::Upsert);
        let upsert = Config::from_yaml(&upsert, |_| None).expect("the upsert variant is valid");
        assert_eq!(upsert.routes[0].mode, Mode::Upsert);
        let ddl = table_ddl();
        for column in config.routes[0].columns.keys() {
            assert!(
                ddl.contains(&format!("    {column} ")),
                "{column} not in the table"
            );
        }
    }
}
