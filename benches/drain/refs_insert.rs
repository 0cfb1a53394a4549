//! R2, the multi-row INSERT reference: each chunk of `batch.max_rows` rows
//! as one `INSERT INTO ... VALUES ($1, ...), (...)` of binary parameters,
//! sent as an unnamed statement with its parameter types (parse, bind and
//! execute in one round trip), as `write_method: insert` sends them.
//!
//! The parameters are the fields of the COPY rows refs.rs already holds:
//! a binary COPY field and a binary parameter are the same bytes (length
//! apart), so R2 needs no encoder of its own and times Postgres alone.

use std::error::Error;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Client;

use super::refs::COLUMNS;
use sluice::demo::TABLE;

/// One value in Postgres' binary format, `None` for NULL (a field here,
/// a whole array in refs_unnest.rs).
#[derive(Debug, Clone)]
pub struct Raw(pub Option<Bytes>);

impl ToSql for Raw {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(bytes) => {
                out.put_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    // The types come from the table's catalog (refs::extract), so the
    // bytes are right for them by construction.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Every chunk's parameters and the statements for them.
pub struct Statements {
    types: Vec<Type>,
    /// Per chunk: its fields, row after row.
    chunks: Vec<Vec<Raw>>,
    /// The statement for a chunk of `full` rows, and for the last one
    /// (shorter) when there is one.
    full: (usize, String),
    last: Option<(usize, String)>,
}

impl Statements {
    /// Splits the binary COPY rows of `chunks` (a field count, then each
    /// field's length and bytes) into parameters.
    pub fn new(chunks: &[Bytes], types: &[Type]) -> Statements {
        let ncols = types.len();
        let split: Vec<Vec<Raw>> = chunks
            .iter()
            .map(|chunk| {
                let mut buf = chunk.clone();
                let mut fields = Vec::new();
                while buf.has_remaining() {
                    let count = buf.get_i16() as usize;
                    assert_eq!(count, ncols, "a COPY row of every column");
                    for _ in 0..count {
                        let len = buf.get_i32();
                        fields.push(Raw((len >= 0).then(|| buf.split_to(len as usize))));
                    }
                }
                fields
            })
            .collect();
        let rows = |c: &Vec<Raw>| c.len() / ncols.max(1);
        let full = split.first().map_or(0, rows);
        let last = split.last().map(rows).filter(|&n| n != full);
        Statements {
            full: (full, values_sql(full, ncols)),
            last: last.map(|n| (n, values_sql(n, ncols))),
            types: types.to_vec(),
            chunks: split,
        }
    }

    /// Inserts chunk `i` in the open transaction.
    pub async fn insert(&self, client: &Client, i: usize) {
        let params = &self.chunks[i];
        let rows = params.len() / self.types.len().max(1);
        let sql = match &self.last {
            Some((n, sql)) if *n == rows => sql,
            _ => &self.full.1,
        };
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .zip(self.types.iter().cycle())
            .map(|(p, t)| (p as &(dyn ToSql + Sync), t.clone()))
            .collect();
        let inserted = client
            .execute_typed(sql, &typed)
            .await
            .expect("multi-row INSERT");
        assert_eq!(inserted as usize, rows, "every row of the chunk inserted");
    }
}

/// `INSERT INTO <table> (cols) VALUES ($1, ...), ...` for `rows` rows.
fn values_sql(rows: usize, ncols: usize) -> String {
    let mut sql = format!("INSERT INTO {TABLE} ({COLUMNS}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        let params: Vec<String> = (1..=ncols).map(|c| format!("${}", r * ncols + c)).collect();
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}
