//! A partitioned target: writing into the parent works, but a row no
//! partition accepts is retried until one is created (sink::error, 23514;
//! docs/ARCHITECTURE.md "Partitioned targets"), holding its Kafka
//! partition. For range partitioning on one date or timestamp column,
//! doctor asks whether a partition takes a row of `now() + 1 day`.
//!
//! How: each leaf partition's implicit constraint
//! (`pg_get_partition_constraintdef`, which includes its ancestors' bounds
//! and is `NOT (...)` of its siblings for a DEFAULT partition) is evaluated
//! by the server over a one-row subquery whose only column has the key's
//! name and tomorrow's value. This reads no table and needs no privilege
//! on it, but it only works when that column is the whole key at every
//! level: a leaf whose constraint names another column cannot be judged,
//! and is reported as such.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::tables::Target;
use super::{query, Finding};
use crate::config::quote_ident;

const CHECK: &str = "partitions";
const TIME_TYPES: [&str; 3] = [
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
];

/// What holds while a partition is missing, and how to get out.
const MISSING: &str = "until a partition accepts them, sluice retries the batch holding such \
    a row: its Kafka partition holds, in order (WARN \"batch failed; retrying\", \
    sluice_retries_total, lag grows), and goes on by itself once the partition exists; nothing \
    is dead-lettered (docs/ARCHITECTURE.md, \"Partitioned targets\"). Create partitions ahead \
    of time (CREATE TABLE ... PARTITION OF ... FOR VALUES FROM (...) TO (...)), or automate it \
    (pg_partman, a scheduled job)";

pub(super) async fn check(
    client: &Client,
    target: &Target<'_>,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let table = target.name.to_string();
    let rows = query(
        client,
        "SELECT p.partstrat::text, p.partnatts::int4, \
                coalesce((SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                          JOIN pg_namespace n ON n.oid = c.relnamespace \
                          WHERE c.oid = p.partdefid), ''), \
                coalesce(a.attname::text, ''), \
                coalesce(a.atttypid::regtype::text, ''), \
                coalesce(format_type(a.atttypid, a.atttypmod), ''), \
                (SELECT count(*) FROM pg_partition_tree(p.partrelid) WHERE isleaf)::int8 \
         FROM pg_partitioned_table p \
         LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] \
         WHERE p.partrelid = $1::oid",
        &[(&target.oid, Type::INT8)],
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(vec![]);
    };
    let strategy: String = row.try_get(0)?;
    let columns: i32 = row.try_get(1)?;
    let default: String = row.try_get(2)?;
    let column: String = row.try_get(3)?;
    let type_name: String = row.try_get(4)?;
    let type_cast: String = row.try_get(5)?;
    let leaves: i64 = row.try_get(6)?;
    let strategy = match strategy.as_str() {
        "r" => "range",
        "l" => "list",
        "h" => "hash",
        _ => "?",
    };
    let key = match (columns, column.is_empty()) {
        (1, false) => format!("{column} ({type_name})"),
        _ => format!("{columns} column(s) or an expression"),
    };
    let default_text = match default.is_empty() {
        true => "no DEFAULT partition".to_owned(),
        false => format!("DEFAULT partition {default}"),
    };
    let mut evidence =
        format!("partitioned by {strategy} on {key}; {leaves} leaf partition(s); {default_text}");
    if leaves == 0 {
        return Ok(vec![Finding::warning(
            CHECK,
            evidence,
            &format!("{table} has no partition, so no row can be written: {MISSING}"),
        )
        .on(table)]);
    }
    let judged = strategy == "range" && columns == 1 && TIME_TYPES.contains(&type_name.as_str());
    if !judged {
        let advice = match default.is_empty() {
            true => format!(
                "doctor only checks tomorrow's partition of range partitioning on one date or \
                 timestamp column; make sure every value sluice writes has a partition (or add \
                 a DEFAULT partition): {MISSING}"
            ),
            false => "doctor only checks tomorrow's partition of range partitioning on one date \
                      or timestamp column; rows no other partition takes go to the DEFAULT one"
                .to_owned(),
        };
        return Ok(vec![Finding::info(CHECK, evidence, &advice).on(table)]);
    }
    let probe: String = query(
        client,
        &format!("SELECT (now() + interval '1 day')::{type_cast}::text"),
        &[],
    )
    .await?[0]
        .try_get(0)?;
    let (covering, unjudged) = covering(client, target.oid, &column, &type_cast).await?;
    evidence.push_str(&format!("; a row at now() + 1 day ({probe}) goes to "));
    Ok(vec![match covering {
        Some(leaf) if leaf == default => {
            evidence.push_str(&format!("the DEFAULT partition {leaf}"));
            Finding::info(
                CHECK,
                evidence,
                &format!(
                    "create tomorrow's partition of {table}: once the DEFAULT partition holds rows \
                     of its range, creating it fails until they are moved out"
                ),
            )
        }
        Some(leaf) => {
            evidence.push_str(&leaf);
            Finding::ok(CHECK, evidence)
        }
        None if unjudged > 0 => {
            evidence.push_str(&format!(
                "no partition doctor could judge ({unjudged} leaf partition(s) are bounded by \
                 another column too)"
            ));
            Finding::info(
                CHECK,
                evidence,
                &format!("check by hand that tomorrow's rows have a partition: {MISSING}"),
            )
        }
        None => {
            evidence.push_str("no partition");
            Finding::warning(
                CHECK,
                evidence,
                &format!("tomorrow's rows for {table} have no partition: {MISSING}"),
            )
        }
    }
    .on(table)])
}

/// The leaf partition a row whose key column is `now() + 1 day` goes to,
/// and how many leaves could not be judged.
async fn covering(
    client: &Client,
    table: i64,
    column: &str,
    type_cast: &str,
) -> Result<(Option<String>, usize), tokio_postgres::Error> {
    let leaves = query(
        client,
        "SELECT format('%I.%I', n.nspname, c.relname), pg_get_partition_constraintdef(t.relid) \
         FROM pg_partition_tree($1::oid::regclass) AS t \
         JOIN pg_class c ON c.oid = t.relid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE t.isleaf ORDER BY 1",
        &[(&table, Type::INT8)],
    )
    .await?;
    let mut unjudged = 0;
    for leaf in leaves {
        let name: String = leaf.try_get(0)?;
        // A lone DEFAULT partition has no constraint: it takes every row.
        let Some(constraint) = leaf.try_get::<_, Option<String>>(1)? else {
            return Ok((Some(name), unjudged));
        };
        // The constraint is the server's own text of the bounds.
        let sql = format!(
            "SELECT EXISTS (SELECT FROM (SELECT (now() + interval '1 day')::{type_cast} AS {}) \
             AS probe WHERE {constraint})",
            quote_ident(column)
        );
        match query(client, &sql, &[]).await {
            Ok(rows) if rows[0].try_get::<_, bool>(0)? => return Ok((Some(name), unjudged)),
            Ok(_) => {}
            // It names a column the probe does not have.
            Err(_) => unjudged += 1,
        }
    }
    Ok((None, unjudged))
}
