//! Turns one Kafka record into one row of cells, following a route's column
//! plan. A record that cannot be decoded or coerced yields the reason, which
//! becomes its dead letter.
//!
//! JSON values and keys are walked once for the route's pointers
//! (`sink::extract`); an appended row is written straight into the COPY
//! buffer ([`RowDecoder::decode_copy`]), so a record costs no allocation.

use bytes::{BufMut as _, BytesMut};

use super::catalog::PlannedColumn;
use super::cell::Cell;
use super::coerce::{coerce, coerce_copy_field, Src};
use super::extract::Paths;
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
    /// Per column, its pointer's slot in `value_paths` or `key_paths`.
    slots: Vec<Option<usize>>,
    value_paths: Paths,
    key_paths: Paths,
    /// Some column points into the value: walk it (else only validate).
    needs_json: bool,
    /// Some column points into the key: walk the key too.
    needs_key_json: bool,
}

/// Slots kept on the stack; a route with more pointers uses the heap.
const STACK_SLOTS: usize = 32;

impl RowDecoder {
    pub fn new(format: Format, columns: Vec<PlannedColumn>) -> RowDecoder {
        let any = |f: fn(&ColumnSource) -> bool| columns.iter().any(|c| f(&c.source));
        let needs_json = format == Format::Json && any(|s| matches!(s, ColumnSource::Pointer(_)));
        let pointers = |key: bool| {
            columns.iter().filter_map(move |c| match &c.source {
                ColumnSource::Pointer(p) if !key && needs_json => Some(p.as_str()),
                ColumnSource::KeyPointer(p) if key => Some(p.as_str()),
                _ => None,
            })
        };
        let (value_paths, value_slots) = Paths::compile(pointers(false));
        let (key_paths, key_slots) = Paths::compile(pointers(true));
        let (mut value_slots, mut key_slots) = (value_slots.into_iter(), key_slots.into_iter());
        let slots = columns
            .iter()
            .map(|c| match &c.source {
                ColumnSource::Pointer(_) if needs_json => value_slots.next().flatten(),
                ColumnSource::KeyPointer(_) => key_slots.next().flatten(),
                _ => None,
            })
            .collect();
        RowDecoder {
            format,
            needs_key_json: any(|s| matches!(s, ColumnSource::KeyPointer(_))),
            needs_json,
            slots,
            value_paths,
            key_paths,
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
        self.each_source(topic, partition, record, None, |col, src| {
            out.push(coerce(&col.spec, src).map_err(|e| column_error(col, e))?);
            Ok(())
        })
    }

    /// Decodes `record` as one COPY BINARY row (the field count, then each
    /// field) appended to `row`; on a tombstone or an error `row` is left
    /// as it was.
    pub fn decode_copy(
        &self,
        topic: &str,
        partition: i32,
        record: &Record,
        row: &mut BytesMut,
    ) -> Result<Decoded, String> {
        let start = row.len();
        // The catalog plan never has more columns than a table may (1,600).
        row.put_i16(i16::try_from(self.columns.len()).unwrap_or(i16::MAX));
        let decoded = self.each_source(topic, partition, record, None, |col, src| {
            coerce_copy_field(&col.spec, src, row).map_err(|e| column_error(col, e))
        });
        if decoded != Ok(Decoded::Row) {
            row.truncate(start);
        }
        decoded
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
        self.each_source(topic, partition, record, Some(indexes), |col, src| {
            out.push(coerce(&col.spec, src).map_err(|e| column_error(col, e))?);
            Ok(())
        })
        .map(|_| ())
    }

    /// Reads the record's value and key once, then gives `put` each
    /// column's source in order (only the columns at `key_only`, from the
    /// key, when given).
    fn each_source(
        &self,
        topic: &str,
        partition: i32,
        record: &Record,
        key_only: Option<&[usize]>,
        mut put: impl FnMut(&PlannedColumn, Src<'_>) -> Result<(), String>,
    ) -> Result<Decoded, String> {
        let value = match key_only {
            Some(_) => &[][..],
            None => match record.value.as_deref() {
                Some(value) => value,
                None => return Ok(Decoded::Tombstone),
            },
        };
        let (mut value_stack, mut value_heap) = (None, Vec::new());
        let values = slots(&mut value_stack, &mut value_heap, self.value_paths.slots());
        match self.format {
            _ if key_only.is_some() => {}
            Format::Json if self.needs_json => self
                .value_paths
                .extract(value, values)
                .map_err(|e| format!("value is not valid JSON: {e}"))?,
            Format::Json => {
                // Only the whole value (or Kafka fields) are mapped: validate
                // without walking for anything.
                serde_json::from_slice::<serde::de::IgnoredAny>(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?;
            }
            Format::Raw => {}
        }
        let (mut key_stack, mut key_heap) = (None, Vec::new());
        let keys = slots(&mut key_stack, &mut key_heap, self.key_paths.slots());
        if self.needs_key_json {
            let key = record.key.as_deref().ok_or("the record has no key")?;
            self.key_paths
                .extract(key, keys)
                .map_err(|e| format!("key is not valid JSON: {e}"))?;
        }
        let ctx = Ctx {
            topic,
            partition,
            record,
            values,
            keys,
            value,
        };
        match key_only {
            Some(indexes) => {
                for &i in indexes {
                    let col = self.columns.get(i).ok_or("no such key column")?;
                    put(col, ctx.source(col, self.slots[i]))?;
                }
            }
            None => {
                for (col, &slot) in self.columns.iter().zip(&self.slots) {
                    put(col, ctx.source(col, slot))?;
                }
            }
        }
        Ok(Decoded::Row)
    }
}

fn column_error(col: &PlannedColumn, e: String) -> String {
    format!("column {}: {e}", col.name)
}

/// `n` empty slots, on the stack when they fit (and only set up when a
/// route has pointers at all: raw routes have none).
fn slots<'s, 'de>(
    stack: &'s mut Option<[Option<&'de str>; STACK_SLOTS]>,
    heap: &'s mut Vec<Option<&'de str>>,
    n: usize,
) -> &'s mut [Option<&'de str>] {
    if n == 0 {
        &mut []
    } else if n <= STACK_SLOTS {
        &mut stack.insert([None; STACK_SLOTS])[..n]
    } else {
        heap.resize(n, None);
        heap
    }
}

/// One record, ready to give each column its value.
struct Ctx<'a> {
    topic: &'a str,
    partition: i32,
    record: &'a Record,
    /// The text at each value pointer's slot.
    values: &'a [Option<&'a str>],
    keys: &'a [Option<&'a str>],
    value: &'a [u8],
}

impl<'a> Ctx<'a> {
    fn source(&self, col: &PlannedColumn, slot: Option<usize>) -> Src<'a> {
        let json =
            |slots: &[Option<&'a str>]| match slot.and_then(|s| slots.get(s).copied().flatten()) {
                Some(text) => Src::JsonText(text),
                None => Src::Missing,
            };
        let record = self.record;
        match &col.source {
            ColumnSource::Pointer(_) => json(self.values),
            ColumnSource::KeyPointer(_) => json(self.keys),
            ColumnSource::WholeValue => Src::RawJson(self.value),
            ColumnSource::Topic => Src::Text(self.topic),
            ColumnSource::Partition => Src::Int(i64::from(self.partition)),
            ColumnSource::Offset => Src::Int(record.offset),
            ColumnSource::Key => record.key.as_deref().map_or(Src::Missing, Src::Bytes),
            ColumnSource::Value => Src::Bytes(self.value),
            ColumnSource::Timestamp => record.timestamp_ms.map_or(Src::Missing, Src::TimestampMs),
            ColumnSource::Header(name) => record.header(name).map_or(Src::Missing, Src::Bytes),
        }
    }
}
