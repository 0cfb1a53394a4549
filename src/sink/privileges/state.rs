//! The state schema's share of the privilege check: what `sluice run` does
//! with each of sluice's own tables (src/offsets.rs, src/sink/dead_letters.rs,
//! src/migrate.rs), checked as table privileges (the documented grants are
//! on whole tables).

use tokio_postgres::GenericClient;

use super::{default_sequences, find, usage_problem, Privilege};
use crate::config::{Config, Problem};

/// The state schema's tables, what sluice does with each, and why.
pub(super) fn state_needs(
    config: &Config,
) -> Vec<(&'static str, &'static [Privilege], &'static str)> {
    use Privilege::*;
    let mut needs = vec![
        (
            "offsets",
            &[Select, Insert, Update][..],
            "partitions are claimed, read and advanced in it",
        ),
        (
            "halts",
            &[Select, Insert, Update, Delete][..],
            "a halt is recorded with INSERT ... ON CONFLICT DO UPDATE, a claim deletes it, \
             sluice check reads it",
        ),
        (
            "dead_letters",
            &[Insert][..],
            "dead letters are inserted into it",
        ),
    ];
    if config.postgres.auto_migrate {
        needs.push((
            "schema_migrations",
            &[Select][..],
            "postgres.auto_migrate reads it at start-up to see that the schema is current; \
             or set postgres.auto_migrate: false",
        ));
    }
    needs
}

/// The privilege problems on the state schema (`postgres.state_schema`).
/// Tables not created yet are skipped: `sluice run` migrates before it
/// plans, so only `check` meets a missing schema, and says whether
/// `auto_migrate` could create it (without `auto_migrate`, check.rs reports
/// the missing offsets table).
pub async fn check_state(
    client: &impl GenericClient,
    config: &Config,
) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let schema = &config.postgres.state_schema;
    let path = "postgres.state_schema";
    let mut problems = Vec::new();
    if config.postgres.auto_migrate {
        problems.extend(uncreatable(client, schema, path).await?);
    }
    let mut usage_reported = false;
    for (name, privileges, why) in state_needs(config) {
        let Some(found) = find(client, schema, name).await? else {
            continue;
        };
        if !found.schema_usage && !usage_reported {
            usage_reported = true;
            problems.push(usage_problem(
                path,
                &found,
                "its tables are named through it",
            ));
        }
        let mut lacking = Vec::new();
        for privilege in privileges {
            let granted: bool = client
                .query_one(
                    "SELECT has_table_privilege($1::oid, $2::text)",
                    &[&found.oid, &privilege.as_str()],
                )
                .await?
                .try_get(0)?;
            if !granted {
                lacking.push(privilege.as_str());
            }
        }
        if !lacking.is_empty() {
            let (role, table, list) = (&found.role, &found.shown, lacking.join(", "));
            problems.push(Problem {
                path: path.to_owned(),
                message: format!(
                    "role {role} lacks {list} on table {table} ({why}); grant it: \
                     GRANT {list} ON {table} TO {role}"
                ),
            });
        }
        // dead_letters.id is a bigserial: every dead letter calls nextval.
        let why = "every row inserted into it calls it";
        for message in default_sequences(client, &found, &[], why).await? {
            problems.push(Problem {
                path: path.to_owned(),
                message,
            });
        }
    }
    Ok(problems)
}

/// A state schema that does not exist yet, which `auto_migrate` would
/// create at start-up but the role may not (CREATE on the database).
async fn uncreatable(
    client: &impl GenericClient,
    schema: &str,
    path: &str,
) -> Result<Option<Problem>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
                    has_database_privilege(current_database(), 'CREATE'), \
                    quote_ident(current_database()), quote_ident(current_user)",
            &[&schema],
        )
        .await?;
    let (exists, create): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if exists || create {
        return Ok(None);
    }
    let (database, role): (String, String) = (row.try_get(2)?, row.try_get(3)?);
    Ok(Some(Problem {
        path: path.to_owned(),
        message: format!(
            "schema {schema} does not exist, and role {role} lacks CREATE on database \
             {database}, which auto_migrate needs to create it at start-up; run \
             `sluice migrate` as the owner role first (docs/operations.md, \"Least \
             privilege: two roles\"), or grant it: GRANT CREATE ON DATABASE {database} TO {role}"
        ),
    }))
}
