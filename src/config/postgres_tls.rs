//! The `postgres.ssl` section: TLS to Postgres as typed settings, each the
//! twin of a libpq connection parameter (src/pg/tls.rs applies them), and
//! its validation against the parameters `postgres.url` itself carries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{PostgresConfig, Problem};
use crate::pg::conninfo;

/// libpq's `sslmode`: how much of TLS sluice insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PgSslMode {
    /// No TLS.
    #[serde(rename = "disable")]
    Disable,
    /// libpq tries plaintext first; sluice treats it as `prefer`.
    #[serde(rename = "allow")]
    Allow,
    /// TLS if the server offers it, certificate unchecked.
    #[serde(rename = "prefer")]
    Prefer,
    /// TLS or nothing, certificate unchecked (checked against the CA when a
    /// root certificate is named or found, as libpq does).
    #[serde(rename = "require")]
    Require,
    /// TLS, the certificate must chain to the CA; the host name is not checked.
    #[serde(rename = "verify-ca", alias = "verify_ca")]
    VerifyCa,
    /// TLS, the certificate must chain to the CA and name the host.
    #[serde(rename = "verify-full", alias = "verify_full")]
    VerifyFull,
}

impl PgSslMode {
    /// libpq's spelling (exactly; libpq is case-sensitive here).
    pub fn parse(value: &str) -> Option<PgSslMode> {
        Some(match value {
            "disable" => PgSslMode::Disable,
            "allow" => PgSslMode::Allow,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }
}

/// The `postgres.ssl` section. Each field may instead be written in
/// `postgres.url` as its libpq parameter, not both. Unset fields fall back
/// to libpq's environment variables, then to libpq's default files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSsl {
    /// `disable`, `allow` (treated as `prefer`), `prefer`, `require`,
    /// `verify-ca` or `verify-full`. libpq's `sslmode` (env `PGSSLMODE`).
    /// Default: `prefer`, or `verify-full` when `ca_file` is `system`.
    #[serde(default)]
    pub mode: Option<PgSslMode>,
    /// PEM file of the CA certificate(s) the server's certificate must
    /// chain to, or `system` for the operating system's trust store (then
    /// `mode` must be `verify-full`). libpq's `sslrootcert` (env
    /// `PGSSLROOTCERT`). Default: `~/.postgresql/root.crt` if it exists.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// sluice's client certificate (PEM), for the `cert` authentication
    /// method or `clientcert=verify-full`. libpq's `sslcert` (env
    /// `PGSSLCERT`). Default: `~/.postgresql/postgresql.crt` if it exists.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The private key of the client certificate (PEM, unencrypted; mode
    /// 0600, or 0640 if owned by root). libpq's `sslkey` (env `PGSSLKEY`).
    /// Default: `~/.postgresql/postgresql.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `postgres.ssl` and the SSL parameters of `postgres.url`: every problem
/// the configuration alone shows (the environment is read at connect time).
pub(crate) fn validate(pg: &PostgresConfig, problems: &mut Vec<Problem>) {
    let mut add = |path: &str, message: String| problems.push(Problem::new(path, message));
    let split = match conninfo::split(pg.url.expose()) {
        Ok(split) => split,
        Err(e) => return add("postgres.url", e.to_string()),
    };
    let Some(ssl) = &pg.ssl else {
        // The URL's own combinations (sslrootcert=system with a weak mode).
        if let Err(why) = crate::pg::tls::Settings::resolve(&split.ssl, None, &|_| None, None) {
            add("postgres.url", why);
        }
        return;
    };
    let url = &split.ssl;
    for (field, typed, param, in_url) in [
        ("mode", ssl.mode.is_some(), "sslmode", url.sslmode.is_some()),
        (
            "ca_file",
            ssl.ca_file.is_some(),
            "sslrootcert",
            url.sslrootcert.is_some(),
        ),
        (
            "cert_file",
            ssl.cert_file.is_some(),
            "sslcert",
            url.sslcert.is_some(),
        ),
        (
            "key_file",
            ssl.key_file.is_some(),
            "sslkey",
            url.sslkey.is_some(),
        ),
    ] {
        if typed && in_url {
            add(
                &format!("postgres.ssl.{field}"),
                format!("conflicts with {param} in postgres.url; set one of them"),
            );
        }
    }
    for (field, file) in [
        ("ca_file", &ssl.ca_file),
        ("cert_file", &ssl.cert_file),
        ("key_file", &ssl.key_file),
    ] {
        match file {
            Some(path) if field == "ca_file" && path == Path::new("system") => {}
            Some(path) if path.as_os_str().is_empty() => add(
                &format!("postgres.ssl.{field}"),
                "is empty; name a PEM file or remove the field".into(),
            ),
            Some(path) => {
                if let Err(why) = readable(path) {
                    add(&format!("postgres.ssl.{field}"), why);
                }
            }
            None => {}
        }
    }
    if let Err(why) = crate::pg::tls::Settings::resolve(&split.ssl, Some(ssl), &|_| None, None) {
        add("postgres.ssl", why);
    }
}

/// Files sluice's own fields name must exist when sluice starts (those in
/// the URL follow libpq, which skips a missing one where it may).
fn readable(path: &Path) -> Result<(), String> {
    match std::fs::File::open(path) {
        Ok(_) if path.is_dir() => Err(format!(
            "{} is a directory; name the PEM file",
            path.display()
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(postgres: &str) -> Vec<String> {
        let yaml = format!(
            "kafka: {{ brokers: \"k:9092\", group_id: g }}\npostgres:\n{postgres}\nroutes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n"
        );
        match Config::from_yaml(&yaml, |_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn typed_fields_parse_with_libpq_spellings() {
        let yaml = "kafka: { brokers: \"k:9092\", group_id: g }\npostgres:\n  url: \"postgres://u@db/app\"\n  ssl: { mode: verify-full, ca_file: system }\nroutes: [{ topic: t, table: t, columns: { c: /c } }]\n";
        let config = Config::from_yaml(yaml, |_| None).expect("valid");
        let ssl = config.postgres.ssl.expect("ssl");
        assert_eq!(ssl.mode, Some(super::PgSslMode::VerifyFull));
        assert_eq!(ssl.ca_file.as_deref(), Some(std::path::Path::new("system")));
        assert!(problems("  url: \"postgres://u@db/app\"\n  ssl: { mode: verify_ca }").is_empty());
        let bad = problems("  url: \"postgres://u@db/app\"\n  ssl: { mode: verify }");
        assert!(bad.iter().any(|p| p.contains("verify")), "{bad:?}");
    }

    #[test]
    fn the_same_setting_twice_names_both() {
        let found = problems(
            "  url: \"postgres://u@db/app?sslmode=require&sslrootcert=/a.crt\"\n  ssl: { mode: verify-full, ca_file: /b.crt }",
        );
        let text = found.join("\n");
        assert!(
            text.contains("postgres.ssl.mode: conflicts with sslmode in postgres.url"),
            "{text}"
        );
        assert!(
            text.contains("postgres.ssl.ca_file: conflicts with sslrootcert in postgres.url"),
            "{text}"
        );
        // Different settings in each place are fine.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "").unwrap();
        let fine = problems(&format!(
            "  url: \"postgres://u@db/app?sslmode=verify-ca\"\n  ssl: {{ ca_file: {} }}",
            ca.display()
        ));
        assert!(fine.is_empty(), "{fine:?}");
    }

    #[test]
    fn files_and_modes_are_checked() {
        let text = problems(
            "  url: \"postgres://u@db/app\"\n  ssl: { mode: require, ca_file: system, cert_file: /nonexistent/c.crt }",
        )
        .join("\n");
        assert!(
            text.contains("postgres.ssl.cert_file: cannot read /nonexistent/c.crt"),
            "{text}"
        );
        assert!(text.contains("sslrootcert=system"), "{text}");
        let text = problems("  url: \"postgres://u@db/app?sslrootcert=system&sslmode=verify-ca\"")
            .join("\n");
        assert!(
            text.contains("postgres.url") && text.contains("verify-full"),
            "{text}"
        );
        let text = problems("  url: \"postgres://u@db/app?sslmode=verify_full\"").join("\n");
        assert!(
            text.contains("invalid sslmode \\\"verify_full\\\"")
                || text.contains("invalid sslmode"),
            "{text}"
        );
    }

    #[test]
    fn docs_describe_every_field() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let start = docs
            .find("### `postgres.ssl`")
            .expect("a postgres.ssl section");
        let section = &docs[start..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        for needle in [
            "`ssl.mode`",
            "`ssl.ca_file`",
            "`ssl.cert_file`",
            "`ssl.key_file`",
            "`sslmode`, env `PGSSLMODE`",
            "`sslrootcert`, env `PGSSLROOTCERT`",
            "`sslcert`, env `PGSSLCERT`",
            "`sslkey`, env `PGSSLKEY`",
            "`allow` is `prefer`",
        ] {
            assert!(
                section.contains(needle),
                "the postgres.ssl section lacks {needle}"
            );
        }
    }
}
