//! Server-wide settings: durability, WAL and checkpoints, autovacuum, the
//! connection budget of the configured replicas, and a standby by mistake.

use tokio_postgres::Client;

use super::{query, Finding, Settings};
use crate::config::Config;

/// Connections left free beyond sluice's pools: psql, `sluice check` and
/// `migrate` (one each), backups, monitoring, a rolling restart's overlap.
pub(crate) const MARGIN: u64 = 5;

pub(super) async fn check(
    client: &Client,
    config: &Config,
    settings: &Settings,
    replicas: u32,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut out = Vec::new();
    let standby: bool = query(client, "SELECT pg_is_in_recovery()", &[]).await?[0].try_get(0)?;
    if standby {
        out.push(Finding::warning(
            "standby",
            "pg_is_in_recovery() = true: this server is a read-only standby",
            "point postgres.url at the primary (or at a proxy that follows it): a standby refuses \
             every write",
        ));
    }
    out.extend(durability(settings));
    out.push(wal_level(settings));
    out.push(checkpoints(client, settings).await?);
    out.push(autovacuum(settings));
    out.push(connections(client, config, settings, replicas).await?);
    Ok(out)
}

fn durability(settings: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in ["fsync", "full_page_writes"] {
        let value = settings.shown(name);
        out.push(match value {
            "off" => Finding::warning(
                name,
                format!("{name}={value}"),
                &format!(
                    "set {name} = on: with it off an operating-system crash or power loss can \
                     corrupt the database, sluice's offsets with it (fine only for a throwaway \
                     test server)"
                ),
            ),
            _ => Finding::ok(name, format!("{name}={value}")),
        });
    }
    let commit = settings.shown("synchronous_commit");
    let standbys = settings.shown("synchronous_standby_names");
    let evidence = format!("synchronous_commit={commit}, synchronous_standby_names='{standbys}'");
    out.push(match commit {
        "off" => Finding::info(
            "synchronous_commit",
            evidence,
            "commits return before their WAL is flushed: a server crash can lose the last \
             commits (up to 3 × wal_writer_delay). sluice's offsets are in the same \
             transactions, so it writes those records again (nothing lost, nothing doubled), but \
             readers may have seen rows that vanish until then. Keep it off for throughput only \
             if that is acceptable; `on` is the durable choice",
        ),
        "remote_apply" | "remote_write" | "on" if !standbys.is_empty() => Finding::info(
            "synchronous_commit",
            evidence,
            "every COMMIT waits for a synchronous standby: commit latency includes the round \
             trip (see sluice's commit-latency metrics); this is the price of zero data loss on \
             failover",
        ),
        _ => Finding::ok("synchronous_commit", evidence),
    });
    out
}

fn wal_level(settings: &Settings) -> Finding {
    let level = settings.shown("wal_level");
    let evidence = format!("wal_level={level}");
    match level {
        "minimal" => Finding::warning(
            "wal_level",
            evidence,
            "set wal_level = replica (restart): with minimal no standby, failover or \
             point-in-time recovery can follow this server, so losing it loses the rows and the \
             offsets",
        ),
        _ => Finding::ok("wal_level", evidence),
    }
}

/// Requested checkpoints (WAL reached `max_wal_size`) against timed ones
/// (`checkpoint_timeout` passed), since the statistics were last reset.
async fn checkpoints(
    client: &Client,
    settings: &Settings,
) -> Result<Finding, tokio_postgres::Error> {
    // PostgreSQL 17 moved the counters from pg_stat_bgwriter to
    // pg_stat_checkpointer (and renamed them).
    let newer: bool = query(
        client,
        "SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL",
        &[],
    )
    .await?[0]
        .try_get(0)?;
    let sql = match newer {
        true => {
            "SELECT num_timed::int8, num_requested::int8, stats_reset::text, \
                    extract(epoch FROM now() - stats_reset)::float8 FROM pg_stat_checkpointer"
        }
        false => {
            "SELECT checkpoints_timed::int8, checkpoints_req::int8, stats_reset::text, \
                    extract(epoch FROM now() - stats_reset)::float8 FROM pg_stat_bgwriter"
        }
    };
    let row = &query(client, sql, &[]).await?[0];
    let (timed, requested): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    let reset: Option<String> = row.try_get(2)?;
    let seconds: Option<f64> = row.try_get(3)?;
    let view = if newer {
        "pg_stat_checkpointer"
    } else {
        "pg_stat_bgwriter"
    };
    let hours = seconds.unwrap_or(0.0) / 3600.0;
    let evidence = format!(
        "{requested} requested and {timed} timed checkpoints since {} ({view}, {hours:.1} h); \
         max_wal_size={}, checkpoint_timeout={}",
        reset.as_deref().unwrap_or("the server started"),
        settings.shown("max_wal_size"),
        settings.shown("checkpoint_timeout"),
    );
    Ok(match requested_too_often(timed, requested) {
        true => Finding::warning(
            "checkpoints",
            evidence,
            "most checkpoints are forced by WAL volume, not by checkpoint_timeout: raise \
             max_wal_size (to about the WAL written per checkpoint_timeout, times 2) so they come \
             from the timer; each checkpoint makes the next writes log full pages, which slows \
             COPY. Requested checkpoints also count manual CHECKPOINT, CREATE/DROP DATABASE and \
             base backups: judge over a busy period (pg_stat_reset_shared('bgwriter'), \
             'checkpointer' on PostgreSQL 17+, starts one)",
        ),
        false => Finding::ok("checkpoints", evidence),
    })
}

/// Whether WAL volume forces checkpoints: at least 10 checkpoints seen (fewer
/// say nothing) and more than a fifth of them requested.
pub(crate) fn requested_too_often(timed: i64, requested: i64) -> bool {
    let total = timed + requested;
    total >= 10 && requested * 5 > total
}

fn autovacuum(settings: &Settings) -> Finding {
    let evidence = format!(
        "autovacuum={}, track_counts={}, autovacuum_max_workers={}, autovacuum_naptime={}, \
         autovacuum_vacuum_scale_factor={}, autovacuum_vacuum_cost_limit={}",
        settings.shown("autovacuum"),
        settings.shown("track_counts"),
        settings.shown("autovacuum_max_workers"),
        settings.shown("autovacuum_naptime"),
        settings.shown("autovacuum_vacuum_scale_factor"),
        settings.shown("autovacuum_vacuum_cost_limit"),
    );
    if settings.shown("autovacuum") == "off" || settings.shown("track_counts") == "off" {
        Finding::warning(
            "autovacuum",
            evidence,
            "set autovacuum = on and track_counts = on: without them dead rows of upserts and \
             deletes are never cleaned, tables and indexes bloat and every write slows; \
             transaction-ID wraparound will eventually stop the server",
        )
    } else {
        Finding::ok("autovacuum", evidence)
    }
}

async fn connections(
    client: &Client,
    config: &Config,
    settings: &Settings,
    replicas: u32,
) -> Result<Finding, tokio_postgres::Error> {
    let in_use: i64 = query(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        &[],
    )
    .await?[0]
        .try_get(0)?;
    let max = settings.number("max_connections").unwrap_or(0) as u64;
    let superuser = settings
        .number("superuser_reserved_connections")
        .unwrap_or(0) as u64;
    // PostgreSQL 16 added reserved_connections (for pg_use_reserved_connections).
    let reserved = settings.number("reserved_connections").unwrap_or(0) as u64;
    let pool = config.postgres.pool_size as u64;
    let needed = budget(replicas as u64, pool, superuser + reserved);
    let evidence = format!(
        "max_connections={max}; needed {replicas} replica(s) × pool_size {pool} + \
         superuser_reserved_connections {superuser} + reserved_connections {reserved} + margin \
         {MARGIN} = {needed}; {in_use} client connection(s) open now"
    );
    Ok(match needed > max {
        true => Finding::warning(
            "max_connections",
            evidence,
            &format!(
                "raise max_connections to at least {needed} (restart), lower postgres.pool_size, \
                 or put PgBouncer (transaction pooling) in front: replicas beyond the budget fail \
                 to open connections (53300 too_many_connections) and retry"
            ),
        ),
        false => Finding::ok("max_connections", evidence),
    })
}

/// Connections `replicas` replicas need: their pools, the server's reserved
/// slots (closed to sluice's role) and [`MARGIN`].
pub(crate) fn budget(replicas: u64, pool_size: u64, reserved: u64) -> u64 {
    replicas
        .saturating_mul(pool_size)
        .saturating_add(reserved)
        .saturating_add(MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_pools_reserved_slots_and_the_margin() {
        assert_eq!(budget(1, 8, 3), 8 + 3 + MARGIN);
        assert_eq!(budget(1000, 8, 3), 8000 + 3 + MARGIN);
        assert_eq!(budget(u64::MAX, 8, 3), u64::MAX);
    }

    #[test]
    fn checkpoints_are_judged_on_enough_of_them() {
        assert!(!requested_too_often(0, 5), "too few to say");
        assert!(!requested_too_often(90, 10), "a tenth requested is fine");
        assert!(requested_too_often(70, 30));
        assert!(requested_too_often(0, 10));
    }
}
