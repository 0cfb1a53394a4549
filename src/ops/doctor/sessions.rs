//! Sessions that hold vacuum back: an open transaction keeps every row
//! version newer than its snapshot, so dead rows of sluice's upserts pile
//! up behind it, and its locks can block sluice's writes.

use tokio_postgres::Client;

use super::{query, Finding};

/// Idle in a transaction this long is not the gap between two statements.
pub(crate) const IDLE_SECONDS: f64 = 5.0;
/// A transaction open this long, whatever it is doing.
pub(crate) const LONG_SECONDS: f64 = 300.0;

pub(super) async fn check(client: &Client) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut out = Vec::new();
    // Only this database's sessions (other databases' do not hold back this
    // one's vacuum), never doctor's own.
    let rows = query(
        client,
        "SELECT pid, coalesce(usename::text, '?'), coalesce(application_name, ''), \
                coalesce(state, ''), \
                extract(epoch FROM now() - xact_start)::float8, \
                coalesce(extract(epoch FROM now() - state_change)::float8, 0), \
                backend_xmin IS NOT NULL OR backend_xid IS NOT NULL, \
                coalesce(left(regexp_replace(query, '\\s+', ' ', 'g'), 120), '') \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND xact_start IS NOT NULL \
         ORDER BY xact_start",
        &[],
    )
    .await?;
    for row in rows {
        let pid: i32 = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        let application: String = row.try_get(2)?;
        let state: String = row.try_get(3)?;
        let open: f64 = row.try_get(4)?;
        let in_state: f64 = row.try_get(5)?;
        let holds: bool = row.try_get(6)?;
        let last: String = row.try_get(7)?;
        let Some(check) = blocking(&state, open, in_state) else {
            continue;
        };
        let evidence = format!(
            "pid {pid} (user {user}, application '{application}') {state} for {in_state:.0} s, \
             transaction open {open:.0} s, holding a snapshot or transaction id: {}; last query: \
             {last}",
            if holds { "yes" } else { "no" }
        );
        out.push(
            Finding::warning(
                check,
                evidence,
                &format!(
                    "end it: commit or roll back in the application that opened it, or SELECT \
                     pg_terminate_backend({pid}) if it is abandoned; set \
                     idle_in_transaction_session_timeout (and a statement_timeout) for that role \
                     so it cannot recur: vacuum cannot remove rows that died after such a \
                     transaction began, and its locks can block sluice's COPY"
                ),
            )
            .on(format!("pid {pid}")),
        );
    }
    let prepared = query(
        client,
        "SELECT gid, owner::text, extract(epoch FROM now() - prepared)::float8 \
         FROM pg_prepared_xacts WHERE database = current_database()",
        &[],
    )
    .await?;
    for row in prepared {
        let gid: String = row.try_get(0)?;
        let owner: String = row.try_get(1)?;
        let age: f64 = row.try_get(2)?;
        out.push(
            Finding::warning(
                "prepared_transaction",
                format!("prepared transaction '{gid}' (owner {owner}) open {age:.0} s"),
                &format!(
                    "COMMIT PREPARED '{gid}' or ROLLBACK PREPARED '{gid}' (its coordinator should \
                     have): it holds vacuum back and keeps its locks across restarts"
                ),
            )
            .on(format!("prepared transaction {gid}")),
        );
    }
    if out.is_empty() {
        out.push(Finding::ok(
            "sessions",
            format!(
                "no session of this database idle in transaction for {IDLE_SECONDS:.0} s or more, \
                 none with a transaction open {LONG_SECONDS:.0} s or more, no prepared transaction"
            ),
        ));
    }
    let sees_all: bool = query(
        client,
        "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') \
         FROM pg_roles WHERE rolname = current_user",
        &[],
    )
    .await?
    .first()
    .map(|r| r.try_get(0))
    .transpose()?
    .unwrap_or(false);
    if !sees_all {
        out.push(Finding::info(
            "visibility",
            "this role is neither superuser nor a member of pg_read_all_stats: other roles' \
             sessions show no state, and standbys no lag",
            "run doctor with a URL of a role granted pg_read_all_stats (GRANT pg_read_all_stats \
             TO <role>) for the sessions and replication checks to see everything",
        ));
    }
    Ok(out)
}

/// Which check a session with an open transaction fails, if any: idle in
/// it for [`IDLE_SECONDS`], or the transaction open [`LONG_SECONDS`].
pub(crate) fn blocking(state: &str, open: f64, in_state: f64) -> Option<&'static str> {
    if state.starts_with("idle in transaction") && in_state >= IDLE_SECONDS {
        Some("idle_in_transaction")
    } else if open >= LONG_SECONDS {
        Some("long_transaction")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lingering_transactions_are_reported() {
        assert_eq!(
            blocking("idle in transaction", 6.0, 6.0),
            Some("idle_in_transaction")
        );
        assert_eq!(
            blocking("idle in transaction (aborted)", 9.0, 9.0),
            Some("idle_in_transaction")
        );
        // sluice's own batches are idle in transaction between statements.
        assert_eq!(blocking("idle in transaction", 0.2, 0.1), None);
        assert_eq!(blocking("active", 10.0, 10.0), None);
        assert_eq!(blocking("active", 600.0, 600.0), Some("long_transaction"));
    }
}
