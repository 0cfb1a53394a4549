//! What Postgres' binary input functions (`<type>_recv`, PostgreSQL 15)
//! accept: the judge of every cell sluice sends, by COPY and as an INSERT
//! parameter.
//!
//! A cell is a defect when Postgres cannot read it as the column's type,
//! when it breaks a check sluice makes itself (NUL in text, varchar length,
//! ranges), or when Postgres would refuse it with an SQLSTATE outside
//! classes 22/23: such an error stops the partition instead of
//! dead-lettering one record. A few checks sluice leaves to Postgres on
//! purpose (they need a full parse of a whole value sluice only validates);
//! Postgres refuses those with class 22, so the record is dead-lettered
//! after bisection: [`Verdict::Refused`].

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

use crate::sink::catalog::PlannedColumn;
use crate::sink::cell::Cell;
use crate::sink::coerce::ColType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Postgres refuses it with SQLSTATE class 22; why.
    Refused(&'static str),
}

/// Postgres' date range in days from 2000-01-01 (`IS_VALID_DATE`).
const DATES: std::ops::Range<i64> = -2_451_545..2_145_031_949;
/// Postgres' timestamp range in microseconds from 2000-01-01
/// (`IS_VALID_TIMESTAMP`): 4714-11-24 BC up to 294277-01-01.
const TIMESTAMPS: std::ops::Range<i64> = -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// `name` holds at most NAMEDATALEN - 1 bytes; `namerecv` refuses more
/// with 42622 (not class 22).
const NAME_BYTES: usize = 63;
/// Postgres' JSON parser is recursive: nesting past its stack fails with
/// 54001. Measured on PostgreSQL 15: 500 levels pass and 1,000 fail at the
/// smallest `max_stack_depth` (100kB); 10,000 pass and 20,000 fail at the
/// default (2MB).
const SAFE_JSON_DEPTH: usize = 500;

/// Encodes `cell` as a bind parameter and as a COPY field for `col`,
/// checks that both carry the same bytes, and judges them.
pub fn judge(col: &PlannedColumn, cell: &Cell) -> Result<Verdict, String> {
    let mut param = BytesMut::new();
    let null = cell
        .to_sql_checked(&col.pg_type, &mut param)
        .map_err(|e| format!("to_sql failed: {e}"))?;
    let mut field = BytesMut::new();
    cell.write_copy_field(&mut field);
    let expected: Vec<u8> = match null {
        IsNull::Yes if param.is_empty() => (-1i32).to_be_bytes().to_vec(),
        IsNull::Yes => return Err("a NULL parameter with bytes".into()),
        IsNull::No => {
            let len = i32::try_from(param.len()).map_err(|e| e.to_string())?;
            [&len.to_be_bytes()[..], &param[..]].concat()
        }
    };
    if field[..] != expected[..] {
        return Err(format!(
            "COPY field {field:?} differs from parameter {param:?}"
        ));
    }
    if matches!(null, IsNull::Yes) {
        return match col.spec.not_null {
            true => Err("NULL in a NOT NULL column".into()),
            false => Ok(Verdict::Valid),
        };
    }
    let b = &param[..];
    let ty = &col.pg_type;
    match col.spec.ctype {
        ColType::Int2 => read::<i16>(ty, b),
        ColType::Int4 => read::<i32>(ty, b),
        ColType::Int8 => read::<i64>(ty, b),
        ColType::Float4 => read::<f32>(ty, b),
        ColType::Float8 => read::<f64>(ty, b),
        ColType::Bool => read::<bool>(ty, b),
        ColType::Uuid => read::<uuid::Uuid>(ty, b),
        ColType::Bytea => Ok(Verdict::Valid),
        ColType::Date => in_range(i64::from(read_value::<i32>(ty, b)?), &DATES),
        ColType::Timestamp | ColType::Timestamptz => {
            in_range(read_value::<i64>(ty, b)?, &TIMESTAMPS)
        }
        ColType::Text => text(col, b),
        ColType::Json => json(b, false),
        ColType::Jsonb => match b.split_first() {
            Some((1, text)) if has_nul_escape(text) => Err("jsonb with \\u0000".into()),
            Some((1, text)) => json(text, true),
            _ => Err("jsonb without version byte 1".into()),
        },
        ColType::Numeric => numeric(b).map(|_| Verdict::Valid),
    }
}

fn read_value<'a, T: FromSql<'a>>(ty: &Type, b: &'a [u8]) -> Result<T, String> {
    T::from_sql(ty, b).map_err(|e| format!("not a {ty}: {e}"))
}

fn read<'a, T: FromSql<'a>>(ty: &Type, b: &'a [u8]) -> Result<Verdict, String> {
    read_value::<T>(ty, b).map(|_| Verdict::Valid)
}

fn in_range(v: i64, range: &std::ops::Range<i64>) -> Result<Verdict, String> {
    match range.contains(&v) {
        true => Ok(Verdict::Valid),
        false => Err(format!("{v} is out of range {range:?}")),
    }
}

fn text(col: &PlannedColumn, b: &[u8]) -> Result<Verdict, String> {
    let s = std::str::from_utf8(b).map_err(|_| "text that is not UTF-8".to_string())?;
    if s.contains('\0') {
        return Err("text with NUL".into());
    }
    if col.pg_type == Type::NAME && b.len() > NAME_BYTES {
        return Err(format!(
            "a name of {} bytes: Postgres refuses it with 42622",
            b.len()
        ));
    }
    if let Some(max) = col.spec.max_chars {
        if let Some((cut, _)) = s.char_indices().nth(max) {
            if !s[cut..].bytes().all(|c| c == b' ') {
                return Err(format!("longer than {max} characters: {s:?}"));
            }
        }
    }
    Ok(Verdict::Valid)
}

/// JSON text for a json column, or after jsonb's version byte.
fn json(b: &[u8], jsonb: bool) -> Result<Verdict, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(b)
        .map_err(|e| format!("not JSON ({e}): {:?}", String::from_utf8_lossy(b)))?;
    let depth = depth(b);
    if depth > SAFE_JSON_DEPTH {
        return Err(format!(
            "JSON nested {depth} levels deep: Postgres fails with 54001"
        ));
    }
    if std::str::from_utf8(b).is_err() {
        return Ok(Verdict::Refused("JSON text that is not UTF-8 (22021)"));
    }
    // json keeps the text as it is; jsonb decodes the escapes.
    if jsonb && lone_surrogate(b) {
        return Ok(Verdict::Refused("a lone surrogate escape in jsonb (22P02)"));
    }
    Ok(Verdict::Valid)
}

/// Deepest nesting of arrays and objects in JSON text.
pub fn depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The `\uXXXX` escapes of JSON text (which may be of a surrogate).
fn unicode_escapes(json: &[u8]) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1) == Some(&b'u') {
                let code = json
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok());
                if let Some(code) = code {
                    out.push((i, code));
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

fn lone_surrogate(json: &[u8]) -> bool {
    let escapes = unicode_escapes(json);
    let mut i = 0;
    while i < escapes.len() {
        let (at, code) = escapes[i];
        match code {
            0xD800..=0xDBFF => match escapes.get(i + 1) {
                Some(&(next, low)) if next == at + 6 && (0xDC00..=0xDFFF).contains(&low) => i += 2,
                _ => return true,
            },
            0xDC00..=0xDFFF => return true,
            _ => i += 1,
        }
    }
    false
}

fn has_nul_escape(json: &[u8]) -> bool {
    unicode_escapes(json).iter().any(|&(_, code)| code == 0)
}

/// A binary NUMERIC as `numeric_recv` reads it.
#[derive(Debug, PartialEq)]
pub struct Numeric {
    pub neg: bool,
    pub nan: bool,
    pub weight: i16,
    pub dscale: u16,
    /// Base-10000 digits.
    pub digits: Vec<u16>,
}

impl Numeric {
    /// The value as (significant decimal digits, power of ten of the last
    /// one); `("", 0)` for zero.
    pub fn decimal(&self) -> (String, i64) {
        let all: String = self.digits.iter().map(|d| format!("{d:04}")).collect();
        let exp = 4 * (i64::from(self.weight) - self.digits.len() as i64 + 1);
        strip(&all, exp)
    }
}

/// Significant digits of `digits` × 10^`exp` without leading or trailing
/// zeros, and the power of ten of the last one kept.
pub fn strip(digits: &str, exp: i64) -> (String, i64) {
    let lead = digits.trim_start_matches('0');
    let sig = lead.trim_end_matches('0');
    if sig.is_empty() {
        return (String::new(), 0);
    }
    (sig.to_owned(), exp + (lead.len() - sig.len()) as i64)
}

pub fn numeric(b: &[u8]) -> Result<Numeric, String> {
    let word = |i: usize| {
        b.get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| format!("numeric cut short: {b:?}"))
    };
    let ndigits = word(0)?;
    if b.len() != 8 + 2 * usize::from(ndigits) {
        return Err(format!("numeric of {} bytes for {ndigits} digits", b.len()));
    }
    let sign = word(2)?;
    let dscale = word(3)?;
    if !matches!(sign, 0 | 0x4000 | 0xC000) {
        return Err(format!("numeric sign {sign:#x}"));
    }
    if dscale & 0xC000 != 0 {
        return Err(format!("numeric dscale {dscale:#x}"));
    }
    let digits = (0..usize::from(ndigits))
        .map(|i| word(4 + i))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(d) = digits.iter().find(|&&d| d >= 10_000) {
        return Err(format!("numeric digit {d}"));
    }
    Ok(Numeric {
        neg: sign == 0x4000,
        nan: sign == 0xC000,
        weight: word(1)? as i16,
        dscale,
        digits,
    })
}

#[test]
fn the_judge_knows_its_json() {
    assert_eq!(depth(br#"[{"a":"[[["},[]]"#), 2);
    assert!(lone_surrogate(br#""\ud800""#));
    assert!(lone_surrogate(br#""\udc00\ud800""#));
    assert!(!lone_surrogate(br#""\ud83d\ude00\\ud800""#));
    assert!(has_nul_escape(br#""\u0000""#) && !has_nul_escape(br#""\\u0000""#));
    assert_eq!(strip("00120300", -2), ("1203".into(), 0));
}
