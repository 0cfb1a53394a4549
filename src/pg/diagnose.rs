//! What a failed connection attempt means, in the user's terms: a
//! certificate problem names the host and the CA file (and the settings
//! that name it), a server that wants TLS says which setting to change,
//! an authentication failure says so, a refused connection names the host
//! and port with the OS error. tokio-postgres' own Display shows only the
//! error's kind ("db error", "error performing TLS handshake").

use std::error::Error as StdError;
use std::io;

use rustls::{AlertDescription, CertificateError};
use tokio_postgres::config::Host;

use super::said;
use super::tls::Settings;
use super::verify::CertFailure;
use crate::config::PgSslMode;

/// What the explanation needs to know about the attempt.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub config: &'a tokio_postgres::Config,
}

/// The rustls error inside a tokio-postgres TLS error (tokio-rustls
/// wraps it in an io::Error, whose `source()` skips it).
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn certificate_failure(error: &rustls::Error) -> Option<(Option<&str>, &CertificateError)> {
    let rustls::Error::InvalidCertificate(error) = error else {
        return None;
    };
    if let CertificateError::Other(other) = error {
        if let Some(failure) = other.0.downcast_ref::<CertFailure>() {
            return Some((Some(&failure.host), &failure.error));
        }
    }
    Some((None, error))
}

/// tokio-postgres' words when `sslmode=require` meets a server without TLS.
fn server_refused_tls(error: &tokio_postgres::Error) -> bool {
    error
        .source()
        .is_some_and(|s| s.to_string() == "server does not support TLS")
}

/// Whether retrying cannot help: a certificate, TLS, authentication or
/// configuration problem rather than a server that is down or busy.
pub fn is_permanent(error: &tokio_postgres::Error) -> bool {
    if server_refused_tls(error) {
        return true;
    }
    if let Some(tls) = rustls_error(error) {
        return !matches!(
            tls,
            rustls::Error::FailedToGetCurrentTime | rustls::Error::FailedToGetRandomBytes
        );
    }
    let kind = error.to_string();
    kind == "authentication error" || kind == "invalid configuration"
}

/// A connection error as a sentence: what failed, where, and what to change.
pub fn explain(error: &tokio_postgres::Error, cx: &Context<'_>) -> String {
    if server_refused_tls(error) {
        return format!(
            "the server at {} does not accept TLS (its `ssl` setting is off), but sslmode {} requires it; \
             turn ssl on at the server, or change postgres.ssl.mode / sslmode",
            all_hosts(cx.config),
            cx.settings.mode.as_str()
        );
    }
    if let Some(tls) = rustls_error(error) {
        return match certificate_failure(tls) {
            Some((host, cert)) => certificate(host, cert, cx),
            None => handshake(tls, cx),
        };
    }
    if let Some(db) = error.as_db_error() {
        return server_error(db, cx);
    }
    if let Some(os) = said::io_cause(error) {
        return unreachable(os, cx.config);
    }
    if password_missing(error) {
        let user = cx.config.get_user().unwrap_or("?");
        return format!(
            "the server at {} asks for the password of user {user}, and postgres.url has none; \
             write it in, like postgres://{user}:${{PG_PASSWORD}}@host/db",
            all_hosts(cx.config)
        );
    }
    said::error_text(error)
}

/// tokio-postgres' words when the server wants a password and the
/// connection string has none ("invalid configuration: password missing").
fn password_missing(error: &tokio_postgres::Error) -> bool {
    error
        .source()
        .is_some_and(|s| s.to_string() == "password missing")
}

/// A connection attempt the network or OS refused: where sluice tried,
/// and the OS's words ("Connection refused", "No route to host", a name
/// that does not resolve). tokio-postgres tries every host in turn and
/// keeps the last host's error.
fn unreachable(os: &io::Error, config: &tokio_postgres::Config) -> String {
    let hosts = all_hosts(config);
    match config.get_hosts().len() {
        0 | 1 => format!("error connecting to server {hosts}: {os}"),
        _ => format!(
            "error connecting to server: none of {hosts} answered (the last one tried: {os})"
        ),
    }
}

fn certificate(host: Option<&str>, error: &CertificateError, cx: &Context<'_>) -> String {
    let whose = match host {
        Some(host) => format!("the server certificate of {}", host_port(cx.config, host)),
        None => format!("the server certificate of {}", all_hosts(cx.config)),
    };
    let ca = cx
        .settings
        .root
        .as_ref()
        .map_or_else(|| "in the CA file".to_owned(), |root| root.describe());
    let what = match error {
        CertificateError::UnknownIssuer => format!("is not signed by a CA {ca}"),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match error {
                CertificateError::NotValidForNameContext { presented, .. }
                    if !presented.is_empty() =>
                {
                    let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            format!(
                "is not valid for host {}{names}; connect by a name the certificate lists, \
                 or use sslmode verify-ca to check the CA only",
                host.unwrap_or("sluice connected to")
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (is this machine's clock right?)".into()
        }
        CertificateError::Revoked => "has been revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not meant for a TLS server (its extended key usage)".into()
        }
        other => format!("is not acceptable: {other} (checked against the CA {ca})"),
    };
    format!("TLS certificate problem: {whose} {what}")
}

/// rustls lists presented names as `DnsName("db")`, `IpAddress(10.0.0.1)`.
fn plain_name(presented: &str) -> &str {
    match (presented.find('('), presented.rfind(')')) {
        (Some(open), Some(close)) if open < close => presented[open + 1..close].trim_matches('"'),
        _ => presented,
    }
}

fn handshake(error: &rustls::Error, cx: &Context<'_>) -> String {
    let hosts = all_hosts(cx.config);
    let client = cx.settings.cert.as_ref().filter(|c| c.path.exists());
    match error {
        rustls::Error::AlertReceived(alert) => {
            let about_client = matches!(
                alert,
                AlertDescription::BadCertificate
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateRequired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateExpired
                    | AlertDescription::AccessDenied
                    | AlertDescription::DecryptError
            );
            let hint = match client {
                Some(cert) if about_client => format!(
                    ": it did not accept the client certificate {} ({}); is it signed by the CA in the server's ssl_ca_file?",
                    cert.path.display(),
                    cert.settings()
                ),
                None if *alert == AlertDescription::CertificateRequired => {
                    ": it requires a client certificate; set postgres.ssl.cert_file and key_file (sslcert, sslkey)".into()
                }
                _ => String::new(),
            };
            format!("TLS certificate problem: the server at {hosts} ended the handshake with alert {alert:?}{hint}")
        }
        rustls::Error::PeerIncompatible(why) => format!(
            "TLS problem: the server at {hosts} and sluice share no TLS version or cipher ({why:?}); sluice speaks TLS 1.2 and 1.3"
        ),
        other => format!("TLS problem with the server at {hosts}: {other}"),
    }
}

fn server_error(db: &tokio_postgres::error::DbError, cx: &Context<'_>) -> String {
    let said = said::server_said(db);
    let user = cx.config.get_user().unwrap_or("?");
    let code = db.code().code();
    let plaintext = cx.settings.mode == PgSslMode::Disable;
    if code == "28000" && plaintext && db.message().contains("pg_hba.conf") {
        return format!(
            "the server requires TLS: pg_hba.conf accepts user {user} only over TLS (hostssl), and sslmode disable sent none; \
             set sslmode verify-full with sslrootcert (postgres.ssl.mode and ca_file). The server said: {said}"
        );
    }
    if code == "28000" && db.message().contains("certificate") {
        let fix = match cx.settings.cert.as_ref().filter(|c| c.path.exists()) {
            Some(cert) => format!(
                "the client certificate sent, {} ({}), was not accepted: its CN must be the user name ({user}) and the server's ssl_ca_file must hold its CA",
                cert.path.display(),
                cert.settings()
            ),
            None => "no client certificate was sent; set postgres.ssl.cert_file and key_file (sslcert, sslkey)".into(),
        };
        return format!("TLS client certificate problem: the server wants a certificate for user {user}, and {fix}. The server said: {said}");
    }
    if code == "28P01" {
        return format!(
            "authentication failed for user {user}: check the password in postgres.url. The server said: {said}"
        );
    }
    said
}

/// `host:port` for a host of the connection string.
fn host_port(config: &tokio_postgres::Config, host: &str) -> String {
    let ports = config.get_ports();
    let index = config
        .get_hosts()
        .iter()
        .position(|h| matches!(h, Host::Tcp(name) if name == host));
    let port = match (index, ports) {
        (_, [only]) => *only,
        (Some(i), ports) => ports.get(i).copied().unwrap_or(5432),
        (None, _) => 5432,
    };
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn all_hosts(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => host_port(config, name),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    hosts.join(", ")
}
