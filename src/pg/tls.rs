//! TLS to Postgres the way libpq does it: which setting applies (the
//! connection string, then `postgres.ssl`, then libpq's environment
//! variables, then libpq's default files), which files are read and what
//! is verified, and the rustls configuration tokio-postgres gets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use super::conninfo::{SslParams, TlsVersion};
use super::files::{client_identity, exists, file_roots, system_roots};
use super::verify::{AcceptAny, Webpki};
use crate::config::{PgSslMode, PostgresSsl};

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The connection string (`postgres.url`).
    Url,
    /// A `postgres.ssl` field.
    Config,
    /// libpq's environment variable.
    Env,
    /// libpq's default file under `~/.postgresql/`.
    Default,
}

/// Which of libpq's three files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Cert,
    Key,
}

impl Role {
    fn param(self) -> &'static str {
        match self {
            Role::Root => "sslrootcert",
            Role::Cert => "sslcert",
            Role::Key => "sslkey",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Role::Root => "postgres.ssl.ca_file",
            Role::Cert => "postgres.ssl.cert_file",
            Role::Key => "postgres.ssl.key_file",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Role::Root => "PGSSLROOTCERT",
            Role::Cert => "PGSSLCERT",
            Role::Key => "PGSSLKEY",
        }
    }

    fn default_name(self) -> &'static str {
        match self {
            Role::Root => "root.crt",
            Role::Cert => "postgresql.crt",
            Role::Key => "postgresql.key",
        }
    }
}

/// A file a setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub path: PathBuf,
    pub role: Role,
    pub origin: Origin,
}

impl Named {
    /// The settings that name this file, for messages.
    pub fn settings(&self) -> String {
        let both = format!("{} / {}", self.role.field(), self.role.param());
        match self.origin {
            Origin::Url | Origin::Config => both,
            Origin::Env => format!("{both}; here from {}", self.role.env()),
            Origin::Default => format!(
                "{both}; here libpq's default ~/.postgresql/{}",
                self.role.default_name()
            ),
        }
    }
}

/// The CA certificates the server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `sslrootcert=system`: the operating system's trust store.
    System,
    File(Named),
}

impl Root {
    /// "in /etc/ssl/ca.crt (postgres.ssl.ca_file / sslrootcert)".
    pub fn describe(&self) -> String {
        match self {
            Root::System => "in the system trust store (sslrootcert=system)".into(),
            Root::File(named) => format!("in {} ({})", named.path.display(), named.settings()),
        }
    }
}

/// libpq's TLS settings once precedence has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: PgSslMode,
    /// `None`: no CA named and no home directory to find the default in.
    pub root: Option<Root>,
    pub cert: Option<Named>,
    pub key: Option<Named>,
    /// Send the host name (SNI), libpq's `sslsni`.
    pub sni: bool,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
    /// `sslpassword` was given (sluice cannot decrypt keys).
    pub sslpassword: bool,
}

impl Settings {
    /// Applies libpq's precedence: the connection string's `url` params,
    /// then the `typed` fields (both at once is a configuration error,
    /// found by validation), then `env` (PGSSLMODE, PGSSLROOTCERT,
    /// PGSSLCERT, PGSSLKEY), then the files under `home`/.postgresql/.
    /// Reads no file.
    pub fn resolve(
        url: &SslParams,
        typed: Option<&PostgresSsl>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<Settings, String> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let file = |role: Role, in_url: &Option<String>, typed: Option<&PathBuf>| {
            let (path, origin) = in_url
                .as_ref()
                .map(|p| (PathBuf::from(p), Origin::Url))
                .or_else(|| typed.map(|p| (p.clone(), Origin::Config)))
                .or_else(|| env(role.env()).map(|p| (PathBuf::from(p), Origin::Env)))
                .or_else(|| {
                    let dir = home?.join(".postgresql");
                    Some((dir.join(role.default_name()), Origin::Default))
                })?;
            Some(Named { path, role, origin })
        };
        let root = file(
            Role::Root,
            &url.sslrootcert,
            typed.and_then(|t| t.ca_file.as_ref()),
        )
        .map(|named| match named.origin {
            Origin::Default => Root::File(named),
            _ if named.path == Path::new("system") => Root::System,
            _ => Root::File(named),
        });
        let mode = match url.sslmode.or(typed.and_then(|t| t.mode)) {
            Some(mode) => mode,
            None => match env("PGSSLMODE") {
                Some(value) => PgSslMode::parse(&value).ok_or_else(|| {
                    format!("PGSSLMODE={value:?} is not an sslmode: use disable, allow, prefer, require, verify-ca or verify-full")
                })?,
                // libpq 16: the system store implies verify-full.
                None if root == Some(Root::System) => PgSslMode::VerifyFull,
                None => PgSslMode::Prefer,
            },
        };
        if root == Some(Root::System) && mode != PgSslMode::VerifyFull {
            return Err(format!(
                "sslmode {} cannot be used with sslrootcert=system (postgres.ssl.ca_file: system): \
                 any CA in the system store would do, so the host name must be checked; use verify-full (libpq refuses it too)",
                mode.as_str()
            ));
        }
        let min_version = url.ssl_min_protocol_version.unwrap_or(TlsVersion::V1_2);
        let max_version = url.ssl_max_protocol_version;
        if let Some(max) = max_version {
            if max < TlsVersion::V1_2 {
                return Err("ssl_max_protocol_version is below TLSv1.2, the oldest version sluice speaks (rustls); use TLSv1.2 or TLSv1.3".into());
            }
            if min_version > max {
                return Err("ssl_min_protocol_version is above ssl_max_protocol_version".into());
            }
        }
        Ok(Settings {
            mode,
            root,
            cert: file(
                Role::Cert,
                &url.sslcert,
                typed.and_then(|t| t.cert_file.as_ref()),
            ),
            key: file(
                Role::Key,
                &url.sslkey,
                typed.and_then(|t| t.key_file.as_ref()),
            ),
            sni: url.sslsni.unwrap_or(true),
            min_version,
            max_version,
            sslpassword: url.sslpassword,
        })
    }
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Not at all (`prefer`/`require` with no CA file), or no TLS.
    None,
    /// It must chain to the CA (`verify-ca`, or a CA file with `prefer`/`require`).
    Chain,
    /// It must chain to the CA and name the host (`verify-full`).
    Full,
}

/// The connector tokio-postgres gets, with the settings behind it.
#[derive(Clone)]
pub struct Tls {
    pub settings: Settings,
    pub verification: Verification,
    pub connector: MakeRustlsConnect,
}

/// `sslmode` as tokio-postgres knows it: it only decides whether TLS is
/// asked for and required; the verifier does the rest.
pub fn tokio_mode(mode: PgSslMode) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode;
    match mode {
        PgSslMode::Disable => SslMode::Disable,
        // tokio-postgres cannot try plaintext first (docs/configuration.md).
        PgSslMode::Allow | PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
    }
}

/// Reads the files `settings` name, as libpq would, and builds the
/// connector. Errors name the setting and the file.
pub fn load(settings: Settings) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    if settings.mode == PgSslMode::Disable {
        // Never used (tokio-postgres does not ask for TLS); reads no file.
        let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny::new(provider)))
            .with_no_client_auth();
        return Ok(Tls {
            settings,
            verification: Verification::None,
            connector: MakeRustlsConnect::new(config),
        });
    }
    let verify = matches!(settings.mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    let roots = match &settings.root {
        None => None,
        Some(Root::System) => Some(system_roots()?),
        Some(Root::File(named)) if exists(&named.path) => Some(file_roots(named)?),
        Some(Root::File(named)) if named.origin == Origin::Config => {
            return Err(format!(
                "{}: {} does not exist",
                named.settings(),
                named.path.display()
            ))
        }
        Some(Root::File(named)) => {
            // libpq: a root file that does not exist is no root file.
            if !verify && named.origin != Origin::Default {
                warn!(file = %named.path.display(), "sslrootcert names no file; the server certificate is not verified (libpq does the same)");
            }
            None
        }
    };
    if verify && roots.is_none() {
        let named = match &settings.root {
            Some(Root::File(named)) => format!("the root certificate file {} does not exist", named.path.display()),
            _ => "no root certificate file is named (and no home directory holds ~/.postgresql/root.crt)".into(),
        };
        return Err(format!(
            "sslmode {} needs the CA certificate: {named}; name a PEM file or `system` in postgres.ssl.ca_file / sslrootcert, or choose a mode that does not verify",
            settings.mode.as_str()
        ));
    }
    let verification = match (settings.mode, &roots) {
        (PgSslMode::VerifyFull, _) => Verification::Full,
        (_, Some(_)) => Verification::Chain,
        (_, None) => Verification::None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        Some(roots) => Arc::new(Webpki::new(
            roots,
            Arc::clone(&provider),
            verification == Verification::Full,
        )?),
        None => Arc::new(AcceptAny::new(Arc::clone(&provider))),
    };
    let versions: Vec<&'static SupportedProtocolVersion> = [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= settings.min_version && settings.max_version.is_none_or(|m| *v <= m))
    .map(|(_, version)| version)
    .collect();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("ssl_min_protocol_version / ssl_max_protocol_version: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_identity(&settings)? {
        Some((cert, chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            format!(
                "{}: the key does not belong to the certificate {}: {e}",
                cert.settings(),
                cert.path.display()
            )
        })?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = settings.sni;
    // What libpq 17 sends; PostgreSQL 17's direct TLS negotiation needs it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Tls {
        settings,
        verification,
        connector: MakeRustlsConnect::new(config),
    })
}

#[cfg(test)]
mod tests;
