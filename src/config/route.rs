//! One entry of `routes`: a topic, its table and how records are written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::defaults::*;
use super::{units, ColumnSource, TableName};

/// One entry of `routes`: a topic and the table its messages go to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The Kafka topic to consume. Several routes may read one topic: each
    /// record is then written by every one of them in one transaction, with
    /// the partition's offset, so their tables always agree. Required.
    pub topic: String,
    /// The target table, `schema.table` or `table` (schema `public`);
    /// unquoted names fold to lower case, double-quote others. Required.
    pub table: String,
    /// The route's name in dead letters (their `route` column), in metrics
    /// and in `sluice dead-letters --route`. Routes of one topic need
    /// different names. Default: the table's full name (`public.orders`).
    #[serde(default)]
    pub name: Option<String>,
    /// How message values are decoded: `json` (columns point into the JSON
    /// value) or `raw` (bytes as they are). Default: `json`.
    #[serde(default = "default_format")]
    pub format: Format,
    /// How rows are written: `copy` (binary COPY) or `insert` (multi-row
    /// INSERT, chunked under 65,535 parameters). Default: `copy`.
    #[serde(default = "default_write_method")]
    pub write_method: WriteMethod,
    /// Idempotency key: columns whose values identify a row, each one mapped
    /// under `columns`. Default: absent, which keys rows by their Kafka
    /// coordinates (topic, partition, offset).
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// Table column name (exactly as in PostgreSQL) to its source: a JSON
    /// pointer into the value (`/customer/id`, `/` for the whole value) or a
    /// Kafka field (`$topic`, `$partition`, `$offset`, `$key`, `$value`,
    /// `$timestamp`, `$headers.<name>`). Required: at least one.
    #[serde(deserialize_with = "units::unique_map")]
    pub columns: BTreeMap<String, ColumnSource>,
    /// `append` (insert every record as a new row) or `upsert` (insert or
    /// update the row with the same `key`; several records for one key in a
    /// batch collapse to the result of applying them in offset order).
    /// Default: `append`.
    #[serde(default)]
    pub mode: Mode,
    /// Upsert only: a mapped integer or timestamp column holding the
    /// record's version. A record updates the stored row only if its version
    /// is greater, so a replayed or late old record never overwrites newer
    /// state (such records are counted, not errors). Default: absent.
    #[serde(default)]
    pub version: Option<String>,
    /// Upsert only: a record with a key and no value (a tombstone) deletes
    /// the row, in order with the upserts around it. Every `key` column must
    /// then come from the record key (`$key` or `$key/<pointer>`). Without
    /// it, tombstones are skipped and counted. Default: `false`.
    #[serde(default)]
    pub delete_on_tombstone: bool,
    /// What a record that cannot be decoded or that Postgres refuses does:
    /// `dead_letter` (written to the dead-letter table; the partition goes
    /// on) or `stop` (the partition halts before it, the service reports not
    /// ready, and `sluice check` says why). Default: `dead_letter`.
    #[serde(default)]
    pub on_error: OnError,
    /// Allows an `UNLOGGED` target table. Postgres empties an unlogged table
    /// after a crash while sluice's offsets (logged) survive, so the rows of
    /// every committed batch would be lost without a trace: `sluice check`
    /// and start-up refuse such a table unless this says that losing rows on
    /// a crash is acceptable. Default: `false`.
    #[serde(default)]
    pub allow_unlogged: bool,
    /// What a partition of this topic does when its offset stored in
    /// Postgres does not fit the log; overrides
    /// `kafka.on_offset_out_of_range` (see there). Default: absent (the
    /// `kafka` setting applies).
    #[serde(default)]
    pub on_offset_out_of_range: Option<OffsetOutOfRange>,
    /// The poison-storm breaker (`on_error: dead_letter` only): when more
    /// than this share of the partition's last 1,000 records (once at least
    /// 100 are known) were dead-lettered for one reason (could not be
    /// decoded / refused by Postgres), the cause is a mapping or schema
    /// mistake, not the records; the partition halts as `on_error: stop`
    /// would, instead of emptying the topic into the dead-letter table.
    /// Above 0 and at most 1; `1` turns the breaker off. Default: `0.5`.
    #[serde(default = "default_max_dead_letter_ratio")]
    pub max_dead_letter_ratio: f64,
}

/// What a partition does when its stored offset is outside the log
/// (docs/ARCHITECTURE.md, "Offsets at the edges of the log").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetOutOfRange {
    /// Hold the partition, write nothing, report it (`/readyz`, `check`,
    /// the log, `sluice_partitions_halted`) until an operator moves the
    /// stored offset.
    Halt,
    /// Go on from the log start, counting the offsets jumped over in
    /// `sluice_offset_gap_records_total`.
    Earliest,
}

/// How a route writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every record is a new row.
    #[default]
    Append,
    /// Insert, or update the row with the same key.
    Upsert,
}

/// What a bad record does to its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Dead-letter it and go on.
    #[default]
    DeadLetter,
    /// Halt the partition before it.
    Stop,
}

impl RouteConfig {
    /// The parsed `table` (always `Ok` once `Config::validate` passed).
    pub fn table_name(&self) -> Result<TableName, String> {
        TableName::parse(&self.table)
    }

    /// `name`, else the table's full name (else `table` as written, when
    /// it does not parse).
    pub fn route_name(&self) -> String {
        match (&self.name, self.table_name()) {
            (Some(name), _) => name.clone(),
            (None, Ok(table)) => table.to_string(),
            (None, Err(_)) => self.table.clone(),
        }
    }
}

/// How a route decodes message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The value is a JSON document.
    #[default]
    Json,
    /// The value is opaque bytes.
    Raw,
}

/// How a route writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMethod {
    /// Binary COPY into a staging table.
    #[default]
    Copy,
    /// Multi-row INSERT, chunked under 65,535 bind parameters.
    Insert,
}
