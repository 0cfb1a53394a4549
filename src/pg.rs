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

/// Session settings sluice's connections always carry. A worker that
/// vanished mid-transaction (network black hole) must not keep its
/// partition's offset row locked forever: the server ends such sessions.
/// Statement and lock timeouts turn a stuck statement into a retryable error.
fn session_options(cfg: &PostgresConfig) -> String {
    format!(
        "-c idle_in_transaction_session_timeout=60000 -c statement_timeout={} -c lock_timeout={}",
        cfg.statement_timeout.as_millis(),
        cfg.lock_timeout.as_millis()
    )
}

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
        Some(o) if !o.is_empty() => format!("{o} {}", session_options(cfg)),
        _ => session_options(cfg),
    };
    pg.options(&options);
    pg.connect_timeout(cfg.connect_timeout);
    // Keepalives find a dead peer on an idle connection, the user timeout one
    // that stopped acknowledging what sluice sent.
    pg.keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .tcp_user_timeout(cfg.tcp_user_timeout);
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
        let options = pg.get_options().unwrap_or_default();
        assert!(options.starts_with("-c search_path=app "), "{options}");
        assert!(
            options.contains("lock_timeout=2000") && options.contains("statement_timeout=60000")
        );
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
        assert_eq!(pg.get_application_name(), Some("sluice"));
    }
}
