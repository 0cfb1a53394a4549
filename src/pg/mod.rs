//! Postgres connections: the fixed-size pool every worker shares, the
//! single connections of `check` and `migrate`, and TLS as libpq does it.
//!
//! - [`conninfo`]: libpq's SSL parameters taken out of the connection
//!   string (tokio-postgres refuses most of them).
//! - [`tls`]: which TLS setting applies (string, `postgres.ssl`,
//!   environment, libpq's default files), the files, the rustls connector.
//! - `files`: the CA, certificate and key files, read as libpq does.
//! - `verify`, `names`: the certificate checks of each `sslmode`.
//! - `diagnose`: a failed connection attempt, in the user's terms.
//! - `said`: what the server said (message, SQLSTATE, detail, hint), for
//!   every Postgres error a user sees.
//! - `settings`: the `SET LOCAL`s of every batch transaction, each tied to
//!   the config field it comes from.
//! - [`metered`]: the pool as partition workers use it, each checkout timed.

pub mod conninfo;
mod diagnose;
mod error;
mod files;
pub mod metered;
mod names;
mod said;
mod settings;
#[cfg(test)]
mod test_pki;
pub mod tls;
mod verify;

pub use metered::MeteredPool;

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, SimpleQueryMessage};
use tracing::warn;

use crate::config::{redact_url, PostgresConfig};
use crate::sink::error::{ErrorClass, SinkError};

pub use error::{migration_refused, PgSetupError};
pub use said::error_text;
pub use settings::{refused_setting, transaction_settings};

/// tokio-postgres' configuration: the connection string without libpq's
/// SSL parameters, `sslmode` as resolved, and sluice's session settings.
/// Reads no file.
pub fn connection_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config, PgSetupError> {
    let (pg, _) = split(cfg)?;
    Ok(pg)
}

/// The connection string parsed, and the TLS settings that apply.
fn split(cfg: &PostgresConfig) -> Result<(tokio_postgres::Config, tls::Settings), PgSetupError> {
    let url = || redact_url(cfg.url.expose());
    let parts = conninfo::split(cfg.url.expose()).map_err(|e| PgSetupError::Conninfo {
        url: url(),
        message: e.to_string(),
    })?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let settings = tls::Settings::resolve(
        &parts.ssl,
        cfg.ssl.as_ref(),
        &|name| std::env::var(name).ok(),
        home.as_deref(),
    )
    .map_err(PgSetupError::Tls)?;
    let mut pg = tokio_postgres::Config::from_str(&parts.rest)
        .map_err(|source| PgSetupError::Url { url: url(), source })?;
    pg.ssl_mode(tls::tokio_mode(settings.mode));
    if pg.get_application_name().is_none() {
        pg.application_name("sluice");
    }
    pg.connect_timeout(cfg.connect_timeout);
    // Keepalives find a dead peer on an idle connection, the user timeout one
    // that stopped acknowledging what sluice sent.
    pg.keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .tcp_user_timeout(cfg.tcp_user_timeout);
    Ok((pg, settings))
}

/// Everything a connection needs: tokio-postgres' configuration and the
/// TLS connector, its files read.
struct Target {
    config: tokio_postgres::Config,
    tls: tls::Tls,
}

fn target(cfg: &PostgresConfig) -> Result<Target, PgSetupError> {
    let (config, settings) = split(cfg)?;
    let tls = tls::load(settings).map_err(PgSetupError::Tls)?;
    Ok(Target { config, tls })
}

impl Target {
    fn explain(&self, error: &tokio_postgres::Error) -> String {
        diagnose::explain(
            error,
            &diagnose::Context {
                settings: &self.tls.settings,
                config: &self.config,
            },
        )
    }
}

/// One connection with the user's settings (TLS included), its connection
/// task spawned; for `check` and `migrate`.
pub async fn connect(cfg: &PostgresConfig) -> Result<Client, PgSetupError> {
    let target = target(cfg)?;
    match target.config.connect(target.tls.connector.clone()).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(error) => Err(PgSetupError::Connect {
            url: redact_url(cfg.url.expose()),
            detail: target.explain(&error),
        }),
    }
}

/// A warning when `client`'s session is not encrypted and the server is
/// not on this machine (every host a unix socket, `localhost` or a
/// loopback address): the rows, and with some authentication methods the
/// password, cross the network readable.
pub async fn unencrypted_warning(cfg: &PostgresConfig, client: &Client) -> Option<String> {
    let (config, settings) = split(cfg).ok()?;
    if is_local(&config) {
        return None;
    }
    let row = client
        .query_typed_opt(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .ok()??;
    if row.try_get::<_, bool>(0).ok()? {
        return None;
    }
    Some(format!(
        "postgres.url: the connection to {} is not encrypted (sslmode {}); rows and credentials cross the network readable. \
         Set sslmode verify-full with sslrootcert (postgres.ssl.mode and ca_file), see docs/operations.md, \"Connecting securely\"",
        redact_url(cfg.url.expose()),
        settings.mode.as_str()
    ))
}

/// Whether every host of `config` is this machine.
fn is_local(config: &tokio_postgres::Config) -> bool {
    let addrs = config.get_hostaddrs();
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback);
    }
    hosts
        .iter()
        .enumerate()
        .all(|(i, host)| match (addrs.get(i), host) {
            (Some(addr), _) => addr.is_loopback(),
            #[cfg(unix)]
            (None, Host::Unix(_)) => true,
            (None, Host::Tcp(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// The pool's failure to open a connection, when retrying cannot fix it
/// (a certificate, TLS, authentication or configuration problem, or a
/// server error that is not retried), explained; `None` otherwise.
pub fn connect_failure(error: &SinkError, cfg: &PostgresConfig) -> Option<PgSetupError> {
    let SinkError::Pool(deadpool_postgres::PoolError::Backend(pg_error)) = error else {
        return None;
    };
    let permanent = diagnose::is_permanent(pg_error)
        || (pg_error.as_db_error().is_some() && error.class() != ErrorClass::Retry);
    if !permanent {
        return None;
    }
    Some(PgSetupError::Connect {
        url: redact_url(cfg.url.expose()),
        detail: explain_connect(pg_error, cfg),
    })
}

/// A pool error with its causes shown and, for a failed connection
/// attempt, the hosts tried and the field that names them (deadpool and
/// tokio-postgres print only "error connecting to server", "db error").
pub fn describe(error: &SinkError, cfg: &PostgresConfig) -> String {
    match error {
        SinkError::Pool(deadpool_postgres::PoolError::Backend(pg_error)) => format!(
            "postgres.url: cannot connect to {}: {}",
            redact_url(cfg.url.expose()),
            explain_connect(pg_error, cfg)
        ),
        other => other.to_string(),
    }
}

fn explain_connect(error: &tokio_postgres::Error, cfg: &PostgresConfig) -> String {
    match split(cfg) {
        Ok((config, settings)) => diagnose::explain(
            error,
            &diagnose::Context {
                settings: &settings,
                config: &config,
            },
        ),
        Err(_) => error_text(error),
    }
}

/// A pool of at most `pool_size` connections, whatever the partition count.
///
/// A connection is checked each time it is taken from the pool:
/// `RecyclingMethod::Fast` alone only asks whether the connection task has
/// ended, which says nothing about the server. After a failover the old
/// primary may stay up read-only with sluice's sessions intact; they would
/// then fail every retry with 25006, and `target_session_attrs=read-write`
/// is only consulted when connecting. So [`writable_check`] turns away a
/// session on a read-only server (an old primary, or a standby, whose
/// sessions are all read-only) and the pool opens a new one, which resolves
/// the connection string afresh. That costs one round trip per checkout
/// (one per batch), and it covers every user of the pool (claims, halts,
/// fence verdicts, whose reads would succeed against the stale old primary),
/// not only the writers, which also drop a connection as soon as it fails
/// that way (`SinkError::discards_connection`).
///
/// Every connection uses the TLS settings (`sslmode`, `postgres.ssl`);
/// the certificate files are read once, here.
pub fn pool(cfg: &PostgresConfig) -> Result<Pool, PgSetupError> {
    let target = target(cfg)?;
    let manager = Manager::from_config(
        target.config,
        target.tls.connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(cfg.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(cfg.connect_timeout))
        .post_recycle(writable_check(cfg.connect_timeout))
        .build()?)
}

/// Rejects a pooled connection whose server no longer accepts writes, or
/// that does not answer within `limit` (deadpool's recycle timeout does not
/// cover hooks). `SHOW transaction_read_only` is the test tokio-postgres
/// itself makes for `target_session_attrs=read-write`, and it follows a
/// reloaded `default_transaction_read_only` in sessions that already exist.
fn writable_check(limit: Duration) -> Hook {
    Hook::async_fn(move |client, _| {
        Box::pin(async move {
            let answer =
                tokio::time::timeout(limit, client.simple_query("SHOW transaction_read_only"))
                    .await
                    .map_err(|_| HookError::message("no answer to the writability check"))?
                    .map_err(HookError::Backend)?;
            let read_only = answer.iter().any(|message| {
                matches!(message, SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
            });
            if read_only {
                warn!("dropping a pooled connection: its server is read-only now (failover?); reconnecting");
                return Err(HookError::message("the server is read-only"));
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use tokio_postgres::config::TargetSessionAttrs;

    #[test]
    fn failover_urls_and_session_settings() {
        let yaml = r#"
kafka: { brokers: "k:9092", group_id: g }
postgres:
  url: "postgres://u:p@db-a:5432,db-b:5433/app?target_session_attrs=read-write&options=-c%20search_path%3Dapp"
  lock_timeout: 2s
routes: [{ topic: t, table: t, columns: { c: /c } }]
"#;
        let config = Config::from_yaml(yaml, |_| None).expect("valid");
        let pg = connection_config(&config.postgres).expect("parses");
        assert_eq!(pg.get_hosts().len(), 2);
        assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        // The user's own options pass through; sluice adds none (PgBouncer
        // refuses the parameter): its settings are SET LOCAL per transaction.
        assert_eq!(pg.get_options(), Some("-c search_path=app"));
        let settings = transaction_settings(&config.postgres);
        assert!(
            settings.contains("SET LOCAL lock_timeout = 2000;")
                && settings.contains("SET LOCAL statement_timeout = 60000;")
                && settings.ends_with("SET LOCAL client_min_messages = warning"),
            "{settings}"
        );
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
        assert_eq!(pg.get_application_name(), Some("sluice"));
        // No sslmode anywhere: libpq's prefer.
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
    }

    fn config(url: &str) -> tokio_postgres::Config {
        url.parse().expect(url)
    }

    #[test]
    fn local_means_every_host_on_this_machine() {
        for url in [
            "postgres://localhost/app",
            "postgres://127.0.0.1:5433/app",
            "postgres://[::1]/app",
            "host=/var/run/postgresql dbname=app",
            "postgres://localhost,127.0.0.2/app",
            "host=db.example.com hostaddr=127.0.0.1",
        ] {
            assert!(is_local(&config(url)), "{url}");
        }
        for url in [
            "postgres://db.example.com/app",
            "postgres://10.0.0.5/app",
            "postgres://localhost,db.example.com/app",
            "host=localhost hostaddr=10.0.0.5",
        ] {
            assert!(!is_local(&config(url)), "{url}");
        }
    }

    #[test]
    fn verify_modes_make_tokio_postgres_require_tls() {
        let yaml = |url: &str| {
            format!(
                "kafka: {{ brokers: \"k:9092\", group_id: g }}\npostgres:\n  url: \"{url}\"\nroutes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n"
            )
        };
        use tokio_postgres::config::SslMode;
        for (url, mode) in [
            (
                "postgres://db/app?sslmode=verify-ca&sslrootcert=/x",
                SslMode::Require,
            ),
            ("postgres://db/app?sslmode=allow", SslMode::Prefer),
            ("host=db sslmode=disable", SslMode::Disable),
        ] {
            let config = Config::from_yaml(&yaml(url), |_| None).expect(url);
            let pg = connection_config(&config.postgres).expect(url);
            assert_eq!(pg.get_ssl_mode(), mode, "{url}");
        }
    }
}
