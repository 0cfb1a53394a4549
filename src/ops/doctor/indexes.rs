//! A target's indexes: the unique index an upsert route's `ON CONFLICT`
//! needs, and the indexes that only cost: every index is written on every
//! COPY, so a duplicate or an unused one slows sluice for nothing.
//!
//! For a partitioned target these are the parent's (partitioned) indexes,
//! with the scans of their partitions' indexes added up; an index created
//! on one partition only is not seen.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::tables::Target;
use super::{query, Finding};
use crate::config::{is_plain_identifier, quote_ident, Mode};

/// Rows written since the statistics reset from which an index nobody
/// scanned is worth mentioning.
const UNUSED_AFTER_WRITES: i64 = 10_000;

/// One index, as far as the checks need it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Index {
    pub name: String,
    pub unique: bool,
    /// Primary key, or backing a UNIQUE or EXCLUDE constraint.
    pub constraint: bool,
    /// Key columns in index order (`(expression)` for an expression).
    pub columns: Vec<String>,
    /// What makes two indexes the same: access method, every column
    /// (INCLUDE ones too), operator classes, expressions, predicate.
    pub definition: String,
    /// Has a predicate or an expression: `ON CONFLICT (cols)` cannot use it.
    pub partial_or_expression: bool,
    pub scans: i64,
}

pub(super) async fn check(
    client: &Client,
    target: &Target<'_>,
    writes: i64,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let table = target.name.to_string();
    let indexes = read(client, target.oid).await?;
    let mut out = Vec::new();
    for route in target.routes.iter().filter(|r| r.mode == Mode::Upsert) {
        let Some(key) = &route.key else { continue };
        let name = route.route_name();
        let columns = key
            .iter()
            .map(|c| sql_name(c))
            .collect::<Vec<_>>()
            .join(", ");
        let unique: Vec<String> = indexes
            .iter()
            .filter(|i| i.unique && !i.partial_or_expression)
            .map(|i| format!("{} ({})", i.name, i.columns.join(", ")))
            .collect();
        let evidence = format!(
            "route {name}: mode upsert, key ({}); unique indexes: {}",
            key.join(", "),
            if unique.is_empty() {
                "none".to_owned()
            } else {
                unique.join(", ")
            }
        );
        out.push(
            match upsert_index(&indexes, key) {
                Some(index) => Finding::ok(
                    "upsert_key",
                    format!("{evidence}; ON CONFLICT uses {index}"),
                ),
                None => Finding::warning(
                    "upsert_key",
                    evidence,
                    &format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY ON {} ({columns}): INSERT ... ON CONFLICT \
                     ({columns}) needs a unique index on exactly the key columns; sluice check \
                     and start-up refuse the route until it exists",
                    target.name,
                ),
                ),
            }
            .on(table.clone()),
        );
    }
    for (keep, extra) in duplicates(&indexes) {
        let columns = indexes
            .iter()
            .find(|i| i.name == keep)
            .map(|i| i.columns.join(", "))
            .unwrap_or_default();
        let drops: Vec<String> = extra
            .iter()
            .map(|n| format!("DROP INDEX CONCURRENTLY {n}"))
            .collect();
        out.push(
            Finding::warning(
                "duplicate_index",
                format!(
                    "{keep} and {} index the same columns ({columns}) the same way",
                    extra.join(", ")
                ),
                &format!(
                    "{} (on a partitioned table without CONCURRENTLY): every COPY writes each \
                     index, the duplicate doubles that work and protects nothing {keep} does not",
                    drops.join("; ")
                ),
            )
            .on(table.clone()),
        );
    }
    for index in unused(&indexes, writes) {
        out.push(
            Finding::info(
                "unused_index",
                format!(
                    "{} ({}): idx_scan=0 while {writes} rows were written since the statistics \
                     were reset",
                    index.name,
                    index.columns.join(", ")
                ),
                &format!(
                    "if nothing reads by it (check the standbys too: their scans are not counted \
                     here), DROP INDEX CONCURRENTLY {} speeds every COPY",
                    index.name
                ),
            )
            .on(table.clone()),
        );
    }
    if out
        .iter()
        .all(|f| f.check == "upsert_key" && f.severity == super::Severity::Ok)
    {
        let names: Vec<&str> = indexes.iter().map(|i| i.name.as_str()).collect();
        out.push(
            Finding::ok(
                "indexes",
                match names.is_empty() {
                    true => "no index".to_owned(),
                    false => format!(
                        "{} index(es): {}; none duplicate, none unused",
                        names.len(),
                        names.join(", ")
                    ),
                },
            )
            .on(table),
        );
    }
    Ok(out)
}

async fn read(client: &Client, table: i64) -> Result<Vec<Index>, tokio_postgres::Error> {
    let rows = query(
        client,
        "SELECT i.indexrelid::regclass::text, i.indisunique, \
                EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid \
                                                     AND k.conrelid = i.indrelid), \
                ARRAY(SELECT coalesce(a.attname::text, '(expression)') \
                      FROM unnest(i.indkey) WITH ORDINALITY AS u(attnum, ord) \
                      LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum \
                      WHERE u.ord <= i.indnkeyatts ORDER BY u.ord), \
                concat_ws(' | ', am.amname, i.indkey::text, i.indclass::text, \
                          i.indcollation::text, i.indoption::text, \
                          pg_get_expr(i.indexprs, i.indrelid), \
                          pg_get_expr(i.indpred, i.indrelid)), \
                i.indexprs IS NOT NULL OR i.indpred IS NOT NULL, \
                coalesce((SELECT sum(s.idx_scan) FROM pg_stat_user_indexes s \
                          WHERE s.indexrelid IN (SELECT relid FROM pg_partition_tree(i.indexrelid) \
                                                 UNION SELECT i.indexrelid)), 0)::int8 \
         FROM pg_index i \
         JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = ic.relam \
         WHERE i.indrelid = $1::oid AND i.indisvalid \
         ORDER BY 1",
        &[(&table, Type::INT8)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Index {
                name: r.try_get(0)?,
                unique: r.try_get(1)?,
                constraint: r.try_get(2)?,
                columns: r.try_get(3)?,
                definition: r.try_get(4)?,
                partial_or_expression: r.try_get(5)?,
                scans: r.try_get(6)?,
            })
        })
        .collect()
}

/// A column name as SQL: quoted only when it must be.
fn sql_name(column: &str) -> String {
    match is_plain_identifier(column) {
        true => column.to_owned(),
        false => quote_ident(column),
    }
}

/// The unique index `ON CONFLICT (key)` infers: unique, no predicate or
/// expression, its key columns exactly `key` in any order.
pub(crate) fn upsert_index<'i>(indexes: &'i [Index], key: &[String]) -> Option<&'i str> {
    let mut wanted: Vec<&str> = key.iter().map(String::as_str).collect();
    wanted.sort();
    indexes
        .iter()
        .filter(|i| i.unique && !i.partial_or_expression)
        .find(|i| {
            let mut have: Vec<&str> = i.columns.iter().map(String::as_str).collect();
            have.sort();
            have == wanted
        })
        .map(|i| i.name.as_str())
}

/// Indexes with the same definition, as (the one to keep, the others): a
/// constraint's index is kept first, then a unique one (it also serves
/// what the plain one did), then the first by name.
pub(crate) fn duplicates(indexes: &[Index]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<Vec<&Index>> = Vec::new();
    for index in indexes {
        match groups
            .iter_mut()
            .find(|g| g[0].definition == index.definition)
        {
            Some(group) => group.push(index),
            None => groups.push(vec![index]),
        }
    }
    groups
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            // Stable: equal rank keeps name order.
            g.sort_by_key(|i| (!i.constraint, !i.unique));
            let keep = g[0].name.clone();
            let rest = g[1..]
                .iter()
                .filter(|i| !i.constraint)
                .map(|i| i.name.clone())
                .collect::<Vec<_>>();
            (keep, rest)
        })
        .filter(|(_, rest)| !rest.is_empty())
        .collect()
}

/// Indexes never scanned on a table with many writes; those enforcing
/// uniqueness are needed whether scanned or not.
pub(crate) fn unused(indexes: &[Index], writes: i64) -> Vec<&Index> {
    if writes < UNUSED_AFTER_WRITES {
        return Vec::new();
    }
    indexes
        .iter()
        .filter(|i| !i.unique && !i.constraint && i.scans == 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, columns: &[&str], unique: bool, constraint: bool) -> Index {
        Index {
            name: name.into(),
            unique,
            constraint,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            definition: format!("btree | {}", columns.join(" ")),
            partial_or_expression: false,
            scans: 0,
        }
    }

    #[test]
    fn duplicates_keep_the_constraint_then_the_unique_index() {
        let indexes = [
            index("a_k_idx", &["k"], false, false),
            index("a_pkey", &["k"], true, true),
            index("a_k_idx1", &["k"], false, false),
            index("a_k_v_idx", &["k", "v"], false, false),
            index("a_v_k_idx", &["v", "k"], false, false),
        ];
        assert_eq!(
            duplicates(&indexes),
            vec![(
                "a_pkey".to_string(),
                vec!["a_k_idx".to_string(), "a_k_idx1".to_string()]
            )],
            "column order matters: (k, v) and (v, k) are different indexes"
        );
        let plain = [
            index("b_k_idx", &["k"], false, false),
            index("b_k_idx1", &["k"], false, false),
        ];
        assert_eq!(
            duplicates(&plain),
            vec![("b_k_idx".to_string(), vec!["b_k_idx1".to_string()])]
        );
        let unique = [
            index("c_k_idx", &["k"], false, false),
            index("c_k_key", &["k"], true, false),
        ];
        assert_eq!(
            duplicates(&unique),
            vec![("c_k_key".to_string(), vec!["c_k_idx".to_string()])]
        );
    }

    #[test]
    fn the_upsert_index_matches_the_key_in_any_order() {
        let mut partial = index("p", &["a", "b"], true, false);
        partial.partial_or_expression = true;
        let indexes = [
            index("plain", &["a", "b"], false, false),
            partial,
            index("wide", &["a", "b", "c"], true, false),
            index("exact", &["b", "a"], true, false),
        ];
        let key = ["a".to_string(), "b".to_string()];
        assert_eq!(upsert_index(&indexes, &key), Some("exact"));
        assert_eq!(upsert_index(&indexes[..3], &key), None);
    }

    #[test]
    fn unused_indexes_are_plain_unscanned_ones_on_written_tables() {
        let mut scanned = index("scanned", &["a"], false, false);
        scanned.scans = 3;
        let indexes = [
            scanned,
            index("never", &["b"], false, false),
            index("unique", &["c"], true, false),
        ];
        let names = |w| {
            unused(&indexes, w)
                .iter()
                .map(|i| i.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(50_000), vec!["never".to_string()]);
        assert!(names(100).is_empty());
    }
}
