//! Rows encoded in binary COPY's row layout, sent as the bind parameters of
//! a multi-row `INSERT` (`write_method: insert`).
//!
//! A binary COPY field and a binary bind parameter are the same bytes
//! (only the length prefix differs in width and place), so an appended row
//! is encoded once, by the same decoder as for COPY, straight into one
//! buffer ([`crate::sink::decode::RowDecoder::decode_copy`]), and each
//! parameter borrows its bytes from there. That spares the cells path's
//! allocation per variable-length value, and its vector of cells, on every
//! row (benches/drain: the INSERT drain's CPU per record, docs/performance.md).

use std::error::Error;

use bytes::BufMut as _;
use tokio_postgres::types::{IsNull, ToSql, Type};

/// One field's bytes in Postgres' binary format; `None` for NULL.
#[derive(Debug, Clone, Copy)]
pub struct Param<'a>(Option<&'a [u8]>);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        Ok(match self.0 {
            Some(bytes) => {
                out.put_slice(bytes);
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    // The coercion layer chose the encoding from the column's type, as for
    // a Cell: the Rust-type-to-SQL-type check does not apply.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

/// The fields of the COPY rows in `rows` (each an `i16` field count, then
/// per field an `i32` length, -1 for NULL, and its bytes), in order,
/// appended to `out`. The rows come from this crate's own encoder; should
/// they ever be cut short, the fields stop there, and the statement's
/// parameter count no longer matches, which Postgres refuses: never a
/// panic, never a row quietly changed.
pub fn fields<'a>(rows: &'a [u8], out: &mut Vec<Param<'a>>) {
    let mut rest = rows;
    while let Some((count, after)) = take::<2>(rest) {
        rest = after;
        for _ in 0..i16::from_be_bytes(count) {
            let Some((len, after)) = take::<4>(rest) else {
                return;
            };
            rest = after;
            match usize::try_from(i32::from_be_bytes(len)) {
                Err(_) => out.push(Param(None)),
                Ok(len) => {
                    let Some((bytes, after)) = rest.split_at_checked(len) else {
                        return;
                    };
                    out.push(Param(Some(bytes)));
                    rest = after;
                }
            }
        }
    }
}

/// The first `N` bytes of `b` and what follows, if there are `N`.
fn take<const N: usize>(b: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = b.split_first_chunk::<N>()?;
    Some((*head, rest))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::sink::cell::Cell;

    fn row(cells: &[Cell], out: &mut BytesMut) {
        out.put_i16(cells.len() as i16);
        for c in cells {
            c.write_copy_field(out);
        }
    }

    #[test]
    fn the_fields_of_copy_rows_are_the_cells_bind_bytes() {
        let rows = [
            vec![Cell::I64(7), Cell::Null, Cell::Bytes(b"abc".to_vec())],
            vec![Cell::Bytes(Vec::new()), Cell::I32(-1), Cell::Bool(true)],
        ];
        let mut buf = BytesMut::new();
        rows.iter().for_each(|r| row(r, &mut buf));
        let mut params = Vec::new();
        fields(&buf, &mut params);
        let bind = |p: &dyn ToSql| {
            let mut b = BytesMut::new();
            let null = p.to_sql_checked(&Type::TEXT, &mut b).unwrap();
            (matches!(null, IsNull::Yes), b.to_vec())
        };
        let want: Vec<_> = rows.iter().flatten().map(|c| bind(c)).collect();
        let got: Vec<_> = params.iter().map(|p| bind(p)).collect();
        assert_eq!(got, want);
        // An empty value is not NULL.
        assert_eq!(got[3], (false, vec![]));
    }

    #[test]
    fn rows_cut_short_yield_the_whole_fields_before_the_cut_and_no_panic() {
        let mut buf = BytesMut::new();
        row(&[Cell::I64(1), Cell::Bytes(b"xyz".to_vec())], &mut buf);
        for cut in 0..buf.len() {
            let mut params = Vec::new();
            fields(&buf[..cut], &mut params);
            // 2 (count) + 4 + 8: the first field is whole from byte 14.
            assert_eq!(params.len(), usize::from(cut >= 14), "cut at {cut}");
        }
        let mut params = Vec::new();
        fields(&buf, &mut params);
        assert_eq!(params.len(), 2);
    }
}
