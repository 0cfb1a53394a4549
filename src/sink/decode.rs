//! Turns one Kafka record into one row of cells, following a route's column
//! plan. A record that cannot be decoded or coerced yields the reason, which
//! becomes its dead letter.

use serde_json::Value;

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
    /// Some column points into the value: parse it into a tree.
    needs_json: bool,
    /// Some column points into the key: parse the key too.
    needs_key_json: bool,
}

impl RowDecoder {
    pub fn new(format: Format, columns: Vec<PlannedColumn>) -> RowDecoder {
        let any = |f: fn(&ColumnSource) -> bool| columns.iter().any(|c| f(&c.source));
        RowDecoder {
            format,
            needs_json: format == Format::Json && any(|s| matches!(s, ColumnSource::Pointer(_))),
            needs_key_json: any(|s| matches!(s, ColumnSource::KeyPointer(_))),
            columns,
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
                serde_json::from_slice::<Value>(value)
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
        let key_json = self.key_json(record)?;
        let ctx = Ctx {
            topic,
            partition,
            record,
            json: json.as_ref(),
            key_json: key_json.as_ref(),
            value,
        };
        for col in &self.columns {
            out.push(ctx.cell(col)?);
        }
        Ok(Decoded::Row)
    }

    /// Decodes only the columns at `indexes` (key columns, which come from
    /// the record key): for a tombstone, which has no value.
    pub fn decode_key(
        &self,
        topic: &str,
        partition: i32,
        record: &Record,
        indexes: &[usize],
        out: &mut Vec<Cell>,
    ) -> Result<(), String> {
        out.clear();
        let key_json = self.key_json(record)?;
        let ctx = Ctx {
            topic,
            partition,
            record,
            json: None,
            key_json: key_json.as_ref(),
            value: &[],
        };
        for &i in indexes {
            out.push(ctx.cell(&self.columns[i])?);
        }
        Ok(())
    }

    fn key_json(&self, record: &Record) -> Result<Option<Value>, String> {
        if !self.needs_key_json {
            return Ok(None);
        }
        let key = record.key.as_deref().ok_or("the record has no key")?;
        serde_json::from_slice(key)
            .map(Some)
            .map_err(|e| format!("key is not valid JSON: {e}"))
    }
}

/// One record, ready to give each column its value.
struct Ctx<'a> {
    topic: &'a str,
    partition: i32,
    record: &'a Record,
    json: Option<&'a Value>,
    key_json: Option<&'a Value>,
    value: &'a [u8],
}

impl<'a> Ctx<'a> {
    fn cell(&self, col: &PlannedColumn) -> Result<Cell, String> {
        let pointer = |doc: Option<&'a Value>, p: &str| {
            doc.and_then(|d| d.pointer(p))
                .map_or(Src::Missing, Src::Json)
        };
        let record = self.record;
        let src = match &col.source {
            ColumnSource::Pointer(p) => pointer(self.json, p),
            ColumnSource::KeyPointer(p) => pointer(self.key_json, p),
            ColumnSource::WholeValue => Src::RawJson(self.value),
            ColumnSource::Topic => Src::Text(self.topic),
            ColumnSource::Partition => Src::Int(i64::from(self.partition)),
            ColumnSource::Offset => Src::Int(record.offset),
            ColumnSource::Key => record.key.as_deref().map_or(Src::Missing, Src::Bytes),
            ColumnSource::Value => Src::Bytes(self.value),
            ColumnSource::Timestamp => record.timestamp_ms.map_or(Src::Missing, Src::TimestampMs),
            ColumnSource::Header(name) => record.header(name).map_or(Src::Missing, Src::Bytes),
        };
        coerce(&col.spec, src).map_err(|e| format!("column {}: {e}", col.name))
    }
}
