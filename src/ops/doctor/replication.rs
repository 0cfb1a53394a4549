//! Standbys and replication slots: a lagging standby loses the newest
//! commits on failover, and a slot nobody reads keeps WAL until the disk
//! is full.

use tokio_postgres::Client;

use super::{bytes, query, Finding};
use crate::config::Config;

/// Lag that warns when `throttle.adaptive.max_replication_lag` is not set.
const DEFAULT_LAG: u64 = 1024 * 1024 * 1024;

/// The server's WAL position, on a primary or a standby.
const LSN: &str =
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END";

pub(super) async fn check(
    client: &Client,
    config: &Config,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let configured = config
        .throttle
        .adaptive
        .as_ref()
        .and_then(|a| a.max_replication_lag)
        .map(|b| b.0);
    let limit = configured.unwrap_or(DEFAULT_LAG);
    let limit_from = match configured {
        Some(_) => "throttle.adaptive.max_replication_lag",
        None => "doctor's default",
    };
    let mut out = standbys(client, limit, limit_from).await?;
    out.extend(slots(client, limit).await?);
    Ok(out)
}

async fn standbys(
    client: &Client,
    limit: u64,
    limit_from: &str,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), \
                coalesce(state, '?'), coalesce(sync_state, '?'), \
                pg_wal_lsn_diff({LSN}, replay_lsn)::int8, \
                extract(epoch FROM replay_lag)::float8 \
         FROM pg_stat_replication"
    );
    let rows = query(client, &sql, &[]).await?;
    if rows.is_empty() {
        return Ok(vec![Finding::ok(
            "replication_lag",
            "no standby streams from this server (pg_stat_replication is empty)",
        )]);
    }
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let address: String = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        let sync: String = row.try_get(3)?;
        let lag: Option<i64> = row.try_get(4)?;
        let seconds: Option<f64> = row.try_get(5)?;
        let shown = lag.map_or("unknown (role cannot see positions)".into(), bytes);
        let evidence = format!(
            "standby '{name}' at {address}: state {state}, sync_state {sync}, replay lag {shown}{}; \
             limit {} ({limit_from})",
            seconds.map_or(String::new(), |s| format!(" ({s:.1} s)")),
            bytes(limit as i64),
        );
        let target = format!("standby {name}");
        out.push(match lag {
            Some(lag) if lag as u64 > limit => Finding::warning(
                "replication_lag",
                evidence,
                "the standby replays slower than sluice writes: a failover to it now loses the \
                 newest commits (sluice writes them again from Kafka) and its readers see old \
                 data. Set throttle.adaptive.max_replication_lag so sluice slows down, or find \
                 what holds the standby back (network, disk, hot_standby_feedback conflicts)",
            )
            .on(target),
            _ => Finding::ok("replication_lag", evidence).on(target),
        });
    }
    Ok(out)
}

async fn slots(client: &Client, limit: u64) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT slot_name::text, slot_type, active, coalesce(wal_status, '?'), \
                pg_wal_lsn_diff({LSN}, restart_lsn)::int8 \
         FROM pg_replication_slots ORDER BY slot_name"
    );
    let rows = query(client, &sql, &[]).await?;
    if rows.is_empty() {
        return Ok(vec![Finding::ok(
            "replication_slots",
            "no replication slot (pg_replication_slots is empty)",
        )]);
    }
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let active: bool = row.try_get(2)?;
        let status: String = row.try_get(3)?;
        let retained: Option<i64> = row.try_get(4)?;
        let evidence = format!(
            "{kind} slot '{name}': {}, wal_status {status}, retains {} of WAL",
            if active { "active" } else { "inactive" },
            retained.map_or("unknown".into(), bytes)
        );
        let target = format!("slot {name}");
        let finding = if !active || status == "lost" {
            Finding::warning(
                "replication_slots",
                evidence,
                &format!(
                    "nothing reads this slot: it keeps WAL (and, for a logical slot, old \
                     catalog rows) until the disk fills. Reconnect its consumer, or drop it: \
                     SELECT pg_drop_replication_slot('{name}'); set max_slot_wal_keep_size to \
                     bound what a forgotten slot can keep"
                ),
            )
        } else if retained.is_some_and(|r| r as u64 > limit) {
            Finding::info(
                "replication_slots",
                evidence,
                "its consumer is behind: WAL piles up on this server while it catches up",
            )
        } else {
            Finding::ok("replication_slots", evidence)
        };
        out.push(finding.on(target));
    }
    Ok(out)
}
