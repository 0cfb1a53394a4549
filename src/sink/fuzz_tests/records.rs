//! Records of every kind through route plans of every shape: decoding never
//! panics, gives the same answer twice (a retry or a bisection decodes
//! again), and yields either a row of cells Postgres reads as their column
//! types or a short reason for the dead letter.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

use super::config;
use super::inputs::{json_text, record, scalar_text};
use super::plans::{column_type, plan, planned};
use super::wire::judge;
use crate::config::ColumnSource;
use crate::record::Record;
use crate::sink::catalog::PlannedColumn;
use crate::sink::cell::Cell;
use crate::sink::coerce::{coerce, Src};
use crate::sink::decode::{Decoded, RowDecoder};

/// Longest dead-letter reason: quoted values are cut at 60 characters
/// (`coerce::show`), so one bad field cannot flood the logs or the table.
const MAX_REASON: usize = 400;

/// Cells as the bytes they are sent as (a NaN cell is not equal to itself).
fn encoded(cells: &[Cell]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    for cell in cells {
        cell.write_copy_field(&mut buf);
    }
    buf.to_vec()
}

fn check_cells(columns: &[&PlannedColumn], cells: &[Cell]) -> Result<(), TestCaseError> {
    prop_assert_eq!(cells.len(), columns.len());
    for (col, cell) in columns.iter().zip(cells) {
        if let Err(defect) = judge(col, cell) {
            return Err(TestCaseError::fail(format!(
                "column {} ({:?}, {}): {defect}; cell {cell:?}",
                col.name, col.spec, col.pg_type
            )));
        }
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<(), TestCaseError> {
    prop_assert!(!reason.is_empty());
    prop_assert!(
        reason.len() <= MAX_REASON,
        "a reason of {} bytes: {reason}",
        reason.len()
    );
    Ok(())
}

/// Decodes `record` twice as a row and, as a tombstone would be, its key
/// columns; judges every cell.
pub(super) fn check_record(
    decoder: &RowDecoder,
    partition: i32,
    record: &Record,
) -> Result<(), TestCaseError> {
    let columns: Vec<&PlannedColumn> = decoder.columns().iter().collect();
    let mut cells = Vec::new();
    let first = decoder.decode("orders", partition, record, &mut cells);
    // The buffer is cleared first: leftovers must not leak into the row.
    let mut again = vec![Cell::I16(7)];
    let second = decoder.decode("orders", partition, record, &mut again);
    prop_assert_eq!(&first, &second, "decoding the same record twice disagrees");
    prop_assert_eq!(encoded(&cells), encoded(&again));
    match first {
        Ok(Decoded::Row) => {
            prop_assert!(record.value.is_some());
            check_cells(&columns, &cells)?;
        }
        Ok(Decoded::Tombstone) => prop_assert!(record.value.is_none()),
        Err(reason) => {
            prop_assert!(record.value.is_some(), "a tombstone failed: {reason}");
            check_reason(&reason)?;
        }
    }
    let keyed: Vec<usize> = (0..columns.len())
        .filter(|&i| {
            matches!(
                columns[i].source,
                ColumnSource::Key | ColumnSource::KeyPointer(_)
            )
        })
        .collect();
    let key_columns: Vec<&PlannedColumn> = keyed.iter().map(|&i| columns[i]).collect();
    match decoder.decode_key("orders", partition, record, &keyed, &mut cells) {
        Ok(()) => check_cells(&key_columns, &cells)?,
        Err(reason) => check_reason(&reason)?,
    }
    Ok(())
}

/// A source value, owned (`Src` borrows).
#[derive(Debug, Clone)]
enum Source {
    Missing,
    Json(Value),
    RawJson(Vec<u8>),
    Bytes(Vec<u8>),
    Int(i64),
    TimestampMs(i64),
    Text(String),
}

impl Source {
    fn src(&self) -> Src<'_> {
        match self {
            Source::Missing => Src::Missing,
            Source::Json(v) => Src::Json(v),
            Source::RawJson(b) => Src::RawJson(b),
            Source::Bytes(b) => Src::Bytes(b),
            Source::Int(i) => Src::Int(*i),
            Source::TimestampMs(ms) => Src::TimestampMs(*ms),
            Source::Text(s) => Src::Text(s),
        }
    }
}

fn source() -> impl Strategy<Value = Source> {
    // RawJson promises one valid JSON document, as the decoder checks.
    let valid_json = json_text().prop_filter("valid JSON", |t| {
        serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
    });
    prop_oneof![
        Just(Source::Missing),
        json_text().prop_filter_map("valid JSON", |t| serde_json::from_str(&t)
            .ok()
            .map(Source::Json)),
        valid_json.prop_map(|t| Source::RawJson(t.into_bytes())),
        vec(any::<u8>(), 0..40).prop_map(Source::Bytes),
        scalar_text().prop_map(|t| Source::Bytes(t.into_bytes())),
        any::<i64>().prop_map(Source::Int),
        any::<i64>().prop_map(Source::TimestampMs),
        scalar_text().prop_map(Source::Text),
    ]
}

proptest! {
    #![proptest_config(config(50_000))]

    /// Structure-aware records (JSON objects, near-misses, deep nesting,
    /// non-UTF-8 keys and headers) through any plan.
    #[test]
    fn records_become_rows_or_dead_letters(
        (format, columns) in plan(),
        records in vec(record(), 1..6),
        partition in prop_oneof![0i32..64, any::<i32>()],
    ) {
        let decoder = RowDecoder::new(format, columns);
        for record in &records {
            check_record(&decoder, partition, record)?;
        }
    }
}

proptest! {
    #![proptest_config(config(150_000))]

    /// Nothing but random bytes in the value, key and headers.
    #[test]
    fn random_bytes_become_rows_or_dead_letters(
        (format, columns) in plan(),
        value in vec(any::<u8>(), 0..512),
        key in proptest::option::of(vec(any::<u8>(), 0..64)),
        headers in vec((vec(any::<u8>(), 0..8), proptest::option::of(vec(any::<u8>(), 0..32))), 0..4),
    ) {
        let record = Record { offset: 0, timestamp_ms: None, key: key.map(Into::into), value: Some(value.into()), headers };
        check_record(&RowDecoder::new(format, columns), 0, &record)?;
    }
}

proptest! {
    #![proptest_config(config(200_000))]

    /// Every source kind into every column type, coerced directly.
    #[test]
    fn any_source_coerces_into_any_column(
        ty in column_type(),
        not_null in any::<bool>(),
        source in source(),
    ) {
        let col = planned("c".into(), ty, not_null, "/c");
        match coerce(&col.spec, source.src()) {
            Ok(cell) => check_cells(&[&col], &[cell])?,
            Err(reason) => check_reason(&reason)?,
        }
    }
}
