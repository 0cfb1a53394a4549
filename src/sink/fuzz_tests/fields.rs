//! Keys and headers: names and values are bytes (Kafka promises no UTF-8).
//! A mapped key or header lands byte for byte or is refused with a reason;
//! a header is found by its exact name; a dead letter's header names can be
//! turned back into the original bytes.

use proptest::collection::vec;
use proptest::prelude::*;

use super::config;
use super::inputs::{header_name, headers, key};
use super::plans::planned;
use crate::config::Format;
use crate::record::{header_name_bytes as unescape, header_name_text, Record};
use crate::sink::cell::Cell;
use crate::sink::decode::{Decoded, RowDecoder};

/// A route that maps the key and the header `name` into text and bytea.
fn decoder(name: &str) -> RowDecoder {
    let header = format!("$headers.{name}");
    RowDecoder::new(
        Format::Raw,
        vec![
            planned("key_text".into(), (25, -1), false, "$key"),
            planned("key_bytes".into(), (17, -1), false, "$key"),
            planned("header_text".into(), (25, -1), false, &header),
            planned("header_bytes".into(), (17, -1), false, &header),
        ],
    )
}

/// The cell a text column gets from bytes: the bytes when they are UTF-8
/// without NUL, else the reason names the column.
fn text_outcome(bytes: Option<&[u8]>) -> Result<Cell, &'static str> {
    match bytes {
        None => Ok(Cell::Null),
        Some(b) if std::str::from_utf8(b).is_err() => Err("UTF-8"),
        Some(b) if b.contains(&0) => Err("NUL"),
        Some(b) => Ok(Cell::Bytes(b.to_vec())),
    }
}

proptest! {
    #![proptest_config(config(200_000))]

    /// Hardening #6 and dead letters: every header name, whatever its
    /// bytes, is stored as text that gives the bytes back, so two names
    /// never share a stored form.
    #[test]
    fn header_names_in_dead_letters_give_their_bytes_back(
        name in prop_oneof![header_name(), vec(any::<u8>(), 0..16)],
    ) {
        let text = header_name_text(&name);
        prop_assert!(!text.contains('\0'), "Postgres text cannot hold NUL: {text:?}");
        prop_assert_eq!(unescape(&text), Some(name));
    }
}

proptest! {
    #![proptest_config(config(50_000))]

    /// A header is found by its exact bytes; the first one of that name
    /// counts.
    #[test]
    fn headers_are_found_by_their_exact_name(
        headers in headers(),
        name in prop_oneof![Just("trace".to_owned()), Just("\\xff".to_owned()), "\\PC{0,4}"],
    ) {
        let record = Record { offset: 0, timestamp_ms: None, key: None, value: None, headers };
        let first = record.headers.iter().find(|(k, _)| k == name.as_bytes());
        prop_assert_eq!(record.header(&name), first.and_then(|(_, v)| v.as_deref()));
    }
}

proptest! {
    #![proptest_config(config(60_000))]

    /// A mapped key or header lands byte for byte in bytea; in text exactly
    /// when it is UTF-8 without NUL, and otherwise the record is refused
    /// with the column named.
    #[test]
    fn mapped_keys_and_headers_land_byte_for_byte_or_are_refused(
        key in key(),
        headers in headers(),
        name in prop_oneof![Just("trace"), Just("é"), Just("\\xff")],
        value in vec(any::<u8>(), 0..8),
    ) {
        let record = Record { offset: 1, timestamp_ms: None, key: key.map(Into::into), value: Some(value.into()), headers };
        let mut cells = Vec::new();
        let decoded = decoder(name).decode("t", 0, &record, &mut cells);
        let header = record.header(name);
        let expected_key = text_outcome(record.key.as_deref());
        let expected_header = text_outcome(header);
        match (expected_key, expected_header) {
            (Ok(key_text), Ok(header_text)) => {
                prop_assert_eq!(decoded, Ok(Decoded::Row));
                let bytes = |b: Option<&[u8]>| b.map_or(Cell::Null, |b| Cell::Bytes(b.to_vec()));
                prop_assert_eq!(
                    cells,
                    vec![key_text, bytes(record.key.as_deref()), header_text, bytes(header)]
                );
            }
            (Err(why), _) => {
                let reason = decoded.expect_err("a key that is not text");
                prop_assert!(reason.starts_with("column key_text: ") && reason.contains(why), "{}", reason);
            }
            (_, Err(why)) => {
                let reason = decoded.expect_err("a header that is not text");
                prop_assert!(reason.starts_with("column header_text: ") && reason.contains(why), "{}", reason);
            }
        }
    }
}
