//! sluice's own schema, created and upgraded from the versioned SQL files in
//! `migrations/`. Safe to run from every replica at once: a session advisory
//! lock serialises them, and each version is applied in its own transaction.
//!
//! A schema that is already current is left alone without a single DDL
//! statement, so `sluice run` (with `auto_migrate`) can start as a role that
//! may create nothing: `CREATE SCHEMA IF NOT EXISTS` checks CREATE on the
//! database, and `CREATE TABLE IF NOT EXISTS` CREATE on the schema, before
//! they look for the object (docs/operations.md, "Least privilege: two
//! roles"). The advisory lock needs no privilege.

use tokio_postgres::Client;

use crate::config::quote_ident;

/// (version, name, SQL with `{schema}` standing for the state schema).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "state", include_str!("../migrations/0001_state.sql")),
    (2, "halts", include_str!("../migrations/0002_halts.sql")),
];

/// Applies every pending migration; returns the versions applied now.
pub async fn migrate(
    client: &mut Client,
    state_schema: &str,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let schema = quote_ident(state_schema);
    let lock_key = format!("sluice.migrate.{state_schema}");
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock_key])
        .await?;
    let result = match current(client, state_schema, &schema).await {
        Ok(true) => Ok(Vec::new()),
        Ok(false) => apply(client, &schema).await,
        Err(e) => Err(e),
    };
    // Released even when applying failed, so another replica can try.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock_key])
        .await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

/// Whether every migration is recorded, found with reads alone: the
/// catalog (readable by every role) says whether `schema_migrations`
/// exists, and only then is it read (SELECT on it).
async fn current(
    client: &Client,
    state_schema: &str,
    schema: &str,
) -> Result<bool, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'schema_migrations')",
            &[&state_schema],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(false);
    }
    let done = applied(client, schema).await?;
    Ok(MIGRATIONS.iter().all(|(v, _, _)| done.contains(v)))
}

async fn applied(client: &Client, schema: &str) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

async fn apply(client: &mut Client, schema: &str) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await?;
    let done = applied(client, schema).await?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        let txn = client.transaction().await?;
        txn.batch_execute(&sql.replace("{schema}", schema)).await?;
        txn.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&version, &name],
        )
        .await?;
        txn.commit().await?;
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
