//! Writes dead letters: records that could not be decoded or that Postgres
//! refused, with their original bytes, coordinates and the reason, in the
//! batch's own transaction.

use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::attempt::{DeadLetterKind, Refused, Slice};
use super::error::SinkError;
use crate::config::{quote_ident, TableName};
use crate::record::Record;

pub fn insert_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.dead_letters (group_id, topic, partition, \"offset\", target_table, \
         route, key, value, header_keys, header_values, kafka_timestamp, error, sqlstate) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::bigint / 1000.0), $12, $13) \
         ON CONFLICT DO NOTHING",
        quote_ident(state_schema)
    )
}

/// Epoch milliseconds Postgres' `to_timestamp` accepts: from 4714-11-24 BC
/// up to (not including) 294277-01-01 (`DATETIME_MIN_JULIAN` and
/// `TIMESTAMP_END_JULIAN` in its source), less a second at each end so the
/// `ms / 1000.0` division cannot round across a limit.
const MIN_TIMESTAMP_MS: i64 = -210_866_803_200_000 + 1_000;
const END_TIMESTAMP_MS: i64 = 9_224_318_016_000_000 - 1_000;

/// Any i64 is a legal Kafka timestamp; one Postgres cannot store must not
/// make the dead letter itself fail (that would stop the partition). It is
/// stored as NULL, with the raw milliseconds kept in the reason.
fn storable_timestamp(ms: Option<i64>, reason: &str) -> (Option<i64>, String) {
    match ms {
        Some(ms) if !(MIN_TIMESTAMP_MS..END_TIMESTAMP_MS).contains(&ms) => (
            None,
            format!(
                "{reason} (kafka timestamp {ms} ms is outside Postgres' range; stored as NULL)"
            ),
        ),
        _ => (ms, reason.to_owned()),
    }
}

pub async fn write(
    txn: &Transaction<'_>,
    sql: &str,
    table: &TableName,
    route: &str,
    slice: &Slice<'_>,
    dead: &[(&Record, Refused, DeadLetterKind)],
) -> Result<(), SinkError> {
    if dead.is_empty() {
        return Ok(());
    }
    let target = table.to_string();
    for (record, refused, _) in dead {
        let (timestamp_ms, reason) = storable_timestamp(record.timestamp_ms, &refused.reason);
        // Header names are text in the table (Postgres text holds neither
        // NUL nor invalid UTF-8): escaped where they are not plain text.
        let (keys, values): (Vec<String>, Vec<Option<Vec<u8>>>) = record
            .headers
            .iter()
            .map(|(k, v)| (crate::record::header_name_text(k), v.clone()))
            .unzip();
        let reason = reason.replace('\0', "\u{fffd}");
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        // An unnamed statement, as everywhere: nothing outlives the
        // transaction on a server connection a pooler shares.
        txn.execute_typed(
            sql,
            &[
                (&slice.key.group_id, Type::TEXT),
                (&slice.key.topic, Type::TEXT),
                (&slice.key.partition, Type::INT4),
                (&record.offset, Type::INT8),
                (&target, Type::TEXT),
                (&route, Type::TEXT),
                (&key, Type::BYTEA),
                (&value, Type::BYTEA),
                (&keys, Type::TEXT_ARRAY),
                (&values, Type::BYTEA_ARRAY),
                (&timestamp_ms, Type::INT8),
                (&reason, Type::TEXT),
                (&refused.sqlstate, Type::TEXT),
            ],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening #9: an out-of-range Kafka timestamp is kept in the reason.
    #[test]
    fn out_of_range_timestamps_become_null_with_the_raw_value_in_the_reason() {
        assert_eq!(storable_timestamp(Some(0), "r"), (Some(0), "r".into()));
        assert_eq!(storable_timestamp(None, "r"), (None, "r".into()));
        for ms in [i64::MAX, i64::MIN, END_TIMESTAMP_MS, MIN_TIMESTAMP_MS - 1] {
            let (ts, reason) = storable_timestamp(Some(ms), "bad");
            assert_eq!(ts, None);
            assert!(reason.starts_with("bad (kafka timestamp "), "{reason}");
            assert!(reason.contains(&ms.to_string()), "{reason}");
        }
        assert_eq!(
            storable_timestamp(Some(END_TIMESTAMP_MS - 1), "r").0,
            Some(END_TIMESTAMP_MS - 1)
        );
    }
}
