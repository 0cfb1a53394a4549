//! Turns one Kafka record into one row of cells, following a route's column
//! plan. A record that cannot be decoded or coerced yields the reason, which
//! becomes its dead letter.

use super::catalog::PlannedColumn;
use super::cell::Cell;
use super::coerce::{coerce, Src};
use crate::config::{ColumnSource, Format};
use crate::record::Record;

/// What decoding a record produced.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// The row's cells were written into the output buffer.
    Row,
    /// A record with no value: nothing to write (counted as skipped).
    Tombstone,
}

#[derive(Debug, Clone)]
pub struct RowDecoder {
    format: Format,
    columns: Vec<PlannedColumn>,
    needs_json: bool,
}

impl RowDecoder {
    pub fn new(format: Format, columns: Vec<PlannedColumn>) -> RowDecoder {
        let needs_json = format == Format::Json
            && columns
                .iter()
                .any(|c| matches!(c.source, ColumnSource::Pointer(_)));
        RowDecoder {
            format,
            columns,
            needs_json,
        }
    }

    pub fn columns(&self) -> &[PlannedColumn] {
        &self.columns
    }

    /// Decodes `record` into `out` (cleared first), one cell per column.
    pub fn decode(
        &self,
        topic: &str,
        partition: i32,
        record: &Record,
        out: &mut Vec<Cell>,
    ) -> Result<Decoded, String> {
        out.clear();
        let Some(value) = record.value.as_deref() else {
            return Ok(Decoded::Tombstone);
        };
        let json = match self.format {
            Format::Json if self.needs_json => Some(
                serde_json::from_slice::<serde_json::Value>(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?,
            ),
            Format::Json => {
                // Only the whole value (or Kafka fields) are mapped: validate
                // without building a tree.
                serde_json::from_slice::<serde::de::IgnoredAny>(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?;
                None
            }
            Format::Raw => None,
        };
        for col in &self.columns {
            let src = match &col.source {
                ColumnSource::Pointer(p) => json
                    .as_ref()
                    .and_then(|j| j.pointer(p))
                    .map_or(Src::Missing, Src::Json),
                ColumnSource::WholeValue => Src::RawJson(value),
                ColumnSource::Topic => Src::Text(topic),
                ColumnSource::Partition => Src::Int(i64::from(partition)),
                ColumnSource::Offset => Src::Int(record.offset),
                ColumnSource::Key => record.key.as_deref().map_or(Src::Missing, Src::Bytes),
                ColumnSource::Value => Src::Bytes(value),
                ColumnSource::Timestamp => {
                    record.timestamp_ms.map_or(Src::Missing, Src::TimestampMs)
                }
                ColumnSource::Header(name) => record.header(name).map_or(Src::Missing, Src::Bytes),
            };
            let cell = coerce(&col.spec, src).map_err(|e| format!("column {}: {e}", col.name))?;
            out.push(cell);
        }
        Ok(Decoded::Row)
    }
}
