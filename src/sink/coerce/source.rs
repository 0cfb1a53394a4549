//! The values coercion reads, and the one shape JSON values take before
//! any column type looks at them.

use serde_json::Value;

/// A value taken from a Kafka record, before coercion.
#[derive(Debug, Clone, Copy)]
pub enum Src<'a> {
    /// JSON pointer found nothing (or the field is absent)
    Missing,
    /// A node of a decoded JSON value
    Json(&'a serde_json::Value),
    /// The text of one JSON value inside a document the decoder checked
    /// (`sink::extract`): what a pointer names, read without a tree.
    JsonText(&'a str),
    /// A JSON number's exact text (from `JsonText` or a tree's number).
    JsonNumber(&'a str),
    /// A JSON string's contents, unescaped.
    JsonString(&'a str),
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

static NULL: Value = Value::Null;
static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

/// Where a JSON value that must be decoded to be read is kept while the
/// cell is made: an escaped string, or an array or object (which columns
/// take as the tree serialises it).
#[derive(Default)]
pub(super) struct Decoded {
    string: String,
    tree: Value,
}

/// `src` with JSON numbers as [`Src::JsonNumber`], strings as
/// [`Src::JsonString`], and [`Src::JsonText`] read into either or into a
/// tree node (null, booleans, arrays, objects), so every JSON value reaches
/// the column types in one form whether it came from a tree or not.
pub(super) fn normalize<'a>(src: Src<'a>, decoded: &'a mut Decoded) -> Result<Src<'a>, String> {
    Ok(match src {
        Src::Json(Value::Number(n)) => Src::JsonNumber(n.as_str()),
        Src::Json(Value::String(s)) => Src::JsonString(s),
        Src::JsonText(raw) => match raw.as_bytes().first() {
            Some(b'n') => Src::Json(&NULL),
            Some(b't') => Src::Json(&TRUE),
            Some(b'f') => Src::Json(&FALSE),
            Some(b'"') if !raw.contains('\\') => {
                Src::JsonString(raw.get(1..raw.len() - 1).ok_or("not valid JSON")?)
            }
            Some(b'"') => {
                decoded.string = serde_json::from_str(raw).map_err(|_| "not valid JSON")?;
                Src::JsonString(&decoded.string)
            }
            Some(b'[' | b'{') => {
                decoded.tree = serde_json::from_str(raw).map_err(|_| "not valid JSON")?;
                Src::Json(&decoded.tree)
            }
            _ => number(raw, &mut decoded.string),
        },
        other => other,
    })
}

/// A number's text as the tree keeps it: serde_json writes the exponent
/// as `e` with a sign (`1E2` is kept as `1e+2`), and the rest verbatim.
fn number<'a>(raw: &'a str, spelled: &'a mut String) -> Src<'a> {
    let Some(at) = raw.find(['e', 'E']) else {
        return Src::JsonNumber(raw);
    };
    let (mantissa, exp) = (&raw[..at], &raw[at + 1..]);
    let signed = exp.starts_with(['+', '-']);
    if raw.as_bytes()[at] == b'e' && signed {
        return Src::JsonNumber(raw);
    }
    *spelled = format!("{mantissa}e{}{exp}", if signed { "" } else { "+" });
    Src::JsonNumber(spelled)
}

/// What the source is, for "cannot write X into ..." messages.
pub(super) fn kind(src: Src<'_>) -> &'static str {
    match src {
        Src::Missing => "a missing value",
        Src::Json(Value::Null) => "a JSON null",
        Src::Json(Value::Bool(_)) => "a JSON boolean",
        Src::Json(Value::Number(_)) | Src::JsonNumber(_) => "a JSON number",
        Src::Json(Value::String(_)) | Src::JsonString(_) => "a JSON string",
        Src::Json(Value::Array(_)) => "a JSON array",
        Src::Json(Value::Object(_)) => "a JSON object",
        Src::JsonText(_) => "a JSON value",
        Src::RawJson(_) => "a JSON document",
        Src::Bytes(_) => "raw bytes",
        Src::Int(_) => "an integer",
        Src::TimestampMs(_) => "a Kafka timestamp",
        Src::Text(_) => "text",
    }
}
