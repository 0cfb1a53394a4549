//! Turning values taken from Kafka records into cells for a target column.
//!
//! This runs for every field of every record, so it parses by hand rather
//! than through format strings, and allocates little beyond the produced
//! cell (only JSON text that must be validated is decoded into a tree).

use std::borrow::Cow;
use std::io::Write as _;

use base64::Engine as _;
use chrono::Datelike as _;
use serde_json::Value;

use super::cell::{encode_numeric_checked, show, Cell};

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

/// Seconds from the Unix epoch to the Postgres epoch, 2000-01-01 UTC.
const PG_EPOCH_SECS: i64 = 946_684_800;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `NaiveDate::num_days_from_ce` of 2000-01-01.
const PG_EPOCH_CE_DAYS: i64 = 730_120;
/// Postgres' timestamp range: 4714-11-24 BC up to (not including) 294277-01-01.
const TS_RANGE: std::ops::Range<i64> = -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// Postgres' date range in days from 2000-01-01.
const DATE_RANGE: std::ops::Range<i64> = -2_451_545..2_145_031_949;

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

fn json(spec: &ColumnSpec, src: Src<'_>) -> Result<Cell, String> {
    let jsonb = spec.ctype == ColType::Jsonb;
    let capacity = match src {
        Src::RawJson(b) | Src::Bytes(b) => b.len(),
        Src::Text(s) => s.len() + 2,
        _ => 32,
    };
    let mut out = Vec::with_capacity(capacity + 1);
    if jsonb {
        out.push(1);
    }
    let written = match src {
        Src::Json(v) => serde_json::to_writer(&mut out, v),
        Src::Text(s) => serde_json::to_writer(&mut out, s),
        Src::Int(i) => serde_json::to_writer(&mut out, &i),
        Src::RawJson(b) => {
            out.extend_from_slice(b);
            Ok(())
        }
        Src::Bytes(b) => {
            serde_json::from_slice::<Value>(b).map_err(|_| "not valid JSON".to_string())?;
            out.extend_from_slice(b);
            Ok(())
        }
        Src::Missing | Src::TimestampMs(_) => return Err(mismatch(spec, src)),
    };
    written.map_err(|e| e.to_string())?;
    if jsonb && has_nul_escape(&out) {
        return Err("jsonb cannot store the escape \\u0000".into());
    }
    Ok(Cell::Bytes(out))
}

/// Whether JSON text holds the escape `\u0000`. Backslashes appear only in
/// strings, so stepping over each escape pair keeps `\\u0000` (an escaped
/// backslash, then "u0000") from matching.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some(i) = rest.iter().position(|&b| b == b'\\') {
        if rest.get(i + 1..i + 6) == Some(b"u0000") {
            return true;
        }
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    false
}

/// Microseconds since the Postgres epoch for Unix epoch milliseconds.
fn epoch_ms(ms: i64) -> Result<i64, String> {
    ms.checked_sub(PG_EPOCH_SECS * 1000)
        .and_then(|m| m.checked_mul(1000))
        .ok_or_else(|| "timestamp out of range".to_string())
}

/// Days since 2000-01-01 for exactly `YYYY-MM-DD`.
fn parse_date(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let date = chrono::NaiveDate::from_ymd_opt(
        year as i32,
        digits(b, 5, 2)? as u32,
        digits(b, 8, 2)? as u32,
    )?;
    Some(i64::from(date.num_days_from_ce()) - PG_EPOCH_CE_DAYS)
}

/// The number written by the `len` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    b.get(at..at + len)?.iter().try_fold(0i64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

/// Microseconds since 2000-01-01 UTC for `YYYY-MM-DD(T| )HH:MM:SS[.frac]`
/// followed by `Z` or an offset (`+HH:MM`, `+HHMM`, `+HH`); the offset may
/// be left out only when `naive_ok`, and the time is then taken as UTC.
/// Fractions are rounded to microseconds (ties to even), and second 60
/// rolls into the next minute, both as Postgres does.
fn parse_datetime(s: &str, naive_ok: bool) -> Result<i64, String> {
    let b = s.as_bytes();
    let bad = || format!("not a valid timestamp: {}", show(s));
    let days = b.get(..10).and_then(parse_date).ok_or_else(bad)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return Err(bad());
    }
    let (h, m, sec) = match (digits(b, 11, 2), digits(b, 14, 2), digits(b, 17, 2)) {
        (Some(h), Some(m), Some(sec)) if h < 24 && m < 60 && sec <= 60 => (h, m, sec),
        _ => return Err(bad()),
    };
    let mut i = 19;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        let (mut half, mut sticky) = (0, false);
        while let Some(&d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            let d = i64::from(d - b'0');
            match i - start {
                n @ 0..=5 => micros += d * [100_000, 10_000, 1000, 100, 10, 1][n],
                6 => half = d,
                _ => sticky |= d != 0,
            }
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if half > 5 || (half == 5 && (sticky || micros % 2 == 1)) {
            micros += 1;
        }
    }
    let offset = match b.get(i..).unwrap_or_default() {
        [] if naive_ok => 0,
        [] => return Err(format!("timestamp has no time zone offset: {}", show(s))),
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (oh, om) = match rest {
                [_, _] => (digits(rest, 0, 2), Some(0)),
                [_, _, _, _] => (digits(rest, 0, 2), digits(rest, 2, 2)),
                [_, _, b':', _, _] => (digits(rest, 0, 2), digits(rest, 3, 2)),
                _ => (None, None),
            };
            match (oh, om) {
                (Some(oh), Some(om)) if oh < 24 && om < 60 => {
                    (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 }
                }
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    };
    Ok((days * 86_400 + h * 3600 + m * 60 + sec - offset) * 1_000_000 + micros)
}
#[cfg(test)]
mod tests {
    use super::ColType::*;
    use super::*;

    /// 2024-01-01T00:00:00Z: Unix 1_704_067_200 s less the 946_684_800 s to 2000-01-01.
    const NEW_YEAR_2024: i64 = 757_382_400_000_000;

    /// Cells as short text: binary types in hex, other bytes as text with
    /// control bytes escaped, errors after "! ".
    fn render(t: ColType, r: Result<Cell, String>) -> String {
        let esc = |c: char| match c.is_control() {
            true => format!("\\x{:02x}", c as u32),
            false => c.to_string(),
        };
        match r {
            Ok(Cell::Bytes(b)) if matches!(t, Numeric | Uuid) => {
                b.iter().map(|x| format!("{x:02x}")).collect()
            }
            Ok(Cell::Bytes(b)) => String::from_utf8(b).unwrap().chars().map(esc).collect(),
            Ok(c) => format!("{c:?}"),
            Err(e) => format!("! {e}"),
        }
    }

    /// `input` is "tag:rest": j JSON, r raw JSON, b bytes, t text, i int,
    /// ms Kafka timestamp, or "-" for missing. `want` is the rendered cell,
    /// or "! " and the start of the error.
    fn check(spec: &ColumnSpec, input: &str, want: &str) {
        let (tag, rest) = input.split_once(':').unwrap_or((input, ""));
        let json: Value;
        let src = match tag {
            "j" => {
                json = serde_json::from_str(rest).unwrap();
                Src::Json(&json)
            }
            "r" => Src::RawJson(rest.as_bytes()),
            "b" => Src::Bytes(rest.as_bytes()),
            "t" => Src::Text(rest),
            "i" => Src::Int(rest.parse().unwrap()),
            "ms" => Src::TimestampMs(rest.parse().unwrap()),
            _ => Src::Missing,
        };
        let got = render(spec.ctype, coerce(spec, src));
        let matched = if want.starts_with("! ") {
            got.starts_with(want)
        } else {
            got == want
        };
        assert!(matched, "{:?} {input}: got {got}, want {want}", spec.ctype);
    }

    fn check_all(cases: &[(ColType, &str, &str)]) {
        for (t, input, want) in cases {
            check(&ColumnSpec::of(*t), input, want);
        }
    }

    #[test]
    fn catalog() {
        assert_eq!(ColType::from_oid(1043), Some(Text));
        assert_eq!(ColType::from_oid(19), Some(Text));
        assert_eq!(ColType::from_oid(600), None);
        assert_eq!(Timestamptz.pg_name(), "timestamp with time zone");
        let v = ColumnSpec::from_catalog(1043, 14, true).unwrap();
        assert_eq!((v.ctype, v.not_null, v.max_chars), (Text, true, Some(10)));
        assert_eq!(
            ColumnSpec::from_catalog(1042, -1, false).unwrap().max_chars,
            None
        );
        let n = |typmod| {
            ColumnSpec::from_catalog(1700, typmod, false)
                .unwrap()
                .numeric
        };
        assert_eq!(n((10 << 16 | 2) + 4), Some((10, 2)));
        assert_eq!(n(-1), None);
        assert_eq!(n((5 << 16 | 0x7fe) + 4), None, "negative scale (PG 15)");
        let jsonb = ColumnSpec::from_catalog(3802, -1, false);
        assert_eq!(jsonb, Some(ColumnSpec::of(Jsonb)));
        assert_eq!(ColumnSpec::from_catalog(1186, -1, false), None);
    }

    #[test]
    fn nulls_and_not_null() {
        check_all(&[
            (Int4, "-", "Null"),
            (Jsonb, "j:null", "Null"),
            (Text, "r: null\n", "Null"),
        ]);
        let mut spec = ColumnSpec::of(Text);
        spec.not_null = true;
        for input in ["-", "j:null", "r:null"] {
            check(
                &spec,
                input,
                "! is NOT NULL but the value is null or missing",
            );
        }
        check(&spec, "t:", "");
        check(&spec, "b:null", "null");
    }

    #[test]
    #[rustfmt::skip]
    fn integers_and_floats() {
        check_all(&[
            (Int2, "j:-32768", "I16(-32768)"),
            (Int4, "j:2147483647", "I32(2147483647)"),
            (Int8, "j:-9223372036854775808", "I64(-9223372036854775808)"),
            (Int4, "j:\" +42 \"", "I32(42)"),
            (Int8, "i:7", "I64(7)"),
            (Int8, "ms:1700000000000", "I64(1700000000000)"),
            (Int2, "b:-5", "I16(-5)"),
            (Int4, "r:12", "I32(12)"),
            (Int2, "j:32768", "! out of range for smallint: \"32768\""),
            (Int4, "i:2147483648", "! out of range for integer: \"2147483648\""),
            (Int8, "j:9223372036854775808", "! out of range for bigint"),
            (Int8, "j:\"-123456789012345678901234567890\"", "! out of range for bigint"),
            (Int4, "j:12.0", "! not an integer: \"12.0\""),
            (Int4, "j:1.5", "! not an integer"),
            (Int4, "j:1e3", "! not an integer"),
            (Int4, "j:\"\"", "! not an integer"),
            (Int4, "b:x", "! not an integer"),
            (Int4, "j:true", "! cannot write a JSON boolean into a column of type integer"),
            (Int2, "j:{}", "! cannot write a JSON object into a column of type smallint"),
            (Int8, "r:[1]", "! cannot write a JSON array into a column of type bigint"),
            (Float8, "j:1.5", "F64(1.5)"),
            (Float4, "j:0.1", "F32(0.1)"),
            (Float4, "j:16777217", "F32(16777216.0)"),
            (Float8, "j:\"-Infinity\"", "F64(-inf)"),
            (Float4, "t:Infinity", "F32(inf)"),
            (Float8, "b:NaN", "F64(NaN)"),
            (Float8, "i:-3", "F64(-3.0)"),
            (Float8, "j:1e-400", "F64(0.0)"),
            (Float4, "j:1e39", "! out of range for real"),
            (Float8, "j:-1e400", "! out of range for double precision"),
            (Float8, "j:\"1,5\"", "! not a number"),
            (Float8, "j:[1]", "! cannot write a JSON array into a column of type double precision"),
        ]);
        assert_eq!(coerce(&ColumnSpec::of(Int4), Src::Bytes(&[0xff])), Err("not valid UTF-8".into()));
    }

    #[test]
    #[rustfmt::skip]
    fn numerics_and_booleans() {
        // Numeric bytes are what PostgreSQL 15's numeric_send gives.
        check_all(&[
            (Numeric, "j:1.5", "000200000000000100011388"),
            (Numeric, "j:\"1.5\"", "000200000000000100011388"),
            (Numeric, "b:15e-1", "000200000000000100011388"),
            (Numeric, "i:-1", "00010000400000000001"),
            (Numeric, "i:-9223372036854775808", "0005000440000000039a0d2c0170156516b0"),
            (Numeric, "j:123456789012345678901234567890.5", "0009000700000001000c0d801ed204d2162e23340d801ed21388"),
            (Numeric, "j:\"abc\"", "! not a valid number: \"abc\""),
            (Numeric, "j:false", "! cannot write a JSON boolean into a column of type numeric"),
            (Bool, "j:true", "Bool(true)"),
            (Bool, "j:\"T\"", "Bool(true)"),
            (Bool, "t:1", "Bool(true)"),
            (Bool, "j:\"FALSE\"", "Bool(false)"),
            (Bool, "b:f", "Bool(false)"),
            (Bool, "j:\" 0 \"", "Bool(false)"),
            (Bool, "j:\"yes\"", "! not a boolean: \"yes\""),
            (Bool, "j:1", "! cannot write a JSON number into a column of type boolean"),
        ]);
        let spec = ColumnSpec { numeric: Some((5, 2)), ..ColumnSpec::of(Numeric) };
        check(&spec, "j:-999.994", "000200004000000303e726d4");
        check(&spec, "j:999.995", "! out of range for numeric(5,2)");
        check(&spec, "t:1000", "! out of range for numeric(5,2)");
    }

    #[test]
    #[rustfmt::skip]
    fn text_and_json() {
        check_all(&[
            (Text, "j:\"héllo\"", "héllo"),
            (Text, "j:12.50", "12.50"),
            (Text, "j:false", "false"),
            (Text, r#"j:{"a": [1, 2]}"#, r#"{"a":[1,2]}"#),
            (Text, r#"r:{ "a" : 1 }"#, r#"{ "a" : 1 }"#),
            (Text, "i:-12", "-12"),
            (Text, "t:topic", "topic"),
            (Text, "ms:1704067200123", "2024-01-01T00:00:00.123Z"),
            (Text, r#"j:"\\u0000b""#, r"\u0000b"),
            (Text, r#"j:"a\u0000""#, "! contains a NUL character"),
            (Text, "t:a\0", "! contains a NUL character"),
            (Json, r#"j:"x""#, r#""x""#),
            (Json, r#"j:{"n": 1.10}"#, r#"{"n":1.10}"#),
            (Json, r#"j:"a\u0000""#, r#""a\u0000""#),
            (Json, "b: [1] ", " [1] "),
            (Json, r#"t:say "hi""#, r#""say \"hi\"""#),
            (Json, "b:{nope", "! not valid JSON"),
            (Json, "ms:0", "! cannot write a Kafka timestamp into a column of type json"),
            (Jsonb, "j:[1, true]", r"\x01[1,true]"),
            (Jsonb, r#"r:{"a":1}"#, r#"\x01{"a":1}"#),
            (Jsonb, "i:5", r"\x015"),
            (Jsonb, r#"r:["\\u0000"]"#, r#"\x01["\\u0000"]"#),
            (Jsonb, r#"j:{"k": "a\u0000"}"#, "! jsonb cannot store the escape \\u0000"),
            (Jsonb, r#"r:["\u0000"]"#, "! jsonb cannot store"),
            (Jsonb, "t:a\0", "! jsonb cannot store"),
        ]);
        assert_eq!(coerce(&ColumnSpec::of(Text), Src::Bytes(b"a\xffb")), Err("not valid UTF-8".into()));
        assert!(!has_nul_escape(b"\"\\u000") && !has_nul_escape(b"\\"));
        let varchar4 = ColumnSpec { max_chars: Some(4), ..ColumnSpec::of(Text) };
        check(&varchar4, "t:éééé", "éééé");
        check(&varchar4, "t:abcd   ", "abcd   ");
        check(&varchar4, "t:ééé é", "! is longer than 4 characters");
    }

    #[test]
    #[rustfmt::skip]
    fn timestamps() {
        let ny = |extra_micros: i64| format!("I64({})", NEW_YEAR_2024 + extra_micros);
        for t in [Timestamptz, Timestamp] {
            let spec = ColumnSpec::of(t);
            check(&spec, "j:\"2024-01-01T00:00:00Z\"", &ny(0));
            check(&spec, "j:\"2024-01-01T01:00:00+01:00\"", &ny(0));
            check(&spec, "j:\"2023-12-31 19:30:00-0430\"", &ny(0));
            check(&spec, "b:2023-12-31T23:59:60Z", &ny(0));
            check(&spec, "j:\"2024-01-01t00:00:00.1234565+00\"", &ny(123_456));
            check(&spec, "j:\"2024-01-01T00:00:00.12345651Z\"", &ny(123_457));
            check(&spec, "t:2024-01-01T00:00:00.1234575z", &ny(123_458));
            check(&spec, "j:1704067200000", &ny(0));
            check(&spec, "ms:1704067200001", &ny(1000));
            check(&spec, "r:\"2000-01-01T00:00:00Z\"", "I64(0)");
            check(&spec, "i:0", "I64(-946684800000000)");
            for bad in ["2024-13-01T00:00:00Z", "2024-01-01", "2024-01-01T25:00:00Z", "", "x"] {
                check(&spec, &format!("t:{bad}"), "! not a valid timestamp");
            }
            check(&spec, "t:2024-01-01T00:00:00+01:0", "! not a valid timestamp");
            check(&spec, "t:2024-01-01T00:00:00.Z", "! not a valid timestamp");
            check(&spec, "j:1.5", "! not a whole number of epoch milliseconds");
            check(&spec, "ms:9223372036854775807", "! timestamp out of range");
            check(&spec, "i:-9223372036854775808", "! timestamp out of range");
            check(&spec, "j:true", "! cannot write a JSON boolean into a column of type timestamp");
        }
        check(&ColumnSpec::of(Timestamp), "j:\"2024-01-01 00:00:00.5\"", &ny(500_000));
        check(&ColumnSpec::of(Timestamp), "j:\"2024-01-01T00:00:00\"", &ny(0));
        check(&ColumnSpec::of(Timestamptz), "t:2024-01-01T00:00:00", "! timestamp has no time zone");
    }

    #[test]
    #[rustfmt::skip]
    fn dates_uuids_bytea() {
        check_all(&[
            (Date, "j:\"2024-01-01\"", "I32(8766)"),
            (Date, "j:\"2000-01-01\"", "I32(0)"),
            (Date, "t:1999-12-31", "I32(-1)"),
            (Date, "b:2024-01-01T23:30:00-01:00", "I32(8767)"),
            (Date, "ms:1704067199999", "I32(8765)"),
            (Date, "ms:-1", "I32(-10958)"),
            (Date, "j:\"2023-02-29\"", "! not a valid date"),
            (Date, "j:\"01/02/2024\"", "! not a valid date"),
            (Date, "j:20240101", "! cannot write a JSON number into a column of type date"),
            (Date, "ms:-9223372036854775808", "! date out of range"),
            (Uuid, "j:\"00112233-4455-6677-8899-aabbccddeeff\"", "00112233445566778899aabbccddeeff"),
            (Uuid, "b:00112233445566778899AABBCCDDEEFF", "00112233445566778899aabbccddeeff"),
            (Uuid, "b:0123456789abcdef", "30313233343536373839616263646566"),
            (Uuid, "j:\"0011\"", "! not a valid UUID"),
            (Uuid, "i:1", "! cannot write an integer into a column of type uuid"),
            (Bytea, "b:hi", "hi"),
            (Bytea, "j:\"aGk=\"", "hi"),
            (Bytea, "r:{}", "{}"),
            (Bytea, "t:t", "t"),
            (Bytea, "j:\"a*b\"", "! not valid base64"),
            (Bytea, "j:[]", "! cannot write a JSON array into a column of type bytea"),
        ]);
        let raw = [0xffu8; 16];
        assert_eq!(coerce(&ColumnSpec::of(Uuid), Src::Bytes(&raw)), Ok(Cell::Bytes(raw.to_vec())));
        assert_eq!(coerce(&ColumnSpec::of(Uuid), Src::Bytes(&raw[1..])), Err("not valid UTF-8".into()));
        assert_eq!(coerce(&ColumnSpec::of(Bytea), Src::Bytes(&raw)), Ok(Cell::Bytes(raw.to_vec())));
    }

    #[test]
    #[rustfmt::skip]
    fn never_panics_on_odd_input() {
        let huge = format!("{}.{}e-99999999999999999999", "9".repeat(5000), "1".repeat(5000));
        let junk = [&[][..], b"\xff\xfe", b"\0", b"\xe2\x82", b"\"\\", huge.as_bytes()];
        let values: Vec<Value> = [&huge, "\"\"", "\"\u{10FFFF}\"", "-0", "1e999999999", "[[[]]]", "\"2024-01-01T00:00:00.\""]
            .iter().map(|s| serde_json::from_str(s).unwrap()).collect();
        let types = [Int2, Int4, Int8, Numeric, Float4, Float8, Bool, Text, Json, Jsonb, Timestamptz, Timestamp, Date, Uuid, Bytea];
        for t in types {
            let spec = ColumnSpec { max_chars: Some(0), numeric: Some((1, 0)), ..ColumnSpec::of(t) };
            let mut results = vec![coerce(&spec, Src::Text("\u{10FFFF}"))];
            for b in junk {
                results.extend([coerce(&spec, Src::Bytes(b)), coerce(&spec, Src::RawJson(b))]);
            }
            results.extend(values.iter().map(|v| coerce(&spec, Src::Json(v))));
            for i in [i64::MIN, i64::MAX, 0] {
                results.extend([coerce(&spec, Src::Int(i)), coerce(&spec, Src::TimestampMs(i))]);
            }
            for e in results.into_iter().filter_map(Result::err) {
                assert!(e.chars().count() < 160, "message too long: {e}");
            }
        }
    }
}
