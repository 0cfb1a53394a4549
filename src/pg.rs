//! Postgres connections: the fixed-size pool every worker shares.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::{redact_url, PostgresConfig};

#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    #[error("postgres.url {url} is not a valid connection string: {source}")]
    Url {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
}

/// Session settings sluice's connections always carry.
/// A worker that vanished mid-transaction (network black hole) must not keep
/// its partition's offset row locked forever: the server ends such sessions.
const SESSION_OPTIONS: &str = "-c idle_in_transaction_session_timeout=60000";

pub fn connection_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config, PgSetupError> {
    let mut pg =
        tokio_postgres::Config::from_str(cfg.url.expose()).map_err(|source| PgSetupError::Url {
            url: redact_url(cfg.url.expose()),
            source,
        })?;
    if pg.get_application_name().is_none() {
        pg.application_name("sluice");
    }
    let options = match pg.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    pg.options(&options);
    pg.connect_timeout(cfg.connect_timeout);
    pg.keepalives(true).keepalives_idle(Duration::from_secs(30));
    Ok(pg)
}

/// A pool of at most `pool_size` connections, whatever the partition count.
pub fn pool(cfg: &PostgresConfig) -> Result<Pool, PgSetupError> {
    let manager = Manager::from_config(
        connection_config(cfg)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(cfg.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(cfg.connect_timeout))
        .build()?)
}
