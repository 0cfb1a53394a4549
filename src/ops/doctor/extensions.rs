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

/// `shared_preload_libraries` as the evidence shows it: a role without
/// pg_read_all_settings cannot read it (pg_settings leaves it out).
fn preload_list(settings: &Settings) -> String {
    match settings.raw("shared_preload_libraries") {
        Some(list) => format!("'{list}'"),
        None => "hidden from this role".to_owned(),
    }
}

async fn pg_stat_statements(
    client: &Client,
    settings: &Settings,
) -> Result<Finding, tokio_postgres::Error> {
    const CHECK: &str = "pg_stat_statements";
    let version = installed(client, "pg_stat_statements").await?;
    // Reading one row is what fails when the library was not preloaded, and
    // it needs no privilege to read shared_preload_libraries.
    let works = match &version {
        Some(_) => query(
            client,
            "SELECT count(*) FROM (SELECT 1 FROM pg_stat_statements LIMIT 1) AS one",
            &[],
        )
        .await
        .map_err(|e| crate::pg::error_text(&e)),
        None => Err("not installed".to_owned()),
    };
    let evidence = format!(
        "shared_preload_libraries {}; extension in this database: {}{}",
        preload_list(settings),
        version.as_deref().unwrap_or("not installed"),
        match (&version, &works) {
            (Some(_), Err(e)) => format!(", reading it fails: {e}"),
            _ => String::new(),
        }
    );
    Ok(match (version, works) {
        (Some(_), Ok(_)) => Finding::ok(CHECK, evidence),
        (None, _) if settings.preloads("pg_stat_statements") => Finding::info(
            CHECK,
            evidence,
            "CREATE EXTENSION pg_stat_statements; then SELECT query, calls, mean_exec_time FROM \
             pg_stat_statements ORDER BY total_exec_time DESC shows where commit time goes",
        ),
        _ => Finding::info(
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
    // pg_settings lists a module's settings only once it is loaded (a
    // placeholder set without the module is left out), for any role.
    if !settings.preloads("pgaudit") && settings.raw("pgaudit.log").is_none() {
        return Ok(Finding::ok(
            CHECK,
            format!(
                "pgaudit is not loaded (no pgaudit.log setting; shared_preload_libraries {}): \
                 nothing is audited",
                preload_list(settings)
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
