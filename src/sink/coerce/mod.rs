//! Turning values taken from Kafka records into cells for a target column.
//!
//! This runs for every field of every record, so it parses by hand rather
//! than through format strings, and allocates little beyond the produced
//! cell (only JSON text that must be validated is decoded into a tree).

use std::borrow::Cow;
use std::io::Write as _;

use base64::Engine as _;
use serde_json::Value;

mod datetime;
mod json;

use super::cell::Cell;
use super::numeric::encode_numeric_checked;
use datetime::{
    epoch_ms, parse_date, parse_datetime, DATE_RANGE, MICROS_PER_DAY, PG_EPOCH_SECS, TS_RANGE,
};
#[cfg(test)]
use json::has_nul_escape;
use json::json;

/// The PostgreSQL column types sluice can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Bool,
    /// text, varchar, bpchar and name.
    Text,
    Json,
    Jsonb,
    Timestamptz,
    Timestamp,
    Date,
    Uuid,
    Bytea,
}

impl ColType {
    /// The type for a `pg_type` oid, or `None` when sluice cannot write it.
    pub fn from_oid(oid: u32) -> Option<ColType> {
        Some(match oid {
            21 => ColType::Int2,
            23 => ColType::Int4,
            20 => ColType::Int8,
            1700 => ColType::Numeric,
            700 => ColType::Float4,
            701 => ColType::Float8,
            16 => ColType::Bool,
            25 | 1043 | 1042 | 19 => ColType::Text,
            114 => ColType::Json,
            3802 => ColType::Jsonb,
            1184 => ColType::Timestamptz,
            1114 => ColType::Timestamp,
            1082 => ColType::Date,
            2950 => ColType::Uuid,
            17 => ColType::Bytea,
            _ => return None,
        })
    }

    /// The name Postgres shows for the type, for messages.
    pub fn pg_name(self) -> &'static str {
        match self {
            ColType::Int2 => "smallint",
            ColType::Int4 => "integer",
            ColType::Int8 => "bigint",
            ColType::Numeric => "numeric",
            ColType::Float4 => "real",
            ColType::Float8 => "double precision",
            ColType::Bool => "boolean",
            ColType::Text => "text",
            ColType::Json => "json",
            ColType::Jsonb => "jsonb",
            ColType::Timestamptz => "timestamp with time zone",
            ColType::Timestamp => "timestamp without time zone",
            ColType::Date => "date",
            ColType::Uuid => "uuid",
            ColType::Bytea => "bytea",
        }
    }
}

/// What sluice knows about one target column (read from pg_attribute at start-up).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// How values for the column are encoded.
    pub ctype: ColType,
    /// Whether a null or missing value is an error rather than NULL.
    pub not_null: bool,
    /// varchar(n)/char(n) limit in characters
    pub max_chars: Option<usize>,
    /// `name`: 63 bytes. Its binary input refuses more with 42622, which
    /// is not a data error and would stop the partition, so coercion
    /// refuses it first (the record is dead-lettered).
    pub max_bytes: Option<usize>,
    /// numeric(p,s)
    pub numeric: Option<(u32, u32)>,
}

impl ColumnSpec {
    /// A nullable column of `ctype` with no length or precision limit.
    pub fn of(ctype: ColType) -> ColumnSpec {
        ColumnSpec {
            ctype,
            not_null: false,
            max_chars: None,
            max_bytes: None,
            numeric: None,
        }
    }

    /// Builds the spec from `pg_attribute.atttypid`, `atttypmod` and
    /// `attnotnull`; `None` when the type is not one sluice can write.
    pub fn from_catalog(type_oid: u32, typmod: i32, not_null: bool) -> Option<ColumnSpec> {
        let ctype = ColType::from_oid(type_oid)?;
        let mut spec = ColumnSpec {
            not_null,
            ..ColumnSpec::of(ctype)
        };
        if typmod >= 4 {
            let m = typmod - 4;
            match type_oid {
                1043 | 1042 => spec.max_chars = Some(m as usize),
                1700 => {
                    // Postgres 15 packs a signed 11-bit scale; a negative one
                    // cannot be expressed here, so Postgres keeps that check.
                    let scale = ((m & 0x7ff) ^ 0x400) - 0x400;
                    if scale >= 0 {
                        spec.numeric = Some(((m >> 16) as u32 & 0xffff, scale as u32));
                    }
                }
                _ => {}
            }
        }
        if type_oid == 19 {
            spec.max_bytes = Some(63);
        }
        Some(spec)
    }
}

/// A value taken from a Kafka record, before coercion.
#[derive(Debug, Clone, Copy)]
pub enum Src<'a> {
    /// JSON pointer found nothing (or the field is absent)
    Missing,
    /// A node of a decoded JSON value
    Json(&'a serde_json::Value),
    /// Bytes known to be one valid JSON document (the whole record value): json/jsonb/text columns take them verbatim without re-serialising
    RawJson(&'a [u8]),
    /// Opaque bytes: a Kafka key, header value or raw value
    Bytes(&'a [u8]),
    /// An integer Kafka field ($partition, $offset)
    Int(i64),
    /// A Kafka timestamp in epoch milliseconds
    TimestampMs(i64),
    /// A text Kafka field ($topic)
    Text(&'a str),
}

/// Turns a source value into a cell for the column, or says in plain words why it cannot (the caller prefixes the column name). Never panics on any input.
pub fn coerce(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let cell = match src {
        Src::Missing | Src::Json(Value::Null) => Cell::Null,
        // A record whose whole value is `null` means the same as a null field.
        Src::RawJson(raw) if raw.trim_ascii() == b"null" => Cell::Null,
        _ => convert(spec, src)?,
    };
    if spec.not_null && matches!(cell, Cell::Null) {
        return Err("is NOT NULL but the value is null or missing".into());
    }
    Ok(cell)
}

fn convert(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let ctype = spec.ctype;
    if let Src::RawJson(raw) = src {
        if !matches!(
            ctype,
            ColType::Text | ColType::Json | ColType::Jsonb | ColType::Bytea
        ) {
            // Scalar columns read the document like any decoded JSON node.
            let value: Value =
                serde_json::from_slice(raw).map_err(|_| "not valid JSON".to_string())?;
            return convert(spec, Src::Json(&value));
        }
    }
    match ctype {
        ColType::Int2 | ColType::Int4 | ColType::Int8 => {
            let v = integer(spec, src)?;
            let cell = match ctype {
                ColType::Int2 => i16::try_from(v).ok().map(Cell::I16),
                ColType::Int4 => i32::try_from(v).ok().map(Cell::I32),
                _ => Some(Cell::I64(v)),
            };
            cell.ok_or_else(|| out_of_range(ctype, &v.to_string()))
        }
        ColType::Float4 | ColType::Float8 => float(spec, src),
        ColType::Numeric => numeric(spec, src),
        ColType::Bool => match src {
            Src::Json(Value::Bool(b)) => Ok(Cell::Bool(*b)),
            _ => {
                let t = text_like(spec, src)?.trim();
                let is = |words: [&str; 3]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
                match (is(["true", "t", "1"]), is(["false", "f", "0"])) {
                    (true, _) => Ok(Cell::Bool(true)),
                    (_, true) => Ok(Cell::Bool(false)),
                    _ => Err(format!("not a boolean: {}", show(t))),
                }
            }
        },
        ColType::Text => text(spec, src),
        ColType::Json | ColType::Jsonb => json(spec, src),
        ColType::Timestamptz | ColType::Timestamp => {
            let micros = match src {
                Src::TimestampMs(ms) | Src::Int(ms) => epoch_ms(ms)?,
                Src::Json(Value::Number(n)) => match n.as_i64() {
                    Some(ms) => epoch_ms(ms)?,
                    None => {
                        return Err(format!(
                            "not a whole number of epoch milliseconds: {}",
                            show(n.as_str())
                        ))
                    }
                },
                _ => parse_datetime(text_like(spec, src)?.trim(), ctype == ColType::Timestamp)?,
            };
            if !TS_RANGE.contains(&micros) {
                return Err("timestamp out of range".into());
            }
            Ok(Cell::I64(micros))
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
                true => Ok(Cell::I32(days as i32)),
                false => Err("date out of range".into()),
            }
        }
        ColType::Uuid => match src {
            Src::Bytes(b) if b.len() == 16 => Ok(Cell::Bytes(b.to_vec())),
            _ => {
                let t = text_like(spec, src)?.trim();
                match uuid::Uuid::parse_str(t) {
                    Ok(u) => Ok(Cell::Bytes(u.as_bytes().to_vec())),
                    Err(_) => Err(format!("not a valid UUID: {}", show(t))),
                }
            }
        },
        ColType::Bytea => match src {
            Src::Bytes(b) | Src::RawJson(b) => Ok(Cell::Bytes(b.to_vec())),
            Src::Text(s) => Ok(Cell::Bytes(s.as_bytes().to_vec())),
            Src::Json(Value::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Cell::Bytes)
                .map_err(|_| format!("not valid base64: {}", show(s))),
            _ => Err(mismatch(spec, src)),
        },
    }
}

/// What the source is, for "cannot write X into ..." messages.
fn kind(src: Src<'_>) -> &'static str {
    match src {
        Src::Missing => "a missing value",
        Src::Json(Value::Null) => "a JSON null",
        Src::Json(Value::Bool(_)) => "a JSON boolean",
        Src::Json(Value::Number(_)) => "a JSON number",
        Src::Json(Value::String(_)) => "a JSON string",
        Src::Json(Value::Array(_)) => "a JSON array",
        Src::Json(Value::Object(_)) => "a JSON object",
        Src::RawJson(_) => "a JSON document",
        Src::Bytes(_) => "raw bytes",
        Src::Int(_) => "an integer",
        Src::TimestampMs(_) => "a Kafka timestamp",
        Src::Text(_) => "text",
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
        Src::Json(Value::String(s)) => Ok(s),
        Src::Text(s) => Ok(s),
        Src::Bytes(b) => std::str::from_utf8(b).map_err(|_| "not valid UTF-8".to_string()),
        _ => Err(mismatch(spec, src)),
    }
}

fn integer(spec: &ColumnSpec, src: Src<'_>) -> Result<i64, String> {
    let t = match src {
        Src::Int(i) | Src::TimestampMs(i) => return Ok(i),
        Src::Json(Value::Number(n)) => n.as_str(),
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
        Src::Json(Value::Number(n)) => n.as_str(),
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

fn numeric(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let mut buf = [0u8; 24];
    let t = match src {
        Src::Int(i) => {
            let mut w = &mut buf[..];
            write!(w, "{i}").map_err(|e| e.to_string())?;
            let len = 24 - w.len();
            std::str::from_utf8(&buf[..len]).map_err(|e| e.to_string())?
        }
        Src::Json(Value::Number(n)) => n.as_str(),
        _ => text_like(spec, src)?.trim(),
    };
    encode_numeric_checked(t, spec.numeric).map(Cell::Bytes)
}

fn text(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let s: Cow<'_, str> = match src {
        Src::Json(Value::String(s)) => Cow::Borrowed(s),
        Src::Text(s) => Cow::Borrowed(s),
        Src::Json(Value::Number(n)) => Cow::Borrowed(n.as_str()),
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
        Src::Missing => return Err(mismatch(spec, src)),
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
    Ok(Cell::Bytes(s.into_owned().into_bytes()))
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
