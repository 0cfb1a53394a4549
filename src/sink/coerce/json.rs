//! JSON and JSONB cells: the text as it came (validated), or a value
//! serialised, refused where Postgres would fail on it with an error that
//! is not about the record (deep nesting) or cannot store it (`\u0000`).

use bytes::{BufMut as _, BytesMut};
use serde_json::Value;

use super::{mismatch, ColType, ColumnSpec, Src};

/// Appends the column's binary form of `src` to `out` (the caller undoes
/// it on error).
pub(super) fn json(spec: &ColumnSpec, src: Src<'_>, out: &mut BytesMut) -> Result<(), String> {
    let jsonb = spec.ctype == ColType::Jsonb;
    let start = out.len();
    if jsonb {
        out.put_u8(1);
    }
    let written = match src {
        Src::Json(v) => serde_json::to_writer((&mut *out).writer(), v),
        // As the tree's string and number serialise: escaped again, and the
        // exact digits.
        Src::JsonString(s) | Src::Text(s) => serde_json::to_writer((&mut *out).writer(), s),
        Src::JsonNumber(t) => {
            out.put_slice(t.as_bytes());
            Ok(())
        }
        Src::Int(i) => serde_json::to_writer((&mut *out).writer(), &i),
        Src::RawJson(b) => {
            // The decoder validated the document without building a tree,
            // which sets no depth limit; Postgres' recursive parser fails
            // on deep nesting with 54001, which is not a data error.
            if nested_deeper_than(b, MAX_JSON_DEPTH) {
                return Err(format!(
                    "JSON nested more than {MAX_JSON_DEPTH} levels deep cannot be written to a {} column",
                    spec.ctype.pg_name()
                ));
            }
            out.put_slice(b);
            Ok(())
        }
        Src::Bytes(b) => {
            serde_json::from_slice::<Value>(b).map_err(|_| "not valid JSON".to_string())?;
            out.put_slice(b);
            Ok(())
        }
        Src::Missing | Src::TimestampMs(_) | Src::JsonText(_) => return Err(mismatch(spec, src)),
    };
    written.map_err(|e| e.to_string())?;
    if jsonb && has_nul_escape(&out[start..]) {
        return Err("jsonb cannot store the escape \\u0000".into());
    }
    Ok(())
}

/// serde_json's limit for the values columns point into; Postgres takes it
/// at its smallest `max_stack_depth` (measured: 500 levels pass at 100kB).
const MAX_JSON_DEPTH: usize = 128;

/// Whether arrays and objects in JSON text nest more than `limit` deep.
pub(crate) fn nested_deeper_than(json: &[u8], limit: usize) -> bool {
    // Nesting deeper than `limit` takes more than `limit` opening brackets.
    // Counting them is one pass the compiler vectorises; the exact walk
    // below goes a byte at a time, and a profile of the drain found it at
    // about 4 % of the sink's CPU when every document (`doc: /`) took it.
    // (`[` is 0x5B and `{` 0x7B: no other byte maps to 0x7B with 0x20 set.)
    let opening = json
        .iter()
        .fold(0usize, |n, &b| n + usize::from(b | 0x20 == b'{'));
    if opening <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether JSON text holds the escape `\u0000`. Backslashes appear only in
/// strings, so stepping over each escape pair keeps `\\u0000` (an escaped
/// backslash, then "u0000") from matching.
pub(super) fn has_nul_escape(json: &[u8]) -> bool {
    // Most documents hold no backslash at all: memchr rules that out many
    // bytes at a time (and sets nothing up, unlike a substring search).
    let Some(first) = memchr::memchr(b'\\', json) else {
        return false;
    };
    let mut rest = &json[first..];
    while let Some(i) = rest.iter().position(|&b| b == b'\\') {
        if rest.get(i + 1..i + 6) == Some(b"u0000") {
            return true;
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    false
}
