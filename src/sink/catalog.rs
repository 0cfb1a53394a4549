//! Reads target tables from the Postgres catalog and plans how each route's
//! columns are written: which column, which source, which type.

use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

use super::coerce::ColumnSpec;
use crate::config::{quote_ident, ColumnSource, Problem, RouteConfig, TableName};

/// One column of a target table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    /// The column's type, or a domain's base type.
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    /// As Postgres would print it, for messages.
    pub type_name: String,
}

/// Columns of a table, in table order; `None` when the table does not exist.
pub async fn read_table(
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
                    c.oid IS NOT NULL \
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
    let exists = rows.first().is_some_and(|r| r.get::<_, bool>(5));
    if !exists {
        return Ok(None);
    }
    rows.iter()
        .filter(|r| r.get::<_, Option<String>>(0).is_some())
        .map(|r| {
            Ok(CatalogColumn {
                name: r.try_get(0)?,
                type_oid: r.try_get(1)?,
                typmod: r.try_get(2)?,
                not_null: r.try_get(3)?,
                type_name: r.try_get(4)?,
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
    columns: Option<&[CatalogColumn]>,
) -> Result<Vec<PlannedColumn>, Vec<Problem>> {
    let Some(columns) = columns else {
        return Err(vec![Problem {
            path: format!("routes[{index}].table"),
            message: format!(
                "table {table} does not exist (create it before starting sluice, or fix the name)"
            ),
        }]);
    };
    let mut problems = Vec::new();
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
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(problems)
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
    use crate::sink::coerce::ColType;

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
