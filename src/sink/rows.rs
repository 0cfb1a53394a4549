//! Streams rows of cells into one SQL statement shape, by binary COPY or by
//! chunked `VALUES` lists.
//!
//! The same machinery writes appended rows, upserted rows and deleted keys:
//! - COPY straight into the target (plain append), or into a temp table that
//!   one statement then applies (`INSERT ... SELECT ... ON CONFLICT ...` or
//!   `DELETE ... USING`);
//! - `VALUES` lists of bind parameters, chunked under Postgres' 65,535
//!   parameter limit (`INSERT ... VALUES (...), (...)` or
//!   `DELETE ... WHERE (key) IN ((...), (...))`).
//!
//! COPY data is encoded here (the binary format's header, rows, trailer)
//! into one buffer that is handed to the connection in frames of
//! [`COPY_FRAME`] bytes: tokio-postgres' `BinaryCopyInWriter` sends 4 KiB
//! chunks and builds a buffer per row. Appended rows for `VALUES` lists
//! are encoded in the same row layout and bound from there
//! (`sink::params`); upserted rows and deleted keys go as cells.

use std::hash::{Hash, Hasher};
use std::pin::Pin;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::SinkExt as _;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CopyInSink, Transaction};

use super::cell::Cell;
use super::error::SinkError;
use super::params;
use crate::config::WriteMethod;

/// Postgres accepts at most this many bind parameters in one statement.
const MAX_PARAMS: usize = 65_535;

/// COPY data is sent once this much is buffered: few, large messages.
pub const COPY_FRAME: usize = 64 * 1024;

/// The binary COPY header: signature, flags (no OIDs), no extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One statement shape over some columns.
#[derive(Debug)]
pub struct RowSql {
    method: WriteMethod,
    types: Vec<Type>,
    /// `COPY <target or stage> (cols) FROM STDIN (FORMAT binary)`.
    copy: String,
    /// COPY through a temp table: (create it, apply it to the target).
    stage: Option<(String, String)>,
    /// `... VALUES ` / `... IN (`, then `($1, $2), ($3, $4)`, then `tail`.
    head: String,
    tail: String,
    chunk_rows: usize,
    full_chunk: String,
}

/// How a statement shape is put together.
pub struct Shape<'a> {
    /// The quoted target table.
    pub target: &'a str,
    /// Quoted column names, comma-separated.
    pub cols: &'a str,
    pub types: Vec<Type>,
    /// For COPY: the statement that applies the stage `{stage}` to the
    /// target; `None` copies straight into the target.
    pub apply_stage: Option<String>,
    /// For VALUES: the text before and after the lists.
    pub head: String,
    pub tail: String,
    /// A name for the temp table, unique per target and purpose.
    pub stage_purpose: &'a str,
}

impl RowSql {
    pub fn new(method: WriteMethod, shape: Shape<'_>, max_rows: usize) -> RowSql {
        let Shape {
            target,
            cols,
            types,
            apply_stage,
            head,
            tail,
            stage_purpose,
        } = shape;
        let stage_name = apply_stage
            .as_ref()
            .map(|_| stage_name(stage_purpose, target, cols));
        let stage = apply_stage.zip(stage_name.as_ref()).map(|(apply, stage)| {
            (
                // Temp tables live per connection: pooled connections reuse
                // theirs, emptied at every commit.
                format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS \
                     AS SELECT {cols} FROM {target} WITH NO DATA"
                ),
                apply.replace("{stage}", stage),
            )
        });
        let copy_into = stage_name.as_deref().unwrap_or(target);
        let chunk_rows = chunk_rows(types.len(), max_rows);
        RowSql {
            method,
            copy: format!("COPY {copy_into} ({cols}) FROM STDIN (FORMAT binary)"),
            full_chunk: values_sql(&head, &tail, chunk_rows, types.len()),
            types,
            stage,
            head,
            tail,
            chunk_rows,
        }
    }
}

/// An open stream of rows in a transaction. No other statement may run on
/// the transaction until it is finished (COPY holds the connection).
pub enum RowWriter<'t> {
    Copy {
        sql: &'t RowSql,
        txn: &'t Transaction<'t>,
        sink: Pin<Box<CopyInSink<Bytes>>>,
        /// Encoded rows not sent yet (the header first).
        buf: BytesMut,
    },
    Values {
        sql: &'t RowSql,
        txn: &'t Transaction<'t>,
        /// Rows given as cells ([`RowWriter::push`]) not sent yet.
        params: Vec<Cell>,
        /// Rows given in COPY's row layout ([`RowWriter::row_buffer`]) not
        /// sent yet, and how many.
        encoded: BytesMut,
        encoded_rows: usize,
        rows: u64,
        affected: u64,
    },
}

impl<'t> RowWriter<'t> {
    pub async fn open(
        sql: &'t RowSql,
        txn: &'t Transaction<'t>,
    ) -> Result<RowWriter<'t>, SinkError> {
        Ok(match sql.method {
            WriteMethod::Copy => {
                if let Some((create, _)) = &sql.stage {
                    txn.batch_execute(create).await?;
                }
                let sink = txn.copy_in::<_, Bytes>(&sql.copy).await?;
                let mut buf = BytesMut::with_capacity(COPY_FRAME * 2);
                buf.put_slice(COPY_HEADER);
                RowWriter::Copy {
                    sql,
                    txn,
                    sink: Box::pin(sink),
                    buf,
                }
            }
            WriteMethod::Insert => RowWriter::Values {
                sql,
                txn,
                params: Vec::new(),
                encoded: BytesMut::new(),
                encoded_rows: 0,
                rows: 0,
                affected: 0,
            },
        })
    }

    /// The buffer a row is appended to as a COPY BINARY row (the field
    /// count, then each field) before [`RowWriter::row_written`]: for COPY
    /// the data sent, for VALUES lists the rows whose fields become the
    /// next statement's parameters. A writer takes rows either this way or
    /// as cells ([`RowWriter::push`]), not both.
    pub fn row_buffer(&mut self) -> &mut BytesMut {
        match self {
            RowWriter::Copy { buf, .. } => buf,
            RowWriter::Values { encoded, .. } => encoded,
        }
    }

    /// A row was appended to [`RowWriter::row_buffer`]: sends a frame when
    /// one is full, or a statement when a chunk is.
    pub async fn row_written(&mut self) -> Result<(), SinkError> {
        match self {
            RowWriter::Copy { sink, buf, .. } => {
                if buf.len() >= COPY_FRAME {
                    sink.send(buf.split().freeze()).await?;
                }
            }
            RowWriter::Values {
                sql,
                txn,
                encoded,
                encoded_rows,
                rows,
                affected,
                ..
            } => {
                *encoded_rows += 1;
                *rows += 1;
                if *encoded_rows == sql.chunk_rows {
                    *affected += execute_encoded(sql, txn, encoded).await?;
                    *encoded_rows = 0;
                }
            }
        }
        Ok(())
    }

    /// Writes one row, taking the cells out of `cells`.
    pub async fn push(&mut self, cells: &mut Vec<Cell>) -> Result<(), SinkError> {
        match self {
            RowWriter::Copy { buf, .. } => {
                // The catalog plan never has more columns than a table may (1,600).
                buf.put_i16(i16::try_from(cells.len()).unwrap_or(i16::MAX));
                for cell in cells.iter() {
                    cell.write_copy_field(buf);
                }
                cells.clear();
                self.row_written().await?;
            }
            RowWriter::Values {
                sql,
                txn,
                params,
                rows,
                affected,
                ..
            } => {
                params.append(cells);
                *rows += 1;
                if params.len() == sql.chunk_rows * sql.types.len() {
                    *affected += execute_values(sql, txn, params).await?;
                    params.clear();
                }
            }
        }
        Ok(())
    }

    /// Ends the stream; returns (rows pushed, rows the target statement
    /// affected) — fewer affected means conflicts or a version guard.
    pub async fn finish(self) -> Result<(u64, u64), SinkError> {
        match self {
            RowWriter::Copy {
                sql,
                txn,
                mut sink,
                mut buf,
            } => {
                buf.put_i16(-1);
                sink.send(buf.freeze()).await?;
                // Postgres counts the rows it took.
                let pushed = sink.as_mut().finish().await?;
                let affected = match &sql.stage {
                    Some((_, apply)) => txn.execute_typed(apply, &[]).await?,
                    None => pushed,
                };
                Ok((pushed, affected))
            }
            RowWriter::Values {
                sql,
                txn,
                params,
                mut encoded,
                encoded_rows,
                rows,
                mut affected,
            } => {
                if encoded_rows > 0 {
                    affected += execute_encoded(sql, txn, &mut encoded).await?;
                }
                if !params.is_empty() {
                    affected += execute_values(sql, txn, &params).await?;
                }
                Ok((rows, affected))
            }
        }
    }
}

/// The stage is created with exactly `cols`: two routes into one table with
/// different columns need different stages (a connection keeps its temp
/// tables), so the column list is part of the name.
fn stage_name(purpose: &str, target: &str, cols: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut h);
    cols.hash(&mut h);
    format!("sluice_{purpose}_{:016x}", h.finish())
}

/// Rows per statement: as many as fit under the parameter limit, and never
/// more than a batch.
fn chunk_rows(ncols: usize, max_rows: usize) -> usize {
    (MAX_PARAMS / ncols.max(1)).clamp(1, max_rows.max(1))
}

/// One `VALUES` statement of the rows encoded in `rows` (COPY's row
/// layout), which is emptied for the next chunk; the rows affected.
async fn execute_encoded(
    sql: &RowSql,
    txn: &Transaction<'_>,
    rows: &mut BytesMut,
) -> Result<u64, SinkError> {
    let mut fields = Vec::with_capacity(sql.chunk_rows * sql.types.len());
    params::fields(rows, &mut fields);
    let affected = execute_values(sql, txn, &fields).await?;
    rows.clear();
    Ok(affected)
}

/// One `VALUES` statement of `params` (whole rows, each value with its
/// column's type); the rows affected. It is an unnamed statement: no named
/// prepared statement outlives a statement, so the same code works through
/// a transaction-pooling PgBouncer, whose server connections other clients'
/// statements share (docs/operations.md, "PgBouncer"); and parse, bind and
/// execute travel in one round trip.
async fn execute_values<T: ToSql + Sync>(
    sql: &RowSql,
    txn: &Transaction<'_>,
    params: &[T],
) -> Result<u64, SinkError> {
    let ncols = sql.types.len().max(1);
    let n = params.len() / ncols;
    let statement = match n == sql.chunk_rows {
        true => std::borrow::Cow::Borrowed(sql.full_chunk.as_str()),
        false => values_sql(&sql.head, &sql.tail, n, sql.types.len()).into(),
    };
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
        .iter()
        .zip(sql.types.iter().cycle())
        .map(|(p, t)| (p as &(dyn ToSql + Sync), t.clone()))
        .collect();
    Ok(txn.execute_typed(&statement, &typed).await?)
}

/// `head ($1, $2), ($3, $4) ... tail` for `rows` rows of `ncols`.
fn values_sql(head: &str, tail: &str, rows: usize, ncols: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * ncols * 7 + tail.len());
    sql.push_str(head);
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
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
mod tests;
