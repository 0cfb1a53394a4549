//! Every failure the fuzz targets found, as a named test (each one fails
//! without its fix).

use super::plans::planned;
use super::wire::{judge, Verdict};
use crate::config::Format;
use crate::record::header_name_bytes as unescape;
use crate::record::{header_name_text, Record};
use crate::sink::cell::Cell;
use crate::sink::coerce::{coerce, ColumnSpec, Src};
use crate::sink::decode::{Decoded, RowDecoder};

/// Found by `records_become_rows_or_dead_letters`: a `name` column was
/// sent a value of 64 bytes or more, which Postgres' binary input refuses
/// with 42622 (not a data error), so one record stopped the partition.
/// Such a value is now dead-lettered; 63 bytes still land.
#[test]
fn a_name_column_dead_letters_values_over_63_bytes() {
    let name = ColumnSpec::from_catalog(19, -1, false).expect("name is writable");
    let fits = "é".repeat(31) + "x";
    assert_eq!(fits.len(), 63);
    assert_eq!(
        coerce(&name, Src::Text(&fits)),
        Ok(Cell::Bytes(fits.clone().into_bytes()))
    );
    let long = fits + "y";
    let reason = coerce(&name, Src::Text(&long)).unwrap_err();
    assert!(reason.starts_with("is longer than 63 bytes"), "{reason}");
    let text = ColumnSpec::from_catalog(25, -1, false).expect("text is writable");
    assert!(
        coerce(&text, Src::Text(&long)).is_ok(),
        "text has no such limit"
    );
}

/// Found by `header_names_in_dead_letters_give_their_bytes_back`: the
/// header name `\xff` (four characters) and the byte 0xff were stored
/// alike in `dead_letters.header_keys`, as were `a\x00b` and `a<NUL>b`, so
/// the original name could not be told. A name holding a backslash or NUL
/// is now escaped as a whole.
#[test]
fn header_names_are_escaped_unambiguously() {
    for (a, b) in [(&b"\\xff"[..], &b"\xff"[..]), (b"a\\x00b", b"a\0b")] {
        assert_ne!(header_name_text(a), header_name_text(b));
        assert_eq!(unescape(&header_name_text(a)).as_deref(), Some(a));
        assert_eq!(unescape(&header_name_text(b)).as_deref(), Some(b));
    }
    assert_eq!(header_name_text(b"\\xff"), "\\\\xff");
    assert_eq!(header_name_text(b"trace-id"), "trace-id");
    assert_eq!(header_name_text("é".as_bytes()), "é");
}

/// Found by `records_become_rows_or_dead_letters`: a whole value mapped to
/// a json or jsonb column is only validated, not parsed into a tree, and
/// that validation has no depth limit; Postgres' recursive JSON parser
/// fails on deep nesting with 54001 (stack depth), which stopped the
/// partition. Such a value is now dead-lettered past 128 levels, the limit
/// serde_json keeps for values that columns point into.
#[test]
fn whole_values_nested_past_128_levels_are_dead_lettered() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    for oid in [114, 3802] {
        let decoder = RowDecoder::new(
            Format::Json,
            vec![planned("doc".into(), (oid, -1), false, "/")],
        );
        let record = |value: String| Record {
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: Some(value.into_bytes().into()),
            headers: Vec::new(),
        };
        let mut cells = Vec::new();
        let decoded = decoder.decode("t", 0, &record(nested(128)), &mut cells);
        assert_eq!(decoded, Ok(Decoded::Row));
        assert_eq!(judge(&decoder.columns()[0], &cells[0]), Ok(Verdict::Valid));
        for depth in [129, 20_000] {
            let reason = decoder
                .decode("t", 0, &record(nested(depth)), &mut cells)
                .unwrap_err();
            assert!(reason.contains("nested more than 128 levels"), "{reason}");
        }
    }
}
