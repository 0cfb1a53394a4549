//! `sluice doctor`: reads the Postgres a configuration points at and says
//! what in its settings, target tables and sessions slows sluice down or
//! puts its rows at risk, each finding with the value seen and what to
//! change. It only reads: nothing is created, altered or terminated.
//!
//! - [`server`]: durability, WAL and checkpoints, autovacuum, the
//!   connection budget, a standby by mistake.
//! - [`extensions`]: `pg_stat_statements`, `pgaudit`.
//! - [`tables`]: each target's vacuum state; [`indexes`] its indexes;
//!   [`partitions`] whether a partitioned target takes tomorrow's rows.
//! - [`sessions`]: transactions that hold vacuum back.
//! - [`replication`]: standbys' lag and replication slots.
//!
//! Every query is an unnamed statement (`query_typed`): sluice runs behind
//! PgBouncer in transaction mode, where named prepared statements break.

mod extensions;
mod indexes;
mod partitions;
mod replication;
mod server;
mod sessions;
mod tables;

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use super::OpsError;
use crate::config::Config;

/// How much a finding matters. Only warnings make `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked, nothing to change.
    Ok,
    /// Worth knowing; no change needed for sluice to work well.
    Info,
    /// Slows sluice down, blocks vacuum, or risks rows: change it.
    Warning,
}

/// One thing doctor looked at, what it saw and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The check's name (`synchronous_commit`, `autovacuum`,
    /// `duplicate_index`, ...): stable, for scripts.
    pub check: String,
    /// The actual value(s) seen.
    pub evidence: String,
    /// What to change; empty when nothing.
    pub advice: String,
    /// The target table (or session, slot) it is about; `None` for the
    /// server as a whole.
    pub target: Option<String>,
}

impl Finding {
    pub(crate) fn new(severity: Severity, check: &str, evidence: impl Into<String>) -> Finding {
        Finding {
            severity,
            check: check.to_owned(),
            evidence: evidence.into(),
            advice: String::new(),
            target: None,
        }
    }

    pub(crate) fn ok(check: &str, evidence: impl Into<String>) -> Finding {
        Finding::new(Severity::Ok, check, evidence)
    }

    pub(crate) fn info(check: &str, evidence: impl Into<String>, advice: &str) -> Finding {
        Finding::new(Severity::Info, check, evidence).advise(advice)
    }

    pub(crate) fn warning(check: &str, evidence: impl Into<String>, advice: &str) -> Finding {
        Finding::new(Severity::Warning, check, evidence).advise(advice)
    }

    pub(crate) fn advise(mut self, advice: impl Into<String>) -> Finding {
        self.advice = advice.into();
        self
    }

    pub(crate) fn on(mut self, target: impl Into<String>) -> Finding {
        self.target = Some(target.into());
        self
    }
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `current_database()` of the configured connection.
    pub database: String,
    /// The server's `server_version`.
    pub server_version: String,
    /// The `--replicas` the connection budget was computed for.
    pub replicas: u32,
    /// How many findings are warnings.
    pub warnings: usize,
    /// Warnings first, then info, then ok; in check order within each.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether doctor found nothing to change (exit 0).
    pub fn healthy(&self) -> bool {
        self.warnings == 0
    }

    pub fn text(&self) -> String {
        let infos = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Info)
            .count();
        let mut out = format!(
            "database {} on PostgreSQL {} ({} replica(s) of sluice): {} warning(s), {infos} info\n",
            self.database, self.server_version, self.replicas, self.warnings
        );
        for f in &self.findings {
            let label = match f.severity {
                Severity::Ok => "ok",
                Severity::Info => "info",
                Severity::Warning => "WARNING",
            };
            let target = f
                .target
                .as_ref()
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default();
            out.push_str(&format!("\n{label:<8} {}{target}\n", f.check));
            out.push_str(&format!("         seen:   {}\n", f.evidence));
            if !f.advice.is_empty() {
                out.push_str(&format!("         change: {}\n", f.advice));
            }
        }
        out
    }
}

/// Runs every check over `client`'s database, for `replicas` replicas of
/// the service configured by `config`.
pub async fn diagnose(client: &Client, config: &Config, replicas: u32) -> Result<Report, OpsError> {
    let settings = Settings::read(client).await?;
    let head = query(
        client,
        "SELECT current_database()::text, current_setting('server_version')",
        &[],
    )
    .await?;
    let mut findings = server::check(client, config, &settings, replicas).await?;
    findings.extend(extensions::check(client, &settings).await?);
    findings.extend(sessions::check(client).await?);
    findings.extend(replication::check(client, config).await?);
    findings.extend(tables::check(client, config, &settings).await?);
    // Stable: within a severity, the order the checks ran in.
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    Ok(Report {
        database: head[0].try_get(0)?,
        server_version: head[0].try_get(1)?,
        replicas,
        warnings,
        findings,
    })
}

/// The server's settings as `pg_settings` has them: the raw `setting` (in
/// the setting's base unit) and the value as `SHOW` prints it (with units).
pub(crate) struct Settings(BTreeMap<String, (String, String)>);

impl Settings {
    async fn read(client: &Client) -> Result<Settings, tokio_postgres::Error> {
        let rows = query(
            client,
            "SELECT name::text, setting::text, current_setting(name) FROM pg_settings",
            &[],
        )
        .await?;
        let mut map = BTreeMap::new();
        for row in rows {
            map.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
        Ok(Settings(map))
    }

    /// The raw value (`8` for 8 connections, `300` for checkpoint_timeout
    /// 5min), or `None` when the server has no such setting.
    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|(raw, _)| raw.as_str())
    }

    /// As `SHOW` prints it (`1GB`, `5min`); `?` when unknown.
    pub(crate) fn shown(&self, name: &str) -> &str {
        self.0.get(name).map_or("?", |(_, shown)| shown.as_str())
    }

    /// The raw value as a number.
    pub(crate) fn number(&self, name: &str) -> Option<i64> {
        self.raw(name).and_then(|v| v.parse().ok())
    }

    /// `shared_preload_libraries` holds `library`.
    pub(crate) fn preloads(&self, library: &str) -> bool {
        self.raw("shared_preload_libraries")
            .is_some_and(|list| list_has(list, library))
    }
}

/// A comma-separated setting (`shared_preload_libraries`) names `item`.
pub(crate) fn list_has(list: &str, item: &str) -> bool {
    list.split(',')
        .map(|s| s.trim().trim_matches('"'))
        .any(|s| s.eq_ignore_ascii_case(item))
}

/// An unnamed statement (see the module comment).
pub(crate) async fn query(
    client: &Client,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    client.query_typed(sql, params).await
}

/// A byte count the way an operator reads it.
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_lists_are_matched_by_whole_names() {
        assert!(list_has("pg_stat_statements, pgaudit", "pgaudit"));
        assert!(list_has("\"pgaudit\"", "pgaudit"));
        assert!(!list_has("pgaudit_extra", "pgaudit"));
        assert!(!list_has("", "pgaudit"));
    }

    #[test]
    fn byte_counts_read_as_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GB");
    }

    #[test]
    fn warnings_come_first_and_decide_health() {
        let report = Report {
            database: "d".into(),
            server_version: "15".into(),
            replicas: 1,
            warnings: 1,
            findings: vec![Finding::warning("fsync", "fsync=off", "set fsync = on").on("x")],
        };
        assert!(!report.healthy());
        let text = report.text();
        assert!(text.contains("WARNING  fsync [x]"), "{text}");
        assert!(text.contains("seen:   fsync=off"), "{text}");
        assert!(text.contains("change: set fsync = on"), "{text}");
    }
}
