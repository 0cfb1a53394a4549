//! Postgres connections: the fixed-size pool every worker shares.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, SimpleQueryMessage};
use tracing::warn;

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
        let options = pg.get_options().unwrap_or_default();
        assert!(options.starts_with("-c search_path=app "), "{options}");
        assert!(
            options.contains("lock_timeout=2000") && options.contains("statement_timeout=60000")
        );
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));
        assert_eq!(pg.get_application_name(), Some("sluice"));
    }
}
