//! libpq's SSL parameters, taken out of a connection string before
//! tokio-postgres sees it: tokio-postgres knows only `sslmode` disable,
//! prefer and require, and refuses `sslrootcert`, `sslcert` and `sslkey`
//! as unknown options. Both forms libpq reads are handled: the URL
//! (`postgres://…?sslmode=verify-full&sslrootcert=/ca.crt`, keys and
//! values percent-decoded) and key/value (`host=db sslmode='verify-full'`,
//! single quotes and backslash escapes). Every other parameter is handed to
//! tokio-postgres exactly as written.

use std::fmt;

use crate::config::PgSslMode;

/// A TLS protocol version, as libpq's `ssl_min_protocol_version` and
/// `ssl_max_protocol_version` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsVersion {
    fn parse(value: &str) -> Option<TlsVersion> {
        match value {
            "TLSv1" => Some(TlsVersion::V1_0),
            "TLSv1.1" => Some(TlsVersion::V1_1),
            "TLSv1.2" => Some(TlsVersion::V1_2),
            "TLSv1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }
}

/// The SSL parameters a connection string sets (absent = not written, or
/// written empty, which libpq treats the same for these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SslParams {
    /// `sslmode`, or `ssl=true` in a URL (libpq's JDBC compatibility:
    /// it means `sslmode=require`).
    pub sslmode: Option<PgSslMode>,
    /// `sslrootcert`: a PEM file, or `system`.
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    /// Whether `sslpassword` was given (its value is never kept).
    pub sslpassword: bool,
    /// `sslsni`: send the host name in the handshake (libpq's default 1).
    pub sslsni: Option<bool>,
    pub ssl_min_protocol_version: Option<TlsVersion>,
    pub ssl_max_protocol_version: Option<TlsVersion>,
}

/// A connection string split in two.
#[derive(Debug, Clone)]
pub struct Split {
    /// What tokio-postgres parses: the string without the SSL parameters.
    pub rest: String,
    pub ssl: SslParams,
}

/// Why a connection string's SSL part cannot be used. Never holds a
/// password: only the names and values of SSL parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConninfoError(pub String);

impl fmt::Display for ConninfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConninfoError {}

fn err<T>(message: impl Into<String>) -> Result<T, ConninfoError> {
    Err(ConninfoError(message.into()))
}

/// Splits `conninfo` into libpq's SSL parameters and the rest.
pub fn split(conninfo: &str) -> Result<Split, ConninfoError> {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        split_url(conninfo)
    } else {
        split_keywords(conninfo)
    }
}

/// What one parameter is to sluice.
enum Param {
    /// Not an SSL parameter: tokio-postgres' business.
    Other,
    /// Taken (or ignored, as libpq ignores it).
    Taken,
}

/// Records `key = value` in `ssl` if it is one of libpq's SSL parameters.
fn take(ssl: &mut SslParams, key: &str, value: &str, url: bool) -> Result<Param, ConninfoError> {
    let path = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    match key {
        "sslmode" => {
            ssl.sslmode = Some(PgSslMode::parse(value).ok_or_else(|| {
                ConninfoError(format!(
                    "invalid sslmode {value:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            })?)
        }
        "ssl" if url => {
            if value != "true" {
                return err(format!(
                    "invalid ssl={value:?}: only ssl=true (libpq's spelling of sslmode=require) is understood"
                ));
            }
            ssl.sslmode = Some(PgSslMode::Require);
        }
        "sslrootcert" => ssl.sslrootcert = path(value),
        "sslcert" => ssl.sslcert = path(value),
        "sslkey" => ssl.sslkey = path(value),
        "sslpassword" => ssl.sslpassword = !value.is_empty(),
        "sslsni" => {
            ssl.sslsni = Some(match value {
                "1" => true,
                "0" => false,
                _ => return err(format!("invalid sslsni {value:?}: use 1 or 0")),
            })
        }
        "ssl_min_protocol_version" | "ssl_max_protocol_version" => {
            let version = TlsVersion::parse(value).ok_or_else(|| {
                ConninfoError(format!(
                    "invalid {key} {value:?}: use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3"
                ))
            })?;
            if key == "ssl_min_protocol_version" {
                ssl.ssl_min_protocol_version = Some(version);
            } else {
                ssl.ssl_max_protocol_version = Some(version);
            }
        }
        // Without effect in libpq since OpenSSL 1.1 (compression is off).
        "sslcompression" => {}
        // sluice has no GSSAPI: "prefer" falls through to TLS, as libpq
        // does without Kerberos credentials.
        "gssencmode" => match value {
            "disable" | "prefer" => {}
            "require" => {
                return err(
                    "gssencmode=require: sluice cannot encrypt with GSSAPI; remove it and use TLS (sslmode=verify-full)",
                )
            }
            _ => return err(format!("invalid gssencmode {value:?}")),
        },
        "sslcertmode" => match value {
            "allow" => {}
            _ => {
                return err(format!(
                    "sslcertmode={value:?} is not supported; remove it (sluice sends a client certificate when one is configured, libpq's default `allow`)"
                ))
            }
        },
        "sslcrl" | "sslcrldir" => {
            return err(format!(
                "{key} is not supported: sluice cannot check certificate revocation lists; remove it"
            ))
        }
        _ => return Ok(Param::Other),
    }
    Ok(Param::Taken)
}

/// The URL form. The query starts at the first `?` after the user info
/// (tokio-postgres reads the user info up to the first `@`), so a `?` in
/// an unencoded password does not start it.
fn split_url(url: &str) -> Result<Split, ConninfoError> {
    let after_userinfo = url.find('@').map_or(0, |at| at + 1);
    let Some(query_at) = url[after_userinfo..].find('?').map(|i| after_userinfo + i) else {
        return Ok(Split {
            rest: url.to_owned(),
            ssl: SslParams::default(),
        });
    };
    let mut ssl = SslParams::default();
    let mut kept = Vec::new();
    for pair in url[query_at + 1..].split('&') {
        // Malformed pairs are tokio-postgres' to report.
        let Some((raw_key, raw_value)) = pair.split_once('=') else {
            kept.push(pair);
            continue;
        };
        let key = decode(raw_key).unwrap_or_else(|_| raw_key.to_owned());
        if !is_ssl_key(&key) {
            kept.push(pair);
            continue;
        }
        // A password's value never reaches a message, even a broken one.
        let value = decode(raw_value).map_err(|why| match key.as_str() {
            "sslpassword" => ConninfoError(format!("{key}: invalid percent-encoding")),
            _ => ConninfoError(format!("{key}: {why}")),
        })?;
        if let Param::Other = take(&mut ssl, &key, &value, true)? {
            kept.push(pair);
        }
    }
    let mut rest = url[..query_at].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(Split { rest, ssl })
}

/// Keys [`take`] may consume; decoding is strict only for these.
fn is_ssl_key(key: &str) -> bool {
    key.starts_with("ssl") || key == "gssencmode"
}

/// libpq's percent-decoding of URL parts: `%XX` is a byte, anything else
/// after `%` is an error, and so is `%00`; `+` is a plus sign.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(0) => return Err("%00 is not allowed in a percent-encoded value".into()),
            Some(byte) => out.push(byte),
            None => return Err(format!("invalid percent-encoding in {s:?}")),
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The key/value form, read with libpq's rules: `key = value` pairs
/// separated by white space; a value is single-quoted (empty, or holding
/// spaces) or bare, and in both `\` escapes the next character.
fn split_keywords(conninfo: &str) -> Result<Split, ConninfoError> {
    let mut ssl = SslParams::default();
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = conninfo;
    for word in 1.. {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        let start = conninfo.len() - rest.len();
        let key_end = rest
            .find(|c: char| c == '=' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        // The word is not named: it may be the tail of an unquoted
        // password that holds a space.
        let Some(after_eq) = after_key.strip_prefix('=') else {
            return err(format!(
                "setting {word} of the connection string has no \"=\"; write key=value, \
                 and quote a value that holds spaces: password='a b'"
            ));
        };
        let value_text = after_eq.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let (value, used) = keyword_value(value_text)?;
        rest = &value_text[used..];
        let end = conninfo.len() - rest.len();
        if let Param::Other = take(&mut ssl, key, &value, false)? {
            kept.push(&conninfo[start..end]);
        }
    }
    Ok(Split {
        rest: kept.join(" "),
        ssl,
    })
}

/// One value at the start of `s`: (the value, bytes of `s` it used).
fn keyword_value(s: &str) -> Result<(String, usize), ConninfoError> {
    let mut value = String::new();
    let quoted = s.starts_with('\'');
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '\'' if quoted => return Ok((value, i + 1)),
            c if !quoted && c.is_ascii_whitespace() => return Ok((value, i)),
            c => value.push(c),
        }
    }
    if quoted {
        return err("unterminated quoted value in the connection string");
    }
    Ok((value, s.len()))
}

#[cfg(test)]
mod tests;
