//! The one-pass decoder (`sink::extract`, `RowDecoder::decode_copy`)
//! against the decoder it replaced, kept here as the oracle: parse the
//! value (and key) into a `serde_json::Value` tree, take each pointer with
//! `Value::pointer`, coerce the node. Same records, same plans: the same
//! cells, the same COPY bytes, and the same dead letters.

use bytes::{BufMut as _, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

use super::config;
use super::inputs::record;
use super::plans::plan;
use crate::config::{ColumnSource, Format};
use crate::record::Record;
use crate::sink::catalog::PlannedColumn;
use crate::sink::cell::Cell;
use crate::sink::coerce::{coerce, ColType, Src};
use crate::sink::decode::{Decoded, RowDecoder};

/// The decoder before `sink::extract`, for one row.
fn tree_decode(
    format: Format,
    columns: &[PlannedColumn],
    topic: &str,
    partition: i32,
    record: &Record,
) -> Result<Option<Vec<Cell>>, String> {
    let Some(value) = record.value.as_deref() else {
        return Ok(None);
    };
    let pointers = |key: bool| {
        columns.iter().any(|c| match c.source {
            ColumnSource::Pointer(_) => !key,
            ColumnSource::KeyPointer(_) => key,
            _ => false,
        })
    };
    let json = match format {
        Format::Json if pointers(false) => Some(
            serde_json::from_slice::<Value>(value)
                .map_err(|e| format!("value is not valid JSON: {e}"))?,
        ),
        Format::Json => {
            serde_json::from_slice::<serde::de::IgnoredAny>(value)
                .map_err(|e| format!("value is not valid JSON: {e}"))?;
            None
        }
        Format::Raw => None,
    };
    let key_json = match pointers(true) {
        false => None,
        true => {
            let key = record.key.as_deref().ok_or("the record has no key")?;
            Some(
                serde_json::from_slice::<Value>(key)
                    .map_err(|e| format!("key is not valid JSON: {e}"))?,
            )
        }
    };
    let pointer = |doc: Option<&Value>, p: &str| match doc.and_then(|d| d.pointer(p)) {
        Some(v) => coerce_owned(v),
        None => Owned::Missing,
    };
    let mut cells = Vec::new();
    for col in columns {
        let node = match &col.source {
            ColumnSource::Pointer(p) => pointer(json.as_ref(), p),
            ColumnSource::KeyPointer(p) => pointer(key_json.as_ref(), p),
            _ => Owned::Other,
        };
        let src = match (&node, &col.source) {
            (Owned::Missing, _) => Src::Missing,
            (Owned::Node(v), _) => Src::Json(v),
            (Owned::Other, ColumnSource::WholeValue) => Src::RawJson(value),
            (Owned::Other, ColumnSource::Topic) => Src::Text(topic),
            (Owned::Other, ColumnSource::Partition) => Src::Int(i64::from(partition)),
            (Owned::Other, ColumnSource::Offset) => Src::Int(record.offset),
            (Owned::Other, ColumnSource::Key) => {
                record.key.as_deref().map_or(Src::Missing, Src::Bytes)
            }
            (Owned::Other, ColumnSource::Value) => Src::Bytes(value),
            (Owned::Other, ColumnSource::Timestamp) => {
                record.timestamp_ms.map_or(Src::Missing, Src::TimestampMs)
            }
            (Owned::Other, ColumnSource::Header(name)) => {
                record.header(name).map_or(Src::Missing, Src::Bytes)
            }
            (Owned::Other, _) => Src::Missing,
        };
        cells.push(coerce(&col.spec, src).map_err(|e| format!("column {}: {e}", col.name))?);
    }
    Ok(Some(cells))
}

enum Owned {
    Missing,
    Node(Value),
    Other,
}

fn coerce_owned(v: &Value) -> Owned {
    Owned::Node(v.clone())
}

fn copy_row(cells: &[Cell]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i16(cells.len() as i16);
    for cell in cells {
        cell.write_copy_field(&mut buf);
    }
    buf.to_vec()
}

/// A COPY row with each jsonb field as the value Postgres keeps of it: it
/// parses the text, so spacing and escapes are not kept (an array or
/// object the extractor took goes in as it came, the tree's as it
/// serialises); other fields byte for byte.
fn as_stored(columns: &[PlannedColumn], row: &[u8]) -> Vec<u8> {
    let mut out = row[..2].to_vec();
    let mut rest = &row[2..];
    for col in columns {
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return row.to_vec();
        };
        let len = i32::from_be_bytes(*len);
        let n = usize::try_from(len).unwrap_or(0).min(after.len());
        let (field, after) = after.split_at(n);
        let jsonb = match field.split_first() {
            Some((1, text)) if col.spec.ctype == ColType::Jsonb => {
                serde_json::from_slice::<Value>(text).ok()
            }
            _ => None,
        };
        match jsonb {
            Some(value) => {
                let text = serde_json::to_vec(&value).unwrap();
                out.extend_from_slice(&(text.len() as i32 + 1).to_be_bytes());
                out.push(1);
                out.extend_from_slice(&text);
            }
            None => {
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field);
            }
        }
        rest = after;
    }
    out.extend_from_slice(rest);
    out
}

/// The same outcome: equal rows (jsonb fields equal as Postgres keeps
/// them), or both refused for the same reason (the JSON parser's own words
/// may name another position).
fn same(
    columns: &[PlannedColumn],
    old: &Result<Option<Vec<Cell>>, String>,
    new: &Result<Option<Vec<u8>>, String>,
) -> Result<(), TestCaseError> {
    match (old, new) {
        (Ok(old), Ok(new)) => {
            let stored = |row: &[u8]| as_stored(columns, row);
            prop_assert_eq!(
                old.as_deref().map(copy_row).as_deref().map(stored),
                new.as_deref().map(stored)
            );
        }
        (Err(old), Err(new)) => {
            let json = |e: &str| {
                ["value is not valid JSON", "key is not valid JSON"]
                    .into_iter()
                    .find(|p| e.starts_with(p))
            };
            match json(old) {
                Some(prefix) => prop_assert!(new.starts_with(prefix), "{old} / {new}"),
                None => prop_assert_eq!(old, new),
            }
        }
        _ => prop_assert!(false, "tree {old:?}, one pass {new:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(30_000))]

    #[test]
    fn one_pass_decoding_matches_the_tree(
        (format, columns) in plan(),
        records in vec(record(), 1..4),
    ) {
        let decoder = RowDecoder::new(format, columns.clone());
        for record in &records {
            let old = tree_decode(format, &columns, "orders", 5, record);
            let mut cells = Vec::new();
            let new = decoder.decode("orders", 5, record, &mut cells).map(|d| match d {
                Decoded::Row => Some(copy_row(&cells)),
                Decoded::Tombstone => None,
            });
            same(&columns, &old, &new)?;
            let mut buf = BytesMut::from(&b"before"[..]);
            let copied = decoder.decode_copy("orders", 5, record, &mut buf).map(|d| match d {
                Decoded::Row => Some(buf[6..].to_vec()),
                Decoded::Tombstone => None,
            });
            prop_assert_eq!(&buf[..6], b"before");
            same(&columns, &old, &copied)?;
            if copied.as_ref().is_ok_and(|row| row.is_none()) || copied.is_err() {
                prop_assert_eq!(buf.len(), 6, "nothing is left of a row not written");
            }
        }
    }
}
