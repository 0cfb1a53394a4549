//! `sluice dead-letters list`: what failed, why (grouped by reason), how
//! many, for the configured consumer group. The selection it takes is the
//! one `replay` takes too.

use std::time::SystemTime;

use serde::Serialize;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::OpsError;
use crate::config::{quote_ident, Config};

/// Which dead letters a command acts on (always those of the configured
/// `kafka.group_id`); every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The route's name (`routes[].name`, default the table's full name).
    pub route: Option<String>,
    /// Dead-lettered at or after this time.
    pub since: Option<SystemTime>,
    /// These dead letters only (their `id`).
    pub ids: Vec<i64>,
    /// The reason matches this `ILIKE` pattern when it holds a `%`; other
    /// text matches anywhere in the reason, as it is (`_` included).
    pub reason_like: Option<String>,
}

/// `--since`: an RFC 3339 time, or a duration back from now ("1h").
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH)),
        Err(_) => Err(format!(
            "--since {text:?} is neither an RFC 3339 time (2026-12-03T08:00:00Z) nor a duration \
             back from now (90m, 1h, 7days)"
        )),
    }
}

/// A parameter of the filter, owned.
enum Param {
    Text(String),
    Time(SystemTime),
    Ids(Vec<i64>),
}

impl Selection {
    /// The `WHERE` clause and its parameters (`$1` is the group id).
    fn filter(&self, group: &str) -> (String, Vec<Param>) {
        let mut clauses = vec!["group_id = $1".to_string()];
        let mut params = vec![Param::Text(group.to_owned())];
        let mut add = |clause: &str, param: Param| {
            params.push(param);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(route) = &self.route {
            add("route = ?", Param::Text(route.clone()));
        }
        if let Some(since) = self.since {
            add("failed_at >= ?", Param::Time(since));
        }
        if !self.ids.is_empty() {
            add("id = ANY(?)", Param::Ids(self.ids.clone()));
        }
        if let Some(like) = &self.reason_like {
            // Identifiers hold `_`: only a `%` makes the text a pattern.
            let pattern = if like.contains('%') {
                like.clone()
            } else {
                let literal = like.replace('\\', "\\\\").replace('_', "\\_");
                format!("%{literal}%")
            };
            add("error ILIKE ?", Param::Text(pattern));
        }
        (clauses.join(" AND "), params)
    }
}

/// Runs `sql` (with `{where}` and `{table}` filled in) over the selection.
pub(super) async fn query(
    client: &Client,
    config: &Config,
    selection: &Selection,
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, OpsError> {
    let (filter, params) = selection.filter(&config.kafka.group_id);
    let table = format!(
        "{}.dead_letters",
        quote_ident(&config.postgres.state_schema)
    );
    let sql = sql.replace("{where}", &filter).replace("{table}", &table);
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
        .iter()
        .map(|p| match p {
            Param::Text(t) => (t as &(dyn ToSql + Sync), Type::TEXT),
            Param::Time(t) => (t as &(dyn ToSql + Sync), Type::TIMESTAMPTZ),
            Param::Ids(ids) => (ids as &(dyn ToSql + Sync), Type::INT8_ARRAY),
        })
        .collect();
    Ok(client.query_typed(&sql, &typed).await?)
}

/// Dead letters of one route that failed for one reason.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReasonGroup {
    pub route: String,
    pub table: String,
    pub sqlstate: Option<String>,
    /// The reason without what differs from record to record (the failing
    /// row, the value that did not fit).
    pub reason: String,
    pub count: i64,
    pub first_failed: String,
    pub last_failed: String,
    /// The lowest `id` in the group, and its full reason.
    pub example_id: i64,
    pub example: String,
    /// Whether the configuration has this route for the dead letters'
    /// topic (`replay` needs it).
    pub routed: bool,
}

/// What `list` found.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub group_id: String,
    pub total: i64,
    pub groups: Vec<ReasonGroup>,
}

/// A Postgres error's reason up to its SQLSTATE (the detail names the
/// failing row); a decoding reason up to its second colon ("column n: not
/// an integer", without the value).
const REASON: &str = "CASE WHEN sqlstate IS NOT NULL THEN split_part(error, ' (SQLSTATE ', 1) \
                      ELSE regexp_replace(error, '^([^:]*:[^:]*):.*$', '\\1') END";

/// Groups the selected dead letters by route and reason, largest first.
pub async fn list(
    client: &Client,
    config: &Config,
    selection: &Selection,
) -> Result<Listing, OpsError> {
    let sql = format!(
        "SELECT route, target_table, sqlstate, {REASON} AS reason, count(*),
                min(failed_at)::text, max(failed_at)::text, min(id),
                (array_agg(error ORDER BY id))[1], array_agg(DISTINCT topic)
         FROM {{table}} WHERE {{where}}
         GROUP BY route, target_table, sqlstate, reason
         ORDER BY count(*) DESC, route, reason"
    );
    let rows = query(client, config, selection, &sql).await?;
    let groups: Vec<ReasonGroup> = rows
        .iter()
        .map(|r| {
            let route: String = r.get(0);
            let topics: Vec<String> = r.get(9);
            let routed = topics.iter().all(|t| {
                config
                    .routes
                    .iter()
                    .any(|c| &c.topic == t && c.route_name() == route)
            });
            ReasonGroup {
                route,
                table: r.get(1),
                sqlstate: r.get(2),
                reason: r.get(3),
                count: r.get(4),
                first_failed: r.get(5),
                last_failed: r.get(6),
                example_id: r.get(7),
                example: r.get(8),
                routed,
            }
        })
        .collect();
    Ok(Listing {
        group_id: config.kafka.group_id.clone(),
        total: groups.iter().map(|g| g.count).sum(),
        groups,
    })
}

impl Listing {
    /// The listing for a terminal.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} dead letter(s) of group {:?} in {} group(s) by route and reason\n",
            self.total,
            self.group_id,
            self.groups.len()
        );
        for g in &self.groups {
            let state = g.sqlstate.as_deref().unwrap_or("decode");
            out.push_str(&format!(
                "\n{:>8}  route {} ({}), {state}, {} .. {}\n          {}\n          e.g. id {}: {}\n",
                g.count, g.route, g.table, g.first_failed, g.last_failed, g.reason, g.example_id,
                g.example
            ));
            if !g.routed {
                out.push_str(
                    "          no route of this name reads their topic in this configuration: \
                     replay cannot write them\n",
                );
            }
        }
        if !self.groups.is_empty() {
            out.push_str(
                "\nFix the cause, then: sluice dead-letters replay --config F --route R \
                 [--reason-like TEXT] [--dry-run]\n",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let at = parse_since("2026-12-03T08:00:00Z").unwrap();
        assert_eq!(
            at,
            humantime::parse_rfc3339("2026-12-03T08:00:00Z").unwrap()
        );
        // `now` is read before and after the parse, which reads it too.
        let before = SystemTime::now();
        let since = parse_since("1h").unwrap();
        let after = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(since <= after - hour && since >= before - hour, "{since:?}");
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339") && err.contains("1h"), "{err}");
    }

    #[test]
    fn filters_number_their_parameters_after_the_group() {
        let selection = Selection {
            route: Some("audit".into()),
            since: Some(SystemTime::UNIX_EPOCH),
            ids: vec![3, 4],
            reason_like: Some("not_minus".into()),
        };
        let (sql, params) = selection.filter("g");
        assert_eq!(
            sql,
            "group_id = $1 AND route = $2 AND failed_at >= $3 AND id = ANY($4) AND error ILIKE $5"
        );
        assert_eq!(params.len(), 5);
        let Param::Text(pattern) = &params[4] else {
            panic!("a text pattern")
        };
        assert_eq!(
            pattern, r"%not\_minus%",
            "plain text matches anywhere, as it is"
        );
        let (sql, _) = Selection::default().filter("g");
        assert_eq!(sql, "group_id = $1");
    }
}
