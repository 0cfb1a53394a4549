//! Key cells in the form Postgres' equality sees them.
//!
//! The collapse must merge exactly the records that `ON CONFLICT` and
//! `DELETE ... WHERE key = ...` treat as one row. Comparing the encoded
//! cells is not enough: `5` and `5.0` are different numeric encodings of one
//! value, and if the collapse kept both, one `INSERT ... ON CONFLICT DO
//! UPDATE` would hit the same row twice (SQLSTATE 21000, fatal), or a delete
//! and an upsert of the "two" keys would run in the wrong order. So each key
//! column gets a canonical form per type: two cells have the same canonical
//! bytes exactly when Postgres finds them equal once stored in the column.
//!
//! Types left as their binary encoding, because it already is canonical:
//! integers, bool, date, uuid, bytea, timestamp/timestamptz (microseconds of
//! the instant, whatever offset the text had), and text/varchar/name, which
//! are byte-equal under deterministic collations. Not covered, because the
//! column plan does not carry what would be needed: a nondeterministic
//! (e.g. case-insensitive ICU) collation on a key column, `timestamp(p)`
//! with p < 6 (Postgres rounds to p digits) and numeric with a negative
//! scale.

use std::borrow::Cow;

use serde_json::Value;
use tokio_postgres::types::Type;

use crate::sink::cell::Cell;
use crate::sink::coerce::{ColType, ColumnSpec};
use crate::sink::numeric::encode_numeric;

const NUMERIC_NEG: u16 = 0x4000;
/// Every base-10000 digit is below this; a cell with a larger one is not a
/// numeric sluice encoded, and is compared as bytes.
const NBASE: u16 = 10_000;

/// How one key column's values compare in Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEq {
    /// Equal exactly when the encodings are equal.
    Bytes,
    /// numeric: the display scale does not count (5 = 5.0 = 5.00, -0 = 0);
    /// `numeric(p, s)` rounds to `s` places before storing (and comparing).
    Numeric { scale: Option<u32> },
    /// real/double precision: -0 = 0, and every NaN equals every NaN (btree
    /// equality, unlike IEEE).
    Float,
    /// varchar(n): trailing spaces past n characters are cut on the way in.
    Varchar { max_chars: usize },
    /// char(n)/bpchar: trailing spaces do not count.
    Bpchar,
    /// jsonb: key order, duplicate keys (the last one stays), whitespace and
    /// number scale do not count.
    Jsonb,
}

impl KeyEq {
    pub fn for_column(spec: &ColumnSpec, pg_type: &Type) -> KeyEq {
        match spec.ctype {
            ColType::Numeric => KeyEq::Numeric {
                scale: spec.numeric.map(|(_, scale)| scale),
            },
            ColType::Float4 | ColType::Float8 => KeyEq::Float,
            ColType::Text if *pg_type == Type::BPCHAR => KeyEq::Bpchar,
            ColType::Text => match spec.max_chars {
                Some(max_chars) if *pg_type == Type::VARCHAR => KeyEq::Varchar { max_chars },
                _ => KeyEq::Bytes,
            },
            ColType::Jsonb => KeyEq::Jsonb,
            _ => KeyEq::Bytes,
        }
    }

    /// The cell in canonical form. A cell that is not what this column's
    /// coercion produces (it never is) is left as it is, so it still equals
    /// itself.
    pub fn canonical(self, cell: &Cell) -> Cow<'_, Cell> {
        let owned = match (self, cell) {
            (KeyEq::Float, Cell::F64(v)) if *v == 0.0 || v.is_nan() => {
                Cell::F64(if v.is_nan() { f64::NAN } else { 0.0 })
            }
            (KeyEq::Float, Cell::F32(v)) if *v == 0.0 || v.is_nan() => {
                Cell::F32(if v.is_nan() { f32::NAN } else { 0.0 })
            }
            (KeyEq::Numeric { scale }, Cell::Bytes(b)) => match numeric(b, scale) {
                Some(canon) => Cell::Bytes(canon),
                None => return Cow::Borrowed(cell),
            },
            (KeyEq::Bpchar, Cell::Bytes(b)) => {
                let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
                Cell::Bytes(b[..end].to_vec())
            }
            (KeyEq::Varchar { max_chars }, Cell::Bytes(b)) if b.len() > max_chars => {
                match varchar(b, max_chars) {
                    Some(cut) => Cell::Bytes(cut.to_vec()),
                    None => return Cow::Borrowed(cell),
                }
            }
            (KeyEq::Jsonb, Cell::Bytes(b)) => {
                // Binary jsonb is a version byte (1) and the JSON text.
                let parsed = b
                    .split_first()
                    .and_then(|(_, text)| serde_json::from_slice::<Value>(text).ok());
                match parsed {
                    Some(value) => {
                        let mut out = Vec::with_capacity(b.len());
                        json(&value, &mut out);
                        Cell::Bytes(out)
                    }
                    None => return Cow::Borrowed(cell),
                }
            }
            _ => return Cow::Borrowed(cell),
        };
        Cow::Owned(owned)
    }
}

/// The value of a binary NUMERIC as sign, decimal exponent and significant
/// digits, rounded to `scale` places as Postgres' apply_typmod does (half
/// away from zero). `None` for bytes that are not a well-formed numeric.
fn numeric(b: &[u8], scale: Option<u32>) -> Option<Vec<u8>> {
    let word = |i: usize| {
        b.get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    if sign != 0 && sign != NUMERIC_NEG {
        // NaN (and ±Infinity): each equals only itself, whatever its scale.
        return Some(vec![0xff, (sign >> 8) as u8]);
    }
    let mut digits = Vec::with_capacity(4 * ndigits + 1);
    for i in 0..ndigits {
        let group = word(4 + i)?;
        if group >= NBASE {
            return None;
        }
        digits
            .extend([group / 1000, group / 100 % 10, group / 10 % 10, group % 10].map(|d| d as u8));
    }
    // The power of ten of digits[0].
    let mut top = 4 * weight + 3;
    if let Some(scale) = scale {
        round(&mut digits, &mut top, i64::from(scale));
    }
    let Some(first) = digits.iter().position(|&d| d != 0) else {
        // Zero, of either sign and any scale.
        return Some(vec![0]);
    };
    let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
    let mut out = Vec::with_capacity(9 + last - first + 1);
    out.push(if sign == NUMERIC_NEG { 1 } else { 2 });
    out.extend_from_slice(&(top - first as i64).to_be_bytes());
    out.extend_from_slice(&digits[first..=last]);
    Some(out)
}

/// Rounds decimal `digits` (the first one standing for 10^`top`) to `scale`
/// places, half away from zero.
fn round(digits: &mut Vec<u8>, top: &mut i64, scale: i64) {
    // Digits standing for 10^-scale or more are kept.
    let kept = *top + scale + 1;
    let Ok(kept) = usize::try_from(kept) else {
        // Every digit is below half of 10^-scale: the value rounds to zero.
        digits.clear();
        return;
    };
    if kept >= digits.len() {
        return;
    }
    let up = digits[kept] >= 5;
    digits.truncate(kept);
    if !up {
        return;
    }
    for d in digits.iter_mut().rev() {
        if *d < 9 {
            *d += 1;
            return;
        }
        *d = 0;
    }
    // All nines (or nothing kept): the carry makes a new leading digit.
    digits.insert(0, 1);
    *top += 1;
}

/// varchar(n) text cut to n characters, when what is cut is only spaces (as
/// Postgres does; coercion refuses anything else).
fn varchar(b: &[u8], max_chars: usize) -> Option<&[u8]> {
    let text = std::str::from_utf8(b).ok()?;
    let (cut, _) = text.char_indices().nth(max_chars)?;
    b[cut..].iter().all(|&c| c == b' ').then_some(&b[..cut])
}

/// A canonical encoding of a JSON value as jsonb compares it: a tag, then
/// lengths before every variable part so that no two values run together.
fn json(value: &Value, out: &mut Vec<u8>) {
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_be_bytes());
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend([1, u8::from(*b)]),
        Value::Number(n) => {
            // jsonb numbers are numerics: 1 = 1.0 = 1e0.
            let text = n.as_str();
            let canon = encode_numeric(text)
                .ok()
                .and_then(|b| numeric(&b, None))
                .unwrap_or_else(|| text.as_bytes().to_vec());
            out.push(2);
            len(out, canon.len());
            out.extend_from_slice(&canon);
        }
        Value::String(s) => {
            out.push(3);
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(4);
            len(out, items.len());
            for item in items {
                json(item, out);
            }
        }
        Value::Object(map) => {
            // The map already holds the last of duplicate keys; its order
            // depends on serde_json's features, so sort here.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(5);
            len(out, entries.len());
            for (k, v) in entries {
                len(out, k.len());
                out.extend_from_slice(k.as_bytes());
                json(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str, scale: Option<u32>) -> Cell {
        let cell = Cell::Bytes(encode_numeric(text).unwrap());
        KeyEq::Numeric { scale }.canonical(&cell).into_owned()
    }

    #[test]
    fn numerics_equal_as_postgres_compares_them() {
        for same in [
            &["5", "5.0", "5.00", "5e0", "0.5e1", "+5"][..],
            &["0", "-0", "0.000", "0e10"],
            &["NaN", "nan"],
            &["-12345.6789", "-12345.678900"],
            &["10000", "1e4", "10000.0"],
        ] {
            for text in same {
                assert_eq!(num(text, None), num(same[0], None), "{text} = {}", same[0]);
            }
        }
        for (a, b) in [
            ("5", "-5"),
            ("5", "5.0001"),
            ("5", "50"),
            ("1", "10000"),
            ("0", "NaN"),
        ] {
            assert_ne!(num(a, None), num(b, None), "{a} <> {b}");
        }
    }

    #[test]
    fn numeric_with_a_scale_rounds_before_comparing() {
        let s = Some(2);
        for (a, b) in [
            ("5.001", "5"),
            ("5.004", "5.00"),
            ("5.005", "5.01"),
            ("9.995", "10"),
            ("99.999", "100"),
            ("-0.004", "0"),
            ("-0.005", "-0.01"),
            ("0.005", "0.01"),
            ("0.00001", "0"),
            ("123.4549", "123.45"),
        ] {
            assert_eq!(num(a, s), num(b, s), "{a} = {b} in numeric(_, 2)");
        }
        assert_ne!(num("5.001", s), num("5.006", s));
        // Scale 0: 0.5 rounds up to 1, 0.05 down to 0.
        assert_eq!(num("0.5", Some(0)), num("1", Some(0)));
        assert_eq!(num("0.05", Some(0)), num("0", Some(0)));
        assert_eq!(num("NaN", s), num("nan", s));
    }

    #[test]
    fn floats_text_and_jsonb() {
        let f = |c: Cell| KeyEq::Float.canonical(&c).into_owned();
        assert_eq!(f(Cell::F64(-0.0)), f(Cell::F64(0.0)));
        assert_eq!(f(Cell::F32(-0.0)), f(Cell::F32(0.0)));
        // Compared as bytes, as identities are: any NaN equals any NaN.
        let bits = |c: Cell| match c {
            Cell::F64(v) => v.to_bits(),
            _ => 0,
        };
        assert_eq!(bits(f(Cell::F64(f64::NAN))), bits(f(Cell::F64(-f64::NAN))));
        assert_eq!(f(Cell::F64(1.5)), Cell::F64(1.5));

        let bytes = |eq: KeyEq, s: &str| eq.canonical(&Cell::Bytes(s.into())).into_owned();
        assert_eq!(bytes(KeyEq::Bpchar, "ab  "), bytes(KeyEq::Bpchar, "ab"));
        assert_ne!(bytes(KeyEq::Bpchar, " ab"), bytes(KeyEq::Bpchar, "ab"));
        let v3 = KeyEq::Varchar { max_chars: 3 };
        assert_eq!(bytes(v3, "abc   "), bytes(v3, "abc"));
        assert_eq!(bytes(v3, "éé  "), bytes(v3, "éé "), "counts characters");
        assert_ne!(
            bytes(v3, "ab "),
            bytes(v3, "ab"),
            "varchar keeps its spaces"
        );
        assert_ne!(bytes(KeyEq::Bytes, "ab "), bytes(KeyEq::Bytes, "ab"));

        let jsonb = |s: &str| bytes(KeyEq::Jsonb, &format!("\u{1}{s}"));
        assert_eq!(
            jsonb(r#"{"a": 1, "b": [2.0, "x"]}"#),
            jsonb(r#"{"b":[2,"x"],"a":1.00,"a":1}"#)
        );
        assert_ne!(jsonb(r#"{"a":1}"#), jsonb(r#"{"a":"1"}"#));
        assert_ne!(jsonb("1"), jsonb("[1]"));
        assert_ne!(jsonb(r#"["a","b"]"#), jsonb(r#"["ab"]"#));
    }

    #[test]
    fn column_types_pick_their_comparison() {
        use ColType::*;
        for (ctype, max_chars, numeric, ty, want) in [
            (
                Numeric,
                None,
                Some((8, 2)),
                Type::NUMERIC,
                KeyEq::Numeric { scale: Some(2) },
            ),
            (
                Numeric,
                None,
                None,
                Type::NUMERIC,
                KeyEq::Numeric { scale: None },
            ),
            (Float8, None, None, Type::FLOAT8, KeyEq::Float),
            (Float4, None, None, Type::FLOAT4, KeyEq::Float),
            (Text, Some(4), None, Type::BPCHAR, KeyEq::Bpchar),
            (
                Text,
                Some(4),
                None,
                Type::VARCHAR,
                KeyEq::Varchar { max_chars: 4 },
            ),
            (Text, None, None, Type::VARCHAR, KeyEq::Bytes),
            (Text, None, None, Type::TEXT, KeyEq::Bytes),
            (Jsonb, None, None, Type::JSONB, KeyEq::Jsonb),
            (Int8, None, None, Type::INT8, KeyEq::Bytes),
            (Timestamptz, None, None, Type::TIMESTAMPTZ, KeyEq::Bytes),
        ] {
            let spec = ColumnSpec {
                max_chars,
                numeric,
                ..ColumnSpec::of(ctype)
            };
            assert_eq!(KeyEq::for_column(&spec, &ty), want, "{ty}");
        }
    }
}
