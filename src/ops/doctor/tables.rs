//! Each route's target table: that it exists, its vacuum state (dead rows,
//! last autovacuum, `autovacuum_enabled = false`), per-table settings for
//! high-churn upsert tables; then its indexes and partitions.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::{indexes, partitions, query, Finding, Settings};
use crate::config::{Config, Mode, RouteConfig, TableName};

/// Dead rows below this many are never worth a warning.
const DEAD_ROWS: i64 = 10_000;
/// Updates and deletes from which an upsert table counts as high-churn.
const CHURN: i64 = 10_000;

/// A target table that exists, and the routes writing it.
pub(super) struct Target<'a> {
    pub name: TableName,
    pub oid: i64,
    /// `pg_class.relkind`: `r` table, `p` partitioned table.
    pub kind: String,
    pub routes: Vec<&'a RouteConfig>,
}

pub(super) async fn check(
    client: &Client,
    config: &Config,
    settings: &Settings,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut out = Vec::new();
    // Several routes may write one table: check each table once.
    let mut tables: Vec<(TableName, Vec<&RouteConfig>)> = Vec::new();
    for route in &config.routes {
        let Ok(name) = route.table_name() else {
            continue;
        };
        match tables.iter_mut().find(|(t, _)| *t == name) {
            Some((_, routes)) => routes.push(route),
            None => tables.push((name, vec![route])),
        }
    }
    for (name, routes) in tables {
        let rows = query(
            client,
            "SELECT c.oid::int8, c.relkind::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[(&name.schema, Type::TEXT), (&name.name, Type::TEXT)],
        )
        .await?;
        let Some(row) = rows.first() else {
            out.push(
                Finding::warning(
                    "target_table",
                    format!("{name} does not exist"),
                    "create it (sluice check names the columns each route needs); sluice does \
                     not start without it",
                )
                .on(name.to_string()),
            );
            continue;
        };
        let target = Target {
            name,
            oid: row.try_get(0)?,
            kind: row.try_get(1)?,
            routes,
        };
        let writes = vacuum(client, &target, settings, &mut out).await?;
        out.extend(indexes::check(client, &target, writes).await?);
        if target.kind == "p" {
            out.extend(partitions::check(client, &target).await?);
        }
    }
    Ok(out)
}

/// The vacuum findings of the target's tables (the target itself, or each
/// leaf partition: a partitioned parent has no rows to vacuum); returns
/// the rows written to them since the statistics were reset.
async fn vacuum(
    client: &Client,
    target: &Target<'_>,
    settings: &Settings,
    out: &mut Vec<Finding>,
) -> Result<i64, tokio_postgres::Error> {
    let rows = query(
        client,
        "SELECT format('%I.%I', n.nspname, c.relname), \
                coalesce(array_to_string(c.reloptions, ','), ''), \
                coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0), \
                coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd + s.n_tup_del, 0), \
                coalesce(s.last_autovacuum::text, 'never'), coalesce(s.last_vacuum::text, 'never') \
         FROM (SELECT relid FROM pg_partition_tree($1::oid::regclass) WHERE isleaf \
               UNION SELECT $1::oid::regclass) AS l \
         JOIN pg_class c ON c.oid = l.relid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'm', 't') \
         ORDER BY 1",
        &[(&target.oid, Type::INT8)],
    )
    .await?;
    let upsert = target.routes.iter().any(|r| r.mode == Mode::Upsert);
    let mut writes = 0;
    for row in rows {
        let table: String = row.try_get(0)?;
        let options: String = row.try_get(1)?;
        let (live, dead): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
        let (inserted, changed): (i64, i64) = (row.try_get(4)?, row.try_get(5)?);
        let (auto, manual): (String, String) = (row.try_get(6)?, row.try_get(7)?);
        writes += inserted + changed;
        let evidence = format!(
            "n_live_tup={live}, n_dead_tup={dead}, inserted {inserted}, updated or deleted \
             {changed}, last_autovacuum={auto}, last_vacuum={manual}, reloptions='{options}'"
        );
        let finding = if option_is_off(&options, "autovacuum_enabled") {
            Finding::warning(
                "autovacuum",
                format!("autovacuum_enabled=false (reloption); {evidence}"),
                &format!(
                    "ALTER TABLE {table} RESET (autovacuum_enabled): autovacuum skips this table, \
                     so dead rows of its updates and deletes are never cleaned and it and its \
                     indexes bloat"
                ),
            )
        } else if settings.shown("autovacuum") != "off" && too_many_dead(live, dead) {
            Finding::warning(
                "dead_tuples",
                evidence,
                &format!(
                    "VACUUM (VERBOSE) {table} now and see what stops autovacuum from keeping up \
                     (a long transaction below, autovacuum_max_workers, cost limits); \
                     {}",
                    aggressive(&table)
                ),
            )
        } else if upsert && churns(live, changed) && !options.contains("autovacuum_vacuum_") {
            Finding::info(
                "vacuum_settings",
                evidence,
                &format!("a high-churn upsert table: {}", aggressive(&table)),
            )
        } else {
            Finding::ok("vacuum", evidence)
        };
        out.push(finding.on(table));
    }
    Ok(writes)
}

/// Per-table settings that vacuum an upsert table before its dead rows
/// slow its index lookups, instead of after 20 % of it is dead.
fn aggressive(table: &str) -> String {
    format!(
        "ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.01, \
         autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 1, \
         autovacuum_analyze_scale_factor = 0.02)"
    )
}

/// A reloption (`key=value` pairs, comma-separated as `reloptions`
/// prints them) set to a false boolean.
pub(crate) fn option_is_off(options: &str, key: &str) -> bool {
    options.split(',').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.trim() == key
            && matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0" | "f" | "n"
            )
    })
}

/// Dead rows are many and more than a fifth of the table.
pub(crate) fn too_many_dead(live: i64, dead: i64) -> bool {
    dead >= DEAD_ROWS && dead * 5 > live + dead
}

/// Updated or deleted at least as many rows as it holds (and not few).
pub(crate) fn churns(live: i64, changed: i64) -> bool {
    changed >= CHURN && changed >= live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_autovacuum_reloption_is_read_in_any_spelling() {
        assert!(option_is_off(
            "autovacuum_enabled=false",
            "autovacuum_enabled"
        ));
        assert!(option_is_off(
            "fillfactor=90,autovacuum_enabled=OFF",
            "autovacuum_enabled"
        ));
        assert!(!option_is_off(
            "autovacuum_enabled=true",
            "autovacuum_enabled"
        ));
        assert!(!option_is_off(
            "toast.autovacuum_enabled=false",
            "autovacuum_enabled"
        ));
        assert!(!option_is_off("", "autovacuum_enabled"));
    }

    #[test]
    fn dead_rows_and_churn_need_volume() {
        assert!(!too_many_dead(10, 500), "few rows, whatever the share");
        assert!(too_many_dead(40_000, 20_000));
        assert!(!too_many_dead(1_000_000, 20_000));
        assert!(churns(5_000, 20_000));
        assert!(!churns(100_000, 20_000));
        assert!(!churns(0, 500));
    }
}
