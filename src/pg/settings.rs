//! The settings every batch transaction starts with, each tied to the
//! config field it comes from, so that a value the server refuses is
//! named under that field at start-up (and by `check`), not discovered by
//! the first batch.

use tokio_postgres::Transaction;

use super::{error_text, PgSetupError};
use crate::config::PostgresConfig;

/// Each `SET LOCAL` and the config field its value comes from (`None`:
/// sluice's own fixed value).
fn settings(cfg: &PostgresConfig) -> [(Option<&'static str>, String); 4] {
    [
        (
            Some("postgres.statement_timeout"),
            format!(
                "SET LOCAL statement_timeout = {}",
                cfg.statement_timeout.as_millis()
            ),
        ),
        (
            Some("postgres.lock_timeout"),
            format!("SET LOCAL lock_timeout = {}", cfg.lock_timeout.as_millis()),
        ),
        (
            None,
            "SET LOCAL idle_in_transaction_session_timeout = 60000".into(),
        ),
        (None, "SET LOCAL client_min_messages = warning".into()),
    ]
}

/// The settings every batch transaction starts with, as `SET LOCAL` (they
/// end with the transaction). A worker that vanished mid-transaction
/// (network black hole) must not keep its partition's offset row locked
/// forever: the server ends such sessions. Statement and lock timeouts turn
/// a stuck statement into a retryable error. NOTICEs are not sent:
/// tokio-postgres logs each at INFO, and the staged COPY's `CREATE TEMP
/// TABLE IF NOT EXISTS` says "already exists, skipping" on every batch.
///
/// Not startup parameters (`options=-c ...`): PgBouncer refuses the
/// `options` parameter ("unsupported startup parameter"), and a session
/// `SET` would stay on a server connection that a transaction pooler hands
/// to other clients. `SET LOCAL` in the transaction works the same with and
/// without a pooler; the statements outside batch transactions (claims,
/// halts) are bounded on sluice's side (3 x statement_timeout per attempt).
pub fn transaction_settings(cfg: &PostgresConfig) -> String {
    settings(cfg).map(|(_, statement)| statement).join("; ")
}

/// Tries each setting in `txn`, one statement at a time so that a refusal
/// names its field: `Some` when the server refuses one (the transaction is
/// then aborted; roll it back), `Err` when the statement did not reach it.
///
/// Without this a value the server refuses (SQLSTATE 22023, class 22)
/// would first fail a batch, whose error class 22 means "a record's data".
pub async fn refused_setting(
    txn: &Transaction<'_>,
    cfg: &PostgresConfig,
) -> Result<Option<PgSetupError>, tokio_postgres::Error> {
    for (field, statement) in settings(cfg) {
        match txn.batch_execute(&statement).await {
            Ok(()) => {}
            Err(error) if error.as_db_error().is_some() => {
                return Ok(Some(PgSetupError::Setting {
                    // sluice's own values: the server sluice connects to.
                    field: field.unwrap_or("postgres.url"),
                    detail: error_text(&error),
                    statement,
                }));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}
