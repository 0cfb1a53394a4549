//! R3u, the other upsert issue #14 names: each chunk of `batch.max_rows`
//! rows as one `INSERT ... SELECT * FROM unnest($1, $2, ...) ON CONFLICT
//! ... DO UPDATE`, one binary array parameter per column (one plan per
//! statement, no parameter limit), against R3's temp table and COPY.
//!
//! The arrays are built from the COPY rows refs.rs holds before any
//! timing: an array element is a binary field's bytes with an `i32`
//! length, as in a COPY row, so what is timed is Postgres taking them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::refs::COLUMNS;
use super::refs_insert::Raw;
use sluice::demo::TABLE;

/// Every chunk's arrays and the statement they go with.
pub struct Unnest {
    types: Vec<Type>,
    /// Per chunk, one array per column.
    chunks: Vec<Vec<Raw>>,
    sql: String,
}

impl Unnest {
    /// Splits the COPY rows of `chunks` into one array per column; `key`
    /// is the conflict target, `guard` ends the `DO UPDATE`.
    pub fn new(chunks: &[Bytes], types: &[Type], key: &str, guard: &str) -> Unnest {
        let ncols = types.len();
        let arrays = chunks
            .iter()
            .map(|chunk| {
                let mut columns: Vec<Vec<Option<Bytes>>> = vec![Vec::new(); ncols];
                let mut buf = chunk.clone();
                while buf.has_remaining() {
                    let count = buf.get_i16() as usize;
                    assert_eq!(count, ncols, "a COPY row of every column");
                    for column in columns.iter_mut() {
                        let len = buf.get_i32();
                        column.push((len >= 0).then(|| buf.split_to(len as usize)));
                    }
                }
                columns
                    .iter()
                    .zip(types)
                    .map(|(values, t)| Raw(Some(array(values, t))))
                    .collect()
            })
            .collect();
        let cols: Vec<&str> = COLUMNS.split(", ").collect();
        let params: Vec<String> = (1..=ncols).map(|i| format!("${i}")).collect();
        let set: Vec<String> = cols
            .iter()
            .filter(|c| !key.split(", ").any(|k| k == **c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        Unnest {
            types: types.iter().map(array_type).collect(),
            chunks: arrays,
            sql: format!(
                "INSERT INTO {TABLE} AS t ({COLUMNS}) SELECT * FROM unnest({}) \
                 ON CONFLICT ({key}) DO UPDATE SET {}{guard}",
                params.join(", "),
                set.join(", ")
            ),
        }
    }

    /// Upserts chunk `i` in the open transaction.
    pub async fn upsert(&self, client: &Client, i: usize) {
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = self.chunks[i]
            .iter()
            .zip(&self.types)
            .map(|(a, t)| (a as &(dyn ToSql + Sync), t.clone()))
            .collect();
        client
            .execute_typed(&self.sql, &typed)
            .await
            .expect("unnest upsert");
    }
}

/// Postgres' binary array: dimensions (1), a has-NULLs flag, the element
/// type, the length and lower bound (1), then each element as a length
/// (-1 for NULL) and its bytes.
fn array(values: &[Option<Bytes>], element: &Type) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(1);
    out.put_i32(i32::from(values.iter().any(Option::is_none)));
    out.put_u32(element.oid());
    out.put_i32(values.len() as i32);
    out.put_i32(1);
    for v in values {
        match v {
            Some(b) => {
                out.put_i32(b.len() as i32);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    out.freeze()
}

/// The array type of the demo table's column types.
fn array_type(element: &Type) -> Type {
    match *element {
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::TEXT => Type::TEXT_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        Type::JSON => Type::JSON_ARRAY,
        Type::BOOL => Type::BOOL_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        ref other => panic!("the unnest reference has no array type for {other}"),
    }
}
