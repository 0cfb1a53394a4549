//! What Kafka may deliver, and the route shapes sluice supports, as
//! proptest strategies.
//!
//! JSON is written out as text by hand rather than through serde_json, so
//! that it holds what serde_json never writes: duplicate keys, odd number
//! spellings, `\u0000`, lone surrogates, deep nesting and near-misses.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::record::Record;

/// Object keys: few, so that pointers find them and keys repeat.
const KEYS: &[&str] = &["a", "b", "id", "n", "s", "é", "k~x", "x/y", ""];

/// Header names routes map (`$headers.<name>`); `\xff` as text collides
/// with the byte 0xff once escaped, unless the escaping is unambiguous.
const HEADER_NAMES: &[&str] = &["trace", "Trace", "é", "a b", "\\xff"];

/// Numbers at the edges of every type, and spellings JSON allows or nearly
/// allows.
const ODD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "1e400",
    "-1e400",
    "1E+2",
    "1e-400",
    "1e-46",
    "5e-324",
    "123456789012345678901234567890",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "32767",
    "32768",
    "-32769",
    "2147483648",
    "1e131072",
    "1e-16384",
    "0.5",
    "2.5",
    "3.4028236e38",
    "1.7976931348623159e308",
    "1e999999999999",
    "-0e-999999999999",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "-",
    "1e",
    "0x10",
];

/// Strings that typed columns parse, at and past their edges.
const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-0",
    "1",
    "t",
    "f",
    "true",
    "FALSE",
    "yes",
    " 42 ",
    "32768",
    "-2147483649",
    "9223372036854775808",
    "1.5",
    "1e3",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "1e39",
    "1e309",
    "0x10",
    "2026-01-02",
    "2026-02-30",
    "0000-06-01",
    "0001-01-01",
    "9999-12-31",
    "2026-01-02T03:04:05Z",
    "2026-01-02 03:04:05.9999995+02:00",
    "2026-01-02T23:59:60.5-0130",
    "2026-01-02T03:04:05",
    "2026-01-02t03:04:05z",
    "2026-01-02T24:00:00Z",
    "2026-01-02T03:04:05+24:00",
    "2026-01-02T03:04:05.+01",
    "00000000-0000-0000-0000-000000000000",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
    "A0EEBC999C0B4EF8BB6D6BB9BD380A11",
    "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "aGVsbG8=",
    "aGVsbG8",
    "====",
    "é",
    "日本語",
    "a\u{0}b",
    "tab\there",
    "trailing   ",
    "\u{feff}1",
    "１２",
];

/// JSON string escapes, valid and not (lone surrogates, NUL).
const ESCAPES: &[&str] = &[
    "\\n",
    "\\t",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b",
    "\\f",
    "\\r",
    "\\u0000",
    "\\u001f",
    "\\ud800",
    "\\udfff",
    "\\ud83d\\ude00",
    "\\ud83d",
    "\\uDE00",
    "\\u00e9",
    "\\uffff",
    "\\uFEFF",
    "\\x",
    "\\u12",
];

/// Bytes that matter to a JSON parser, for mutations.
const JSON_BYTES: &[u8] = b"{}[]\",:\\0-eE.+ \x00\x7f\xc3\xff";

/// Text that typed columns parse: odd strings, timestamps built from
/// parts (some out of range), and any printable text.
pub fn scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(ODD_STRINGS).prop_map(str::to_owned),
        2 => (0u32..10_001, 0u32..14, 0u32..33, 0u32..25, 0u32..61, 0u32..62, "(\\.[0-9]{1,9})?",
              select(&["Z", "", "+02:00", "-0130", "+05", "+15:59", "-16:00", "z"][..]))
            .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
            }),
        1 => (0u32..10_001, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        2 => "\\PC{0,12}",
        1 => any::<i64>().prop_map(|i| i.to_string()),
    ]
}

/// A JSON number as text: anything `i64`/`f64` print, decimal literals of
/// many digits, and the odd ones.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            format!("{f:e}")
        } else {
            "1e400".into()
        }),
        (
            any::<bool>(),
            "[0-9]{1,30}",
            option::of("[0-9]{0,30}"),
            option::of((select(&["e", "E", "e+", "E-", "e-"][..]), "[0-9]{1,6}")),
        )
            .prop_map(|(neg, int, frac, exp)| {
                let sign = if neg { "-" } else { "" };
                let frac = frac.map_or(String::new(), |f| format!(".{f}"));
                let exp = exp.map_or(String::new(), |(e, d)| format!("{e}{d}"));
                format!("{sign}{int}{frac}{exp}")
            }),
        select(ODD_NUMBERS).prop_map(str::to_owned),
    ]
}

/// `s` as the body of a JSON string literal.
fn escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    quoted[1..quoted.len() - 1].to_owned()
}

/// A JSON string literal: text that typed columns parse, plus raw escapes.
fn string_literal() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            4 => scalar_text().prop_map(|s| escaped(&s)),
            1 => select(ESCAPES).prop_map(str::to_owned),
        ],
        0..3,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    select(&["", "", " ", "\n", "\t", "\r\n  "][..])
}

/// Any JSON value, nested a few levels, objects with repeating keys.
pub fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        1 => Just("null".to_owned()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        3 => number(),
        4 => string_literal(),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (vec(inner.clone(), 0..6), whitespace())
                .prop_map(|(items, ws)| { format!("[{ws}{}{ws}]", items.join(&format!(",{ws}"))) }),
            (vec((select(KEYS), inner), 0..6), whitespace())
                .prop_map(|(members, ws)| object(&members, ws)),
        ]
    })
}

fn object(members: &[(&str, String)], ws: &str) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("\"{}\"{ws}:{ws}{v}", escaped(k)))
        .collect();
    format!("{{{ws}{}{ws}}}", members.join(&format!(",{ws}")))
}

/// A JSON object whose members the value pointers find.
pub fn object_text() -> impl Strategy<Value = String> {
    (vec((select(KEYS), json_text()), 0..8), whitespace())
        .prop_map(|(members, ws)| object(&members, ws))
}

/// One edit of a byte string: (where, which byte, what to do).
type Edit = (usize, u8, u8);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(
        (
            any::<usize>(),
            prop_oneof![select(JSON_BYTES), any::<u8>()],
            any::<u8>(),
        ),
        1..4,
    )
}

/// Near-valid JSON: valid text truncated, with bytes inserted, replaced,
/// removed, or its tail repeated.
fn mutate(text: String, edits: Vec<Edit>) -> Vec<u8> {
    let mut b = text.into_bytes();
    for (at, byte, op) in edits {
        let i = at % (b.len() + 1);
        match op % 5 {
            0 => b.truncate(i),
            1 => b.insert(i, byte),
            2 if i < b.len() => b[i] = byte,
            3 if i < b.len() => {
                b.remove(i);
            }
            _ => {
                let tail = b[i..].to_vec();
                b.extend(tail);
            }
        }
    }
    b
}

/// JSON nested `depth` levels: past serde_json's limit (128) and, at the
/// top, past what Postgres' recursive JSON parser takes with its default
/// stack (about 10,000 levels of arrays).
fn deep() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![1 => 100usize..300, 1 => 15_000usize..25_000],
        any::<bool>(),
    )
        .prop_map(|(depth, arrays)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        })
}

/// A record value: mostly JSON objects, then other JSON, near-valid JSON,
/// random bytes, deep nesting, bare scalars (raw routes) and tombstones.
pub fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        6 => object_text().prop_map(|t| Some(t.into_bytes())),
        2 => json_text().prop_map(|t| Some(t.into_bytes())),
        3 => (object_text(), edits()).prop_map(|(t, e)| Some(mutate(t, e))),
        2 => vec(any::<u8>(), 0..48).prop_map(Some),
        2 => deep().prop_map(Some),
        1 => scalar_text().prop_map(|t| Some(t.into_bytes())),
    ]
}

/// A record key: JSON for `$key/<pointer>`, text, bytes (16 of them make a
/// uuid), or none.
pub fn key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        3 => object_text().prop_map(|t| Some(t.into_bytes())),
        2 => scalar_text().prop_map(|t| Some(t.into_bytes())),
        2 => vec(any::<u8>(), 0..24).prop_map(Some),
        1 => vec(any::<u8>(), 16..17).prop_map(Some),
    ]
}

/// A header name: one a route maps, one that is not UTF-8, or any bytes.
pub fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(HEADER_NAMES).prop_map(|n| n.as_bytes().to_vec()),
        1 => Just(vec![0xff]),
        1 => select(HEADER_NAMES).prop_map(|n| [n.as_bytes(), b"\xfe"].concat()),
        2 => vec(any::<u8>(), 0..8),
    ]
}

pub fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    let value = prop_oneof![
        3 => scalar_text().prop_map(String::into_bytes),
        1 => json_text().prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..20),
    ];
    vec((header_name(), option::weighted(0.9, value)), 0..5)
}

pub fn record() -> impl Strategy<Value = Record> {
    let offset = prop_oneof![0i64..1_000_000, any::<i64>()];
    let timestamp = option::weighted(0.9, prop_oneof![0i64..4_000_000_000_000, any::<i64>()]);
    (offset, timestamp, key(), value(), headers()).prop_map(
        |(offset, timestamp_ms, key, value, headers)| Record {
            offset,
            timestamp_ms,
            key: key.map(Into::into),
            value: value.map(Into::into),
            headers,
        },
    )
}
