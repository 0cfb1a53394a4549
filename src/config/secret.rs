//! Secrets: the Postgres URL, kept out of Debug output, and its redaction
//! for logs.

use std::fmt;

use serde::Deserialize;

/// A secret string: Debug/Display print "***"; `expose()` returns the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value itself. Never log it; log `redact_url(..)` instead.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces the password in a postgres URL (URL form
/// `postgres://user:pass@host/db` and key/value form `password=...`) with
/// ***, for logs.
pub fn redact_url(url: &str) -> String {
    // A URL starts with its scheme; a key/value string may hold `://` in a
    // (quoted) value, the password among them.
    let scheme = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    let Some(scheme_end) = url.find("://").filter(|&i| scheme(&url[..i])) else {
        return redact_keywords(url, is_kv_separator);
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    // The user info ends at the last '@' before the query string (the first
    // '?' after the first '@'), so a password holding unencoded '@', '/' or
    // '#' is still covered; over-redacting an odd path beats leaking.
    let redacted_rest = match rest.find('@') {
        None => rest.to_owned(),
        Some(first_at) => {
            let query = rest[first_at..]
                .find('?')
                .map_or(rest.len(), |i| first_at + i);
            let at = rest[..query].rfind('@').unwrap_or(first_at);
            let (userinfo, after) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], after),
                None => rest.to_owned(),
            }
        }
    };
    // Query parameters may carry the password too: ?password=...&sslpassword=...
    redact_keywords(&format!("{head}{redacted_rest}"), |c| {
        matches!(c, '?' | '&')
    })
}

/// Key/value connection strings separate settings with whitespace.
fn is_kv_separator(c: char) -> bool {
    c.is_whitespace()
}

/// Replaces the value of every `password` / `sslpassword` setting with ***.
/// A setting starts at the beginning of `s` or after a `separator` char; its
/// value is single-quoted (with backslash escapes) or runs to the next
/// separator.
fn redact_keywords(s: &str, separator: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut at_start = true;
    while i < s.len() {
        let rest = &s[i..];
        if at_start {
            if let Some(len) = password_setting_prefix(rest) {
                out.push_str(&rest[..len]);
                out.push_str("***");
                i += len + value_len(&rest[len..], separator);
                at_start = false;
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        at_start = separator(c);
        i += c.len_utf8();
    }
    out
}

/// If `s` starts with `password =` or `sslpassword=` (any spacing), the
/// length of that prefix up to the value.
fn password_setting_prefix(s: &str) -> Option<usize> {
    let key_len = ["password", "sslpassword"]
        .iter()
        .find(|k| s.len() >= k.len() && s[..k.len()].eq_ignore_ascii_case(k))?
        .len();
    let after_key = &s[key_len..];
    let trimmed = after_key.trim_start_matches([' ', '\t']);
    let after_eq = trimmed.strip_prefix('=')?;
    let value = after_eq.trim_start_matches([' ', '\t']);
    Some(s.len() - value.len())
}

/// Length of a setting value at the start of `s`.
fn value_len(s: &str, separator: fn(char) -> bool) -> usize {
    if let Some(body) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return i + 2,
                _ => {}
            }
        }
        return s.len();
    }
    s.find(separator).unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_forms() {
        let cases = [
            (
                "postgres://sluice:s3cret@127.0.0.1:5432/app",
                "postgres://sluice:***@127.0.0.1:5432/app",
            ),
            ("postgresql://sluice@db/app", "postgresql://sluice@db/app"),
            ("postgres://db:5432/app", "postgres://db:5432/app"),
            (
                "postgres://u:p@ss/w@rd@db/app?sslmode=require",
                "postgres://u:***@db/app?sslmode=require",
            ),
            (
                "postgres://u@db/app?sslmode=require&password=x&user=u",
                "postgres://u@db/app?sslmode=require&password=***&user=u",
            ),
            (
                "host=db user=sluice password=s3cret dbname=app",
                "host=db user=sluice password=*** dbname=app",
            ),
            (
                "host=db password = 'a b\\'c' dbname=app",
                "host=db password = *** dbname=app",
            ),
            ("password=x", "password=***"),
            (
                "host=db user=sluice dbname=app",
                "host=db user=sluice dbname=app",
            ),
            ("host=db mypassword=x", "host=db mypassword=x"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn secret_is_hidden() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
