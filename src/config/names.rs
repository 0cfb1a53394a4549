//! SQL names: schema-qualified table names and identifier quoting.

use std::fmt;

/// PostgreSQL's identifier length limit in bytes (NAMEDATALEN - 1); longer
/// names are silently truncated by the server, so sluice rejects them.
pub const MAX_IDENT_BYTES: usize = 63;

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema, exactly as PostgreSQL stores it (unquoted input folded to
    /// lower case).
    pub schema: String,
    /// The table, exactly as PostgreSQL stores it.
    pub name: String,
}

impl TableName {
    /// Parses `schema.table` or `table` (schema "public"). Parts may be
    /// double-quoted with `""` standing for one `"`; unquoted parts are folded
    /// to lower case as PostgreSQL does.
    pub fn parse(s: &str) -> Result<TableName, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err(r#"table name is empty; write "schema.table" or "table""#.to_owned());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        loop {
            let (part, after) = parse_part(rest).map_err(|why| {
                format!(r#"invalid table name {s:?}: {why}; write "schema.table" or "table""#)
            })?;
            parts.push(part);
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => {
                    return Err(format!(
                        r#"invalid table name {s:?}: unexpected {after:?}; quote names with spaces or capitals like "\"My Table\"""#
                    ))
                }
            }
        }
        match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => Ok(TableName { schema, name }),
            Err(parts) if parts.len() == 1 => Ok(TableName {
                schema: "public".to_owned(),
                name: parts.into_iter().next().unwrap_or_default(),
            }),
            Err(_) => Err(format!(
                r#"invalid table name {s:?}: too many dots; write "schema.table" or "table" (quote a name that contains a dot)"#
            )),
        }
    }

    /// `"schema"."name"` with embedded quotes doubled, ready for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    /// `schema.name` as the user would write it: quoted only where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |part: &str| {
            if is_plain_identifier(part) {
                part.to_owned()
            } else {
                quote_ident(part)
            }
        };
        write!(f, "{}.{}", show(&self.schema), show(&self.name))
    }
}

/// Parses one name part at the start of `s`; returns it and the rest.
fn parse_part(s: &str) -> Result<(String, &str), String> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                out.push(c);
                continue;
            }
            if body[i + 1..].starts_with('"') {
                out.push('"');
                chars.next();
                continue;
            }
            check_length(&out)?;
            if out.is_empty() {
                return Err(r#"a quoted name ("") is empty"#.to_owned());
            }
            return Ok((out, &body[i + 1..]));
        }
        return Err("a quoted name is missing its closing \"".to_owned());
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    let (part, rest) = s.split_at(end);
    match part.chars().next() {
        None => Err("a name part is empty".to_owned()),
        Some(c) if c.is_ascii_digit() || c == '$' => Err(format!(
            "{part:?} starts with {c:?}; an unquoted name starts with a letter or _"
        )),
        Some(_) => {
            let folded = part.to_ascii_lowercase();
            check_length(&folded)?;
            Ok((folded, rest))
        }
    }
}

fn check_length(part: &str) -> Result<(), String> {
    if part.len() > MAX_IDENT_BYTES {
        Err(format!(
            "{part:?} is longer than PostgreSQL's {MAX_IDENT_BYTES}-byte limit"
        ))
    } else {
        Ok(())
    }
}

/// True for `[a-z_][a-z0-9_]*` up to 63 bytes: a name that needs no quotes.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= MAX_IDENT_BYTES
}

/// Quotes one identifier for SQL ("" doubling).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn table_name_parse() {
        assert_eq!(
            TableName::parse("public.orders"),
            Ok(table("public", "orders"))
        );
        assert_eq!(TableName::parse("orders"), Ok(table("public", "orders")));
        assert_eq!(
            TableName::parse(r#""My Schema"."Odd""Name""#),
            Ok(table("My Schema", "Odd\"Name"))
        );
        assert_eq!(
            TableName::parse("MixedCase"),
            Ok(table("public", "mixedcase"))
        );
        assert_eq!(
            TableName::parse("Sales.Orders_2"),
            Ok(table("sales", "orders_2"))
        );
        assert_eq!(TableName::parse(r#"app."a.b""#), Ok(table("app", "a.b")));
        for bad in [
            "a.b.c",
            "",
            "  ",
            ".orders",
            "orders.",
            "my table",
            "1abc",
            r#""open"#,
            r#""""#,
            "a..b",
            &"x".repeat(64),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = TableName::parse("a.b.c").unwrap_err();
        assert!(err.contains("too many dots"), "{err}");
    }

    #[test]
    fn table_name_display_and_quoting() {
        let t = table("My Schema", "Odd\"Name");
        assert_eq!(t.quoted(), r#""My Schema"."Odd""Name""#);
        assert_eq!(t.to_string(), r#""My Schema"."Odd""Name""#);
        assert_eq!(table("public", "orders").to_string(), "public.orders");
        assert_eq!(table("public", "orders").quoted(), r#""public"."orders""#);
        assert_eq!(quote_ident("a\"b"), r#""a""b""#);
        // Display output parses back to the same name.
        assert_eq!(TableName::parse(&t.to_string()), Ok(t));
    }
}
