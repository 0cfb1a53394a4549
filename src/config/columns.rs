//! Column sources: where a table column's value comes from.

use std::fmt;

use serde::Deserialize;

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSource {
    /// A JSON pointer into the value, as written (e.g. "/customer/id").
    Pointer(String),
    /// The whole value (written "/").
    WholeValue,
    /// `$topic`.
    Topic,
    /// `$partition`.
    Partition,
    /// `$offset`.
    Offset,
    /// `$key`: the message key.
    Key,
    /// `$key/<pointer>`: a JSON pointer into the message key, decoded as
    /// JSON (e.g. "$key/order_id" holds "/order_id").
    KeyPointer(String),
    /// `$value`: the message value as it is.
    Value,
    /// `$timestamp`: the message timestamp.
    Timestamp,
    /// `$headers.<name>`: the named header.
    Header(String),
}

const COLUMN_SOURCE_FORMS: &str = r#"write a JSON pointer like "/customer/id", "/" for the whole value, or one of $topic, $partition, $offset, $key, $key/<JSON pointer>, $value, $timestamp, $headers.<name>"#;

impl std::str::FromStr for ColumnSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let source = match s {
            "/" => ColumnSource::WholeValue,
            "$topic" => ColumnSource::Topic,
            "$partition" => ColumnSource::Partition,
            "$offset" => ColumnSource::Offset,
            "$key" => ColumnSource::Key,
            "$value" => ColumnSource::Value,
            "$timestamp" => ColumnSource::Timestamp,
            _ if s.starts_with('/') => {
                check_pointer(s)?;
                ColumnSource::Pointer(s.to_owned())
            }
            _ if s.starts_with("$key/") => {
                let pointer = &s["$key".len()..];
                check_pointer(pointer)?;
                ColumnSource::KeyPointer(pointer.to_owned())
            }
            _ => match s.strip_prefix("$headers.") {
                Some(name) if !name.is_empty() => ColumnSource::Header(name.to_owned()),
                Some(_) => {
                    return Err("`$headers.` needs a header name, like $headers.trace_id".into())
                }
                None => {
                    return Err(format!(
                        "unknown column source {s:?}; {COLUMN_SOURCE_FORMS}"
                    ))
                }
            },
        };
        Ok(source)
    }
}

/// In a JSON pointer `~` must be followed by 0 (for `~`) or 1 (for `/`).
fn check_pointer(pointer: &str) -> Result<(), String> {
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "invalid JSON pointer {pointer:?}: `~` must be followed by 0 or 1 (write ~0 for ~ and ~1 for /)"
            ));
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for ColumnSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor (rather than `try_from`) so that serde_yaml reports the
        // error at the column's own path.
        struct SourceVisitor;

        impl serde::de::Visitor<'_> for SourceVisitor {
            type Value = ColumnSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a column source like "/customer/id" or "$offset""#)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ColumnSource, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(SourceVisitor)
    }
}

impl fmt::Display for ColumnSource {
    /// The source as written in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnSource::Pointer(p) => f.write_str(p),
            ColumnSource::WholeValue => f.write_str("/"),
            ColumnSource::Topic => f.write_str("$topic"),
            ColumnSource::Partition => f.write_str("$partition"),
            ColumnSource::Offset => f.write_str("$offset"),
            ColumnSource::Key => f.write_str("$key"),
            ColumnSource::KeyPointer(p) => write!(f, "$key{p}"),
            ColumnSource::Value => f.write_str("$value"),
            ColumnSource::Timestamp => f.write_str("$timestamp"),
            ColumnSource::Header(name) => write!(f, "$headers.{name}"),
        }
    }
}
