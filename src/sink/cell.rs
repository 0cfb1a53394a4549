//! Values already encoded for PostgreSQL's binary format.
//!
//! The coercion layer picks the encoding from the target column's type, so a
//! [`Cell`] carries no type of its own and is written as-is both into COPY
//! BINARY rows and as a bind parameter.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type};

/// A value ready to be sent in PostgreSQL's binary format, both as a COPY BINARY field and as a bind parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// `bool`: one byte, 0 or 1.
    Bool(bool),
    /// `int2`.
    I16(i16),
    /// `int4`, and `date` as days since 2000-01-01.
    I32(i32),
    /// `int8`, and `timestamp`/`timestamptz` as microseconds since 2000-01-01 UTC.
    I64(i64),
    /// `float4`.
    F32(f32),
    /// `float8`.
    F64(f64),
    /// Exact binary wire bytes, already encoded for the column's type (text/varchar/json: UTF-8 bytes; jsonb: version byte 1 then JSON text; bytea: raw; uuid: 16 bytes; numeric: binary numeric; timestamp(tz): use I64 micros since 2000-01-01 instead; date: I32 days since 2000-01-01)
    Bytes(Vec<u8>),
}

impl Cell {
    /// Bytes this cell occupies in a COPY BINARY row, including the 4-byte
    /// length prefix every field carries (a NULL is just that prefix).
    pub fn approx_size(&self) -> usize {
        4 + match self {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::I16(_) => 2,
            Cell::I32(_) | Cell::F32(_) => 4,
            Cell::I64(_) | Cell::F64(_) => 8,
            Cell::Bytes(b) => b.len(),
        }
    }

    /// Appends this cell as one COPY BINARY field: an `i32` length (-1 for
    /// NULL) followed by the value's bytes.
    pub fn write_copy_field(&self, out: &mut BytesMut) {
        let at = out.len();
        out.put_i32(-1);
        if self.write_value(out) {
            // Postgres caps a field at 1 GB, far below i32::MAX.
            let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Appends the value's binary form; false for NULL, which has none.
    fn write_value(&self, out: &mut BytesMut) -> bool {
        match self {
            Cell::Null => return false,
            Cell::Bool(b) => out.put_u8(u8::from(*b)),
            Cell::I16(v) => out.put_i16(*v),
            Cell::I32(v) => out.put_i32(*v),
            Cell::I64(v) => out.put_i64(*v),
            Cell::F32(v) => out.put_f32(*v),
            Cell::F64(v) => out.put_f64(*v),
            Cell::Bytes(b) => out.put_slice(b),
        }
        true
    }
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        Ok(if self.write_value(out) {
            IsNull::No
        } else {
            IsNull::Yes
        })
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    // The coercion layer already chose the encoding from the column's type,
    // so the usual Rust-type-to-SQL-type check would only get in the way.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_wire_encoding() {
        let sql = |c: &Cell| {
            let mut b = BytesMut::new();
            let null = c.to_sql_checked(&Type::TEXT, &mut b).unwrap();
            (matches!(null, IsNull::Yes), b.to_vec())
        };
        assert_eq!(sql(&Cell::Null), (true, vec![]));
        assert_eq!(sql(&Cell::Bool(true)), (false, vec![1]));
        assert_eq!(sql(&Cell::I16(-2)), (false, vec![0xff, 0xfe]));
        assert_eq!(sql(&Cell::I32(1)), (false, vec![0, 0, 0, 1]));
        assert_eq!(sql(&Cell::I64(258)), (false, vec![0, 0, 0, 0, 0, 0, 1, 2]));
        assert_eq!(sql(&Cell::F32(1.0)), (false, vec![0x3f, 0x80, 0, 0]));
        assert_eq!(
            sql(&Cell::F64(1.0)),
            (false, vec![0x3f, 0xf0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(sql(&Cell::Bytes(b"hi".to_vec())), (false, b"hi".to_vec()));
        assert!(Cell::accepts(&Type::INT4) && Cell::accepts(&Type::JSONB));

        let mut row = BytesMut::new();
        for c in [Cell::Null, Cell::I16(7), Cell::Bytes(b"ab".to_vec())] {
            let before = row.len();
            c.write_copy_field(&mut row);
            assert_eq!(row.len() - before, c.approx_size());
        }
        assert_eq!(
            &row[..],
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 7, 0, 0, 0, 2, b'a', b'b']
        );
    }
}
