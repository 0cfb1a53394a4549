//! Extensions that change what a slow commit can be traced to:
//! `pg_stat_statements` (which statements take the time) and `pgaudit`
//! (which can be the time).

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::{query, Finding, Settings};

pub(super) async fn check(
    client: &Client,
    settings: &Settings,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    Ok(vec![
        pg_stat_statements(client, settings).await?,
        pgaudit(client, settings).await?,
    ])
}

async fn installed(client: &Client, name: &str) -> Result<Option<String>, tokio_postgres::Error> {
    let rows = query(
        client,
        "SELECT extversion::text FROM pg_extension WHERE extname = $1",
        &[(&name, Type::TEXT)],
    )
    .await?;
    rows.first().map(|r| r.try_get(0)).transpose()
}

async fn pg_stat_statements(
    client: &Client,
    settings: &Settings,
) -> Result<Finding, tokio_postgres::Error> {
    const CHECK: &str = "pg_stat_statements";
    let preloaded = settings.preloads("pg_stat_statements");
    let version = installed(client, "pg_stat_statements").await?;
    let evidence = format!(
        "shared_preload_libraries='{}'; extension in this database: {}",
        settings.shown("shared_preload_libraries"),
        version.as_deref().unwrap_or("not installed"),
    );
    Ok(match (preloaded, version) {
        (true, Some(_)) => Finding::ok(CHECK, evidence),
        (true, None) => Finding::info(
            CHECK,
            evidence,
            "CREATE EXTENSION pg_stat_statements; then SELECT query, calls, mean_exec_time FROM \
             pg_stat_statements ORDER BY total_exec_time DESC shows where commit time goes",
        ),
        (false, _) => Finding::info(
            CHECK,
            evidence,
            "add pg_stat_statements to shared_preload_libraries (restart) and CREATE EXTENSION \
             pg_stat_statements: without it a slow COPY or COMMIT cannot be told apart from the \
             statements around it",
        ),
    })
}

async fn pgaudit(client: &Client, settings: &Settings) -> Result<Finding, tokio_postgres::Error> {
    const CHECK: &str = "pgaudit";
    if !settings.preloads("pgaudit") {
        return Ok(Finding::ok(
            CHECK,
            format!(
                "pgaudit is not in shared_preload_libraries ('{}'): nothing is audited",
                settings.shown("shared_preload_libraries")
            ),
        ));
    }
    // This session runs as sluice's role in sluice's database, so its value
    // is the one sluice's sessions get (server, database and role settings
    // applied); pg_db_role_setting shows where a role-level one comes from.
    let row = &query(
        client,
        "SELECT current_user::text, \
                coalesce(current_setting('pgaudit.log', true), ''), \
                coalesce((SELECT source FROM pg_settings WHERE name = 'pgaudit.log'), ''), \
                coalesce(current_setting('pgaudit.log_parameter', true), ''), \
                coalesce(current_setting('pgaudit.log_rows', true), ''), \
                coalesce(current_setting('pgaudit.role', true), ''), \
                coalesce((SELECT string_agg(coalesce(d.datname::text, 'every database') || ': ' \
                                            || array_to_string(s.setconfig, ', '), '; ') \
                          FROM pg_db_role_setting s \
                          LEFT JOIN pg_database d ON d.oid = s.setdatabase \
                          WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                            AND array_to_string(s.setconfig, ',') LIKE '%pgaudit.%'), 'none')",
        &[],
    )
    .await?[0];
    let role: String = row.try_get(0)?;
    let log: String = row.try_get(1)?;
    let source: String = row.try_get(2)?;
    let parameter: String = row.try_get(3)?;
    let rows: String = row.try_get(4)?;
    let audit_role: String = row.try_get(5)?;
    let role_settings: String = row.try_get(6)?;
    let evidence = format!(
        "pgaudit loaded; for role {role}: pgaudit.log='{log}' (source: {source}), \
         pgaudit.log_parameter={parameter}, pgaudit.log_rows={rows}, pgaudit.role='{audit_role}'; \
         role-level settings: {role_settings}"
    );
    Ok(match audits_writes(&log) {
        true => Finding::warning(
            CHECK,
            evidence,
            "every COPY and INSERT batch sluice commits is written to the server log (with \
             pgaudit.log_parameter = on, with all its values): on a busy sink logging can \
             dominate commit latency. Measure first (commit latency with and without, e.g. \
             ALTER ROLE ... SET pgaudit.log = 'ddl, role' on a test replica); audit policy is a \
             compliance decision, not a tuning knob",
        ),
        false => Finding::ok(CHECK, evidence),
    })
}

/// Whether a `pgaudit.log` value logs the `write` class (COPY into a
/// table, INSERT, UPDATE, DELETE). Classes are applied left to right;
/// `-class` removes one, `all` adds every class, `none` clears.
pub(crate) fn audits_writes(log: &str) -> bool {
    let mut write = false;
    for class in log.split(',').map(|c| c.trim().to_ascii_lowercase()) {
        match class.as_str() {
            "write" | "all" => write = true,
            "-write" | "-all" | "none" => write = false,
            _ => {}
        }
    }
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_auditing_is_read_like_pgaudit_does() {
        assert!(audits_writes("write"));
        assert!(audits_writes("ddl, WRITE"));
        assert!(audits_writes("all"));
        assert!(audits_writes("all, -read"));
        assert!(!audits_writes("all, -write"));
        assert!(!audits_writes("ddl, role"));
        assert!(!audits_writes("none"));
        assert!(!audits_writes(""));
    }
}
