//! PostgreSQL's binary NUMERIC format, encoded from decimal text (a JSON
//! number's exact digits, or a string) without going through floats.

use std::ops::Range;

use bytes::BufMut as _;

use super::coerce::show;

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
/// Largest display scale the binary format can carry (NUMERIC_DSCALE_MASK).
const MAX_DSCALE: i64 = 0x3FFF;
/// Keeps exponent arithmetic far from i64 overflow; anything near it is out
/// of range for numeric anyway.
const EXP_CAP: i64 = 1_000_000_000;

/// A decimal literal split into its parts, borrowing the input.
struct Decimal<'a> {
    neg: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp: i64,
}

impl Decimal<'_> {
    fn len(&self) -> usize {
        self.int.len() + self.frac.len()
    }

    /// Digit `i` of the integer part followed by the fraction, as a value 0..=9.
    fn digit(&self, i: usize) -> u8 {
        let b = if i < self.int.len() {
            self.int[i]
        } else {
            self.frac[i - self.int.len()]
        };
        b - b'0'
    }

    /// Digits written after the decimal point once the exponent is applied.
    fn scale(&self) -> i64 {
        self.frac.len() as i64 - self.exp
    }

    /// Power of ten that digit `i` stands for.
    fn power(&self, i: usize) -> i64 {
        (self.len() - 1 - i) as i64 - self.scale()
    }

    /// Index range of the digits left once leading and trailing zeros go;
    /// empty for zero.
    fn significant(&self) -> Range<usize> {
        let n = self.len();
        let first = (0..n).find(|&i| self.digit(i) != 0).unwrap_or(n);
        let end = (first..n)
            .rev()
            .find(|&i| self.digit(i) != 0)
            .map_or(first, |i| i + 1);
        first..end
    }
}

fn not_a_number(text: &str) -> String {
    format!("not a valid number: {}", show(text))
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]`; `Ok(None)` means NaN.
fn parse_decimal(text: &str) -> Result<Option<Decimal<'_>>, String> {
    if text.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    let (neg, rest) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, mut rest) = rest.split_at(digits(rest));
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        (frac, rest) = after.split_at(digits(after));
    }
    if int.is_empty() && frac.is_empty() {
        return Err(not_a_number(text));
    }
    let mut exp = 0i64;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (exp_neg, exp_digits) = match after.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, after),
        };
        if exp_digits.is_empty() || digits(exp_digits) != exp_digits.len() {
            return Err(not_a_number(text));
        }
        for d in exp_digits {
            exp = (exp * 10 + i64::from(d - b'0')).min(EXP_CAP);
        }
        if exp_neg {
            exp = -exp;
        }
        rest = &[];
    }
    if !rest.is_empty() {
        return Err(not_a_number(text));
    }
    Ok(Some(Decimal {
        neg,
        int,
        frac,
        exp,
    }))
}

/// Turns a decimal string into PostgreSQL's binary NUMERIC format.
///
/// Accepts what JSON numbers and Postgres' own input allow: an optional sign,
/// digits with an optional fraction (`5.`, `.5` too), an optional exponent,
/// and `NaN` (any case). Infinity is rejected.
pub fn encode_numeric(text: &str) -> Result<Vec<u8>, String> {
    encode_numeric_checked(text, None)
}

/// [`encode_numeric`] for a `numeric(precision, scale)` column: fails where
/// Postgres would raise 22003, i.e. when the value, rounded to `scale`
/// fraction digits, needs more than `precision - scale` integer digits.
/// Extra fraction digits are sent as they are; Postgres rounds them.
pub fn encode_numeric_checked(text: &str, typmod: Option<(u32, u32)>) -> Result<Vec<u8>, String> {
    let mut out = bytes::BytesMut::new();
    encode_numeric_into(text, typmod, &mut out)?;
    Ok(out.into())
}

/// [`encode_numeric_checked`] appending to `out` (a COPY row, say); on
/// error nothing is appended.
pub fn encode_numeric_into(
    text: &str,
    typmod: Option<(u32, u32)>,
    out: &mut bytes::BytesMut,
) -> Result<(), String> {
    let Some(dec) = parse_decimal(text)? else {
        header(out, 0, 0, NUMERIC_NAN, 0, 0);
        return Ok(());
    };
    let out_of_range = || format!("out of range for numeric: {}", show(text));
    let dscale = dec.scale().max(0);
    if dscale > MAX_DSCALE {
        return Err(out_of_range());
    }
    let sig = dec.significant();
    if sig.is_empty() {
        header(out, 0, 0, 0, dscale as u16, 0);
        return Ok(());
    }
    if let Some(typmod) = typmod {
        check_typmod(&dec, sig.clone(), typmod, text)?;
    }
    let weight = dec.power(sig.start).div_euclid(4);
    let lowest = dec.power(sig.end - 1).div_euclid(4);
    let ndigits = weight - lowest + 1;
    let (Ok(weight), Ok(ndigits)) = (i16::try_from(weight), i16::try_from(ndigits)) else {
        return Err(out_of_range());
    };
    let sign = if dec.neg { NUMERIC_NEG } else { 0 };
    header(out, ndigits, weight, sign, dscale as u16, ndigits as usize);
    let mut group = 0i16;
    for i in sig.clone() {
        let place = dec.power(i).rem_euclid(4);
        group += i16::from(dec.digit(i)) * [1, 10, 100, 1000][place as usize];
        // A base-10000 digit ends at its units place or at the last digit.
        if place == 0 || i == sig.end - 1 {
            out.put_i16(group);
            group = 0;
        }
    }
    Ok(())
}

fn header(
    out: &mut bytes::BytesMut,
    ndigits: i16,
    weight: i16,
    sign: u16,
    dscale: u16,
    capacity: usize,
) {
    out.reserve(8 + 2 * capacity);
    out.put_i16(ndigits);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
}

/// Mirrors Postgres' apply_typmod: round to `scale` places (half away from
/// zero), then count the digits left of the point.
fn check_typmod(
    dec: &Decimal,
    sig: Range<usize>,
    typmod: (u32, u32),
    text: &str,
) -> Result<(), String> {
    let (precision, scale) = (i64::from(typmod.0), i64::from(typmod.1));
    let top = dec.power(sig.start);
    let n = sig.len() as i64;
    // Significant digits that survive rounding to `scale` places.
    let kept = top + scale + 1;
    let int_digits = if kept >= n {
        top + 1
    } else if kept < 0 {
        return Ok(());
    } else {
        let k = kept as usize;
        let rounds_up = dec.digit(sig.start + k) >= 5;
        if rounds_up && (sig.start..sig.start + k).all(|i| dec.digit(i) == 9) {
            top + 2
        } else if k == 0 {
            return Ok(());
        } else {
            top + 1
        }
    };
    let allowed = precision - scale;
    if int_digits > allowed {
        return Err(format!(
            "out of range for numeric({precision},{scale}): {} must round to an absolute value below 10^{allowed}",
            show(text)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn numeric_matches_postgres() {
        // Expected bytes are what PostgreSQL 15's numeric_send gives for the same text.
        for (text, want) in [
            ("0", "0000000000000000"),
            ("0.00", "0000000000000002"),
            ("-0", "0000000000000000"),
            ("0e-5", "0000000000000005"),
            ("1", "00010000000000000001"),
            ("-1", "00010000400000000001"),
            ("10000", "00010001000000000001"),
            ("1.5", "000200000000000100011388"),
            ("0.5", "0001ffff000000011388"),
            (".5", "0001ffff000000011388"),
            ("5.", "00010000000000000005"),
            ("0.0001", "0001ffff000000040001"),
            ("123456.789", "0003000100000003000c0d801ed2"),
            ("1e3", "000100000000000003e8"),
            ("1.5e+3", "000100000000000005dc"),
            ("-2.5E-3", "0001ffff400000040019"),
            ("-1e-3", "0001ffff40000003000a"),
            ("-0.00012", "0002ffff40000005000107d0"),
            ("007.0700", "0002000000000004000702bc"),
            ("NaN", "00000000c0000000"),
            ("nan", "00000000c0000000"),
            (
                "-9223372036854775808",
                "0005000440000000039a0d2c0170156516b0",
            ),
            (
                "12345678901234567890.123456789",
                "000800040000000904d2162e23340d801ed204d2162e2328",
            ),
        ] {
            assert_eq!(hex(&encode_numeric(text).unwrap()), want, "{text}");
        }
    }

    #[test]
    fn numeric_rejects_garbage() {
        for bad in [
            "abc", "", "1.2.3", "-", ".", "1e", "1e+", "e5", "1 ", " 1", "0x10", "Infinity", "1,5",
            "--1",
        ] {
            let err = encode_numeric(bad).unwrap_err();
            assert!(err.starts_with("not a valid number"), "{bad}: {err}");
        }
        assert!(encode_numeric("1e999999999999")
            .unwrap_err()
            .starts_with("out of range"));
        assert!(encode_numeric("1e-20000")
            .unwrap_err()
            .starts_with("out of range"));
        assert!(encode_numeric("1e131071").is_ok());
        assert!(encode_numeric("1e131072").is_err());
        assert_eq!(
            hex(&encode_numeric("0e999999999999").unwrap()),
            "0000000000000000"
        );
    }

    #[test]
    fn numeric_typmod_limits() {
        let ok = |s: &str, p, sc| encode_numeric_checked(s, Some((p, sc))).is_ok();
        assert!(ok("999.99", 5, 2));
        assert!(ok("-999.994", 5, 2));
        assert!(!ok("999.995", 5, 2), "rounds up to 1000.00");
        assert!(!ok("1000", 5, 2));
        assert!(ok("0.0000001", 5, 2));
        assert!(ok("0.99", 2, 2));
        assert!(!ok("0.999", 2, 2));
        assert!(!ok("1", 2, 2));
        assert!(ok("0.004", 2, 2), "rounds to zero");
        assert!(ok("9.4", 1, 0));
        assert!(!ok("9.5", 1, 0));
        assert!(ok("1e2", 3, 0));
        assert!(!ok("1e3", 3, 0));
        assert!(ok("NaN", 3, 0));
        assert!(ok("0", 1, 1));
        assert!(ok("0.00099", 2, 5));
        assert!(!ok("0.001", 2, 5));
    }
}
