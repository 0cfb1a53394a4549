//! libpq's host-name check, consulted by `verify-full` after rustls' own
//! check failed. rustls follows RFC 6125 and reads names only from the
//! subject alternative names; libpq falls back to the subject's Common
//! Name when the certificate has no alternative name of the host's type
//! (DNS for a name, IP for an address). Certificates made the way the
//! PostgreSQL manual shows (`openssl req -x509 -subj "/CN=db.example.com"`)
//! carry no alternative names at all, so without this a `verify-full` URL
//! that psql accepts would fail in sluice.
//!
//! Only the few DER structures needed are read: the subject's first
//! Common Name and the dNSName / iPAddress entries of subjectAltName.

use std::net::IpAddr;

use rustls::pki_types::ServerName;

/// Whether libpq's `verify-full` accepts `cert` (DER) for `server_name`.
pub fn libpq_accepts(cert: &[u8], server_name: &ServerName<'_>) -> bool {
    let host = server_name.to_str();
    let host_ip: Option<IpAddr> = match server_name {
        ServerName::IpAddress(ip) => Some(IpAddr::from(*ip)),
        _ => host.parse().ok(),
    };
    let Some(parts) = parse(cert) else {
        return false;
    };
    let mut check_cn = true;
    for san in &parts.sans {
        match *san {
            San::Dns(name) => {
                check_cn &= host_ip.is_some();
                if name_matches(name, &host) {
                    return true;
                }
            }
            San::Ip(bytes) => {
                check_cn &= host_ip.is_none();
                if host_ip.is_some_and(|ip| ip_bytes(ip) == bytes) {
                    return true;
                }
            }
        }
    }
    check_cn && parts.common_name.is_some_and(|cn| name_matches(cn, &host))
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// libpq's comparison: case-insensitive, or a leading `*.` standing for
/// exactly one label (no dot), never for the whole name.
fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.contains('\0') {
        return false;
    }
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    if !suffix.starts_with('.') || suffix.len() < 2 || pattern.len() > host.len() {
        return false;
    }
    let cut = host.len() - suffix.len();
    host.is_char_boundary(cut)
        && host[cut..].eq_ignore_ascii_case(suffix)
        && !host[..cut].contains('.')
}

#[derive(Debug, PartialEq, Eq)]
enum San<'a> {
    Dns(&'a str),
    Ip(&'a [u8]),
}

#[derive(Debug, Default)]
struct Parts<'a> {
    common_name: Option<&'a str>,
    sans: Vec<San<'a>>,
}

/// A DER reader over a run of TLVs (single-byte tags, definite lengths).
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let tag = *self.0.first()?;
        let first = *self.0.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..count {
                len = (len << 8) | usize::from(*self.0.get(2 + i)?);
            }
            (len, 2 + count)
        };
        let content = self.0.get(header..header.checked_add(len)?)?;
        self.0 = &self.0[header + len..];
        Some((tag, content))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (found, content) = self.next()?;
        (found == tag).then_some(content)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

fn parse(der: &[u8]) -> Option<Parts<'_>> {
    let mut tbs = Der(Der(Der(der).expect(SEQUENCE)?).expect(SEQUENCE)?);
    if tbs.0.first() == Some(&0xa0) {
        tbs.next()?; // version
    }
    tbs.expect(0x02)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let subject = tbs.expect(SEQUENCE)?;
    tbs.expect(SEQUENCE)?; // subjectPublicKeyInfo
    let mut parts = Parts {
        common_name: common_name(subject),
        sans: Vec::new(),
    };
    while let Some((tag, content)) = tbs.next() {
        if tag != 0xa3 {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let mut extensions = Der(Der(content).expect(SEQUENCE)?);
        while let Some(extension) = extensions.expect(SEQUENCE) {
            let mut extension = Der(extension);
            let oid = extension.expect(0x06)?;
            if extension.0.first() == Some(&0x01) {
                extension.next()?; // critical
            }
            let value = extension.expect(0x04)?;
            if oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            let mut names = Der(Der(value).expect(SEQUENCE)?);
            while let Some((tag, name)) = names.next() {
                match tag {
                    0x82 => parts.sans.push(San::Dns(std::str::from_utf8(name).ok()?)),
                    0x87 => parts.sans.push(San::Ip(name)),
                    _ => {}
                }
            }
        }
    }
    Some(parts)
}

/// The first Common Name of a Name, if it is text.
fn common_name(subject: &[u8]) -> Option<&str> {
    let mut rdns = Der(subject);
    while let Some(rdn) = rdns.expect(SET) {
        let mut attributes = Der(rdn);
        while let Some(attribute) = attributes.expect(SEQUENCE) {
            let mut attribute = Der(attribute);
            if attribute.expect(0x06)? != OID_COMMON_NAME {
                continue;
            }
            // UTF8String, PrintableString, TeletexString, IA5String.
            let (tag, value) = attribute.next()?;
            return match tag {
                0x0c | 0x13 | 0x14 | 0x16 => std::str::from_utf8(value).ok(),
                _ => None,
            };
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(name_matches("db.example.com", "DB.Example.com"));
        assert!(name_matches("*.example.com", "db.example.com"));
        assert!(!name_matches("*.example.com", "a.db.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*", "localhost"));
        assert!(!name_matches("db*.example.com", "db1.example.com"));
        assert!(!name_matches("db.example.com\0.evil", "db.example.com"));
        assert!(name_matches("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn truncated_or_foreign_der_is_refused_not_a_panic() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x04, 0x01, 0x00],
        ] {
            assert!(parse(bytes).is_none());
        }
    }
}
