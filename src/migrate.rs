//! sluice's own schema, created and upgraded from the versioned SQL files in
//! `migrations/`. Safe to run from every replica at once: one transaction
//! takes a transaction-level advisory lock, checks, applies every pending
//! version and commits, so concurrent runs queue on the lock and the later
//! ones find the schema current. A transaction-level lock, not a session
//! one: through a transaction-pooling PgBouncer, a session lock would be
//! taken on one server connection and released (or never) on another; a
//! lock that ends with its transaction holds the same way with and without
//! a pooler (docs/operations.md, "PgBouncer").
//!
//! A schema that is already current is left alone without a single DDL
//! statement, so `sluice run` (with `auto_migrate`) can start as a role that
//! may create nothing: `CREATE SCHEMA IF NOT EXISTS` checks CREATE on the
//! database, and `CREATE TABLE IF NOT EXISTS` CREATE on the schema, before
//! they look for the object (docs/operations.md, "Least privilege: two
//! roles"). The advisory lock needs no privilege.

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use crate::config::quote_ident;

/// (version, name, SQL with `{schema}` standing for the state schema).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "state", include_str!("../migrations/0001_state.sql")),
    (2, "halts", include_str!("../migrations/0002_halts.sql")),
    (
        3,
        "dead_letter_routes",
        include_str!("../migrations/0003_dead_letter_routes.sql"),
    ),
    (
        4,
        "offset_cluster",
        include_str!("../migrations/0004_offset_cluster.sql"),
    ),
];

/// Applies every pending migration; returns the versions applied now.
pub async fn migrate(
    client: &mut Client,
    state_schema: &str,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    migrate_up_to(client, state_schema, i32::MAX).await
}

/// Applies the pending migrations up to version `last`: a schema as an
/// older sluice left it, for the tests of an upgrade.
pub async fn migrate_up_to(
    client: &mut Client,
    state_schema: &str,
    last: i32,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let schema = quote_ident(state_schema);
    let lock_key = format!("sluice.migrate.{state_schema}");
    let txn = client.transaction().await?;
    txn.execute_typed(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[(&lock_key, Type::TEXT)],
    )
    .await?;
    // Read after the lock is held: under READ COMMITTED each statement sees
    // what a run that held the lock before committed.
    let applied = match current(&txn, state_schema, &schema).await? {
        true => Vec::new(),
        false => apply(&txn, &schema, last).await?,
    };
    // A failure above drops the transaction: rolled back, lock released.
    txn.commit().await?;
    Ok(applied)
}

/// Whether every migration is recorded, found with reads alone: the
/// catalog (readable by every role) says whether `schema_migrations`
/// exists, and only then is it read (SELECT on it).
async fn current(
    txn: &Transaction<'_>,
    state_schema: &str,
    schema: &str,
) -> Result<bool, tokio_postgres::Error> {
    let exists: bool = txn
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'schema_migrations')",
            &[(&state_schema, Type::TEXT)],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(false);
    }
    let done = applied(txn, schema).await?;
    Ok(MIGRATIONS.iter().all(|(v, _, _)| done.contains(v)))
}

async fn applied(txn: &Transaction<'_>, schema: &str) -> Result<Vec<i32>, tokio_postgres::Error> {
    txn.query_typed(
        &format!("SELECT version FROM {schema}.schema_migrations"),
        &[],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Every pending version, in order, in the caller's transaction: all of
/// them land or none.
async fn apply(
    txn: &Transaction<'_>,
    schema: &str,
    last: i32,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    txn.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let done = applied(txn, schema).await?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) || version > last {
            continue;
        }
        txn.batch_execute(&sql.replace("{schema}", schema)).await?;
        txn.execute_typed(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[(&version, Type::INT4), (&name, Type::TEXT)],
        )
        .await?;
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_templated() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0);
        }
        for (_, _, sql) in MIGRATIONS {
            assert!(sql.contains("{schema}."));
        }
    }
}
