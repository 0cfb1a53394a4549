//! The hand-written parsers checked against independent arithmetic on
//! decimal strings and calendar dates: NUMERIC text to binary (with
//! `numeric(p, s)` limits), and ISO 8601 timestamps and dates to
//! Postgres' microseconds and days (with its rounding).

use chrono::NaiveDate;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::config;
use super::wire::{numeric, strip};
use crate::sink::cell::Cell;
use crate::sink::coerce::{coerce, ColType, ColumnSpec, Src};
use crate::sink::numeric::encode_numeric_checked;

/// `digits` + 1, as decimal text ("" counts as 0).
fn increment(digits: &str) -> String {
    let mut d: Vec<u8> = digits.bytes().collect();
    for b in d.iter_mut().rev() {
        if *b < b'9' {
            *b += 1;
            return String::from_utf8(d).unwrap_or_default();
        }
        *b = b'0';
    }
    format!("1{}", String::from_utf8(d).unwrap_or_default())
}

/// Whether `digits` × 10^`exp`, rounded to `scale` places half away from
/// zero, reaches 10^(precision - scale) (Postgres' apply_typmod fails).
fn overflows(digits: &str, exp: i64, (precision, scale): (u32, u32)) -> bool {
    let scale = i64::from(scale);
    let (rounded, at) = if exp >= -scale {
        (digits.to_owned(), exp)
    } else {
        let cut = usize::try_from(-scale - exp).unwrap_or(usize::MAX);
        match digits.len().checked_sub(cut) {
            // Every digit is below half a unit of the last place kept.
            None => (String::new(), -scale),
            Some(keep) => {
                let kept = &digits[..keep];
                match digits.as_bytes()[keep] >= b'5' {
                    true => (increment(kept), -scale),
                    false => (kept.to_owned(), -scale),
                }
            }
        }
    };
    let (rounded, at) = strip(&rounded, at);
    // The first digit stands for 10^(at + len - 1).
    !rounded.is_empty() && at + rounded.len() as i64 > i64::from(precision) - scale
}

/// What encoding `[-]int[.frac][e exp]` gives: (negative, significant
/// digits, power of ten of the last one, display scale), or the start of
/// the error message.
fn expected_numeric(
    neg: bool,
    int: &str,
    frac: &str,
    exp: i64,
    typmod: Option<(u32, u32)>,
) -> Result<(bool, String, i64, u16), &'static str> {
    let dscale = (frac.len() as i64 - exp).max(0);
    if dscale > 0x3FFF {
        return Err("out of range for numeric:");
    }
    let (digits, last) = strip(&format!("{int}{frac}"), exp - frac.len() as i64);
    if digits.is_empty() {
        return Ok((false, digits, 0, dscale as u16));
    }
    if typmod.is_some_and(|t| overflows(&digits, last, t)) {
        return Err("out of range for numeric(");
    }
    let weight = (last + digits.len() as i64 - 1).div_euclid(4);
    let ndigits = weight - last.div_euclid(4) + 1;
    if i16::try_from(weight).is_err() || i16::try_from(ndigits).is_err() {
        return Err("out of range for numeric:");
    }
    Ok((neg, digits, last, dscale as u16))
}

fn exponent() -> impl Strategy<Value = Option<(i64, &'static str, &'static str)>> {
    option::of((
        prop_oneof![3 => -60i64..60, 1 => -20_000i64..140_000],
        select(&["e", "E"][..]),
        select(&["", "+"][..]),
    ))
}

/// Days from 2000-01-01 of a date chrono knows.
fn pg_days(date: NaiveDate) -> i64 {
    date.signed_duration_since(NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default())
        .num_days()
}

/// Microseconds of `.digits`, rounded half to even as Postgres does.
fn fraction_micros(digits: &str) -> i64 {
    let n = digits.len() as u32;
    let value: i128 = digits.parse().unwrap_or(0);
    let (scaled, unit) = (value * 1_000_000, 10i128.pow(n));
    let (q, r) = (scaled / unit, scaled % unit);
    let up = 2 * r > unit || (2 * r == unit && q % 2 == 1);
    (q + i128::from(up)) as i64
}

proptest! {
    #![proptest_config(config(300_000))]

    #[test]
    fn numeric_text_encodes_to_its_exact_value(
        neg in any::<bool>(),
        int in "[0-9]{0,24}",
        frac in option::of("[0-9]{0,24}"),
        exp in exponent(),
        typmod in option::of((1u32..50, 0u32..50)),
    ) {
        let text = format!(
            "{}{int}{}{}",
            if neg { "-" } else { "" },
            frac.as_ref().map_or(String::new(), |f| format!(".{f}")),
            exp.map_or(String::new(), |(e, style, plus)| {
                format!("{style}{}{e}", if e >= 0 { plus } else { "" })
            }),
        );
        let frac = frac.unwrap_or_default();
        let got = encode_numeric_checked(&text, typmod);
        if int.is_empty() && frac.is_empty() {
            prop_assert!(got.is_err_and(|e| e.starts_with("not a valid number")));
            return Ok(());
        }
        match (expected_numeric(neg, &int, &frac, exp.map_or(0, |e| e.0), typmod), got) {
            (Ok((neg, digits, last, dscale)), Ok(bytes)) => {
                let n = numeric(&bytes).map_err(TestCaseError::fail)?;
                prop_assert!(!n.nan);
                prop_assert_eq!((n.neg, n.decimal(), n.dscale), (neg, (digits, last), dscale), "{}", text);
            }
            (Err(kind), Err(message)) => prop_assert!(message.starts_with(kind), "{text}: {message}"),
            (expected, got) => prop_assert!(false, "{text} {typmod:?}: expected {expected:?}, got {got:?}"),
        }
    }
}

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn integers_encode_as_the_same_numeric(i in any::<i64>()) {
        let cell = coerce(&ColumnSpec::of(ColType::Numeric), Src::Int(i)).map_err(TestCaseError::fail)?;
        let Cell::Bytes(bytes) = cell else { return Err(TestCaseError::fail("not bytes")) };
        let n = numeric(&bytes).map_err(TestCaseError::fail)?;
        let abs = i.unsigned_abs().to_string();
        prop_assert_eq!((n.neg, n.decimal()), (i < 0, strip(&abs, 0)));
    }
}

proptest! {
    #![proptest_config(config(300_000))]

    /// Dates and timestamps Postgres accepts: years 1 to 9999, offsets up
    /// to ±15:59, leap second 60 without a fraction.
    #[test]
    fn timestamps_and_dates_parse_to_postgres_time(
        (y, m, d) in (1i32..10_000, 1u32..13, 1u32..32)
            .prop_filter("a real date", |&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).is_some()),
        (h, mi, s) in (0i64..24, 0i64..60, 0i64..61),
        frac in option::of("[0-9]{1,9}"),
        sep in select(&["T", "t", " "][..]),
        offset in option::of((any::<bool>(), 0i64..16, 0i64..60, 0u8..4)),
    ) {
        let frac = if s == 60 { None } else { frac };
        let zone = match offset {
            None => "Z".to_owned(),
            Some((_, _, _, 0)) => "z".to_owned(),
            Some((neg, oh, om, style)) => {
                let sign = if neg { '-' } else { '+' };
                match style {
                    1 => format!("{sign}{oh:02}:{om:02}"),
                    2 => format!("{sign}{oh:02}{om:02}"),
                    _ => format!("{sign}{oh:02}"),
                }
            }
        };
        let offset_secs = match offset {
            Some((neg, oh, om, style)) if style > 0 => {
                let secs = oh * 3600 + if style == 3 { 0 } else { om * 60 };
                if neg { -secs } else { secs }
            }
            _ => 0,
        };
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let text = format!(
            "{y:04}-{m:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{}{zone}",
            frac.as_ref().map_or(String::new(), |f| format!(".{f}"))
        );
        let micros = (pg_days(date) * 86_400 + h * 3600 + mi * 60 + s - offset_secs) * 1_000_000
            + frac.as_deref().map_or(0, fraction_micros);
        for ctype in [ColType::Timestamptz, ColType::Timestamp] {
            let got = coerce(&ColumnSpec::of(ctype), Src::Text(&text));
            prop_assert_eq!(got, Ok(Cell::I64(micros)), "{}", text);
        }
        let day = format!("{y:04}-{m:02}-{d:02}");
        let got = coerce(&ColumnSpec::of(ColType::Date), Src::Text(&day));
        prop_assert_eq!(got, Ok(Cell::I32(pg_days(date) as i32)), "{}", day);
    }
}
