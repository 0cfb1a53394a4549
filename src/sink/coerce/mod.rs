//! Turning values taken from Kafka records into cells for a target column.
//!
//! This runs for every field of every record, so it parses by hand rather
//! than through format strings, and writes variable-length values straight
//! into the caller's buffer (a COPY row, or one cell's bytes): nothing is
//! allocated for a value unless it must be decoded (an escaped JSON string,
//! a JSON array or object) or spelled out (a number into text).

use std::borrow::Cow;
use std::io::Write as _;

use base64::Engine as _;
use bytes::{BufMut as _, BytesMut};
use serde_json::Value;

mod datetime;
mod json;
mod source;
mod spec;

use super::cell::Cell;
use super::numeric::encode_numeric_into;
use datetime::{
    epoch_ms, parse_date, parse_datetime, DATE_RANGE, MICROS_PER_DAY, PG_EPOCH_SECS, TS_RANGE,
};
#[cfg(test)]
use json::has_nul_escape;
use json::json;
pub(super) use json::nested_deeper_than;
pub use source::Src;
use source::{kind, normalize, Decoded};
pub use spec::{ColType, ColumnSpec};

/// Turns a source value into a cell for the column, or says in plain words why it cannot (the caller prefixes the column name). Never panics on any input.
pub fn coerce(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    // Variable-length values are written into one buffer, which becomes
    // the cell's bytes without a copy. Text, numeric, uuid and bytea are
    // written in one go (the buffer is allocated once, and not at all for
    // NULL); JSON is serialised piecemeal, so its buffer is sized first.
    let mut buf = match spec.ctype {
        ColType::Json | ColType::Jsonb => BytesMut::with_capacity(size_hint(src)),
        _ => BytesMut::new(),
    };
    Ok(match coerce_into(spec, src, &mut buf)? {
        Some(cell) => cell,
        None => Cell::Bytes(Vec::from(buf)),
    })
}

/// Bytes a variable-length value of `src` likely takes.
fn size_hint(src: Src<'_>) -> usize {
    match src {
        Src::RawJson(b) | Src::Bytes(b) => b.len() + 1,
        Src::JsonText(s) | Src::JsonString(s) | Src::JsonNumber(s) | Src::Text(s) => s.len() + 8,
        _ => 24,
    }
}

/// [`coerce`] writing into `out`: a fixed-size value (or NULL) comes back
/// as its cell and leaves `out` as it was; any other value's binary form is
/// appended to `out` (`Ok(None)`). On error `out` is left as it was.
pub fn coerce_into(
    spec: &ColumnSpec,
    src: Src<'_>,
    out: &mut BytesMut,
) -> Result<Option<Cell>, String> {
    let start = out.len();
    // jsonb keeps what Postgres parses, not the text: an array or object
    // taken from a checked document (the extractor walked it as serde_json
    // would, refusals included) goes in as it came, like a whole document,
    // instead of through a tree built only to be serialised again (the
    // wide row's allocations per record, in benches/record_path). json
    // keeps the text, so it keeps the tree's compact form.
    let src = match src {
        Src::JsonText(raw) if spec.ctype == ColType::Jsonb && raw.starts_with(['[', '{']) => {
            Src::RawJson(raw.as_bytes())
        }
        other => other,
    };
    let mut decoded = Decoded::default();
    let result = normalize(src, &mut decoded).and_then(|src| match src {
        Src::Missing | Src::Json(Value::Null) => Ok(Some(Cell::Null)),
        // A record whose whole value is `null` means the same as a null field.
        Src::RawJson(raw) if raw.trim_ascii() == b"null" => Ok(Some(Cell::Null)),
        _ => convert(spec, src, out),
    });
    match result {
        Ok(Some(Cell::Null)) if spec.not_null => {
            Err("is NOT NULL but the value is null or missing".into())
        }
        Ok(Some(cell)) => Ok(Some(cell)),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    }
    .inspect_err(|_| out.truncate(start))
}

/// Appends `src`, coerced for the column, to `out` as one COPY BINARY
/// field (an `i32` length, -1 for NULL, then the bytes); on error `out` is
/// left as it was.
pub fn coerce_copy_field(
    spec: &ColumnSpec,
    src: Src<'_>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let at = out.len();
    out.put_i32(-1);
    match coerce_into(spec, src, out) {
        Ok(Some(cell)) => {
            out.truncate(at);
            cell.write_copy_field(out);
            Ok(())
        }
        Ok(None) => {
            // Postgres caps a field at 1 GB, far below i32::MAX.
            let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(e)
        }
    }
}

/// A cell for a value that is not NULL: fixed-size ones returned, others
/// appended to `out`.
fn convert(spec: &ColumnSpec, src: Src<'_>, out: &mut BytesMut) -> Result<Option<Cell>, String> {
    let ctype = spec.ctype;
    if let Src::RawJson(raw) = src {
        if !matches!(
            ctype,
            ColType::Text | ColType::Json | ColType::Jsonb | ColType::Bytea
        ) {
            // Scalar columns read the document like any decoded JSON node.
            let value: Value =
                serde_json::from_slice(raw).map_err(|_| "not valid JSON".to_string())?;
            let mut decoded = Decoded::default();
            let src = normalize(Src::Json(&value), &mut decoded)?;
            return convert(spec, src, out);
        }
    }
    let cell = match ctype {
        ColType::Int2 | ColType::Int4 | ColType::Int8 => {
            let v = integer(spec, src)?;
            let cell = match ctype {
                ColType::Int2 => i16::try_from(v).ok().map(Cell::I16),
                ColType::Int4 => i32::try_from(v).ok().map(Cell::I32),
                _ => Some(Cell::I64(v)),
            };
            cell.ok_or_else(|| out_of_range(ctype, &v.to_string()))?
        }
        ColType::Float4 | ColType::Float8 => float(spec, src)?,
        ColType::Numeric => return numeric(spec, src, out).map(|()| None),
        ColType::Bool => match src {
            Src::Json(Value::Bool(b)) => Cell::Bool(*b),
            _ => {
                let t = text_like(spec, src)?.trim();
                let is = |words: [&str; 3]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
                match (is(["true", "t", "1"]), is(["false", "f", "0"])) {
                    (true, _) => Cell::Bool(true),
                    (_, true) => Cell::Bool(false),
                    _ => return Err(format!("not a boolean: {}", show(t))),
                }
            }
        },
        ColType::Text => return text(spec, src, out).map(|()| None),
        ColType::Json | ColType::Jsonb => return json(spec, src, out).map(|()| None),
        ColType::Timestamptz | ColType::Timestamp => {
            let micros = match src {
                Src::TimestampMs(ms) | Src::Int(ms) => epoch_ms(ms)?,
                Src::JsonNumber(t) => match t.parse::<i64>() {
                    Ok(ms) => epoch_ms(ms)?,
                    Err(_) => {
                        return Err(format!(
                            "not a whole number of epoch milliseconds: {}",
                            show(t)
                        ))
                    }
                },
                _ => parse_datetime(text_like(spec, src)?.trim(), ctype == ColType::Timestamp)?,
            };
            if !TS_RANGE.contains(&micros) {
                return Err("timestamp out of range".into());
            }
            Cell::I64(micros)
        }
        ColType::Date => {
            let days = match src {
                Src::TimestampMs(ms) => ms.div_euclid(86_400_000) - PG_EPOCH_SECS / 86_400,
                _ => {
                    let t = text_like(spec, src)?.trim();
                    match t.len() {
                        10 => parse_date(t.as_bytes())
                            .ok_or_else(|| format!("not a valid date: {}", show(t)))?,
                        _ => parse_datetime(t, true)
                            .map_err(|_| format!("not a valid date: {}", show(t)))?
                            .div_euclid(MICROS_PER_DAY),
                    }
                }
            };
            match DATE_RANGE.contains(&days) {
                true => Cell::I32(days as i32),
                false => return Err("date out of range".into()),
            }
        }
        ColType::Uuid => {
            match src {
                Src::Bytes(b) if b.len() == 16 => out.put_slice(b),
                _ => {
                    let t = text_like(spec, src)?.trim();
                    match uuid::Uuid::parse_str(t) {
                        Ok(u) => out.put_slice(u.as_bytes()),
                        Err(_) => return Err(format!("not a valid UUID: {}", show(t))),
                    }
                }
            }
            return Ok(None);
        }
        ColType::Bytea => {
            match src {
                Src::Bytes(b) | Src::RawJson(b) => out.put_slice(b),
                Src::Text(s) => out.put_slice(s.as_bytes()),
                Src::JsonString(s) => base64_into(s, out)?,
                _ => return Err(mismatch(spec, src)),
            }
            return Ok(None);
        }
    };
    Ok(Some(cell))
}

/// Decodes standard base64 onto the end of `out`.
fn base64_into(s: &str, out: &mut BytesMut) -> Result<(), String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let at = out.len();
    out.resize(at + base64::decoded_len_estimate(s.len()), 0);
    match engine.decode_slice(s, &mut out[at..]) {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(at);
            Err(format!("not valid base64: {}", show(s)))
        }
    }
}

fn mismatch(spec: &ColumnSpec, src: Src<'_>) -> String {
    format!(
        "cannot write {} into a column of type {}",
        kind(src),
        spec.ctype.pg_name()
    )
}

fn out_of_range(ctype: ColType, value: &str) -> String {
    format!("out of range for {}: {}", ctype.pg_name(), show(value))
}

/// The text of sources that scalar types parse from text.
fn text_like<'a>(spec: &ColumnSpec, src: Src<'a>) -> Result<&'a str, String> {
    match src {
        Src::JsonString(s) | Src::Text(s) => Ok(s),
        Src::Bytes(b) => std::str::from_utf8(b).map_err(|_| "not valid UTF-8".to_string()),
        _ => Err(mismatch(spec, src)),
    }
}

fn integer(spec: &ColumnSpec, src: Src<'_>) -> Result<i64, String> {
    let t = match src {
        Src::Int(i) | Src::TimestampMs(i) => return Ok(i),
        Src::JsonNumber(t) => t,
        _ => text_like(spec, src)?.trim(),
    };
    t.parse::<i64>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            out_of_range(spec.ctype, t)
        }
        _ => format!("not an integer: {}", show(t)),
    })
}

fn float(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let t = match src {
        Src::Int(i) if spec.ctype == ColType::Float4 => return Ok(Cell::F32(i as f32)),
        Src::Int(i) => return Ok(Cell::F64(i as f64)),
        Src::JsonNumber(t) => t,
        _ => text_like(spec, src)?.trim(),
    };
    let parsed = match spec.ctype {
        ColType::Float4 => t.parse::<f32>().map(|v| (Cell::F32(v), v.is_infinite())),
        _ => t.parse::<f64>().map(|v| (Cell::F64(v), v.is_infinite())),
    };
    let (cell, infinite) = parsed.map_err(|_| format!("not a number: {}", show(t)))?;
    // Rust's parser turns an overflowing literal into infinity; only the
    // spelled-out words ("inf", "infinity") may mean it.
    if infinite && t.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(out_of_range(spec.ctype, t));
    }
    Ok(cell)
}

fn numeric(spec: &ColumnSpec, src: Src<'_>, out: &mut BytesMut) -> Result<(), String> {
    let mut buf = [0u8; 24];
    let t = match src {
        Src::Int(i) => {
            let mut w = &mut buf[..];
            write!(w, "{i}").map_err(|e| e.to_string())?;
            let len = 24 - w.len();
            std::str::from_utf8(&buf[..len]).map_err(|e| e.to_string())?
        }
        Src::JsonNumber(t) => t,
        _ => text_like(spec, src)?.trim(),
    };
    encode_numeric_into(t, spec.numeric, out)
}

fn text(spec: &ColumnSpec, src: Src<'_>, out: &mut BytesMut) -> Result<(), String> {
    let s: Cow<'_, str> = match src {
        Src::JsonString(s) | Src::Text(s) | Src::JsonNumber(s) => Cow::Borrowed(s),
        Src::Json(Value::Bool(true)) => Cow::Borrowed("true"),
        Src::Json(Value::Bool(false)) => Cow::Borrowed("false"),
        Src::Json(v) => Cow::Owned(serde_json::to_string(v).map_err(|e| e.to_string())?),
        Src::RawJson(b) | Src::Bytes(b) => {
            Cow::Borrowed(std::str::from_utf8(b).map_err(|_| "not valid UTF-8".to_string())?)
        }
        Src::Int(i) => Cow::Owned(i.to_string()),
        Src::TimestampMs(ms) => match chrono::DateTime::from_timestamp_millis(ms) {
            Some(t) => Cow::Owned(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            None => return Err("timestamp out of range".into()),
        },
        Src::Missing | Src::JsonText(_) => return Err(mismatch(spec, src)),
    };
    if s.as_bytes().contains(&0) {
        return Err(format!(
            "contains a NUL character, which Postgres cannot store: {}",
            show(&s)
        ));
    }
    if let Some(max) = spec.max_bytes.filter(|&max| s.len() > max) {
        return Err(format!(
            "is longer than {max} bytes, the limit of type name: {}",
            show(&s)
        ));
    }
    if let Some(max) = spec.max_chars {
        // Byte length bounds the character count, so most values skip the count.
        if s.len() > max {
            if let Some((cut, _)) = s.char_indices().nth(max) {
                // Like Postgres, excess trailing spaces are trimmed, not an error.
                if !s[cut..].bytes().all(|b| b == b' ') {
                    return Err(format!("is longer than {max} characters: {}", show(&s)));
                }
            }
        }
    }
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Quotes a value for an error message, cut short so one bad field cannot
/// flood the logs.
pub(crate) fn show(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{:?}…", &text[..i]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests;
