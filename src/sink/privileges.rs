//! What the role sluice connects as may do, checked before the first write:
//! every privilege the statements of a route need on its table, and those
//! of the state schema's tables, each missing one named with its config path
//! and the GRANT that fixes it. Called by `plan_writers`, so `sluice check`
//! reports exactly what start-up refuses to run without.
//!
//! What each statement needs (PostgreSQL's rules, measured on 15; the table
//! is in docs/operations.md, "Least privilege: two roles"):
//! - COPY or `INSERT ... VALUES` into the target: INSERT on the mapped
//!   columns. A column sluice does not map takes its default, and a default
//!   that calls `nextval` (serial) needs USAGE on that sequence; identity
//!   columns need nothing.
//! - `ON CONFLICT DO NOTHING` without a conflict target (append with a
//!   `key`): nothing more.
//! - `ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c WHERE t.v < EXCLUDED.v`
//!   (upsert): SELECT on the key (the arbiter), on every column read through
//!   EXCLUDED and on the version, so on every mapped column; UPDATE on the
//!   columns it sets (the non-key ones).
//! - `DELETE ... WHERE (key) IN (...)` or `DELETE ... USING <stage>`
//!   (`delete_on_tombstone`): DELETE, and SELECT on the key.
//! - The stage of a COPY with ON CONFLICT (`CREATE TEMP TABLE ... AS SELECT
//!   ... FROM <target> WITH NO DATA`): TEMPORARY on the database; WITH NO
//!   DATA reads no row, so it needs no SELECT.
//! - Every statement names the table: USAGE on its schema.
//!
//! Privileges are read with the catalog functions on OIDs
//! (`has_table_privilege(oid, ...)`): their text forms look the name up,
//! and that fails outright without USAGE on the schema.

use tokio_postgres::GenericClient;

use super::catalog::CatalogTable;
use crate::config::{Mode, Problem, RouteConfig, TableName, WriteMethod};

mod state;
pub use state::check_state;

/// A table privilege sluice's statements use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        }
    }
}

/// One privilege a route needs on its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub privilege: Privilege,
    /// The columns it is needed on (a column grant suffices); empty: on the
    /// table (DELETE has no column form).
    pub columns: Vec<String>,
    /// Which statement needs it, for the message.
    pub why: &'static str,
}

/// What a route's statements need, besides USAGE on the table's schema and
/// on the sequences of the defaults it leaves to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteNeeds {
    pub table: Vec<Need>,
    /// The route stages rows in a temporary table (TEMPORARY on the database).
    pub temporary: bool,
}

/// Derives what `route` needs from how `writer::TableWriter` writes it;
/// `existing` are the table's columns (a mapped column that does not exist
/// is `plan_route`'s problem, not a privilege).
pub fn route_needs(route: &RouteConfig, existing: &[&str]) -> RouteNeeds {
    let mapped: Vec<String> = route
        .columns
        .keys()
        .filter(|c| existing.contains(&c.as_str()))
        .cloned()
        .collect();
    let key = route.key.as_deref().unwrap_or_default();
    let mut table = vec![Need {
        privilege: Privilege::Insert,
        columns: mapped.clone(),
        why: "every record is written with COPY or INSERT",
    }];
    if route.mode == Mode::Upsert {
        table.push(Need {
            privilege: Privilege::Select,
            columns: mapped.clone(),
            why: "mode upsert reads the key, the version and, through EXCLUDED, the new \
                  values in INSERT ... ON CONFLICT",
        });
        let set: Vec<String> = mapped
            .iter()
            .filter(|c| !key.contains(c))
            .cloned()
            .collect();
        if !set.is_empty() {
            table.push(Need {
                privilege: Privilege::Update,
                columns: set,
                why: "mode upsert updates the non-key columns with ON CONFLICT DO UPDATE",
            });
        }
        if route.delete_on_tombstone {
            table.push(Need {
                privilege: Privilege::Delete,
                columns: Vec::new(),
                why: "delete_on_tombstone deletes rows by key",
            });
        }
    }
    // As in TableWriter::new: a COPY whose statement has an ON CONFLICT
    // tail goes through a stage.
    let conflicts = route.mode == Mode::Upsert || !key.is_empty();
    RouteNeeds {
        table,
        temporary: route.write_method == WriteMethod::Copy && conflicts,
    }
}

/// A relation as the checks address it.
struct Found {
    oid: u32,
    /// `schema.name`, quoted where SQL needs it (by the server's own
    /// `quote_ident`, which knows the reserved words).
    shown: String,
    schema: String,
    schema_usage: bool,
    role: String,
}

async fn find(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Option<Found>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                    quote_ident(n.nspname), has_schema_privilege(n.oid, 'USAGE'), \
                    quote_ident(current_user) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await?;
    row.map(|r| {
        Ok(Found {
            oid: r.try_get(0)?,
            shown: r.try_get(1)?,
            schema: r.try_get(2)?,
            schema_usage: r.try_get(3)?,
            role: r.try_get(4)?,
        })
    })
    .transpose()
}

fn usage_problem(path: &str, found: &Found, why: &str) -> Problem {
    Problem {
        path: path.to_owned(),
        message: format!(
            "role {role} lacks USAGE on schema {schema} ({why}); grant it: \
             GRANT USAGE ON SCHEMA {schema} TO {role}",
            role = found.role,
            schema = found.schema,
        ),
    }
}

/// The privilege problems of route `index` on its existing `table`.
pub async fn check_route(
    client: &impl GenericClient,
    index: usize,
    route: &RouteConfig,
    table: &TableName,
    catalog: &CatalogTable,
) -> Result<Vec<Problem>, tokio_postgres::Error> {
    let Some(found) = find(client, &table.schema, &table.name).await? else {
        return Ok(Vec::new());
    };
    let existing: Vec<&str> = catalog.columns.iter().map(|c| c.name.as_str()).collect();
    let needs = route_needs(route, &existing);
    let path = format!("routes[{index}].table");
    let mut problems = Vec::new();
    if !found.schema_usage {
        problems.push(usage_problem(
            &path,
            &found,
            "every statement names the table",
        ));
    }
    for need in &needs.table {
        if let Some(message) = missing(client, &found, need).await? {
            problems.push(Problem {
                path: path.clone(),
                message,
            });
        }
    }
    let mapped: Vec<String> = route.columns.keys().cloned().collect();
    problems.extend(
        default_sequences(client, &found, &mapped, "no mapping fills it")
            .await?
            .into_iter()
            .map(|message| Problem {
                path: path.clone(),
                message,
            }),
    );
    if needs.temporary {
        let row = client
            .query_one(
                "SELECT has_database_privilege(current_database(), 'TEMPORARY'), \
                        quote_ident(current_database())",
                &[],
            )
            .await?;
        let (granted, database): (bool, String) = (row.try_get(0)?, row.try_get(1)?);
        if !granted {
            problems.push(Problem {
                path: format!("routes[{index}].write_method"),
                message: format!(
                    "role {role} lacks TEMPORARY on database {database} (write_method copy \
                     with {why} stages rows in a temporary table; write_method insert does \
                     not); grant it: GRANT TEMPORARY ON DATABASE {database} TO {role}",
                    role = found.role,
                    why = if route.mode == Mode::Upsert {
                        "mode upsert"
                    } else {
                        "a key"
                    },
                ),
            });
        }
    }
    Ok(problems)
}

/// The message for `need` when the role lacks it, `None` when it holds it.
async fn missing(
    client: &impl GenericClient,
    found: &Found,
    need: &Need,
) -> Result<Option<String>, tokio_postgres::Error> {
    let privilege = need.privilege.as_str();
    let (role, table) = (&found.role, &found.shown);
    if need.columns.is_empty() {
        let granted: bool = client
            .query_one(
                "SELECT has_table_privilege($1::oid, $2::text)",
                &[&found.oid, &privilege],
            )
            .await?
            .try_get(0)?;
        return Ok((!granted).then(|| {
            format!(
                "role {role} lacks {privilege} on table {table} ({}); grant it: \
                 GRANT {privilege} ON {table} TO {role}",
                need.why
            )
        }));
    }
    // A grant on the table covers every column: has_column_privilege is
    // true either way.
    let lacking: Vec<String> = client
        .query_one(
            "SELECT coalesce(array_agg(quote_ident(col) ORDER BY ord), '{}') \
             FROM unnest($2::text[]) WITH ORDINALITY AS u(col, ord) \
             WHERE NOT has_column_privilege($1::oid, col, $3::text)",
            &[&found.oid, &need.columns, &privilege],
        )
        .await?
        .try_get(0)?;
    if lacking.is_empty() {
        return Ok(None);
    }
    let list = lacking.join(", ");
    Ok(Some(if lacking.len() == need.columns.len() {
        format!(
            "role {role} lacks {privilege} on table {table} ({}, on columns {list}); grant it: \
             GRANT {privilege} ON {table} TO {role}",
            need.why
        )
    } else {
        format!(
            "role {role} lacks {privilege} on columns {list} of table {table} ({}); grant it: \
             GRANT {privilege} ({list}) ON {table} TO {role}",
            need.why
        )
    }))
}

/// Messages for the sequences that defaults of columns not in `mapped` call
/// (`nextval`, as a serial column does) and the role may not use. The
/// default's dependency in `pg_depend` finds them whatever their names.
async fn default_sequences(
    client: &impl GenericClient,
    found: &Found,
    mapped: &[String],
    why: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT quote_ident(a.attname), quote_ident(sn.nspname) || '.' || quote_ident(s.relname) \
             FROM pg_attrdef d \
             JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum \
                                 AND NOT a.attisdropped \
             JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid \
                                AND dep.refclassid = 'pg_class'::regclass \
             JOIN pg_class s ON s.oid = dep.refobjid \
             JOIN pg_namespace sn ON sn.oid = s.relnamespace \
             WHERE d.adrelid = $1::oid AND NOT (a.attname::text = ANY ($2::text[])) \
               AND CASE WHEN s.relkind = 'S' \
                   THEN NOT (has_sequence_privilege(s.oid, 'USAGE') \
                             OR has_sequence_privilege(s.oid, 'UPDATE')) \
                   ELSE false END \
             ORDER BY 1, 2",
            &[&found.oid, &mapped],
        )
        .await?;
    let role = &found.role;
    rows.iter()
        .map(|r| {
            let (column, sequence): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            Ok(format!(
                "role {role} lacks USAGE on sequence {sequence}, which the default of column \
                 {column} of {table} calls ({why}); grant it: \
                 GRANT USAGE ON SEQUENCE {sequence} TO {role}",
                table = found.shown
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
