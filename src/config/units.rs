//! Human-friendly units in the configuration file: durations ("250ms",
//! "10s", "1m") and byte sizes ("4MiB", "512KiB", "64KB", "100B", 4096).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A byte count parsed from "4MiB", "512KiB", "1GiB", "64KB" (KB/MB/GB =
/// powers of 1000), "100B" or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// One kibibyte (1024 bytes).
    pub const KIB: ByteSize = ByteSize(1024);
    /// One mebibyte (1024 KiB).
    pub const MIB: ByteSize = ByteSize(1024 * 1024);
    /// One gibibyte (1024 MiB).
    pub const GIB: ByteSize = ByteSize(1024 * 1024 * 1024);

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_HINT: &str = r#"(write it like "4MiB" or "512KiB")"#;

/// The size units, spelled exactly so (IEC for powers of 1024, SI for
/// powers of 1000): "mb" or "Mb" could mean either, and bits or bytes.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = String;

    /// Parses `<digits><unit>`: "4MiB", "64KB", "100B", or "4096" (bytes).
    /// Nothing else: no space before the unit, no other spelling of it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid size {s:?} {SIZE_HINT}");
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() {
            return Err(invalid());
        }
        let number: u64 = digits.parse().map_err(|_| invalid())?;
        let Some(factor) = SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)
        else {
            return Err(size_unit_problem(s, digits, unit));
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large {SIZE_HINT}"))
    }
}

/// Says what is wrong with a size's unit, and the spelling to use.
fn size_unit_problem(s: &str, digits: &str, unit: &str) -> String {
    let trimmed = unit.trim();
    let known = SIZE_UNITS
        .iter()
        .find(|(name, _)| !name.is_empty() && name.eq_ignore_ascii_case(trimmed));
    match known {
        Some((name, _)) if trimmed != unit => format!(
            "invalid size {s:?}: no space between the number and the unit; write \"{digits}{name}\""
        ),
        Some((name, _)) => format!(
            "invalid size {s:?}: units are case-sensitive; write \"{digits}{name}\" \
             (KiB, MiB, GiB: powers of 1024; KB, MB, GB: powers of 1000)"
        ),
        None => format!(
            "invalid size {s:?}: unknown unit {trimmed:?}; use B, KB, MB, GB, TB (powers of 1000) \
             or KiB, MiB, GiB, TiB (powers of 1024) {SIZE_HINT}"
        ),
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the count exactly ("4MiB",
    /// "1500B").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size like "4MiB" or "512KiB", or a number of bytes"#)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size \"{v}\" {SIZE_HINT}")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("invalid size \"{v}\" {SIZE_HINT}")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

const DURATION_HINT: &str = r#"(write it like "250ms", "10s", "1m" or "1m30s")"#;

/// The duration units, lower case only: `M` (a month to most parsers) and
/// `S` are refused rather than guessed. Nothing sluice times runs in days.
const DURATION_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses one or more `<digits><unit>` terms with no spaces, units `ms`,
/// `s`, `m` and `h`, each unit at most once and largest first: "250ms",
/// "10s", "1m30s", "1h".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = |why: String| format!("invalid duration {s:?}: {why} {DURATION_HINT}");
    if s.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut previous_factor = u64::MAX;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(invalid(format!("expected a number at {rest:?}")));
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let factor = match DURATION_UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, factor)) => *factor,
            None if unit.is_empty() => {
                return Err(invalid(format!("{digits} has no unit (ms, s, m or h)")))
            }
            None => return Err(invalid(duration_unit_problem(unit))),
        };
        if factor >= previous_factor {
            return Err(invalid(
                "write each unit once, largest first, like \"1m30s\"".into(),
            ));
        }
        previous_factor = factor;
        let number: u64 = digits
            .parse()
            .map_err(|_| invalid("the number is too large".into()))?;
        total = number
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| invalid("it is too long".into()))?;
        rest = next;
    }
    Ok(Duration::from_millis(total))
}

/// Says what is wrong with a duration's unit.
fn duration_unit_problem(unit: &str) -> String {
    let trimmed = unit.trim();
    if trimmed.starts_with(['.', ',']) {
        return "no fractions; write a smaller unit, like \"1500ms\" for 1.5s".into();
    }
    if trimmed != unit && DURATION_UNITS.iter().any(|(name, _)| *name == trimmed) {
        return "no spaces inside a duration".into();
    }
    if trimmed == "M" {
        return "unit \"M\" is ambiguous (minutes or months?); write minutes as \"m\"".into();
    }
    if let Some((name, _)) = DURATION_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
    {
        return format!("units are lower case; write {name:?}");
    }
    let spelled = match trimmed.to_ascii_lowercase().as_str() {
        "sec" | "secs" | "second" | "seconds" => Some("s"),
        "min" | "mins" | "minute" | "minutes" => Some("m"),
        "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => Some("ms"),
        "hr" | "hrs" | "hour" | "hours" => Some("h"),
        _ => None,
    };
    match spelled {
        Some(short) => format!("write the unit {trimmed:?} as {short:?}"),
        None => format!("unknown unit {trimmed:?}; use ms, s, m or h"),
    }
}

/// `deserialize_with` helper for `std::time::Duration` fields.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration like "250ms" or "10s""#)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration \"{v}\", a unit is required {DURATION_HINT}"
            )))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration \"{v}\" {DURATION_HINT}"
            )))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "invalid duration \"{v}\" {DURATION_HINT}"
            )))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// `deserialize_with` helper for the raw librdkafka settings: a mapping whose
/// values may be YAML strings, numbers or booleans, all stored as strings.
/// A repeated key is an error rather than a silent overwrite.
pub fn string_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Scalar(String);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ScalarVisitor;

            impl Visitor<'_> for ScalarVisitor {
                type Value = Scalar;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }

                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }

                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }

                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }

                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_owned()))
                }
            }

            deserializer.deserialize_any(ScalarVisitor)
        }
    }

    unique_map::<D, Scalar>(deserializer)
        .map(|map| map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// `deserialize_with` helper for a mapping with string keys that rejects a
/// repeated key instead of silently keeping the last one.
pub fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct MapVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some(key) = access.next_key::<String>()? {
                if map.contains_key(&key) {
                    return Err(de::Error::custom(format!(
                        "key `{key}` appears twice; keep only one"
                    )));
                }
                let value = access.next_value()?;
                map.insert(key, value);
            }
            Ok(map)
        }
    }

    deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
}

#[cfg(test)]
mod tests;
