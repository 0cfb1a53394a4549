//! Writes dead letters: records that could not be decoded or that Postgres
//! refused, with their original bytes, coordinates and the reason, in the
//! batch's own transaction.

use deadpool_postgres::Transaction;

use super::error::SinkError;
use super::writer::{DeadLetterKind, Refused, Slice};
use crate::config::{quote_ident, TableName};
use crate::record::Record;

pub fn insert_sql(state_schema: &str) -> String {
    format!(
        "INSERT INTO {}.dead_letters (group_id, topic, partition, \"offset\", target_table, \
         key, value, header_keys, header_values, kafka_timestamp, error, sqlstate) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::bigint / 1000.0), $11, $12) \
         ON CONFLICT DO NOTHING",
        quote_ident(state_schema)
    )
}

pub async fn write(
    txn: &Transaction<'_>,
    sql: &str,
    table: &TableName,
    slice: &Slice<'_>,
    dead: &[(&Record, Refused, DeadLetterKind)],
) -> Result<(), SinkError> {
    if dead.is_empty() {
        return Ok(());
    }
    let stmt = txn.prepare_cached(sql).await?;
    let target = table.to_string();
    for (record, refused, _) in dead {
        // Postgres text cannot hold NUL; header names are text.
        let (keys, values): (Vec<String>, Vec<Option<Vec<u8>>>) = record
            .headers
            .iter()
            .map(|(k, v)| (k.replace('\0', "\u{fffd}"), v.clone()))
            .unzip();
        txn.execute(
            &stmt,
            &[
                &slice.key.group_id,
                &slice.key.topic,
                &slice.key.partition,
                &record.offset,
                &target,
                &record.key,
                &record.value,
                &keys,
                &values,
                &record.timestamp_ms,
                &refused.reason.replace('\0', "\u{fffd}"),
                &refused.sqlstate,
            ],
        )
        .await?;
    }
    Ok(())
}
