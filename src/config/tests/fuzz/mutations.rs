//! Mutations of the shipped example configs: lines deleted, duplicated,
//! swapped and re-indented, values and fields replaced by odd tokens and
//! `${VAR}`s, cuts and stray bytes.

use proptest::prelude::*;
use proptest::sample::select;

/// The shipped example configs, all valid.
pub(super) fn examples() -> Vec<String> {
    super::super::example_files()
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// Scalars and keys that mutations put into a valid config.
const TOKENS: &[&str] = &[
    "",
    "0",
    "-1",
    "1e9",
    "null",
    "~",
    "true",
    "\"\"",
    "'",
    "\"",
    "[",
    "]",
    "{}",
    "[]",
    "- x",
    "&a",
    "*a",
    "!!binary x",
    "? x",
    ": x",
    "|",
    "${PG_PASSWORD}",
    "${A}",
    "${B}",
    "${UNSET}",
    "${UNSET:-d}",
    "$${x}",
    "${",
    "# c",
    "10s",
    "0s",
    "-5s",
    "1h",
    "99999999999999999999",
    "4MiB",
    "0B",
    "1TiB",
    "copy",
    "insert",
    "upsert",
    "raw",
    "json",
    "stop",
    "latest",
    "halt",
    "$offset",
    "/a",
    "$headers.",
    "$key/~2",
    "schema.\"T\"",
    "a.b.c",
    "\"My Table\"",
    "é",
    "0x10",
    "1.5",
    ".inf",
    ".nan",
    "127.0.0.1:0",
    "\"${A},,${B}\"",
    "\"${A}.${B}\"",
    "[${A}]",
    "\"postgres://u:${A}@h/db\"",
];

const FIELDS: &[&str] = &[
    "brokers",
    "group_id",
    "url",
    "routes",
    "table",
    "topic",
    "columns",
    "key",
    "mode",
    "version",
    "delete_on_tombstone",
    "max_rows",
    "linger",
    "pool_size",
    "state_schema",
    "librdkafka",
    "throttle",
    "adaptive",
    "window",
    "security",
    "protocol",
    "sasl",
    "ssl",
    "mechanism",
    "password",
    "on_error",
    "format",
    "${A}",
    "unknown_field",
];

#[derive(Debug, Clone)]
pub(super) enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, &'static str),
    InsertField(usize, usize, &'static str, &'static str),
    Indent(usize, bool),
    Truncate(usize),
    InsertByte(usize, u8),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => at.prop_map(Mutation::DeleteLine),
        1 => at.prop_map(Mutation::DuplicateLine),
        1 => (at, any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (at, select(TOKENS)).prop_map(|(a, t)| Mutation::ReplaceValue(a, t)),
        3 => (at, 0usize..4, select(FIELDS), select(TOKENS))
            .prop_map(|(a, i, f, t)| Mutation::InsertField(a, i, f, t)),
        1 => (at, any::<bool>()).prop_map(|(a, d)| Mutation::Indent(a, d)),
        1 => at.prop_map(Mutation::Truncate),
        1 => (at, any::<u8>()).prop_map(|(a, b)| Mutation::InsertByte(a, b)),
    ]
}

pub(super) fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut text = String::new();
    for m in mutations {
        let n = lines.len().max(1);
        match *m {
            Mutation::DeleteLine(a) if !lines.is_empty() => {
                lines.remove(a % n);
            }
            Mutation::DuplicateLine(a) if !lines.is_empty() => {
                let line = lines[a % n].clone();
                lines.insert(a % n, line);
            }
            Mutation::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Mutation::ReplaceValue(a, token) if !lines.is_empty() => {
                let line = &mut lines[a % n];
                *line = match line.split_once(": ") {
                    Some((key, _)) => format!("{key}: {token}"),
                    None => format!("{line} {token}"),
                };
            }
            Mutation::InsertField(a, indent, field, token) => {
                lines.insert(
                    a % (lines.len() + 1),
                    format!("{}{field}: {token}", "  ".repeat(indent)),
                );
            }
            Mutation::Indent(a, deeper) if !lines.is_empty() => {
                let line = &mut lines[a % n];
                *line = match deeper {
                    true => format!("  {line}"),
                    false => line.strip_prefix("  ").unwrap_or(line).to_owned(),
                };
            }
            Mutation::Truncate(a) => {
                let joined = lines.join("\n");
                let cut = (0..=a % (joined.len() + 1))
                    .rev()
                    .find(|&i| joined.is_char_boundary(i));
                lines = joined[..cut.unwrap_or(0)]
                    .lines()
                    .map(str::to_owned)
                    .collect();
            }
            Mutation::InsertByte(a, byte) => {
                let mut bytes = lines.join("\n").into_bytes();
                bytes.insert(a % (bytes.len() + 1), byte);
                lines = String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
        text = lines.join("\n");
    }
    text
}
