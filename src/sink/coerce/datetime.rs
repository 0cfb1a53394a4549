//! Date and timestamp text parsed by hand: this runs per field of every
//! record, and Postgres' ranges and rounding must be matched exactly.

use chrono::Datelike as _;

use super::show;

/// Seconds from the Unix epoch to the Postgres epoch, 2000-01-01 UTC.
pub(super) const PG_EPOCH_SECS: i64 = 946_684_800;
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `NaiveDate::num_days_from_ce` of 2000-01-01.
pub(super) const PG_EPOCH_CE_DAYS: i64 = 730_120;
/// Postgres' timestamp range: 4714-11-24 BC up to (not including) 294277-01-01.
pub(super) const TS_RANGE: std::ops::Range<i64> =
    -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// Postgres' date range in days from 2000-01-01.
pub(super) const DATE_RANGE: std::ops::Range<i64> = -2_451_545..2_145_031_949;

/// Microseconds since the Postgres epoch for Unix epoch milliseconds.
pub(super) fn epoch_ms(ms: i64) -> Result<i64, String> {
    ms.checked_sub(PG_EPOCH_SECS * 1000)
        .and_then(|m| m.checked_mul(1000))
        .ok_or_else(|| "timestamp out of range".to_string())
}

/// Days since 2000-01-01 for exactly `YYYY-MM-DD`.
pub(super) fn parse_date(b: &[u8]) -> Option<i64> {
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
pub(super) fn parse_datetime(s: &str, naive_ok: bool) -> Result<i64, String> {
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
