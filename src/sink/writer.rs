//! Writes one slice of a partition's records in one transaction: the fence
//! first (so a stale worker writes nothing), then the rows by binary COPY or
//! multi-row INSERT, then the dead letters, then COMMIT.

use std::hash::{Hash, Hasher};

use deadpool_postgres::{GenericClient, Transaction};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::cell::Cell;
use super::decode::{Decoded, RowDecoder};
use super::error::SinkError;
use crate::config::{quote_ident, TableName, WriteMethod};
use crate::offsets::{OffsetStore, PartitionKey};
use crate::record::Record;

/// Postgres accepts at most this many bind parameters in one statement.
const MAX_PARAMS: usize = 65_535;

/// A record the database refused, to be dead-lettered instead of written.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: String,
    pub sqlstate: Option<String>,
}

/// What one committed attempt did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteStats {
    /// Rows that reached the table.
    pub rows: u64,
    /// Rows skipped because their idempotency key was already present.
    pub conflicts: u64,
    /// Records with no value.
    pub tombstones: u64,
    /// Dead letters written: (reason kind, count) is derivable from these.
    pub dead_letters: Vec<DeadLetterKind>,
    /// Bytes of the records in the slice.
    pub bytes: u64,
}

/// Why a record was dead-lettered (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// It could not be decoded or coerced to the column types.
    Decode,
    /// The database refused it (SQLSTATE class 22 or 23).
    Refused,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::Refused => "refused",
        }
    }
}

/// Result of one attempt.
#[derive(Debug)]
pub enum Attempt {
    Committed(WriteStats),
    /// The fence held the write back; nothing was written.
    Fenced,
}

/// One partition's slice of records and its place in the offset sequence.
pub struct Slice<'a> {
    pub key: &'a PartitionKey,
    pub owner: Uuid,
    /// The stored next offset this slice continues from.
    pub start: Option<i64>,
    pub records: &'a [Record],
    /// When set, the (single) record is dead-lettered with this reason.
    pub refused: Option<&'a Refused>,
}

impl Slice<'_> {
    pub fn end(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset + 1)
    }
}

/// Everything needed to write one route's table.
#[derive(Debug)]
pub struct TableWriter {
    pub table: TableName,
    decoder: RowDecoder,
    method: WriteMethod,
    types: Vec<Type>,
    copy_sql: String,
    /// With an idempotency key, COPY goes through a temp table and is merged
    /// with ON CONFLICT DO NOTHING.
    stage: Option<(String, String)>,
    insert_head: String,
    insert_tail: &'static str,
    chunk_rows: usize,
    full_chunk_sql: String,
    dead_letter_sql: String,
}

impl TableWriter {
    pub fn new(
        table: TableName,
        decoder: RowDecoder,
        method: WriteMethod,
        dedupe: bool,
        state_schema: &str,
        max_rows: usize,
    ) -> TableWriter {
        let columns = decoder.columns();
        let cols = columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let target = table.quoted();
        let stage_name = dedupe.then(|| format!("sluice_stage_{}", stage_suffix(&target)));
        let stage = stage_name.as_ref().map(|stage| {
            (
                format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS \
                     AS SELECT {cols} FROM {target} WITH NO DATA"
                ),
                format!(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
                ),
            )
        });
        let copy_into = stage_name.unwrap_or_else(|| target.clone());
        let ncols = columns.len().max(1);
        let chunk_rows = chunk_rows(ncols, max_rows);
        let insert_head = format!("INSERT INTO {target} ({cols}) VALUES ");
        let insert_tail = if dedupe {
            " ON CONFLICT DO NOTHING"
        } else {
            ""
        };
        let full_chunk_sql = insert_sql(&insert_head, insert_tail, chunk_rows, ncols);
        TableWriter {
            types: columns.iter().map(|c| c.pg_type.clone()).collect(),
            copy_sql: format!("COPY {copy_into} ({cols}) FROM STDIN (FORMAT binary)"),
            dead_letter_sql: format!(
                "INSERT INTO {}.dead_letters (group_id, topic, partition, \"offset\", target_table, \
                 key, value, header_keys, header_values, kafka_timestamp, error, sqlstate) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::bigint / 1000.0), $11, $12) \
                 ON CONFLICT DO NOTHING",
                quote_ident(state_schema)
            ),
            table,
            decoder,
            method,
            stage,
            insert_head,
            insert_tail,
            chunk_rows,
            full_chunk_sql,
        }
    }

    /// One attempt at writing `slice` in one transaction.
    pub async fn write(
        &self,
        client: &mut deadpool_postgres::Client,
        offsets: &OffsetStore,
        slice: &Slice<'_>,
    ) -> Result<Attempt, SinkError> {
        let txn = client.transaction().await?;
        if !offsets
            .advance(&txn, slice.key, slice.owner, slice.start, slice.end())
            .await?
        {
            txn.rollback().await?;
            return Ok(Attempt::Fenced);
        }
        let mut stats = WriteStats {
            bytes: slice.records.iter().map(|r| r.size() as u64).sum(),
            ..WriteStats::default()
        };
        let mut dead: Vec<(&Record, Refused, DeadLetterKind)> = Vec::new();
        match self.method {
            WriteMethod::Copy => self.copy_rows(&txn, slice, &mut stats, &mut dead).await?,
            WriteMethod::Insert => self.insert_rows(&txn, slice, &mut stats, &mut dead).await?,
        }
        if !dead.is_empty() {
            let stmt = txn.prepare_cached(&self.dead_letter_sql).await?;
            let target = self.table.to_string();
            for (record, refused, kind) in &dead {
                let (keys, values): (Vec<String>, Vec<Option<Vec<u8>>>) =
                    record.headers.iter().cloned().unzip();
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
                        &refused.reason,
                        &refused.sqlstate,
                    ],
                )
                .await?;
                stats.dead_letters.push(*kind);
            }
        }
        txn.commit().await?;
        Ok(Attempt::Committed(stats))
    }

    /// Decodes one record into `cells`; `false` when it yields no row (a
    /// tombstone, or a dead letter pushed onto `dead`).
    fn decode_each<'r>(
        &self,
        slice: &Slice<'r>,
        stats: &mut WriteStats,
        dead: &mut Vec<(&'r Record, Refused, DeadLetterKind)>,
        cells: &mut Vec<Cell>,
        record: &'r Record,
    ) -> bool {
        if let Some(refused) = slice.refused {
            dead.push((record, refused.clone(), DeadLetterKind::Refused));
            return false;
        }
        match self
            .decoder
            .decode(&slice.key.topic, slice.key.partition, record, cells)
        {
            Ok(Decoded::Row) => true,
            Ok(Decoded::Tombstone) => {
                stats.tombstones += 1;
                false
            }
            Err(reason) => {
                dead.push((
                    record,
                    Refused {
                        reason,
                        sqlstate: None,
                    },
                    DeadLetterKind::Decode,
                ));
                false
            }
        }
    }

    async fn copy_rows<'r>(
        &self,
        txn: &Transaction<'_>,
        slice: &Slice<'r>,
        stats: &mut WriteStats,
        dead: &mut Vec<(&'r Record, Refused, DeadLetterKind)>,
    ) -> Result<(), SinkError> {
        if let Some((create, _)) = &self.stage {
            txn.batch_execute(create).await?;
        }
        let sink = txn.copy_in(&self.copy_sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &self.types);
        pin_mut!(writer);
        let mut cells = Vec::with_capacity(self.types.len());
        for record in slice.records {
            if self.decode_each(slice, stats, dead, &mut cells, record) {
                writer.as_mut().write_raw(cells.iter()).await?;
            }
        }
        let copied = writer.finish().await?;
        stats.rows = match &self.stage {
            Some((_, merge)) => txn.execute(merge.as_str(), &[]).await?,
            None => copied,
        };
        stats.conflicts = copied - stats.rows.min(copied);
        Ok(())
    }

    async fn insert_rows<'r>(
        &self,
        txn: &Transaction<'_>,
        slice: &Slice<'r>,
        stats: &mut WriteStats,
        dead: &mut Vec<(&'r Record, Refused, DeadLetterKind)>,
    ) -> Result<(), SinkError> {
        let ncols = self.types.len().max(1);
        let mut params: Vec<Cell> = Vec::with_capacity(self.chunk_rows * ncols);
        let mut cells = Vec::with_capacity(ncols);
        let mut decoded = 0u64;
        for record in slice.records {
            if self.decode_each(slice, stats, dead, &mut cells, record) {
                params.append(&mut cells);
                decoded += 1;
                if params.len() == self.chunk_rows * ncols {
                    let stmt = txn.prepare_cached(&self.full_chunk_sql).await?;
                    stats.rows += txn.execute(&stmt, &as_params(&params)).await?;
                    params.clear();
                }
            }
        }
        if !params.is_empty() {
            let sql = insert_sql(
                &self.insert_head,
                self.insert_tail,
                params.len() / ncols,
                ncols,
            );
            stats.rows += txn.execute(sql.as_str(), &as_params(&params)).await?;
        }
        stats.conflicts = decoded - stats.rows.min(decoded);
        Ok(())
    }
}

/// Temp tables live per connection; a stable name per target lets pooled
/// connections reuse theirs.
fn stage_suffix(target: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Rows per INSERT statement: as many as fit under the parameter limit, and
/// never more than a batch.
fn chunk_rows(ncols: usize, max_rows: usize) -> usize {
    (MAX_PARAMS / ncols.max(1)).clamp(1, max_rows.max(1))
}

fn as_params(cells: &[Cell]) -> Vec<&(dyn ToSql + Sync)> {
    cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect()
}

/// `INSERT ... VALUES ($1, $2), ($3, $4) ...` for `rows` rows.
fn insert_sql(head: &str, tail: &str, rows: usize, ncols: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * ncols * 7 + tail.len());
    sql.push_str(head);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..ncols {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statement_shape() {
        assert_eq!(
            insert_sql(
                "INSERT INTO t (a, b) VALUES ",
                " ON CONFLICT DO NOTHING",
                2,
                2
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn chunks_stay_under_the_parameter_limit() {
        assert_eq!(chunk_rows(20, 5_000), 3_276);
        assert!(chunk_rows(20, 5_000) * 20 <= MAX_PARAMS);
        assert_eq!(chunk_rows(3, 100), 100);
        assert_eq!(chunk_rows(70_000, 100), 1);
    }
}
