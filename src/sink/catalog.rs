//! Reads target tables from the Postgres catalog and plans how each route's
//! columns are written: which column, which source, which type.

use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

use super::coerce::{ColType, ColumnSpec};
use crate::config::{quote_ident, ColumnSource, Mode, Problem, RouteConfig, TableName};

/// One column of a target table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    /// The column's type, or a domain's base type.
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    /// A default fills it when no mapping does (a column default, an
    /// identity, or its domain's default).
    pub has_default: bool,
    /// As Postgres would print it, for messages.
    pub type_name: String,
}

/// A target table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// In table order.
    pub columns: Vec<CatalogColumn>,
    /// The column sets of its unique indexes (sorted names), which
    /// `ON CONFLICT (key)` can use.
    pub unique_keys: Vec<Vec<String>>,
    /// `CREATE UNLOGGED TABLE`: emptied by crash recovery.
    pub unlogged: bool,
}

/// The table, or `None` when it does not exist.
pub async fn read_table(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<CatalogTable>, tokio_postgres::Error> {
    let Some(columns) = read_columns(client, table).await? else {
        return Ok(None);
    };
    let unique_keys = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname::text) \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique \
               AND i.indpred IS NULL AND i.indexprs IS NULL \
             GROUP BY i.indexrelid",
            &[&table.schema, &table.name],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let unlogged = client
        .query_one(
            "SELECT c.relpersistence = 'u' FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await?
        .try_get(0)?;
    Ok(Some(CatalogTable {
        columns,
        unique_keys,
        unlogged,
    }))
}

/// The target is missing: the problem, naming the other schemas that hold a
/// table of that name. The usual cause is Postgres' default `search_path`
/// (`"$user", public`): with a role and a state schema both called
/// `sluice`, an unqualified `CREATE TABLE orders` run as that role lands in
/// `sluice.orders`, not `public.orders`.
pub async fn missing_table(
    client: &impl GenericClient,
    index: usize,
    table: &TableName,
) -> Result<Problem, tokio_postgres::Error> {
    let elsewhere: Vec<String> = client
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND n.nspname <> $2 AND c.relkind IN ('r', 'p') \
             ORDER BY 1",
            &[&table.name, &table.schema],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let message = match &elsewhere[..] {
        [] => format!(
            "table {table} does not exist (create it before starting sluice, or fix the name)"
        ),
        found => format!(
            "table {table} does not exist, but {} does: was it created in another schema \
             (an unqualified CREATE TABLE goes to the first schema of the search_path, \
             \"$user\" before public)? Set routes[{index}].table to the table's full name, \
             or move it: ALTER TABLE {} SET SCHEMA {}",
            found.join(" and "),
            found[0],
            match crate::config::is_plain_identifier(&table.schema) {
                true => table.schema.clone(),
                false => crate::config::quote_ident(&table.schema),
            },
        ),
    };
    Ok(Problem {
        path: format!("routes[{index}].table"),
        message,
    })
}

async fn read_columns(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<Vec<CatalogColumn>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, \
                    COALESCE(NULLIF(t.typbasetype, 0), a.atttypid)::oid, \
                    CASE WHEN t.typbasetype <> 0 THEN t.typtypmod ELSE a.atttypmod END, \
                    a.attnotnull OR t.typnotnull, \
                    format_type(a.atttypid, a.atttypmod), \
                    c.oid IS NOT NULL, \
                    a.atthasdef OR a.attidentity <> '' OR t.typdefault IS NOT NULL \
             FROM (SELECT 1) one \
             LEFT JOIN pg_namespace n ON n.nspname = $1 \
             LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 \
                                  AND c.relkind IN ('r', 'p') \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
                                      AND NOT a.attisdropped AND a.attgenerated = '' \
             LEFT JOIN pg_type t ON t.oid = a.atttypid \
             ORDER BY a.attnum",
            &[&table.schema, &table.name],
        )
        .await?;
    let exists = rows
        .first()
        .map(|r| r.try_get::<_, bool>(5))
        .transpose()?
        .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    rows.iter()
        .filter(|r| matches!(r.try_get::<_, Option<String>>(0), Ok(Some(_))))
        .map(|r| {
            Ok(CatalogColumn {
                name: r.try_get(0)?,
                type_oid: r.try_get(1)?,
                typmod: r.try_get(2)?,
                not_null: r.try_get(3)?,
                type_name: r.try_get(4)?,
                has_default: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map(Some)
}

/// One target column and where its value comes from.
#[derive(Debug, Clone)]
pub struct PlannedColumn {
    pub name: String,
    pub source: ColumnSource,
    pub spec: ColumnSpec,
    pub pg_type: Type,
}

/// Matches a route's column mapping against the table; reports every
/// unknown column and unwritable type at once.
pub fn plan_route(
    index: usize,
    route: &RouteConfig,
    table: &TableName,
    catalog: &CatalogTable,
) -> Result<Vec<PlannedColumn>, Vec<Problem>> {
    let CatalogTable {
        columns,
        unique_keys,
        unlogged,
    } = catalog;
    let mut problems = Vec::new();
    if *unlogged && !route.allow_unlogged {
        problems.push(Problem {
            path: format!("routes[{index}].table"),
            message: format!(
                "table {table} is UNLOGGED: a Postgres crash empties it while sluice's offsets \
                 survive, so committed rows would be lost silently. Make it logged \
                 (ALTER TABLE {} SET LOGGED), or set routes[{index}].allow_unlogged: true \
                 if losing rows on a crash is acceptable",
                table.quoted()
            ),
        });
    }
    // The common cause of a poison storm: every record would be refused
    // (23502) and dead-lettered one by one.
    for col in columns {
        if col.not_null && !col.has_default && !route.columns.contains_key(&col.name) {
            problems.push(Problem {
                path: format!("routes[{index}].columns"),
                message: format!(
                    "column {} of {table} is NOT NULL with no default, and no mapping fills it: \
                     Postgres would refuse every record. Map it under routes[{index}].columns, \
                     or give it a default",
                    quote_ident(&col.name)
                ),
            });
        }
    }
    let mut planned = Vec::new();
    for (name, source) in &route.columns {
        let path = format!("routes[{index}].columns.{name}");
        let Some(col) = columns.iter().find(|c| &c.name == name) else {
            let known: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            problems.push(Problem {
                path,
                message: format!(
                    "column {} does not exist in {table} (its columns are: {})",
                    quote_ident(name),
                    known.join(", ")
                ),
            });
            continue;
        };
        match ColumnSpec::from_catalog(col.type_oid, col.typmod, col.not_null) {
            Some(spec) => planned.push(PlannedColumn {
                name: name.clone(),
                source: source.clone(),
                spec,
                pg_type: Type::from_oid(col.type_oid).unwrap_or(Type::BYTEA),
            }),
            None => problems.push(Problem {
                path,
                message: format!(
                    "column {} of {table} has type {}, which sluice cannot write \
                     (supported: {})",
                    quote_ident(name),
                    col.type_name,
                    SUPPORTED.join(", ")
                ),
            }),
        }
    }
    check_upsert(index, route, table, &planned, unique_keys, &mut problems);
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(problems)
    }
}

/// Upsert needs a unique index on exactly its key (ON CONFLICT infers the
/// index from the column set) and an orderable version column.
fn check_upsert(
    index: usize,
    route: &RouteConfig,
    table: &TableName,
    planned: &[PlannedColumn],
    unique_keys: &[Vec<String>],
    problems: &mut Vec<Problem>,
) {
    if route.mode != Mode::Upsert {
        return;
    }
    if let Some(key) = &route.key {
        let mut sorted = key.clone();
        sorted.sort();
        if !unique_keys.contains(&sorted) {
            let cols: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
            problems.push(Problem {
                path: format!("routes[{index}].key"),
                message: format!(
                    "mode upsert needs a unique index on exactly ({}) of {table}; create one: \
                     CREATE UNIQUE INDEX ON {} ({})",
                    key.join(", "),
                    table.quoted(),
                    cols.join(", ")
                ),
            });
        }
    }
    let version = route
        .version
        .as_ref()
        .and_then(|v| planned.iter().find(|c| &c.name == v));
    if let Some(col) = version {
        let orderable = matches!(
            col.spec.ctype,
            ColType::Int2
                | ColType::Int4
                | ColType::Int8
                | ColType::Timestamp
                | ColType::Timestamptz
        );
        if !orderable {
            problems.push(Problem {
                path: format!("routes[{index}].version"),
                message: format!(
                    "column {} has type {}; a version must be an integer or a timestamp",
                    quote_ident(&col.name),
                    col.spec.ctype.pg_name()
                ),
            });
        }
    }
}

const SUPPORTED: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "boolean",
    "text",
    "varchar",
    "char",
    "json",
    "jsonb",
    "timestamptz",
    "timestamp",
    "date",
    "uuid",
    "bytea",
];

/// Keeps the list above honest: every supported name maps to a ColType.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_types_are_writable() {
        // oids of the types in SUPPORTED, in order
        let oids = [
            21, 23, 20, 1700, 700, 701, 16, 25, 1043, 1042, 114, 3802, 1184, 1114, 1082, 2950, 17,
        ];
        assert_eq!(oids.len(), SUPPORTED.len());
        for oid in oids {
            assert!(ColType::from_oid(oid).is_some(), "{oid}");
        }
        assert!(ColType::from_oid(600).is_none(), "point is not writable");
    }
}
